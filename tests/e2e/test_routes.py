"""The proxy face end to end (issue 4 §1, SPEC §2 and §5): `[route METHOD
/path]` sections in front of a fake upstream (tests/e2e/upstream.py).

  - every mode x Prefer combination of SPEC §2's table, against a fast and a
    slow upstream: the upstream's own answer (status, content type, body,
    headers) vs 202 vs 504, Preference-Applied, Vary, Location,
    Retry-After, Task-Id, and how long ackd waited;
  - what a client can read later: /v1/tasks/{id}/result while running and
    once done, after a 202 and after a 504;
  - path parameters, upstream_path, the query string, GET routes, binary
    bodies, 404/405 outside the routes;
  - Idempotency-Key on routes: a repeat in flight attaches (one upstream
    call), a repeat afterwards is replayed, a different body is a 422;
  - a sync client that leaves early: the task still completes;
  - a route served by a pull worker;
  - CR/LF cannot get into a request (obs-fold, bare CR are 400s).

One server and one fake upstream serve the whole module; each case has its
own paths (and keys), so the cases never see each other's calls. The mode
table is fired concurrently once (the waits overlap) and each case then
checks its own answer."""

import concurrent.futures
import json
import re
import socket
import threading
import time
import uuid

import pytest
import requests

from conftest import SLOW, RawConn, assert_problem, build_request
from queue_helpers import SOON, TASK_ID_RE, Api, problem, queue_config, wait_for
from upstream import Answer, answer, make_upstream, upstream_module  # noqa: F401 (fixtures)

SLOW_DELAY = 3.0        # the slow upstream: longer than any wait below
SYNC_TIMEOUT = 1.5      # /m/sync and /m/strict
AUTO_WAIT = 0.5         # /m/auto's default wait
MAX_WAIT = 1.0          # cap on Prefer: wait=N for /m/sync, /m/async, /m/auto
AT_ONCE = 0.8           # "202 at once": well under any wait of a case that waits
LATE = 1.5              # slack past a wait's end (a loaded 2-core machine, ASan)

FAST_CT = "application/vnd.fake+json"


def matrix_upstream(req, n):
    """/m/...: fast answers 201 at once with its own content type and a
    header; .../slow answers the same after SLOW_DELAY."""
    speed = req.path.rsplit("/", 1)[-1]
    body = {"speed": speed, "path": req.path, "task_id": req.header("Task-Id")}
    return Answer(201, json.dumps(body), {"X-Backend": "fake", "Content-Type": FAST_CT},
                  delay=SLOW_DELAY if speed == "slow" else 0.0)


@pytest.fixture(scope="module")
def server(start_ackd_module, upstream_module):
    up = upstream_module
    up.default(answer(200, {"ok": True}))
    for mode in ("sync", "strict", "async", "auto"):
        for speed in ("fast", "slow"):
            up.on(f"/m/{mode}/{speed}", matrix_upstream)
    origin = up.origin
    q = {"upstream": origin, "max_attempts": 3, "retry_base": "50ms", "retry_cap": "100ms",
         "attempt_timeout": "10s"}
    cfg = queue_config({
        "m": q,
        "orders": q,
        "rewrite": dict(q, upstream_path="/internal/charge"),
        "idem": q,
        "misc": q,
        "w": {"max_attempts": 2},           # pull: no upstream
    }, server={"shutdown_grace": "1s"})
    cfg.update({
        "route POST /m/sync/{speed}": {"queue": "m", "mode": "sync", "sync_timeout": "1500ms",
                                       "wait": "1s", "max_wait": "1s", "allow_async": True},
        "route POST /m/strict/{speed}": {"queue": "m", "mode": "sync", "sync_timeout": "1500ms",
                                         "wait": "1s", "max_wait": "1s", "allow_async": False},
        "route POST /m/async/{speed}": {"queue": "m", "mode": "async", "wait": "1s",
                                        "max_wait": "1s"},
        "route POST /m/auto/{speed}": {"queue": "m", "mode": "auto", "wait": "500ms",
                                       "max_wait": "1s"},
        "route POST /api/orders/{id}/pay": {"queue": "orders", "mode": "sync",
                                            "sync_timeout": "10s"},
        "route GET /api/items/{id}": {"queue": "orders", "mode": "sync", "sync_timeout": "10s"},
        "route POST /api/orders/{id}/refund": {"queue": "rewrite", "mode": "sync",
                                               "sync_timeout": "10s"},
        # a route's own upstream_path, with its params, wins over the queue's
        "route POST /api/shops/{shop}/orders/{id}/void": {
            "queue": "rewrite", "mode": "sync", "sync_timeout": "10s",
            "upstream_path": "/internal/{shop}/void/{id}/{id}"},
        "route POST /idem/{case}": {"queue": "idem", "mode": "sync", "sync_timeout": "10s"},
        "route POST /idem-async/{case}": {"queue": "idem", "mode": "async"},
        "route POST /misc/{case}": {"queue": "misc", "mode": "sync", "sync_timeout": "10s"},
        "route PUT /misc/{case}": {"queue": "misc", "mode": "sync", "sync_timeout": "10s"},
        "route POST /work/{id}": {"queue": "w", "mode": "sync", "sync_timeout": "10s"},
    })
    return start_ackd_module(cfg)


