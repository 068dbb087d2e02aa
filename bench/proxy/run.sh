#!/usr/bin/env bash
# bench/proxy/run.sh - the proxy face's cost (issue 4, section 6).
#
#   bench/proxy/run.sh                      print the figures
#   BENCH_RESULTS=FILE bench/proxy/run.sh   also write them as markdown to FILE
#
# 1. Sync-face overhead. One nginx (one worker) answers `return 200
#    '{"ok":true}'` on an upstream port: that is the fast backend. The same
#    POST (a 40-byte JSON body) is then timed, in the same run, against
#      direct   the upstream itself
#      nginx    a second nginx server block that proxy_passes to it (HTTP/1.1,
#               keep-alive pool to the upstream)
#      ackd     build/release/ackd, a `mode = sync` route pushing to it,
#               storage sync = full (every commit fsync'd: the default)
#      ackd-nf  the same with storage sync = normal (WAL without fsync)
#    with `wrk -t1 -c1` (one request at a time: pure latency) and `wrk -t1
#    -c16`, BENCH_DURATION (5) seconds each after a short warm-up; p50/p99
#    and requests/s of every target; the overhead is ackd's p50 minus
#    direct's.
# 2. Async end to end. An `mode = async` route whose upstream (the same
#    nginx) answers at once; wrk -c N submits for BENCH_DURATION seconds,
#    for each N of BENCH_ASYNC_CONNS ("64 128 256": the submit path is a
#    closed loop, so its rate depends on how many clients keep a request in
#    flight; every N is reported, and the best); the submit rate is wrk's;
#    completed tasks/s is counted from GET /v1/queues (completed count over
#    time, polled every 100 ms until the queue is drained or 60 s pass), for
#    sync = full and sync = normal.
# 3. Dispatch alone (bench/proxy/drain.py): BENCH_BACKLOG (20000) queue
#    tasks submitted in batches of 1000, all with the same run_at, timed from
#    that instant until every one is completed: the push pipeline's own rate
#    (claim, call, complete) without submissions competing for the store.
#
# Everything targets 127.0.0.1, every wait and run is bounded in time, and
# the script stops what it started by the PIDs it recorded (TERM, then KILL).
# With BENCH_PIN=1 and two CPUs or more, the servers run on CPU 0 and wrk on
# CPU 1 (taskset); by default nothing is pinned (ackd has several threads).
# Installs wrk and nginx-light with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${BENCH_DURATION:-5}         # seconds per wrk run
ASYNC_CONNS=${BENCH_ASYNC_CONNS:-64 128 256}
BACKLOG=${BENCH_BACKLOG:-20000}
for v in DURATION BACKLOG; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || { echo "bench: $v must be a positive integer" >&2; exit 2; }
done
read -r -a CONNS_LIST <<<"$ASYNC_CONNS"
[[ ${#CONNS_LIST[@]} -gt 0 ]] || { echo "bench: BENCH_ASYNC_CONNS names no connection count" >&2; exit 2; }
for c in "${CONNS_LIST[@]}"; do
  [[ "$c" =~ ^[0-9]+$ && "$c" -gt 0 ]] || { echo "bench: BENCH_ASYNC_CONNS must be positive integers" >&2; exit 2; }
done

# --- tools ---

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
if [[ ${#need[@]} -gt 0 ]]; then
  echo "bench: installing ${need[*]}" >&2
  SUDO=
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 $SUDO apt-get update -qq
  timeout 600 $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

SERVER_CPU=() CLIENT_CPU=()
if [[ "${BENCH_PIN:-0}" == 1 && $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
  SERVER_CPU=(taskset -c 0) CLIENT_CPU=(taskset -c 1)
fi

make -j2 build/release/ackd >/dev/null || { echo "bench: building build/release/ackd failed" >&2; exit 1; }
ACKD=build/release/ackd

# --- processes this script started, stopped by PID only ---

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ackd-proxy-bench.XXXXXX")
PIDS=()

stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
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

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http PORT PID PATH: until GET PATH answers 200 (10 s at most)
wait_http() {
  for _ in $(seq 100); do
    kill -0 "$2" 2>/dev/null || { echo "bench: the server on port $1 exited" >&2; return 1; }
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$1$3" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: nothing answers on 127.0.0.1:$1" >&2
  return 1
}

UP_PORT=$(free_port)
NPX_PORT=$(free_port)

start_nginx() {
  mkdir -p "$TMP/nginx/tmp"
  cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/json;
    client_body_temp_path $TMP/nginx/tmp/body;
    proxy_temp_path $TMP/nginx/tmp/proxy;
    fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
    scgi_temp_path $TMP/nginx/tmp/scgi;
    keepalive_requests 1000000;
    upstream backend {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
    }
    # the fast backend
    server {
        listen 127.0.0.1:$UP_PORT;
        location / { return 200 '{"ok":true}'; }
    }
    # nginx as the proxy to compare with
    server {
        listen 127.0.0.1:$NPX_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
  "${SERVER_CPU[@]}" "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  wait_http "$UP_PORT" "$LAST_PID" / || { cat "$TMP/nginx/error.log" >&2; exit 1; }
  wait_http "$NPX_PORT" "$LAST_PID" / || { cat "$TMP/nginx/error.log" >&2; exit 1; }
}

# start_ackd NAME SYNC: ackd with a sync route /sync and an async route
# /async to the nginx upstream, its own data dir; sets ACKD_PORT, LAST_PID
start_ackd() {
  local name=$1 sync=$2
  ACKD_PORT=$(free_port)
  mkdir -p "$TMP/$name/data"
  cat >"$TMP/$name/ackd.conf" <<EOF
[server]
listen = 127.0.0.1:$ACKD_PORT
access_log = off
log_level = warn
max_connections = 20000
max_requests_per_connection = 1000000

[storage]
path = $TMP/$name/data/ackd.db
sync = $sync

[queue fast]
upstream = http://127.0.0.1:$UP_PORT
max_attempts = 3
retry_base = 100ms
attempt_timeout = 10s
retention = 1h

[route POST /sync]
queue = fast
mode = sync
sync_timeout = 30s

[route POST /async]
queue = fast
mode = async
EOF
  "${SERVER_CPU[@]}" "$ACKD" serve --config "$TMP/$name/ackd.conf" 2>"$TMP/$name/stderr.log" &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  wait_http "$ACKD_PORT" "$LAST_PID" /healthz || { cat "$TMP/$name/stderr.log" >&2; exit 1; }
}

cat >"$TMP/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"amount":100,"currency":"USD","n":1}'
wrk.headers["Content-Type"] = "application/json"
EOF

# to_ms VALUE: wrk's "812.00us" / "1.23ms" / "1.01s" in milliseconds
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
    printf "%.3f", n }'
}

# run_wrk URL CONNS SECONDS: sets RPS, P50, P99 (ms), REQS, NON2XX
run_wrk() {
  local out="$TMP/wrk-$RANDOM$RANDOM.txt"
  timeout $(($3 + 30)) "${CLIENT_CPU[@]}" wrk -t1 -c"$2" -d"$3s" --latency -s "$TMP/post.lua" "$1" >"$out"
  RPS=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  P50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
  P99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
  REQS=$(awk '/requests in/ {print $1}' "$out")
  NON2XX=$(awk '/Non-2xx/ {print $NF}' "$out")
  NON2XX=${NON2XX:-0}
  local errs
  errs=$(grep -E 'Non-2xx|Socket errors' "$out" || true)
  [[ -z "$errs" ]] || echo "   ($1: $errs)"
}

declare -A R_P50 R_P99 R_RPS
ROWS=()

# measure NAME URL: -c1 and -c16 runs after a warm-up
measure() {
  local name=$1 url=$2 c
  run_wrk "$url" 1 1   # warm-up
  for c in 1 16; do
    run_wrk "$url" "$c" "$DURATION"
    R_P50[$name,$c]=$P50 R_P99[$name,$c]=$P99 R_RPS[$name,$c]=$RPS
    printf '   %-8s -c%-3s p50 %8.3f ms  p99 %8.3f ms  %9.0f req/s\n' "$name" "$c" "$P50" "$P99" "$RPS"
  done
  ROWS+=("$name")
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== load average before: $LOAD_BEFORE (other work on the machine skews every figure)"
echo "== $(nproc) CPUs; $(uname -sr); data dirs under ${TMPDIR:-/tmp} ($(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $2}'))"
start_nginx
NGINX_PID=$LAST_PID
echo "== sync face: POST, wrk -t1 -cN -d${DURATION}s --latency -s post.lua${SERVER_CPU[*]:+ (servers on CPU 0, wrk on CPU 1)}"
echo "   upstream nginx return 200 on 127.0.0.1:$UP_PORT, nginx proxy_pass on 127.0.0.1:$NPX_PORT (pid $NGINX_PID, one worker)"
measure direct "http://127.0.0.1:$UP_PORT/sync"
measure nginx "http://127.0.0.1:$NPX_PORT/sync"
start_ackd full full
A_PID=$LAST_PID
measure ackd "http://127.0.0.1:$ACKD_PORT/sync"
SYNC_NON2XX_FULL=$NON2XX
stop_pid "$A_PID"
start_ackd normal normal
A_PID=$LAST_PID
measure ackd-nf "http://127.0.0.1:$ACKD_PORT/sync"
stop_pid "$A_PID"

over() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%+.3f", a - b}'; }
echo "   p50 overhead over direct at -c1: ackd $(over "${R_P50[ackd,1]}" "${R_P50[direct,1]}") ms," \
     "ackd-nf $(over "${R_P50[ackd-nf,1]}" "${R_P50[direct,1]}") ms," \
     "nginx $(over "${R_P50[nginx,1]}" "${R_P50[direct,1]}") ms (target ackd <= +0.3 ms)"

# --- async end to end ---

# completed COUNT of queue "fast" from GET /v1/queues
completed() {
  curl -fsS --max-time 5 "http://127.0.0.1:$ACKD_PORT/v1/queues" |
    python3 -c 'import json,sys; q={x["name"]: x for x in json.load(sys.stdin)["queues"]}["fast"]; c=q["counts"]; print(c.get("completed", 0), c.get("queued", 0) + c.get("processing", 0), c.get("failed", 0))'
}

declare -A A_SUB A_DONE A_SPAN A_TOTAL
# async_run NAME SYNC CONNS
async_run() {
  local name=$1 sync=$2 conns=$3
  start_ackd "async-$name" "$sync"
  local pid=$LAST_PID
  run_wrk "http://127.0.0.1:$ACKD_PORT/async" "$conns" 1 >/dev/null  # warm-up
  local base
  read -r base _ _ < <(completed)
  # wait for the warm-up's tasks to drain, then count from there
  for _ in $(seq 300); do
    read -r base pending _ < <(completed)
    [[ "$pending" -eq 0 ]] && break
    sleep 0.1
  done
  local t0 t1 n pending failed
  t0=$(date +%s.%N)
  run_wrk "http://127.0.0.1:$ACKD_PORT/async" "$conns" "$DURATION"
  local submitted=$REQS sub_rps=$RPS p99=$P99
  for _ in $(seq 600); do                 # 60 s at most to drain
    read -r n pending failed < <(completed)
    [[ "$pending" -eq 0 ]] && break
    sleep 0.1
  done
  t1=$(date +%s.%N)
  local done_n=$((n - base))
  local span rate
  span=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
  rate=$(awk -v n="$done_n" -v s="$span" 'BEGIN {printf "%.0f", n / s}')
  A_SUB[$name]=$sub_rps A_DONE[$name]=$rate A_SPAN[$name]=$span A_TOTAL[$name]="$done_n/$submitted"
  printf '   %-12s submits %9.0f/s (p99 %.3f ms)  completed %s of %s in %s s: %s tasks/s (pending %s, failed %s)\n' \
    "$name" "$sub_rps" "$p99" "$done_n" "$submitted" "$span" "$rate" "$pending" "$failed"
  stop_pid "$pid"
}

# drain_run NAME SYNC: bench/proxy/drain.py's backlog, all due at once
declare -A D_SUB D_DONE D_SPAN D_RATE
drain_run() {
  local name=$1 sync=$2
  start_ackd "drain-$name" "$sync"
  local pid=$LAST_PID out failed
  out=$(timeout 300 python3 bench/proxy/drain.py "$ACKD_PORT" "$BACKLOG")
  read -r D_SUB[$name] D_DONE[$name] failed D_SPAN[$name] D_RATE[$name] <<<"$out"
  printf '   %-7s %s tasks submitted at %s/s (batches), due at once: %s completed (%s failed) in %s s: %s tasks/s\n' \
    "$name" "$BACKLOG" "${D_SUB[$name]}" "${D_DONE[$name]}" "$failed" "${D_SPAN[$name]}" "${D_RATE[$name]}"
  stop_pid "$pid"
}

echo "== async end to end: POST /async (mode = async) with wrk -t1 -c{${ASYNC_CONNS// /,}} -d${DURATION}s, then until drained"
best() { # best SYNC: "tasks/s at -cN" of the best run
  local sync=$1 c b=0 at=0
  for c in "${CONNS_LIST[@]}"; do
    if [[ "${A_DONE[$sync-c$c]}" -gt "$b" ]]; then b=${A_DONE[$sync-c$c]}; at=$c; fi
  done
  echo "$b tasks/s at -c$at"
}
for c in "${CONNS_LIST[@]}"; do
  async_run "full-c$c" full "$c"
  async_run "normal-c$c" normal "$c"
done
echo "   best completed rate: sync = full $(best full), sync = normal $(best normal) (target >= 20000 with sync = full)"
echo "== dispatch alone: a backlog of $BACKLOG queue tasks all due at one instant, until completed"
drain_run full full
drain_run normal normal
stop_pid "$NGINX_PID"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== load average after: $LOAD_AFTER"

# --- the record ---

if [[ -n "${BENCH_RESULTS:-}" ]]; then
  {
    echo "## Run of $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`BENCH_DURATION=$DURATION BENCH_ASYNC_CONNS=\"$ASYNC_CONNS\" bench/proxy/run.sh\`" \
         "on $(nproc) CPUs, load average $LOAD_BEFORE before, $LOAD_AFTER after."
    echo
    echo "### Sync face: POST through a sync route to nginx \`return 200\`"
    echo
    echo "| target | -c1 p50 ms | -c1 p99 ms | -c1 req/s | -c16 p50 ms | -c16 p99 ms | -c16 req/s |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    for n in "${ROWS[@]}"; do
      echo "| $n | ${R_P50[$n,1]} | ${R_P99[$n,1]} | ${R_RPS[$n,1]} | ${R_P50[$n,16]} | ${R_P99[$n,16]} | ${R_RPS[$n,16]} |"
    done
    echo
    echo "p50 overhead over direct (-c1): ackd $(over "${R_P50[ackd,1]}" "${R_P50[direct,1]}") ms," \
         "ackd with sync = normal $(over "${R_P50[ackd-nf,1]}" "${R_P50[direct,1]}") ms," \
         "nginx proxy_pass $(over "${R_P50[nginx,1]}" "${R_P50[direct,1]}") ms."
    echo
    echo "### Async end to end (wrk -c N for ${DURATION} s, then drained)"
    echo
    echo "| storage sync | wrk -c | submits/s | completed/submitted | seconds to drain all | completed tasks/s |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for n in full normal; do
      for c in "${CONNS_LIST[@]}"; do
        echo "| $n | $c | ${A_SUB[$n-c$c]} | ${A_TOTAL[$n-c$c]} | ${A_SPAN[$n-c$c]} | ${A_DONE[$n-c$c]} |"
      done
    done
    echo
    echo "Best: sync = full $(best full); sync = normal $(best normal)."
    echo
    echo "(wrk counts only the answers it read before it stopped: the up to N requests in"
    echo "flight at its end were submitted too, so completed may exceed wrk's count by that much.)"
    echo
    echo "### Dispatch alone: $BACKLOG queue tasks due at one instant"
    echo
    echo "| storage sync | batch submits tasks/s | completed | seconds from due to drained | completed tasks/s |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    for n in full normal; do
      echo "| $n | ${D_SUB[$n]} | ${D_DONE[$n]} | ${D_SPAN[$n]} | ${D_RATE[$n]} |"
    done
    echo
  } >"$BENCH_RESULTS"
  echo "== written to $BENCH_RESULTS"
fi
