"""Push dispatch end to end (issue 4 §2, SPEC §5): ackd sends tasks to a
fake upstream (tests/e2e/upstream.py) and classifies what comes back.

  - outcomes: 2xx/3xx completed; 408, 425, 429, 5xx retried (Task-Attempt
    1, 2, 3 with the same Task-Id and Idempotency-Key) and invisible to a
    sync client; other 4xx final, the answer stored and replayed;
  - Retry-After honoured (delta-seconds and HTTP-date; the gap is timed);
  - an upstream refusing connections and one hanging past attempt_timeout:
    retried up to max_attempts, then failed with the error recorded;
  - answers over max_result_size fail the task;
  - headers: the allowlist forwarded, hop-by-hop and ackd's own
    (Authorization, Cookie, Prefer, Callback-URL) never, X-Request-ID and
    traceparent carried;
  - per-queue concurrency and rate limits, counted at the upstream;
  - due tasks sent at once (no polling), delayed ones on time, connections
    kept alive and reused.

One server and one fake upstream serve the module; each case has queues or
paths of its own."""

import email.utils
import http
import json
import os
import signal
import socket
import threading
import time
import uuid

import pytest
import requests

from conftest import SLOW, RawConn, build_request, free_port
from queue_helpers import SOON, TASK_ID_RE, Api, problem, queue_config, wait_for
from upstream import (Answer, answer, broken, fail_then, hang, make_upstream, sequence,  # noqa: F401
                      upstream_module)

LATE = 1.5              # slack past an expected time (a loaded 2-core machine, ASan)
HANG_TIMEOUT = 0.3      # attempt_timeout of queue "hang"


def fast_retry(**kw):
    return {"max_attempts": 3, "retry_base": "20ms", "retry_cap": "50ms",
            "attempt_timeout": "5s", **kw}


@pytest.fixture(scope="module")
def dead_port():
    """A port nothing listens on (it was free a moment ago)."""
    return free_port()