@pytest.fixture
def api(server):
    with Api(server) as a:
        yield a


@pytest.fixture
def up(upstream_module):
    return upstream_module


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def post(server, path, body=None, headers=None, timeout=None, data=None):
    """One request on a fresh connection: (response, seconds it took)."""
    t0 = time.monotonic()
    r = requests.post(server.url(path), json=body if data is None else None, data=data,
                      headers=headers or {}, timeout=timeout or 30 * SLOW,
                      allow_redirects=False)
    return r, time.monotonic() - t0


def tokens(value):
    return {t.strip() for t in (value or "").split(",") if t.strip()}


# --------------------------------------------------------------------------
# SPEC §2's table: mode x Prefer x (fast | slow upstream)
#
# (route, Prefer, speed) -> (status, Preference-Applied tokens, wait)
# status: 201 is the upstream's own answer replayed; wait: None "at once",
# else the seconds ackd must have waited before answering.

RA = "respond-async"
MATRIX = [
    # sync (allow_async = on): no Prefer waits sync_timeout, then 504
    ("sync", None, "fast", 201, set(), 0),
    ("sync", None, "slow", 504, set(), SYNC_TIMEOUT),
    # respond-async is honoured: 202 at once, even if the upstream is fast
    ("sync", RA, "fast", 202, {RA}, None),
    ("sync", RA, "slow", 202, {RA}, None),
    # wait=N: as no Prefer, bounded by N (1 s < sync_timeout)
    ("sync", "wait=1", "fast", 201, {"wait=1"}, 0),
    ("sync", "wait=1", "slow", 504, {"wait=1"}, 1.0),
    # respond-async with a wait: wait up to N, then 202 (not 504)
    ("sync", f"{RA}, wait=1", "fast", 201, {"wait=1"}, 0),
    ("sync", f"{RA}, wait=1", "slow", 202, {RA, "wait=1"}, 1.0),
    # sync with allow_async = off: respond-async is not honoured
    ("strict", RA, "fast", 201, set(), 0),
    ("strict", RA, "slow", 504, set(), SYNC_TIMEOUT),
    ("strict", None, "slow", 504, set(), SYNC_TIMEOUT),
    ("strict", "wait=1", "slow", 504, {"wait=1"}, 1.0),
    ("strict", f"{RA}, wait=1", "slow", 504, {"wait=1"}, 1.0),
    # async: 202 at once, unless a wait is asked for
    ("async", None, "fast", 202, set(), None),
    ("async", None, "slow", 202, set(), None),
    ("async", RA, "fast", 202, {RA}, None),
    ("async", RA, "slow", 202, {RA}, None),
    ("async", "wait=1", "fast", 201, {"wait=1"}, 0),
    ("async", "wait=1", "slow", 202, {"wait=1"}, 1.0),
    ("async", f"{RA}, wait=1", "fast", 201, {"wait=1"}, 0),
    ("async", f"{RA}, wait=1", "slow", 202, {RA, "wait=1"}, 1.0),
    ("async", "wait=5", "slow", 202, "wait", MAX_WAIT),       # capped by max_wait
    # auto: wait the route's `wait`, else 202
    ("auto", None, "fast", 201, set(), 0),
    ("auto", None, "slow", 202, set(), AUTO_WAIT),
    ("auto", RA, "fast", 202, {RA}, None),
    ("auto", RA, "slow", 202, {RA}, None),
    ("auto", "wait=1", "fast", 201, {"wait=1"}, 0),
    ("auto", "wait=1", "slow", 202, {"wait=1"}, 1.0),
    ("auto", f"{RA}, wait=1", "fast", 201, {"wait=1"}, 0),
    ("auto", f"{RA}, wait=1", "slow", 202, {RA, "wait=1"}, 1.0),
    ("auto", "wait=5", "slow", 202, "wait", MAX_WAIT),        # capped by max_wait
    ("auto", "wait=0", "fast", 202, {"wait=0"}, None),         # wait=0: do not wait
    ("auto", "wait=1, respond-async", "slow", 202, {RA, "wait=1"}, 1.0),  # any order
    # RFC 7240's syntax: a quoted value, a parameter, whitespace around "="
    ("auto", f'{RA}; x=1, wait="1"', "slow", 202, {RA, "wait=1"}, 1.0),
    ("async", "wait = 1; x=y", "fast", 201, {"wait=1"}, 0),
    ("auto", f"{RA}x", "fast", 201, set(), 0),               # not respond-async
]


