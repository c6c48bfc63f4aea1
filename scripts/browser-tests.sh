#!/usr/bin/env bash
# The dashboard in headless Chromium (Debian's `chromium`, driven by playwright-core) against
# the real binary: once on the embedded default, once on PostgreSQL (a database of its own,
# seeded at start). Screenshots of every page at 1280 and 390 px go to target/browser/.
# Without chromium or node it skips with a notice, unless CI=true.
#
#   BINARY=target/release/pg-analytics scripts/browser-tests.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if [ -z "$CHROMIUM" ] || ! command -v npm >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    echo "the browser tests need chromium and node (apt-get install chromium nodejs npm)"
    exit 1
  fi
  echo "skipping the browser tests: no chromium or npm here (apt-get install chromium)"
  exit 0
fi

TARGET="${CARGO_TARGET_DIR:-target}"
BINARY="${BINARY:-$TARGET/debug/pg-analytics}"
[ -x "$BINARY" ] || cargo build --bin pg-analytics
SHOTS="$TARGET/browser"
mkdir -p "$SHOTS"
KEY=browser-management-key-0001
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

PID=""
DATABASE=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  if [ -n "$DATABASE" ]; then
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# Runs the tests against a server started with the environment given, labelled $1.
run() {
  local label=$1
  shift
  local port log
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  log="$SHOTS/$label-server.log"
  env "$@" MANAGEMENT_API_KEY=$KEY APP_HOST=127.0.0.1 APP_PORT="$port" LOG_FORMAT=json \
    RUST_LOG=warn "$BINARY" serve >"$log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$port/api/v1/health" >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$log"; echo "the server exited"; exit 1; }
    sleep 0.1
  done
  echo "== browser tests on $label"
  (cd tests/browser && BASE="http://127.0.0.1:$port" MANAGEMENT_KEY=$KEY CHROMIUM="$CHROMIUM" \
    SHOTS="$(cd ../.. && pwd)/$SHOTS" LABEL="$label" npm test --silent)
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
}

run embedded

if psql -h 127.0.0.1 -U postgres -Atc "SELECT 1" >/dev/null 2>&1; then
  DATABASE="pga_browser_$$"
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $DATABASE" >/dev/null
  run postgres DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DATABASE" APP_AUTO_SEED=true
elif [ "${CI:-}" = "true" ]; then
  echo "the browser tests need PostgreSQL at 127.0.0.1:5432"
  exit 1
else
  echo "skipping the browser tests on PostgreSQL: no server at 127.0.0.1:5432"
fi
echo "screenshots in $SHOTS"
