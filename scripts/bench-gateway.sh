#!/usr/bin/env bash
# Benchmark of the comments-gateway (issue 3 part 8) with the `gateway-load` tool (loadtest/).
#
# Builds the gateway and the tool in release, starts a private gateway (embedded store in a temp
# DATA_DIR, in-process fan-out, POST_BURST=0), runs the scenarios and prints a compact table; the
# raw results (one JSON object per scenario) and the table go to target/bench/.
#
#   scripts/bench-gateway.sh                 # everything, full length (about 20 minutes)
#   scripts/bench-gateway.sh --quick         # shorter runs (about 6 minutes)
#   scripts/bench-gateway.sh --only fanout,idle --growth-secs 120
#   scripts/bench-gateway.sh --node-only     # only the Node.js `ws` baseline (bench/node-baseline)
#   BENCH_NICE=-10 scripts/bench-gateway.sh  # run servers and load tool at this nice level (root;
#                                            # for a machine shared with other work, say so with the figures)
#
# Scenarios (--only takes a comma list of these names):
#   fanout    100 posts/s into one 1,000-subscriber room for 20 s (target: p99 < 25 ms, no loss)
#   sweep     rising rates into 1,000 subscribers: the highest with p99 < 25 ms and zero loss
#   fanout5k  20 posts/s into one 5,000-subscriber room
#   idle      10,000 idle subscribed connections (2 load processes): server RSS per connection
#   idlemax   as many as one gateway process may hold here (19,000 over 2 load processes)
#   growth    memory growth: 50 posts/s into 1,000 subscribers + 20 connections/s churn,
#             RSS sampled every 10 s (10 minutes; --growth-secs to shorten)
#   redis2    two gateway instances sharing a private redis-server and a private SecantusDB,
#             subscribers spread over both, REDIS2_RATE (default 20) posts/s into 1,000 (not in the
#             default set; SecantusDB is a Python server that stores only a few dozen posts/s, so
#             this checks cross-instance delivery, not the gateway's top rate)
#   hot       issue 8's hot room: one instance on a private redis-server and SecantusDB, 10
#             posters at HOT_RATE (default 100) posts/s in all into one 1,000-subscriber room;
#             every post must be acked (one writer per room, batched inserts), run after run
#             (not in the default set)
#   node      the Node.js `ws` baseline server through fanout, sweep, fanout5k, idle, idlemax
#   bun       the Bun baseline (bench/bun-baseline: uWebSockets, native topic publish), likewise
#   table     the transport issue's table from one run: server CPU per delivered comment and p99
#             at 1,000 subs x 100 posts/s and 5,000 x 20/s, RSS per idle subscribed connection at
#             19,700 connections (3 load processes), for our gateway (embedded; and Redis + the
#             Mongo-wire test server), Bun and Node `ws` (TABLE_SECS per fan-out, default 10;
#             TABLE_IDLE=0 skips the idle column, TABLE_FANOUT=0 the fan-out columns;
#             TABLE_REDIS=0 skips the Redis + Mongo row; TABLE_BEFORE=<older build> adds its row,
#             TABLE_PEERS="bun node" by default picks the peers)
#   typing    issue 10: does presence and typing cost anything at 1,000 signed-in subscribers x
#             100 posts/s? The same fan-out with 0 and with 100 typing users (each sends `typing`
#             every TYPING_EVERY s, default 1; the server relays one per user and room per 2 s),
#             interleaved TYPING_RUNS times (default 2) on one gateway, TYPING_SECS each (default
#             15); prints CPU us per delivered comment, p99 and typing frames delivered per second
#             with the load average (`--typing` runs only this; TYPING_BEFORE=path/to/an/older/
#             comments-gateway runs that build interleaved with this one, for a before/after)
#
# Everything runs against 127.0.0.0/8 only; every run is bounded in time.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