@pytest.fixture(scope="module")
def server(start_ackd_module, upstream_module, dead_port):
    o = upstream_module.origin
    cfg = queue_config({
        "o": fast_retry(upstream=o),
        "ra": fast_retry(upstream=o, retry_base="10ms", retry_cap="20ms"),
        "refused": fast_retry(upstream=f"http://127.0.0.1:{dead_port}", connect_timeout="500ms"),
        "hang": fast_retry(upstream=o, max_attempts=2, attempt_timeout=f"{int(HANG_TIMEOUT * 1000)}ms",
                           connect_timeout="1s"),
        "fwd": fast_retry(upstream=o, forward_headers=(
            "accept x-custom x-hop authorization proxy-authorization cookie prefer "
            "callback-url connection keep-alive te upgrade tracestate")),
        "deffwd": fast_retry(upstream=o),
        "conc": fast_retry(upstream=o, upstream_path="/conc", concurrency=2),
        "rate": fast_retry(upstream=o, upstream_path="/rate", rate=5),
        "small": fast_retry(upstream=o, max_result_size="1k"),
        "later": fast_retry(upstream=o, upstream_path="/later"),
    }, server={"shutdown_grace": "1s"})
    sync = {"mode": "sync", "sync_timeout": "10s"}
    cfg.update({
        "route POST /o/{case}": {"queue": "o", **sync},
        "route POST /oa/{case}": {"queue": "o", "mode": "async"},
        "route POST /ra/{case}": {"queue": "ra", **sync},
        "route POST /refused": {"queue": "refused", **sync},
        "route POST /hang/{case}": {"queue": "hang", **sync},
        "route POST /fwd/{case}": {"queue": "fwd", **sync},
        "route POST /deffwd/{case}": {"queue": "deffwd", **sync},
        "route POST /small/{case}": {"queue": "small", **sync},
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


def post(server, path, body=None, headers=None, data=None):
    t0 = time.monotonic()
    r = requests.post(server.url(path), json=body if data is None else None, data=data,
                      headers=headers or {}, timeout=30 * SLOW, allow_redirects=False)
    return r, time.monotonic() - t0


def terminal(api, tid, timeout=SOON):
    """The task's document once it is terminal."""
    def done():
        d = api.task(tid, history=True)
        return d if d["status"] in ("completed", "failed", "canceled") else None
    return wait_for(done, timeout=timeout, what=f"task {tid} terminal")


# --------------------------------------------------------------------------
# outcomes and retries


def test_503_twice_then_200_is_one_answer_to_a_sync_client(server, up, api):
    path = f"/o/{unique('r503')}"
    up.on(path, fail_then(2, 503, then=answer(200, {"paid": True})))
    key = unique("key")
    r, _ = post(server, path, {"amount": 100}, {"Idempotency-Key": key})
    assert r.status_code == 200, r.text          # the retries are invisible
    assert r.json() == {"paid": True}
    tid = r.headers["Task-Id"]
    calls = up.calls(path)
    assert [c.attempt for c in calls] == [1, 2, 3], calls
    assert [c.status for c in calls] == [503, 503, 200]
    assert {c.task_id for c in calls} == {tid}
    assert {c.header("Idempotency-Key") for c in calls} == {key}
    assert all(c.json() == {"amount": 100} for c in calls)
    d = api.task(tid, history=True)
    assert d["status"] == "completed" and d["attempts"] == 3, d
    h = d["history"]
    assert [a["attempt"] for a in h] == [1, 2, 3], h
    assert h[0]["error"]["status"] == 503 and h[1]["error"]["status"] == 503, h


def test_without_a_client_key_the_idempotency_key_is_the_task_id(server, up):
    path = f"/o/{unique('nokey')}"
    up.on(path, fail_then(1, 500))
    r, _ = post(server, path, {"n": 1})
    assert r.status_code == 200, r.text
    tid = r.headers["Task-Id"]
    calls = up.calls(path)
    assert [c.attempt for c in calls] == [1, 2]
    assert [c.header("Idempotency-Key") for c in calls] == [tid, tid]


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(server, up, status):
    path = f"/o/{unique(f's{status}')}"
    up.on(path, fail_then(1, status))
    r, _ = post(server, path, {"s": status})
    assert r.status_code == 200, r.text
    assert [c.status for c in up.calls(path)] == [status, 200]


@pytest.mark.parametrize("status", [200, 201, 202, 203, 204, 301, 302, 303, 304, 307, 308])
def test_2xx_and_3xx_complete(server, up, api, status):
    """A redirect is the backend's answer (POST then 303 See Other, a report
    at a signed URL): the task completed, and the client follows it."""
    path = f"/o/{unique(f's{status}')}"
    body = b"" if status in (204, 304) else b'{"s":%d}' % status
    redirect = status in (301, 302, 303, 307, 308)
    up.on(path, answer(status, body, {"Location": "/elsewhere"} if redirect else None,
                       content_type="application/json" if body else None))
    r, _ = post(server, path, {"s": status})
    assert r.status_code == status, r.text       # redirects are not followed
    assert r.reason == http.HTTPStatus(status).phrase  # not "Client Error" for a 301
    if body:
        assert r.content == body
    if redirect:
        assert r.headers["Location"] == "/elsewhere"
    assert len(up.calls(path)) == 1
    assert api.task(r.headers["Task-Id"])["status"] == "completed"


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_other_4xx_are_final_and_replayed(server, up, api, status):
    path = f"/o/{unique(f's{status}')}"
    up.on(path, answer(status, {"error": "card_declined", "code": status},
                       {"X-Decline": "insufficient-funds"}))
    r, _ = post(server, path, {"amount": 100})
    # the sync client gets the backend's final answer as it gave it
    assert r.status_code == status, r.text
    assert r.json() == {"error": "card_declined", "code": status}
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["X-Decline"] == "insufficient-funds"
    tid = r.headers["Task-Id"]
    time.sleep(0.2)
    assert len(up.calls(path)) == 1
    d = api.task(tid)
    assert d["status"] == "failed" and d["attempts"] == 1, d
    assert d["error"]["status"] == status, d
    assert str(status) in d["error"]["message"], d
    # /result replays it
    res = api.result(tid)
    assert res.status_code == status
    assert res.json() == {"error": "card_declined", "code": status}
    assert res.headers["Task-Id"] == tid
    assert res.headers["X-Decline"] == "insufficient-funds"


def test_400_on_an_async_route_fails_the_task(server, up, api):
    path = f"/oa/{unique('a400')}"
    up.on(path, answer(400, {"error": "bad"}))
    r, _ = post(server, path, {"x": 1})
    assert r.status_code == 202, r.text
    d = terminal(api, r.json()["task_id"])
    assert d["status"] == "failed" and d["attempts"] == 1, d
    res = api.result(d["id"])
    assert res.status_code == 400 and res.json() == {"error": "bad"}


def test_retries_exhausted_fail_the_task_and_replay_the_last_answer(server, up, api):
    path = f"/o/{unique('x503')}"
    up.on(path, answer(503, {"busy": True}))
    r, _ = post(server, path, {"x": 1})
    tid = r.headers["Task-Id"]
    assert len(up.calls(path)) == 3
    d = api.task(tid, history=True)
    assert d["status"] == "failed" and d["attempts"] == 3, d
    assert d["error"]["status"] == 503
    # the sync client was told the task failed: with the upstream's last
    # answer replayed, or a task-failed problem
    if r.status_code == 502 and r.headers.get("Content-Type", "").startswith("application/problem"):
        p = problem(r, 502, "task-failed")
        assert p["task_id"] == tid
    else:
        assert r.status_code == 503 and r.json() == {"busy": True}, r.text


# --------------------------------------------------------------------------
# Retry-After


def gap(calls):
    return calls[1].t_start - calls[0].t_start


def test_429_with_retry_after_seconds_is_honoured(server, up):
    path = f"/ra/{unique('ra')}"
    up.on(path, sequence(Answer(429, '{"slow":"down"}', {"Retry-After": "1"},
                                content_type="application/json"),
                         Answer(200, '{"ok":1}', content_type="application/json")))
    r, secs = post(server, path, {"x": 1})
    assert r.status_code == 200 and r.json() == {"ok": 1}, r.text
    calls = up.calls(path)
    assert len(calls) == 2
    # retry_base is 10 ms: only Retry-After explains a second's gap
    assert 0.95 <= gap(calls) <= 1.0 + LATE, f"second call {gap(calls):.3f}s after the first"
    assert secs >= 0.95


def test_503_with_retry_after_http_date_is_honoured(server, up):
    path = f"/ra/{unique('date')}"
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    up.on(path, sequence(Answer(503, "busy", {"Retry-After": when}),
                         Answer(200, '{"ok":2}', content_type="application/json")))
    r, _ = post(server, path, {"x": 1})
    assert r.status_code == 200, r.text
    calls = up.calls(path)
    # an HTTP-date has whole seconds: between 1 and 2 s from now
    assert 0.9 <= gap(calls) <= 2.0 + LATE, f"second call {gap(calls):.3f}s after the first"


# --------------------------------------------------------------------------
# an upstream that is not there, one that hangs, one that says too much


@pytest.mark.parametrize("status,ends", [(200, "completed"), (503, "canceled")])
def test_a_cancel_during_a_call_lets_it_finish_and_stops_retries(server, up, api, status, ends):
    """Cancel while the upstream works: the call is not cut (the backend may
    have charged already). Its success completes the task; a failure that
    would be retried cancels it instead."""
    path = f"/oa/{unique('cancel')}"
    gate = threading.Event()

    def held(req, n):
        gate.wait(10 * SLOW)
        return Answer(status, {"n": n})
    up.on(path, held)
    r, _ = post(server, path, {"x": 1})
    assert r.status_code == 202, r.text
    tid = r.json()["task_id"]
    up.wait_calls(1, path)
    c = api.cancel(tid)
    assert c.status_code == 200, c.text
    assert c.json()["status"] == "processing" and c.json()["cancel_requested"] is True, c.text
    gate.set()
    d = terminal(api, tid)
    assert d["status"] == ends and d["attempts"] == 1, d
    assert len(up.calls(path)) == 1


def test_refused_connections_are_retried_then_the_task_fails(server, api):
    r, _ = post(server, "/refused", {"x": 1})
    p = problem(r, 502, "task-failed")
    tid = r.headers["Task-Id"]
    assert p["task_id"] == tid and p["status_url"] == f"/v1/tasks/{tid}", p
    d = api.task(tid, history=True)
    assert d["status"] == "failed" and d["attempts"] == 3, d
    # ours, then curl's detail
    assert d["error"]["message"].startswith("could not connect to the upstream ("), d
    assert d["error"]["status"] is None, d
    assert len(d["history"]) == 3, d
    assert all(a["error"] and a["error"]["message"] for a in d["history"]), d["history"]
    res = api.result(tid)
    problem(res, 409, "no-result")


@pytest.mark.parametrize("data,says", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
     "the upstream closed the connection before its answer was complete ("),
    # twice: on a kept-alive connection curl sends once more by itself
    ([b"", b""], "the upstream closed the connection without answering ("),
    (b"HELLO THERE\r\n\r\n", "the upstream answered with something that is not HTTP ("),
], ids=["cut", "nothing", "not-http"])
def test_a_broken_answer_is_retried_and_said_plainly(server, up, api, data, says):
    """An answer cut short, none at all, or not HTTP: retried like a refused
    connection, and the attempt's error says what happened in words an
    operator reads (curl's detail after them)."""
    path = f"/o/{unique('broken')}"
    bad = [broken(x) for x in (data if isinstance(data, list) else [data])]
    up.on(path, sequence(*bad, answer(200, {"ok": 2})))
    r, _ = post(server, path, {"x": 1})
    assert r.status_code == 200 and r.json() == {"ok": 2}, r.text
    d = api.task(r.headers["Task-Id"], history=True)
    assert d["status"] == "completed" and d["attempts"] >= 2, d
    first = d["history"][0]
    assert first["outcome"] == "retry", first
    assert first["error"]["message"].startswith(says), first
    assert first["error"]["status"] is None, first


