#!/usr/bin/env bash
# Builds the three services and the all-in-one `stack`, installs the test's node dependencies and runs the end-to-end
# test (plus the type check and unit tests of library/static/js/comments.js) in headless Chromium.
#
#   e2e/run.sh                      # both modes: private redis+SecantusDB with two gateway and two
#                                   # library instances, then the `stack` binary (embedded stores)
#   E2E_MODES=embedded e2e/run.sh   # one mode
#   E2E_PROFILE=release e2e/run.sh  # use release binaries (builds them with --release)
#
# Needs: cargo, node >= 18 with npm, /usr/bin/chromium, redis-server, SecantusDB at
# ~/.cache/secantus-venv/bin/secantusd-py (see shared TESTING.md). Never runs `playwright install`.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${E2E_PROFILE:-debug}"
release=()
[ "$profile" = release ] && release=(--release)
echo "== cargo build -p counter -p library -p comments-gateway -p stack ${release[*]:-} (target: ${CARGO_TARGET_DIR:-target})"
cargo build -p counter -p library -p comments-gateway -p stack "${release[@]}"

if ! command -v redis-server >/dev/null; then
  echo "redis-server missing: apt-get install -y redis-server" >&2
  exit 1
fi
V="${SECANTUS_VENV:-$HOME/.cache/secantus-venv}"
if [ ! -x "$V/bin/secantusd-py" ]; then
  python3 -m venv "$V" && "$V/bin/pip" install -q 'SecantusDB==0.7.0b3'
fi

cd e2e
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
node --test --test-concurrency=1 unit/ tests/
