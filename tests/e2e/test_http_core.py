"""The HTTP/1.1 core: keep-alive, pipelining, bodies, Expect, HEAD, routing
problems, request ids, deferred and streamed answers, clients leaving,
graceful shutdown, logs, and the configuration's command-line face."""

import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import SLOW, assert_problem, build_request, chunked, free_port, write_config

OK = b'{"status":"ok"}'


@pytest.fixture(scope="module")
def server(start_ackd_module):
    """A shared server for tests that do not count or stop anything."""
    return start_ackd_module()


# --- keep-alive and pipelining


def test_keepalive_reuses_one_connection(server):
    with server.conn() as c:
        for i in range(10):
            r = c.get("/healthz", [("X-Request-ID", f"ka-{i}")])
            assert r.status == 200 and r.body == OK
            assert r.header("X-Request-ID") == f"ka-{i}"
            assert not r.closes
        assert c.is_open()


def test_http10_keepalive_on_request(server):
    with server.conn() as c:
        for _ in range(3):
            r = c.request("GET", "/healthz", [("Connection", "keep-alive")], version="HTTP/1.0")
            assert r.status == 200 and r.version == "HTTP/1.0"
            assert r.has_token("Connection", "keep-alive")
        r = c.request("GET", "/healthz", version="HTTP/1.0")
        assert r.status == 200
        assert c.wait_closed()


def test_connection_close_is_honoured(server):
    with server.conn() as c:
        r = c.get("/healthz", [("Connection", "close")])
        assert r.status == 200 and r.closes
        assert c.wait_closed()


def test_pipelined_answers_come_in_order_behind_a_parked_one(server):
    reqs = [
        build_request("GET", "/debug/park?ms=200", [("X-Request-ID", "p-park")]),
        build_request("GET", "/healthz", [("X-Request-ID", "p-health")]),
        build_request("POST", "/debug/echo", [("X-Request-ID", "p-echo")], b"pipelined body"),
        build_request("GET", "/nope", [("X-Request-ID", "p-404")]),
        build_request("HEAD", "/healthz", [("X-Request-ID", "p-head")]),
        build_request("GET", "/healthz", [("X-Request-ID", "p-last")]),
    ]
    with server.conn() as c:
        t0 = time.monotonic()
        c.send(b"".join(reqs))
        rs = c.read_responses(6, methods=["GET", "GET", "POST", "GET", "HEAD", "GET"])
        assert [r.header("X-Request-ID") for r in rs] == [
            "p-park", "p-health", "p-echo", "p-404", "p-head", "p-last"]
        assert [r.status for r in rs] == [200, 200, 200, 404, 200, 200]
        assert rs[0].json() == {"parked": True, "status": 200}
        assert rs[1].body == OK and rs[5].body == OK
        assert rs[2].body == b"pipelined body"
        assert rs[4].body == b"" and rs[4].header("Content-Length") == str(len(OK))
        assert time.monotonic() - t0 >= 0.15
        assert c.is_open()


def test_many_pipelined_requests_in_one_send(server):
    n = 200
    with server.conn() as c:
        c.send(b"".join(build_request("GET", "/healthz", [("X-Request-ID", f"m{i}")]) for i in range(n)))
        rs = c.read_responses(n)
        assert [r.header("X-Request-ID") for r in rs] == [f"m{i}" for i in range(n)]
        assert all(r.status == 200 and r.body == OK for r in rs)


def test_pipelined_request_split_across_sends(server):
    data = b"".join(build_request("POST", "/debug/echo", [("X-Request-ID", f"s{i}")], f"body {i}")
                    for i in range(5))
    with server.conn() as c:
        c.send_slowly(data, size=7, delay=0.001)
        rs = c.read_responses(5)
        assert [r.body for r in rs] == [f"body {i}".encode() for i in range(5)]


# --- bodies


