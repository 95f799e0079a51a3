#!/usr/bin/env bash
# Runs every test against real servers: the Rust workspace (unit + integration, with a private
# redis-server and SecantusDB on free ports for this run), the demo-data checks, and the
# browser end-to-end test in headless Chromium.
#
#   scripts/test.sh            # everything
#   scripts/test.sh --no-e2e   # skip the browser test
set -euo pipefail
cd "$(dirname "$0")/.."
E2E=1
[ "${1:-}" = "--no-e2e" ] && E2E=0

scripts/test-deps.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --loglevel warning >/dev/null &
PIDS+=($!)
MPORT=$(free_port)
"${SECANTUS_VENV:-$HOME/.cache/secantus-venv}/bin/secantusd-py" --host 127.0.0.1 --port "$MPORT" \
  --storage-path :memory: --log-level ERROR >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$RPORT"
wait_port "$MPORT"
export TEST_REDIS_URL="redis://127.0.0.1:$RPORT"
export TEST_MONGO_URL="mongodb://127.0.0.1:$MPORT/?directConnection=true"
echo "== private redis-server on :$RPORT, SecantusDB on :$MPORT"

echo "== cargo nextest run --workspace"
cargo nextest run --workspace --no-fail-fast

echo "== browser client: comments.js type-checked against the generated protocol.d.ts, unit tests, docs/asyncapi.json validated by the AsyncAPI parser"
# (--ignore-scripts: nothing here needs an install script; @asyncapi/parser's dependency
# @scarf/scarf has a telemetry one, which SCARF_ANALYTICS=false also turns off for e2e/run.sh.)
export SCARF_ANALYTICS=false
(cd e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund >/dev/null && npx --no-install tsc -p tsconfig.json && node --test unit/)

echo "== demo data checks"
python3 -m unittest discover -s tests -v

echo "== deployment: static checks, compose-equivalent stack, rolling-restart drill"
DEPLOY_TESTS=1 "${DEPLOY_TEST_VENV:-$HOME/.cache/deploy-test-venv}/bin/python" -m unittest discover -s tests -p 'test_deploy*.py' -v

if [ "$E2E" = 1 ]; then
  echo "== browser end-to-end test"
  bash e2e/run.sh
fi
