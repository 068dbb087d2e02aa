"""The task queue's HTTP API end to end (issue 3, SPEC §3-§5, §6a): submit
(single, batch, idempotent), the status document and its history, listing,
cancel, redrive, results, queue counts, the worker calls (claim, heartbeat,
complete, fail) with lease fencing, backoff and the dead-letter set, keys
and tenants, and retention.

Most cases share one server and take a queue of their own from a pool, so
a claim only ever sees the test's own tasks; cases that need other
settings (keys, a short retention) start their own server."""

import json
import sqlite3
import time

import pytest

from conftest import SLOW
from queue_helpers import (CLAIM_FIELDS, LEASE_ID_RE, SOON, STATES, STATUS_FIELDS, TASK_ID_RE,
                           TIME_RE, Api, QueuePool, format_time, parse_time, problem,
                           queue_config, wait_for)

POOL = QueuePool("q", 160, {"max_attempts": 3, "retry_base": "100ms", "retry_cap": "200ms",
                           "attempt_timeout": "30s"})


@pytest.fixture(scope="module")
def server(start_ackd_module):
    """No keys: loopback only, everyone is the admin of tenant "default"."""
    return start_ackd_module(queue_config(POOL.queues()))


@pytest.fixture
def api(server):
    with Api(server) as a:
        yield a


@pytest.fixture
def q():
    """A queue no other test touches."""
    return POOL.take()


# --------------------------------------------------------------------------
# submission


def test_submit_answers_202_with_location_retry_after_and_status_url(api, q):
    r = api.submit(q, {"to": "a@example.com"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"task_id", "status", "status_url"}, body
    tid = body["task_id"]
    assert TASK_ID_RE.match(tid), tid
    assert body["status"] == "accepted"
    assert body["status_url"] == f"/v1/tasks/{tid}"
    assert r.headers["Location"] == f"/v1/tasks/{tid}"
    assert r.headers["Retry-After"] == "1"
    assert r.headers["Content-Type"].startswith("application/json")
    assert "Idempotent-Replayed" not in r.headers


def test_task_ids_are_unique_url_safe_and_time_ordered(api, q):
    ids = []
    for i in range(12):
        ids.append(api.submit_ok(q, i))
        time.sleep(0.003)           # a new millisecond: the time part orders them
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids), ids
    for tid in ids:
        # 26+ base-32 characters: 48 bits of time and at least 80 random bits
        assert TASK_ID_RE.match(tid), tid


def test_status_document_has_every_field_of_the_spec(api, q):
    before = time.time()
    tid = api.submit_ok(q, {"n": 1}, headers={"X-Request-ID": "req-doc-1"})
    d = api.task(tid)
    for k in STATUS_FIELDS:
        assert k in d, f"status document lacks {k}: {d}"
    assert d["id"] == tid and d["queue"] == q
    assert d["status"] == "queued"
    assert d["attempts"] == 0 and d["max_attempts"] == 3
    for k in ("created_at", "updated_at"):
        assert TIME_RE.match(d[k]), d[k]
        assert before - 2 <= parse_time(d[k]) <= time.time() + 2
    assert d["next_attempt_at"] is None
    assert d["progress"] is None and d["result"] is None and d["error"] is None
    assert d["callback_url"] is None
    assert d["correlation_id"] == "req-doc-1"
    assert d["links"] == {"self": f"/v1/tasks/{tid}", "result": f"/v1/tasks/{tid}/result",
                          "events": f"/v1/tasks/{tid}/events"}


def test_submit_options_are_stored_and_used(api, q):
    tid = api.submit_ok(q, {"x": 1}, priority=7, max_attempts=9, timeout="2s",
                        callback_url="https://hooks.example.com/done")
    d = api.task(tid)
    assert d["max_attempts"] == 9 and d["priority"] == 7
    assert d["callback_url"] == "https://hooks.example.com/done"
    c = api.claim_one(q, wait=5)
    assert c["id"] == tid
    # `timeout` is the lease a pull worker gets when its claim names none
    lease_s = parse_time(c["lease_expires_at"]) - time.time()
    assert 0.5 < lease_s <= 2.5, c


def test_payload_of_any_json_type_reaches_the_worker_unchanged(api, q):
    payloads = [{"nested": {"list": [1, 2.5, None, True], "s": "é ü 漢字 \u2028"}}, [1, "two", {}],
                "a string", 42, -0.125, True, None, {}]
    ids = [api.submit_ok(q, p) for p in payloads]
    got = {}
    for _ in payloads:
        c = api.claim_one(q, wait=5)
        got[c["id"]] = c["payload"]
    assert got == dict(zip(ids, payloads))


def test_submit_without_payload_stores_null(api, q):
    r = api.post(f"/v1/queues/{q}/tasks", {})
    assert r.status_code == 202, r.text
    assert api.claim_one(q, wait=5)["payload"] is None


