#!/usr/bin/env bash
# Where the gateway's time and memory go (issue 3 part 8), with the release build.
#
#   scripts/bench-profile.sh cpu  [RATE] [SUBSCRIBERS]   # perf: flat profile by category + syscall counts
#   scripts/bench-profile.sh mem  [CONNECTIONS]          # valgrind massif: heap bytes per idle connection by site
#
# cpu: starts a private gateway (embedded store, POST_BURST=0), drives RATE posts/s (default 100)
#      into SUBSCRIBERS (default 1000) for 15 s, records 5 s of `perf record` on the gateway and
#      counts its send/write/io_uring/fsync/epoll syscalls for 3 s; prints the share of samples
#      per category and what it comes to in microseconds per delivery (the load tool's server
#      CPU per delivery times the share). PROFILE_PEER=bun then does the same to the Bun
#      baseline (bench/bun-baseline) under the same load, so the two can be laid side by side.
#      FANOUT_COALESCE_MS and the other gateway settings pass through from the environment.
# mem: runs the gateway under massif, holds CONNECTIONS (default 2000) idle subscribed
#      connections, stops it, and prints the peak snapshot's allocation sites with bytes/connection.
# Output goes to target/bench/profile-*; only 127.0.0.1 is targeted; every step is bounded.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MODE=${1:-cpu}
OUT=$ROOT/target/bench/profile-$MODE-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
SECRET=profile-secret-$$
LOAD=$CARGO_TARGET_DIR/release/gateway-load
GW=${GW_BIN:-$CARGO_TARGET_DIR/release/comments-gateway}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p comments-gateway -p loadtest >"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATA=$(mktemp -d /tmp/bench-profile-XXXXXX)
GW_PID=""
cleanup() {
  [ -n "$GW_PID" ] && kill -TERM "$GW_PID" 2>/dev/null || true
  sleep 1
  [ -n "$GW_PID" ] && kill -KILL "$GW_PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT
gw_env=(env -u REDIS_URL -u MONGO_URL HOST=127.0.0.1 PORT="$PORT" DATA_DIR="$DATA" POST_BURST=0
  POST_RATE_PER_SEC=0 APP_ENV=development MAX_CONNS_PER_IP=0 AUTH_TOKEN_SECRET="$SECRET" RUST_LOG=warn)
wait_up() {
  for _ in $(seq 1 ${1:-60}); do curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null && return 0; sleep 1; done
  echo "gateway did not come up" >&2; return 1
}

# profile_cpu NAME PID: drives RATE posts/s into SUBS subscribers of the server PID listens
# for on $PORT, counts its syscalls for 3 s and samples it for 5 s; prints the shares by category
# and, with the load tool's CPU per delivery, the microseconds per delivery of each.
profile_cpu() {
  local name=$1 pid=$2 dir=$OUT/$1 load_pid
  mkdir -p "$dir"
  "$LOAD" run --url "ws://127.0.0.1:$PORT/ws" --token-secret "$SECRET" --server-pid "$pid" \
    --connections "$SUBS" --posters 10 --rate "$RATE" --duration 15 --anonymous >"$dir/load.out" 2>&1 &
  load_pid=$!
  sleep 5
  perf stat -e 'syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_futex' \
    -p "$pid" -o "$dir/syscalls.txt" -- sleep 3 || true
  perf record -F 499 -p "$pid" -o "$dir/perf.data" -- sleep 5 >/dev/null 2>&1 || true
  echo "== $name: threads during the run: $(grep Threads "/proc/$pid/status" | awk '{print $2}')" | tee "$dir/threads.txt"
  wait "$load_pid" || true
  grep -v '^  \.\.' "$dir/load.out" | grep -v '^RESULT' || true
  echo "-- $name: syscalls in 3 s (deliveries in 3 s ~ $((RATE * SUBS * 3))):"
  grep -E 'syscalls:' "$dir/syscalls.txt" | awk '{printf "   %12s %s\n", $1, $2}'
  perf report -i "$dir/perf.data" --no-children --sort dso,sym -q -g none 2>/dev/null >"$dir/flat.txt" || true
  echo "-- $name: samples by category ($dir/flat.txt), us per delivery from the load tool's server CPU:"
  python3 - "$dir/flat.txt" "$dir/load.out" <<'PY'
import json, re, sys, collections
cats = [
 ('kernel: TCP send + loopback receive', r'\[k\].*(tcp|inet|ip_|skb|dst_|sock|__dev|netif|napi|copy_from|copy_to|lock_timer|mod_timer|_raw_spin|loopback|nf_|kfree|kmem|kmalloc|slab|memcg|release_sock|lock_sock|__alloc|page)'),
 ('kernel: epoll / wakeups / scheduler', r'\[k\].*(ep_|epoll|wake|sched|schedule|futex|select_task|enqueue|dequeue|update_|pick_|switch)'),
 ('kernel: syscall entry, io_uring, fs, other', r'\[k\]'),
 ('tokio Notify / CancellationToken re-arming', r'(notify::|Notified|cancellation_token|WaitForCancellation)'),
 ('tokio mpsc + semaphores (queue hops)', r'(mpsc|batch_semaphore|Semaphore|make_acquire_future|PollSender)'),
 ('tokio task wake / schedule / io driver', r'(waker|task::|scheduler|AtomicWaker|runtime::io|Registration|runtime::time|park|driver)'),
 ('actix-http dispatcher + ws codec', r'(actix|ws::codec|Codec|h1::|dispatcher)'),
 ('redb (embedded store)', r'redb'),
 ('serde / JSON', r'(serde|json)'),
 ('malloc / free / memcpy', r'(malloc|_int_free|free|memmove|memcpy|cfree|realloc|memset|je_|_rjem)'),
 ('gateway code', r'comments_gateway'),
]
per = None
for line in open(sys.argv[2]):
    if line.startswith('RESULT '):
        try:
            per = json.loads(line[7:]).get('server_cpu_us_per_delivery')
        except ValueError:
            pass
tot = collections.Counter(); top = collections.defaultdict(list); kernel = 0.0; total = 0.0
for line in open(sys.argv[1]):
    m = re.match(r'\s*([\d.]+)%\s+(\S+)\s+(.*)', line)
    if not m: continue
    pct, sym = float(m.group(1)), m.group(3)
    total += pct
    if sym.startswith('[k]'): kernel += pct
    for name, pat in cats:
        if re.search(pat, sym):
            tot[name] += pct; top[name].append((pct, sym)); break
    else:
        tot['other user space'] += pct; top['other user space'].append((pct, sym))
def us(v):
    return f"{per * v / 100:5.2f} us" if per else "   ? us"
for name, v in tot.most_common():
    best = ', '.join(s[4:60] for _, s in sorted(top[name], reverse=True)[:2])
    print(f"   {v:5.1f}% {us(v)}  {name:<44} {best}")
print(f"   kernel {kernel:.1f}% ({us(kernel).strip()}), user space {total - kernel:.1f}% ({us(total - kernel).strip()}); "
      f"server CPU per delivery {per if per is None else round(per, 2)} us")
PY
}

case "$MODE" in
cpu)
  RATE=${2:-100}; SUBS=${3:-1000}
  "${gw_env[@]}" "$GW" >"$OUT/gateway.log" 2>&1 &
  GW_PID=$!
  wait_up 60
  profile_cpu gateway "$GW_PID"
  # PROFILE_PEER=bun: the Bun baseline (bench/bun-baseline) under the same load, right after.
  if [ "${PROFILE_PEER:-}" = bun ]; then
    kill -TERM "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
    BUN_BIN=bench/bun-baseline/node_modules/@oven/bun-linux-x64/bin/bun
    [ -x "$BUN_BIN" ] || (cd bench/bun-baseline && npm ci --no-audit --no-fund >"$OUT/npm-bun.log" 2>&1)
    PORT=$PORT AUTH_TOKEN_SECRET="$SECRET" "$BUN_BIN" bench/bun-baseline/server.js >"$OUT/bun.log" 2>&1 &
    GW_PID=$!
    wait_up 30
    profile_cpu bun "$GW_PID"
  fi
  ;;
