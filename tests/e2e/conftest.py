"""End-to-end fixtures for ackd: the real binary on 127.0.0.1, a free port, a
temporary data folder, raw sockets.

What a suite gets from here (later suites - tasks API, routes, webhooks -
extend it rather than copy it):

  ackd_bin            path of the binary under test (env ACKD_BIN, default
                      build/release/ackd under the repository root)
  start_ackd(config)  starts a server (function scope) and returns an
                      AckdServer; `config` is a dict of sections
                      ({"server": {"max_body": "1k"}, "queue pay": {...}})
                      merged over the test defaults, or an INI text in
                      which {listen}, {port}, {host} and {data_dir} are
                      replaced. Every server started is stopped at teardown
                      (SIGTERM to its PID, SIGKILL after a timeout) and
                      checked: exit 0 (or death by our SIGTERM), no
                      sanitizer report on its stderr.
  start_ackd_module   the same factory, module scope (one server shared by
                      the many cases of a data-driven table)
  ackd                a default server (debug endpoints on)
  run_ackd(*args)     runs a one-shot command (`config check FILE`, a
                      `serve` expected to fail) and returns a
                      CompletedProcess, checked for sanitizer reports
  RawConn             a raw HTTP/1.1 client over one socket: send bytes,
                      read full responses with a deadline (Content-Length,
                      chunked, until-close; 1xx interim answers), stream
                      chunk by chunk, and tell whether the server closed
  assert_problem      checks an application/problem+json answer

Deadlines are generous (the suite must hold on a loaded two-core machine and
under ASan/UBSan); the tests assert tight time bounds only where time is the
behaviour under test.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

# Markers of a sanitizer report on the server's stderr.
SANITIZER_MARKERS = (
    "AddressSanitizer",
    "LeakSanitizer",
    "UndefinedBehaviorSanitizer",
    "ThreadSanitizer",
    "runtime error:",
)

# Instrumented builds are several times slower: waits scale with this.
SANITIZED = bool(os.environ.get("ACKD_SANITIZED")) or "/san/" in os.environ.get("ACKD_BIN", "")
SLOW = 3.0 if SANITIZED else 1.0

READY_TIMEOUT = 10.0 * SLOW     # from exec to a 200 on /healthz
STOP_TIMEOUT = 15.0 * SLOW      # from SIGTERM to exit before SIGKILL


# --------------------------------------------------------------------------
# the binary, ports, configuration files


def binary_path():
    p = Path(os.environ.get("ACKD_BIN", "build/release/ackd"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


@pytest.fixture(scope="session")
def ackd_bin():
    p = binary_path()
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"ackd binary not found at {p} (build it with make, or set ACKD_BIN)")
    return p


def free_port(host=HOST):
    """A port that was free a moment ago (the launcher retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def child_env(extra=None):
    """The environment of a child ackd: ours without any ACKD_* variable
    (they override the configuration), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACKD_")}
    # handle_abort: an abort() outside ASan's own reports (libuv aborts in
    # silence on a failed eventfd write) leaves a stack in the log
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1:handle_abort=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def ini_value(v):
    if v is True:
        return "on"
    if v is False:
        return "off"
    return str(v)


def render_config(sections):
    """INI text from {section: {key: value}} (insertion order kept; a value of
    None leaves the key out; True/False become on/off). A section's value may
    also be a list of (key, value) pairs, for repeated or ordered keys."""
    out = []
    for name, body in sections.items():
        if body is None:
            continue
        out.append(f"[{name}]")
        items = body.items() if isinstance(body, dict) else body
        for k, v in items:
            if v is None:
                continue
            out.append(f"{k} = {ini_value(v)}")
        out.append("")
    return "\n".join(out)


def merge_config(base, override):
    """Section-wise merge: override's keys replace base's; a section set to
    None in override is dropped."""
    merged = {name: dict(body) for name, body in base.items()}
    for name, body in (override or {}).items():
        if body is None:
            merged.pop(name, None)
        elif isinstance(body, dict):
            merged.setdefault(name, {}).update(body)
        else:
            merged[name] = list(body)
    return merged


def write_config(path, config):
    """Writes a dict (see render_config) or a text to path; returns path."""
    path = Path(path)
    text = config if isinstance(config, str) else render_config(config)
    path.write_text(text)
    return path


def sanitizer_report(text):
    for m in SANITIZER_MARKERS:
        if m in text:
            return m
    return None


# --------------------------------------------------------------------------
# raw HTTP over a socket


class Response:
    """One HTTP response as read from the wire."""

    def __init__(self, version, status, reason, headers):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers          # [(name, value)] in wire order
        self.body = b""
        self.chunks = None              # chunk payloads when chunked
        self.trailers = []
        self.interim = []               # 1xx answers that preceded this one
        self.head_bytes = b""

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_token(self, name, token):
        """Whether a comma-separated header holds token (case-insensitive)."""
        token = token.lower()
        return any(t.strip().lower() == token for v in self.header_all(name) for t in v.split(","))

    @property
    def closes(self):
        return self.has_token("Connection", "close")

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.reason!r} {self.headers!r} body={self.body[:200]!r}>"


class ProtocolError(AssertionError):
    pass


def build_request(method, target, headers=None, body=None, version="HTTP/1.1", host=HOST):
    """Request bytes. Host is added unless host is None or headers name it;
    Content-Length is added for a body unless headers frame it."""
    headers = list(headers.items() if isinstance(headers, dict) else headers or [])
    names = {k.lower() for k, _ in headers}
    if host is not None and "host" not in names:
        headers.insert(0, ("Host", host))
    if isinstance(body, str):
        body = body.encode()
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def chunked(*pieces, trailers=None):
    """A chunked body with one chunk per piece and the last chunk."""
    out = b""
    for p in pieces:
        if isinstance(p, str):
            p = p.encode()
        if p:
            out += b"%x\r\n" % len(p) + p + b"\r\n"
    out += b"0\r\n"
    for k, v in trailers or []:
        out += f"{k}: {v}\r\n".encode()
    return out + b"\r\n"


class RawConn:
    """One TCP connection to the server and a buffer of what it sent.

    Reads take a timeout (seconds) for the whole operation; a read that runs
    out of time raises TimeoutError, one that meets the end of the stream
    raises ProtocolError (both say what had arrived)."""

    def __init__(self, host, port, timeout=10.0 * SLOW):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    # -- plumbing

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def send_parts(self, parts, delay=0.0):
        """Sends each part in its own write, `delay` seconds apart."""
        for i, p in enumerate(parts):
            if i and delay:
                time.sleep(delay)
            self.send(p)

    def send_slowly(self, data, size=1, delay=0.001):
        """Sends data `size` bytes at a time."""
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.send_parts([data[i:i + size] for i in range(0, len(data), size)], delay)

    def _deadline(self, timeout):
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _fill(self, deadline):
        """Reads once more into buf; False at the end of the stream."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no answer in time; received so far: {bytes(self.buf)[:500]!r}")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError(f"no answer in time; received so far: {bytes(self.buf)[:500]!r}")
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _until(self, sep, deadline):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(sep)]
                return out
            if not self._fill(deadline):
                raise ProtocolError(f"connection closed before {sep!r}; buffered {bytes(self.buf)[:500]!r}")

    def _exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ProtocolError(f"connection closed after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    # -- responses

    def read_head(self, timeout=None):
        """Reads one status line and header block (1xx included)."""
        deadline = self._deadline(timeout)
        head = self._until(b"\r\n\r\n", deadline)
        lines = head.split(b"\r\n")
        m = re.match(rb"^(HTTP/\d\.\d) (\d{3}) ?(.*)$", lines[0])
        if not m:
            raise ProtocolError(f"bad status line {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            k, sep, v = line.partition(b":")
            if not sep:
                raise ProtocolError(f"bad header line {line!r}")
            headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
        r = Response(m.group(1).decode(), int(m.group(2)), m.group(3).decode("latin-1"), headers)
        r.head_bytes = head
        return r

    def read_chunk(self, timeout=None):
        """Reads the next chunk of a chunked body: its payload, or None after
        the last chunk (the trailers are then consumed)."""
        deadline = self._deadline(timeout)
        line = self._until(b"\r\n", deadline)
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size line {line!r}")
        if size == 0:
            while self._until(b"\r\n", deadline):
                pass
            return None
        data = self._exact(size, deadline)
        if self._exact(2, deadline) != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")
        return data

    def read_body(self, r, method="GET", timeout=None):
        deadline = self._deadline(timeout)
        if method == "HEAD" or r.status < 200 or r.status in (204, 304):
            return r
        te = r.header("Transfer-Encoding")
        if te is not None:
            if te.lower() != "chunked":
                raise ProtocolError(f"unexpected Transfer-Encoding {te!r}")
            r.chunks = []
            while True:
                c = self.read_chunk(max(deadline - time.monotonic(), 0.001))
                if c is None:
                    break
                r.chunks.append(c)
            r.body = b"".join(r.chunks)
        elif r.header("Content-Length") is not None:
            r.body = self._exact(int(r.header("Content-Length")), deadline)
        else:
            while self._fill(deadline):
                pass
            r.body = bytes(self.buf)
            self.buf.clear()
        return r

    def read_response(self, method="GET", timeout=None, interim=False):
        """Reads one whole response. 1xx answers are collected in
        .interim unless interim=True, which returns the 1xx itself."""
        deadline = self._deadline(timeout)
        pre = []
        while True:
            r = self.read_head(max(deadline - time.monotonic(), 0.001))
            if 100 <= r.status < 200:
                if interim:
                    return r
                pre.append(r)
                continue
            r.interim = pre
            return self.read_body(r, method, max(deadline - time.monotonic(), 0.001))

    def read_responses(self, n, timeout=None, methods=None):
        deadline = self._deadline(timeout)
        out = []
        for i in range(n):
            m = methods[i] if methods else "GET"
            out.append(self.read_response(m, max(deadline - time.monotonic(), 0.001)))
        return out

    def request(self, method, target, headers=None, body=None, version="HTTP/1.1", timeout=None,
                host=HOST):
        self.send(build_request(method, target, headers, body, version, host))
        return self.read_response(method, timeout)

    def get(self, target, headers=None, timeout=None):
        return self.request("GET", target, headers, timeout=timeout)

    # -- the end of the connection

    def wait_closed(self, timeout=3.0 * SLOW):
        """True once the server has closed its side (recv returns b"" or
        the connection is reset) within timeout; False if it is still open.
        Bytes that arrive meanwhile are kept in .buf (see .leftover)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                self._fill(deadline)
            except TimeoutError:
                return False
        return True

    def is_open(self, wait=0.3):
        """True if nothing closes the connection during `wait` seconds."""
        return not self.wait_closed(wait)

    @property
    def leftover(self):
        return bytes(self.buf)


def assert_problem(r, status, slug=None):
    """r is an RFC 9457 problem with this status (and type /problems/slug)."""
    assert r.status == status, r
    ct = r.header("Content-Type", "")
    assert ct.split(";")[0].strip() == "application/problem+json", r
    p = r.json()
    assert isinstance(p, dict), p
    for k in ("type", "title", "status", "detail"):
        assert k in p, f"problem lacks {k}: {p}"
    assert p["status"] == status, p
    assert isinstance(p["type"], str) and p["type"].startswith("/problems/"), p
    assert isinstance(p["title"], str) and p["title"], p
    assert isinstance(p["detail"], str) and p["detail"], p
    if slug is not None:
        assert p["type"] == f"/problems/{slug}", p
    return p


# --------------------------------------------------------------------------
# the server process


class AckdServer:
    """One ackd process started by the launcher."""

    def __init__(self, binary, workdir, config, env=None, args=None, port=None):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = port or free_port()
        self.config_path = self.workdir / "ackd.conf"
        self.stderr_path = self.workdir / "stderr.log"
        self.stdout_path = self.workdir / "stdout.log"
        self.env = child_env(env)
        self.args = list(args or [])
        self.proc = None
        self.sent_sigterm = False
        self.killed = False
        # exit codes the teardown accepts; a test that means the server to
        # fail sets its own
        self.expected_returncodes = {0, -signal.SIGTERM}
        self._config = config
        self.config_text = self._render(config)

    # -- configuration

    @property
    def listen(self):
        return f"{self.host}:{self.port}"

    def _render(self, config):
        if isinstance(config, str):
            text = config
            for k, v in (("{listen}", self.listen), ("{port}", str(self.port)),
                         ("{host}", self.host), ("{data_dir}", str(self.data_dir))):
                text = text.replace(k, v)
            return text
        base = {
            "server": {
                "listen": self.listen,
                "log_level": "info",
                "debug_endpoints": "on",
            },
            "storage": {"path": str(self.data_dir / "ackd.db")},
        }
        return render_config(merge_config(base, config))

    # -- life

    def start(self, wait=True):
        self.config_path.write_text(self.config_text)
        self._stderr = open(self.stderr_path, "ab")
        self._stdout = open(self.stdout_path, "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--config", str(self.config_path), *self.args],
            stdin=subprocess.DEVNULL, stdout=self._stdout, stderr=self._stderr,
            cwd=self.workdir, env=self.env, start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Waits (bounded) for a 200 on /healthz; fails with the stderr if the
        process exits or never answers."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerExited(self, f"ackd exited with {self.proc.returncode} before it was ready")
            try:
                with RawConn(self.host, self.port, timeout=2.0 * SLOW) as c:
                    r = c.request("GET", "/healthz", [("Connection", "close")])
                    if r.status == 200:
                        return self
                    last = r
            except (OSError, TimeoutError, ProtocolError) as e:
                last = e
            time.sleep(0.02)
        raise AssertionError(f"ackd did not answer /healthz within {timeout}s (last: {last!r})\n"
                             f"stderr:\n{self.stderr_text()[-4000:]}")

    def signal(self, sig):
        """Sends sig to our process, by its PID."""
        if self.running():
            if sig == signal.SIGTERM:
                self.sent_sigterm = True
            os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """The exit code, or raises subprocess.TimeoutExpired."""
        return self.proc.wait(timeout)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then SIGKILL after timeout; returns the exit code."""
        if self.proc is None:
            return None
        if self.running():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._close_files()
        return self.proc.returncode

    def _close_files(self):
        for f in (getattr(self, "_stderr", None), getattr(self, "_stdout", None)):
            if f and not f.closed:
                f.close()

    def problems(self):
        """What is wrong with how this process ended (empty when fine)."""
        out = []
        if self.proc is None:
            return out
        if self.killed:
            out.append(f"ackd (pid {self.pid}) ignored SIGTERM for {STOP_TIMEOUT}s and was killed")
        elif self.proc.returncode not in self.expected_returncodes:
            out.append(f"ackd (pid {self.pid}) exited with {self.proc.returncode}, "
                       f"expected one of {sorted(self.expected_returncodes)}")
        marker = sanitizer_report(self.stderr_text())
        if marker:
            out.append(f"sanitizer report ({marker}) on ackd's stderr")
        if out:
            out.append("stderr (tail):\n" + self.stderr_text()[-6000:])
        return out

    # -- logs

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self):
        return [line for line in self.stderr_text().splitlines() if line.strip()]

    def log_records(self):
        """stderr's lines parsed as JSON; a line that is not a JSON object
        fails the test (every log line must be one)."""
        recs = []
        for line in self.log_lines():
            try:
                rec = json.loads(line)
            except ValueError:
                raise AssertionError(f"log line is not JSON: {line!r}")
            assert isinstance(rec, dict), line
            recs.append(rec)
        return recs

    def wait_for_log(self, pred, timeout=5.0 * SLOW):
        """The first log record for which pred(record) is true, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            for rec in self.log_records():
                if pred(rec):
                    return rec
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching log line within {timeout}s; log:\n"
                                     + self.stderr_text()[-4000:])
            time.sleep(0.02)

    # -- requests

    def url(self, path="/"):
        return f"http://{self.host}:{self.port}{path}"

    def conn(self, timeout=10.0 * SLOW):
        return RawConn(self.host, self.port, timeout)

    def request(self, method, target, headers=None, body=None, timeout=None):
        """One request on a fresh connection, closed afterwards."""
        with self.conn() as c:
            return c.request(method, target, headers, body, timeout=timeout)

    def get(self, target, headers=None, timeout=None):
        return self.request("GET", target, headers, timeout=timeout)

    def stats(self):
        """GET /debug/stats as a dict."""
        r = self.get("/debug/stats")
        assert r.status == 200, r
        return r.json()

    def wait_stats(self, pred, timeout=5.0 * SLOW):
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if pred(s):
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"/debug/stats never matched within {timeout}s: {s}")
            time.sleep(0.02)


class ServerExited(AssertionError):
    def __init__(self, server, msg):
        super().__init__(f"{msg}\nstderr:\n{server.stderr_text()[-4000:]}")
        self.server = server


class Launcher:
    """Starts servers for one scope and checks each at teardown."""

    def __init__(self, binary, tmp_factory):
        self.binary = binary
        self.tmp_factory = tmp_factory   # () -> a fresh directory
        self.servers = []

    def __call__(self, config=None, *, env=None, args=None, wait=True, port=None):
        if isinstance(config, str):
            auto_port = port is None and ("{listen}" in config or "{port}" in config)
        else:
            auto_port = port is None
        attempts = 3 if auto_port else 1
        for attempt in range(attempts):
            srv = AckdServer(self.binary, self.tmp_factory(), config, env, args, port)
            self.servers.append(srv)
            srv.start(wait=False)
            if not wait:
                return srv
            try:
                return srv.wait_ready()
            except ServerExited:
                srv._close_files()
                lost_race = "address already in use" in srv.stderr_text().lower()
                if lost_race and attempt + 1 < attempts:
                    srv.expected_returncodes = {srv.proc.returncode}
                    continue
                raise
        raise AssertionError("unreachable")

    def finish(self):
        problems = []
        for srv in self.servers:
            srv.stop()
            problems += srv.problems()
        self.servers = []
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def start_ackd(ackd_bin, tmp_path):
    n = [0]

    def fresh():
        n[0] += 1
        d = tmp_path / f"ackd{n[0]}"
        d.mkdir()
        return d

    launcher = Launcher(ackd_bin, fresh)
    yield launcher
    launcher.finish()


@pytest.fixture(scope="module")
def start_ackd_module(ackd_bin, tmp_path_factory):
    launcher = Launcher(ackd_bin, lambda: tmp_path_factory.mktemp("ackd"))
    yield launcher
    launcher.finish()


@pytest.fixture
def ackd(start_ackd):
    """A server on the test defaults (debug endpoints on)."""
    return start_ackd()


@pytest.fixture
def run_ackd(ackd_bin, tmp_path):
    """run_ackd(*args, timeout=..., env=...) runs the binary in tmp_path and
    returns the CompletedProcess (text mode); a run that outlives its
    timeout is killed and fails the test; a sanitizer report fails it."""

    def run(*args, timeout=20.0 * SLOW, env=None, cwd=None):
        p = subprocess.Popen([str(ackd_bin), *map(str, args)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=cwd or tmp_path, env=child_env(env), start_new_session=True)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            pytest.fail(f"ackd {' '.join(map(str, args))} still running after {timeout}s; "
                        f"stderr:\n{err}")
        marker = sanitizer_report(err)
        if marker:
            pytest.fail(f"sanitizer report ({marker}) from ackd {' '.join(map(str, args))}:\n{err}")
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)

    return run
