#!/usr/bin/env bash
# bench/http/run.sh - the HTTP core against nginx, and ackd's memory per idle
# keep-alive connection (issue 2, section 5).
#
#   bench/http/run.sh                      print the figures
#   BENCH_RESULTS=FILE bench/http/run.sh   also write them as markdown to FILE
#
# 1. Throughput: GET /healthz on build/release/ackd against nginx answering
#    `return 200 '{"status":"ok"}'` with one worker, both on 127.0.0.1, each
#    on a free port, measured with `wrk -t1 -c64 -d10s --latency` in turns
#    (ackd, nginx, ackd, ...), BENCH_REPS (3) times each after a short warm-up.
#    Prints requests/s and p99 of every run, the medians and ackd/nginx.
# 2. Memory: a fresh ackd, BENCH_IDLE_CONNS (10000) connections that each made
#    one request and then sit idle (bench/http/idle_conns.c), VmRSS of ackd
#    before and after, KiB per connection.
#
# With two CPUs or more, the servers run pinned to CPU 0 and wrk to CPU 1
# (taskset), so the two do not trade places under the scheduler; BENCH_PIN=0
# turns that off.
#
# Everything targets 127.0.0.1, every wait and run is bounded in time, and
# the script stops what it started by the PIDs it recorded (TERM, then KILL).
# Installs wrk and nginx-light with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${BENCH_DURATION:-10}        # seconds per wrk run
REPS=${BENCH_REPS:-3}
CONNS=${BENCH_CONNS:-64}
IDLE=${BENCH_IDLE_CONNS:-10000}
for v in DURATION REPS CONNS IDLE; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || { echo "bench: $v must be a positive integer" >&2; exit 2; }
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
if [[ "${BENCH_PIN:-1}" != 0 && $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
  SERVER_CPU=(taskset -c 0) CLIENT_CPU=(taskset -c 1)
fi

make -j2 build/release/ackd >/dev/null || { echo "bench: building build/release/ackd failed" >&2; exit 1; }
ACKD=build/release/ackd

# the idle test needs IDLE descriptors in ackd, which inherits this limit
hard=$(ulimit -Hn)
if [[ "$hard" != unlimited && "$hard" -lt $((IDLE + 64)) ]]; then
  echo "bench: the hard RLIMIT_NOFILE ($hard) is below $((IDLE + 64)); lower BENCH_IDLE_CONNS" >&2
  exit 1
fi
ulimit -n $((IDLE + 1024 < ${hard/unlimited/1048576} ? IDLE + 1024 : ${hard/unlimited/1048576}))

# --- processes this script started, stopped by PID only ---

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ackd-bench.XXXXXX")
PIDS=()

stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
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

# wait_http PORT PID: until GET /healthz answers 200 (10 s at most)
wait_http() {
  for _ in $(seq 100); do
    kill -0 "$2" 2>/dev/null || { echo "bench: the server on port $1 exited" >&2; return 1; }
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$1/healthz" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: nothing answers on 127.0.0.1:$1" >&2
  return 1
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# start_ackd NAME PORT KEEPALIVE: starts ackd with its own config and data dir
start_ackd() {
  local name=$1 port=$2 keepalive=$3
  mkdir -p "$TMP/$name"
  cat >"$TMP/$name/ackd.conf" <<EOF
[server]
listen = 127.0.0.1:$port
access_log = off
log_level = warn
max_connections = 20000
keepalive_timeout = $keepalive
head_timeout = 60s

[storage]
path = $TMP/$name/data/ackd.db
EOF
  "${SERVER_CPU[@]}" "$ACKD" serve --config "$TMP/$name/ackd.conf" 2>"$TMP/$name/stderr.log" &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  wait_http "$port" "$LAST_PID" || { cat "$TMP/$name/stderr.log" >&2; exit 1; }
}

start_nginx() {
  local port=$1
  mkdir -p "$TMP/nginx/tmp"
  cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/json;
    client_body_temp_path $TMP/nginx/tmp/body;
    proxy_temp_path $TMP/nginx/tmp/proxy;
    fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
    scgi_temp_path $TMP/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        location / { return 200 '{"status":"ok"}'; }
    }
}
EOF
  "${SERVER_CPU[@]}" "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  wait_http "$port" "$LAST_PID" || { cat "$TMP/nginx/error.log" >&2; exit 1; }
}

# --- throughput ---

# to_ms VALUE: wrk's "812.00us" / "1.23ms" / "1.01s" in milliseconds
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
    printf "%.3f", n }'
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# run_wrk NAME PORT SECONDS: sets RPS and P99 (ms)
run_wrk() {
  local out="$TMP/wrk-$1-$RANDOM.txt"
  timeout $(($3 + 30)) "${CLIENT_CPU[@]}" wrk -t1 -c"$CONNS" -d"$3s" --latency "http://127.0.0.1:$2/healthz" >"$out"
  RPS=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  P99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
  local errs
  errs=$(grep -E 'Non-2xx|Socket errors' "$out" || true)
  [[ -z "$errs" ]] || echo "   ($1: $errs)"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== load average before: $LOAD_BEFORE (other work on the machine skews every figure)"
ACKD_PORT=$(free_port)
start_ackd tput "$ACKD_PORT" 30s
ACKD_PID=$LAST_PID
NGINX_PORT=$(free_port)
start_nginx "$NGINX_PORT"

echo "== throughput: wrk -t1 -c$CONNS -d${DURATION}s --latency http://127.0.0.1:PORT/healthz, $REPS runs each"
echo "   ackd on 127.0.0.1:$ACKD_PORT (pid $ACKD_PID), nginx on 127.0.0.1:$NGINX_PORT (one worker)${SERVER_CPU[*]:+, servers on CPU 0, wrk on CPU 1}"
run_wrk ackd "$ACKD_PORT" 2   # warm-ups, not counted
run_wrk nginx "$NGINX_PORT" 2
ackd_rps=() ackd_p99=() nginx_rps=() nginx_p99=()
for i in $(seq "$REPS"); do
  run_wrk ackd "$ACKD_PORT" "$DURATION"
  ackd_rps+=("$RPS") ackd_p99+=("$P99")
  printf '   run %d  ackd   %10.0f req/s  p99 %7.3f ms\n' "$i" "$RPS" "$P99"
  run_wrk nginx "$NGINX_PORT" "$DURATION"
  nginx_rps+=("$RPS") nginx_p99+=("$P99")
  printf '   run %d  nginx  %10.0f req/s  p99 %7.3f ms\n' "$i" "$RPS" "$P99"
done
A_RPS=$(median "${ackd_rps[@]}") A_P99=$(median "${ackd_p99[@]}")
N_RPS=$(median "${nginx_rps[@]}") N_P99=$(median "${nginx_p99[@]}")
RATIO=$(awk -v a="$A_RPS" -v n="$N_RPS" 'BEGIN {printf "%.2f", a / n}')
printf '   median ackd   %10.0f req/s  p99 %7.3f ms\n' "$A_RPS" "$A_P99"
printf '   median nginx  %10.0f req/s  p99 %7.3f ms\n' "$N_RPS" "$N_P99"
echo "   ackd/nginx    ${RATIO}x requests/s (target >= 0.9x)"
stop_pid "$ACKD_PID"
stop_pid "$LAST_PID"

# --- memory per idle connection ---

cc -std=gnu11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -o "$TMP/idle_conns" bench/http/idle_conns.c
IDLE_PORT=$(free_port)
start_ackd idle "$IDLE_PORT" 5m
IDLE_ACKD=$LAST_PID
sleep 0.5
RSS_BEFORE=$(rss_kib "$IDLE_ACKD")
echo "== idle connections: $IDLE keep-alive connections to ackd, each after one request"
"$TMP/idle_conns" 127.0.0.1 "$IDLE_PORT" "$IDLE" 120 >"$TMP/idle.out" 2>"$TMP/idle.err" &
HOLDER=$!
PIDS+=("$HOLDER")
for _ in $(seq 1200); do   # 120 s at most
  grep -q '^ready' "$TMP/idle.out" 2>/dev/null && break
  kill -0 "$HOLDER" 2>/dev/null || break
  sleep 0.1
done
HELD=$(awk '/^ready/ {print $2}' "$TMP/idle.out")
if [[ -z "$HELD" || "$HELD" -ne "$IDLE" ]]; then
  echo "bench: only ${HELD:-0} of $IDLE connections were made:" >&2
  cat "$TMP/idle.err" >&2
  exit 1
fi
sleep 1   # let ackd settle: every connection is in its keep-alive phase
RSS_AFTER=$(rss_kib "$IDLE_ACKD")
OPEN=$(ls "/proc/$IDLE_ACKD/fd" | wc -l)
PER_CONN=$(awk -v a="$RSS_AFTER" -v b="$RSS_BEFORE" -v n="$IDLE" 'BEGIN {printf "%.2f", (a - b) / n}')
echo "   ackd VmRSS before ${RSS_BEFORE} KiB, with $IDLE idle connections ${RSS_AFTER} KiB ($OPEN fds open)"
echo "   ${PER_CONN} KiB per idle connection (target <= 4 KiB)"
stop_pid "$HOLDER"
stop_pid "$IDLE_ACKD"

# --- the record ---

if [[ -n "${BENCH_RESULTS:-}" ]]; then
  {
    echo "# HTTP core benchmark"
    echo
    echo "Command: \`bench/http/run.sh\` (BENCH_DURATION=$DURATION BENCH_REPS=$REPS BENCH_CONNS=$CONNS BENCH_IDLE_CONNS=$IDLE)"
    echo
    echo "Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -sr),"
    echo "$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM; $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}')"
    echo
    echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'), ackd $(git rev-parse --short HEAD 2>/dev/null || echo '?'); load average before the run: $LOAD_BEFORE"
    echo
    echo "## GET /healthz, wrk -t1 -c$CONNS -d${DURATION}s --latency, loopback"
    echo
    if [[ ${#SERVER_CPU[@]} -gt 0 ]]; then
      echo "ackd and nginx (one worker) pinned to CPU 0, wrk to CPU 1; runs in turns, ackd first."
    else
      echo "Not pinned to CPUs; runs in turns, ackd first."
    fi
    echo
    echo "| run | ackd req/s | ackd p99 | nginx req/s | nginx p99 |"
    echo "|---|---:|---:|---:|---:|"
    for i in $(seq "$REPS"); do
      printf '| %d | %.0f | %.3f ms | %.0f | %.3f ms |\n' "$i" "${ackd_rps[$((i - 1))]}" \
        "${ackd_p99[$((i - 1))]}" "${nginx_rps[$((i - 1))]}" "${nginx_p99[$((i - 1))]}"
    done
    printf '| **median** | **%.0f** | **%.3f ms** | **%.0f** | **%.3f ms** |\n' "$A_RPS" "$A_P99" "$N_RPS" "$N_P99"
    echo
    echo "ackd/nginx: **${RATIO}x** requests/s (target >= 0.9x)."
    echo
    echo "## Idle keep-alive connections"
    echo
    echo "$IDLE connections, each after one answered request, held idle by bench/http/idle_conns.c."
    echo "ackd VmRSS: ${RSS_BEFORE} KiB before, ${RSS_AFTER} KiB with the connections open:"
    echo "**${PER_CONN} KiB per idle connection** (target <= 4 KiB; kernel socket buffers are not in RSS)."
  } >"$BENCH_RESULTS"
  echo "== written to $BENCH_RESULTS"
fi
