"""Limits and timeouts: each answered with its status, then the connection
closed (or, for keep-alive idleness, closed without an answer).

Size limits are checked once at their defaults (8 KiB request line and
field, 100 fields, 32 KiB of fields, 1 MiB body) and once configured small;
timeouts are configured short (a few hundred ms) so the suite stays fast.
"""

import socket
import time

import pytest

from conftest import SLOW, assert_problem, build_request, chunked

KIB = 1024


def request_line_of(n, path="/healthz?pad="):
    """'GET <target> HTTP/1.1' exactly n bytes long (CRLF not counted)."""
    fixed = len("GET ") + len(path) + len(" HTTP/1.1")
    return f"GET {path}{'a' * (n - fixed)} HTTP/1.1"


def head(line, fields=()):
    return (line + "\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
            + "\r\n").encode()


def refused(c, status, slug=None):
    """Reads the refusal, checks it is a closing problem, and the close."""
    r = c.read_response()
    assert_problem(r, status, slug)
    assert r.closes, r
    assert c.wait_closed(), "the server kept the connection open"
    return r


@pytest.fixture(scope="module")
def default_server(start_ackd_module):
    return start_ackd_module()


@pytest.fixture(scope="module")
def small_server(start_ackd_module):
    return start_ackd_module({"server": {
        "max_request_line": "512",
        "max_header_size": "512",
        "max_headers": 10,
        "max_headers_total": "2k",
        "max_body": "1k",
    }})


# --- request line (414)


def test_request_line_at_default_limit_is_served(default_server):
    line = request_line_of(8 * KIB)
    assert len(line) == 8192
    with default_server.conn() as c:
        c.send(head(line))
        r = c.read_response()
        assert r.status == 200, r
        assert c.get("/healthz").status == 200


def test_request_line_over_default_limit_is_414(default_server):
    with default_server.conn() as c:
        c.send(head(request_line_of(8 * KIB + 1)))
        refused(c, 414, "uri-too-long")


def test_huge_request_line_is_414_without_waiting_for_its_end(default_server):
    """414 comes once the limit is crossed, not when the line ends."""
    with default_server.conn() as c:
        c.send(b"GET /" + b"a" * (16 * KIB))    # no end of line
        refused(c, 414)


def test_request_line_configured_limit(small_server):
    with small_server.conn() as c:
        c.send(head(request_line_of(512)))
        assert c.read_response().status == 200
    with small_server.conn() as c:
        c.send(head(request_line_of(513)))
        refused(c, 414)


# --- header fields (431)


def test_one_field_under_default_limit_is_served(default_server):
    with default_server.conn() as c:
        c.send(head("GET /healthz HTTP/1.1", [("X-Big", "a" * (8 * KIB - 100))]))
        assert c.read_response().status == 200


def test_one_field_over_default_limit_is_431(default_server):
    with default_server.conn() as c:
        c.send(head("GET /healthz HTTP/1.1", [("X-Big", "a" * (8 * KIB + 1))]))
        refused(c, 431, "header-fields-too-large")


def test_100_fields_are_served_101_are_431(default_server):
    # Host is one of them
    ok = [(f"X-F{i}", "v") for i in range(99)]
    with default_server.conn() as c:
        c.send(head("GET /healthz HTTP/1.1", ok))
        assert c.read_response().status == 200
    with default_server.conn() as c:
        c.send(head("GET /healthz HTTP/1.1", ok + [("X-F99", "v")]))
        refused(c, 431)


def test_fields_totalling_over_32k_are_431(default_server):
    big = "a" * 7000
    with default_server.conn() as c:            # 4 x 7000 < 32 KiB
        c.send(head("GET /healthz HTTP/1.1", [(f"X-B{i}", big) for i in range(4)]))
        assert c.read_response().status == 200
    with default_server.conn() as c:            # 5 x 7000 > 32 KiB, each under 8 KiB
        c.send(head("GET /healthz HTTP/1.1", [(f"X-B{i}", big) for i in range(5)]))
        refused(c, 431)


