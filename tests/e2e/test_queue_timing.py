"""Time-driven behaviour of the queue (issue 3 §2, §3): a long poll answers
the moment its task finishes, a waiting claim the moment a task becomes
claimable (enqueued, or a delayed one coming due), expired leases requeue
(or fail the task after its last attempt), and heartbeats keep a lease.

Latencies are measured from the moment the call that causes the change
(complete, submit) has returned to the moment the waiter's whole answer is
read, over raw sockets (conftest.RawConn), and compared as the median of
several tries with LATENCY_BOUND (50 ms; 150 ms under ASan, see
queue_helpers). Other waits have wide deadlines."""

import json
import select
import time

import pytest

from conftest import SLOW, build_request
from queue_helpers import (LATENCY_BOUND, SOON, Api, QueuePool, format_time, median, parse_time,
                           queue_config)

TRIES = 10

# attempt_timeout 300ms: the default lease of these queues is short; a
# 10ms retry cap makes an expired lease's task claimable again at once.
POOL = QueuePool("t", 40, {"max_attempts": 5, "retry_base": "10ms", "retry_cap": "10ms",
                           "attempt_timeout": "300ms"})


@pytest.fixture(scope="module")
def server(start_ackd_module):
    return start_ackd_module(queue_config(POOL.queues()))


@pytest.fixture
def api(server):
    with Api(server) as a:
        yield a


@pytest.fixture
def q():
    return POOL.take()


def json_request(method, path, body=None, headers=()):
    hs = list(headers)
    data = None
    if body is not None:
        hs.append(("Content-Type", "application/json"))
        data = json.dumps(body)
    return build_request(method, path, hs, data)


def report(what, xs):
    """Prints the measured latencies (shown with pytest -s)."""
    ms = sorted(round(x * 1000, 1) for x in xs)
    print(f"{what}: median {median(xs) * 1000:.1f} ms, all {ms} (bound {LATENCY_BOUND * 1000:.0f} ms)")


def nothing_yet(conn):
    """No byte of an answer has arrived on conn."""
    return not conn.buf and not select.select([conn.sock], [], [], 0)[0]


def park_time():
    """How long to leave a waiter before causing its change, so that it has
    surely reached the store and parked."""
    return 0.1 * SLOW


# --------------------------------------------------------------------------
# long polls


def test_long_poll_returns_within_bound_of_the_completion(server, api, q):
    lat = []
    for i in range(TRIES):
        tid = api.submit_ok(q, i)
        c = api.claim_one(q, wait=5, lease="30s")
        with server.conn() as poll:
            poll.send(build_request("GET", f"/v1/tasks/{tid}?wait=20"))
            time.sleep(park_time())
            assert nothing_yet(poll), "the long poll answered before the task finished"
            r = api.complete(tid, c["lease_id"], {"i": i})
            done = time.monotonic()
            assert r.status_code == 200, r.text
            resp = poll.read_response(timeout=SOON)
            lat.append(time.monotonic() - done)
        assert resp.status == 200, resp
        d = resp.json()
        assert d["status"] == "completed" and d["result"] == {"i": i}
    report("long poll after complete", lat)
    assert median(lat) < LATENCY_BOUND, [round(x * 1000, 1) for x in lat]


def test_prefer_wait_long_poll_returns_on_completion_too(server, api, q):
    lat = []
    for i in range(5):
        tid = api.submit_ok(q, i)
        c = api.claim_one(q, wait=5, lease="30s")
        with server.conn() as poll:
            poll.send(build_request("GET", f"/v1/tasks/{tid}", [("Prefer", "wait=20")]))
            time.sleep(park_time())
            assert nothing_yet(poll)
            api.complete(tid, c["lease_id"], i)
            done = time.monotonic()
            resp = poll.read_response(timeout=SOON)
            lat.append(time.monotonic() - done)
        assert resp.json()["status"] == "completed"
        assert resp.header("Preference-Applied") == "wait=20"
    assert median(lat) < LATENCY_BOUND, [round(x * 1000, 1) for x in lat]


def test_every_long_poll_on_a_task_is_woken(server, api, q):
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5, lease="30s")
    polls = [server.conn() for _ in range(6)]
    try:
        for p in polls:
            p.send(build_request("GET", f"/v1/tasks/{tid}?wait=20"))
        time.sleep(park_time())
        assert all(nothing_yet(p) for p in polls)
        api.fail(tid, c["lease_id"], "gave up", retry=False)
        done = time.monotonic()
        for p in polls:
            r = p.read_response(timeout=SOON)
            assert r.json()["status"] == "failed"
        # one measurement (the last to be read): a wide bound
        assert time.monotonic() - done < 1.0 * SLOW
    finally:
        for p in polls:
            p.close()