@pytest.mark.parametrize("body,payload", [
    # ASCII, plain escapes: the payload's text is kept, without the whitespace
    (b'{ "payload" : {"a" : [1, 2.50, -0, 1e-3], "s": "x \\" \\/ y"} , "priority": 3 }',
     '{"a":[1,2.50,-0,1e-3],"s":"x \\" \\/ y"}'),
    # what jansson must read (\u escapes, UTF-8, an escaped key): the same text
    # too, never jansson's print of it (0.1 as 0.10000000000000001)
    (b'{"payload": {"name": "caf\\u00e9 \xc3\xa9", "amount": 0.1, "n": 1.0e2},'
     b' "priority": 3}', '{"name":"caf\\u00e9 \u00e9","amount":0.1,"n":1.0e2}'),
    (b'{"p\\u0061yload": [0.1, 0.30, "\xc3\xa9"], "priority": 3}', '[0.1,0.30,"\u00e9"]'),
])
def test_payload_text_is_stored_compact_on_both_parsers(api, q, body, payload):
    r = api.post(f"/v1/queues/{q}/tasks", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    r = api.claim(q, max=1, wait=5)
    assert r.status_code == 200, r.text
    c = r.json()["tasks"][0]
    assert c["payload"] == list(json.loads(body).values())[0]
    assert api.task(c["id"])["priority"] == 3
    # the claim's text carries it as sent, compact
    assert '"payload":' + payload in r.text, r.text
    # a worker's result takes the same two ways, and keeps its text too
    result = b'{"lease_id": "%s", "result": {"ok" : true, "v": "\\u00e9", "n": [1.0, 0.1]}}'
    r = api.post(f"/v1/tasks/{c['id']}/complete", data=result % c["lease_id"].encode(),
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert '"result":{"ok":true,"v":"\\u00e9","n":[1.0,0.1]}' in r.text, r.text
    assert api.task(c["id"])["result"] == {"ok": True, "v": "\u00e9", "n": [1.0, 0.1]}
    # a repeated key, even deep in the payload, is still malformed
    r = api.post(f"/v1/queues/{q}/tasks", data=b'{"payload": {"a": {"b": 1, "b": 2}}}',
                 headers={"Content-Type": "application/json"})
    problem(r, 400, "malformed-json")


def test_batch_payloads_keep_their_text(api, q):
    """A batch is read by jansson whole; each task's payload is still the
    client's text (0.1 stays 0.1, not 0.10000000000000001)."""
    body = ('{"tasks": [{"payload": {"amount": 0.1, "who": "\u00e9"}},'
            ' {"priority": 1, "payload": [2.50, 1e2]}, {"payload": "s"}, {}]}').encode()
    r = api.post(f"/v1/queues/{q}/tasks:batch", data=body,
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    r = api.claim(q, max=4, wait=5)
    assert r.status_code == 200, r.text
    for text in ('"payload":{"amount":0.1,"who":"\u00e9"}', '"payload":[2.50,1e2]',
                 '"payload":"s"', '"payload":null'):
        assert text in r.text, r.text


def test_small_and_large_payloads_come_back_whole(api, q):
    """A payload over 512 bytes is kept outside the task row (schema v5):
    claims read both kinds the same, in submission order."""
    small = {"n": 1}
    large = {"rows": ["r%04d" % i + "x" * 40 for i in range(100)]}  # ~5 KB
    ids = [api.submit_ok(q, small), api.submit_ok(q, large), api.submit_ok(q, small)]
    got = api.claim_tasks(q, max=10, wait=5)
    assert [t["id"] for t in got] == ids
    assert [t["payload"] for t in got] == [small, large, small]
    for t in got:
        assert api.complete(t["id"], t["lease_id"], {"ok": True}).status_code == 200
    assert api.task(ids[1])["status"] == "completed"


def test_delay_and_run_at_set_next_attempt_at(api, q):
    now = time.time()
    a = api.submit_ok(q, 1, delay=30)
    b = api.submit_ok(q, 2, delay="45s")
    at = format_time(now + 60)
    c = api.submit_ok(q, 3, run_at=at)
    past = api.submit_ok(q, 4, run_at=format_time(now - 3600))
    da, db, dc = api.task(a), api.task(b), api.task(c)
    assert da["status"] == db["status"] == dc["status"] == "queued"
    assert now + 28 <= parse_time(da["next_attempt_at"]) <= time.time() + 31
    assert now + 43 <= parse_time(db["next_attempt_at"]) <= time.time() + 46
    assert dc["next_attempt_at"] == at
    # a run_at in the past is due at once; the delayed ones are not claimable
    assert api.task(past)["next_attempt_at"] is None
    assert [t["id"] for t in api.claim_tasks(q, max=10)] == [past]
    assert api.claim_tasks(q, max=10) == []


def test_unknown_field_is_422_naming_it(api, q):
    p = problem(api.post(f"/v1/queues/{q}/tasks", {"payload": 1, "paylod": 2}), 422,
                "invalid-field")
    assert p["field"] == "paylod" and "paylod" in p["detail"]


@pytest.mark.parametrize("field,value", [
    ("delay", "soon"), ("delay", -1), ("delay", [1]),
    # beyond a year: a mistake (1e20 s overflowed into a due time in the past)
    ("delay", 1e20), ("delay", 9223372036854775807), ("delay", "400d"),
    ("run_at", "tomorrow"), ("run_at", 1700000000), ("run_at", "9999-12-31T23:59:59Z"),
    ("priority", "high"), ("priority", 5000), ("priority", 1.5),
    ("max_attempts", 0), ("max_attempts", "3"),
    ("timeout", "10ms"), ("timeout", "forever"), ("timeout", "8d"),
    ("callback_url", "ftp://example.com/x"), ("callback_url", 7),
])
def test_wrong_field_type_is_422_naming_the_field(api, q, field, value):
    r = api.post(f"/v1/queues/{q}/tasks", {"payload": None, field: value})
    p = problem(r, 422, "invalid-field")
    assert p["field"] == field, p
    assert api.list(queue=q)["tasks"] == []


def test_delay_and_run_at_together_are_refused(api, q):
    p = problem(api.post(f"/v1/queues/{q}/tasks",
                         {"delay": 1, "run_at": format_time(time.time() + 5)}), 422)
    assert p["field"] == "run_at"


def test_malformed_json_is_400_saying_where(api, q):
    body = b'{\n  "payload": {"a": 1,,}\n}'
    r = api.post(f"/v1/queues/{q}/tasks", data=body,
                 headers={"Content-Type": "application/json"})
    p = problem(r, 400, "malformed-json")
    assert p["line"] == 2, p
    assert isinstance(p["column"], int) and p["column"] > 0, p
    assert "line 2" in p["detail"], p
    # an empty body is malformed too
    r = api.post(f"/v1/queues/{q}/tasks", data=b"", headers={"Content-Type": "application/json"})
    problem(r, 400, "malformed-json")


@pytest.mark.parametrize("body,says", [
    (b'{"payload": "a\\u0000b"}', "a string holds \\u0000 (a NUL character)"),
    (b'{"payload": 123456789012345678901234}', "an integer past 64 bits"),
    (b'{"payload": 1e400}', "a number too large for a double"),
    (b'{"payload": "\xff\xfe"}', "the body is not UTF-8"),
])
def test_json_ackd_cannot_hold_is_400_in_plain_words(api, q, body, says):
    """Valid JSON jansson cannot hold: the detail says what and where, not
    jansson's own terms ("without JSON_ALLOW_NUL", "too big integer")."""
    r = api.post(f"/v1/queues/{q}/tasks", data=body, headers={"Content-Type": "application/json"})
    p = problem(r, 400, "malformed-json")
    assert says in p["detail"] and p["detail"].startswith("line 1, column "), p
    assert "JSON_" not in p["detail"] and "too big integer" not in p["detail"], p


def test_body_that_is_not_an_object_is_422(api, q):
    problem(api.post(f"/v1/queues/{q}/tasks", [1, 2]), 422)
    problem(api.post(f"/v1/queues/{q}/tasks", "text"), 422)


def test_non_json_content_type_is_415(api, q):
    r = api.post(f"/v1/queues/{q}/tasks", data=b'{"payload": 1}',
                 headers={"Content-Type": "text/plain"})
    problem(r, 415, "unsupported-media-type")
    r = api.post(f"/v1/queues/{q}/tasks", data=b"payload=1",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    problem(r, 415)
    # +json types are JSON
    r = api.post(f"/v1/queues/{q}/tasks", data=b'{"payload": 1}',
                 headers={"Content-Type": "application/vnd.acme+json"})
    assert r.status_code == 202, r.text


def test_unknown_queue_is_404(api):
    p = problem(api.submit("no-such-queue", 1), 404, "queue-not-found")
    assert "no-such-queue" in p["detail"]
    problem(api.batch("no-such-queue", [{"payload": 1}]), 404, "queue-not-found")
    problem(api.claim("no-such-queue"), 404, "queue-not-found")


# --------------------------------------------------------------------------
# idempotency


def test_idempotent_repeat_gets_the_same_task(api, q):
    h = {"Idempotency-Key": "order-1001"}
    r1 = api.submit(q, {"amount": 5}, headers=h)
    assert r1.status_code == 202 and "Idempotent-Replayed" not in r1.headers
    tid = r1.json()["task_id"]
    for _ in range(3):
        r = api.submit(q, {"amount": 5}, headers=h)
        assert r.status_code == 202, r.text
        assert r.json()["task_id"] == tid
        assert r.headers["Location"] == f"/v1/tasks/{tid}"
        assert r.headers.get("Idempotent-Replayed") == "true"
    assert [t["id"] for t in api.list(queue=q)["tasks"]] == [tid]
    # still the same task once it has finished
    api.run_one(q, {"ok": True})
    r = api.submit(q, {"amount": 5}, headers=h)
    assert r.json()["task_id"] == tid and r.headers.get("Idempotent-Replayed") == "true"


def test_idempotency_key_with_another_body_is_422(api, q):
    h = {"Idempotency-Key": "order-2002"}
    tid = api.submit_ok(q, {"amount": 5}, headers=h)
    p = problem(api.submit(q, {"amount": 6}, headers=h), 422, "idempotency-mismatch")
    assert p["task_id"] == tid
    assert [t["id"] for t in api.list(queue=q)["tasks"]] == [tid]


def test_idempotency_key_is_scoped_per_queue(api, q):
    other = POOL.take()
    h = {"Idempotency-Key": "shared-key"}
    a = api.submit_ok(q, 1, headers=h)
    b = api.submit_ok(other, 1, headers=h)
    assert a != b


def test_bad_idempotency_key_is_400(api, q):
    problem(api.submit(q, 1, headers={"Idempotency-Key": "k" * 256}), 400)


# --------------------------------------------------------------------------
# batch


def test_batch_enqueues_every_task_in_one_answer(api, q):
    tasks = [{"payload": {"i": i}, "priority": i % 3} for i in range(25)]
    r = api.batch(q, tasks)
    assert r.status_code == 202, r.text
    got = r.json()["tasks"]
    assert len(got) == 25
    ids = [t["task_id"] for t in got]
    assert len(set(ids)) == 25
    for t in got:
        assert t["status"] == "accepted" and t["status_url"] == f"/v1/tasks/{t['task_id']}"
    assert api.queues()[q]["counts"]["queued"] == 25
    claimed = api.claim_tasks(q, max=100)
    assert sorted(c["id"] for c in claimed) == sorted(ids)
    assert {c["id"]: c["payload"] for c in claimed} == {i: t["payload"] for i, t in zip(ids, tasks)}


def test_batch_of_1000_is_accepted(api, q):
    r = api.batch(q, [{"payload": i} for i in range(1000)])
    assert r.status_code == 202, r.text[:300]
    assert len(r.json()["tasks"]) == 1000
    assert api.queues()[q]["counts"]["queued"] == 1000


@pytest.mark.parametrize("body,field", [
    ({"tasks": []}, "tasks"),
    ({"tasks": {}}, "tasks"),
    ({}, "tasks"),
    ({"tasks": [{"payload": 1}] * 1001}, "tasks"),
    ({"tasks": [{"payload": 1}, 5]}, "tasks[1]"),
    ({"tasks": [{"payload": 1}, {"payload": 2, "colour": "red"}]}, "tasks[1].colour"),
    ({"tasks": [{"payload": 1}, {"payload": 2}, {"delay": "later"}]}, "tasks[2].delay"),
])
def test_bad_batch_is_422_and_enqueues_nothing(api, q, body, field):
    p = problem(api.post(f"/v1/queues/{q}/tasks:batch", body), 422, "invalid-field")
    assert p["field"] == field, p
    assert api.list(queue=q)["tasks"] == []


def test_batch_items_may_carry_idempotency_keys(api, q):
    r = api.batch(q, [{"payload": 1, "idempotency_key": "a"}, {"payload": 2}])
    first = [t["task_id"] for t in r.json()["tasks"]]
    r = api.batch(q, [{"payload": 1, "idempotency_key": "a"}, {"payload": 3}])
    assert r.status_code == 202
    again = r.json()["tasks"]
    assert again[0]["task_id"] == first[0] and again[0].get("replayed") is True
    assert again[1]["task_id"] not in first
    problem(api.batch(q, [{"payload": 9, "idempotency_key": "a"}]), 422, "idempotency-mismatch")


def test_an_idempotency_key_header_covers_a_whole_batch(api, q):
    """A client that sends its batch again under the same Idempotency-Key
    gets the same tasks (it got new ones: the header was ignored); a
    different batch under that key is a mismatch; an item may not carry a
    key of its own then."""
    tasks = [{"payload": 1}, {"payload": 2}]
    key = {"Idempotency-Key": f"batch-{q}"}
    r1 = api.batch(q, tasks, headers=key)
    assert r1.status_code == 202, r1.text
    assert "Idempotent-Replayed" not in r1.headers
    ids = [t["task_id"] for t in r1.json()["tasks"]]
    r2 = api.batch(q, tasks, headers=key)
    assert r2.status_code == 202, r2.text
    assert [t["task_id"] for t in r2.json()["tasks"]] == ids
    assert all(t.get("replayed") is True for t in r2.json()["tasks"])
    assert r2.headers.get("Idempotent-Replayed") == "true"
    p = problem(api.batch(q, tasks + [{"payload": 3}], headers=key), 422, "idempotency-mismatch")
    assert p["task_id"] == ids[0], p
    p = problem(api.batch(q, [{"payload": 1, "idempotency_key": "own"}],
                          headers={"Idempotency-Key": f"other-{q}"}), 422, "invalid-field")
    assert p["field"] == "tasks[0].idempotency_key", p
    assert sorted(t["id"] for t in api.list(queue=q)["tasks"]) == sorted(ids)


# --------------------------------------------------------------------------
# correlation


def test_request_id_and_traceparent_follow_the_task(api, q):
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    tid = api.submit_ok(q, 1, headers={"X-Request-ID": "req-7f3a9b", "traceparent": tp})
    d = api.task(tid)
    assert d["correlation_id"] == "req-7f3a9b" and d["traceparent"] == tp
    c = api.claim_one(q, wait=5)
    assert c["correlation_id"] == "req-7f3a9b" and c["traceparent"] == tp


@pytest.mark.parametrize("tp", [
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   # upper case
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   # an all-zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   # an all-zero parent id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   # the forbidden version
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  # version 00 with more
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",      # no flags
    "hello",
], ids=["upper", "zero-trace", "zero-parent", "version-ff", "00-extra", "short", "junk"])
def test_a_traceparent_that_does_not_parse_is_not_kept(api, q, tp):
    """W3C Trace Context: a traceparent that does not parse starts a new
    trace; ackd neither keeps nor passes on one (the submit still works)."""
    tid = api.submit_ok(q, 1, headers={"traceparent": tp})
    assert "traceparent" not in api.task(tid)
    assert "traceparent" not in api.claim_one(q, wait=5)


def test_a_later_traceparent_version_is_kept(api, q):
    tp = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next"
    tid = api.submit_ok(q, 1, headers={"traceparent": tp})
    assert api.task(tid)["traceparent"] == tp


def test_a_generated_request_id_becomes_the_correlation_id(api, q):
    r = api.submit(q, 1)
    rid = r.headers["X-Request-ID"]
    assert rid
    assert api.task(r.json()["task_id"])["correlation_id"] == rid


# --------------------------------------------------------------------------
# reading


def test_unknown_task_is_404(api):
    problem(api.get("/v1/tasks/tsk_01m85wcy4yhgfasjy6asems3ch"), 404, "task-not-found")
    problem(api.get("/v1/tasks/not-an-id"), 404, "task-not-found")
    problem(api.get("/v1/tasks/tsk_01m85wcy4yhgfasjy6asems3ch/result"), 404)
    problem(api.cancel("tsk_01m85wcy4yhgfasjy6asems3ch"), 404)
    problem(api.retry("tsk_01m85wcy4yhgfasjy6asems3ch"), 404)


def test_history_lists_the_attempts(api, q):
    tid = api.submit_ok(q, 1)
    assert api.task(tid, history=True)["history"] == []
    assert "history" not in api.task(tid)
    c = api.claim_one(q, wait=5)
    h = api.task(tid, history=True)["history"]
    assert len(h) == 1 and h[0]["attempt"] == 1 and h[0]["outcome"] is None
    assert TIME_RE.match(h[0]["started_at"]) and h[0]["ended_at"] is None
    assert api.fail(tid, c["lease_id"], "first try broke").status_code == 200
    c = api.claim_one(q, wait=5)
    # the ended attempt, then the running one (the task row's, stored when it ends)
    h = api.task(tid, history=True)["history"]
    assert [(a["attempt"], a["outcome"]) for a in h] == [(1, "retry"), (2, None)], h
    assert h[1]["ended_at"] is None and h[1]["started_at"] >= h[0]["ended_at"]
    assert api.complete(tid, c["lease_id"], {"done": 1}).status_code == 200
    h = api.task(tid, history=True)["history"]
    assert [a["attempt"] for a in h] == [1, 2]
    assert [a["outcome"] for a in h] == ["retry", "completed"]
    assert h[0]["error"]["message"] == "first try broke"
    assert all(TIME_RE.match(a["ended_at"]) for a in h)
    assert "history" not in api.task(tid, history=False)
    for on in ("true", "1", ""):
        assert "history" in api.get(f"/v1/tasks/{tid}", params={"history": on}).json(), on
    assert "history" not in api.get(f"/v1/tasks/{tid}", params={"history": "0"}).json()
    p = problem(api.get(f"/v1/tasks/{tid}", params={"history": "yes please"}), 422,
                "invalid-field")
    assert p["field"] == "history"


def test_long_poll_on_a_terminal_task_answers_at_once(api, q):
    tid = api.submit_ok(q, 1)
    api.run_one(q, {"v": 1})
    t0 = time.monotonic()
    d = api.task(tid, wait=20)
    assert d["status"] == "completed" and d["result"] == {"v": 1}
    assert time.monotonic() - t0 < 2.0 * SLOW


def test_long_poll_answers_the_current_state_when_the_wait_ends(api, q):
    tid = api.submit_ok(q, 1)
    t0 = time.monotonic()
    r = api.get(f"/v1/tasks/{tid}", params={"wait": "600ms"})
    took = time.monotonic() - t0
    assert r.status_code == 200 and r.json()["status"] == "queued"
    assert "Preference-Applied" not in r.headers
    assert 0.55 <= took < 0.6 + 3.0 * SLOW, took


def test_prefer_wait_is_honoured_and_echoed(api, q):
    tid = api.submit_ok(q, 1)
    t0 = time.monotonic()
    r = api.get(f"/v1/tasks/{tid}", headers={"Prefer": "wait=1"})
    took = time.monotonic() - t0
    assert r.status_code == 200 and r.json()["status"] == "queued"
    assert r.headers.get("Preference-Applied") == "wait=1"
    assert 0.95 <= took < 1.0 + 3.0 * SLOW, took


@pytest.mark.parametrize("value", ["abc", "-1", "1x", ""])
def test_a_wait_that_is_not_a_duration_is_a_422_naming_it(api, q, value):
    tid = api.submit_ok(q, 1)
    t0 = time.monotonic()
    r = api.get(f"/v1/tasks/{tid}", params={"wait": value})
    assert time.monotonic() - t0 < 0.5 * SLOW  # answered at once, no long poll
    p = problem(r, 422, "invalid-field")
    assert p["field"] == "wait" and "duration" in p["detail"]


@pytest.mark.parametrize("prefer, waits", [
    ('wait="1"', True),                 # RFC 7240: a value may be quoted
    ("handling=lenient, wait = 1", True),  # BWS around "="
    ("wait=1; foo=bar", True),          # parameters after it
    ("xwait=1", False),                 # another preference that ends in "wait"
    ("wait=1s", False),                 # not delta-seconds: ignored, not an error
    ("wait", False),
])
def test_prefer_wait_is_read_as_rfc_7240_says(api, q, prefer, waits):
    tid = api.submit_ok(q, 1)
    t0 = time.monotonic()
    r = api.get(f"/v1/tasks/{tid}", headers={"Prefer": prefer})
    took = time.monotonic() - t0
    assert r.status_code == 200 and r.json()["status"] == "queued"
    if waits:
        assert r.headers.get("Preference-Applied") == "wait=1"
        assert 0.95 <= took < 1.0 + 3.0 * SLOW, took
    else:
        assert "Preference-Applied" not in r.headers
        assert took < 0.5 * SLOW, took


# --------------------------------------------------------------------------
# listing


def test_list_is_newest_first_with_cursor_pagination(api, q):
    ids = []
    for i in range(7):
        ids.append(api.submit_ok(q, i))
        time.sleep(0.002)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"queue": q, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = api.list(**params)
        pages += 1
        assert len(page["tasks"]) <= 3
        seen += [t["id"] for t in page["tasks"]]
        for t in page["tasks"]:
            assert t["queue"] == q and t["status"] == "queued"
        cursor = page["next_cursor"]
        if not cursor:
            break
        assert pages < 10
    assert seen == list(reversed(ids))
    whole = api.list(queue=q)
    assert [t["id"] for t in whole["tasks"]] == list(reversed(ids))
    assert whole["next_cursor"] is None


def test_list_filters_by_status_and_queue(api, q):
    other = POOL.take()
    a = api.submit_ok(q, 1)
    b = api.submit_ok(q, 2)
    c = api.submit_ok(q, 3)
    o = api.submit_ok(other, 4)
    api.cancel(a)
    claim = api.claim_one(q, wait=5)
    api.complete(claim["id"], claim["lease_id"], {"r": 1})
    left = ({b, c} - {claim["id"]}).pop()
    assert [t["id"] for t in api.list(queue=q, status="canceled")["tasks"]] == [a]
    assert [t["id"] for t in api.list(queue=q, status="completed")["tasks"]] == [claim["id"]]
    assert [t["id"] for t in api.list(queue=q, status="queued")["tasks"]] == [left]
    assert api.list(queue=q, status="failed")["tasks"] == []
    assert [t["id"] for t in api.list(queue=other)["tasks"]] == [o]
    everything = {t["id"] for t in api.list(limit=1000)["tasks"]}
    assert {a, b, c, o} <= everything


@pytest.mark.parametrize("params,field", [
    ({"status": "done"}, "status"),
    ({"limit": "0"}, "limit"),
    ({"limit": "1001"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"cursor": "nonsense"}, "cursor"),
])
def test_bad_list_parameters_are_422(api, params, field):
    p = problem(api.get("/v1/tasks", params=params), 422, "invalid-field")
    assert p["field"] == field


# --------------------------------------------------------------------------
# queues


def test_queues_lists_every_queue_with_counts_and_oldest_age(api, q):
    assert set(POOL.names) <= set(api.queues())
    empty = api.queues()[q]
    assert empty["executor"] == "pull"
    assert empty["counts"] == {s: 0 for s in STATES}
    assert empty["oldest_queued_age_ms"] is None
    ids = [api.submit_ok(q, i) for i in range(5)]
    time.sleep(0.2)
    c1 = api.claim_one(q, wait=5)
    c2 = api.claim_one(q, wait=5)
    c3 = api.claim_one(q, wait=5)
    api.complete(c1["id"], c1["lease_id"], 1)
    api.fail(c2["id"], c2["lease_id"], "no", retry=False)
    rest = [i for i in ids if i not in (c1["id"], c2["id"], c3["id"])]
    api.cancel(rest[0])
    info = api.queues()[q]
    assert info["counts"] == {"queued": 1, "processing": 1, "completed": 1, "failed": 1,
                              "canceled": 1}
    assert info["oldest_queued_age_ms"] >= 200
    # one queue: its own document, the same as its entry in the list
    one = api.get(f"/v1/queues/{q}")
    assert one.status_code == 200
    d = one.json()
    assert d["name"] == q and d["counts"] == info["counts"] and d["executor"] == "pull"
    assert d["oldest_queued_age_ms"] >= info["oldest_queued_age_ms"]
    p = problem(api.get("/v1/queues/no-such-queue"), 404, "queue-not-found")
    assert "no-such-queue" in p["detail"]


# --------------------------------------------------------------------------
# cancel and redrive


def test_cancel_a_queued_task(api, q):
    tid = api.submit_ok(q, 1)
    r = api.cancel(tid)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "canceled" and r.json()["id"] == tid
    assert api.status(tid) == "canceled"
    assert api.claim_tasks(q) == []
    # terminal: a second cancel is a conflict
    p = problem(api.cancel(tid), 409, "conflict")
    assert p["task_id"] == tid


def test_cancel_a_processing_task_asks_the_worker(api, q):
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5)
    r = api.cancel(tid)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["status"] == "processing" and d["cancel_requested"] is True
    assert api.task(tid)["cancel_requested"] is True
    hb = api.heartbeat(tid, c["lease_id"])
    assert hb.status_code == 200 and hb.json()["cancel_requested"] is True
    # the worker stops: even a retryable failure ends it as canceled
    r = api.fail(tid, c["lease_id"], "stopped on request", retry=True)
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert api.claim_tasks(q) == []


def test_cancel_a_finished_task_is_409(api, q):
    tid = api.submit_ok(q, 1)
    api.run_one(q, 1)
    problem(api.cancel(tid), 409)
    assert api.status(tid) == "completed"


def test_retry_redrives_a_failed_task(api, q):
    tid = api.submit_ok(q, {"job": 1}, max_attempts=1)
    c = api.claim_one(q, wait=5)
    assert api.fail(tid, c["lease_id"], "broken").json()["status"] == "failed"
    r = api.retry(tid)
    assert r.status_code == 202, r.text
    d = r.json()
    assert d["status"] == "queued" and d["error"] is None
    assert d["attempts"] == 1 and d["max_attempts"] > 1    # a fresh allowance
    c = api.claim_one(q, wait=5)
    assert c["id"] == tid and c["attempt"] == 2 and c["payload"] == {"job": 1}
    assert api.complete(tid, c["lease_id"], {"ok": 1}).json()["status"] == "completed"
    h = api.task(tid, history=True)["history"]
    assert [a["outcome"] for a in h] == ["failed", "completed"]


def test_retry_redrives_a_canceled_task(api, q):
    tid = api.submit_ok(q, 1)
    api.cancel(tid)
    r = api.retry(tid)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    assert api.claim_one(q, wait=5)["id"] == tid


def test_retry_of_an_unfinished_or_completed_task_is_409(api, q):
    tid = api.submit_ok(q, 1)
    p = problem(api.retry(tid), 409, "conflict")
    assert p["task_id"] == tid
    c = api.claim_one(q, wait=5)
    problem(api.retry(tid), 409)
    api.complete(tid, c["lease_id"], 1)
    problem(api.retry(tid), 409)
    assert api.status(tid) == "completed"


# --------------------------------------------------------------------------
# results


def test_result_of_a_completed_task_is_the_stored_json(api, q):
    tid = api.submit_ok(q, 1)
    result = {"receipt": "r-1", "amount": 12.5, "items": [1, 2], "note": "ü"}
    api.run_one(q, result)
    r = api.result(tid)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert r.json() == result
    assert r.headers["Task-Id"] == tid
    assert api.task(tid)["result"] == result


def test_result_while_unfinished_is_409_with_retry_after(api, q):
    tid = api.submit_ok(q, 1)
    r = api.result(tid)
    p = problem(r, 409, "result-not-ready")
    assert p["task_id"] == tid and p["status"] == 409
    assert r.headers["Retry-After"] == "1"
    api.claim_one(q, wait=5)
    r = api.result(tid)
    problem(r, 409, "result-not-ready")
    assert r.headers["Retry-After"] == "1"


def test_retry_after_says_when_a_delayed_task_may_run(api, q):
    """A client told Retry-After: 1 for a task due in 90 s polls 90 times
    for nothing: the submission and the result's 409 say the seconds until
    the task may run."""
    r = api.submit(q, 1, delay="90s")
    assert r.status_code == 202, r.text
    assert 89 <= int(r.headers["Retry-After"]) <= 90, r.headers
    r = api.result(r.json()["task_id"])
    problem(r, 409, "result-not-ready")
    assert 88 <= int(r.headers["Retry-After"]) <= 90, r.headers
    r = api.submit(q, 1, delay="300ms")          # under a second: at least 1
    assert r.headers["Retry-After"] == "1"


def test_result_of_a_failed_task_is_409_without_retry_after(api, q):
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5)
    api.fail(tid, c["lease_id"], "nope", retry=False)
    r = api.result(tid)
    problem(r, 409, "no-result")
    assert "Retry-After" not in r.headers


# --------------------------------------------------------------------------
# workers: claim


def test_claim_hands_out_a_lease_and_the_payload(api, q):
    tid = api.submit_ok(q, {"to": "a@example.com"}, headers={"X-Request-ID": "req-c1"})
    before = time.time()
    r = api.claim(q, max=5, lease="20s")
    assert r.status_code == 200, r.text
    tasks = r.json()["tasks"]
    assert len(tasks) == 1
    c = tasks[0]
    for k in CLAIM_FIELDS:
        assert k in c, f"claim lacks {k}: {c}"
    assert c["id"] == tid and c["queue"] == q and c["attempt"] == 1
    assert LEASE_ID_RE.match(c["lease_id"]), c
    assert before + 18 <= parse_time(c["lease_expires_at"]) <= time.time() + 21
    assert c["correlation_id"] == "req-c1" and c["payload"] == {"to": "a@example.com"}
    d = api.task(tid)
    assert d["status"] == "processing" and d["attempts"] == 1


def test_claim_default_lease_is_the_queue_attempt_timeout(api, q):
    api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5)
    assert 28 <= parse_time(c["lease_expires_at"]) - time.time() <= 31


def test_claim_takes_up_to_max_by_priority_then_due_time(api, q):
    low = api.submit_ok(q, "low", priority=-5)
    first = api.submit_ok(q, "first")
    time.sleep(0.005)
    second = api.submit_ok(q, "second")
    high = api.submit_ok(q, "high", priority=10)
    got = [t["id"] for t in api.claim_tasks(q, max=3)]
    assert got == [high, first, second]
    assert [t["id"] for t in api.claim_tasks(q, max=3)] == [low]
    assert api.claim_tasks(q, max=3) == []


def test_claim_without_a_body_takes_one(api, q):
    for i in range(3):
        api.submit_ok(q, i)
    r = api.post(f"/v1/queues/{q}/claim")
    assert r.status_code == 200 and len(r.json()["tasks"]) == 1


def test_claim_on_an_empty_queue_is_204_after_the_wait(api, q):
    t0 = time.monotonic()
    r = api.claim(q, wait=0)
    assert r.status_code == 204 and r.content == b""
    assert time.monotonic() - t0 < 2.0 * SLOW
    t0 = time.monotonic()
    r = api.claim(q, wait="400ms")
    took = time.monotonic() - t0
    assert r.status_code == 204 and r.content == b""
    assert 0.35 <= took < 0.4 + 3.0 * SLOW, took


@pytest.mark.parametrize("body,field", [
    ({"max": 0}, "max"), ({"max": 101}, "max"), ({"max": "2"}, "max"),
    ({"wait": "a while"}, "wait"), ({"lease": "10ms"}, "lease"), ({"lease": "long"}, "lease"),
    ({"lease": "1000d"}, "lease"), ({"wait": 1e300}, "wait"),
])
def test_bad_claim_is_422(api, q, body, field):
    api.submit_ok(q, 1)
    p = problem(api.post(f"/v1/queues/{q}/claim", body), 422, "invalid-field")
    assert p["field"] == field
    assert api.list(queue=q)["tasks"][0]["status"] == "queued"


def test_claim_with_malformed_json_is_400(api, q):
    r = api.post(f"/v1/queues/{q}/claim", data=b"{max: 1}",
                 headers={"Content-Type": "application/json"})
    problem(r, 400, "malformed-json")


@pytest.mark.parametrize("body,field", [
    ({"maxx": 5}, "maxx"),                  # a typo would claim one task, not five
    ({"max": 1, "lease_ms": 500}, "lease_ms"),
], ids=["maxx", "lease_ms"])
def test_claim_refuses_an_unknown_field_and_takes_nothing(api, q, body, field):
    tid = api.submit_ok(q, 1)
    r = api.post(f"/v1/queues/{q}/claim", body)
    p = problem(r, 422, "invalid-field")
    assert p["field"] == field and "max, wait, lease" in p["detail"], p
    assert api.task(tid)["status"] == "queued"


# --------------------------------------------------------------------------
# workers: heartbeat, complete, fail


def test_heartbeat_extends_the_lease_and_records_progress(api, q):
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5, lease="5s")
    r = api.heartbeat(tid, c["lease_id"], lease="20s", progress=40, message="charging card")
    assert r.status_code == 200, r.text
    hb = r.json()
    assert hb["id"] == tid and hb["cancel_requested"] is False
    assert parse_time(hb["lease_expires_at"]) >= parse_time(c["lease_expires_at"]) + 10
    d = api.task(tid)
    assert d["progress"] == {"percent": 40, "message": "charging card"}
    r = api.heartbeat(tid, c["lease_id"], progress=60)
    assert r.status_code == 200
    assert api.task(tid)["progress"] == {"percent": 60, "message": "charging card"}
    # a heartbeat without `lease` extends by the length last granted (20s)
    assert 15 <= parse_time(r.json()["lease_expires_at"]) - time.time() <= 21


