"""Log lines about a task (issue 3 §5, SPEC §5 "Correlation and tracing" and
§6 "Logs"): every line that names a task also carries its correlation id
(the X-Request-ID it was submitted with, or the generated one) and its W3C
traceparent, so that one grep finds a task's whole life; and the lines that
end an attempt say what became of the task (queued again, and when, or
failed, and why).

One server at log_level = debug drives a task through every path that logs:
  - a route task pushed to an upstream that answers 503 until the attempts
    run out, with a webhook to a receiver (route answered, upstream call,
    upstream attempt ended, webhook try);
  - a queue task whose lease expires twice (task accepted, task claimed,
    lease expired: queued again, then failed);
  - a pull task failed by its worker, then completed (task attempt ended);
  - a task canceled, redriven; a task failed by its queue's deadline.
Then every line that has a task_id of these tasks is checked."""

import time
import uuid

import pytest
import requests

from conftest import SLOW
from queue_helpers import SOON, Api, queue_config, wait_for
from receiver import make_receiver  # noqa: F401
from upstream import answer, make_upstream, upstream  # noqa: F401 (fixtures)

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def rid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def server(start_ackd, upstream, make_receiver):
    rcv = make_receiver()
    rcv.default(answer(200))
    cfg = queue_config({
        "up": {"upstream": upstream.origin, "max_attempts": 3, "retry_base": "20ms",
               "retry_cap": "40ms", "attempt_timeout": "5s"},
        "jobs": {"max_attempts": 2, "retry_base": "20ms", "retry_cap": "40ms"},
        "dl": {"deadline": "300ms"},
    }, server={"log_level": "debug"})
    cfg["webhooks"] = {"allow_private": "127.0.0.0/8", "schedule": "100ms"}
    cfg["route POST /pay/{case}"] = {"queue": "up", "mode": "async"}
    srv = start_ackd(cfg)
    srv.receiver = rcv
    srv.upstream = upstream
    return srv


def task_lines(srv, task_id):
    return [r for r in srv.log_records() if r.get("task_id") == task_id]


def terminal(api, tid):
    def done():
        d = api.task(tid)
        return d if d["status"] in ("completed", "failed", "canceled") else None
    return wait_for(done, timeout=SOON, what=f"task {tid} terminal")