mem)
  CONNS=${2:-2000}
  "${gw_env[@]}" timeout 600 valgrind --tool=massif --massif-out-file="$OUT/massif.out" --depth=40 \
    --threshold=0.2 "$GW" >"$OUT/gateway.log" 2>&1 &
  GW_PID=$!
  wait_up 120
  "$LOAD" idle --url "ws://127.0.0.1:$PORT/ws" --connections "$CONNS" --anonymous --settle 5 --hold 10 \
    --connect-concurrency 50 --setup-timeout 120 >"$OUT/load.out" 2>&1 || true
  kill -TERM "$GW_PID" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 1; done
  GW_PID=""
  ms_print "$OUT/massif.out" >"$OUT/massif.txt"
  python3 - "$OUT/massif.txt" "$CONNS" <<'PY'
import re, sys
text = open(sys.argv[1]).read().splitlines(); conns = int(sys.argv[2])
peak = max((i for i, l in enumerate(text) if re.match(r'^\s*\d+\s+[\d,]+\s+[\d,]+\s+[\d,]+\s+[\d,]+\s+[\d,]+$', l)
            and i + 1 < len(text) and 'heap allocation functions' in text[i + 1]),
           key=lambda i: int(text[i].split()[2].replace(',', '')), default=None)
if peak is None:
    print("no detailed snapshot found"); sys.exit(0)
print(f"peak heap {int(text[peak].split()[2].replace(',', ''))/1024/1024:.1f} MiB with {conns} connections")
# Walk the peak tree: each node whose frame is outside alloc/tokio/bytes internals is a "site".
skip = re.compile(r'library/(alloc|core)|unix\.rs|alloc\.rs|raw_vec|bytes_mut\.rs|bytes-1|UnknownInlinedFun|__rdl|aligned_malloc|block\.rs|list\.rs|chan\.rs|task/core\.rs|task/raw\.rs|task/mod\.rs|heap allocation functions')
nodes = []
i = peak + 1
while i < len(text) and text[i].strip():
    m = re.match(r'^([|\s]*)->([\d.]+)% \(([\d,]+)B\) ?(.*)$', text[i])
    if m:
        nodes.append((len(m.group(1)), int(m.group(3).replace(',', '')), m.group(4)))
    i += 1
rows = []
def visit(k):
    col, size, frame = nodes[k]
    kids = []
    j = k + 1
    while j < len(nodes) and nodes[j][0] > col:
        if nodes[j][0] == col + 2:
            kids.append(j)
        j += 1
    if not skip.search(frame) or not kids:
        rows.append((size, re.sub(r'^0x[0-9A-F]+: ', '', frame)[:150]))
        return
    for kid in kids:
        visit(kid)
for k, n in enumerate(nodes):
    if n[0] == 0:
        visit(k)
merged = {}
for size, site in rows:
    merged[site] = merged.get(site, 0) + size
rows = [(v, k) for k, v in merged.items()]
for size, site in sorted(rows, reverse=True)[:14]:
    print(f"  {size/conns:8.0f} B/conn  {site}")
PY
  grep -E '^== ' "$OUT/load.out" || true
  ;;
*) echo "usage: $0 cpu [RATE] [SUBSCRIBERS] | mem [CONNECTIONS]" >&2; exit 2 ;;
esac
echo "files: $OUT"