@pytest.mark.parametrize("body,field", [
    ({}, "lease_id"), ({"lease_id": 5}, "lease_id"),
    ({"progress": 101}, "progress"), ({"progress": -1}, "progress"), ({"progress": "half"}, "progress"),
    ({"message": 5}, "message"), ({"lease": "1ms"}, "lease"), ({"lease": "8d"}, "lease"),
])
def test_bad_heartbeat_is_422(api, q, body, field):
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5)
    if "lease_id" not in body and field != "lease_id":
        body = {"lease_id": c["lease_id"], **body}
    p = problem(api.post(f"/v1/tasks/{tid}/heartbeat", body), 422, "invalid-field")
    assert p["field"] == field


def test_complete_stores_the_result_and_another_complete_is_409(api, q):
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5)
    r = api.complete(tid, c["lease_id"], {"receipt": 1})
    assert r.status_code == 200, r.text
    assert "Idempotent-Replayed" not in r.headers
    d = r.json()
    assert d["status"] == "completed" and d["result"] == {"receipt": 1} and d["error"] is None
    before = api.task(tid, history=True)
    p = problem(api.complete(tid, c["lease_id"], {"receipt": 2}), 409, "conflict")
    assert p["task_id"] == tid and "ended otherwise" in p["detail"]
    problem(api.fail(tid, c["lease_id"], "late"), 409)
    problem(api.heartbeat(tid, c["lease_id"]), 409)
    assert api.task(tid, history=True) == before


