#!/usr/bin/env bash
# Checks the monitoring files: the alerting rules (promtool check rules), their unit tests
# (promtool test rules), the Prometheus configuration (promtool check config), and the Grafana
# dashboard (valid JSON, schemaVersion 39, the ${DS_PROMETHEUS} data source, and every panel
# query parsed as PromQL by promtool). Exits non-zero on the first failure.
#
# Needs promtool (Debian package `prometheus`). With CI=true a missing promtool is installed;
# otherwise the script says how to install it and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

PROMETHEUS_DIR=deploy/prometheus
DASHBOARD=deploy/grafana/pg-analytics.json

if ! command -v promtool >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    echo "promtool is missing: installing the Debian package prometheus"
    if [ "$(id -u)" = "0" ]; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
    else
      sudo apt-get update -qq
      sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
    fi
  else
    echo "error: promtool not found." >&2
    echo "Install it with 'sudo apt-get install -y --no-install-recommends prometheus' (Debian/Ubuntu)" >&2
    echo "or from a Prometheus release archive, which ships promtool next to prometheus." >&2
    exit 1
  fi
fi
command -v python3 >/dev/null 2>&1 || { echo "error: python3 not found" >&2; exit 1; }

echo "== promtool check rules"
promtool check rules "$PROMETHEUS_DIR/alerts.yml"

echo "== promtool test rules"
promtool test rules "$PROMETHEUS_DIR/alerts_test.yml"

# rule_files in prometheus.yml is relative to the file, as in the container (/etc/prometheus).
echo "== promtool check config"
promtool check config "$PROMETHEUS_DIR/prometheus.yml"

echo "== Grafana dashboard"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$DASHBOARD" "$work/dashboard_queries.yml" <<'PY'
import json
import sys

path, rules_out = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        dashboard = json.load(f)
except (OSError, json.JSONDecodeError) as err:
    sys.exit(f"error: {path}: {err}")

problems = []
if dashboard.get("schemaVersion") != 39:
    problems.append(f"schemaVersion is {dashboard.get('schemaVersion')!r}, expected 39")
variables = dashboard.get("templating", {}).get("list", [])
if not any(v.get("name") == "DS_PROMETHEUS" and v.get("type") == "datasource" for v in variables):
    problems.append("no templating variable DS_PROMETHEUS of type datasource")

panels = []
for panel in dashboard.get("panels", []):
    panels.append(panel)
    panels.extend(panel.get("panels", []))  # the panels of a collapsed row

ids = [p.get("id") for p in panels]
if len(ids) != len(set(ids)):
    problems.append("panel ids are not unique")

exprs = []
for panel in panels:
    if panel.get("type") == "row":
        continue
    uid = panel.get("datasource", {}).get("uid")
    if uid != "${DS_PROMETHEUS}":
        problems.append(f"panel {panel.get('title')!r}: datasource uid {uid!r}, expected ${{DS_PROMETHEUS}}")
    targets = panel.get("targets", [])
    if not targets:
        problems.append(f"panel {panel.get('title')!r} has no query")
    for target in targets:
        exprs.append((panel.get("id"), panel.get("title"), target.get("refId"), target.get("expr", "")))

if problems:
    sys.exit("error: " + path + ":\n  " + "\n  ".join(problems))

# Grafana's variables replaced by values of the same type, so that promtool parses the queries
# as recording rules.
with open(rules_out, "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for panel_id, title, ref, expr in exprs:
        expr = (expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
                .replace("$__range", "1h").replace("$instance", ".*"))
        out.write(f"      # {title} / {ref}\n")
        out.write(f"      - record: dashboard:panel_{panel_id}_{ref}\n")
        out.write(f"        expr: {json.dumps(expr)}\n")
print(f"  {path}: valid JSON, {len(panels)} panels, {len(exprs)} queries")
PY
promtool check rules "$work/dashboard_queries.yml" >/dev/null || {
  echo "error: a query of $DASHBOARD does not parse: dashboard:panel_<id>_<refId> above names" >&2
  echo "the panel id and the query's refId" >&2
  exit 1
}
echo "  every dashboard query parses"

echo "monitoring files OK"
