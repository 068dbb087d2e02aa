#!/usr/bin/env bash
# bench/queue/run.sh - ackd's durable queue beside its peers (issue 3, section 7).
#
#   bench/queue/run.sh                  ackd, then every peer; prints the table
#   QUICK=1 bench/queue/run.sh          smoke run: small counts, 1 repetition
#   PEERS="beanstalkd postgres" ...     choose the peers ("" for ackd alone)
#   ACKD_BIN=path/to/ackd ...           measure that build instead of build/release/ackd
#
# ackd (build/release/ackd, access_log = off, log_level = warn, sync = full,
# a fresh data directory for every measurement, one pull queue "bench"):
#  (a) durable submits/s: wrk -t2 -c64 and -c256, DUR (10) s, POST of the
#      peers' 200-byte payload wrapped as {"payload": ...} to
#      /v1/queues/bench/tasks; every 202 is sent after its commit.
#  (b) claim+complete/s: FILL (50 000) tasks pre-filled with tasks:batch
#      (1000 a request; its rate is the batched-enqueue figure), then drained
#      by worker loops (bench/queue/qbench.c): WORKERS (4) workers, each
#      claiming MAX (50) tasks at a time and completing each with its own
#      request over a pool of CONNS (25) keep-alive connections: 100
#      completions in flight, between the peers' consumers (BullMQ worker
#      concurrency 50, RabbitMQ 2 consumers x prefetch 100). The same with
#      SMALL_CONNS (8) per worker (32 in flight, the figure sessions 1-2
#      reported). A last drain runs SEQ_WORKERS (8) plain loops (one
#      connection each: claim 50, complete them one after another).
#  (c) idle end-to-end latency: a worker parked in claim (wait 30 s), the
#      producer submits one task; the time from the start of the submit to
#      the claim's answer, LAT_N (1000) sequential tasks 2 ms apart, p50/p99.
# Then the peers of ../shared/bench/peers (PEERS, default all five), each by
# its own run_*.sh, in the same session with the same N/REPS/LAT_N; they
# install what they need with apt and npm. Every ackd measurement, like the
# peers', first waits (up to QUIET_MAX s) for a mostly idle CPU, since the
# machine is shared; idle_before= is recorded with each figure.
#
# Raw lines: $RESULTS/ackd.txt and the peers' files (RESULTS defaults to
# $WORK/results, WORK to /tmp/peerbench; QUICK=1 uses $WORK/quick). The
# table (bench/queue/table.py) is printed and written to $RESULTS/table.md.
#
# Everything targets 127.0.0.1; every run is bounded by count and time
# (timeout, qbench's own limits); the servers this script starts are
# stopped by their recorded PIDs (TERM, then KILL), never by name.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PEERS_DIR=${PEERS_DIR:-$(cd "$ROOT/../shared/bench/peers" 2>/dev/null && pwd || echo /work/shared/bench/peers)}
[ -f "$PEERS_DIR/common.sh" ] || { echo "bench: no peers kit at $PEERS_DIR (set PEERS_DIR)" >&2; exit 2; }

export WORK=${WORK:-/tmp/peerbench}
if [ "${QUICK:-0}" = 1 ]; then
  export N=${N:-5000} REPS=${REPS:-1} LAT_N=${LAT_N:-100} QUIET_MAX=${QUIET_MAX:-2}
  export RESULTS=${RESULTS:-$WORK/quick} RMQ_SECS=${RMQ_SECS:-5} DUR=${DUR:-3} FSYNC_SECS=${FSYNC_SECS:-2}
  FILL=${FILL:-5000}
else
  export N=${N:-100000} REPS=${REPS:-3} LAT_N=${LAT_N:-1000}
  export RESULTS=${RESULTS:-$WORK/results} DUR=${DUR:-10}
  FILL=${FILL:-50000}
fi
PEERS=${PEERS-"fsync beanstalkd bullmq postgres rabbitmq"}
WORKERS=${WORKERS:-4} CONNS=${CONNS:-25} SMALL_CONNS=${SMALL_CONNS:-8} MAX=${MAX:-50}
SEQ_WORKERS=${SEQ_WORKERS:-8}
for v in N REPS LAT_N DUR FILL WORKERS CONNS SMALL_CONNS MAX SEQ_WORKERS; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || { echo "bench: $v must be a positive integer" >&2; exit 2; }
done
for p in $PEERS; do
  [ -x "$PEERS_DIR/run_$p.sh" ] || { echo "bench: unknown peer \"$p\" (no $PEERS_DIR/run_$p.sh)" >&2; exit 2; }
done

# log, wait_quiet, measure, record, start_bg, stop_pid, summarize, and the
# EXIT trap that stops every PID start_bg recorded
source "$PEERS_DIR/common.sh"
apt_need wrk gcc libc6-dev libjansson-dev curl

if [ -n "${ACKD_BIN:-}" ]; then # another build of ackd, to compare two in one session
  ACKD=$(cd "$(dirname "$ACKD_BIN")" && pwd)/$(basename "$ACKD_BIN")
  [ -x "$ACKD" ] || { log "ACKD_BIN=$ACKD_BIN is not an executable"; exit 2; }
