#!/usr/bin/env bash
# Chaos suite of the comments-gateway (comments-gateway/tests/api/chaos.rs): gateway processes
# on a private redis-server and SecantusDB, hundreds of clients that subscribe, reload and post
# with a clientId (retrying on errors), faults on a schedule (SIGSTOP/SIGCONT of MongoDB and of
# Redis, a Redis restart, SIGKILL + restart of a gateway, SIGTERM + restart of another), then an
# audit (every acked comment delivered to every subscribed client exactly once, in order; no
# clientId acked under two seqs; every ping answered within 1 s except while the client's own
# instance was down) and the figures (clients, posts, deliveries, faults, longest stall, RSS).
#
#   scripts/chaos.sh                    # short schedule (the one `cargo nextest run --workspace`,
#                                       # i.e. scripts/test.sh, runs): 60 s of faults, 3 instances,
#                                       # 200 clients, 6 posts/s, a fault every 8 s
#   CHAOS_SECS=1800 scripts/chaos.sh    # long mode: 30 minutes, 2 instances, 2,000 clients,
#                                       # 20 posts/s, a fault every 60 s, RSS at 5 min and at the
#                                       # end of the load, and the growth between
#   CHAOS_SECS=600 scripts/chaos.sh     # the same for 10 minutes
#
# Other knobs (environment): CHAOS_CLIENTS, CHAOS_POSTERS, CHAOS_RATE, CHAOS_ROOMS,
# CHAOS_ROOMS_PER_CLIENT, CHAOS_INSTANCES, CHAOS_FAULT_EVERY, CHAOS_PING_MAX_MS, CHAOS_FAULTS
# (kinds in turn: mongo-stop,redis-stop,redis-restart,gw-kill,gw-term; default all).
#   CHAOS_SECS=1800 CHAOS_FAULTS=mongo-stop,redis-stop,redis-restart scripts/chaos.sh
#                                       # no gateway restarts: RSS growth over the whole run
# Runs of 600 s and more run a release build of the gateway (the clients stay in the test
# binary's dev profile; its dependencies are optimised). SecantusDB (Python) stores only a few
# dozen posts/s: keep CHAOS_RATE modest.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
scripts/test-deps.sh
PROFILE=()
DIR=debug
if [ "${CHAOS_SECS:-60}" -ge 600 ]; then PROFILE=(--release); DIR=release; fi
cargo build "${PROFILE[@]}" -p comments-gateway --bin comments-gateway
export CHAOS_GATEWAY_BIN="$CARGO_TARGET_DIR/$DIR/comments-gateway"
exec cargo nextest run -p comments-gateway --no-capture -E 'test(chaos)'