def case_id(c):
    return f"{c[0]}-{(c[1] or 'none').replace(', ', '+').replace('=', '')}-{c[2]}"


@pytest.fixture(scope="module")
def matrix(server):
    """Fires every case at once (the waits overlap); {case: (response, secs)}."""
    def run(c):
        mode, prefer, speed = c[:3]
        headers = {"Prefer": prefer} if prefer else {}
        return post(server, f"/m/{mode}/{speed}", {"case": case_id(c)}, headers)

    with concurrent.futures.ThreadPoolExecutor(len(MATRIX)) as ex:
        futs = {case_id(c): ex.submit(run, c) for c in MATRIX}
        return {k: f.result() for k, f in futs.items()}


@pytest.mark.parametrize("case", MATRIX, ids=case_id)
def test_mode_prefer_table(matrix, case):
    mode, prefer, speed, status, applied, wait = case
    r, secs = matrix[case_id(case)]
    assert r.status_code == status, (case, r.status_code, dict(r.headers), r.text)

    # Vary: Prefer on every answer of a route (the answer depends on it)
    assert "prefer" in {t.lower() for t in tokens(r.headers.get("Vary"))}, r.headers
    pa = r.headers.get("Preference-Applied")
    if applied == "wait":
        assert any(t.startswith("wait=") for t in tokens(pa)), pa
    elif applied:
        assert tokens(pa) == applied, (case, pa)
    else:
        assert pa is None, (case, pa)

    tid = r.headers.get("Task-Id")
    assert tid and TASK_ID_RE.match(tid), r.headers
    url = f"/v1/tasks/{tid}"
    if status == 201:
        # the backend's answer as it gave it: status, content type, body, headers
        assert r.headers["Content-Type"] == FAST_CT, r.headers
        assert r.json() == {"speed": "fast", "path": f"/m/{mode}/fast", "task_id": tid}
        assert r.headers.get("X-Backend") == "fake", r.headers
        assert "Location" not in r.headers
    elif status == 202:
        assert r.headers["Location"] == url
        assert re.fullmatch(r"\d+", r.headers["Retry-After"]), r.headers
        assert r.json() == {"task_id": tid, "status": "accepted", "status_url": url}
    else:
        p = problem(r, 504, "sync-timeout")
        assert p["task_id"] == tid and p["status_url"] == url, p

    if wait is None:
        assert secs < AT_ONCE, f"{case}: a 202 at once took {secs:.3f}s"
    elif status != 201:
        # waited the whole wait, and not for the upstream (SLOW_DELAY)
        assert wait - 0.05 <= secs <= wait + LATE, f"{case}: answered after {secs:.3f}s"
    else:
        assert secs < min(SLOW_DELAY, wait or SLOW_DELAY) + LATE


@pytest.mark.parametrize("fields,applied,wait", [
    (["respond-async", "wait=1"], {"respond-async", "wait=1"}, 1.0),   # read together
    (["wait=1", "wait=4"], {"wait=1"}, 1.0),                           # the first one counts
], ids=["async-then-wait", "wait-twice"])
def test_several_prefer_fields_are_one_list(server, fields, applied, wait):
    """Prefer is a list field (RFC 7240 §2): a client or proxy may send it as
    several field lines, read as one list in which a repeated preference
    counts the first time."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30 * SLOW)
    c.putrequest("POST", "/m/auto/slow")
    c.putheader("Content-Type", "application/json")
    for f in fields:
        c.putheader("Prefer", f)
    body = b'{"case":"prefer-fields"}'
    c.putheader("Content-Length", str(len(body)))
    t0 = time.monotonic()
    c.endheaders(body)
    r = c.getresponse()
    secs = time.monotonic() - t0
    r.read()
    c.close()
    assert r.status == 202
    assert tokens(r.getheader("Preference-Applied")) == applied
    assert wait - 0.05 <= secs <= wait + LATE, secs


def test_after_202_the_result_comes_later(matrix, api):
    """A 202 (or a 504): the task goes on; /result says "not ready" with
    Retry-After while it runs, then replays the upstream's answer."""
    r202, _ = matrix[case_id(("async", None, "slow"))]
    r504, _ = matrix[case_id(("sync", None, "slow"))]
    for r in (r202, r504):
        tid = r.headers["Task-Id"]
        res = api.result(tid)
        if res.status_code == 409:
            problem(res, 409, "result-not-ready")
            assert res.headers.get("Retry-After"), res.headers
        doc = api.task(tid, wait=SLOW_DELAY + 10 * SLOW)     # long poll to the end
        assert doc["status"] == "completed", doc
        assert doc["attempts"] == 1, doc
        res = api.result(tid)
        assert res.status_code == 201, res.text
        assert res.headers["Content-Type"] == FAST_CT
        assert res.headers["Task-Id"] == tid
        assert res.headers.get("X-Backend") == "fake"
        assert res.json()["speed"] == "slow" and res.json()["task_id"] == tid