QUICK=0
BUILD=1
GROWTH_SECS=""
ONLY="fanout,sweep,fanout5k,idle,idlemax,growth,node"
SECRET="bench-token-secret-$$"
NICE=()
[ -n "${BENCH_NICE:-}" ] && NICE=(nice -n "$BENCH_NICE")
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --skip-build) BUILD=0 ;;
    --growth-secs) GROWTH_SECS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --node-only) ONLY=node ;;
    --table) ONLY=table ;;
    --typing) ONLY=typing ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  RUN_SECS=10; SWEEP_SECS=8; GROWTH_SECS=${GROWTH_SECS:-60}
  SWEEP_RATES="200 400 700 1000 1500 2000 3000"
else
  RUN_SECS=20; SWEEP_SECS=10; GROWTH_SECS=${GROWTH_SECS:-600}
  SWEEP_RATES="150 200 300 400 500 700 1000 1500 2000 3000 4000"
fi
want() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

OUT_DIR=$ROOT/target/bench
mkdir -p "$OUT_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$OUT_DIR/gateway-$STAMP.jsonl
TABLE=$OUT_DIR/gateway-$STAMP.txt
LOG_DIR=$OUT_DIR/logs-$STAMP
mkdir -p "$LOG_DIR"
: > "$RESULTS"

# The descriptor limit: soft up to hard for this shell and everything it starts (the tool raises
# its own too).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PIDS=()
TMP_DIRS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  done
  for d in "${TMP_DIRS[@]:-}"; do
    case "$d" in /tmp/bench-*) rm -rf "$d" ;; esac
  done
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # url seconds
  local deadline=$((SECONDS + ${2:-30}))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then echo "timed out waiting for $1" >&2; return 1; fi
    sleep 0.2
  done
}