else
  make -j2 build/release/ackd >/dev/null || { log "building build/release/ackd failed"; exit 1; }
  ACKD="$ROOT/build/release/ackd"
fi
QB="$WORK/ackd_qbench"
gcc -O2 -Wall -o "$QB" bench/queue/qbench.c -ljansson -lpthread || exit 1
PAYLOAD="$PEERS_DIR/pg/payload.json"
LUA="$WORK/ackd_post.lua"
{ echo 'wrk.method = "POST"'
  echo 'wrk.headers["Content-Type"] = "application/json"'
  printf 'wrk.body = [[{"payload":%s}]]\n' "$(cat "$PAYLOAD")"; } >"$LUA"
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
OUT="$RESULTS/ackd.txt"; : >"$OUT"

start_ackd(){ # a fresh data dir and server; sets ACKD_PID
  local dir="$WORK/ackd-data"
  rm -rf "$dir"; mkdir -p "$dir"
  cat >"$dir/ackd.conf" <<CONF
[server]
listen = 127.0.0.1:$PORT
access_log = off
log_level = warn
# like the peers' nginx keepalive_requests: clients never need to reconnect
max_requests_per_connection = 1000000
[storage]
path = $dir/ackd.db
sync = full
[queue bench]
CONF
  start_bg "$dir/ackd.log" "$ACKD" serve --config "$dir/ackd.conf"; ACKD_PID=$LAST_PID
  wait_port "$PORT" 10 || { tail -5 "$dir/ackd.log" >&2; exit 1; }
}
stop_ackd(){ stop_pid "$ACKD_PID"; }

queued(){ # tasks of queue bench per state, from GET /v1/queues
  curl -s --max-time 5 "http://127.0.0.1:$PORT/v1/queues" | /usr/bin/python3 -c '
import json,sys
q=[x for x in json.load(sys.stdin)["queues"] if x["name"]=="bench"][0]["counts"]
print(" ".join(f"{k}={v}" for k,v in q.items()))'
}

submit(){ # submit CONNS : wrk, then the wrk figures plus what the store holds
  local raw="$WORK/ackd_wrk.out"
  timeout $((DUR + 30)) wrk -t2 -c"$1" -d"${DUR}s" --latency -s "$LUA" \
      "http://127.0.0.1:$PORT/v1/queues/bench/tasks" >"$raw" 2>&1
  local reqs; reqs=$(grep -oP '^\s*\K\d+(?= requests in)' "$raw")
  echo "$(/usr/bin/python3 "$PEERS_DIR/http/wrkparse.py" <"$raw") requests=${reqs:-0} stored_$(queued | grep -o 'queued=[0-9]*')"
}

log "ackd: port $PORT, N=$N REPS=$REPS LAT_N=$LAT_N DUR=${DUR}s FILL=$FILL, $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
for rep in $(seq "$REPS"); do
  for C in 64 256; do
    start_ackd
    measure "$OUT" "ackd submit POST->202 c$C" submit "$C"
    stop_ackd
  done
  start_ackd
  measure "$OUT" "ackd tasks:batch fill" timeout 300 "$QB" fill "$PORT" bench "$FILL" 1000 "$PAYLOAD"
  measure "$OUT" "ackd claim+complete (worker pools)" \
      timeout 300 "$QB" work "$PORT" bench "$WORKERS" "$CONNS" "$MAX" 240
  timeout 300 "$QB" fill "$PORT" bench "$FILL" 1000 "$PAYLOAD" >/dev/null
  measure "$OUT" "ackd claim+complete (worker pools, $((WORKERS * SMALL_CONNS)) in flight)" \
      timeout 300 "$QB" work "$PORT" bench "$WORKERS" "$SMALL_CONNS" "$MAX" 240
  timeout 300 "$QB" fill "$PORT" bench "$FILL" 1000 "$PAYLOAD" >/dev/null
  measure "$OUT" "ackd claim+complete (sequential loops)" \
      timeout 300 "$QB" work "$PORT" bench "$SEQ_WORKERS" 1 "$MAX" 240
  log "ackd after the drains: $(queued)"
  stop_ackd
  start_ackd
  measure "$OUT" "ackd e2e latency" timeout 300 "$QB" latency "$PORT" bench "$LAT_N" 2000 "$PAYLOAD"
  stop_ackd
done
summarize "$OUT"

for p in $PEERS; do
  log "peer: $p (log in $RESULTS/run_$p.log)"
  timeout 5400 "$PEERS_DIR/run_$p.sh" >"$RESULTS/run_$p.log" 2>&1 || log "peer $p failed (exit $?); see $RESULTS/run_$p.log"
  tail -n 20 "$RESULTS/run_$p.log" | grep -v '^\[' || true
done

log "machine: $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 "$ROOT/bench/queue/table.py" "$RESULTS" | tee "$RESULTS/table.md"