def test_a_worker_that_sends_its_complete_or_fail_again_gets_the_same_answer(api, q):
    """The worker's first call committed but its answer was lost (a timeout,
    a dropped connection): the same call again is answered 200 as the first
    was, with Idempotent-Replayed, and changes nothing; it is not a 409 that
    would tell the worker it lost the task."""
    tid = api.submit_ok(q, 1, max_attempts=3)
    c = api.claim_one(q, wait=5)
    first = api.fail(tid, c["lease_id"], {"code": "busy"}, retry=True)
    assert first.status_code == 200 and first.json()["status"] == "queued"
    before = api.task(tid, history=True)
    again = api.fail(tid, c["lease_id"], {"code": "busy"}, retry=True)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["status"] == "queued" and again.json()["attempts"] == 1
    assert api.task(tid, history=True) == before
    # a fail with another error under that lease is not the same call
    problem(api.fail(tid, c["lease_id"], {"code": "other"}, retry=True), 409, "conflict")

    c2 = api.claim_one(q, wait=5)
    assert c2["id"] == tid and c2["attempt"] == 2
    r = api.complete(tid, c2["lease_id"], {"receipt": 7})
    assert r.status_code == 200
    before = api.task(tid, history=True)
    for _ in range(2):
        again = api.complete(tid, c2["lease_id"], {"receipt": 7})
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == r.json()
    assert api.task(tid, history=True) == before
    # the first lease's fail, sent again now, still changes nothing
    assert api.fail(tid, c["lease_id"], {"code": "busy"}, retry=True).status_code == 200
    assert api.task(tid, history=True) == before


