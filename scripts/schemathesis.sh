#!/usr/bin/env bash
# Checks the server against its own OpenAPI document with schemathesis, every check enabled,
# three times: as an anonymous caller, with an API key of the default tenant and with the
# management key, on the embedded default. Rules a schema cannot state are listed, with the
# reason, in schemathesis.toml. Exits non-zero on the first failing caller. One worker: with
# two, CPython 3.11 has been seen to fail inside schemathesis itself.
#
#   BINARY=target/release/pg-analytics EXAMPLES=300 scripts/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.32.5
BINARY="${BINARY:-${CARGO_TARGET_DIR:-target}/debug/pg-analytics}"
EXAMPLES="${EXAMPLES:-100}"
VENV="${CARGO_TARGET_DIR:-target}/schemathesis-venv"
KEY=schemathesis-management-key-0001
LOG="${CARGO_TARGET_DIR:-target}/schemathesis-server.log"

if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version | grep -q "$VERSION"; then
  echo "installing schemathesis $VERSION (PyPI) into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi
[ -x "$BINARY" ] || cargo build --bin pg-analytics

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
MANAGEMENT_API_KEY=$KEY APP_HOST=127.0.0.1 APP_PORT=$PORT LOG_FORMAT=json RUST_LOG=warn \
  HTTP_MAX_CONNECTIONS_PER_CLIENT=0 "$BINARY" serve >"$LOG" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true' EXIT

for _ in $(seq 1 300); do
  curl -fs "$BASE/api/v1/health" >/dev/null 2>&1 && break
  kill -0 "$PID" 2>/dev/null || { cat "$LOG"; echo "the server exited"; exit 1; }
  sleep 0.1
done
API_KEY=$(grep -o '"api_key":"pga_[0-9a-f]*"' "$LOG" | head -n 1 | cut -d '"' -f 4)
[ -n "$API_KEY" ] || { cat "$LOG"; echo "no API key in the server's log"; exit 1; }

for caller in anonymous api-key management-key; do
  headers=()
  case $caller in
    api-key) headers=(-H "X-API-Key: $API_KEY") ;;
    management-key) headers=(-H "X-Management-Key: $KEY") ;;
  esac
  echo "== schemathesis as the $caller caller"
  "$VENV/bin/st" run "$BASE/api/v1/openapi.json" --url "$BASE" --checks all \
    --max-examples "$EXAMPLES" --seed 1 --workers 1 --no-color "${headers[@]}"
done
kill -0 "$PID" 2>/dev/null || { echo "the server died during the run"; exit 1; }