def test_content_length_body_echoed_exactly(server):
    body = bytes(range(256)) * 64 + b"\r\n\r\n\x00end"
    with server.conn() as c:
        r = c.request("POST", "/debug/echo", [("Content-Type", "application/x-test")], body)
        assert r.status == 200
        assert r.body == body
        assert r.header("Content-Type") == "application/x-test"
        assert r.header("X-Body-Length") == str(len(body))


def test_chunked_body_echoed_exactly(server):
    pieces = [b"first", bytes(range(256)), b"\r\n0\r\n\r\n", b"x" * 5000, b"last"]
    with server.conn() as c:
        r = c.request("POST", "/debug/echo",
                      [("Transfer-Encoding", "chunked"), ("Content-Type", "text/plain")],
                      chunked(*pieces))
        assert r.status == 200
        assert r.body == b"".join(pieces)
        assert r.header("X-Body-Length") == str(sum(map(len, pieces)))


def test_chunked_body_split_across_many_sends(server):
    body = b"".join(f"line {i}\n".encode() for i in range(40))
    pieces = [body[i:i + 13] for i in range(0, len(body), 13)]
    raw = build_request("POST", "/debug/echo", [("Transfer-Encoding", "chunked")],
                        chunked(*pieces, trailers=[("X-Trailer", "t")]))
    with server.conn() as c:
        c.send_slowly(raw, size=3, delay=0.0005)
        r = c.read_response()
        assert r.status == 200 and r.body == body
        assert c.get("/healthz").status == 200


def test_empty_bodies(server):
    with server.conn() as c:
        r = c.request("POST", "/debug/echo", body=b"")
        assert r.status == 200 and r.body == b"" and r.header("X-Body-Length") == "0"
        r = c.request("POST", "/debug/echo", [("Transfer-Encoding", "chunked")], chunked())
        assert r.status == 200 and r.body == b"" and r.header("X-Body-Length") == "0"
        r = c.request("POST", "/debug/echo")            # no framing at all: no body
        assert r.status == 200 and r.header("X-Body-Length") == "0"


def test_expect_100_continue(server):
    with server.conn() as c:
        c.send(b"POST /debug/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
               b"Content-Length: 11\r\n\r\n")
        interim = c.read_response(interim=True)
        assert interim.status == 100 and interim.reason == "Continue"
        c.send(b"hello world")
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello world"
        assert r.interim == []
        assert c.get("/healthz").status == 200