# --------------------------------------------------------------------------
# paths, queries, methods, bodies


def test_path_params_and_query_are_sent_upstream(server, up):
    r, _ = post(server, "/api/orders/42/pay?currency=EUR&note=a%20b&x=1&x=2", {"amount": 100})
    assert r.status_code == 200, r.text
    calls = up.calls("/api/orders/42/pay")
    assert len(calls) == 1, calls
    c = calls[0]
    assert c.method == "POST"
    assert c.query == "currency=EUR&note=a%20b&x=1&x=2"
    assert c.json() == {"amount": 100}
    assert c.header("Content-Type") == "application/json"


def test_upstream_path_rewrites_the_path_and_keeps_the_query(server, up):
    r, _ = post(server, "/api/orders/77/refund?reason=dup", {"amount": 5})
    assert r.status_code == 200, r.text
    calls = up.calls("/internal/charge")
    assert [c.query for c in calls] == ["reason=dup"], calls
    assert calls[0].json() == {"amount": 5}
    assert not up.calls("/api/orders/77/refund")


@pytest.mark.parametrize("shop,oid", [("s1", "42"), ("caf%C3%A9", "a%2Fb"), ("x", "...")])
def test_a_route_upstream_path_puts_the_params_in(server, up, shop, oid):
    """upstream_path on a route: its {params} as the client sent them (still
    percent-encoded, so a%2Fb stays one segment), the query kept; it wins
    over the queue's upstream_path."""
    want = f"/internal/{shop}/void/{oid}/{oid}"
    up.on(want, answer(200, {"voided": True}))
    r, _ = post(server, f"/api/shops/{shop}/orders/{oid}/void?reason=dup", {"x": 1})
    assert r.status_code == 200, r.text
    (c,) = up.calls(want)
    assert c.target == want + "?reason=dup"
    assert c.json() == {"x": 1}


def test_get_route_sends_a_get_without_a_body(server, up):
    up.on("/api/items/9", answer(200, {"item": 9}))
    r = requests.get(server.url("/api/items/9?full=1"), timeout=30 * SLOW)
    assert r.status_code == 200 and r.json() == {"item": 9}, r.text
    (c,) = up.calls("/api/items/9")
    assert c.method == "GET" and c.query == "full=1" and c.body == b""
    assert c.header("Content-Length") in (None, "0")


def test_put_route_keeps_the_method(server, up):
    up.on("/misc/put", answer(204, b""))
    r = requests.put(server.url("/misc/put"), data=b"x=1",
                     headers={"Content-Type": "application/x-www-form-urlencoded"},
                     timeout=30 * SLOW)
    assert r.status_code == 204, r.text
    assert r.content == b""
    (c,) = up.calls("/misc/put")
    assert c.method == "PUT" and c.body == b"x=1"
    assert c.header("Content-Type") == "application/x-www-form-urlencoded"


