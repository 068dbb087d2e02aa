#!/usr/bin/env bash
# bench/webhook/run.sh - result delivery: webhooks, long polls and SSE
# subscribers (issue 5, section 5).
#
#   bench/webhook/run.sh                      print the figures
#   BENCH_RESULTS=FILE bench/webhook/run.sh   also append them, as markdown, to FILE
#   QUICK=1 bench/webhook/run.sh              smoke run (small counts)
#
# 1. Deliveries/s: a fast C receiver (bench/webhook/receiver.c: epoll,
#    keep-alive, "200 OK" and an empty body) first HOLDS every request, so a
#    backlog of WH_N (20000) webhooks builds up in ackd: WH_N tasks with a
#    callback, enqueued by tasks:batch, claimed with a 1 s lease and never
#    completed, fail at once (max_attempts = 1) and each commits a delivery.
#    Once they have all failed, the receiver answers everything (SIGUSR1):
#    deliveries/s = requests that arrived after the release / the time from
#    the release to the last one. Signed with one secret; loopback allowed by
#    [webhooks] allow_private = 127.0.0.0/8.
# 2. Latency: LAT_N (1000) tasks one after another (submit, claim, complete,
#    2 ms apart) with the receiver answering at once; the time from just
#    before the complete request to the webhook's arrival at the receiver
#    (one CLOCK_MONOTONIC for both processes), p50/p99.
# 3. Fan-out: a fresh ackd (max_connections = 20000, max_wait = 60s); one
#    claimed task watched by FAN_N (10000) parked long polls
#    (GET /v1/tasks/{id}?wait=60), then another by FAN_N SSE subscribers
#    (GET /v1/tasks/{id}/events) (bench/webhook/fanout.c). ackd's VmRSS idle
#    and while they wait; then one complete, and the time until every watcher
#    has its answer (the last one; p50/p99).
#
# Everything is on 127.0.0.1 and bounded in time (timeout on every client,
# MAX_SECONDS in the C tools); the processes this script starts are stopped
# by the PIDs it recorded (TERM, then KILL), never by name. RLIMIT_NOFILE is
# raised to the hard limit (fan-out needs FAN_N + 64 descriptors in ackd and
# in the client). Needs gcc, curl and python3-requests (scripts/install-deps).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

if [[ "${QUICK:-0}" == 1 ]]; then
  WH_N=${WH_N:-2000} LAT_N=${LAT_N:-100} FAN_N=${FAN_N:-1000}
else
  WH_N=${WH_N:-20000} LAT_N=${LAT_N:-1000} FAN_N=${FAN_N:-10000}
fi
for v in WH_N LAT_N FAN_N; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || { echo "bench: $v must be a positive integer" >&2; exit 2; }
done
PY=/usr/bin/python3

hard=$(ulimit -Hn)
[[ "$hard" == unlimited ]] && hard=1048576
if (( hard < FAN_N + 64 )); then
  echo "bench: the hard RLIMIT_NOFILE ($hard) is below FAN_N + 64 ($((FAN_N + 64))); lower FAN_N" >&2
  exit 1
fi
ulimit -n "$hard"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ackd-whbench.XXXXXX")
PIDS=()
stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
wait_http() { # PORT PID
  for _ in $(seq 100); do
    kill -0 "$2" 2>/dev/null || { echo "bench: the server on port $1 exited" >&2; return 1; }
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$1/healthz" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: nothing answers on 127.0.0.1:$1" >&2; return 1
}

make -j2 build/release/ackd >/dev/null || { echo "bench: building build/release/ackd failed" >&2; exit 1; }
ACKD=$ROOT/build/release/ackd
gcc -O2 -Wall -o "$TMP/receiver" bench/webhook/receiver.c
gcc -O2 -Wall -o "$TMP/fanout" bench/webhook/fanout.c

