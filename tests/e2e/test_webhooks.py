"""Signed webhooks end to end (issue 5 §1 and §4, SPEC §5 and §6a): ackd
POSTs a task's outcome to its callback URL, signed per Standard Webhooks,
retried on a schedule, every try recorded, durable across a crash.

  - signatures checked by the official `standardwebhooks` npm package under
    Node (receiver.Verifier): both secrets of a rotation verify alone, a
    tampered body or id and an old timestamp do not;
  - the body's fields (type, task_id, queue, status, attempts, result |
    error, correlation_id, timestamp) for task.completed, task.failed and
    task.canceled, and for a route task;
  - retries: a receiver failing N times (500, 429, 408) then answering 200
    gets N+1 tries with one webhook-id, each try recorded with its status;
    the schedule's gaps, Retry-After, the schedule running out, refused
    connections and timeouts; 410 stops; other 4xx and 3xx are final
    (redirects are not followed); a huge answer is cut, not read whole;
  - durability: a receiver down while ackd is killed with SIGKILL right
    after the completion gets the webhook once both are back;
  - the address guard: loopback, private, link-local (the metadata
    address), CGNAT, multicast, unspecified, reserved and IPv4-mapped forms
    refused with the reason named, loopback delivered once 127.0.0.0/8 is
    allowed;
  - the callback URL from the enqueue field, a queue's default, a route's
    Callback-URL header and a route's default;
  - GET /v1/tasks/{id}/deliveries and POST /v1/tasks/{id}/redeliver (admin:
    the same webhook-id again).

One server (two secrets, 127.0.0.0/8 allowed, schedule 100ms 200ms 300ms)
and one receiver serve most of the module; each case has its own queue and
receiver paths. Cases that need other settings start their own server."""

import re
import signal
import time
import uuid

import pytest
import requests

from conftest import SLOW, free_port
from queue_helpers import (SOON, TIME_RE, Api, QueuePool, parse_time, problem, queue_config,
                           wait_for)
from receiver import Receiver, hook_headers, make_receiver, new_secret, py_sign, verifier  # noqa: F401
from upstream import Answer, answer, fail_then, hang, sequence

SECRET_OLD = new_secret()
SECRET_NEW = new_secret()
SECRET_QUEUE = new_secret()             # [queue ownsecret] webhook_secrets
SCHEDULE = (0.1, 0.2, 0.3)              # seconds; 4 tries in all
SCHEDULE_TEXT = "100ms 200ms 300ms"
TRY_TIMEOUT = 1.0 * SLOW                # [webhooks] timeout of the shared server
BODY_FIELDS = ["type", "task_id", "queue", "status", "attempts", "result", "error",
               "correlation_id", "timestamp"]
MSG_ID_RE = re.compile(r"^msg_[0-9a-z]{26,}$")

POOL = QueuePool("wq", n=60, options={"max_attempts": 3, "retry_base": "20ms",
                                       "retry_cap": "50ms", "attempt_timeout": "30s"})


def webhooks_section(**kw):
    return {"secrets": f"{SECRET_OLD} {SECRET_NEW}", "allow_private": "127.0.0.0/8",
            "schedule": SCHEDULE_TEXT, "timeout": f"{int(TRY_TIMEOUT * 1000)}ms", **kw}


@pytest.fixture(scope="module")
def rcv():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def backend():
    """The push upstream of the route cases."""
    u = Receiver().start()
    u.default(answer(200, {"charged": True}))
    yield u
    u.stop()


@pytest.fixture(scope="module")
def server(start_ackd_module, rcv, backend):
    queues = POOL.queues()
    queues["withdefault"] = {"callback_url": rcv.url("/queue-default")}
    queues["ownsecret"] = {"webhook_secrets": SECRET_QUEUE, "webhook_schedule": "50ms"}
    queues["push"] = {"upstream": backend.origin, "max_attempts": 2, "retry_base": "20ms",
                      "retry_cap": "50ms"}
    cfg = queue_config(queues, server={"shutdown_grace": "1s"})
    cfg["webhooks"] = webhooks_section()
    cfg["route POST /r/{case}"] = {"queue": "push", "mode": "async"}
    cfg["route POST /rd/{case}"] = {"queue": "push", "mode": "async",
                                    "callback_url": rcv.url("/route-default")}
    return start_ackd_module(cfg)