stop_pid() { # pid
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

load_avg() { cut -d' ' -f1 /proc/loadavg; }
check_quiet() {
  local l; l=$(load_avg)
  if python3 -c "import sys; sys.exit(0 if float('$l') > 0.7 else 1)"; then
    echo "  note: load average $l before '$1': other work on this 2-core machine skews latency" >&2
  fi
}

# ---------------------------------------------------------------- build
if [ "$BUILD" = 1 ]; then
  if want fanout || want sweep || want fanout5k || want idle || want idlemax || want growth || want redis2 || want table || want typing; then
    echo "building comments-gateway and gateway-load (release) ..." >&2
    cargo build --release -p comments-gateway -p loadtest >"$LOG_DIR/build.log" 2>&1 || {
      tail -30 "$LOG_DIR/build.log" >&2; exit 1; }
  else
    cargo build --release -p loadtest >"$LOG_DIR/build.log" 2>&1 || { tail -30 "$LOG_DIR/build.log" >&2; exit 1; }
  fi
fi
LOAD=$CARGO_TARGET_DIR/release/gateway-load
GW_BIN=${GW_BIN:-$CARGO_TARGET_DIR/release/comments-gateway}  # GW_BIN=path: another build (before/after)
[ -x "$LOAD" ] || { echo "missing $LOAD" >&2; exit 1; }

# ---------------------------------------------------------------- servers
# start_gateway NAME [VAR=value ...]: sets SRV_PID, SRV_URL.
start_gateway() {
  local name=$1; shift
  local port data
  port=$(free_port)
  data=$(mktemp -d /tmp/bench-gw-data-XXXXXX)
  TMP_DIRS+=("$data")
  env -u REDIS_URL -u MONGO_URL \
    HOST=127.0.0.1 PORT="$port" DATA_DIR="$data" POST_BURST=0 POST_RATE_PER_SEC=0 \
    APP_ENV=development MAX_CONNS_PER_IP=0 \
    AUTH_TOKEN_SECRET="$SECRET" ADMIN_TOKEN="bench-admin-$$" \
    RUST_LOG="${BENCH_RUST_LOG:-warn}" LOG_FORMAT=json "$@" \
    "${NICE[@]}" "$GW_BIN" >"$LOG_DIR/$name-$port.log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  SRV_URL="ws://127.0.0.1:$port/ws"
  wait_http "http://127.0.0.1:$port/healthz" 60 || { tail -20 "$LOG_DIR/$name-$port.log" >&2; exit 1; }
  echo "  started $name pid $SRV_PID on $port (log $LOG_DIR/$name-$port.log)" >&2
}

start_node() {
  local port
  port=$(free_port)
  if [ ! -d bench/node-baseline/node_modules/ws ]; then
    (cd bench/node-baseline && npm ci --no-audit --no-fund >"$LOG_DIR/npm.log" 2>&1) || {
      echo "npm ci failed: see $LOG_DIR/npm.log" >&2; return 1; }
  fi
  PORT=$port AUTH_TOKEN_SECRET="$SECRET" "${NICE[@]}" node bench/node-baseline/server.js >"$LOG_DIR/node-$port.log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  SRV_URL="ws://127.0.0.1:$port/ws"
  wait_http "http://127.0.0.1:$port/healthz" 30
  echo "  started node baseline pid $SRV_PID on $port" >&2
}

BUN_BIN=bench/bun-baseline/node_modules/@oven/bun-linux-x64/bin/bun
start_bun() {
  local port
  port=$(free_port)
  if [ ! -x "$BUN_BIN" ]; then
    (cd bench/bun-baseline && npm ci --no-audit --no-fund >"$LOG_DIR/npm-bun.log" 2>&1) || {
      echo "npm ci (bun) failed: see $LOG_DIR/npm-bun.log" >&2; return 1; }
  fi
  PORT=$port AUTH_TOKEN_SECRET="$SECRET" "${NICE[@]}" "$BUN_BIN" bench/bun-baseline/server.js >"$LOG_DIR/bun-$port.log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  SRV_URL="ws://127.0.0.1:$port/ws"
  wait_http "http://127.0.0.1:$port/healthz" 30
  echo "  started bun baseline pid $SRV_PID on $port" >&2
}

# start_redis_mongo: a private redis-server and SecantusDB; sets RM_REDIS, RM_MONGO.
start_redis_mongo() {
  local rport mport mdata
  rport=$(free_port); mport=$(free_port)
  mdata=$(mktemp -d /tmp/bench-mongo-XXXXXX); TMP_DIRS+=("$mdata")
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$LOG_DIR/redis.log" 2>&1 &
  PIDS+=("$!")
  SECANTUS=${SECANTUS_BIN:-$HOME/.cache/secantus-venv/bin/secantusd-py}
  "$SECANTUS" --host 127.0.0.1 --port "$mport" --storage-path "$mdata" --log-level ERROR >"$LOG_DIR/mongo.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 150); do (echo > "/dev/tcp/127.0.0.1/$mport") 2>/dev/null && break; sleep 0.2; done
  RM_REDIS="redis://127.0.0.1:$rport"
  RM_MONGO="mongodb://127.0.0.1:$mport/bench?directConnection=true"
}

# ---------------------------------------------------------------- scenarios
# load LABEL ARGS...: runs the tool, appends its RESULT line to $RESULTS, echoes it.
load() {
  local label=$1; shift
  check_quiet "$label"
  echo "-- $label: gateway-load $*" >&2
  "${NICE[@]}" "$LOAD" "$@" --label "$label" --token-secret "$SECRET" --json-out "$RESULTS" \
    2> >(tee -a "$LOG_DIR/load.log" >&2) | { grep '^RESULT ' || true; } | tail -1 | cut -d' ' -f2-
}

passes() { # json -> exit 0 when p99 < 25 ms, nothing lost, nobody dropped, every post answered
  jq -e '.latency.p99_us < 25000 and .losses == 0 and .conns_closed_early == 0
         and .posts_unanswered == 0 and .posts_refused == 0 and .connect_failures == 0' >/dev/null <<<"$1"
}

fanout() { # prefix
  load "$1 fanout 100/s x 1000" run --url "$SRV_URL" --server-pid "$SRV_PID" \
    --connections 1000 --posters 10 --rate 100 --duration "$RUN_SECS" >/dev/null
}

fanout5k() {
  load "$1 fanout 20/s x 5000" run --url "$SRV_URL" --server-pid "$SRV_PID" \
    --connections 5000 --posters 10 --rate 20 --duration "$RUN_SECS" --anonymous >/dev/null
}

sweep() {
  local best=0 r json
  for r in $SWEEP_RATES; do
    json=$(load "$1 sweep $r/s x 1000" run --url "$SRV_URL" --server-pid "$SRV_PID" \
      --connections 1000 --posters 20 --rate "$r" --duration "$SWEEP_SECS" --drain 5 --anonymous) || true
    if [ -n "$json" ] && passes "$json"; then best=$r; else break; fi
  done
  echo "{\"mode\":\"sweep\",\"label\":\"$1 sweep: highest rate with p99<25ms, 0 loss\",\"best_rate\":$best,\"subscribers\":1000}" >>"$RESULTS"
  echo "== $1 sweep: highest passing rate $best posts/s (x 1000 subscribers) ==" >&2
}

idle() { # prefix connections processes
  load "$1 idle $2" idle --url "$SRV_URL" --server-pid "$SRV_PID" --connections "$2" \
    --processes "$3" --anonymous --settle 5 --hold 5 --source-ips 4 >/dev/null
}

growth() {
  load "$1 growth ${GROWTH_SECS}s 50/s x 1000 + churn" run --url "$SRV_URL" --server-pid "$SRV_PID" \
    --connections 1000 --posters 10 --rate 50 --duration "$GROWTH_SECS" --churn 20 --sample-every 10 \
    --anonymous >/dev/null
}

echo "results: $RESULTS" >&2
echo "machine: $(nproc) cores, load $(load_avg), nice ${BENCH_NICE:-0}, ports $(cat /proc/sys/net/ipv4/ip_local_port_range | tr '\t' '-'), nofile $(ulimit -n)" >&2

gw_scenarios=0
for s in fanout sweep fanout5k idle idlemax growth; do want $s && gw_scenarios=1; done
if [ "$gw_scenarios" = 1 ]; then
  [ -x "$GW_BIN" ] || { echo "missing $GW_BIN" >&2; exit 1; }
  # Fan-out scenarios share one gateway; memory scenarios each get a fresh one (clean baseline).
  if want fanout || want sweep || want fanout5k; then
    start_gateway gateway
    want fanout && fanout gateway
    want fanout5k && fanout5k gateway
    want sweep && sweep gateway
    stop_pid "$SRV_PID"
  fi
  if want idle; then start_gateway gateway; idle gateway 10000 2; stop_pid "$SRV_PID"; fi
  if want idlemax; then start_gateway gateway; idle gateway 19000 2; stop_pid "$SRV_PID"; fi
  if want growth; then start_gateway gateway; growth gateway; stop_pid "$SRV_PID"; fi
fi

if want redis2; then
  [ -x "$GW_BIN" ] || { echo "missing $GW_BIN" >&2; exit 1; }
  start_redis_mongo
  start_gateway gw-a REDIS_URL="$RM_REDIS" MONGO_URL="$RM_MONGO"
  a_pid=$SRV_PID; a_url=$SRV_URL
  start_gateway gw-b REDIS_URL="$RM_REDIS" MONGO_URL="$RM_MONGO"
  load "2 instances + redis ${REDIS2_RATE:-20}/s x 1000" run --url "$a_url,$SRV_URL" --server-pid "$a_pid,$SRV_PID" \
    --connections 1000 --posters 10 --rate "${REDIS2_RATE:-20}" --duration "$RUN_SECS" --drain 10 >/dev/null || true
  stop_pid "$a_pid"; stop_pid "$SRV_PID"
fi

if want hot; then
  [ -x "$GW_BIN" ] || { echo "missing $GW_BIN" >&2; exit 1; }
  rport=$(free_port); mport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$LOG_DIR/redis-hot.log" 2>&1 &
  PIDS+=("$!")
  SECANTUS=${SECANTUS_BIN:-$HOME/.cache/secantus-venv/bin/secantusd-py}
  "$SECANTUS" --host 127.0.0.1 --port "$mport" --storage-path :memory: --log-level ERROR >"$LOG_DIR/mongo-hot.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 150); do (echo > "/dev/tcp/127.0.0.1/$mport") 2>/dev/null && break; sleep 0.2; done
  start_gateway gw-hot REDIS_URL="redis://127.0.0.1:$rport" MONGO_URL="mongodb://127.0.0.1:$mport/bench?directConnection=true"
  load "hot room ${HOT_RATE:-100}/s x 1000 (redis + SecantusDB)" run --url "$SRV_URL" --server-pid "$SRV_PID" \
    --connections 1000 --posters 10 --rate "${HOT_RATE:-100}" --duration "$RUN_SECS" --drain 10 >/dev/null || true
  stop_pid "$SRV_PID"
fi

if want node; then
  if command -v node >/dev/null && start_node; then
    fanout node
    fanout5k node
    sweep node
    stop_pid "$SRV_PID"
    start_node; idle node 10000 2; stop_pid "$SRV_PID"
    start_node; idle node 19000 2; stop_pid "$SRV_PID"
  else
    echo "node baseline skipped (node or npm unavailable)" >&2
  fi
fi

if want bun; then
  if start_bun; then
    fanout bun
    fanout5k bun
    sweep bun
    stop_pid "$SRV_PID"
    start_bun; idle bun 10000 2; stop_pid "$SRV_PID"
    start_bun; idle bun 19000 2; stop_pid "$SRV_PID"
  else
    echo "bun baseline skipped" >&2
  fi
fi

if want table; then
  # Short runs, the peers interleaved, all in one run (the machine is shared: compare ratios).
  T=${TABLE_SECS:-10}
  tfan() { # label subs rate
    load "$1" run --url "$SRV_URL" --server-pid "$SRV_PID" --connections "$2" --posters 10 \
      --rate "$3" --duration "$T" --drain 3 --anonymous >/dev/null || true
  }
  tidle() { # label
    load "$1" idle --url "$SRV_URL" --server-pid "$SRV_PID" --connections 19700 \
      --processes 3 --anonymous --settle 5 --hold 2 --source-ips 4 >/dev/null || true
  }
  # TABLE_BEFORE=path: an older gateway build gets a row of its own (before/after in one run);
  # TABLE_PEERS (default "bun node") picks the peers.
  # TABLE_FANOUT=0 skips the fan-out columns (an idle-only comparison).
  start_who() { # gateway | before | bun | node
    case $1 in
      gateway) start_gateway gateway ;;
      before) local_gw=$GW_BIN; GW_BIN=$TABLE_BEFORE; start_gateway before; GW_BIN=$local_gw ;;
      bun) start_bun ;;
      node) start_node ;;
    esac
  }
  WHO="gateway ${TABLE_BEFORE:+before} ${TABLE_PEERS-bun node}"
  if [ "${TABLE_FANOUT:-1}" = 1 ]; then
    for who in $WHO; do
      start_who "$who"
      tfan "table $who 1000x100" 1000 100
      tfan "table $who 5000x20" 5000 20
      stop_pid "$SRV_PID"
    done
  fi
  if [ "${TABLE_REDIS:-1}" = 1 ]; then
    start_redis_mongo
    start_gateway gateway-rm REDIS_URL="$RM_REDIS" MONGO_URL="$RM_MONGO"
    tfan "table gateway-rm 1000x100" 1000 100
    tfan "table gateway-rm 5000x20" 5000 20
    stop_pid "$SRV_PID"
  fi
  if [ "${TABLE_IDLE:-1}" = 1 ]; then
    for who in $WHO; do start_who "$who"; tidle "table $who idle"; stop_pid "$SRV_PID"; done
  fi