def test_a_long_poll_waits_through_a_retry_and_wakes_on_the_end(server, api, q):
    """A retryable failure is not the end: the poll waits on, and answers
    when the next attempt completes."""
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5, lease="30s")
    with server.conn() as poll:
        poll.send(build_request("GET", f"/v1/tasks/{tid}?wait=20"))
        time.sleep(park_time())
        assert api.fail(tid, c["lease_id"], "again", retry=True).json()["status"] == "queued"
        time.sleep(0.3)
        assert nothing_yet(poll), "a retry is not terminal, yet the long poll answered"
        c = api.claim_one(q, wait=SOON, lease="30s")
        assert c["attempt"] == 2
        api.complete(tid, c["lease_id"], "second time lucky")
        r = poll.read_response(timeout=SOON)
    d = r.json()
    assert d["status"] == "completed" and d["attempts"] == 2 and d["result"] == "second time lucky"


def test_a_long_poll_wakes_on_cancel(server, api, q):
    tid = api.submit_ok(q, 1)
    with server.conn() as poll:
        poll.send(build_request("GET", f"/v1/tasks/{tid}?wait=20"))
        time.sleep(park_time())
        assert api.cancel(tid).status_code == 200
        done = time.monotonic()
        r = poll.read_response(timeout=SOON)
        assert time.monotonic() - done < 1.0 * SLOW
    assert r.json()["status"] == "canceled"


# --------------------------------------------------------------------------
# waiting claims


def test_waiting_claim_returns_within_bound_of_an_enqueue(server, api, q):
    lat = []
    for i in range(TRIES):
        with server.conn() as claimer:
            claimer.send(json_request("POST", f"/v1/queues/{q}/claim",
                                      {"wait": 20, "lease": "30s"}))
            time.sleep(park_time())
            assert nothing_yet(claimer), "the claim answered before there was a task"
            tid = api.submit_ok(q, {"i": i})
            done = time.monotonic()
            resp = claimer.read_response(timeout=SOON)
            lat.append(time.monotonic() - done)
        assert resp.status == 200, resp
        tasks = resp.json()["tasks"]
        assert [t["id"] for t in tasks] == [tid] and tasks[0]["payload"] == {"i": i}
    report("waiting claim after enqueue", lat)
    assert median(lat) < LATENCY_BOUND, [round(x * 1000, 1) for x in lat]


def test_waiting_claims_share_a_batch_one_task_each(server, api, q):
    claimers = [server.conn() for _ in range(4)]
    try:
        for c in claimers:
            c.send(json_request("POST", f"/v1/queues/{q}/claim", {"wait": 20, "lease": "30s"}))
        time.sleep(park_time())
        r = api.batch(q, [{"payload": i} for i in range(4)])
        ids = {t["task_id"] for t in r.json()["tasks"]}
        got = []
        for c in claimers:
            resp = c.read_response(timeout=SOON)
            assert resp.status == 200, resp
            got += [t["id"] for t in resp.json()["tasks"]]
        assert sorted(got) == sorted(ids)
    finally:
        for c in claimers:
            c.close()


def test_an_enqueue_on_another_queue_does_not_answer_a_claim(server, api, q):
    other = POOL.take()
    with server.conn() as claimer:
        t0 = time.monotonic()
        claimer.send(json_request("POST", f"/v1/queues/{q}/claim", {"wait": "700ms"}))
        time.sleep(park_time())
        api.submit_ok(other, 1)
        r = claimer.read_response(timeout=SOON)
        took = time.monotonic() - t0
    assert r.status == 204, r
    assert took >= 0.65, took
    assert api.claim_one(other, wait=1)["payload"] == 1


# --------------------------------------------------------------------------
# delayed tasks


def test_a_delayed_task_is_claimable_only_from_its_due_time(server, api, q):
    """delay 300ms: no claim gets it before; a claim parked before or after
    the submission gets it when it becomes due (median lateness within the
    bound)."""
    late = []
    for i in range(6):
        park_first = i % 2 == 0
        with server.conn() as claimer:
            if park_first:
                claimer.send(json_request("POST", f"/v1/queues/{q}/claim",
                                          {"wait": 20, "lease": "30s"}))
                time.sleep(park_time())
            tid = api.submit_ok(q, {"i": i}, delay="300ms")
            due = parse_time(api.task(tid)["next_attempt_at"])
            if not park_first:
                assert api.claim_tasks(q, wait=0) == []
                claimer.send(json_request("POST", f"/v1/queues/{q}/claim",
                                          {"wait": 20, "lease": "30s"}))
            resp = claimer.read_response(timeout=SOON)
            got = time.time()
        assert resp.status == 200, resp
        assert [t["id"] for t in resp.json()["tasks"]] == [tid]
        assert got >= due - 0.005, f"claimed {due - got:.3f}s before its due time"
        late.append(got - due)
    report("parked claim after due time", late)
    assert median(late) < LATENCY_BOUND, [round(x * 1000, 1) for x in late]