@pytest.fixture
def api(server):
    with Api(server) as a:
        yield a


@pytest.fixture
def q():
    return POOL.take()


def unique(prefix):
    return f"/{prefix}-{uuid.uuid4().hex[:12]}"


def run_task(api, queue, callback=None, result=None, fail=None, headers=None, **fields):
    """Submits a task (with callback_url) and works it: completes it with
    result, or fails it for good with the error `fail`; the task id."""
    if callback is not None:
        fields["callback_url"] = callback
    tid = api.submit_ok(queue, {"n": 1}, headers=headers, **fields)
    c = api.claim_one(queue)
    assert c["id"] == tid
    if fail is not None:
        r = api.fail(tid, c["lease_id"], error=fail, retry=False)
    else:
        r = api.complete(tid, c["lease_id"], result)
    assert r.status_code == 200, r.text
    return tid


def deliveries(api, tid):
    r = api.get(f"/v1/tasks/{tid}/deliveries")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["task_id"] == tid
    return doc["deliveries"]


def wait_delivery(api, tid, status=("delivered", "failed"), tries=None, timeout=SOON):
    """The task's single delivery once its status is one of `status` (and
    it has `tries` recorded tries, when given)."""
    if isinstance(status, str):
        status = (status,)

    def done():
        ds = deliveries(api, tid)
        if len(ds) != 1:
            return None
        d = ds[0]
        if d["status"] in status and (tries is None or len(d["attempts"]) >= tries):
            return d
        return None
    return wait_for(done, timeout=timeout, what=f"delivery of {tid} {status}")


def check_delivery_doc(d, url):
    assert MSG_ID_RE.match(d["id"]), d
    assert d["url"] == url
    assert d["type"] in ("task.completed", "task.failed", "task.canceled")
    assert TIME_RE.match(d["created_at"]), d
    assert d["tries"] == len(d["attempts"]), d
    for i, t in enumerate(d["attempts"], 1):
        assert t["try"] == i, d
        assert TIME_RE.match(t["at"]), t
        assert isinstance(t["duration_ms"], int) and t["duration_ms"] >= 0, t
        assert set(t) >= {"status", "error", "response_excerpt"}, t
    if d["status"] == "pending":
        assert d["next_try_at"] is not None
    else:
        assert d["next_try_at"] is None, d


