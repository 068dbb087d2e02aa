"""Durability of the queue (issue 3 §1, §5, §6): a graceful restart keeps
every task, state, lease, result and idempotency key; a lease that expired
while ackd was down is handled at start-up; and the crash test: concurrent
submitters, kill -9 in the middle of the load, restart, and every task that
got a 202 is there with its payload - 20 cycles, 0 lost (sync = full).

Restarts reuse the first server's database (its [storage] path) with a new
process, a new port and a new work folder; every process is stopped by its
PID (SIGTERM, or SIGKILL where a crash is the point)."""

import os
import signal
import threading
import time

import pytest
import requests

from conftest import SLOW, build_request
from queue_helpers import SOON, Api, parse_time, problem, queue_config, wait_for

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def config(db_path=None, **queue_opts):
    opts = {"max_attempts": 3, "retry_base": "10ms", "retry_cap": "10ms",
            "attempt_timeout": "30s", **queue_opts}
    storage = {"sync": "full"}
    if db_path:
        storage["path"] = str(db_path)
    return queue_config({"jobs": opts, "other": opts}, storage=storage)


def db_of(srv):
    return srv.data_dir / "ackd.db"


def restart(start_ackd, srv, cfg_fn=config, kill=False):
    """Stops srv (SIGTERM and a clean exit, or SIGKILL) and starts a new
    server on its database; returns the new server."""
    if kill:
        srv.expected_returncodes = {-signal.SIGKILL}
        srv.signal(signal.SIGKILL)
        srv.wait_exit()
    else:
        rc = srv.stop()
        assert rc in (0, -signal.SIGTERM), f"ackd exited with {rc} on SIGTERM"
    return start_ackd(cfg_fn(db_of(srv)))


def snapshot(api, ids):
    return {tid: api.task(tid, history=True) for tid in ids}


# --------------------------------------------------------------------------
# graceful restart


def test_restart_keeps_every_task_state_lease_and_result(start_ackd):
    srv = start_ackd(config())
    with Api(srv) as api:
        # one task in each state (claims right after each submit take it)
        done = api.submit_ok("jobs", {"k": "done"}, headers={"X-Request-ID": "req-done"})
        c = api.claim_one("jobs", wait=5)
        api.complete(done, c["lease_id"], {"receipt": "r-1", "amount": 12.5, "note": "ü"})

        failed = api.submit_ok("jobs", {"k": "failed"}, max_attempts=1)
        c = api.claim_one("jobs", wait=5)
        api.fail(failed, c["lease_id"], {"message": "declined", "status": 402}, retry=False)

        backing_off = api.submit_ok("jobs", {"k": "backoff"})
        c = api.claim_one("jobs", wait=5)
        d = api.fail(backing_off, c["lease_id"], "later", retry=True, retry_after=120).json()
        assert d["status"] == "queued" and d["next_attempt_at"]

        processing = api.submit_ok("jobs", {"k": "processing"})
        lease = api.claim_one("jobs", wait=5, lease="120s")
        api.heartbeat(processing, lease["lease_id"], progress=50, message="half way")

        canceled = api.submit_ok("jobs", {"k": "canceled"})
        api.cancel(canceled)
        delayed = api.submit_ok("jobs", {"k": "delayed"}, delay=120)
        queued = api.submit_ok("jobs", {"k": "queued", "list": [1, 2, 3]}, priority=3,
                               max_attempts=7, callback_url="https://hooks.example.com/x",
                               headers={"X-Request-ID": "req-queued", "traceparent": TP,
                                        "Idempotency-Key": "idem-1"})
        batch = [t["task_id"] for t in
                 api.batch("other", [{"payload": {"b": i}} for i in range(5)]).json()["tasks"]]
        ids = [done, failed, backing_off, processing, canceled, delayed, queued] + batch
        before = snapshot(api, ids)
        listing = api.list(limit=1000)
        counts = api.queues()

        # waiters in flight at SIGTERM get an answer, not a dropped connection
        poll = srv.conn()
        poll.send(build_request("GET", f"/v1/tasks/{queued}?wait=30"))
        claimer = srv.conn()
        # a claim takes `queued` (the only due task); the poll stays parked
        claimer.send(build_request("POST", "/v1/queues/jobs/claim",
                                   [("Content-Type", "application/json")],
                                   '{"wait": 30, "max": 1}'))
        r = claimer.read_response(timeout=SOON)
        assert r.status == 200 and r.json()["tasks"][0]["id"] == queued
        claimed_queued = r.json()["tasks"][0]
        before[queued] = api.task(queued, history=True)
        claimer.close()

    srv2 = restart(start_ackd, srv)
    r = poll.read_response(timeout=SOON)
    poll.close()
    assert r.status == 200 and r.json()["status"] == "processing"

    with Api(srv2) as api:
        after = snapshot(api, ids)
        for tid in ids:
            assert after[tid] == before[tid], f"task {tid} changed across the restart"
        assert [t["id"] for t in api.list(limit=1000)["tasks"]] == \
            [t["id"] for t in listing["tasks"]]
        q = api.queues()
        assert q["other"]["counts"] == counts["other"]["counts"] == {
            "queued": 5, "processing": 0, "completed": 0, "failed": 0, "canceled": 0}
        assert q["jobs"]["counts"] == {"queued": 2, "processing": 2, "completed": 1,
                                       "failed": 1, "canceled": 1}

        # the result replays
        r = api.result(done)
        assert r.status_code == 200
        assert r.json() == {"receipt": "r-1", "amount": 12.5, "note": "ü"}
        # the lease of the processing task survived and still fences
        problem(api.complete(processing, "lse_01m85wcy4yhgfasjy6asems3ch", 1), 409)
        r = api.complete(processing, lease["lease_id"], {"after": "restart"})
        assert r.status_code == 200 and r.json()["status"] == "completed"
        r = api.complete(queued, claimed_queued["lease_id"], "ok")
        assert r.status_code == 200
        # the idempotency key still maps to its task
        r = api.submit("jobs", {"k": "queued", "list": [1, 2, 3]}, priority=3, max_attempts=7,
                       callback_url="https://hooks.example.com/x",
                       headers={"Idempotency-Key": "idem-1"})
        assert r.status_code == 202 and r.json()["task_id"] == queued
        assert r.headers.get("Idempotent-Replayed") == "true"
        # payloads survived (the batch is due: claim it)
        got = {t["id"]: t["payload"] for t in api.claim_tasks("other", max=10)}
        assert got == {tid: {"b": i} for i, tid in enumerate(batch)}
        # timers survived: the delayed and backing-off tasks are not due yet
        assert api.claim_tasks("jobs", max=10) == []
        # the redrive works on the restored failed task
        assert api.retry(failed).status_code == 202
        assert api.claim_one("jobs", wait=5)["id"] == failed