def test_complete_without_a_result_stores_null(api, q):
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5)
    r = api.post(f"/v1/tasks/{tid}/complete", {"lease_id": c["lease_id"]})
    assert r.status_code == 200 and r.json()["status"] == "completed"
    r = api.result(tid)
    assert r.status_code == 200 and r.json() is None


def test_worker_calls_on_unknown_tasks_are_404(api):
    for verb in ("heartbeat", "complete", "fail"):
        problem(api.post(f"/v1/tasks/tsk_01m85wcy4yhgfasjy6asems3ch/{verb}",
                         {"lease_id": "lse_01m85wcy4yhgfasjy6asems3ch"}), 404, "task-not-found")
        problem(api.post(f"/v1/tasks/bogus/{verb}", {"lease_id": "x"}), 404)


def test_a_wrong_lease_is_409_and_changes_nothing(api, q):
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5)
    before = api.task(tid, history=True)
    bogus = "lse_01m85wcy4yhgfasjy6asems3ch"
    problem(api.heartbeat(tid, bogus, progress=99), 409, "conflict")
    problem(api.complete(tid, bogus, {"stolen": True}), 409, "conflict")
    problem(api.fail(tid, bogus, "x", retry=False), 409, "conflict")
    assert api.task(tid, history=True) == before
    assert api.complete(tid, c["lease_id"], "mine").json()["result"] == "mine"