def stays(pred, seconds):
    """pred() holds for `seconds` (checked every 50 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert pred()
        time.sleep(0.05)


# --------------------------------------------------------------------------
# the message: body, headers, signatures


def test_completed_webhook_body_headers_and_signature(server, api, q, rcv, verifier):
    path = unique("body")
    t_before = time.time()
    tid = run_task(api, q, rcv.url(path), result={"paid": 42, "ref": "x-1"},
                   headers={"X-Request-ID": "req-webhook-1"})
    (hook,) = rcv.wait_hooks(1, path)
    assert hook.method == "POST"
    assert hook.header("Content-Type").split(";")[0] == "application/json"
    body = hook.json()
    assert list(body) == BODY_FIELDS, body            # the fields, in SPEC §6a's order
    doc = api.task(tid)
    assert body["type"] == "task.completed"
    assert body["task_id"] == tid
    assert body["queue"] == q
    assert body["status"] == "completed"
    assert body["attempts"] == 1
    assert body["result"] == {"paid": 42, "ref": "x-1"}
    assert body["error"] is None
    assert body["correlation_id"] == "req-webhook-1"
    assert TIME_RE.match(body["timestamp"]), body
    assert abs(parse_time(body["timestamp"]) - parse_time(doc["updated_at"])) < 1.0

    assert hook.header("X-Request-ID") == "req-webhook-1"   # SPEC §5: carried to webhooks
    h = hook_headers(hook)
    assert MSG_ID_RE.match(h["webhook-id"]), h
    ts = int(h["webhook-timestamp"])                  # unix seconds
    assert t_before - 2 <= ts <= time.time() + 2, (ts, t_before)
    sigs = h["webhook-signature"].split(" ")
    assert len(sigs) == 2 and all(s.startswith("v1,") for s in sigs), h   # one per secret
    # an independent HMAC agrees with each signature (first secret signs first)
    assert sigs == [py_sign(SECRET_OLD, h["webhook-id"], ts, hook.body),
                    py_sign(SECRET_NEW, h["webhook-id"], ts, hook.body)]
    verifier.assert_verifies(SECRET_OLD, hook)

    d = wait_delivery(api, tid, "delivered")
    check_delivery_doc(d, rcv.url(path))
    assert d["id"] == h["webhook-id"]
    assert d["type"] == "task.completed"
    assert d["tries"] == 1 and d["attempts"][0]["status"] == 200
    assert d["attempts"][0]["error"] is None and d["last_error"] is None
    assert d["attempts"][0]["response_excerpt"] == '{"ok": true}'


def test_webhook_carries_traceparent(api, q, rcv):
    path = unique("trace")
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    run_task(api, q, rcv.url(path), result=1, headers={"traceparent": tp})
    (hook,) = rcv.wait_hooks(1, path)
    assert hook.header("traceparent") == tp


def test_a_queue_signs_with_its_own_secrets_and_schedule(api, rcv, verifier):
    """[queue NAME] webhook_secrets and webhook_schedule win over [webhooks]."""
    path = unique("ownsecret")
    rcv.on(path, answer(503, {"error": "down"}))
    tid = run_task(api, "ownsecret", rcv.url(path), result=1)
    d = wait_delivery(api, tid, "failed")
    assert d["tries"] == 2, d            # one delay in the queue's schedule: two tries
    hooks = rcv.wait_hooks(2, path)
    h, b = hook_headers(hooks[0]), hooks[0].body
    verdicts = verifier.check_many([(SECRET_QUEUE, h, b), (SECRET_OLD, h, b)])
    assert verdicts[0] == (True, None), "the queue's secret signs its webhooks"
    assert verdicts[1][0] is False, "the global secrets do not sign this queue's webhooks"


def test_rotation_either_secret_alone_verifies(api, q, rcv, verifier):
    path = unique("rot")
    run_task(api, q, rcv.url(path), result=[1, 2, 3])
    (hook,) = rcv.wait_hooks(1, path)
    h, b = hook_headers(hook), hook.body
    verdicts = verifier.check_many([(SECRET_OLD, h, b), (SECRET_NEW, h, b),
                                    (new_secret(), h, b)])
    assert verdicts[0] == (True, None), "a receiver with only the old secret must verify"
    assert verdicts[1] == (True, None), "a receiver with only the new secret must verify"
    assert verdicts[2][0] is False and "signature" in verdicts[2][1].lower(), verdicts[2]


def test_tampered_body_or_id_fails_verification(api, q, rcv, verifier):
    path = unique("tamper")
    run_task(api, q, rcv.url(path), result={"amount": 100})
    (hook,) = rcv.wait_hooks(1, path)
    h, b = hook_headers(hook), hook.body
    tampered = b.replace(b'"amount":100', b'"amount":900')
    assert tampered != b
    other_id = dict(h, **{"webhook-id": h["webhook-id"][:-1] + ("0" if h["webhook-id"][-1] != "0"
                                                                 else "1")})
    verdicts = verifier.check_many([(SECRET_NEW, h, b), (SECRET_NEW, h, tampered),
                                    (SECRET_NEW, h, b + b" "), (SECRET_NEW, other_id, b)])
    assert verdicts[0][0] is True
    for ok, err in verdicts[1:]:
        assert ok is False and "signature" in err.lower(), verdicts


def test_old_timestamp_fails_verification(api, q, rcv, verifier):
    path = unique("oldts")
    run_task(api, q, rcv.url(path), result="ok")
    (hook,) = rcv.wait_hooks(1, path)
    h, b = hook_headers(hook), hook.body
    msg = h["webhook-id"]
    old = int(time.time()) - 600                      # the library allows 5 minutes
    now = int(time.time())
    old_signed = {"webhook-id": msg, "webhook-timestamp": str(old),
                  "webhook-signature": py_sign(SECRET_NEW, msg, old, b)}
    now_signed = {"webhook-id": msg, "webhook-timestamp": str(now),
                  "webhook-signature": py_sign(SECRET_NEW, msg, now, b)}
    replayed = dict(h, **{"webhook-timestamp": str(old)})   # ackd's signature, timestamp moved
    verdicts = verifier.check_many([(SECRET_NEW, now_signed, b), (SECRET_NEW, old_signed, b),
                                    (SECRET_NEW, replayed, b)])
    assert verdicts[0] == (True, None)                # the forgery itself is well made
    assert verdicts[1][0] is False and "too old" in verdicts[1][1], verdicts[1]
    assert verdicts[2][0] is False, verdicts[2]


def test_failed_task_webhook(api, q, rcv, verifier):
    path = unique("failed")
    tid = run_task(api, q, rcv.url(path), fail="card declined")
    (hook,) = rcv.wait_hooks(1, path)
    body = hook.json()
    assert list(body) == BODY_FIELDS
    assert body["type"] == "task.failed" and body["status"] == "failed"
    assert body["task_id"] == tid and body["queue"] == q and body["attempts"] == 1
    assert body["result"] is None
    assert body["error"]["message"] == "card declined", body
    assert body["error"] == api.task(tid)["error"]
    verifier.assert_verifies(SECRET_OLD, hook)
    d = wait_delivery(api, tid, "delivered")
    assert d["type"] == "task.failed"


def test_failed_after_retries_webhook_counts_attempts(api, q, rcv):
    path = unique("failed3")
    tid = api.submit_ok(q, 1, callback_url=rcv.url(path))
    for i in range(3):                               # max_attempts = 3
        c = api.claim_one(q)
        assert c["id"] == tid
        assert api.fail(tid, c["lease_id"], error=f"boom {i + 1}").status_code == 200
    (hook,) = rcv.wait_hooks(1, path)
    body = hook.json()
    assert body["type"] == "task.failed" and body["attempts"] == 3
    assert body["error"]["message"] == "boom 3"
    time.sleep(0.3)
    assert len(rcv.calls(path)) == 1                  # one webhook, for the end only


def test_canceled_task_webhook(api, q, rcv, verifier):
    path = unique("canceled")
    tid = api.submit_ok(q, {"n": 2}, callback_url=rcv.url(path))
    r = api.cancel(tid)
    assert r.status_code == 200, r.text
    (hook,) = rcv.wait_hooks(1, path)
    body = hook.json()
    assert list(body) == BODY_FIELDS
    assert body["type"] == "task.canceled" and body["status"] == "canceled"
    assert body["task_id"] == tid and body["attempts"] == 0
    assert body["result"] is None
    verifier.assert_verifies(SECRET_NEW, hook)
    assert wait_delivery(api, tid, "delivered")["type"] == "task.canceled"


def test_no_callback_no_delivery(api, q):
    tid = run_task(api, q, None, result=1)
    time.sleep(0.2)
    assert deliveries(api, tid) == []
    problem(api.get("/v1/tasks/tsk_01m85wcy4yhgfasjy6asems3ch/deliveries"), 404)


def test_callback_url_must_be_http(api, q):
    for bad in ("ftp://example.com/x", "not a url", "javascript:alert(1)", "/relative", 42):
        problem(api.submit(q, 1, callback_url=bad), 422, "invalid-field")


# --------------------------------------------------------------------------
# where the callback URL comes from


def test_queue_default_callback_and_override(api, rcv):
    t1 = run_task(api, "withdefault", None, result="default")
    path = unique("override")
    t2 = run_task(api, "withdefault", rcv.url(path), result="override")
    assert api.task(t1)["callback_url"] == rcv.url("/queue-default")
    assert api.task(t2)["callback_url"] == rcv.url(path)
    wait_for(lambda: rcv.hooks("/queue-default", task_id=t1), what="the queue default's webhook")
    (h2,) = rcv.wait_hooks(1, path)
    assert h2.json()["task_id"] == t2
    assert not rcv.hooks("/queue-default", task_id=t2)


def test_callback_url_header_on_a_route(server, api, rcv, backend, verifier):
    path = unique("route")
    r = requests.post(server.url("/r/one"), json={"amount": 5},
                      headers={"Callback-URL": rcv.url(path), "X-Request-ID": "req-route-1"},
                      timeout=30 * SLOW)
    assert r.status_code == 202, r.text
    tid = r.json()["task_id"]
    (hook,) = rcv.wait_hooks(1, path)
    verifier.assert_verifies(SECRET_OLD, hook)
    body = hook.json()
    assert list(body) == BODY_FIELDS
    assert body["type"] == "task.completed" and body["task_id"] == tid
    assert body["queue"] == "push" and body["correlation_id"] == "req-route-1"
    res = body["result"]                              # a route task's result: the answer
    assert res["status"] == 200 and res["body"] == {"charged": True}, res
    assert res["content_type"].startswith("application/json")
    up_call = backend.calls("/r/one")[-1]
    assert not up_call.has("Callback-URL")            # ackd's own header stays here


def test_route_default_callback_and_header_override(server, api, rcv):
    r = requests.post(server.url("/rd/a"), json={}, timeout=30 * SLOW)
    assert r.status_code == 202, r.text
    t1 = r.json()["task_id"]
    path = unique("rd-override")
    r = requests.post(server.url("/rd/b"), json={}, headers={"Callback-URL": rcv.url(path)},
                      timeout=30 * SLOW)
    assert r.status_code == 202, r.text
    t2 = r.json()["task_id"]
    wait_for(lambda: rcv.hooks("/route-default", task_id=t1), what="the route default's webhook")
    (h2,) = rcv.wait_hooks(1, path)
    assert h2.json()["task_id"] == t2
    assert not rcv.hooks("/route-default", task_id=t2)
    r = requests.post(server.url("/r/bad"), json={}, headers={"Callback-URL": "gopher://x"},
                      timeout=30 * SLOW)
    problem(r, 400)


# --------------------------------------------------------------------------
# retries


def test_fails_n_times_then_succeeds_same_webhook_id(api, q, rcv, verifier):
    path = unique("flaky")
    rcv.on(path, sequence(Answer(500, "down"), Answer(429, "slow down"), Answer(408, "late"),
                          Answer(200, "thanks")))
    tid = run_task(api, q, rcv.url(path), result="ok")
    hooks = rcv.wait_hooks(4, path)
    d = wait_delivery(api, tid, "delivered")
    check_delivery_doc(d, rcv.url(path))
    assert d["tries"] == 4
    assert [t["status"] for t in d["attempts"]] == [500, 429, 408, 200]
    assert [t["response_excerpt"] for t in d["attempts"]] == ["down", "slow down", "late",
                                                              "thanks"]
    for t in d["attempts"][:3]:
        assert str(t["status"]) in t["error"], t
    assert d["attempts"][3]["error"] is None and d["last_error"] is None
    # one message: the same id and body on every try; each try signed anew
    assert {h.header("webhook-id") for h in hooks} == {d["id"]}
    assert len({h.body for h in hooks}) == 1
    verdicts = verifier.check_many([(SECRET_NEW, hook_headers(h), h.body) for h in hooks])
    assert all(ok for ok, _ in verdicts), verdicts
    # the gaps follow the schedule (±20 % jitter)
    gaps = [b.t_start - a.t_start for a, b in zip(hooks, hooks[1:])]
    for gap, planned in zip(gaps, SCHEDULE):
        assert gap >= planned * 0.8 - 0.02, (gaps, SCHEDULE)
    time.sleep(0.5)
    assert len(rcv.calls(path)) == 4                  # delivered: no more tries


def test_retry_after_wins_when_later(api, q, rcv):
    path = unique("retry-after")
    rcv.on(path, fail_then(1, 429, headers={"Retry-After": "1"}))
    tid = run_task(api, q, rcv.url(path), result=1)
    h1, h2 = rcv.wait_hooks(2, path)
    assert h2.t_start - h1.t_start >= 0.95, "Retry-After: 1 must delay the next try by 1 s"
    d = wait_delivery(api, tid, "delivered")
    assert [t["status"] for t in d["attempts"]] == [429, 200]


def test_schedule_runs_out_then_delivery_failed(api, q, rcv):
    path = unique("always503")
    rcv.on(path, answer(503, {"error": "maintenance"}))
    tid = run_task(api, q, rcv.url(path), result=1)
    d = wait_delivery(api, tid, "failed")
    assert d["tries"] == len(SCHEDULE) + 1
    assert [t["status"] for t in d["attempts"]] == [503] * (len(SCHEDULE) + 1)
    assert "gave up after 4 tries" in d["last_error"], d
    stays(lambda: len(rcv.calls(path)) == 4, 0.8)


def test_410_gone_stops_retries(api, q, rcv):
    path = unique("gone")
    rcv.on(path, answer(410, {"error": "unsubscribed"}))
    tid = run_task(api, q, rcv.url(path), result=1)
    d = wait_delivery(api, tid, "failed")
    assert d["tries"] == 1 and d["attempts"][0]["status"] == 410
    assert "410" in d["last_error"], d
    stays(lambda: len(rcv.calls(path)) == 1, 0.8)


@pytest.mark.parametrize("status", [400, 404, 302])
def test_other_statuses_are_final_and_redirects_not_followed(api, q, rcv, status):
    path = unique(f"final{status}")
    elsewhere = unique("elsewhere")
    rcv.on(path, answer(status, {"no": True}, headers={"Location": rcv.url(elsewhere)}))
    tid = run_task(api, q, rcv.url(path), result=1)
    d = wait_delivery(api, tid, "failed")
    assert d["tries"] == 1 and d["attempts"][0]["status"] == status
    assert str(status) in d["last_error"]
    if 300 <= status < 400:           # where it pointed, and what to do
        assert f"a redirect to {rcv.url(elsewhere)} that ackd does not follow" in \
            d["last_error"], d["last_error"]
    stays(lambda: len(rcv.calls(path)) == 1, 0.5)
    assert rcv.calls(elsewhere) == []


def test_refused_connection_is_retried_on_the_schedule(api, q):
    url = f"http://127.0.0.1:{free_port()}/nobody"
    tid = run_task(api, q, url, result=1)
    d = wait_delivery(api, tid, "failed")
    assert d["tries"] == 4
    for t in d["attempts"]:
        assert t["status"] is None and t["error"].startswith("could not connect to the receiver ("), t
    assert "gave up after 4 tries" in d["last_error"]


def test_timeout_is_retried(api, q, rcv):
    path = unique("slow")
    rcv.on(path, sequence(hang(TRY_TIMEOUT + 1.5), answer(200)))
    tid = run_task(api, q, rcv.url(path), result=1)
    d = wait_delivery(api, tid, "delivered", timeout=SOON + TRY_TIMEOUT)
    assert d["tries"] == 2
    first = d["attempts"][0]
    assert first["status"] is None, first
    assert first["error"].startswith("the receiver did not answer in time ("), first
    assert first["duration_ms"] >= TRY_TIMEOUT * 1000 * 0.9, first
    assert d["attempts"][1]["status"] == 200


def test_a_huge_answer_is_not_read_whole(api, q, rcv):
    path = unique("huge")
    rcv.on(path, answer(200, b"x" * (4 << 20), content_type="text/plain"))
    tid = run_task(api, q, rcv.url(path), result=1)
    d = wait_delivery(api, tid, "delivered")
    assert d["tries"] == 1
    excerpt = d["attempts"][0]["response_excerpt"]
    assert excerpt.startswith("xxxx") and len(excerpt) <= 1024, len(excerpt)


def test_redeliver_sends_the_same_message_again(api, q, rcv, verifier):
    path = unique("redeliver")
    tid = run_task(api, q, rcv.url(path), result={"v": 1})
    (first,) = rcv.wait_hooks(1, path)
    wait_delivery(api, tid, "delivered")
    r = api.post(f"/v1/tasks/{tid}/redeliver")
    assert r.status_code == 202, r.text
    assert r.json()["deliveries_url"] == f"/v1/tasks/{tid}/deliveries"
    first, second = rcv.wait_hooks(2, path)
    assert second.header("webhook-id") == first.header("webhook-id")
    assert second.body == first.body
    verifier.assert_verifies(SECRET_OLD, second)
    d = wait_delivery(api, tid, "delivered", tries=2)
    assert d["id"] == first.header("webhook-id")
    assert [t["status"] for t in d["attempts"]] == [200, 200]
    assert [t["try"] for t in d["attempts"]] == [1, 2]
    # a failed delivery can be sent again too, and then succeeds
    path2 = unique("redeliver-gone")
    rcv.on(path2, sequence(Answer(410, "gone"), Answer(200, "back")))
    tid2 = run_task(api, q, rcv.url(path2), result=2)
    wait_delivery(api, tid2, "failed")
    assert api.post(f"/v1/tasks/{tid2}/redeliver").status_code == 202
    d2 = wait_delivery(api, tid2, "delivered")
    assert [t["status"] for t in d2["attempts"]] == [410, 200]


def test_redeliver_refusals(api, q):
    running = api.submit_ok(q, 1, callback_url="http://127.0.0.1:9/x")
    problem(api.post(f"/v1/tasks/{running}/redeliver"), 409)
    api.cancel(running)
    no_cb = run_task(api, q, None, result=1)
    problem(api.post(f"/v1/tasks/{no_cb}/redeliver"), 409)
    problem(api.post("/v1/tasks/tsk_01m85wcy4yhgfasjy6asems3ch/redeliver"), 404)


def test_redeliver_is_for_admins(start_ackd, make_receiver):
    rcv = make_receiver()
    keys = {"k-client": "acme client", "k-worker": "acme worker jobs", "k-admin": "ops admin"}
    cfg = queue_config({"jobs": {}}, keys=keys)
    cfg["webhooks"] = webhooks_section()
    srv = start_ackd(cfg)
    with Api(srv, "k-client") as client, Api(srv, "k-worker") as worker, \
            Api(srv, "k-admin") as admin:
        tid = client.submit_ok("jobs", 1, callback_url=rcv.url("/adm"))
        c = worker.claim_one("jobs")
        assert worker.complete(tid, c["lease_id"], "done").status_code == 200
        rcv.wait_hooks(1, "/adm")
        assert wait_delivery(client, tid, "delivered")["tries"] == 1  # the owner may read
        problem(client.post(f"/v1/tasks/{tid}/redeliver"), 403)
        problem(worker.post(f"/v1/tasks/{tid}/redeliver"), 403)
        assert admin.post(f"/v1/tasks/{tid}/redeliver").status_code == 202
        rcv.wait_hooks(2, "/adm")
        with Api(srv, "k-other") as nobody:
            problem(nobody.get(f"/v1/tasks/{tid}/deliveries"), 401)


def test_a_tenant_signs_with_its_own_secrets(start_ackd, make_receiver, verifier):
    """[webhooks] tenant_secrets: a tenant's webhooks are signed with its own
    secrets (both of a rotation pair); other tenants keep the global ones."""
    rcv = make_receiver()
    own_a, own_b = new_secret(), new_secret()
    keys = {"k-acme": "acme client", "k-beta": "beta client", "k-worker": "ops worker jobs"}
    cfg = queue_config({"jobs": {}}, keys=keys)
    cfg["webhooks"] = webhooks_section(tenant_secrets=f"acme:{own_a} acme:{own_b}")
    srv = start_ackd(cfg)
    with Api(srv, "k-acme") as acme, Api(srv, "k-beta") as beta, Api(srv, "k-worker") as worker:
        for api, path in ((acme, "/t-acme"), (beta, "/t-beta")):
            tid = api.submit_ok("jobs", 1, callback_url=rcv.url(path))
            c = worker.claim_one("jobs")
            assert worker.complete(tid, c["lease_id"], "done").status_code == 200
        (ha,) = rcv.wait_hooks(1, "/t-acme")
        (hb,) = rcv.wait_hooks(1, "/t-beta")
    va = verifier.check_many([(own_a, hook_headers(ha), ha.body), (own_b, hook_headers(ha), ha.body),
                              (SECRET_OLD, hook_headers(ha), ha.body)])
    assert va[0] == (True, None) and va[1] == (True, None), va
    assert va[2][0] is False, "the global secrets do not sign acme's webhooks"
    vb = verifier.check_many([(SECRET_OLD, hook_headers(hb), hb.body), (own_a, hook_headers(hb), hb.body)])
    assert vb[0] == (True, None) and vb[1][0] is False, vb


# --------------------------------------------------------------------------
# durability


def test_receiver_down_across_a_crash_gets_the_webhook(start_ackd, make_receiver, verifier):
    """The receiver is down when the task completes; ackd is killed with
    SIGKILL right after; the receiver comes up, then ackd: the webhook
    arrives (the obligation was committed with the completion)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/late"
    timeout_ms = 500
    cfg = queue_config({"jobs": {}}, server={"shutdown_grace": "1s"})
    cfg["webhooks"] = webhooks_section(timeout=f"{timeout_ms}ms")
    srv = start_ackd(cfg)
    with Api(srv) as api:
        tid = run_task(api, "jobs", url, result={"durable": True})
    srv.signal(signal.SIGKILL)
    srv.wait_exit(10)
    srv._close_files()
    rcv = make_receiver(port)
    srv.start()
    # a try cut by the kill holds its lease (timeout + 10 s) before the next
    (hook,) = rcv.wait_hooks(1, "/late", timeout=SOON + timeout_ms / 1000 + 10)
    body = hook.json()
    assert body["task_id"] == tid and body["result"] == {"durable": True}
    verifier.assert_verifies(SECRET_NEW, hook)
    with Api(srv) as api:
        d = wait_delivery(api, tid, "delivered")
        assert d["id"] == hook.header("webhook-id")
        assert d["attempts"][-1]["status"] == 200
        for t in d["attempts"][:-1]:                  # refused before the kill, if tried
            assert t["status"] is None and t["error"], d
    stays(lambda: len(rcv.calls("/late")) == 1, 0.5)


