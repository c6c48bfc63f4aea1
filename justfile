# pg-analytics recipes. `just` lists them; CI runs `just ci` (see .ci/run).

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Run the service on the embedded in-memory default (release build).
run:
    cargo run --release

# Seed the demo data set (add `--reset` to start over).
seed *ARGS:
    cargo run --release -- seed {{ARGS}}

# The README's test command: every unit, service, contract and HTTP test of the workspace.
test:
    cargo test --workspace

# The fault tests: each runs PostgreSQL and Redis servers of its own (initdb, pg_ctl,
# redis-server) and kills, stops and restarts them around the real binary.
test-faults:
    cargo test -p pg-analytics --features fault-tests --test faults -- --test-threads=1

# The OTLP span export (the binary's `otlp` feature) against a fake collector.
test-otlp:
    cargo test -p pg-analytics --features otlp --test otlp

# Fuzz the parsers of untrusted input (event bodies, query strings) for SECS seconds each
# (not in CI). cargo-fuzz runs on the stable toolchain here (RUSTC_BOOTSTRAP) without a
# sanitizer: the code forbids `unsafe`, so a panic is what there is to find. A crash lands in
# fuzz/artifacts/<target>/; turn it into a unit test beside the parser.
fuzz SECS="60":
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    for target in event_parser query_strings; do \
        mkdir -p fuzz/corpus/$target; \
        RUSTC_BOOTSTRAP=1 cargo fuzz run -O --sanitizer none $target fuzz/corpus/$target fuzz/seeds/$target -- -max_total_time={{SECS}}; \
    done

# The server against its own OpenAPI document: schemathesis, every check, for the anonymous,
# API-key and management-key callers (EXAMPLES per operation, default 100).
test-api:
    ./scripts/schemathesis.sh

# The dashboard in headless Chromium against the real binary, on the embedded default and on
# PostgreSQL; screenshots in target/browser/. Skips with a notice without chromium (apt-get
# install chromium), unless CI=true.
test-browser:
    ./scripts/browser-tests.sh

# Regenerate the README's screenshot of the dashboard (from the browser tests' screenshots).
screenshot: test-browser
    cp "${CARGO_TARGET_DIR:-target}/browser/embedded-overview-1280.png" docs/images/dashboard.png

# Format the code.
fmt:
    cargo fmt --all

# Formatting, clippy with warnings denied, and the dependency direction.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --all-features -- -D warnings
    ./scripts/check-dependency-direction.sh

# Fail if domain or application reach an infrastructure crate.
deps:
    ./scripts/check-dependency-direction.sh

# Measure the service against COPY, bare SQL and a trivial endpoint (see docs/benchmarks.md).
# Needs PostgreSQL and Redis; pass `--quick` for a short run, `--events N` for another size.
bench *ARGS:
    command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
    cargo build --release --bins
    "${CARGO_TARGET_DIR:-target}/release/pg-analytics-bench" --binary "${CARGO_TARGET_DIR:-target}/release/pg-analytics" {{ARGS}}

# Start the local stack (postgres, redis, api, prometheus) in the background, rebuilding the images.
up:
    docker compose up -d --build

# Stop the local stack and remove its containers (the pgdata volume is kept).
down:
    docker compose down

# Follow the local stack's logs, of every service or of those named (`just logs api`).
logs *ARGS:
    docker compose logs -f {{ARGS}}

# The local stack's database is postgres://postgres:postgres@localhost:5432/pg_analytics.
# Apply pending migrations to the database at DATABASE_URL.
migrate:
    cargo run --release -- migrate

# A psql shell on the local stack's database.
psql:
    docker compose exec postgres psql -U postgres -d pg_analytics

# Check the alerting rules and their tests, the Prometheus configuration and the Grafana dashboard.
check-prometheus:
    ./scripts/check-prometheus.sh

# Everything CI checks: lint, the tests, the fault tests, the alerting rules and dashboard,
# the API against its document, then the dashboard in a browser.
test-all: lint test test-faults test-otlp check-prometheus test-api test-browser

# What .ci/run executes.
ci: test-all