def test_every_line_about_a_task_carries_its_correlation_id_and_traceparent(server):
    srv, up = server, server.upstream
    up.on("/pay/busy", answer(503, {"busy": True}))
    want = {}                                          # task id -> (correlation id, traceparent)
    with Api(srv) as api:
        # a pushed route task: three 503s, failed, then its webhook
        corr = rid("route")
        r = requests.post(srv.url("/pay/busy"), json={"amount": 1}, timeout=10 * SLOW,
                          headers={"X-Request-ID": corr, "traceparent": TRACE,
                                   "Callback-URL": srv.receiver.url("/hook")})
        assert r.status_code == 202, r.text
        route_tid = r.json()["task_id"]
        want[route_tid] = (corr, TRACE)
        assert terminal(api, route_tid)["status"] == "failed"
        wait_for(lambda: srv.receiver.hooks(task_id=route_tid), what="the webhook")

        # a pull task whose lease expires twice
        corr = rid("lease")
        tid = api.submit_ok("jobs", {"n": 1}, headers={"X-Request-ID": corr, "traceparent": TRACE},
                            timeout="200ms")
        want[tid] = (corr, TRACE)
        for _ in range(2):
            t = api.claim_one("jobs", wait=SOON)
            assert t["id"] == tid
        assert terminal(api, tid)["status"] == "failed"
        lease_tid = tid

        # a pull task failed once by its worker, then completed
        corr = rid("worker")
        tid = api.submit_ok("jobs", {"n": 2}, headers={"X-Request-ID": corr})
        want[tid] = (corr, None)
        t = api.claim_one("jobs", wait=SOON)
        assert api.fail(tid, t["lease_id"], error="flaky").status_code == 200
        t = api.claim_one("jobs", wait=SOON)
        assert api.complete(tid, t["lease_id"], {"ok": True}).status_code == 200
        worker_tid = tid

        # canceled, redriven, canceled; and one its deadline fails
        corr = rid("cancel")
        tid = api.submit_ok("jobs", {"n": 3}, headers={"X-Request-ID": corr, "traceparent": TRACE},
                            delay=60)
        want[tid] = (corr, TRACE)
        assert api.cancel(tid).status_code == 200
        assert api.retry(tid).status_code == 202
        cancel_tid = tid
        corr = rid("deadline")
        tid = api.submit_ok("dl", {"n": 4}, headers={"X-Request-ID": corr})
        want[tid] = (corr, None)
        assert terminal(api, tid)["status"] == "failed"
        deadline_tid = tid

    srv.wait_for_log(lambda rec: rec.get("msg") == "webhook try"
                     and rec.get("task_id") == route_tid)
    for tid, (corr, trace) in want.items():
        lines = task_lines(srv, tid)
        assert lines, f"no log line about {tid}"
        for rec in lines:
            assert rec.get("correlation_id") == corr, rec
            assert rec.get("traceparent") == trace, rec
            assert rec.get("queue"), rec

    # the lines that end an attempt say what became of the task
    ends = [r for r in task_lines(srv, route_tid) if r["msg"] == "upstream attempt ended"]
    assert [(r["attempt"], r["status"]) for r in ends] == [(1, "queued"), (2, "queued"),
                                                           (3, "failed")], ends
    assert all(r["max_attempts"] == 3 and r["error"] == "the upstream answered 503"
               for r in ends), ends
    assert all(0 <= r["retry_in_ms"] <= 40 for r in ends[:2]), ends
    assert "retry_in_ms" not in ends[2] and ends[2]["level"] == "warn", ends
    calls = [r for r in task_lines(srv, route_tid) if r["msg"] == "upstream call"]
    assert [(r["status"], r["outcome"]) for r in calls] == [(503, "retryable")] * 3, calls
    hook = [r for r in task_lines(srv, route_tid) if r["msg"] == "webhook try"]
    assert [(r["status"], r["outcome"]) for r in hook] == [(200, "delivered")], hook

    expired = [r for r in task_lines(srv, lease_tid) if r["msg"] == "lease expired"]
    assert [(r["attempt"], r["status"], r["level"]) for r in expired] == [
        (1, "queued", "warn"), (2, "failed", "warn")], expired
    assert expired[0]["error"] == "lease expired" and "retry_in_ms" in expired[0], expired

    ended = [r for r in task_lines(srv, worker_tid) if r["msg"] == "task attempt ended"]
    assert [(r["attempt"], r["status"]) for r in ended] == [(1, "queued"), (2, "completed")], ended
    assert ended[0]["error"] == "flaky" and "error" not in ended[1], ended

    assert [r["msg"] for r in task_lines(srv, cancel_tid)
            if r["msg"].startswith("task ")] == ["task accepted", "task canceled", "task redriven"]
    dl = [r for r in task_lines(srv, deadline_tid) if r["msg"] == "deadline passed"]
    assert len(dl) == 1 and dl[0]["status"] == "failed", dl


def test_a_generated_correlation_id_is_the_one_every_line_carries(server):
    """No X-Request-ID: ackd makes one, answers with it, stores it on the
    task, and logs it on every line about the task."""
    with Api(server) as api:
        r = api.submit("jobs", {"n": 5})
        assert r.status_code == 202, r.text
        corr = r.headers["X-Request-ID"]
        tid = r.json()["task_id"]
        assert api.task(tid)["correlation_id"] == corr
        t = api.claim_one("jobs", wait=SOON)
        assert t["correlation_id"] == corr
        assert api.complete(tid, t["lease_id"], {"ok": 1}).status_code == 200
    time.sleep(0.05)
    lines = task_lines(server, tid)
    assert {r["msg"] for r in lines} == {"task accepted", "task claimed", "task attempt ended"}
    assert all(r["correlation_id"] == corr and "traceparent" not in r for r in lines), lines