def test_a_restart_keeps_delays_and_wakes_claims_when_they_come_due(start_ackd):
    srv = start_ackd(config())
    with Api(srv) as api:
        tid = api.submit_ok("jobs", "soon", delay=1.5 * SLOW)
        due = parse_time(api.task(tid)["next_attempt_at"])
    srv2 = restart(start_ackd, srv)
    with Api(srv2) as api:
        if time.time() < due - 0.1:
            assert api.claim_tasks("jobs", wait=0) == []
        c = api.claim_one("jobs", wait=SOON)
        got = time.time()
        assert c["id"] == tid and got >= due - 0.005
        assert got - due < 1.0 * SLOW


# --------------------------------------------------------------------------
# one server per database file


def test_a_second_server_on_the_same_database_is_refused(start_ackd):
    """A second ackd on a database another one serves would write it with
    its own parked claims, timers and counts: it must not start, and must
    say why; the first goes on; once the first has stopped, it may."""
    first = start_ackd(config())
    api = Api(first)
    tid = api.submit_ok("jobs", {"n": 1})
    second = start_ackd(config(db_of(first)), wait=False)
    second.expected_returncodes = {1}
    rc = second.wait_exit(timeout=10 * SLOW)
    assert rc == 1
    err = second.stderr_text()
    assert str(db_of(first)) in err and f"pid {first.pid}" in err, err
    assert "one ackd per database file" in err
    # the first is untouched and serves on
    assert api.task(tid)["status"] == "queued"
    api.submit_ok("jobs", {"n": 2})
    # after it stops, the file is free again
    third = restart(start_ackd, first)
    assert Api(third).task(tid)["status"] == "queued"


# --------------------------------------------------------------------------
# leases that expire while ackd is down


def test_a_lease_that_expired_while_down_is_handled_at_start_up(start_ackd):
    srv = start_ackd(config())
    lease_s = 2.0 * SLOW
    with Api(srv) as api:
        again = api.submit_ok("jobs", {"k": "again"}, headers={"X-Request-ID": "req-again"})
        ca = api.claim_one("jobs", wait=5, lease=lease_s)
        last = api.submit_ok("jobs", {"k": "last"}, max_attempts=1)
        cb = api.claim_one("jobs", wait=5, lease=lease_s)
        kept = api.submit_ok("jobs", {"k": "kept"})
        cc = api.claim_one("jobs", wait=5, lease="300s")
    rc = srv.stop()
    assert rc in (0, -signal.SIGTERM)
    expires = max(parse_time(ca["lease_expires_at"]), parse_time(cb["lease_expires_at"]))
    if time.time() >= min(parse_time(ca["lease_expires_at"]), parse_time(cb["lease_expires_at"])):
        pytest.skip("the server took longer to stop than the lease lasted")
    time.sleep(max(0.0, expires - time.time()) + 0.2)

    srv2 = start_ackd(config(db_of(srv)))
    started = time.monotonic()
    with Api(srv2) as api:
        d = wait_for(lambda: (lambda x: x if x["status"] == "queued" else None)(api.task(again)),
                     timeout=2.0 * SLOW, what="requeue of the expired lease at start-up")
        assert time.monotonic() - started < 2.0 * SLOW
        assert d["attempts"] == 1 and d["error"]["message"] == "lease expired"
        d = wait_for(lambda: (lambda x: x if x["status"] == "failed" else None)(api.task(last)),
                     timeout=2.0 * SLOW, what="failure of the expired last attempt")
        assert d["error"]["message"] == "lease expired"
        assert [a["outcome"] for a in api.task(last, history=True)["history"]] == \
            ["lease_expired"]
        # the worker that held the lease is fenced off; the unexpired lease holds
        problem(api.complete(again, ca["lease_id"], "late"), 409)
        problem(api.complete(last, cb["lease_id"], "late"), 409)
        assert api.status(kept) == "processing"
        c = api.claim_one("jobs", wait=SOON)
        assert c["id"] == again and c["attempt"] == 2 and c["payload"] == {"k": "again"}
        assert c["correlation_id"] == "req-again"
        assert api.complete(kept, cc["lease_id"], "fine").status_code == 200
    rec = srv2.wait_for_log(lambda r: r.get("msg") == "lease expired"
                            and r.get("task_id") == again)
    assert rec.get("correlation_id") == "req-again"