def test_an_expired_or_superseded_lease_is_409_and_changes_nothing(server, q):
    """The first worker's lease runs out; a second worker claims the task.
    The first worker's calls are fenced off, the second's work."""
    with Api(server) as w1, Api(server) as w2:
        tid = w1.submit_ok(q, {"job": "fence"}, max_attempts=5)
        c1 = w1.claim_one(q, wait=5, lease="200ms")
        time.sleep(0.3)
        # expired, whether or not the expiry timer has requeued it yet
        problem(w1.heartbeat(tid, c1["lease_id"]), 409, "conflict")
        c2 = w2.claim_one(q, wait=SOON, lease="30s")
        assert c2["id"] == tid and c2["attempt"] == 2 and c2["lease_id"] != c1["lease_id"]
        before = w2.task(tid, history=True)
        problem(w1.heartbeat(tid, c1["lease_id"], progress=10), 409, "conflict")
        problem(w1.complete(tid, c1["lease_id"], {"from": "w1"}), 409, "conflict")
        problem(w1.fail(tid, c1["lease_id"], "w1 gave up", retry=False), 409, "conflict")
        assert w2.task(tid, history=True) == before
        r = w2.complete(tid, c2["lease_id"], {"from": "w2"})
        assert r.status_code == 200 and r.json()["result"] == {"from": "w2"}
        h = w2.task(tid, history=True)["history"]
        # the expired attempt is recorded with its cause, whether the task
        # was requeued (here) or failed (after its last attempt)
        assert h[0]["error"]["message"] == "lease expired" and h[0]["ended_at"]
        assert [a["outcome"] for a in h] == ["lease_expired", "completed"]


def test_fail_without_retry_is_terminal(api, q):
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5)
    r = api.fail(tid, c["lease_id"], "card declined", retry=False)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["status"] == "failed" and d["attempts"] == 1
    assert d["error"]["message"] == "card declined"
    assert api.claim_tasks(q, wait=0) == []


def test_fail_keeps_a_structured_error(api, q):
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5)
    err = {"message": "upstream said no", "status": 402, "code": "declined"}
    d = api.fail(tid, c["lease_id"], err, retry=False).json()
    assert d["error"] == err
    assert api.task(tid, history=True)["history"][0]["error"] == err
    # kept as the worker wrote it: its numbers are not printed again
    tid = api.submit_ok(q, 2)
    c = api.claim_one(q, wait=5)
    raw = b'{"lease_id": "%s", "retry": false, "error": {"message": "caf\\u00e9", "amount": 0.10}}'
    r = api.post(f"/v1/tasks/{tid}/fail", data=raw % c["lease_id"].encode(),
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert '"error":{"message":"caf\\u00e9","amount":0.10}' in r.text, r.text


@pytest.mark.parametrize("body,field", [
    ({"retry": "yes"}, "retry"), ({"retry_after": "eventually"}, "retry_after"),
    ({"retry_after": 1e30}, "retry_after"),
])
def test_bad_fail_is_422(api, q, body, field):
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5)
    p = problem(api.post(f"/v1/tasks/{tid}/fail", {"lease_id": c["lease_id"], **body}), 422)
    assert p["field"] == field
    assert api.status(tid) == "processing"


