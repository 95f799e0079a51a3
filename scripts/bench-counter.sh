#!/usr/bin/env bash
# Counter benchmark: HTTP `POST /counter/{id}/incr` throughput and p50/p99 latency at 64
# connections, on Redis and on the embedded store, beside `redis-benchmark -t incr -c 64`
# against the same private redis-server, in the same run.
#
#   scripts/bench-counter.sh [seconds-per-run]      (default 10)
#
# Needs: redis-server, redis-benchmark (Debian redis-tools) and wrk (Debian wrk); the script
# installs wrk with apt-get when missing. Results go to stdout and target/bench/counter.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=64
OUT=target/bench/counter.txt
mkdir -p target/bench

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v redis-benchmark >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-tools >/dev/null; }

cargo build --release -q -p counter
BIN=${CARGO_TARGET_DIR:-target}/release/counter

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

PIDS=()
TMP=$(mktemp -d)
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --loglevel warning >/dev/null &
PIDS+=($!)
wait_port "$RPORT"

cat > "$TMP/incr.lua" <<'LUA'
wrk.method = "POST"
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, "/counter/" .. (counter % 100) .. "/incr")
end
LUA

# Raw Redis INCR, 64 clients, no pipelining.
REDIS_RPS=$(redis-benchmark -p "$RPORT" -t incr -c $CONNS -n 400000 -q 2>/dev/null | tr '\r' '\n' | grep -Eo 'INCR: [0-9.]+' | tail -1 | awk '{print $2}')
REDIS_LAT=$(redis-benchmark -p "$RPORT" -t incr -c $CONNS -n 200000 2>/dev/null | tr '\r' '\n' | grep -A2 'latency summary' | tail -1 | awk '{print "p50="$3"ms p99="$5"ms"}' || true)

run_counter() { # name, env...
  local name=$1; shift
  local port; port=$(free_port)
  env "$@" PORT="$port" RUST_LOG=warn "$BIN" >"$TMP/$name.log" 2>&1 &
  local pid=$!
  PIDS+=($pid)
  wait_port "$port"
  wrk -t1 -c$CONNS -d2s -s "$TMP/incr.lua" "http://127.0.0.1:$port" >/dev/null  # warm-up
  local cpu0; cpu0=$(awk '{print $14+$15}' /proc/$pid/stat)
  wrk -t1 -c$CONNS -d${DURATION}s --latency -s "$TMP/incr.lua" "http://127.0.0.1:$port" > "$TMP/$name.wrk"
  local cpu1; cpu1=$(awk '{print $14+$15}' /proc/$pid/stat)
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {print $2}' "$TMP/$name.wrk")
  p50=$(awk '$1=="50%" {print $2}' "$TMP/$name.wrk")
  p99=$(awk '$1=="99%" {print $2}' "$TMP/$name.wrk")
  errors=$(grep -Eo 'Non-2xx or 3xx responses: [0-9]+' "$TMP/$name.wrk" | awk '{print $NF}' || true)
  local tick; tick=$(getconf CLK_TCK)
  local cpu_us_per_req; cpu_us_per_req=$(python3 -c "print(round(($cpu1-$cpu0)/$tick*1e6/max(1,$rps*$DURATION),1))")
  printf '%-28s %12s %10s %10s %10s %14s\n' "$name" "$rps" "$p50" "$p99" "${errors:-0}" "$cpu_us_per_req"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

{
  echo "# counter benchmark $(date -u +%FT%TZ), $(nproc) cores, ${DURATION}s per run, $CONNS connections"
  printf '%-28s %12s %10s %10s %10s %14s\n' "target" "req/s" "p50" "p99" "non-2xx" "server-us/req"
  printf '%-28s %12s %10s %10s %10s %14s\n' "redis-benchmark INCR" "$REDIS_RPS" "" "" "" ""
  [ -n "$REDIS_LAT" ] && echo "  (redis-benchmark latency: $REDIS_LAT)"
  run_counter "http incr (redis)" WORKERS="${WORKERS:-0}" REDIS_URL="redis://127.0.0.1:$RPORT" REDIS_KEY_PREFIX="bench:"
  run_counter "http incr (embedded)" WORKERS="${WORKERS:-0}" DATA_DIR="$TMP/data"
} | tee "$OUT"
HTTP_RPS=$(awk '/^http incr \(redis\)/ {print $4}' "$OUT")
python3 - "$REDIS_RPS" "$(grep '^http incr (redis)' "$OUT" | awk '{print $4}')" <<'PY'
import sys
raw, http = float(sys.argv[1] or 0), float(sys.argv[2] or 0)
if raw:
    print(f"HTTP on Redis reaches {100*http/raw:.0f}% of raw Redis INCR throughput (target: >= 40%)")
PY