def test_hanging_upstream_times_out_each_attempt(server, up, api):
    path = f"/hang/{unique('h')}"
    up.on(path, hang(10.0))
    r, secs = post(server, path, {"x": 1})
    p = problem(r, 502, "task-failed")
    tid = p["task_id"]
    calls = up.calls(path)
    assert [c.attempt for c in calls] == [1, 2], calls
    assert gap(calls) >= HANG_TIMEOUT - 0.02, gap(calls)
    assert secs < 2 * HANG_TIMEOUT + LATE * 2, secs      # not the 10 s of the hang
    d = api.task(tid, history=True)
    assert d["status"] == "failed" and d["attempts"] == 2, d
    assert d["error"]["message"].startswith("the upstream did not answer in time ("), d


def test_a_timeout_then_an_answer_completes(server, up, api):
    path = f"/hang/{unique('h1')}"
    up.on(path, sequence(hang(10.0), answer(200, {"late": False})))
    r, _ = post(server, path, {"x": 1})
    assert r.status_code == 200 and r.json() == {"late": False}, r.text
    assert [c.attempt for c in up.calls(path)] == [1, 2]
    assert api.task(r.headers["Task-Id"])["attempts"] == 2


def test_answer_over_max_result_size_fails_the_task(server, up, api):
    big, fits = f"/small/{unique('big')}", f"/small/{unique('fits')}"
    up.on(big, answer(200, "x" * 4096, content_type="text/plain"))
    up.on(fits, answer(200, "y" * 900, content_type="text/plain"))
    r, _ = post(server, fits, {"x": 1})
    assert r.status_code == 200 and r.text == "y" * 900
    r, _ = post(server, big, {"x": 1})
    p = problem(r, 502, "task-failed")
    d = api.task(p["task_id"])
    assert d["status"] == "failed" and d["attempts"] == 1, d     # final: not retried
    assert "max_result_size" in d["error"]["message"], d
    assert len(up.calls(big)) == 1