fi

if want typing; then
  [ -x "$GW_BIN" ] || { echo "missing $GW_BIN" >&2; exit 1; }
  TS=${TYPING_SECS:-15}
  # TYPING_BEFORE=path: another gateway build, run interleaved with this one (before/after)
  builds=("$GW_BIN")
  [ -n "${TYPING_BEFORE:-}" ] && builds+=("$TYPING_BEFORE")
  this_bin=$GW_BIN
  for run in $(seq 1 "${TYPING_RUNS:-2}"); do
    for bin in "${builds[@]}"; do
      GW_BIN=$bin
      name=this; [ "$bin" = "$this_bin" ] || name=before
      start_gateway "gateway-typing-$name"
      for typers in 0 100; do
        load "typing $name $typers typers run $run (load $(load_avg))" run --url "$SRV_URL" --server-pid "$SRV_PID" \
          --connections 1000 --posters 10 --rate 100 --duration "$TS" --drain 3 \
          --typing "$typers" --typing-every "${TYPING_EVERY:-1}" >/dev/null || true
      done
      stop_pid "$SRV_PID"
    done
  done
  GW_BIN=$this_bin
fi

# ---------------------------------------------------------------- table
python3 - "$RESULTS" >"$TABLE" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def ms(us): return f"{us/1000:.1f}"
print(f"{'scenario':<40} {'conns':>6} {'deliv/s':>8} {'p50':>6} {'p90':>6} {'p99':>7} {'max':>7} {'loss':>5} {'dup':>4} {'ooo':>4} {'drop':>4} {'us/del':>6} {'cpu%':>5} {'B/conn':>7}")
for r in rows:
    if r.get("mode") == "run":
        l = r["latency"]
        cpu = r.get("server_cpu_us_per_delivery"); pct = r.get("server_cpu_pct"); rss = r.get("server_rss_per_conn_bytes")
        print(f"{r['label'][:40]:<40} {r['connected']:>6} {r['delivered_per_sec']:>8.0f} {ms(l['p50_us']):>6} {ms(l['p90_us']):>6} "
              f"{ms(l['p99_us']):>7} {ms(l['max_us']):>7} {r['losses']:>5} {r['duplicates']:>4} {r['out_of_order']:>4} "
              f"{r['conns_closed_early']:>4} {cpu if cpu is None else round(cpu,2):>6} {pct if pct is None else round(pct):>5} {rss if rss is None else round(rss):>7}")
        if r.get("rss_timeline_kib"):
            t = r["rss_timeline_kib"]
            g = r.get("rss_growth_kib_per_min")
            print(f"{'':<40}   RSS KiB first {t[0][1]} max {max(p[1] for p in t)} last {t[-1][1]}; 2nd-half slope "
                  f"{'n/a' if g is None else f'{g:.1f} KiB/min'}; churned {r.get('churned_connections')}")
        if r.get("errors") or r.get("close_reasons"):
            print(f"{'':<40}   errors {r.get('errors')} closes {r.get('close_reasons')}")
    elif r.get("mode") == "idle":
        b = r.get("server_before") or {}; a = r.get("server_after") or {}
        rss = r.get("server_rss_per_conn_bytes")
        print(f"{r['label'][:40]:<40} {r['connected']:>6} {'idle':>8}  RSS {b.get('rss_kib')} -> {a.get('rss_kib')} KiB, "
              f"{'n/a' if rss is None else f'{rss:.0f} B ({rss/1024:.2f} KiB)'} per connection, failures {r['connect_failures']}")
    elif r.get("mode") == "sweep":
        print(f"{r['label'][:60]:<60} {r['best_rate']} posts/s x {r['subscribers']}")