def test_run_at_makes_a_task_due_at_that_time(server, api, q):
    at = time.time() + 0.4
    tid = api.submit_ok(q, "later", run_at=format_time(at))
    assert api.claim_tasks(q, wait=0) == []
    c = api.claim_one(q, wait=SOON)
    got = time.time()
    assert c["id"] == tid
    assert got >= at - 0.005
    assert got - at < 1.0 * SLOW


# --------------------------------------------------------------------------
# leases


def test_an_expired_lease_requeues_the_task(server, api, q):
    """The queue's attempt_timeout (300ms) is the default lease; when it
    runs out the task is queued again with the attempt counted, and a
    waiting claim gets it promptly (timer on the earliest expiry)."""
    tid = api.submit_ok(q, {"job": "slow"})
    t0 = time.monotonic()
    w0 = time.time()
    c1 = api.claim_one(q, wait=5)
    assert c1["attempt"] == 1
    assert 0.2 <= parse_time(c1["lease_expires_at"]) - w0 <= 0.35 + 0.1 * SLOW
    assert api.status(tid) == "processing"
    c2 = api.claim_one(q, wait=SOON, lease="30s")
    took = time.monotonic() - t0
    assert c2["id"] == tid and c2["attempt"] == 2 and c2["lease_id"] != c1["lease_id"]
    assert c2["payload"] == {"job": "slow"}
    assert 0.28 <= took <= 0.3 + 0.25 * SLOW, took
    d = api.task(tid, history=True)
    assert d["status"] == "processing" and d["attempts"] == 2
    h = d["history"]
    assert h[0]["outcome"] == "lease_expired" and h[0]["error"]["message"] == "lease expired"
    # the first worker is fenced off
    assert api.complete(tid, c1["lease_id"], "late").status_code == 409
    assert api.complete(tid, c2["lease_id"], "on time").status_code == 200


def test_expiry_after_the_last_attempt_fails_the_task(server, api, q):
    tid = api.submit_ok(q, 1, max_attempts=1)
    with server.conn() as poll:
        c = api.claim_one(q, wait=5, lease="200ms")
        poll.send(build_request("GET", f"/v1/tasks/{tid}?wait=20"))
        r = poll.read_response(timeout=SOON)
        expires = parse_time(c["lease_expires_at"])
        got = time.time()
    d = r.json()
    assert d["status"] == "failed" and d["attempts"] == 1
    assert d["error"]["message"] == "lease expired"
    assert got >= expires - 0.005
    assert got - expires < 0.25 * SLOW
    assert api.claim_tasks(q, wait=0) == []
    h = api.task(tid, history=True)["history"]
    assert [a["outcome"] for a in h] == ["lease_expired"]


def test_many_expiring_leases_all_requeue(server, api, q):
    r = api.batch(q, [{"payload": i} for i in range(30)])
    ids = {t["task_id"] for t in r.json()["tasks"]}
    first = api.claim_tasks(q, max=100, lease="200ms")
    assert {t["id"] for t in first} == ids
    again = []
    deadline = time.monotonic() + SOON
    while len(again) < 30 and time.monotonic() < deadline:
        again += api.claim_tasks(q, max=100, wait=SOON, lease="30s")
    assert sorted(t["id"] for t in again) == sorted(ids)
    assert all(t["attempt"] == 2 for t in again)


def test_heartbeats_keep_the_lease(server, api, q):
    """A worker heartbeating every 100ms holds its 300ms lease for well over
    a second; when it stops, the task requeues."""
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q, wait=5, lease="300ms")
    with server.conn() as rival:
        rival.send(json_request("POST", f"/v1/queues/{q}/claim", {"wait": "1200ms"}))
        end = time.monotonic() + 1.2
        n = 0
        while time.monotonic() < end:
            r = api.heartbeat(tid, c["lease_id"], progress=min(n, 100))
            assert r.status_code == 200, r.text
            n += 1
            time.sleep(0.1)
        resp = rival.read_response(timeout=SOON)
    assert resp.status == 204, "the task was handed out while its lease was kept"
    assert api.status(tid) == "processing"
    t0 = time.monotonic()
    c2 = api.claim_one(q, wait=SOON, lease="30s")
    assert c2["id"] == tid and c2["attempt"] == 2
    assert time.monotonic() - t0 <= 0.3 + 0.25 * SLOW


