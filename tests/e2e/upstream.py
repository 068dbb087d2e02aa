"""A fake upstream for the push-dispatch end-to-end suites: a threaded
HTTP/1.1 server (keep-alive) on a free 127.0.0.1 port, programmable per
test, recording every request.

  upstream (fixture)   a started FakeUpstream, stopped at teardown
  upstream_module      the same, module scope
  make_upstream()      a factory fixture, for tests that need several
  FakeUpstream         .port, .origin ("http://127.0.0.1:PORT")
                       .on(path, behaviour)      a behaviour for one path
                       .default(behaviour)       for every other path
                       .requests / .calls(path)  what arrived, in order
                       .wait_calls(n, path)      waits for n of them
                       .inflight, .max_inflight  concurrency as seen here
                       .max_inflight_of(path)    the same, for one path
                       .reset_stats()
                       .idle_timeout             seconds after which an idle
                                                 kept-alive connection is closed
                                                 (None: never; set before use)

A behaviour is a callable (req, n) -> Answer, where req is the Recorded
request and n counts the calls (from 1) of that behaviour's key, which is
the path unless keyed by something else (key=...). Builders:

  answer(status=200, body=..., headers=..., delay=0)   always the same
  sequence(a1, a2, ...)                                 the n-th call gets
                                                        a_n (the last repeats)
  fail_then(k, status=503, then=answer(), headers=...)  k failures, then `then`
  hang(seconds)                                         waits, then 200 (the
                                                        client gave up by then)
  broken(data)                                          writes data, closes
  echo(status=200, delay=0)                             answers the request it
                                                        got, as JSON
  by_field(field, table, default)                       picks by a JSON body field

Recorded requests keep method, path, query, headers (a list, wire order, and
a case-insensitive .header()), body bytes, the arrival and the end times
(time.monotonic()), the status answered and the peer address (ackd's end of
the TCP connection, to tell reused connections).
"""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

HOST = "127.0.0.1"


class Answer:
    def __init__(self, status=200, body=b"", headers=None, delay=0.0, content_type=None):
        self.status = status
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            content_type = content_type or "application/json"
        elif isinstance(body, str):
            body = body.encode()
        self.body = body or b""
        self.headers = list((headers or {}).items() if isinstance(headers, dict) else headers or [])
        if content_type and not any(k.lower() == "content-type" for k, _ in self.headers):
            self.headers.append(("Content-Type", content_type))
        self.delay = delay


class Recorded:
    """One request as the upstream saw it."""

    def __init__(self, method, target, headers, body, t_start):
        self.method = method
        self.target = target
        parts = urlsplit(target)
        self.path = parts.path
        self.query = parts.query
        self.headers = headers          # [(name, value)] in wire order
        self.body = body
        self.t_start = t_start
        self.t_end = None
        self.status = None
        self.n = 0                      # call number of its behaviour key

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has(self, name):
        return any(k.lower() == name.lower() for k, _ in self.headers)

    def json(self):
        return json.loads(self.body)

    @property
    def attempt(self):
        v = self.header("Task-Attempt")
        return int(v) if v is not None else None

    @property
    def task_id(self):
        return self.header("Task-Id")

    def __repr__(self):
        return (f"<Recorded {self.method} {self.target} attempt={self.attempt} "
                f"status={self.status} body={self.body[:80]!r}>")


# --------------------------------------------------------------------------
# behaviours


def answer(status=200, body=None, headers=None, delay=0.0, content_type=None):
    if body is None:
        body = {"ok": True}
    a = Answer(status, body, headers, delay, content_type)
    return lambda req, n: a


def broken(data):
    """Writes `data` as the whole answer, then closes the connection: a cut
    answer, nothing at all (b""), or bytes that are not HTTP."""
    a = Answer(0)
    a.raw = data
    return lambda req, n: a


def sequence(*answers):
    """The n-th call gets answers[n-1]; the last repeats. Items are Answers
    or behaviours."""
    def pick(req, n):
        a = answers[min(n, len(answers)) - 1]
        return a(req, n) if callable(a) else a
    return pick


def fail_then(k, status=503, then=None, headers=None, body=None):
    then = then or answer()
    fail = Answer(status, body if body is not None else {"error": f"{status}"}, headers)

    def pick(req, n):
        return fail if n <= k else then(req, n)
    return pick


def hang(seconds, then=None):
    """Waits `seconds` (cut short when the upstream stops), then answers."""
    then = then or answer()

    def pick(req, n):
        a = then(req, n)
        return Answer(a.status, a.body, a.headers, seconds)
    return pick


def echo(status=200, delay=0.0):
    """Answers with what it received: {method, path, query, headers, body}."""
    def pick(req, n):
        doc = {"method": req.method, "path": req.path, "query": req.query,
               "headers": {k.lower(): v for k, v in req.headers},
               "body": req.body.decode("utf-8", "replace"), "n": n}
        return Answer(status, doc, delay=delay)
    return pick


