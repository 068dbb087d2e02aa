"""Progress end to end (issue 5 §3 and §4, SPEC §4 and §6a).

  - a pull worker reports progress (0-100) and a message in its heartbeats:
    the status document's `progress`, a task.progress event on the stream
    (live), and the task's history (the stored events a finished task's
    stream replays) all show it; bad values are refused;
  - a push upstream reads Task-Progress-URL and Task-Progress-Token from
    its request's headers and POSTs progress while it still holds the
    request, then answers: the same three places show it while the call
    is still running;
  - the token: missing or malformed 401, wrong 403, another task's 403,
    the previous attempt's (stale) 403 while the current one's works, and
    403 once the task has finished; bad bodies refused."""

import json
import secrets
import threading
import time

import pytest
import requests

from conftest import HOST, SLOW
from queue_helpers import SOON, Api, problem, queue_config, wait_for
from sse_client import SseStream
from upstream import Answer, make_upstream  # noqa: F401 (fixture)

LIVE = 2.0 * SLOW
HOLD = 15.0 * SLOW            # the longest an upstream holds a request here


@pytest.fixture(scope="module")
def backend():
    from upstream import FakeUpstream
    u = FakeUpstream().start()
    yield u
    u.stop()


@pytest.fixture(scope="module")
def server(start_ackd_module, backend):
    queues = {f"pull{i}": {"attempt_timeout": "30s", "max_attempts": 2, "retry_base": "20ms",
                           "retry_cap": "20ms"} for i in range(10)}
    for i in range(10):
        queues[f"push{i}"] = {"upstream": backend.origin, "upstream_path": f"/push{i}",
                              "attempt_timeout": "30s", "max_attempts": 3,
                              "retry_base": "20ms", "retry_cap": "20ms"}
    return start_ackd_module(queue_config(queues, server={"shutdown_grace": "1s"}))


@pytest.fixture
def api(server):
    with Api(server) as a:
        yield a


def post_progress(url, token, body, headers=None):
    h = {} if token is None else {"Task-Progress-Token": token}
    h.update(headers or {})
    return requests.post(url, json=body, headers=h, timeout=30 * SLOW)


def progress_url(server, tid):
    return server.url(f"/v1/tasks/{tid}/progress")


def replayed(server, tid):
    """The stored history of a finished task, as its stream replays it."""
    with SseStream(server, tid) as s:
        evs = s.rest(LIVE)
        assert s.ended
    return evs


# --------------------------------------------------------------------------
# pull workers: heartbeats


def test_pull_worker_progress_in_status_stream_and_history(server, api):
    q = "pull0"
    tid = api.submit_ok(q, {"report": "big"})
    assert api.task(tid)["progress"] is None                  # nothing reported yet
    c = api.claim_one(q)
    with SseStream(server, tid) as s:
        assert [e.type for e in [s.next(LIVE), s.next(LIVE)]] == ["task.queued",
                                                                  "task.processing"]
        steps = [({"progress": 10, "message": "reading"}, {"percent": 10, "message": "reading"}),
                 ({"progress": 55}, {"percent": 55, "message": "reading"}),
                 ({"message": "writing"}, {"percent": 55, "message": "writing"}),
                 ({"progress": 100, "message": "done soon"},
                  {"percent": 100, "message": "done soon"})]
        for fields, expect in steps:
            r = api.heartbeat(tid, c["lease_id"], **fields)
            assert r.status_code == 200, r.text
            ev = s.next(LIVE)                          # live, one event per report
            assert ev.type == "task.progress", ev
            assert ev.data == {"task_id": tid, "status": "processing", "progress": expect}
            assert api.task(tid)["progress"] == expect
        # a heartbeat without progress extends the lease and says nothing
        assert api.heartbeat(tid, c["lease_id"]).status_code == 200
        api.complete(tid, c["lease_id"], {"rows": 3})
        assert [e.type for e in s.rest(LIVE)] == ["task.completed"]
    doc = api.task(tid)
    assert doc["status"] == "completed"
    assert doc["progress"] == {"percent": 100, "message": "done soon"}
    history = replayed(server, tid)
    progress = [e.data["progress"] for e in history if e.type == "task.progress"]
    assert progress == [expect for _, expect in steps]
    assert [e.type for e in history] == ["task.queued", "task.processing"] + \
        ["task.progress"] * 4 + ["task.completed"]
    # and the status document's history carries the same events
    events = api.task(tid, history=True)["events"]
    assert [e["type"] for e in events] == [e.type for e in history]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert [e["data"]["progress"] for e in events if e["type"] == "task.progress"] == \
        [expect for _, expect in steps]


def test_heartbeat_progress_is_checked(server, api):
    q = "pull1"
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q)
    for bad in ({"progress": 101}, {"progress": -1}, {"progress": "half"},
                {"message": 42}, {"message": "x" * 5000}):
        problem(api.heartbeat(tid, c["lease_id"], **bad), 422, "invalid-field")
    assert api.task(tid)["progress"] is None
    # a stale lease reports nothing
    api.fail(tid, c["lease_id"], error="again")
    c2 = api.claim_one(q)
    problem(api.heartbeat(tid, c["lease_id"], progress=50), 409)
    assert api.heartbeat(tid, c2["lease_id"], progress=50).status_code == 200
    assert api.task(tid)["progress"]["percent"] == 50
    api.complete(tid, c2["lease_id"], None)


# --------------------------------------------------------------------------
# push upstreams: the progress endpoint


