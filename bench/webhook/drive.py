#!/usr/bin/python3
"""The client side of bench/webhook/run.sh (everything on 127.0.0.1, every
wait bounded).

  drive.py backlog PORT QUEUE N CALLBACK     N tasks with CALLBACK ended at once:
                                             enqueued by tasks:batch (1000 a
                                             request), claimed (100 a claim,
                                             lease 1 s) and never completed; the
                                             queue has max_attempts = 1, so the
                                             leases expire into N failures and
                                             N webhooks. Waits for counts.failed
                                             == N; prints the times.
  drive.py latency PORT QUEUE N CALLBACK OUT N tasks one after another: submit,
                                             claim, then t0 (CLOCK_MONOTONIC ns)
                                             and complete; writes "task t0 t1"
                                             lines (t1: the complete's answer).
  drive.py task PORT QUEUE                   one task submitted and claimed:
                                             prints "TASK_ID LEASE_ID".
  drive.py throughput RECV_OUT               deliveries/s from the receiver's
                                             file (hold mode).
  drive.py latstats RECV_OUT LAT_OUT         p50/p99 from completion to arrival.
"""

import statistics
import sys
import time

import requests

TIMEOUT = 60


def base(port):
    return f"http://127.0.0.1:{port}"


def backlog(port, queue, n, callback):
    s = requests.Session()
    s.trust_env = False
    b = base(port)
    t0 = time.monotonic()
    left = n
    while left:
        k = min(1000, left)
        r = s.post(f"{b}/v1/queues/{queue}/tasks:batch",
                   json={"tasks": [{"payload": {"i": i}, "callback_url": callback}
                                   for i in range(k)]}, timeout=TIMEOUT)
        assert r.status_code in (200, 202, 207), (r.status_code, r.text[:300])
        left -= k
    t1 = time.monotonic()
    claimed = 0
    while claimed < n:
        r = s.post(f"{b}/v1/queues/{queue}/claim", json={"max": 100, "lease": "1s"},
                   timeout=TIMEOUT)
        assert r.status_code == 200, (r.status_code, r.text[:300])
        claimed += len(r.json()["tasks"])
    t2 = time.monotonic()
    deadline = time.monotonic() + 300
    while True:
        qs = {q["name"]: q for q in s.get(f"{b}/v1/queues", timeout=TIMEOUT).json()["queues"]}
        failed = qs[queue]["counts"]["failed"]
        if failed >= n:
            break
        if time.monotonic() > deadline:
            sys.exit(f"backlog: only {failed} of {n} tasks failed in time")
        time.sleep(0.2)
    t3 = time.monotonic()
    print(f"enqueue_s {t1 - t0:.2f}\nclaim_s {t2 - t1:.2f}\nall_failed_s {t3 - t2:.2f}")


def latency(port, queue, n, callback, out):
    s = requests.Session()
    s.trust_env = False
    b = base(port)
    with open(out, "w") as f:
        for _ in range(n):
            r = s.post(f"{b}/v1/queues/{queue}/tasks",
                       json={"payload": 1, "callback_url": callback}, timeout=TIMEOUT)
            assert r.status_code == 202, r.text
            tid = r.json()["task_id"]
            r = s.post(f"{b}/v1/queues/{queue}/claim", json={"max": 1, "wait": 10},
                       timeout=TIMEOUT)
            c = r.json()["tasks"][0]
            assert c["id"] == tid
            t0 = time.monotonic_ns()
            r = s.post(f"{b}/v1/tasks/{tid}/complete", json={"lease_id": c["lease_id"],
                                                              "result": {"ok": True}},
                       timeout=TIMEOUT)
            t1 = time.monotonic_ns()
            assert r.status_code == 200, r.text
            f.write(f"{tid} {t0} {t1}\n")
            time.sleep(0.002)


def task(port, queue):
    s = requests.Session()
    s.trust_env = False
    b = base(port)
    r = s.post(f"{b}/v1/queues/{queue}/tasks", json={"payload": 1}, timeout=TIMEOUT)
    tid = r.json()["task_id"]
    c = s.post(f"{b}/v1/queues/{queue}/claim", json={"max": 1, "wait": 10, "lease": "10m"},
               timeout=TIMEOUT).json()["tasks"][0]
    assert c["id"] == tid
    print(tid, c["lease_id"])


def read_receiver(path):
    meta, recs = {}, []
    with open(path) as f:
        for line in f:
            if line.startswith("# "):
                k, v = line[2:].split()
                meta[k] = int(v)
            else:
                t, ns = line.split()
                recs.append((t, int(ns)))
    return meta, recs


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def throughput(path):
    meta, recs = read_receiver(path)
    rel = meta["release_ns"]
    after = [ns for _, ns in recs if ns > rel]
    span = (max(after) - rel) / 1e9 if after else 0
    n = len(after)
    print(f"received {meta['count']}\nheld_at_release {meta['held']}\n"
          f"after_release {n}\ndrain_s {span:.3f}\n"
          f"deliveries_per_s {n / span if span else 0:.0f}")
    # the steadiest second: the most arrivals in any 1 s window
    best, j = 0, 0
    after.sort()
    for i in range(len(after)):
        while after[i] - after[j] > 1e9:
            j += 1
        best = max(best, i - j + 1)
    print(f"best_1s_window {best}")


def latstats(recv, lat):
    _, recs = read_receiver(recv)
    arrived = {t: ns for t, ns in recs}
    d0, d1 = [], []
    missing = 0
    with open(lat) as f:
        for line in f:
            tid, t0, t1 = line.split()
            if tid not in arrived:
                missing += 1
                continue
            d0.append((arrived[tid] - int(t0)) / 1e6)
            d1.append((arrived[tid] - int(t1)) / 1e6)
    print(f"n {len(d0)}\nmissing {missing}")
    print(f"from_complete_sent_p50_ms {statistics.median(d0):.2f}\n"
          f"from_complete_sent_p99_ms {pct(d0, 99):.2f}\n"
          f"from_complete_sent_max_ms {max(d0):.2f}")
    print(f"from_complete_answered_p50_ms {statistics.median(d1):.2f}\n"
          f"from_complete_answered_p99_ms {pct(d1, 99):.2f}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "backlog":
        backlog(int(args[0]), args[1], int(args[2]), args[3])
    elif cmd == "latency":
        latency(int(args[0]), args[1], int(args[2]), args[3], args[4])
    elif cmd == "task":
        task(int(args[0]), args[1])
    elif cmd == "throughput":
        throughput(args[0])
    elif cmd == "latstats":
        latstats(args[0], args[1])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