def test_claims_may_wait_on_hundreds_of_queues(start_ackd):
    """Parked claims are kept per queue; a server with many queues parks
    claims on every one of them (and wakes the right one)."""
    names = [f"m{i:03d}" for i in range(300)]
    srv = start_ackd(queue_config({n: {"attempt_timeout": "30s"} for n in names}))
    conns = []
    try:
        for n in names:
            c = srv.conn()
            conns.append(c)
            c.send(json_request("POST", f"/v1/queues/{n}/claim", {"wait": "1500ms"}))
        time.sleep(0.3 * SLOW)
        with Api(srv) as api:
            tid = api.submit_ok(names[-1], "last")
        for n, c in zip(names, conns):
            r = c.read_response(timeout=SOON)
            if n == names[-1]:
                assert r.status == 200 and r.json()["tasks"][0]["id"] == tid, r
            else:
                assert r.status == 204, (n, r)
    finally:
        for c in conns:
            c.close()


# --------------------------------------------------------------------------
# a queue's deadline: the task's overall time

DEADLINE = 0.6


@pytest.fixture(scope="module")
def dl_server(start_ackd_module):
    return start_ackd_module(queue_config({
        "dl": {"deadline": f"{int(DEADLINE * 1000)}ms", "max_attempts": 5, "retry_base": "10ms",
               "retry_cap": "10ms", "attempt_timeout": "30s"},
        "dl2": {"deadline": "300ms", "attempt_timeout": "30s"}}))


def test_a_queued_task_fails_when_its_deadline_passes(dl_server):
    """Nobody claims it: it fails at its deadline (the timer on the earliest
    deadline, like lease expiry), not when a worker turns up hours later,
    and a waiting client learns it then."""
    with Api(dl_server) as api:
        t0 = time.monotonic()
        tid = api.submit_ok("dl", 1)
        d = api.task(tid, wait=5, history=True)
        secs = time.monotonic() - t0
        assert d["status"] == "failed", d
        assert DEADLINE - 0.05 <= secs <= DEADLINE + 1.0 * SLOW, secs
        assert d["attempts"] == 0 and d["history"] == [], d
        assert d["error"]["message"].startswith("the deadline passed before the task could run"), d
        assert [e["type"] for e in d["events"]] == ["task.queued", "task.failed"], d["events"]
        assert api.claim_tasks("dl", wait=0.2) == []          # nothing left to hand out
        assert api.queues()["dl"]["counts"]["failed"] >= 1


def test_a_running_attempt_may_finish_after_the_deadline_but_not_retry(dl_server):
    with Api(dl_server) as api:
        done = api.submit_ok("dl", "done")
        again = api.submit_ok("dl", "again")
        claimed = {c["id"]: c for c in api.claim_tasks("dl", max=2, wait=5)}
        assert set(claimed) == {done, again}
        time.sleep(DEADLINE + 0.2)
        assert api.status(done) == "processing"               # a running attempt is not cut
        assert api.complete(done, claimed[done]["lease_id"], {"ok": 1}).status_code == 200
        assert api.status(done) == "completed"
        r = api.fail(again, claimed[again]["lease_id"], "boom", retry=True)
        assert r.status_code == 200, r.text
        assert api.status(again) == "failed"                  # past its deadline: no retry


def test_a_redriven_task_gets_a_fresh_deadline(dl_server):
    with Api(dl_server) as api:
        tid = api.submit_ok("dl2", 1)
        assert api.task(tid, wait=5)["status"] == "failed"
        assert api.retry(tid).status_code == 202
        assert api.status(tid) == "queued"
        t0 = time.monotonic()
        assert api.task(tid, wait=5)["status"] == "failed"
        assert time.monotonic() - t0 >= 0.25


def test_a_deadline_that_passed_while_ackd_was_down_fails_the_task_at_start(start_ackd):
    srv = start_ackd(queue_config({"dl": {"deadline": "500ms"}}))
    with Api(srv) as api:
        tid = api.submit_ok("dl", 1)
    srv.stop()
    time.sleep(0.7)
    srv.start()
    with Api(srv) as api:
        assert api.claim_tasks("dl", wait=0.3) == []
        d = api.task(tid)
        assert d["status"] == "failed", d