SECRET="whsec_$(head -c 32 /dev/urandom | base64)"
start_ackd() { # NAME PORT: a fresh data dir; sets ACKD_PID
  local name=$1 port=$2
  mkdir -p "$TMP/$name"
  cat >"$TMP/$name/ackd.conf" <<EOF
[server]
listen = 127.0.0.1:$port
access_log = off
log_level = warn
max_connections = 20000
max_wait = 60s
keepalive_timeout = 120s
shutdown_grace = 1s

[storage]
path = $TMP/$name/data/ackd.db

[webhooks]
secrets = $SECRET
allow_private = 127.0.0.0/8
timeout = 5m

[queue bl]
max_attempts = 1

[queue lat]

[queue fan]
attempt_timeout = 10m
EOF
  "$ACKD" serve --config "$TMP/$name/ackd.conf" 2>"$TMP/$name/stderr.log" &
  ACKD_PID=$!
  PIDS+=("$ACKD_PID")
  wait_http "$port" "$ACKD_PID" || { cat "$TMP/$name/stderr.log" >&2; exit 1; }
}
start_receiver() { # PORT COUNT OUT MAX_S [hold]; sets RECV_PID
  "$TMP/receiver" "$@" >"$TMP/receiver.stdout" &
  RECV_PID=$!
  PIDS+=("$RECV_PID")
  for _ in $(seq 50); do grep -q ready "$TMP/receiver.stdout" 2>/dev/null && return 0; sleep 0.1; done
  echo "bench: the receiver did not start" >&2; exit 1
}
wait_pid() { # PID SECONDS: waits for the process to exit by itself
  for _ in $(seq $(( $2 * 10 ))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}
val() { awk -v k="$1" '$1 == k {print $2}' "$2"; }

echo "== machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $(git rev-parse --short HEAD)"

# --- 1. deliveries/s ---
PORT=$(free_port)
start_ackd main "$PORT"
RPORT=$(free_port)
start_receiver "$RPORT" "$WH_N" "$TMP/recv-burst.txt" 600 hold
echo "== 1. backlog of $WH_N webhooks (receiver holding)"
timeout 600 $PY bench/webhook/drive.py backlog "$PORT" bl "$WH_N" "http://127.0.0.1:$RPORT/hook" | tee "$TMP/backlog.txt"
sleep 1
HELD=$(tail -n 1 "$TMP/receiver.stdout" | awk '{print $2}')
RSS_BACKLOG=$(rss_kib "$ACKD_PID")
kill -USR1 "$RECV_PID"
wait_pid "$RECV_PID" 600 || { echo "bench: the receiver never got all $WH_N webhooks" >&2; exit 1; }
wait "$RECV_PID" || true
$PY bench/webhook/drive.py throughput "$TMP/recv-burst.txt" | tee "$TMP/throughput.txt"
echo "ackd_rss_kib_with_backlog $RSS_BACKLOG (the receiver held ${HELD:-?} tries)"

# --- 2. latency ---
echo "== 2. completion -> webhook latency, $LAT_N tasks"
start_receiver "$RPORT" "$LAT_N" "$TMP/recv-lat.txt" 600
timeout 600 $PY bench/webhook/drive.py latency "$PORT" lat "$LAT_N" "http://127.0.0.1:$RPORT/hook" "$TMP/lat.txt"
wait_pid "$RECV_PID" 60 || { echo "bench: the receiver never got all $LAT_N webhooks" >&2; exit 1; }
wait "$RECV_PID" || true
$PY bench/webhook/drive.py latstats "$TMP/recv-lat.txt" "$TMP/lat.txt" | tee "$TMP/latency.txt"
stop_pid "$ACKD_PID"

# --- 3. fan-out (a fresh ackd for each kind of watcher) ---
echo "== 3. fan-out: $FAN_N watchers of one task"
for mode in poll sse; do
  PORT=$(free_port)
  start_ackd "fan-$mode" "$PORT"
  read -r TASK LEASE < <(timeout 60 $PY bench/webhook/drive.py task "$PORT" fan)
  sleep 0.5
  RSS_IDLE=$(rss_kib "$ACKD_PID")
  echo "-- $mode (ackd idle RSS $RSS_IDLE KiB)"
  echo "rss_kb_idle $RSS_IDLE" >"$TMP/fan-$mode.txt"
  timeout 300 "$TMP/fanout" "$PORT" "$TASK" "$LEASE" "$mode" "$FAN_N" "$ACKD_PID" 240 | tee -a "$TMP/fan-$mode.txt" || true
  sleep 1
  echo "rss_kb_after $(rss_kib "$ACKD_PID")"
  stop_pid "$ACKD_PID"
done

# --- summary ---
T="$TMP/throughput.txt" L="$TMP/latency.txt" P="$TMP/fan-poll.txt" S="$TMP/fan-sse.txt"
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
SUMMARY=$(cat <<EOF
| figure | value |
| --- | --- |
| webhook deliveries/s (backlog of $WH_N drained, C receiver) | $(val deliveries_per_s "$T") (drain $(val drain_s "$T") s; best 1 s window $(val best_1s_window "$T")) |
| completion -> webhook arrival, p50 / p99 ($LAT_N tasks) | $(val from_complete_sent_p50_ms "$L") ms / $(val from_complete_sent_p99_ms "$L") ms |
| $FAN_N parked long polls: one completion answers all in | $(val all_ms "$P") ms (p50 $(val p50_ms "$P") ms; answered $(val answered "$P"), errors $(val errors "$P")) |
| $FAN_N SSE subscribers: one completion reaches all in | $(val all_ms "$S") ms (p50 $(val p50_ms "$S") ms; answered $(val answered "$S"), errors $(val errors "$S")) |
| ackd RSS while $FAN_N long polls wait (idle before) | $(mb "$(val rss_kb_parked "$P")") MB ($(mb "$(val rss_kb_idle "$P")") MB) |
| ackd RSS while $FAN_N SSE subscribers wait (idle before) | $(mb "$(val rss_kb_parked "$S")") MB ($(mb "$(val rss_kb_idle "$S")") MB) |
EOF
)
echo
echo "$SUMMARY"
if [[ -n "${BENCH_RESULTS:-}" ]]; then
  { echo; echo "Run of $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg):"; echo; echo "$SUMMARY"; } >>"$BENCH_RESULTS"
fi