# --------------------------------------------------------------------------
# headers


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_allowlisted_headers_go_upstream_and_private_ones_never(server, up, api):
    path = f"/fwd/{unique('f')}"
    up.on(path, answer(200, {"ok": True}))
    headers = {
        "Accept": "application/vnd.x+json",
        "X-Custom": "custom-1",
        "X-Not-Listed": "nope",
        "Authorization": "Bearer secret-token",
        "Proxy-Authorization": "Basic c2VjcmV0",
        "Cookie": "session=abc",
        "Prefer": "wait=10",
        "Callback-URL": "https://hooks.example/cb",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "hop-only",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Upgrade": "websocket",
        "X-Request-ID": "req-fwd-123",
        "traceparent": TRACEPARENT,
        "tracestate": "vendor=1",
        "Idempotency-Key": unique("key"),
    }
    r, _ = post(server, path, {"x": 1}, headers)
    assert r.status_code == 200, r.text
    (c,) = up.calls(path)
    names = {k.lower() for k, _ in c.headers}
    assert c.header("Accept") == "application/vnd.x+json"
    assert c.header("X-Custom") == "custom-1"
    assert c.header("Content-Type") == "application/json"
    assert "x-not-listed" not in names
    for private in ("authorization", "proxy-authorization", "cookie", "prefer", "callback-url",
                    "keep-alive", "te", "upgrade", "tracestate"):
        assert private not in names, (private, c.headers)
    # Connection is the hop's own (ackd's connection to the upstream may
    # have one) and the fields it names are hop-by-hop: X-Hop stays here
    assert "x-hop" not in names, c.headers
    assert not any("x-hop" in v.lower() for v in c.header_all("Connection")), c.headers
    # ackd's own
    assert c.header("Task-Id") == r.headers["Task-Id"]
    assert c.header("Task-Attempt") == "1"
    assert c.header("Idempotency-Key") == headers["Idempotency-Key"]
    assert c.header("X-Request-ID") == "req-fwd-123"
    assert c.header("traceparent") == TRACEPARENT
    assert c.header("Host") == f"127.0.0.1:{up.port}"
    for name in ("content-type", "task-id", "idempotency-key", "x-request-id", "traceparent",
                 "host"):
        assert len(c.header_all(name)) == 1, (name, c.headers)
    d = api.task(r.headers["Task-Id"])
    assert d["correlation_id"] == "req-fwd-123"


