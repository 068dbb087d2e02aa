"""bench/proxy/drain.py PORT N - the push pipeline's own rate.

Submits N tasks to queue "fast" of the ackd on 127.0.0.1:PORT in batches of
1000, all with the same run_at (a little after the submissions will have
ended), then polls GET /v1/queues until every task is terminal and prints

    <batch submits tasks/s> <completed> <failed> <seconds from due to drained> <completed/s>

Bounded: every call has a 30 s timeout, the wait for the drain 120 s."""

import json
import sys
import time
import urllib.request

port, n = int(sys.argv[1]), int(sys.argv[2])
base = f"http://127.0.0.1:{port}"


def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def counts():
    q = {x["name"]: x for x in call("GET", "/v1/queues")["queues"]}["fast"]
    return q["counts"]


due = time.time() + 2.0 + n / 5000.0
ms = int(due * 1000)
run_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
t_sub = time.time()
for i in range(0, n, 1000):
    call("POST", "/v1/queues/fast/tasks:batch",
         {"tasks": [{"payload": {"i": j}, "run_at": run_at} for j in range(i, min(n, i + 1000))]})
t_sub = time.time() - t_sub
if time.time() > due:
    print(f"drain: submitting took {t_sub:.2f}s, past the due time", file=sys.stderr)
    sys.exit(1)
deadline = due + 120
while time.time() < deadline:
    c = counts()
    if c.get("completed", 0) + c.get("failed", 0) >= n:
        break
    time.sleep(0.02)
t_end = time.time()
c = counts()
span = t_end - due
print(f"{n / t_sub:.0f} {c.get('completed', 0)} {c.get('failed', 0)} {span:.3f} "
      f"{c.get('completed', 0) / span:.0f}")
