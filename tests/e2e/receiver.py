"""Webhook receivers and signature checks for the result-delivery suites
(test_webhooks.py, test_sse.py, test_progress.py).

  Receiver(port=0)     the fake upstream of upstream.py (programmable per
                       path, every request recorded) as a webhook receiver;
                       port pins the port (a receiver started late, after a
                       port was handed to ackd)
  make_receiver()      a factory fixture; every receiver made is stopped at
                       teardown
  hook_headers(rec)    the Standard Webhooks headers of a recorded request
  Verifier             runs tests/e2e/verify_webhook.mjs, i.e. the official
                       `standardwebhooks` npm package under Node (an
                       implementation nobody here wrote)
  verifier (fixture)   a session Verifier; skips the test with a clear
                       reason when node or npm are absent, installs the
                       package (npm ci) when only node_modules is missing
  py_sign(...)         the same HMAC in Python, only to forge a message
                       whose sole fault is its timestamp
  new_secret()         a fresh whsec_<base64> secret
"""

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from conftest import HOST, REPO_ROOT, SLOW
from upstream import FakeUpstream, _Handler, _Server

E2E_DIR = REPO_ROOT / "tests" / "e2e"
NODE_DIR = E2E_DIR / "node"
VERIFY_SCRIPT = E2E_DIR / "verify_webhook.mjs"

HOOK_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def new_secret(nbytes=32):
    return "whsec_" + base64.b64encode(os.urandom(nbytes)).decode()


def py_sign(secret, msg_id, timestamp, body):
    """v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>, key = base64 of
    the secret after whsec_."""
    key = base64.b64decode(secret[len("whsec_"):])
    if isinstance(body, str):
        body = body.encode()
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class Receiver(FakeUpstream):
    """A FakeUpstream, optionally on a given port."""

    def __init__(self, host=HOST, port=0):
        super().__init__(host)
        if port:
            self.httpd.server_close()
            self.httpd = _Server((host, port), _Handler)
            self.httpd.upstream = self
            self.port = port
            self.origin = f"http://{host}:{port}"
            self.thread = threading.Thread(target=self.httpd.serve_forever,
                                           kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path):
        return self.origin + path

    def hooks(self, path=None, task_id=None):
        """The webhooks that arrived (to path / about task_id), in order."""
        out = []
        for r in self.calls(path):
            if task_id is not None:
                try:
                    if r.json().get("task_id") != task_id:
                        continue
                except ValueError:
                    continue
            out.append(r)
        return out

    def wait_hooks(self, n, path, timeout=10.0 * SLOW):
        return self.wait_calls(n, path, timeout=timeout)


@pytest.fixture
def make_receiver():
    made = []

    def make(port=0):
        r = Receiver(port=port).start()
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


def hook_headers(rec):
    """{webhook-id, webhook-timestamp, webhook-signature} as received."""
    return {name: rec.header(name) for name in HOOK_HEADERS if rec.has(name)}


class Verifier:
    """Asks the official library whether a message verifies with a secret."""

    def __init__(self, node):
        self.node = node

    def check_many(self, items):
        """items: [(secret, headers, body)] -> [(ok, error)] in one process."""
        doc = [{"secret": s, "headers": h, "body": b.decode() if isinstance(b, bytes) else b}
               for s, h, b in items]
        p = subprocess.run([self.node, str(VERIFY_SCRIPT)], input=json.dumps(doc), text=True,
                           capture_output=True, timeout=60)
        if p.returncode not in (0, 1):
            raise AssertionError(f"verify_webhook.mjs failed ({p.returncode}): {p.stderr}")
        verdicts = json.loads(p.stdout)
        assert len(verdicts) == len(items), verdicts
        return [(v["ok"], v.get("error")) for v in verdicts]

    def check(self, secret, headers, body):
        """(ok, error) for one message."""
        return self.check_many([(secret, headers, body)])[0]

    def verifies(self, secret, rec):
        """Whether a recorded webhook verifies with secret."""
        return self.check(secret, hook_headers(rec), rec.body)[0]

    def assert_verifies(self, secret, rec):
        ok, err = self.check(secret, hook_headers(rec), rec.body)
        assert ok, f"the official library rejects the webhook: {err}; headers " \
                   f"{hook_headers(rec)}, body {rec.body[:300]!r}"


_install_lock = threading.Lock()


@pytest.fixture(scope="session")
def verifier():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("signatures are verified with the official `standardwebhooks` npm package "
                    "under Node; node and/or npm are not installed here")
    with _install_lock:
        if not (NODE_DIR / "node_modules" / "standardwebhooks" / "package.json").is_file():
            p = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                               cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
            if p.returncode != 0:
                pytest.fail(f"npm ci in {NODE_DIR} failed (scripts/install-deps does the same):\n"
                            f"{p.stdout}\n{p.stderr}")
    v = Verifier(node)
    # the verifier itself must tell a good signature from a bad one
    secret = new_secret()
    ts = str(int(time.time()))
    body = '{"probe":true}'
    good = {"webhook-id": "msg_probe", "webhook-timestamp": ts,
            "webhook-signature": py_sign(secret, "msg_probe", ts, body)}
    bad = dict(good, **{"webhook-signature": py_sign(new_secret(), "msg_probe", ts, body)})
    assert [ok for ok, _ in v.check_many([(secret, good, body), (secret, bad, body)])] == \
        [True, False], "verify_webhook.mjs does not tell a good signature from a bad one"
    return v