@pytest.mark.parametrize("sent,xff,xfhost,xfproto", [
    ({}, "127.0.0.1", "HOST", "http"),
    # a proxy in front of ackd: the chain goes on, its host and scheme stay
    ({"X-Forwarded-For": "203.0.113.7, 10.0.0.2", "X-Forwarded-Host": "shop.example",
      "X-Forwarded-Proto": "https"}, "203.0.113.7, 10.0.0.2, 127.0.0.1", "shop.example", "https"),
    # several X-Forwarded-For fields are one list
    ([("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "10.0.0.2")],
     "203.0.113.7, 10.0.0.2, 127.0.0.1", "HOST", "http"),
], ids=["direct", "behind-a-proxy", "xff-twice"])
def test_the_upstream_learns_who_asked(server, up, api, sent, xff, xfhost, xfproto):
    """X-Forwarded-For (the client's address after the chain it sent),
    X-Forwarded-Host and X-Forwarded-Proto reach the upstream whatever
    forward_headers says (a payment backend checks the client's address),
    recorded when the request came, so a retry after a restart says the
    same; a pull worker sees them in the claimed request."""
    path = f"/fwd/{unique('xff')}"
    up.on(path, answer(200, {"ok": True}))
    host = f"127.0.0.1:{server.port}"
    raw = build_request("POST", path, [("Content-Type", "application/json")]
                        + (list(sent.items()) if isinstance(sent, dict) else sent), b'{"x":1}',
                        host=host)
    with RawConn(server.host, server.port, 10 * SLOW) as c:
        c.send(raw)
        r = c.read_response()
    assert r.status == 200, r
    (call,) = up.calls(path)
    assert call.header_all("X-Forwarded-For") == [xff], call.headers
    assert call.header("X-Forwarded-Host") == (host if xfhost == "HOST" else xfhost)
    assert call.header("X-Forwarded-Proto") == xfproto


def test_repeated_answer_headers_are_all_passed_on(server, up, api):
    """An upstream's repeated header fields reach the client: two cookies
    stay two Set-Cookie fields (they cannot be joined), other fields are one
    comma-joined list. Only the last one of each name was kept before (a
    login that set two cookies lost one). The task keeps them so, and
    /result replays them."""
    path = f"/o/{unique('cookies')}"
    up.on(path, answer(200, {"ok": True}, [("Set-Cookie", "a=1; Path=/"),
                                           ("Set-Cookie", "b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT"),
                                           ("Vary", "Accept"), ("Vary", "Origin")]))
    r, _ = post(server, path, {"x": 1})
    assert r.status_code == 200, r.text
    for res in (r, api.result(r.headers["Task-Id"])):
        assert res.raw.headers.getlist("Set-Cookie") == [
            "a=1; Path=/", "b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT"], res.raw.headers
        vary = [t.strip().lower() for v in res.raw.headers.getlist("Vary") for t in v.split(",")]
        assert {"accept", "origin"} <= set(vary), vary
    headers = api.task(r.headers["Task-Id"])["result"]["headers"]
    assert headers["set-cookie"] == ["a=1; Path=/", "b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT"]
    assert headers["vary"] == "Accept, Origin"


@pytest.mark.parametrize("extra", [0, 40])
def test_allowlisted_headers_go_upstream_among_many(server, up, extra):
    """The stored request is read by a scanner that takes up to 32 headers
    and by jansson beyond: with 40 more headers than that, the allowlisted
    ones (and a repeated one, joined) still go upstream, with escapes in
    their values intact, and the others still do not."""
    path = f"/fwd/{unique('many')}"
    up.on(path, answer(200, {"ok": True}))
    headers = [("X-Custom", 'quote " and \\ backslash'), ("Accept", "a/b"), ("Accept", "c/d")]
    headers += [(f"X-Extra-{i}", f"v{i}") for i in range(extra)]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30 * SLOW) as sk:
        body = b'{"x":1}'
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers)
        head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        sk.sendall(head.encode() + body)
        got = b""
        while chunk := sk.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 200"), got[:200]
    (c,) = up.calls(path)
    assert c.header("X-Custom") == 'quote " and \\ backslash'
    assert c.header("Accept") == "a/b, c/d"
    assert c.body == b'{"x":1}'
    names = {k.lower() for k, _ in c.headers}
    assert not any(n.startswith("x-extra-") for n in names), c.headers


def test_default_allowlist(server, up, api):
    path = f"/deffwd/{unique('d')}"
    up.on(path, answer(200, {"ok": True}))
    r, _ = post(server, path, {"x": 1}, {"Accept": "text/csv", "Accept-Language": "de",
                                         "User-Agent": "shop/1.0", "X-Custom": "no"})
    assert r.status_code == 200, r.text
    (c,) = up.calls(path)
    assert c.header("Accept") == "text/csv"
    assert c.header("Accept-Language") == "de"
    assert c.header("User-Agent") == "shop/1.0"
    assert c.header("X-Custom") is None
    # no X-Request-ID from the client: ackd's generated one goes upstream
    d = api.task(r.headers["Task-Id"])
    assert d["correlation_id"] and c.header("X-Request-ID") == d["correlation_id"]
    assert c.header("traceparent") is None


# --------------------------------------------------------------------------
# limits


def test_concurrency_limit_is_respected(server, up, api):
    up.on("/conc", answer(200, {"ok": True}, delay=0.3))
    r = api.batch("conc", [{"payload": {"i": i}} for i in range(10)])
    assert r.status_code in (200, 202), r.text
    done = up.wait_done(10, "/conc", timeout=SOON + 5)
    assert up.max_inflight_of("/conc") == 2, up.max_inflight_of("/conc")
    starts = sorted(c.t_start for c in done)
    # 10 calls of 0.3 s, two at a time: at least 4 rounds after the first
    assert starts[-1] - starts[0] >= 4 * 0.3 - 0.05, starts
    assert sorted(c.json()["i"] for c in done) == list(range(10))


def test_rate_limit_is_a_token_bucket(server, up, api):
    """rate = 5: a bucket of one second's worth (5) that refills at 5/s.
    So 10 tasks queued at once start as 5, then one every 0.2 s: the 10th
    call comes >= 1 s after the first, and no window [t_i, t_j] holds more
    than 5 + 5 * (t_j - t_i) calls."""
    up.on("/rate", answer(200, {"ok": True}))
    r = api.batch("rate", [{"payload": {"i": i}} for i in range(10)])
    assert r.status_code in (200, 202), r.text
    calls = up.wait_calls(10, "/rate", timeout=SOON + 5)
    t = sorted(c.t_start for c in calls)
    assert t[-1] - t[0] >= 0.9, f"10 calls in {t[-1] - t[0]:.3f}s"
    assert t[-1] - t[0] <= 1.0 + LATE * 2, f"10 calls in {t[-1] - t[0]:.3f}s"
    for i in range(len(t)):
        for j in range(i + 1, len(t)):
            assert j - i + 1 <= 5 + 5 * (t[j] - t[i] + 0.1), (i, j, t)
    time.sleep(0.3)
    assert len(up.calls("/rate")) == 10