# --------------------------------------------------------------------------
# the address guard

GUARDED = [
    ("http://127.0.0.1:{port}/x", "loopback"),
    ("http://localhost:{port}/x", "loopback"),
    ("http://[::1]:{port}/x", "loopback"),
    ("http://[::ffff:127.0.0.1]:{port}/x", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/x", "link-local"),
    ("http://[64:ff9b::a9fe:a9fe]/x", "link-local"),     # NAT64 form of the metadata address
    ("http://10.1.2.3/x", "private"),
    ("http://172.16.0.1/x", "private"),
    ("http://192.168.1.1/x", "private"),
    ("http://[fd00::1]/x", "private"),
    ("http://100.64.0.1/x", "CGNAT"),
    ("http://224.0.0.1/x", "multicast"),
    ("http://[ff02::1]/x", "multicast"),
    ("http://0.0.0.0:{port}/x", "unspecified"),
    ("http://[::]:{port}/x", "unspecified"),
    ("http://240.0.0.1/x", "reserved"),
    ("http://[::ffff:10.0.0.1]/x", "private"),
]


def test_private_callbacks_refused_without_allow_private(start_ackd, make_receiver):
    """A host written as a guarded address is refused when the task is
    submitted (422, nothing stored), on a route's Callback-URL too (400); a
    host name is refused when the delivery resolves it (localhost)."""
    rcv = make_receiver()
    cfg = queue_config({"jobs": {}})
    cfg["webhooks"] = {"secrets": SECRET_NEW, "schedule": SCHEDULE_TEXT}
    cfg["route POST /r"] = {"queue": "jobs", "mode": "async"}
    srv = start_ackd(cfg)
    with Api(srv) as api:
        named = []
        for url, why in GUARDED:
            url = url.format(port=rcv.port)
            if "localhost" in url:
                tid = api.submit_ok("jobs", 1, callback_url=url)
                assert api.cancel(tid).status_code == 200
                named.append((url, why, tid))
                continue
            r = api.submit("jobs", 1, callback_url=url)
            p = problem(r, 422, "invalid-field")
            assert p["field"] == "callback_url", p
            assert f"a {why} address" in p["detail"] and "allow_private" in p["detail"], (url, p)
            r = api.post("/r", {"x": 1}, headers={"Callback-URL": url})
            p = problem(r, 400, "bad-callback-url")
            assert f"a {why} address" in p["detail"], (url, p)
        # nothing was stored for the refused ones
        assert {t["id"] for t in api.list(queue="jobs")["tasks"]} == {t for _, _, t in named}
        for url, why, tid in named:
            d = wait_delivery(api, tid, "failed")
            assert d["tries"] == 1, (url, d)             # refused: not retried
            t = d["attempts"][0]
            assert t["status"] is None, (url, t)
            assert f"a {why} address" in d["last_error"], (url, d["last_error"])
            assert "allow_private" in d["last_error"], d["last_error"]
    time.sleep(0.3)
    assert rcv.requests == [], "a refused callback reached the receiver"


def test_loopback_delivered_once_allowed_and_only_that(api, q, rcv):
    """The shared server allows 127.0.0.0/8 (every case here is delivered to
    127.0.0.1); the other classes stay refused."""
    path = unique("allowed")
    tid = run_task(api, q, rcv.url(path), result=1)
    rcv.wait_hooks(1, path)
    assert wait_delivery(api, tid, "delivered")["tries"] == 1
    for url, why in (("http://169.254.169.254/latest/meta-data/", "link-local"),
                     ("http://10.0.0.1/x", "private"), ("http://[::1]:9/x", "loopback")):
        p = problem(api.submit(q, 1, callback_url=url), 422, "invalid-field")
        assert f"a {why} address" in p["detail"], (url, p)
