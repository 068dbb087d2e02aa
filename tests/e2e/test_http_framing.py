"""Strict HTTP/1.1 framing (RFC 9112), sent as raw bytes.

Every malformed request is answered with a problem (400 unless listed) and
the connection is closed after it: a server that guessed at the framing of a
bad request could read a smuggled request in what follows. Each rule has a
well-formed twin in WELL_FORMED, answered normally, so a case cannot pass
because of some unrelated defect of the bytes.
"""

import pytest

from conftest import assert_problem

HOST = b"Host: 127.0.0.1\r\n"
GET = b"GET /healthz HTTP/1.1\r\n" + HOST
ECHO = b"POST /debug/echo HTTP/1.1\r\n" + HOST


def case(name, raw, status=400, closed=True):
    if isinstance(status, int):
        status = (status,)
    return pytest.param(raw, status, closed, id=name)


MALFORMED = [
    # Content-Length together with Transfer-Encoding (request smuggling)
    case("cl-and-te", ECHO + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    case("te-and-cl", ECHO + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    case("cl-zero-and-te", ECHO + b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    # repeated Content-Length, same or different values, or as a list
    case("cl-repeated-same", ECHO + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    case("cl-repeated-different", ECHO + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    case("cl-list", ECHO + b"Content-Length: 5, 5\r\n\r\nhello"),
    # malformed Content-Length
    case("cl-letters", ECHO + b"Content-Length: abc\r\n\r\n"),
    case("cl-negative", ECHO + b"Content-Length: -1\r\n\r\n"),
    case("cl-plus-sign", ECHO + b"Content-Length: +5\r\n\r\nhello"),
    case("cl-hex", ECHO + b"Content-Length: 0x5\r\n\r\nhello"),
    case("cl-inner-space", ECHO + b"Content-Length: 1 0\r\n\r\nhellohello"),
    case("cl-empty", ECHO + b"Content-Length: \r\n\r\n"),
    case("cl-trailing-letters", ECHO + b"Content-Length: 5x\r\n\r\nhello"),
    case("cl-overflow", ECHO + b"Content-Length: 99999999999999999999999999\r\n\r\n"),
    # Transfer-Encoding other than a final chunked
    case("te-gzip", ECHO + b"Transfer-Encoding: gzip\r\n\r\nhello"),
    case("te-identity", ECHO + b"Transfer-Encoding: identity\r\n\r\nhello"),
    case("te-chunked-then-gzip", ECHO + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
    case("te-fields-chunked-then-gzip",
         ECHO + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n"),
    case("te-unknown-coding", ECHO + b"Transfer-Encoding: frobnicate\r\n\r\n"),
    # a coding we cannot decode before a final chunked: not implemented
    case("te-gzip-then-chunked", ECHO + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    case("te-fields-gzip-then-chunked",
         ECHO + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    case("te-chunked-twice", ECHO + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", (400, 501)),
    # Transfer-Encoding on HTTP/1.0
    case("te-http10", b"POST /debug/echo HTTP/1.0\r\n" + HOST
         + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    # obs-fold
    case("obs-fold-space", GET + b"X-Folded: one\r\n two\r\n\r\n"),
    case("obs-fold-tab", GET + b"X-Folded: one\r\n\ttwo\r\n\r\n"),
    case("obs-fold-first-field", b"GET /healthz HTTP/1.1\r\n two\r\n" + HOST + b"\r\n"),
    # whitespace between a field name and its colon
    case("space-before-colon", b"GET /healthz HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n"),
    case("tab-before-colon", GET + b"X-Thing\t: 1\r\n\r\n"),
    case("space-before-colon-cl", ECHO + b"Content-Length : 5\r\n\r\nhello"),
    # bare LF
    case("bare-lf-request-line", b"GET /healthz HTTP/1.1\n" + HOST + b"\r\n"),
    case("bare-lf-field", GET + b"X-A: 1\n\r\n"),
    case("bare-lf-everywhere", b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n"),
    case("bare-lf-end-of-head", GET + b"\n"),
    # the trailer section after the last chunk has the head's line syntax
    case("bare-lf-after-last-chunk", ECHO + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\n"),
    case("bare-lf-in-trailer", ECHO + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\n\r\n"),
    case("obs-fold-in-trailer",
         ECHO + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"),
    # bare CR
    case("bare-cr-request-line", b"GET /healthz HTTP/1.1\r" + HOST + b"\r\n"),
    case("bare-cr-in-value", GET + b"X-A: one\rtwo\r\n\r\n"),
    case("bare-cr-ends-field", GET + b"X-A: 1\rX-B: 2\r\n\r\n"),
    case("bare-cr-in-target", b"GET /heal\rthz HTTP/1.1\r\n" + HOST + b"\r\n"),
    # NUL and other control characters in names and values
    case("nul-in-name", GET + b"X-\x00A: 1\r\n\r\n"),
    case("nul-in-value", GET + b"X-A: a\x00b\r\n\r\n"),
    case("nul-ends-value", GET + b"X-A: ab\x00\r\n\r\n"),
    case("ctl-in-name", GET + b"X-\x01A: 1\r\n\r\n"),
    case("ctl-in-value", GET + b"X-A: a\x01b\r\n\r\n"),
    case("esc-in-value", GET + b"X-A: a\x1b[31mb\r\n\r\n"),
    case("del-in-value", GET + b"X-A: a\x7fb\r\n\r\n"),
    case("del-in-name", GET + b"X-\x7fA: 1\r\n\r\n"),
    case("ctl-in-host", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\x08\r\n\r\n"),
    case("ctl-in-target", b"GET /heal\x01thz HTTP/1.1\r\n" + HOST + b"\r\n"),
    case("nul-in-target", b"GET /heal\x00thz HTTP/1.1\r\n" + HOST + b"\r\n"),
    # Host: more than one, or none in HTTP/1.1
    case("two-hosts", GET + b"Host: 127.0.0.1\r\n\r\n"),
    case("two-hosts-different", GET + b"Host: example.com\r\n\r\n"),
    case("two-hosts-case", GET + b"hOsT: 127.0.0.1\r\n\r\n"),
    case("http11-without-host", b"GET /healthz HTTP/1.1\r\nX-A: 1\r\n\r\n"),
    # malformed chunk sizes and chunk framing
    case("chunk-size-letters", ECHO + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    case("chunk-size-negative", ECHO + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
    case("chunk-size-0x", ECHO + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"),
    case("chunk-size-empty", ECHO + b"Transfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n"),
    case("chunk-size-overflow",
         ECHO + b"Transfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    case("chunk-size-bare-lf", ECHO + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
    case("chunk-data-too-long", ECHO + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n"),
    case("chunk-size-space-inside", ECHO + b"Transfer-Encoding: chunked\r\n\r\n1 0\r\nhello\r\n0\r\n\r\n"),
    # unknown methods: not implemented
    case("unknown-method", b"FROB /healthz HTTP/1.1\r\n" + HOST + b"\r\n", 501),
    case("lowercase-method", b"get /healthz HTTP/1.1\r\n" + HOST + b"\r\n", 501),
    # request lines that are not HTTP/1.x
    case("version-garbage", b"GET /healthz HTTQ/1.1\r\n" + HOST + b"\r\n"),
    case("version-2", b"GET /healthz HTTP/2.0\r\n" + HOST + b"\r\n", (400, 505)),
    case("request-line-extra-space", b"GET  /healthz HTTP/1.1\r\n" + HOST + b"\r\n"),
    case("request-line-no-version", b"GET /healthz\r\n" + HOST + b"\r\n", (400, 505)),
    case("field-without-colon", GET + b"X-A 1\r\n\r\n"),
    # HTTP/2 with prior knowledge: its preface is answered, not misread
    case("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    # a target that is not a path (only OPTIONS may ask about "*")
    case("asterisk-target-get", b"GET * HTTP/1.1\r\n" + HOST + b"\r\n"),
    # a path with dot segments (clients resolve them): a route's parameter
    # could take "..", and the upstream would resolve it out of the route
    case("dot-dot-segment", b"GET /healthz/.. HTTP/1.1\r\n" + HOST + b"\r\n"),
    case("dot-segment", b"GET /./healthz HTTP/1.1\r\n" + HOST + b"\r\n"),
    case("dot-dot-percent-encoded", b"GET /v1/%2E%2e/healthz HTTP/1.1\r\n" + HOST + b"\r\n"),
    case("dot-dot-before-encoded-slash", b"GET /x/..%2Fhealthz HTTP/1.1\r\n" + HOST + b"\r\n"),
    case("dot-dot-before-backslash", b"GET /x/..\\healthz HTTP/1.1\r\n" + HOST + b"\r\n"),
    case("dot-dot-absolute-form", b"GET http://a/x/../healthz HTTP/1.1\r\n" + HOST + b"\r\n"),
    # a field the API reads as one value, twice with different values: no
    # guess at which one counts (the key that dedupes, the tenant's key, the
    # body's type, the trace)
    case("two-idempotency-keys", GET + b"Idempotency-Key: a\r\nIdempotency-Key: b\r\n\r\n"),
    case("two-authorizations", GET + b"Authorization: Bearer a\r\nauthorization: Bearer b\r\n\r\n"),
    case("two-content-types", ECHO + b"Content-Type: application/json\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 2\r\n\r\n{}"),
    case("two-callback-urls", GET + b"Callback-URL: http://a/\r\nCallback-URL: http://b/\r\n\r\n"),
    case("two-traceparents", GET + b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
         b"traceparent: 00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"),
    case("field-empty-name", GET + b": 1\r\n\r\n"),
]


# (name, raw bytes, expected status, expected body or None, closed after)
WELL_FORMED = [
    pytest.param(GET + b"\r\n", 200, b'{"status":"ok"}', False, id="get"),
    pytest.param(b"GET /healthz HTTP/1.0\r\n\r\n", 200, b'{"status":"ok"}', True, id="http10-no-host"),
    pytest.param(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, None, False,
                 id="http10-keep-alive"),
    pytest.param(GET + b"Connection: close\r\n\r\n", 200, None, True, id="connection-close"),
    pytest.param(ECHO + b"Content-Length: 5\r\n\r\nhello", 200, b"hello", False, id="cl"),
    pytest.param(ECHO + b"Content-Length: 0\r\n\r\n", 200, b"", False, id="cl-zero"),
    pytest.param(ECHO + b"Content-Length: 005\r\n\r\nhello", 200, b"hello", False, id="cl-leading-zeros"),
    pytest.param(ECHO + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200, b"hello",
                 False, id="chunked"),
    pytest.param(ECHO + b"Transfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200, b"hello",
                 False, id="chunked-capitalized"),
    pytest.param(ECHO + b"Transfer-Encoding: chunked\r\n\r\nA\r\nhellohello\r\na\r\nworldworld\r\n0\r\n\r\n",
                 200, b"hellohelloworldworld", False, id="chunk-size-hex-both-cases"),
    pytest.param(ECHO + b"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n", 200, b"hello",
                 False, id="chunk-extension"),
    pytest.param(ECHO + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n", 200,
                 b"hello", False, id="chunked-trailer"),
    pytest.param(GET + b"X-A: one\ttwo\r\n\r\n", 200, None, False, id="tab-in-value"),
    pytest.param(GET + b"X-A:   padded   \r\n\r\n", 200, None, False, id="ows-around-value"),
    pytest.param(GET + b"X-A:\r\n\r\n", 200, None, False, id="empty-value"),
    pytest.param(GET + b"X-A: caf\xc3\xa9\r\n\r\n", 200, None, False, id="obs-text-in-value"),
    pytest.param(b"GET /healthz?x=1 HTTP/1.1\r\n" + HOST + b"\r\n", 200, None, False, id="query"),
    pytest.param(b"GET /healthz?next=/a/../b HTTP/1.1\r\n" + HOST + b"\r\n", 200, None, False,
                 id="dot-segments-in-the-query"),
    # the absolute form (RFC 9112 §3.2.2: a server MUST accept it)
    pytest.param(b"GET http://127.0.0.1/healthz HTTP/1.1\r\n" + HOST + b"\r\n", 200, b'{"status":"ok"}',
                 False, id="absolute-form"),
    pytest.param(b"GET HTTPS://Example.COM:8443/healthz?x=1 HTTP/1.1\r\n" + HOST + b"\r\n", 200,
                 b'{"status":"ok"}', False, id="absolute-form-https-port-query"),
    # the same value twice is one value; list fields (Prefer) may repeat
    pytest.param(GET + b"Idempotency-Key: a\r\nIdempotency-Key: a\r\n\r\n", 200, None, False,
                 id="single-field-repeated-same"),
    pytest.param(GET + b"Prefer: wait=1\r\nPrefer: respond-async\r\n\r\n", 200, None, False,
                 id="prefer-twice"),
]


@pytest.fixture(scope="module")
def server(start_ackd_module):
    return start_ackd_module({"server": {"max_body": "64k"}})


@pytest.mark.parametrize("raw,statuses,closed", MALFORMED)
def test_malformed_request_is_refused_and_closed(server, raw, statuses, closed):
    with server.conn() as c:
        c.send(raw)
        r = c.read_response()
        assert r.status in statuses, r
        assert_problem(r, r.status)
        assert r.version == "HTTP/1.1"
        if closed:
            assert r.closes, f"no Connection: close on {r}"
            assert c.wait_closed(), "the server kept the connection open"
            assert c.leftover == b"", f"bytes after the error answer: {c.leftover!r}"


@pytest.mark.parametrize("raw,status,body,closed", WELL_FORMED)
def test_well_formed_twin_is_served(server, raw, status, body, closed):
    with server.conn() as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == status, r
        if body is not None:
            assert r.body == body
        if closed:
            assert c.wait_closed()
        else:
            assert not r.closes, r
            # and the connection is still usable
            r2 = c.get("/healthz")
            assert r2.status == 200 and r2.body == b'{"status":"ok"}'


BYTE_BY_BYTE = ["cl-and-te", "cl-repeated-same", "te-gzip-then-chunked", "obs-fold-space",
                "obs-fold-tab", "bare-lf-request-line", "bare-lf-end-of-head", "bare-cr-in-value",
                "nul-in-value", "two-hosts", "http11-without-host", "chunk-size-letters",
                "request-line-extra-space", "field-empty-name"]


@pytest.mark.parametrize("name", BYTE_BY_BYTE)
def test_rules_hold_across_read_boundaries(server, name):
    """The same bytes, one per write: every check must see across reads."""
    (raw, statuses, _), = [p.values for p in MALFORMED if p.id == name]
    with server.conn() as c:
        try:
            c.send_slowly(raw, size=1, delay=0.0005)
        except (BrokenPipeError, ConnectionResetError):
            pass                                # refused before the last byte
        r = c.read_response()
        assert r.status in statuses, r
        assert c.wait_closed()


@pytest.mark.parametrize("name", ["get", "chunked", "chunked-trailer", "empty-value", "ows-around-value"])
def test_well_formed_across_read_boundaries(server, name):
    (raw, status, body, _), = [p.values for p in WELL_FORMED if p.id == name]
    with server.conn() as c:
        c.send_slowly(raw, size=1, delay=0.0005)
        r = c.read_response()
        assert r.status == status, r
        if body is not None:
            assert r.body == body


def test_problem_shapes(server):
    """The problem documents of a few refusals, in full."""
    expected = [
        (ECHO + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "bad-request"),
        (ECHO + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "not-implemented"),
        (b"FROB / HTTP/1.1\r\n" + HOST + b"\r\n", 501, "not-implemented"),
        (GET + b"Host: 127.0.0.1\r\n\r\n", 400, "bad-request"),
        (GET + b"X-A: 1\r\n 2\r\n\r\n", 400, "bad-request"),
    ]
    for raw, status, slug in expected:
        with server.conn() as c:
            c.send(raw)
            r = c.read_response()
            p = assert_problem(r, status, slug)
            assert set(p) >= {"type", "title", "status", "detail"}
            assert p["title"] == r.reason, (p, r.reason)
            assert int(r.header("Content-Length")) == len(r.body)
            assert r.header("Date") and r.header("Server")
            assert c.wait_closed()


def test_nothing_after_a_framing_error_is_served(server):
    """A request smuggled behind a refused one is never answered."""
    smuggled = b"GET /debug/stats HTTP/1.1\r\n" + HOST + b"\r\n"
    with server.conn() as c:
        c.send(ECHO + b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled)
        r = c.read_response()
        assert r.status == 400
        assert c.wait_closed()
        assert c.leftover == b""


def test_refusal_mid_pipeline_answers_earlier_requests(server):
    """Requests before the bad one are answered in order, then the 400."""
    with server.conn() as c:
        c.send(GET + b"X-Request-ID: one\r\n\r\n" + GET + b"X-Request-ID: two\r\n\r\n"
               + GET + b"X-Bad: a\x01b\r\n\r\n" + GET + b"\r\n")
        r1, r2, r3 = c.read_responses(3)
        assert (r1.status, r1.header("X-Request-ID")) == (200, "one")
        assert (r2.status, r2.header("X-Request-ID")) == (200, "two")
        assert_problem(r3, 400)
        assert c.wait_closed()
        assert c.leftover == b""


def test_server_healthy_after_the_table(server):
    r = server.get("/healthz")
    assert r.status == 200
    assert server.running()