# --------------------------------------------------------------------------
# when calls start, and on which connection


def test_a_due_task_is_sent_at_once_and_a_delayed_one_on_time(server, up, api):
    up.on("/later", answer(200, {"ok": True}))
    t0 = time.monotonic()
    tid = api.submit_ok("later", {"now": True}, headers={"Idempotency-Key": unique("k")})
    (c,) = up.wait_calls(1, "/later", timeout=SOON)
    assert c.t_start - t0 < 0.3 * SLOW, c.t_start - t0        # woken by the commit
    assert c.method == "POST" and c.json() == {"now": True}
    assert c.header("Content-Type") == "application/json"
    assert c.header("Task-Id") == tid
    t1 = time.monotonic()
    api.submit_ok("later", {"now": False}, delay="700ms")
    calls = up.wait_calls(2, "/later", timeout=SOON)
    assert 0.65 <= calls[1].t_start - t1 <= 0.7 + LATE, calls[1].t_start - t1


def test_upstream_connections_are_kept_alive(server, up):
    path = f"/o/{unique('ka')}"
    up.on(path, answer(200, {"ok": True}))
    for _ in range(6):
        r, _ = post(server, path, {"x": 1})
        assert r.status_code == 200
    peers = {c.peer for c in up.calls(path)}
    assert len(peers) <= 2, peers            # one connection, reused (not 6)


def test_an_upstream_closing_every_connection_is_followed(server, up):
    """An upstream that closes after each answer: every call gets a new
    connection, and ackd keeps no descriptor (nor poll handle) of the closed
    ones: curl's close-socket callback closes them (http/client.c)."""
    path = f"/o/{unique('close')}"
    up.on(path, answer(200, {"ok": True}, headers={"Connection": "close"}))
    r, _ = post(server, path, {"x": -1})
    assert r.status_code == 200, r.text

    def fds():
        return len(os.listdir(f"/proc/{server.pid}/fd"))

    before = fds()
    for i in range(30):
        r, _ = post(server, path, {"x": i})
        assert r.status_code == 200, r.text
        assert r.json() == {"ok": True}
    peers = {c.peer for c in up.calls(path)}
    assert len(peers) == 31, len(peers)      # one connection per call
    assert fds() <= before + 2, (before, fds())


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_shutdown_grace_with_a_call_in_flight_is_idle(start_ackd, make_upstream):
    """During the shutdown grace the store answers waiting claims at once, so
    the dispatcher and the webhook sender stop claiming at the signal; they
    had claimed again and again (~0.75 of a CPU for the whole grace). The
    call in flight finishes inside the grace, and the sync client waiting
    for it gets its answer (it got a 504 at the signal before)."""
    up = make_upstream()
    up.on("/slow", answer(200, {"ok": True}, delay=2.0))
    srv = start_ackd(queue_config(
        {"s": fast_retry(upstream=up.origin)}, server={"shutdown_grace": "6s"}) | {
        "route POST /slow": {"queue": "s", "mode": "sync", "sync_timeout": "20s"}})
    got = {}

    def call():
        t0 = time.monotonic()
        got["r"] = requests.post(srv.url("/slow"), json={"x": 1}, timeout=20 * SLOW)
        got["secs"] = time.monotonic() - t0

    t = threading.Thread(target=call)
    t.start()
    up.wait_calls(1, timeout=SOON)
    srv.signal(signal.SIGTERM)
    time.sleep(0.3)
    cpu0, t0 = cpu_seconds(srv.pid), time.monotonic()
    time.sleep(1.0)
    busy = (cpu_seconds(srv.pid) - cpu0) / (time.monotonic() - t0)
    assert busy < 0.2, f"ackd used {busy:.0%} of a CPU in its shutdown grace"
    assert srv.wait_exit(15 * SLOW) == 0, srv.stderr_text()[-3000:]
    t.join(20 * SLOW)
    r = got["r"]
    assert r.status_code == 200 and r.json() == {"ok": True}, r.text   # the call's answer
    assert got["secs"] >= 1.9, got["secs"]
    assert r.headers.get("Connection") == "close"
    assert not srv.problems(), srv.problems()
    srv.start()
    doc = requests.get(srv.url(f"/v1/tasks/{r.headers['Task-Id']}"), timeout=SOON).json()
    assert doc["status"] == "completed" and doc["attempts"] == 1, doc