# --------------------------------------------------------------------------
# the crash test

CYCLES = 20
SUBMITTERS = 8
LOAD_SECONDS = 0.5


def submitter(base, stop, acked, errors, n_thread, cycle):
    """Posts tasks back to back until told to stop or the server dies. Only
    a 202 read in full counts as acknowledged."""
    s = requests.Session()
    s.trust_env = False
    n = 0
    try:
        while not stop.is_set():
            payload = {"cycle": cycle, "thread": n_thread, "n": n, "pad": os.urandom(12).hex(),
                       "text": "ü€漢"}
            try:
                r = s.post(base + "/v1/queues/jobs/tasks", json={"payload": payload},
                           timeout=10.0 * SLOW)
                body = r.json() if r.status_code == 202 else None
            except (requests.RequestException, ValueError):
                return                  # killed under us: this one is in doubt
            if r.status_code == 202:
                acked.append((body["task_id"], payload))
            else:
                errors.append((r.status_code, r.text[:200]))
                return
            n += 1
    finally:
        s.close()


def claim_all(api):
    """Claims every queued task (lease 1h); {id: payload}."""
    out = {}
    while True:
        ts = api.claim_tasks("jobs", max=100, wait=0, lease="1h")
        if not ts:
            return out
        for t in ts:
            out[t["id"]] = t["payload"]


def test_kill_9_mid_load_loses_no_acknowledged_task(start_ackd):
    srv = start_ackd(config())
    db = db_of(srv)
    all_acked = {}
    claimed_total = 0
    per_cycle = []
    t_start = time.monotonic()
    for cycle in range(CYCLES):
        stop = threading.Event()
        acked, errors = [], []
        threads = [threading.Thread(target=submitter,
                                    args=(srv.url(""), stop, acked, errors, i, cycle))
                   for i in range(SUBMITTERS)]
        for t in threads:
            t.start()
        time.sleep(LOAD_SECONDS)
        srv.expected_returncodes = {-signal.SIGKILL}
        srv.signal(signal.SIGKILL)           # by its PID, while the load runs
        srv.wait_exit()
        stop.set()
        for t in threads:
            t.join(30)
            assert not t.is_alive(), "a submitter hung after the kill"
        assert not errors, f"cycle {cycle}: submissions refused before the kill: {errors[:3]}"
        assert acked, f"cycle {cycle}: no submission was acknowledged in {LOAD_SECONDS}s"

        srv = start_ackd(config(db))
        with Api(srv) as api:
            found = claim_all(api)
        claimed_total += len(found)
        lost = [tid for tid, _ in acked if tid not in found]
        changed = [tid for tid, p in acked if tid in found and found[tid] != p]
        assert not lost, f"cycle {cycle}: {len(lost)} of {len(acked)} acknowledged tasks lost"
        assert not changed, f"cycle {cycle}: {len(changed)} payloads differ"
        per_cycle.append((len(acked), len(found)))
        all_acked.update(dict(acked))

    # the earlier cycles' tasks survived the later crashes too
    with Api(srv) as api:
        listed, cursor = set(), None
        while True:
            params = {"queue": "jobs", "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = api.list(**params)
            listed |= {t["id"] for t in page["tasks"]}
            cursor = page["next_cursor"]
            if not cursor:
                break
        missing = set(all_acked) - listed
        assert not missing, f"{len(missing)} acknowledged tasks missing at the end"
        counts = api.queues()["jobs"]["counts"]
        assert counts["processing"] == claimed_total and counts["queued"] == 0, counts
    took = time.monotonic() - t_start
    print(f"crash test: {CYCLES} cycles in {took:.1f}s, acknowledged/found per cycle: {per_cycle}")