class Holder:
    """An upstream behaviour that reports progress through the headers ackd
    sent, step by step while holding the request, then answers."""

    def __init__(self, steps, first_status=None):
        self.steps = steps                  # [(percent, message)]
        self.first_status = first_status    # answer the first call with this, at once
        self.go = [threading.Event() for _ in steps]   # the test releases each step
        self.reported = [threading.Event() for _ in steps]
        self.release = threading.Event()   # the test lets the call answer
        self.answers = []                   # the progress POSTs' (status, body)
        self.calls = []                     # (url, token) per call
        self.error = None

    def __call__(self, req, n):
        url, token = req.header("Task-Progress-URL"), req.header("Task-Progress-Token")
        self.calls.append((url, token))
        if self.first_status and n == 1:
            return Answer(self.first_status, {"try": "again"})
        try:
            for i, (pct, msg) in enumerate(self.steps):
                if not self.go[i].wait(HOLD):
                    raise AssertionError(f"step {i} was never released")
                r = requests.post(url, json={"progress": pct, "message": msg},
                                  headers={"Task-Progress-Token": token}, timeout=30 * SLOW)
                self.answers.append((r.status_code, r.text))
                self.reported[i].set()
            if not self.release.wait(HOLD):
                raise AssertionError("the call was never released")
        except Exception as e:              # reported to the test, not lost in a thread
            self.error = e
            for ev in self.reported:
                ev.set()
            return Answer(500, {"error": repr(e)})
        return Answer(200, {"report": "ready"})


def test_push_upstream_reports_progress_while_holding_the_request(server, api, backend):
    q, path = "push0", "/push0"
    h = Holder([(10, "queried"), (60, "rendering"), (90, "compressing")])
    backend.on(path, h)
    tid = api.submit_ok(q, {"report": "q3"})
    with SseStream(server, tid) as s:
        assert [e.type for e in s.wait_for("task.processing", LIVE)][-1] == "task.processing"
        (call,) = backend.wait_calls(1, path)
        url, token = h.calls[0]
        assert url == f"http://{HOST}:{server.port}/v1/tasks/{tid}/progress", url
        assert len(token) == 64 and all(ch in "0123456789abcdef" for ch in token), token
        assert call.header("Task-Id") == tid
        for i, (pct, msg) in enumerate(h.steps):
            h.go[i].set()
            assert h.reported[i].wait(LIVE * 2) and h.error is None, h.error
            status, body = h.answers[i]
            assert status == 200, body
            assert json.loads(body)["progress"] == {"percent": pct, "message": msg}
            ev = s.next(LIVE)
            assert ev.type == "task.progress"
            assert ev.data["progress"] == {"percent": pct, "message": msg}
            # the call is still held: the task is processing and shows it
            doc = api.task(tid)
            assert doc["status"] == "processing"
            assert doc["progress"] == {"percent": pct, "message": msg}
            assert backend.inflight >= 1
        h.release.set()
        done = s.rest(LIVE * 2)
        assert [e.type for e in done] == ["task.completed"]
        assert done[0].data["result"]["body"] == {"report": "ready"}
    history = replayed(server, tid)
    assert [e.data["progress"]["percent"] for e in history if e.type == "task.progress"] == \
        [10, 60, 90]
    assert api.task(tid)["progress"] == {"percent": 90, "message": "compressing"}


def test_progress_token_checks(server, api, backend):
    q, path = "push1", "/push1"
    h = Holder([(40, "second attempt")], first_status=503)
    backend.on(path, h)
    tid = api.submit_ok(q, 1)
    other = api.submit_ok("pull2", 1)
    calls = backend.wait_calls(2, path)                # attempt 1 (503), attempt 2 (held)
    assert calls[1].attempt == 2
    (url1, stale), (url2, token) = h.calls
    assert url1 == url2 == progress_url(server, tid)
    assert stale != token, "each attempt must get its own token"
    body = {"progress": 5, "message": "x"}
    problem(post_progress(url2, None, body), 401)
    problem(post_progress(url2, "abc", body), 401)
    problem(post_progress(url2, token[:-1], body), 401)
    problem(post_progress(url2, secrets.token_hex(32), body), 403, "invalid-progress-token")
    problem(post_progress(url2, stale, body), 403, "invalid-progress-token")      # stale
    problem(post_progress(url2, token.upper(), body), 403)
    problem(post_progress(progress_url(server, other), token, body), 403)         # other task
    problem(post_progress(server.url("/v1/tasks/tsk_01m85wcy4yhgfasjy6asems3ch/progress"),
                          token, body), 404)
    assert api.task(tid)["progress"] is None
    # bodies
    problem(post_progress(url2, token, {"progress": 150}), 422)
    problem(post_progress(url2, token, {"progress": -5}), 422)
    problem(post_progress(url2, token, {}), 422)
    r = requests.post(url2, data="not json", timeout=30 * SLOW,
                      headers={"Task-Progress-Token": token, "Content-Type": "application/json"})
    problem(r, 400)
    # the running attempt's own token works (from the upstream, while held)
    h.go[0].set()
    assert h.reported[0].wait(LIVE * 2) and h.error is None, h.error
    assert h.answers[0][0] == 200, h.answers
    h.release.set()
    wait_for(lambda: api.task(tid)["status"] == "completed", what="the task completing")
    assert api.task(tid)["progress"] == {"percent": 40, "message": "second attempt"}
    # once the task has finished, no token reports anything
    problem(post_progress(url2, token, body), 403, "invalid-progress-token")
    problem(post_progress(url2, stale, body), 403)
    assert api.task(tid)["progress"]["percent"] == 40
    api.cancel(other)


def test_a_pull_workers_task_takes_no_progress_token(server, api):
    """Pull workers report through heartbeats; the push endpoint refuses
    every token for their tasks (none was issued)."""
    q = "pull3"
    tid = api.submit_ok(q, 1)
    c = api.claim_one(q)
    problem(post_progress(progress_url(server, tid), secrets.token_hex(32), {"progress": 1}), 403)
    api.complete(tid, c["lease_id"], 1)
