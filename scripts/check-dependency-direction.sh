#!/usr/bin/env bash
# Fails when the domain or application crate reaches an infrastructure crate through normal
# (non-dev) dependencies: the hexagon's core must stay free of drivers and frameworks.
set -euo pipefail
cd "$(dirname "$0")/.."

forbidden='^(tokio-postgres|postgres-types|postgres-protocol|deadpool[a-z-]*|redis|actix-web|actix-http|refinery[a-z-]*|mockall)$'
status=0
for package in pg-analytics-domain pg-analytics-application; do
  reached=$(cargo tree --package "$package" --edges normal --prefix none --format '{p}' \
    | awk '{print $1}' | sort -u | grep -E "$forbidden" || true)
  if [ -n "$reached" ]; then
    echo "error: $package reaches forbidden crates through normal dependencies:" >&2
    echo "$reached" | sed 's/^/  - /' >&2
    status=1
  else
    echo "ok: $package reaches none of tokio-postgres, redis, deadpool, actix-web, refinery, mockall"
  fi
done
exit "$status"