def test_field_limits_configured(small_server):
    with small_server.conn() as c:
        c.send(head("GET /healthz HTTP/1.1", [("X-A", "a" * 600)]))
        refused(c, 431)
    with small_server.conn() as c:              # Host + 10
        c.send(head("GET /healthz HTTP/1.1", [(f"X-{i}", "v") for i in range(10)]))
        refused(c, 431)
    with small_server.conn() as c:              # 5 x 450 > 2k, each under 512
        c.send(head("GET /healthz HTTP/1.1", [(f"X-{i}", "a" * 450) for i in range(5)]))
        refused(c, 431)
    with small_server.conn() as c:              # within all three
        c.send(head("GET /healthz HTTP/1.1", [(f"X-{i}", "a" * 400) for i in range(3)]))
        assert c.read_response().status == 200


# --- body (413)


def test_body_of_exactly_max_body_is_served(default_server):
    body = bytes(range(256)) * (4 * KIB)        # 1 MiB
    with default_server.conn() as c:
        r = c.request("POST", "/debug/echo", [("Content-Type", "application/octet-stream")], body)
        assert r.status == 200
        assert r.header("X-Body-Length") == str(1024 * KIB)
        assert r.body == body


def test_content_length_over_max_body_is_413_before_the_body(default_server):
    """Only the head is sent: the 413 must not wait for the body."""
    with default_server.conn() as c:
        c.send(b"POST /debug/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1048577\r\n\r\n")
        refused(c, 413, "content-too-large")


def test_expect_continue_over_max_body_is_413_without_100(default_server):
    with default_server.conn() as c:
        c.send(b"POST /debug/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
               b"Content-Length: 2000000\r\n\r\n")
        r = refused(c, 413)
        assert r.interim == [], "100 Continue sent for a body that is refused"


def test_content_length_over_configured_max_body(small_server):
    with small_server.conn() as c:
        r = c.request("POST", "/debug/echo", body=b"x" * 1024)
        assert r.status == 200 and len(r.body) == 1024
    with small_server.conn() as c:
        c.send(b"POST /debug/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1025\r\n\r\n")
        refused(c, 413)


def test_chunked_body_up_to_max_body_is_served(small_server):
    with small_server.conn() as c:
        c.send(build_request("POST", "/debug/echo", [("Transfer-Encoding", "chunked")],
                             chunked(b"a" * 500, b"b" * 500, b"c" * 24)))
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"a" * 500 + b"b" * 500 + b"c" * 24


def test_chunked_body_over_max_body_is_413(small_server):
    with small_server.conn() as c:
        c.send(build_request("POST", "/debug/echo", [("Transfer-Encoding", "chunked")],
                             chunked(b"a" * 500, b"b" * 500, b"c" * 25)))
        refused(c, 413)