# Issue 10's typing comparison (scenario `typing`): the same fan-out without and with typers.
ty = [r for r in rows if r.get("mode") == "run" and r.get("label", "").startswith("typing ")]
if ty:
    print()
    print("| run | typers | comments delivered/s | CPU us per delivered comment | p99 ms | typing frames delivered/s | loss | server CPU % |")
    print("|---|---|---|---|---|---|---|---|")
    for r in ty:
        cpu = r.get("server_cpu_us_per_delivery")
        pct = r.get("server_cpu_pct")
        print(f"| {r['label']} | {r['typers']} | {r['delivered_per_sec']:.0f} | {'n/a' if cpu is None else f'{cpu:.2f}'} | "
              f"{r['latency']['p99_us']/1000:.1f} | {r['typing_received']/r['duration']:.0f} | {r['losses']} | {'n/a' if pct is None else f'{pct:.0f}'} |")
    for build in ("this", "before"):
        for n in (0, 100):
            c = [r["server_cpu_us_per_delivery"] for r in ty
                 if r["typers"] == n and r["label"].startswith(f"typing {build} ") and r.get("server_cpu_us_per_delivery")]
            if c:
                print(f"{build}: mean CPU us per delivered comment with {n} typers: {sum(c)/len(c):.2f} over {len(c)} run(s)")