def test_at_shutdown_a_client_whose_call_cannot_finish_gets_its_status_url(start_ackd,
                                                                          make_upstream):
    """A sync client whose task is not running (queued behind the queue's
    concurrency), or whose call outlives the grace, is answered 504 with the
    status URL once no call can finish any more: not at the signal, and not
    by a dropped connection at the end of the grace. The tasks are kept and
    run after the restart."""
    up = make_upstream()
    up.on("/one", answer(200, {"n": 1}, delay=1.0))
    up.on("/two", answer(200, {"n": 2}))
    up.on("/long", answer(200, {"n": 3}, delay=4.0))
    srv = start_ackd(queue_config(
        {"c1": fast_retry(upstream=up.origin, concurrency=1),
         "lg": fast_retry(upstream=up.origin)}, server={"shutdown_grace": "2s"}) | {
        "route POST /one": {"queue": "c1", "mode": "sync", "sync_timeout": "20s"},
        "route POST /two": {"queue": "c1", "mode": "sync", "sync_timeout": "20s"},
        "route POST /long": {"queue": "lg", "mode": "sync", "sync_timeout": "20s"}})
    got = {}

    def call(path):
        t0 = time.monotonic()
        got[path] = requests.post(srv.url(path), json={"x": 1}, timeout=20 * SLOW)
        got[path + "-secs"] = time.monotonic() - t0

    threads = [threading.Thread(target=call, args=(p,)) for p in ("/one", "/long")]
    for t in threads:
        t.start()
    up.wait_calls(1, "/one", timeout=SOON)
    up.wait_calls(1, "/long", timeout=SOON)
    threads.append(threading.Thread(target=call, args=("/two",)))
    threads[-1].start()
    time.sleep(0.2)                          # /two is queued behind /one (concurrency 1)
    t_signal = time.monotonic()
    srv.signal(signal.SIGTERM)
    for t in threads:
        t.join(20 * SLOW)
    assert srv.wait_exit(15 * SLOW) == 0, srv.stderr_text()[-3000:]
    assert got["/one"].status_code == 200 and got["/one"].json() == {"n": 1}
    for path in ("/two", "/long"):
        p = problem(got[path], 504, "sync-timeout")
        assert p["status_url"] == f"/v1/tasks/{p['task_id']}", p
    # answered at the grace's end (2 s), when the long call was given up
    assert 1.5 < time.monotonic() - t_signal < 2.0 + LATE * 2
    assert up.calls("/two") == []
    assert not srv.problems(), srv.problems()
    srv.start()
    with Api(srv) as api:
        doc = terminal(api, got["/two"].json()["task_id"], timeout=SOON + 5)
        assert doc["status"] == "completed", doc
    assert len(up.calls("/two")) == 1


def test_an_upstream_closing_idle_connections_costs_nothing(start_ackd, make_upstream):
    """The poll handle of a kept-alive upstream connection keeps watching it
    between requests (http/client.c); when the upstream closes the idle
    connection, that handle must stop at once, not report a readable socket
    over and over (a busy loop), and the next call opens a new connection."""
    up = make_upstream()
    up.idle_timeout = 0.2
    up.on("/idle", answer(200, {"ok": True}))
    srv = start_ackd(queue_config({"i": fast_retry(upstream=up.origin)}) | {
        "route POST /idle": {"queue": "i", "mode": "sync", "sync_timeout": "10s"}})
    r, _ = post(srv, "/idle", {"n": 1})
    assert r.status_code == 200, r.text
    time.sleep(0.6)                          # the upstream has closed it by now
    cpu0, t0 = cpu_seconds(srv.pid), time.monotonic()
    time.sleep(1.0)
    busy = (cpu_seconds(srv.pid) - cpu0) / (time.monotonic() - t0)
    assert busy < 0.2, f"ackd used {busy:.0%} of a CPU while idle"
    r, _ = post(srv, "/idle", {"n": 2})
    assert r.status_code == 200, r.text
    assert len({c.peer for c in up.calls("/idle")}) == 2


def test_sync_retries_inside_a_wait_are_invisible_in_time_too(server, up):
    """A sync client whose task is retried waits for the retries, not for
    the sync_timeout: the answer comes as soon as the last attempt ends."""
    path = f"/o/{unique('quick')}"
    up.on(path, fail_then(2, 502))
    r, secs = post(server, path, {"x": 1})
    assert r.status_code == 200
    assert secs < 1.0 * SLOW + 0.5, secs


# --------------------------------------------------------------------------
# stopping with calls in flight


ROUTE_CRASH_CYCLES = 4