def test_backoff_requeues_with_next_attempt_at_and_claims_only_after_it(api, q):
    """A retryable failure with retry_after (which wins over the queue's
    short backoff) puts the task back with next_attempt_at in the future;
    no claim gets it before then, a waiting claim gets it after."""
    tid = api.submit_ok(q, {"job": "backoff"})
    c = api.claim_one(q, wait=5)
    t_fail = time.time()
    r = api.fail(tid, c["lease_id"], "try later", retry=True, retry_after="800ms")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["status"] == "queued" and d["attempts"] == 1
    assert d["error"]["message"] == "try later"
    nxt = parse_time(d["next_attempt_at"])
    assert t_fail + 0.7 <= nxt <= time.time() + 0.9, (t_fail, d)
    assert api.task(tid)["next_attempt_at"] == d["next_attempt_at"]
    assert api.claim_tasks(q, wait=0) == []
    c2 = api.claim_one(q, wait=SOON)
    got = time.time()
    assert got >= nxt - 0.005, (got, nxt)     # clocks are ms-resolution
    assert c2["id"] == tid and c2["attempt"] == 2 and c2["payload"] == {"job": "backoff"}
    assert api.task(tid)["next_attempt_at"] is None


def test_queue_backoff_is_bounded_by_retry_cap(api, q):
    """Without retry_after the delay is full-jitter, at most retry_cap
    (200ms on this queue), so the task is claimable again soon."""
    tid = api.submit_ok(q, 1)
    for attempt in (1, 2):
        c = api.claim_one(q, wait=SOON)
        assert c["attempt"] == attempt
        t = time.time()
        d = api.fail(tid, c["lease_id"], f"try {attempt}", retry=True).json()
        assert d["status"] == "queued"
        if d["next_attempt_at"] is not None:
            assert parse_time(d["next_attempt_at"]) <= t + 0.2 + 0.05 * SLOW, d
    assert api.claim_one(q, wait=SOON)["attempt"] == 3


def test_max_attempts_exhausted_fails_with_every_attempt_in_history(api, q):
    tid = api.submit_ok(q, {"job": "doomed"}, max_attempts=3)
    for n in (1, 2, 3):
        c = api.claim_one(q, wait=SOON)
        assert c["id"] == tid and c["attempt"] == n
        d = api.fail(tid, c["lease_id"], f"failure {n}", retry=True).json()
        assert d["status"] == ("queued" if n < 3 else "failed"), d
    d = api.task(tid, history=True)
    assert d["status"] == "failed" and d["attempts"] == 3 and d["max_attempts"] == 3
    assert d["error"]["message"] == "failure 3"
    assert d["next_attempt_at"] is None
    h = d["history"]
    assert [a["attempt"] for a in h] == [1, 2, 3]
    assert [a["outcome"] for a in h] == ["retry", "retry", "failed"]
    assert [a["error"]["message"] for a in h] == ["failure 1", "failure 2", "failure 3"]
    assert api.claim_tasks(q, wait="300ms") == []
    assert [t["id"] for t in api.list(queue=q, status="failed")["tasks"]] == [tid]
    # the dead-letter redrive
    assert api.retry(tid).status_code == 202
    c = api.claim_one(q, wait=SOON)
    assert c["id"] == tid and c["attempt"] == 4
    api.complete(tid, c["lease_id"], "finally")
    assert api.task(tid)["status"] == "completed"


# --------------------------------------------------------------------------
# keys and tenants

KEYS = {
    "key-client-a": "acme client",
    "key-client-b": "globex client",
    "key-worker-a": "acme worker jobs",
    "key-worker-both": "acme worker jobs,other",
    "key-admin": "ops admin",
}


@pytest.fixture(scope="module")
def keyed(start_ackd_module):
    queues = {"jobs": {"attempt_timeout": "30s"}, "other": {"attempt_timeout": "30s"}}
    return start_ackd_module(queue_config(queues, keys=KEYS))