def test_chunked_body_over_max_body_is_413_before_its_end(small_server):
    """The 413 comes when the limit is crossed; the last chunk never comes."""
    with small_server.conn() as c:
        c.send(b"POST /debug/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"400\r\n" + b"a" * 1024 + b"\r\n" + b"1\r\nb\r\n")
        refused(c, 413)


# --- timeouts


def test_head_timeout_is_408_then_close(start_ackd):
    srv = start_ackd({"server": {"head_timeout": "300ms"}})
    with srv.conn() as c:
        t0 = time.monotonic()
        c.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0")    # and nothing more
        r = refused(c, 408, "request-timeout")
        assert time.monotonic() - t0 >= 0.25
        assert "head" in r.json()["detail"]
    assert srv.get("/healthz").status == 200


def test_head_timeout_counts_the_whole_head_not_gaps(start_ackd):
    """A head trickling in faster than the timeout but longer in all is cut."""
    srv = start_ackd({"server": {"head_timeout": "400ms"}})
    with srv.conn() as c:
        t0 = time.monotonic()
        c.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for i in range(100):
            if c.wait_closed(0.05):             # also collects what was answered
                break
            try:
                c.send(f"X-Slow-{i}: 1\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                break
        elapsed = time.monotonic() - t0
        r = c.read_response()
        assert_problem(r, 408)
        assert 0.35 <= elapsed < 4.0 * SLOW


def test_connection_sending_nothing_gets_408(start_ackd):
    srv = start_ackd({"server": {"head_timeout": "300ms"}})
    with srv.conn() as c:
        refused(c, 408)


def test_body_idle_timeout_is_408_then_close(start_ackd):
    srv = start_ackd({"server": {"body_timeout": "300ms"}})
    with srv.conn() as c:
        t0 = time.monotonic()
        c.send(b"POST /debug/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabc")
        r = refused(c, 408, "request-timeout")
        assert time.monotonic() - t0 >= 0.25
        assert "body" in r.json()["detail"]


def test_body_timeout_is_per_gap_not_total(start_ackd):
    """A body that keeps arriving is read even if it takes longer in all."""
    srv = start_ackd({"server": {"body_timeout": "600ms"}})
    with srv.conn() as c:
        c.send(b"POST /debug/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 12\r\n\r\n")
        t0 = time.monotonic()
        c.send_parts([b"a"] * 12, delay=0.1)
        r = c.read_response()
        assert r.status == 200 and r.body == b"a" * 12
        assert time.monotonic() - t0 > 0.6     # longer than one timeout in all


def test_chunked_body_idle_timeout(start_ackd):
    srv = start_ackd({"server": {"body_timeout": "300ms"}})
    with srv.conn() as c:
        c.send(b"POST /debug/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n")
        refused(c, 408)


def test_keepalive_idle_closes_without_answer(start_ackd):
    srv = start_ackd({"server": {"keepalive_timeout": "300ms"}})
    with srv.conn() as c:
        assert c.get("/healthz").status == 200
        t0 = time.monotonic()
        assert c.wait_closed(5.0 * SLOW), "idle connection not closed"
        assert time.monotonic() - t0 >= 0.25
        assert c.leftover == b"", f"an idle close must not answer: {c.leftover!r}"


def test_keepalive_timer_restarts_with_each_request(start_ackd):
    srv = start_ackd({"server": {"keepalive_timeout": "1s"}})
    with srv.conn() as c:
        t0 = time.monotonic()
        for _ in range(6):
            assert c.get("/healthz").status == 200
            time.sleep(0.25)
        assert time.monotonic() - t0 > 1.0
        assert c.get("/healthz").status == 200


# --- connections


def test_max_connections(start_ackd):
    srv = start_ackd({"server": {"max_connections": 5}})
    conns = []
    try:
        deadline = time.monotonic() + 10 * SLOW
        while len(conns) < 5:
            # connections of the readiness probe may still be closing: retry
            c = srv.conn()
            c.send(build_request("GET", "/healthz"))
            r = c.read_response()
            if r.status == 200:
                conns.append(c)
                continue
            assert r.status == 503, r
            c.close()
            assert time.monotonic() < deadline, "could not open 5 connections"
            time.sleep(0.05)
        with srv.conn() as sixth:
            r = refused(sixth, 503, "service-unavailable")
            assert "connection" in r.json()["detail"]
        # the five still work
        for c in conns:
            assert c.get("/healthz").status == 200
        # a slot freed is a slot available again
        conns.pop().close()
        deadline = time.monotonic() + 5 * SLOW
        while True:
            with srv.conn() as c:
                r = c.get("/healthz")
                if r.status == 200:
                    break
            assert time.monotonic() < deadline, "a closed connection's slot never came back"
            time.sleep(0.05)
    finally:
        for c in conns:
            c.close()


def test_max_requests_per_connection(start_ackd):
    srv = start_ackd({"server": {"max_requests_per_connection": 3}})
    with srv.conn() as c:
        r1 = c.get("/healthz")
        r2 = c.get("/healthz")
        assert r1.status == r2.status == 200
        assert not r1.closes and not r2.closes
        r3 = c.get("/healthz")
        assert r3.status == 200 and r3.closes, r3
        assert c.wait_closed()
        assert c.leftover == b""


def test_max_requests_per_connection_with_pipelining(start_ackd):
    """Pipelined requests past the limit are not answered."""
    srv = start_ackd({"server": {"max_requests_per_connection": 3}})
    with srv.conn() as c:
        c.send(b"".join(build_request("GET", "/healthz", [("X-Request-ID", f"r{i}")]) for i in range(5)))
        rs = c.read_responses(3)
        assert [r.header("X-Request-ID") for r in rs] == ["r0", "r1", "r2"]
        assert rs[2].closes
        assert c.wait_closed()
        assert c.leftover == b""


def test_server_survives_many_limit_refusals(default_server):
    for raw in [head(request_line_of(9000)), head("GET /healthz HTTP/1.1", [("X", "a" * 9000)]),
                b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n"] * 5:
        with default_server.conn() as c:
            try:
                c.send(raw)
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                pass
            r = c.read_response()
            assert r.status in (413, 414, 431)
    assert default_server.get("/healthz").status == 200