def test_kill_9_loses_no_answered_sync_request(start_ackd, make_upstream):
    """A sync route answers as soon as the upstream does, while the complete
    that records the outcome commits (api/routes.c, tq_take_waiters). Kill -9
    in the middle of such a load, start again on the same file: every
    request that got its answer is a task there (completed, or processing
    until its lease expires), and once the leases have expired every one is
    completed; a task that runs again goes upstream with the same
    Idempotency-Key (its task id) as its first call."""
    up = make_upstream()
    up.on("/pay", lambda req, n: Answer(200, json.dumps({"call": n}),
                                        {"Content-Type": "application/json"}))
    queue = {"upstream": up.origin, "max_attempts": 3, "retry_base": "20ms",
             "retry_cap": "50ms", "attempt_timeout": "1s", "connect_timeout": "1s"}

    def cfg(db=None):
        c = queue_config({"pay": queue}, storage={"sync": "full", **({"path": str(db)} if db
                                                                     else {})})
        c["route POST /pay"] = {"queue": "pay", "mode": "sync", "sync_timeout": "10s"}
        return c

    srv = start_ackd(cfg())
    db = srv.data_dir / "ackd.db"
    answered = {}
    lock = threading.Lock()
    for cycle in range(ROUTE_CRASH_CYCLES):
        stop = threading.Event()

        def client():
            with requests.Session() as s:
                while not stop.is_set():
                    try:
                        r = s.post(srv.url("/pay"), json={"cycle": cycle}, timeout=10 * SLOW)
                    except requests.RequestException:
                        return          # killed under us: in doubt, not answered
                    if r.status_code == 200:
                        with lock:
                            answered[r.headers["Task-Id"]] = r.json()

        threads = [threading.Thread(target=client) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        srv.expected_returncodes = {-signal.SIGKILL}
        srv.signal(signal.SIGKILL)
        srv.wait_exit()
        stop.set()
        for t in threads:
            t.join(30)
            assert not t.is_alive(), "a client hung after the kill"
        srv = start_ackd(cfg(db))
        with Api(srv) as api:
            for tid in list(answered):
                st = api.task(tid)["status"]
                assert st in ("completed", "processing"), (cycle, tid, st)
    assert len(answered) > 50, len(answered)
    # the leases of calls cut by a kill expire (connect + attempt timeout + 10 s)
    # and those tasks run again: in the end every answered request completed
    with Api(srv) as api:
        def all_done():
            return all(api.task(tid)["status"] == "completed" for tid in answered)
        wait_for(all_done, timeout=40 * SLOW, what="every answered task completed")
    by_task = {}
    for c in up.calls("/pay"):
        by_task.setdefault(c.header("Task-Id"), []).append(c)
    assert set(answered) <= set(by_task)
    for tid, calls in by_task.items():
        assert all(c.header("Idempotency-Key") == tid for c in calls), tid
    again = sum(1 for tid in answered if len(by_task[tid]) > 1)
    print(f"route crash test: {len(answered)} answered, {again} of them ran again")


def test_sigterm_with_calls_in_flight_stops_cleanly(start_ackd, make_upstream):
    """SIGTERM while upstream calls run: they finish inside shutdown_grace,
    their outcomes are recorded, and ackd exits 0 (no use after free of the
    HTTP client from its own callback, nor of the dispatcher by a claim the
    store answers as it closes; the sanitizer build checks both)."""
    for round_ in range(3):
        up = make_upstream()
        up.on("/slowish", answer(200, {"ok": True}, delay=0.3))
        up.on("/quick", answer(200, {"ok": True}))
        srv = start_ackd(queue_config(
            {"s": fast_retry(upstream=up.origin)}, server={"shutdown_grace": "5s"}) | {
            "route POST /slowish": {"queue": "s", "mode": "sync", "sync_timeout": "10s"},
            "route POST /quick": {"queue": "s", "mode": "async"}})
        stop = threading.Event()

        def load(path):
            with requests.Session() as s:
                while not stop.is_set():
                    try:
                        s.post(srv.url(path), json={"x": 1}, timeout=10 * SLOW)
                    except requests.RequestException:
                        return

        threads = [threading.Thread(target=load, args=("/slowish" if i % 2 else "/quick",))
                   for i in range(8)]
        for t in threads:
            t.start()
        up.wait_calls(8, timeout=SOON)
        time.sleep(0.2)
        srv.signal(signal.SIGTERM)
        try:
            assert srv.wait_exit(15 * SLOW) == 0, srv.stderr_text()[-3000:]
        finally:
            stop.set()
            for t in threads:
                t.join(15 * SLOW)
        assert not srv.problems(), srv.problems()


def test_a_start_on_a_port_in_use_takes_no_task(start_ackd, make_upstream, tmp_path):
    """ackd listens before it starts claiming: a start that fails on a port
    in use leased nothing (its dispatcher had claimed due tasks, which then
    waited out their lease, 30 s here, and counted an attempt), and exits 1
    having freed what it made (ASan's leak check)."""
    up = make_upstream()
    up.on("/", answer(200, {"ok": True}))
    db = str(tmp_path / "shared.db")
    cfg = queue_config({"p": fast_retry(upstream=up.origin, attempt_timeout="30s")},
                       storage={"path": db})
    a = start_ackd(cfg)
    with Api(a) as api:
        tid = api.submit_ok("p", {"x": 1}, delay="1s")
    a.stop()
    time.sleep(1.2)                                   # due now, and nobody serving it
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        b = start_ackd(cfg, port=port, wait=False)
        assert b.wait_exit(15 * SLOW) == 1
        b.expected_returncodes = {1}
        assert "address already in use" in b.stderr_text()
    assert up.calls("/") == []
    c = start_ackd(cfg)
    t0 = time.monotonic()
    with Api(c) as api:
        d = terminal(api, tid, timeout=SOON + 5)
        assert d["status"] == "completed" and d["attempts"] == 1, d
    assert time.monotonic() - t0 < 5 * SLOW               # not the 30 s lease
    assert [x.attempt for x in up.calls("/")] == [1]