def test_requests_without_a_valid_key_are_401(keyed):
    with Api(keyed) as anon:
        r = anon.submit("jobs", 1)
        problem(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        for method, path in (("GET", "/v1/tasks"), ("GET", "/v1/queues"),
                             ("POST", "/v1/queues/jobs/claim"),
                             ("GET", "/v1/tasks/tsk_01m85wcy4yhgfasjy6asems3ch")):
            problem(anon.call(method, path), 401)
        # the operations endpoints stay public
        assert anon.get("/healthz").status_code == 200
    with Api(keyed, key="not-a-key") as bad:
        r = bad.submit("jobs", 1)
        problem(r, 401, "unauthorized")
        assert "invalid_token" in r.headers["WWW-Authenticate"]
        problem(bad.get("/v1/tasks"), 401)
    with Api(keyed) as basic:
        problem(basic.get("/v1/tasks", headers={"Authorization": "Basic a2V5LWFkbWluOg=="}), 401)
        problem(basic.get("/v1/tasks", headers={"Authorization": "Bearer "}), 401)
    with Api(keyed, key="key-admin") as admin:
        assert admin.list(queue="jobs")["tasks"] == []


def test_another_tenants_task_is_404(keyed):
    with Api(keyed, "key-client-a") as a, Api(keyed, "key-client-b") as b, \
            Api(keyed, "key-worker-a") as w:
        tid = a.submit_ok("jobs", {"secret": "acme"})
        assert a.task(tid)["id"] == tid
        problem(b.get(f"/v1/tasks/{tid}"), 404, "task-not-found")
        problem(b.get(f"/v1/tasks/{tid}", params={"wait": "1"}), 404)
        problem(b.get(f"/v1/tasks/{tid}/result"), 404)
        problem(b.cancel(tid), 404)
        assert a.status(tid) == "queued"
        assert tid not in {t["id"] for t in b.list(limit=1000)["tasks"]}
        assert tid in {t["id"] for t in a.list(limit=1000)["tasks"]}
        # the same idempotency key in two tenants names two tasks
        ka = a.submit_ok("other", 1, headers={"Idempotency-Key": "same"})
        kb = b.submit_ok("other", 1, headers={"Idempotency-Key": "same"})
        assert ka != kb
        # B cannot redrive A's failed task either
        c = w.claim_one("jobs", wait=5)
        assert c["id"] == tid
        w.fail(tid, c["lease_id"], "x", retry=False)
        problem(b.retry(tid), 404)
        assert a.retry(tid).status_code == 202


def test_admin_sees_every_tenant(keyed):
    with Api(keyed, "key-client-a") as a, Api(keyed, "key-client-b") as b, \
            Api(keyed, "key-admin") as admin:
        ta = a.submit_ok("other", {"t": "a"})
        tb = b.submit_ok("other", {"t": "b"})
        assert admin.task(ta)["id"] == ta and admin.task(tb)["id"] == tb
        listed = {t["id"] for t in admin.list(queue="other", limit=1000)["tasks"]}
        assert {ta, tb} <= listed
        assert admin.cancel(tb).status_code == 200
        assert b.status(tb) == "canceled"
        # an admin may do the workers' calls too
        r = admin.claim("other", max=100)
        assert r.status_code == 200 and ta in {t["id"] for t in r.json()["tasks"]}


def test_a_client_counts_its_own_tenants_tasks(start_ackd):
    """GET /v1/queues for a client key counts that tenant's tasks only (it
    counted every tenant's: another tenant's volume, to anyone with a key);
    workers, who serve every tenant, and admins count all. The oldest queued
    age is the queue's (how long it keeps a task waiting now). Counts are
    kept by the store per tenant, so they survive a restart."""
    srv = start_ackd(queue_config({"counted": {"attempt_timeout": "30s"}, "jobs": {}, "other": {}},
                                  keys=KEYS | {"key-worker-c": "acme worker counted"}))

    def counts(key):
        with Api(srv, key) as api:
            one = api.get("/v1/queues/counted").json()
            listed = api.queues()["counted"]
            assert one["counts"] == listed["counts"], (one, listed)
            return one["counts"], one["oldest_queued_age_ms"]

    with Api(srv, "key-client-a") as a, Api(srv, "key-client-b") as b, \
            Api(srv, "key-worker-c") as w:
        for _ in range(3):
            a.submit_ok("counted", 1)
        tb = b.submit_ok("counted", 1)
        c = w.claim_tasks("counted", max=100)
        done = [x for x in c if x["id"] == tb][0]
        assert w.complete(tb, done["lease_id"], 1).status_code == 200
        b.submit_ok("counted", 2)
    for _ in range(2):                       # and again after a restart
        ca, age_a = counts("key-client-a")
        cb, age_b = counts("key-client-b")
        call, age = counts("key-admin")
        assert (ca["processing"], ca["queued"], ca["completed"]) == (3, 0, 0), ca
        assert (cb["processing"], cb["queued"], cb["completed"]) == (0, 1, 1), cb
        assert (call["processing"], call["queued"], call["completed"]) == (3, 1, 1), call
        assert counts("key-worker-c")[0] == call
        assert age_a is not None and age_b is not None and age is not None
        srv.stop()
        srv.start()


def test_worker_keys_claim_only_their_queues(keyed):
    with Api(keyed, "key-admin") as admin, Api(keyed, "key-worker-a") as w, \
            Api(keyed, "key-worker-both") as wb, Api(keyed, "key-client-a") as client:
        tid = admin.submit_ok("other", {"for": "other"})
        problem(w.claim("other"), 403, "forbidden")
        assert admin.status(tid) == "queued"
        # a worker does not submit, and a client does not claim
        problem(w.submit("jobs", 1), 403, "forbidden")
        problem(client.claim("jobs"), 403, "forbidden")
        c = wb.claim_one("other", wait=5)
        assert c["id"] == tid
        # the worker of "jobs" cannot touch a task of "other", lease or not
        problem(w.heartbeat(tid, c["lease_id"]), 404)
        problem(w.complete(tid, c["lease_id"], "x"), 404)
        assert admin.status(tid) == "processing"
        assert wb.complete(tid, c["lease_id"], "done").status_code == 200
        # workers may look at the queues
        r = w.get("/v1/queues")
        assert r.status_code == 200 and {q["name"] for q in r.json()["queues"]} >= {"jobs", "other"}


# --------------------------------------------------------------------------
# retention


def test_finished_tasks_are_purged_after_retention(start_ackd):
    """retention = 1s and the purge runs every second: a finished task is
    gone (404) within retention + one purge interval (+ slack), while an
    unfinished one stays."""
    srv = start_ackd(queue_config({"short": {"retention": "1s", "attempt_timeout": "30s"}}))
    with Api(srv) as api:
        done = api.submit_ok("short", 1)
        failed = api.submit_ok("short", 2)
        canceled = api.submit_ok("short", 3)
        c = api.claim_one("short", wait=5)
        assert c["id"] == done
        api.complete(done, c["lease_id"], {"r": 1})
        c = api.claim_one("short", wait=5)
        api.fail(failed, c["lease_id"], "x", retry=False)
        api.cancel(canceled)
        t_finished = time.monotonic()
        waiting = api.submit_ok("short", 4)
        working = api.submit_ok("short", 5)
        c = api.claim_one("short", wait=5)
        assert c["id"] == waiting          # oldest first: `working` stays queued
        # not purged before its retention has passed
        r = api.get(f"/v1/tasks/{done}")
        if time.monotonic() - t_finished < 0.9:
            assert r.status_code == 200, r.text

        def gone():
            return all(api.get(f"/v1/tasks/{t}").status_code == 404
                       for t in (done, failed, canceled))

        wait_for(gone, timeout=2.0 + 0.5 + 2.0 * SLOW, what="purge of the finished tasks")
        took = time.monotonic() - t_finished
        assert took <= 2.0 + 0.5 + 2.0 * SLOW, took
        problem(api.result(done), 404)
        assert api.status(waiting) == "processing" and api.status(working) == "queued"
        assert api.queues()["short"]["counts"] == {"queued": 1, "processing": 1, "completed": 0,
                                                   "failed": 0, "canceled": 0}


def test_an_idempotency_key_lives_idempotency_ttl_then_is_purged(start_ackd):
    """idempotency_ttl = 1s: within it a repeat gets the same task; past it
    the key is free (a new task, and the key then maps to that one); and
    the expired rows are purged from the file, not kept forever."""
    srv = start_ackd(queue_config({"k": {}}, server={"idempotency_ttl": "1s"}))
    db = srv.data_dir / "ackd.db"
    with Api(srv) as api:
        key = {"Idempotency-Key": "ttl-1"}
        k = "k"
        first = api.submit(k, {"n": 1}, headers=key)
        assert first.status_code == 202, first.text
        again = api.submit(k, {"n": 1}, headers=key)
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert again.json()["task_id"] == first.json()["task_id"]
        time.sleep(1.2)
        # past its lifetime: neither a replay nor a mismatch for another body
        later = api.submit(k, {"n": 2}, headers=key)
        assert later.status_code == 202, later.text
        assert "Idempotent-Replayed" not in later.headers
        assert later.json()["task_id"] != first.json()["task_id"]
        replay = api.submit(k, {"n": 2}, headers=key)
        assert replay.json()["task_id"] == later.json()["task_id"]
        assert replay.headers.get("Idempotent-Replayed") == "true"

        def keys_left():
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0]
        assert keys_left() == 1
        wait_for(lambda: keys_left() == 0, timeout=3.0 + 2.0 * SLOW,
                 what="the purge of the expired key")
        assert api.status(first.json()["task_id"]) == "queued"    # tasks stay


@pytest.mark.parametrize("call,body,field", [
    ("heartbeat", {"extend": "10s"}, "extend"),
    ("complete", {"reslt": {"ok": True}}, "reslt"),
    ("complete", {"result": 1, "status": 200}, "status"),
    ("fail", {"error": "x", "retryAfter": 5}, "retryAfter"),
], ids=["heartbeat-extend", "complete-reslt", "complete-status", "fail-retryAfter"])
def test_a_lease_call_refuses_an_unknown_field_and_changes_nothing(api, q, call, body, field):
    """A misspelt field is a 422 naming it, not a call that drops what the
    worker meant (a result stored as null, a retry_after ignored)."""
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5, lease="30s")
    r = api.post(f"/v1/tasks/{tid}/{call}", {"lease_id": c["lease_id"], **body})
    p = problem(r, 422, "invalid-field")
    assert p["field"] == field and "lease_id" in p["detail"], p
    d = api.task(tid)
    assert d["status"] == "processing" and d["attempts"] == 1, d
    # the lease still holds: the corrected call goes through
    r = api.complete(tid, c["lease_id"], {"ok": True})
    assert r.status_code == 200, r.text
    assert api.task(tid)["result"] == {"ok": True}


def test_batch_refuses_an_unknown_top_level_field(api, q):
    r = api.post(f"/v1/queues/{q}/tasks:batch", {"tasks": [{"payload": 1}], "task": []})
    p = problem(r, 422, "invalid-field")
    assert p["field"] == "task", p
    assert api.list(queue=q)["tasks"] == []