def by_field(field, table, default=None):
    """Picks a behaviour by the JSON body's `field` (a missing or unknown
    value uses default)."""
    default = default or answer()

    def pick(req, n):
        try:
            v = req.json().get(field)
        except (ValueError, AttributeError):
            v = None
        b = table.get(v, default)
        return b(req, n)
    return pick


# --------------------------------------------------------------------------
# the server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"       # keep-alive: every answer has a Content-Length

    def log_message(self, fmt, *args):  # quiet
        pass

    def setup(self):
        # idle_timeout: a kept-alive connection idle that long is closed here
        self.timeout = self.server.upstream.idle_timeout
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self):
        up = self.server.upstream
        t0 = time.monotonic()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        rec = Recorded(self.command, self.path, list(self.headers.items()), body, t0)
        rec.peer = self.client_address     # one per TCP connection: shows reuse
        behaviour, key = up._behaviour_for(rec)
        with up.lock:
            up.counts[key] = up.counts.get(key, 0) + 1
            rec.n = up.counts[key]
            up.requests.append(rec)
            up.inflight += 1
            up.max_inflight = max(up.max_inflight, up.inflight)
            k = rec.path
            up.path_inflight[k] = up.path_inflight.get(k, 0) + 1
            up.path_max_inflight[k] = max(up.path_max_inflight.get(k, 0), up.path_inflight[k])
            up.cond.notify_all()
        try:
            try:
                a = behaviour(rec, rec.n)
            except Exception as e:  # a broken behaviour is the test's bug: say so
                a = Answer(599, f"fake upstream behaviour raised {e!r}")
            if a.delay:
                up.stopping.wait(a.delay)
            rec.status = a.status
            if getattr(a, "raw", None) is not None:
                self.wfile.write(a.raw)
                self.wfile.flush()
                self.close_connection = True
                return
            self.send_response(a.status)
            for k, v in a.headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(a.body)))
            # the head and the body in one write (no Nagle/delayed-ACK stall)
            self._headers_buffer.append(b"\r\n" + (a.body if self.command != "HEAD" else b""))
            self.flush_headers()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client (ackd) gave up
        finally:
            with up.lock:
                up.inflight -= 1
                up.path_inflight[rec.path] -= 1
                rec.t_end = time.monotonic()
                up.cond.notify_all()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass  # a connection ackd dropped (timeout) is expected here


class FakeUpstream:
    def __init__(self, host=HOST):
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.stopping = threading.Event()
        self.requests = []
        self.counts = {}
        self.inflight = 0
        self.max_inflight = 0
        self.path_inflight = {}
        self.path_max_inflight = {}
        self._paths = {}
        self._default = answer()
        self._key = None
        self.idle_timeout = None
        self.httpd = _Server((host, 0), _Handler)
        self.httpd.upstream = self
        self.port = self.httpd.server_address[1]
        self.origin = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    # -- programming

    def on(self, path, behaviour):
        """Behaviour for requests to `path` (exact path, query excluded)."""
        self._paths[path] = behaviour
        return self

    def default(self, behaviour):
        self._default = behaviour
        return self

    def key_by(self, fn):
        """Counts calls by fn(req) instead of the path (e.g. by Task-Id, so
        that 'fail k times' holds per task)."""
        self._key = fn
        return self

    def _behaviour_for(self, rec):
        b = self._paths.get(rec.path, self._default)
        key = self._key(rec) if self._key else rec.path
        return b, key

    # -- what happened

    def calls(self, path=None, task_id=None):
        with self.lock:
            return [r for r in self.requests
                    if (path is None or r.path == path)
                    and (task_id is None or r.task_id == task_id)]

    def wait_calls(self, n, path=None, timeout=10.0, task_id=None):
        """Waits until at least n requests (to path) arrived; returns them."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [r for r in self.requests
                       if (path is None or r.path == path)
                       and (task_id is None or r.task_id == task_id)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the upstream saw {len(got)} of {n} calls "
                                         f"to {path or 'any path'} in {timeout}s: {got}")
                self.cond.wait(left)

    def wait_done(self, n, path=None, timeout=10.0):
        """Waits until n requests (to path) have been answered."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [r for r in self.requests
                       if (path is None or r.path == path) and r.t_end is not None]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the upstream answered {len(got)} of {n} calls "
                                         f"in {timeout}s")
                self.cond.wait(left)

    def max_inflight_of(self, path):
        """The most requests to `path` that were in flight at once."""
        with self.lock:
            return self.path_max_inflight.get(path, 0)

    def reset_stats(self):
        with self.lock:
            self.requests = []
            self.counts = {}
            self.max_inflight = self.inflight
            self.path_max_inflight = dict(self.path_inflight)


@pytest.fixture
def make_upstream():
    made = []

    def make():
        u = FakeUpstream().start()
        made.append(u)
        return u

    yield make
    for u in made:
        u.stop()


@pytest.fixture
def upstream(make_upstream):
    return make_upstream()


@pytest.fixture(scope="module")
def upstream_module():
    """One fake upstream shared by a module's cases (paths keep them apart)."""
    u = FakeUpstream().start()
    yield u
    u.stop()
