"""The problem types' pages (SPEC §6a: "`type` is a relative URI under
/problems/ that ackd serves as a short human-readable page"), and the one
problem this file's change added: a claim on a push queue.

Which types exist is read from ackd's sources (every literal type handed to
the problem writers, and the HTTP layer's status -> type table), so a new
type without a page fails here."""
import re
from pathlib import Path

import pytest

from queue_helpers import Api, key_hash, problem, queue_config

SRC = Path(__file__).resolve().parents[2] / "src"

# ackd_http_respond_problem(req, 409, "type", ...) / api_problem_response(409, "type", ...),
# with the arguments possibly on the next lines
CALL_RE = re.compile(r'(?:respond_problem|problem_response)\(\s*(?:req,\s*)?'
                     r'(?:\d{3}|[^,()]+\?\s*\d{3}\s*:\s*\d{3}),\s*'
                     r'(?:"([a-z-]+)"|[^,()]*\?\s*"([a-z-]+)"\s*:\s*"([a-z-]+)")', re.S)
# the HTTP layer's table: case 413: return "content-too-large";
TABLE_RE = re.compile(r'case \d{3}: return "([a-z-]+)";')
SKIP = {"src/api/problems.c"}


def emitted_types():
    found = {}
    for path in sorted(SRC.rglob("*.c")):
        rel = str(path.relative_to(SRC.parent))
        if rel in SKIP:
            continue
        text = path.read_text()
        for m in CALL_RE.finditer(text):
            for t in m.groups():
                if t:
                    found.setdefault(t, rel)
        for t in TABLE_RE.findall(text):
            found.setdefault(t, rel)
    return found


def test_the_sources_are_read():
    # the reader finds types of every layer, or the test below proves nothing
    found = emitted_types()
    for t in ("not-found", "content-too-large", "task-not-found", "idempotency-mismatch",
              "store-unavailable", "no-result", "result-not-ready", "push-queue"):
        assert t in found, sorted(found)
    assert len(found) >= 30, sorted(found)


@pytest.fixture(scope="module")
def server(start_ackd_module):
    queues = {"pull": {}, "push": {"upstream": "http://127.0.0.1:9"}}
    return start_ackd_module(queue_config(queues, keys={"key-admin": "ops admin",
                                                        "key-worker": "ops worker push,pull"}))


def page(server, path):
    r = server.get(path)
    assert r.status == 200, (path, r)
    assert r.header("Content-Type") == "text/html; charset=utf-8", r
    return r.text


@pytest.mark.parametrize("ptype", sorted(emitted_types()))
def test_every_problem_type_has_a_page(server, ptype):
    html = page(server, f"/problems/{ptype}")
    assert html.startswith("<!doctype html>")
    assert f"<code>/problems/{ptype}</code>" in html
    title = re.search(r"<h1>(.+?)</h1>", html).group(1)
    text = re.search(r"</p><p>(.+?)</p>", html).group(1)
    assert title and len(text) > 40, html


def test_the_index_lists_every_page_and_no_other(server):
    html = page(server, "/problems")
    listed = set(re.findall(r'<a href="/problems/([a-z-]+)">', html))
    assert listed == set(emitted_types())


def test_the_pages_need_no_key_and_an_unknown_type_is_a_404_problem(server):
    # keys are configured: the API wants one, the pages do not
    problem(Api(server).get("/v1/tasks"), 401, "unauthorized")
    assert server.get("/problems/unauthorized").status == 200
    r = server.get("/problems/no-such-type")
    assert r.status == 404
    assert r.json()["type"] == "/problems/not-found"
    assert "no-such-type" in r.json()["detail"]


def test_a_problem_answered_names_its_page_title(server):
    with Api(server, key="key-admin") as api:
        p = problem(api.get("/v1/tasks/tsk_01m85wcy4yhgfasjy6asems3ch"), 404, "task-not-found")
        html = page(server, p["type"])
        assert f"<h1>{p['title']}</h1>" in html


def test_a_claim_on_a_push_queue_is_a_409_and_takes_nothing(server):
    with Api(server, key="key-admin") as admin, Api(server, key="key-worker") as w:
        tid = admin.submit_ok("push", {"x": 1}, delay="1h")
        for who in (w, admin):
            p = problem(who.claim("push", max=10), 409, "push-queue")
            assert "push" in p["detail"] and "http://127.0.0.1:9" in p["detail"]
        t = admin.task(tid)
        assert t["status"] == "queued" and t["attempts"] == 0
        # a pull queue is claimed as before
        pid = admin.submit_ok("pull", {"y": 2})
        c = w.claim_one("pull", wait=5)
        assert c["id"] == pid