def test_binary_bodies_pass_unchanged_both_ways(server, up):
    sent = bytes(range(256)) * 4 + b"\x00\xff\xfe"
    up.on("/misc/binary", lambda req, n: Answer(200, req.body[::-1],
                                                {"Content-Type": "application/octet-stream"}))
    r, _ = post(server, "/misc/binary", data=sent,
                headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.content == sent[::-1]
    (c,) = up.calls("/misc/binary")
    assert c.body == sent
    assert c.header("Content-Type") == "application/octet-stream"
    # the stored answer replays byte for byte too
    res = requests.get(server.url(f"/v1/tasks/{r.headers['Task-Id']}/result"), timeout=30 * SLOW)
    assert res.status_code == 200 and res.content == sent[::-1]


# JSON bodies a parser would print back differently: reals (jansson prints
# 0.1 as 0.10000000000000001), exponents, escapes, non-ASCII, whitespace and
# a trailing newline, scalars; and (body, True) when the status document
# shows it as JSON, False as a string: a JSON string, null, and what jansson
# cannot read (an integer past 64 bits) are kept as text, bytes unchanged
JSON_BODIES = [
    (b'{"amount": 0.1, "currency": "EUR"}', True),
    (b'{"amount":0.1,"name":"\xc3\xa9tienne"}', True),
    (b'{"a":"\\u00e9\\/x","n":1.0e2,"m":2.50}', True),
    (b'  {\n  "x" : [1, 2.0, -0.0]\n}\n', True),
    (b'[0.1, 0.2, 0.3]', True),
    (b'3.14159265358979323846', True),
    (b'{"k\\u0065y": "escaped key"}', True),
    (b'"just a string"', False),
    (b'null', False),
    (b'{"big": 123456789012345678901234}', False),
]


@pytest.mark.parametrize("sent,as_json", JSON_BODIES, ids=range(len(JSON_BODIES)))
def test_json_bodies_pass_byte_for_byte_both_ways(server, up, sent, as_json):
    """The upstream gets the client's JSON as it was sent, the client gets
    the upstream's as it was answered (sync, and replayed by /result), and
    the status document shows the same tokens: no parser prints it again."""
    path = f"/misc/{unique('json')}"
    answer_body = sent.replace(b"0.1", b"0.10") + b"\n"      # not what the client sent
    up.on(path, lambda req, n: Answer(200, answer_body, {"Content-Type": "application/json"}))
    r, _ = post(server, path, data=sent, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    (c,) = up.calls(path)
    assert c.body == sent
    assert r.content == answer_body
    tid = r.headers["Task-Id"]
    res = requests.get(server.url(f"/v1/tasks/{tid}/result"), timeout=30 * SLOW)
    assert res.status_code == 200 and res.content == answer_body
    doc = requests.get(server.url(f"/v1/tasks/{tid}"), timeout=30 * SLOW)
    assert b"0.10000000000000001" not in doc.content and b"0.1000000" not in doc.content
    body = doc.json()["result"]["body"]
    if as_json:
        assert body == json.loads(answer_body)
        if b"0.1" in sent:
            assert b"0.10" in doc.content     # the upstream's own token
    else:
        assert body == answer_body.decode()


def test_an_async_route_forwards_the_body_it_stored_byte_for_byte(server, up):
    """The same when the body waited in the store: an async route's task is
    sent from its stored request."""
    path = f"/misc/{unique('stored')}"
    sent = b'{"amount": 0.1, "who": "\xc3\xa9"}\n'
    up.on(path, answer(200, {"ok": True}))
    r, _ = post(server, path, data=sent, headers={"Content-Type": "application/json",
                                                   "Prefer": "respond-async"})
    assert r.status_code == 202, r.text
    (c,) = up.wait_calls(1, path)
    assert c.body == sent


@pytest.mark.parametrize("path", ["/misc/..", "/misc/%2e%2E", "/misc/..%2Fadmin", "/misc/.",
                                  "/misc/x/../.."])
def test_a_path_with_dot_segments_never_reaches_the_upstream(server, up, path):
    """/misc/{case} would take ".." as the case, and the upstream (or curl,
    cleaning the URL) would resolve /misc/.. to /: a route must not reach
    what lies outside it. Refused before anything is stored or sent."""
    up.reset_stats()
    with RawConn(server.host, server.port) as c:
        c.send(build_request("POST", path, [("Content-Type", "application/json")], b"{}"))
        r = c.read_response()
    p = assert_problem(r, 400)
    assert "segment" in p["detail"], p
    time.sleep(0.1)
    assert up.requests == []


@pytest.mark.parametrize("path", ["/misc/...", "/misc/a..b", "/misc/.well", "/misc/a%2Fb"])
def test_dots_that_are_not_segments_reach_the_upstream_as_sent(server, up, path):
    up.on(path.split("?")[0], answer(200, {"ok": True}))
    r, _ = post(server, path, {"x": 1})
    assert r.status_code == 200, r.text
    (c,) = up.calls(path)
    assert c.target == path


def sync_calls(session, server, up, path, n):
    """n sync calls on path, whose upstream answers {"n": its call count}:
    yields each 200 answer and its Task-Id."""
    up.on(path, lambda req, k: Answer(200, json.dumps({"n": k}),
                                      {"Content-Type": "application/json"}))
    for i in range(n):
        r = session.post(server.url(path), json={"i": i}, timeout=30 * SLOW)
        assert r.status_code == 200, r.text
        yield r, r.headers["Task-Id"]


def test_reads_right_after_a_sync_answer_see_its_outcome(server, up):
    """A sync answer leaves as soon as the upstream's comes (its request was
    durable before the call), before the commit that records the outcome;
    a read of the task sent right after the answer must still see that
    outcome, never the older "processing". Fails if such reads go to a
    reader instead of following the commit."""
    with requests.Session() as s:
        for r, tid in sync_calls(s, server, up, "/misc/rw", 40):
            doc = s.get(server.url(f"/v1/tasks/{tid}"), timeout=30 * SLOW).json()
            assert doc["status"] == "completed", doc
            assert doc["result"]["body"] == json.loads(r.content), doc
            res = s.get(server.url(f"/v1/tasks/{tid}/result"), timeout=30 * SLOW)
            assert res.status_code == 200 and res.content == r.content


def test_a_listing_right_after_a_sync_answer_sees_its_outcome(server, up):
    """The same for a listing of the queue's tasks: the task the client just
    got its answer for is listed with that outcome, never as "processing"
    (a listing that finds such a task reads again after the commit)."""
    with requests.Session() as s:
        for i, (r, tid) in enumerate(sync_calls(s, server, up, "/misc/ls", 40)):
            page = s.get(server.url("/v1/tasks"), params={"queue": "misc", "limit": 20},
                         timeout=30 * SLOW).json()
            mine = [t for t in page["tasks"] if t["id"] == tid]
            assert mine and mine[0]["status"] == "completed", (i, mine)


def test_text_answer_keeps_its_content_type(server, up):
    up.on("/misc/text", answer(200, "plain words\n", content_type="text/plain; charset=utf-8"))
    r, _ = post(server, "/misc/text", {"q": 1})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.text == "plain words\n"


def test_unmatched_path_is_404_and_wrong_method_is_405(server):
    r = requests.post(server.url("/api/nowhere"), json={}, timeout=30 * SLOW)
    problem(r, 404)
    r = requests.delete(server.url("/api/orders/1/pay"), timeout=30 * SLOW)
    problem(r, 405)
    assert "POST" in tokens(r.headers.get("Allow")), r.headers


# --------------------------------------------------------------------------
# Idempotency-Key on routes


def test_idempotent_repeat_in_flight_attaches_to_the_same_task(server, up):
    path = "/idem/inflight"
    up.on(path, lambda req, n: Answer(200, {"n": n, "key": req.header("Idempotency-Key")},
                                      delay=1.0))
    key = unique("k")
    out = [None, None]

    def call(i):
        out[i] = post(server, path, {"amount": 1}, {"Idempotency-Key": key})

    t1 = threading.Thread(target=call, args=(0,))
    t1.start()
    up.wait_calls(1, path, timeout=SOON)        # the first is in flight upstream
    t2 = threading.Thread(target=call, args=(1,))
    t2.start()
    t1.join(30 * SLOW)
    t2.join(30 * SLOW)
    (r1, _), (r2, _) = out
    assert r1.status_code == 200 and r2.status_code == 200, (r1.text, r2.text)
    assert r1.json() == r2.json() == {"n": 1, "key": key}
    assert r1.headers["Task-Id"] == r2.headers["Task-Id"]
    assert "Idempotent-Replayed" not in r1.headers
    assert r2.headers.get("Idempotent-Replayed") == "true", r2.headers
    time.sleep(0.2)
    assert len(up.calls(path)) == 1, up.calls(path)


def test_idempotent_repeat_after_completion_is_replayed(server, up):
    path = "/idem/after"
    up.on(path, lambda req, n: Answer(201, {"n": n}, {"X-Charge": f"c{n}"}))
    key = unique("k")
    r1, _ = post(server, path, {"amount": 2}, {"Idempotency-Key": key})
    assert r1.status_code == 201 and r1.json() == {"n": 1}, r1.text
    for _ in range(2):
        r2, secs = post(server, path, {"amount": 2}, {"Idempotency-Key": key})
        assert r2.status_code == 201, r2.text
        assert r2.json() == {"n": 1}
        assert r2.headers["X-Charge"] == "c1"
        assert r2.headers["Task-Id"] == r1.headers["Task-Id"]
        assert r2.headers.get("Idempotent-Replayed") == "true"
    assert len(up.calls(path)) == 1


def test_idempotent_async_repeat_gets_the_same_task(server, up):
    """On an async route a repeat while the task runs is a 202 for the same
    task; once it is done, the stored answer is replayed."""
    path = "/idem-async/a"
    up.on(path, lambda req, n: Answer(200, {"n": n}, delay=0.5))
    key = unique("k")
    r1, _ = post(server, path, {"amount": 3}, {"Idempotency-Key": key})
    r2, _ = post(server, path, {"amount": 3}, {"Idempotency-Key": key})
    assert r1.status_code == r2.status_code == 202, (r1.text, r2.text)
    tid = r1.json()["task_id"]
    assert r2.json()["task_id"] == tid
    assert "Idempotent-Replayed" not in r1.headers
    assert r2.headers.get("Idempotent-Replayed") == "true"
    up.wait_done(1, path, timeout=SOON)
    r3 = wait_for(lambda: (lambda r: r if r.status_code != 202 else None)(
        post(server, path, {"amount": 3}, {"Idempotency-Key": key})[0]), what="the replay")
    assert r3.status_code == 200 and r3.json() == {"n": 1}, r3.text
    assert r3.headers["Task-Id"] == tid
    assert r3.headers.get("Idempotent-Replayed") == "true"
    assert len(up.calls(path)) == 1
    # the key reaches the upstream as the client gave it
    assert up.calls(path)[0].header("Idempotency-Key") == key


def test_same_key_with_a_different_body_is_422(server, up):
    path = "/idem/mismatch"
    key = unique("k")
    r1, _ = post(server, path, {"amount": 4}, {"Idempotency-Key": key})
    assert r1.status_code == 200, r1.text
    r2, _ = post(server, path, {"amount": 5}, {"Idempotency-Key": key})
    p = problem(r2, 422, "idempotency-mismatch")
    assert p.get("task_id") == r1.headers["Task-Id"], p
    # another path is another route: another scope
    assert len(up.calls(path)) == 1


def test_same_key_with_a_different_query_is_422(server, up):
    """The query goes to the upstream with the body: ?amount=100 and
    ?amount=900 are two requests, not one to replay."""
    path = "/idem/query"
    key = unique("k")
    r1, _ = post(server, f"{path}?amount=100", {"a": 1}, {"Idempotency-Key": key})
    assert r1.status_code == 200, r1.text
    r2, _ = post(server, f"{path}?amount=100", {"a": 1}, {"Idempotency-Key": key})
    assert r2.headers.get("Idempotent-Replayed") == "true", r2.headers
    r3, _ = post(server, f"{path}?amount=900", {"a": 1}, {"Idempotency-Key": key})
    p = problem(r3, 422, "idempotency-mismatch")
    assert p.get("task_id") == r1.headers["Task-Id"], p
    assert [c.query for c in up.calls(path)] == ["amount=100"]


def test_idempotency_key_is_checked(server):
    r, _ = post(server, "/idem/badkey", {"a": 1}, {"Idempotency-Key": "x" * 256})
    problem(r, 400, "bad-idempotency-key")


# --------------------------------------------------------------------------
# a sync client that leaves


def test_sync_client_disconnecting_does_not_stop_the_task(server, up, api):
    path = "/misc/leaver"
    up.on(path, answer(200, {"done": True}, delay=1.0))
    rid = unique("leaver")
    with RawConn(server.host, server.port) as c:
        c.send(build_request("POST", path, {"Content-Type": "application/json",
                                            "X-Request-ID": rid}, b'{"a":1}'))
        up.wait_calls(1, path, timeout=SOON)
    # gone before the answer; the task is there and completes
    def find():
        for t in api.list(queue="misc", limit=50)["tasks"]:
            if t.get("correlation_id") == rid:
                return t
    t = wait_for(find, what="the leaver's task")
    doc = wait_for(lambda: (lambda d: d if d["status"] == "completed" else None)(api.task(t["id"])),
                   what="the leaver's task completed")
    assert doc["attempts"] == 1
    res = api.result(t["id"])
    assert res.status_code == 200 and res.json() == {"done": True}, res.text
    assert server.get("/healthz").status == 200


# --------------------------------------------------------------------------
# a route served by a pull worker


def test_route_served_by_a_pull_worker(server, api):
    out = {}

    def client():
        out["r"] = post(server, "/work/17?verbose=1", {"job": "resize", "w": 64},
                        {"Accept-Language": "fr", "X-Request-ID": "work-17",
                         "Authorization": "Basic c2VjcmV0"})

    t = threading.Thread(target=client)
    t.start()
    c = api.claim_one("w", wait=SOON)
    req = c["request"]
    assert req["method"] == "POST"
    assert req["path"] == "/work/17"
    assert req["query"] == "verbose=1"
    assert req["body"] == {"job": "resize", "w": 64}
    assert req["headers"]["content-type"] == "application/json"
    assert req["headers"]["accept-language"] == "fr"
    assert "authorization" not in req["headers"]        # ackd's business, not the worker's
    assert req["headers"]["x-forwarded-for"] == "127.0.0.1"   # who asked, as proxies say it
    assert req["headers"]["x-forwarded-proto"] == "http"
    assert c["correlation_id"] == "work-17"
    done = api.post(f"/v1/tasks/{c['id']}/complete", {
        "lease_id": c["lease_id"],
        "response": {"status": 201, "headers": {"Content-Type": "text/plain", "X-Worker": "w1"},
                     "body": "resized"}})
    assert done.status_code == 200, done.text
    t.join(30 * SLOW)
    r, _ = out["r"]
    assert r.status_code == 201, r.text
    assert r.headers["Content-Type"] == "text/plain"
    assert r.headers["X-Worker"] == "w1"
    assert r.text == "resized"
    assert r.headers["Task-Id"] == c["id"]
    res = api.result(c["id"])
    assert res.status_code == 201 and res.text == "resized"


def client_and_claim(server, api, path):
    """A route client at `path` (in a thread) and the pull worker's claim of
    its task; (claim, finish): finish() waits for the client's response."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", post(server, path, {"a": 1})))
    t.start()
    c = api.claim_one("w", wait=SOON)

    def finish():
        t.join(30 * SLOW)
        return out["r"][0]
    return c, finish


def test_pull_worker_json_response_body(server, api):
    c, finish = client_and_claim(server, api, "/work/18")
    done = api.post(f"/v1/tasks/{c['id']}/complete", {
        "lease_id": c["lease_id"], "response": {"status": 200, "body": {"ok": [1, 2]}}})
    assert done.status_code == 200, done.text
    r = finish()
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"ok": [1, 2]}


def test_a_worker_answer_body_keeps_its_json_text(server, api):
    c, finish = client_and_claim(server, api, "/work/21")
    raw = ('{"lease_id": "%s", "response": {"status": 200, "body": '
           '{"total": 0.30, "who": "\\u00e9", "n": 1e2}}}' % c["lease_id"]).encode()
    done = api.call("POST", f"/v1/tasks/{c['id']}/complete", data=raw,
                    headers={"Content-Type": "application/json"})
    assert done.status_code == 200, done.text
    r = finish()
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.content == b'{"total":0.30,"who":"\\u00e9","n":1e2}'
    assert api.result(c["id"]).content == r.content


def test_a_worker_answer_may_set_several_cookies(server, api):
    c, finish = client_and_claim(server, api, "/work/20")
    done = api.post(f"/v1/tasks/{c['id']}/complete", {
        "lease_id": c["lease_id"],
        "response": {"status": 200, "headers": {"Set-Cookie": ["a=1", "b=2"]}, "body": "ok"}})
    assert done.status_code == 200, done.text
    r = finish()
    assert r.status_code == 200 and r.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


@pytest.mark.parametrize("headers,field", [
    ({"X-Evil": "a\r\nSet-Cookie: sid=1"}, "response.headers.X-Evil"),
    ({"X-Evil": "a\nb"}, "response.headers.X-Evil"),
    ({"X Bad": "1"}, "response.headers.X Bad"),
    ({"X-Count": 3}, "response.headers.X-Count"),
    (["X-A", "1"], "response.headers"),
    ({"Set-Cookie": ["a=1", "b\nc"]}, "response.headers.Set-Cookie"),
], ids=["crlf", "lf", "space-in-name", "number", "not-an-object", "lf-in-a-list"])
def test_a_worker_answer_with_a_bad_header_is_refused(server, api, headers, field):
    """A pull worker's answer goes to the route's client as given, so a
    header that cannot be sent as given is a 422 naming it; the lease still
    holds and a corrected answer goes through."""
    c, finish = client_and_claim(server, api, "/work/19")
    bad = api.post(f"/v1/tasks/{c['id']}/complete", {
        "lease_id": c["lease_id"], "response": {"status": 200, "headers": headers, "body": "x"}})
    p = problem(bad, 422, "invalid-field")
    assert p["field"] == field, p
    assert api.task(c["id"])["status"] == "processing"
    done = api.post(f"/v1/tasks/{c['id']}/complete", {
        "lease_id": c["lease_id"], "response": {"status": 200, "headers": {"X-Ok": "1"},
                                                "body": "fine"}})
    assert done.status_code == 200, done.text
    r = finish()
    assert r.status_code == 200 and r.text == "fine" and r.headers["X-Ok"] == "1"
    assert "Set-Cookie" not in r.headers


# --------------------------------------------------------------------------
# CR/LF cannot get in


@pytest.mark.parametrize("raw", [
    b"X-Evil: a\r\n b\r\n",                 # obs-fold (RFC 9112 §5.2)
    b"X-Evil: a\rInjected: b\r\n",          # a bare CR inside a value
], ids=["obs-fold", "bare-cr"])
def test_crlf_in_a_header_is_refused(server, up, raw):
    path = "/misc/crlf"
    body = b'{"a":1}'
    req = (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Content-Type: application/json\r\n" + raw +
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with RawConn(server.host, server.port) as c:
        c.send(req)
        r = c.read_response()
    assert_problem(r, 400)
    time.sleep(0.2)
    assert not up.calls(path)


def test_with_keys_a_route_needs_a_client_key_and_keeps_it_from_the_upstream(start_ackd,
                                                                               make_upstream):
    """With [keys], a route request is an API call like a submit: without a
    key it is a 401 and nothing is stored or sent; with a client key the task
    is that tenant's (another tenant's key reads 404); the Authorization
    header is ackd's and never reaches the upstream."""
    up = make_upstream()
    up.default(answer(200, {"ok": True}))
    keys = {"key-a": "acme client", "key-b": "globex client", "key-w": "acme worker pay"}
    cfg = queue_config({"pay": {"upstream": up.origin,
                                "forward_headers": "authorization x-custom"}}, keys=keys)
    cfg["route POST /api/pay"] = {"queue": "pay", "mode": "sync", "sync_timeout": "10s"}
    srv = start_ackd(cfg)
    r, _ = post(srv, "/api/pay", {"n": 1})
    assert r.status_code == 401 and "Bearer" in r.headers["WWW-Authenticate"], r.text
    r, _ = post(srv, "/api/pay", {"n": 1}, {"Authorization": "Bearer key-w"})
    assert r.status_code == 403, r.text
    assert up.requests == []
    r, _ = post(srv, "/api/pay", {"n": 2}, {"Authorization": "Bearer key-a", "X-Custom": "c"})
    assert r.status_code == 200, r.text
    (c,) = up.requests
    assert c.header("X-Custom") == "c" and c.header("Authorization") is None, c.headers
    tid = r.headers["Task-Id"]
    with Api(srv, key="key-a") as a, Api(srv, key="key-b") as b:
        assert a.status(tid) == "completed"
        problem(b.get(f"/v1/tasks/{tid}"), 404)