def test_expect_100_continue_chunked(server):
    with server.conn() as c:
        c.send(b"POST /debug/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-Continue\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        assert c.read_response(interim=True).status == 100
        c.send(chunked(b"abc", b"def"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"abcdef"


def test_expect_100_continue_without_body_sends_no_100(server):
    with server.conn() as c:
        r = c.get("/healthz", [("Expect", "100-continue")])
        assert r.status == 200 and r.interim == []


def test_unknown_expectation_is_417(server):
    with server.conn() as c:
        c.send(b"POST /debug/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: something-else\r\n"
               b"Content-Length: 5\r\n\r\n")
        r = c.read_response()
        assert_problem(r, 417, "expectation-failed")
        assert r.interim == []
        assert c.wait_closed()


# --- HEAD, routing problems


def test_head_healthz(server):
    with server.conn() as c:
        r = c.request("HEAD", "/healthz")
        assert r.status == 200
        assert r.header("Content-Length") == str(len(OK))
        assert r.header("Content-Type") == "application/json"
        assert r.body == b""
        # no body bytes were sent: the next answer parses cleanly
        r = c.get("/healthz")
        assert r.status == 200 and r.body == OK
        assert c.buf == b""


def test_readyz(server):
    r = server.get("/readyz")
    assert r.status == 200 and r.json() == {"status": "ready"}


def test_404_is_a_problem_and_keeps_the_connection(server):
    with server.conn() as c:
        r = c.get("/no/such/thing")
        p = assert_problem(r, 404, "not-found")
        assert "/no/such/thing" in p["detail"]
        assert not r.closes
        assert c.get("/healthz").status == 200


def test_405_is_a_problem_with_allow(server):
    with server.conn() as c:
        r = c.request("DELETE", "/healthz")
        assert_problem(r, 405, "method-not-allowed")
        allow = [m.strip() for m in r.header("Allow", "").split(",")]
        assert "GET" in allow and "HEAD" in allow and "DELETE" not in allow
        assert not r.closes
        r = c.request("GET", "/debug/echo")
        assert_problem(r, 405)
        assert [m.strip() for m in r.header("Allow").split(",")] == ["POST"]
        assert c.get("/healthz").status == 200


def test_head_of_404_has_no_body(server):
    with server.conn() as c:
        r = c.request("HEAD", "/nope")
        assert r.status == 404 and r.body == b""
        assert int(r.header("Content-Length")) > 0
        assert c.get("/healthz").status == 200


# --- request ids


def test_request_id_echoed(server):
    r = server.get("/healthz", [("X-Request-ID", "abc-123_XYZ.9")])
    assert r.header("X-Request-ID") == "abc-123_XYZ.9"
    r = server.get("/nope", [("X-Request-ID", "err-1")])
    assert r.status == 404 and r.header("X-Request-ID") == "err-1"


def test_request_id_generated_when_absent_or_unusable(server):
    ids = set()
    for hdrs in ([], [("X-Request-ID", "a" * 200)], [("X-Request-ID", "has space")], [("X-Request-ID", "")]):
        r = server.get("/healthz", hdrs)
        rid = r.header("X-Request-ID")
        assert rid and re.fullmatch(r"req_[0-9a-z]{10,}", rid), rid
        ids.add(rid)
    assert len(ids) == 4


# --- deferred and streamed answers


def test_parked_request_answered_from_another_thread(start_ackd):
    srv = start_ackd()
    with srv.conn() as c:
        t0 = time.monotonic()
        r = c.get("/debug/park?ms=300&status=201", [("X-Request-ID", "parked-1")])
        assert time.monotonic() - t0 >= 0.25
        assert r.status == 201
        assert r.json() == {"parked": True, "status": 201}
        assert r.header("X-Request-ID") == "parked-1"
        assert c.get("/healthz").status == 200      # the connection lives on
    # the debug thread counts an answer just after handing it over: wait for it
    s = srv.wait_stats(lambda s: s["answered"] == 1)
    assert s == {"parked": 1, "answered": 1, "canceled": 0}


def test_parked_post_and_concurrent_parks(start_ackd):
    srv = start_ackd()
    conns = [srv.conn() for _ in range(10)]
    try:
        t0 = time.monotonic()
        for i, c in enumerate(conns):
            c.send(build_request("POST", f"/debug/park?ms={300 - 20 * i}&status={240 + i}", body=b"x"))
        for i, c in enumerate(conns):
            r = c.read_response()
            assert r.status == 240 + i and r.json()["status"] == 240 + i
        # they waited together, not one after the other (10 x ~200 ms)
        assert time.monotonic() - t0 < 1.8 * SLOW
    finally:
        for c in conns:
            c.close()
    srv.wait_stats(lambda s: s["answered"] == 10)


def test_stream_chunks_arrive_over_time(server):
    with server.conn() as c:
        c.send(build_request("GET", "/debug/stream?chunks=5&ms=150"))
        r = c.read_head()
        assert r.status == 200
        assert r.header("Transfer-Encoding") == "chunked"
        assert r.header("Content-Length") is None
        got, times = [], []
        while True:
            chunk = c.read_chunk()
            if chunk is None:
                break
            got.append(chunk)
            times.append(time.monotonic())
        assert b"".join(got) == b"".join(f"chunk {i}\n".encode() for i in range(5))
        # streamed: the first chunk came well before the last
        assert times[-1] - times[0] >= 0.4, times
        assert c.get("/healthz").status == 200      # framed, so the connection lives on


def test_parked_204_has_no_body(server):
    with server.conn() as c:
        r = c.get("/debug/park?ms=10&status=204")
        assert r.status == 204 and r.body == b""
        assert r.header("Content-Length") is None
        assert c.get("/healthz").body == OK


def test_stream_to_http10_client_ends_with_close(server):
    """No chunked coding in HTTP/1.0: the body runs to the close, and no
    Content-Length may claim otherwise."""
    with server.conn() as c:
        c.send(build_request("GET", "/debug/stream?chunks=3&ms=10", version="HTTP/1.0"))
        r = c.read_response()
        assert r.status == 200 and r.header("Transfer-Encoding") is None
        assert r.header("Content-Length") is None, r
        assert r.body == b"chunk 0\nchunk 1\nchunk 2\n"
        assert c.eof


def test_client_leaving_while_parked_cancels(start_ackd):
    srv = start_ackd()
    c = srv.conn()
    c.send(build_request("GET", "/debug/park?ms=2000"))
    srv.wait_stats(lambda s: s["parked"] == 1)
    time.sleep(0.1)
    c.close()
    t0 = time.monotonic()
    s = srv.wait_stats(lambda s: s["canceled"] == 1, timeout=5.0 * SLOW)
    assert s == {"parked": 1, "answered": 0, "canceled": 1}
    # still 1 after the park's time has passed: no late answer to a dead client
    time.sleep(max(0.0, 2.2 - (time.monotonic() - t0)))
    assert srv.stats() == {"parked": 1, "answered": 0, "canceled": 1}
    assert srv.get("/healthz").status == 200


def test_many_clients_leaving_while_parked(start_ackd):
    srv = start_ackd()
    conns = [srv.conn() for _ in range(20)]
    for i, c in enumerate(conns):
        c.send(build_request("GET", f"/debug/park?ms={100 + 15 * i}"))
    srv.wait_stats(lambda s: s["parked"] == 20)
    for c in conns[::2]:
        c.close()
    for c in conns[1::2]:
        assert c.read_response().status == 200
        c.close()
    s = srv.wait_stats(lambda s: s["answered"] + s["canceled"] == 20)
    assert s["answered"] >= 10


def test_client_leaving_mid_stream(start_ackd):
    srv = start_ackd()
    c = srv.conn()
    c.send(build_request("GET", "/debug/stream?chunks=100&ms=20"))
    r = c.read_head()
    assert r.status == 200
    assert c.read_chunk() == b"chunk 0\n"
    assert c.read_chunk() == b"chunk 1\n"
    c.close()
    s = srv.wait_stats(lambda s: s["canceled"] == 1)
    assert s["answered"] == 0
    assert srv.get("/healthz").status == 200
    time.sleep(0.3)
    assert srv.stats()["canceled"] == 1


def test_client_half_closing_after_request_still_gets_answer(server):
    """A client may shut down its sending side after the request."""
    with server.conn() as c:
        c.send(build_request("GET", "/healthz"))
        c.sock.shutdown(socket.SHUT_WR)
        try:
            r = c.read_response()
        except AssertionError:
            r = None
        # either answered, or (acceptably) closed; never a crash
        assert r is None or r.status == 200
    assert server.get("/healthz").status == 200


# --- graceful shutdown


def test_sigterm_lets_the_parked_request_finish(start_ackd):
    srv = start_ackd()
    c = srv.conn()
    c.send(build_request("GET", "/debug/park?ms=1000", [("X-Request-ID", "inflight")]))
    srv.wait_stats(lambda s: s["parked"] == 1)
    idle = srv.conn()                       # an idle keep-alive connection
    assert idle.get("/healthz").status == 200
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    # new connections are refused (once the signal is handled)
    deadline = time.monotonic() + 5.0 * SLOW
    while True:
        try:
            socket.create_connection((srv.host, srv.port), timeout=1).close()
        except (ConnectionRefusedError, ConnectionResetError):
            # not accepted: refused, or reset when the handshake raced the listener's close
            break
        assert time.monotonic() < deadline, "still accepting after SIGTERM"
        time.sleep(0.02)
    # the idle connection is closed without an answer
    assert idle.wait_closed(5.0 * SLOW) and idle.leftover == b""
    idle.close()
    # the parked request still gets its answer, with Connection: close
    r = c.read_response(timeout=10.0 * SLOW)
    assert r.status == 200 and r.json() == {"parked": True, "status": 200}
    assert r.header("X-Request-ID") == "inflight"
    assert r.closes
    assert c.wait_closed()
    c.close()
    # and the process exits 0 well within the grace period (10 s)
    assert srv.wait_exit(timeout=9.0 * SLOW) == 0
    assert time.monotonic() - t0 < 9.0 * SLOW
    srv.wait_for_log(lambda rec: rec.get("msg") == "shutting down")


def test_sigterm_with_nothing_in_flight_exits_at_once(start_ackd):
    srv = start_ackd()
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(timeout=10.0 * SLOW) == 0
    assert time.monotonic() - t0 < 3.0 * SLOW


def test_sigint_is_a_graceful_stop_too(start_ackd):
    srv = start_ackd()
    srv.signal(signal.SIGINT)
    assert srv.wait_exit(timeout=10.0 * SLOW) == 0


def test_shutdown_grace_cuts_long_requests(start_ackd):
    srv = start_ackd({"server": {"shutdown_grace": "500ms"}})
    c = srv.conn()
    c.send(build_request("GET", "/debug/park?ms=5000"))
    srv.wait_stats(lambda s: s["parked"] == 1)
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(timeout=4.5) == 0          # the grace (0.5 s), not the park (5 s)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.4, elapsed
    assert c.wait_closed(), "the cut request's connection is not closed"
    c.close()
    srv.wait_for_log(lambda rec: "grace" in rec.get("msg", ""))


def test_shutdown_while_streaming(start_ackd):
    srv = start_ackd({"server": {"shutdown_grace": "300ms"}})
    c = srv.conn()
    c.send(build_request("GET", "/debug/stream?chunks=1000&ms=20"))
    assert c.read_head().status == 200
    assert c.read_chunk() is not None
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(timeout=5.0 * SLOW) == 0
    assert c.wait_closed()
    c.close()


# --- logs


def test_access_log_lines_are_json(start_ackd):
    srv = start_ackd()
    srv.get("/healthz", [("X-Request-ID", "log-ok")])
    srv.get("/nope?x=1", [("X-Request-ID", "log-404")])
    srv.request("POST", "/debug/echo", [("X-Request-ID", "log-post")], b"abc")
    with srv.conn() as c:                                   # a refusal is logged too
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert c.read_response().status == 400
    want = {"log-ok": ("GET", "/healthz", 200), "log-404": ("GET", "/nope", 404),
            "log-post": ("POST", "/debug/echo", 200)}
    for rid, (method, path, status) in want.items():
        rec = srv.wait_for_log(lambda r, rid=rid: r.get("request_id") == rid)
        assert rec["msg"] == "request"
        assert rec["level"] == "info"
        assert (rec["method"], rec["path"], rec["status"]) == (method, path, status)
        assert isinstance(rec["duration_ms"], (int, float)) and rec["duration_ms"] >= 0
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$", rec["time"]), rec
    srv.wait_for_log(lambda r: r.get("status") == 400)
    # every line is a JSON object with level, time, msg
    for rec in srv.log_records():
        assert {"level", "time", "msg"} <= set(rec), rec
        assert rec["level"] in ("debug", "info", "warn", "error"), rec


def test_access_log_off(start_ackd):
    srv = start_ackd({"server": {"access_log": "off"}})
    srv.get("/healthz", [("X-Request-ID", "quiet")])
    srv.stop()
    assert not [r for r in srv.log_records() if r.get("msg") == "request"]
    assert "quiet" not in srv.stderr_text()


def test_parked_request_log_has_its_duration(start_ackd):
    srv = start_ackd()
    srv.get("/debug/park?ms=200", [("X-Request-ID", "slow-one")])
    rec = srv.wait_for_log(lambda r: r.get("request_id") == "slow-one")
    assert rec["duration_ms"] >= 150


# --- configuration on the command line


def test_bad_config_names_file_line_and_key(run_ackd, tmp_path):
    write_config(tmp_path / "bad.conf", "[server]\nmax_headers = lots\n")
    p = run_ackd("serve", "--config", "bad.conf")
    assert p.returncode == 2, p
    assert "bad.conf:2" in p.stderr, p.stderr
    assert "max_headers" in p.stderr
    assert "lots" in p.stderr


def test_bad_config_unknown_key_and_bad_duration(run_ackd, tmp_path):
    write_config(tmp_path / "bad.conf",
                 "[server]\nlisten = 127.0.0.1:1\n\nhead_timeout = soon\nno_such_option = 1\n")
    p = run_ackd("serve", "--config", "bad.conf")
    assert p.returncode == 2, p
    assert "bad.conf:4" in p.stderr and "head_timeout" in p.stderr, p.stderr
    assert "bad.conf:5" in p.stderr and "no_such_option" in p.stderr, p.stderr
    p = run_ackd("config", "check", "bad.conf")
    assert p.returncode == 2 and "bad.conf:4" in p.stderr


def test_bad_config_opens_no_socket(run_ackd, tmp_path):
    port = free_port()
    write_config(tmp_path / "bad.conf", f"[server]\nlisten = 127.0.0.1:{port}\nmax_body = huge\n")
    p = run_ackd("serve", "--config", "bad.conf")
    assert p.returncode == 2
    assert "listening" not in p.stderr


def test_missing_config_file(run_ackd):
    p = run_ackd("serve", "--config", "does-not-exist.conf")
    assert p.returncode == 2, p
    assert "does-not-exist.conf" in p.stderr


def test_config_check_prints_the_effective_config(run_ackd, tmp_path):
    port = free_port()
    write_config(tmp_path / "good.conf", {
        "server": {"listen": f"127.0.0.1:{port}", "max_body": "2m", "head_timeout": "250ms"},
        "storage": {"path": str(tmp_path / "ackd.db")},
    })
    p = run_ackd("config", "check", "good.conf")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "[server]" in out and "[storage]" in out
    assert f"listen = 127.0.0.1:{port}" in out
    assert re.search(r"^max_body = 2m$", out, re.M), out
    assert re.search(r"^head_timeout = 250ms$", out, re.M), out
    assert re.search(r"^max_headers = 100$", out, re.M), out        # a default
    # what it prints loads back
    (tmp_path / "printed.conf").write_text(out)
    p2 = run_ackd("config", "check", "printed.conf")
    assert p2.returncode == 0, p2.stderr
    assert p2.stdout == out


def test_wildcard_listen_without_keys_is_refused(run_ackd, tmp_path):
    port = free_port()
    write_config(tmp_path / "open.conf", {
        "server": {"listen": f"0.0.0.0:{port}"},
        "storage": {"path": str(tmp_path / "ackd.db")},
    })
    p = run_ackd("serve", "--config", "open.conf", timeout=10.0 * SLOW)
    assert p.returncode == 2, p
    assert "loopback" in p.stderr, p.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_unknown_command_and_usage(run_ackd):
    assert run_ackd("frobnicate").returncode == 2
    assert run_ackd().returncode == 2
    assert run_ackd("serve", "--bogus").returncode == 2
    p = run_ackd("version")
    assert p.returncode == 0 and p.stdout.startswith("ackd ")
    # the conventional spellings: --version, and --help / -h at each level, on stdout, exit 0
    for args in (("--version",), ("-V",)):
        q = run_ackd(*args)
        assert q.returncode == 0 and q.stdout == p.stdout, args
    for args, head in ((("--help",), "usage: ackd COMMAND"), (("-h",), "usage: ackd COMMAND"),
                       (("serve", "--help"), "usage: ackd serve"),
                       (("config", "check", "-h"), "usage: ackd config check")):
        q = run_ackd(*args)
        assert q.returncode == 0 and q.stdout.startswith(head), (args, q.stdout, q.stderr)