# The transport issue's table (scenario `table`): one row per server, from this run.
t = {r["label"]: r for r in rows if r.get("label", "").startswith("table ")}
if t:
    names = [("gateway-rm", "our gateway (Redis + Mongo-wire)"), ("gateway", "our gateway (embedded)"),
             ("before", "our gateway (embedded), build before (TABLE_BEFORE)"),
             ("bun", "Bun (uWebSockets, topic publish)"), ("node", "Node.js ws")]
    def fan(who, what):
        r = t.get(f"table {who} {what}")
        if not r:
            return "-"
        cpu = r.get("server_cpu_us_per_delivery")
        bad = r["losses"] + r["conns_closed_early"] + r.get("posts_unanswered", 0)
        s = f"{cpu:.2f} us, p99 {r['latency']['p99_us']/1000:.1f} ms" if cpu is not None else "n/a"
        return s + ("" if bad == 0 else f" (loss {r['losses']}, drop {r['conns_closed_early']}, unanswered {r.get('posts_unanswered', 0)})")
    def idle(who):
        r = t.get(f"table {who} idle")
        if not r or r.get("server_rss_per_conn_bytes") is None:
            return "-"
        return f"{r['server_rss_per_conn_bytes']/1024:.2f} KiB ({r['connected']} conns)"
    print()
    print("| | 1,000 subs x 100 posts/s | 5,000 subs x 20 posts/s | idle connection |")
    print("|---|---|---|---|")
    for who, name in names:
        if any(k.startswith(f"table {who} ") for k in t):
            print(f"| {name} | {fan(who, '1000x100')} | {fan(who, '5000x20')} | {idle(who)} |")
    ours = {w: t.get(f"table gateway {w}") for w in ("1000x100", "5000x20")}
    bun = {w: t.get(f"table bun {w}") for w in ("1000x100", "5000x20")}
    for w in ours:
        if ours[w] and bun[w] and ours[w].get("server_cpu_us_per_delivery") and bun[w].get("server_cpu_us_per_delivery"):
            print(f"ratio ours/Bun at {w}: {ours[w]['server_cpu_us_per_delivery']/bun[w]['server_cpu_us_per_delivery']:.2f} (target <= 0.80)")
PY
echo >&2
cat "$TABLE"
echo >&2
echo "results: $RESULTS  table: $TABLE  logs: $LOG_DIR" >&2
