//! The Prometheus recorder of a serving process, and the metrics only the process knows: its
//! build, its resources (from `/proc`) and its PostgreSQL pool.

use std::time::Duration;

use application::{Services, telemetry};
use http_api::MetricsEndpoint;
use metrics::{Unit, describe_counter, describe_gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::Config;

/// Build and version of the binary, always 1.
const BUILD_INFO: &str = "pg_analytics_build_info";
const POOL_MAX: &str = "pg_analytics_postgres_pool_max_connections";
const POOL_SIZE: &str = "pg_analytics_postgres_pool_connections";
const POOL_IN_USE: &str = "pg_analytics_postgres_pool_connections_in_use";
const POOL_WAITING: &str = "pg_analytics_postgres_pool_waiting";
const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
const CPU_SECONDS: &str = "process_cpu_seconds_total";
const OPEN_FDS: &str = "process_open_fds";
const MAX_FDS: &str = "process_max_fds";
const START_TIME: &str = "process_start_time_seconds";

/// How often histograms drop their expired samples.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Latency buckets, in seconds: sub-millisecond cache hits to minute-long commits.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Run duration buckets, in seconds: an incremental refresh to an hour-long rebuild.
const RUN_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Group commit sizes, in events.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Installs the process-wide recorder, unless `METRICS_ENABLED` is off (then every metric
/// costs nothing). Call it once, before the services record anything.
///
/// # Errors
/// When a recorder is installed already.
pub fn install(config: &Config) -> anyhow::Result<Option<PrometheusHandle>> {
    if !config.metrics.metrics_enabled {
        return Ok(None);
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(telemetry::RUN_DURATION.to_owned()),
            RUN_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(postgres_adapter::INGEST_BATCH_EVENTS.to_owned()),
            BATCH_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    metrics::gauge!(
        BUILD_INFO,
        "version" => config.app_version.clone(),
        "git_sha" => env!("PG_ANALYTICS_GIT_SHA"),
    )
    .set(1.0);
    if let Some(started) = process::start_time() {
        metrics::gauge!(START_TIME).set(started);
    }
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(Some(handle))
}

/// The `/metrics` endpoint of `services`, rendering through `handle`: the stores' gauges,
/// the process and the pool are read at each scrape.
pub fn endpoint(
    config: &Config,
    services: &Services,
    pool: Option<postgres_adapter::Pool>,
    handle: PrometheusHandle,
) -> MetricsEndpoint {
    let ports = &services.ports;
    let sampler = telemetry::Sampler::new(
        telemetry::SamplerPorts {
            queue: ports.queue.clone(),
            rollups: ports.rollups.clone(),
            tenants: ports.tenants.clone(),
            clock: ports.clock.clone(),
        },
        services.health.clone(),
        config.metrics.metrics_tenant_labels,
    );
    MetricsEndpoint::new(sampler, move || {
        process::sample();
        if let Some(pool) = &pool {
            sample_pool(pool);
        }
        handle.render()
    })
}

/// Serves `endpoint` alone on `METRICS_ADDR`, in a task of its own; the handle stops it.
///
/// # Errors
/// When the address cannot be bound.
pub fn serve_on(
    address: std::net::SocketAddr,
    endpoint: MetricsEndpoint,
) -> anyhow::Result<http_api::ServerHandle> {
    use anyhow::Context as _;
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("could not listen on {address} (METRICS_ADDR)"))?;
    let server = http_api::serve_metrics(listener, endpoint)
        .with_context(|| format!("could not serve metrics on {address}"))?;
    tracing::info!(%address, "metrics served at GET /metrics on METRICS_ADDR");
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

fn sample_pool(pool: &postgres_adapter::Pool) {
    let status = pool.status();
    metrics::gauge!(POOL_MAX).set(status.max_size as f64);
    metrics::gauge!(POOL_SIZE).set(status.size as f64);
    metrics::gauge!(POOL_IN_USE).set(status.size.saturating_sub(status.available) as f64);
    metrics::gauge!(POOL_WAITING).set(status.waiting as f64);
}

fn describe() {
    telemetry::describe();
    http_api::request_id::describe_metrics();
    postgres_adapter::describe_ingest_metrics();
    application::stream::describe_metrics();
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version and git_sha labels say which build runs."
    );
    describe_gauge!(
        POOL_MAX,
        Unit::Count,
        "PostgreSQL connections the pool may open (DATABASE_MAX_CONNECTIONS)."
    );
    describe_gauge!(
        POOL_SIZE,
        Unit::Count,
        "PostgreSQL connections the pool holds."
    );
    describe_gauge!(
        POOL_IN_USE,
        Unit::Count,
        "PostgreSQL connections taken from the pool."
    );
    describe_gauge!(
        POOL_WAITING,
        Unit::Count,
        "Tasks waiting for a PostgreSQL connection."
    );
    describe_gauge!(
        RESIDENT_MEMORY,
        Unit::Bytes,
        "Resident memory size of the process."
    );
    describe_counter!(
        CPU_SECONDS,
        Unit::Seconds,
        "User and system CPU time of the process, in whole seconds."
    );
    describe_gauge!(OPEN_FDS, Unit::Count, "Open file descriptors.");
    describe_gauge!(MAX_FDS, Unit::Count, "The limit of open file descriptors.");
    describe_gauge!(
        START_TIME,
        Unit::Seconds,
        "When the process started, in seconds since the Unix epoch."
    );
}

/// The process's resources, read from Linux's `/proc`; elsewhere they are left out.
mod process {
    use super::{CPU_SECONDS, MAX_FDS, OPEN_FDS, RESIDENT_MEMORY};

    /// Clock ticks per second of `/proc/<pid>/stat`: `USER_HZ`, 100 on every Linux ABI.
    const TICKS_PER_SECOND: u64 = 100;
    /// Bytes of a page, for the resident set of `/proc/self/statm`.
    const PAGE_BYTES: f64 = 4096.0;

    pub(super) fn sample() {
        if let Some(stat) = stat() {
            let ticks = stat.utime + stat.stime;
            metrics::counter!(CPU_SECONDS).absolute(ticks / TICKS_PER_SECOND);
        }
        if let Some(pages) = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<f64>().ok())
        {
            metrics::gauge!(RESIDENT_MEMORY).set(pages * PAGE_BYTES);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            metrics::gauge!(OPEN_FDS).set(fds.count() as f64);
        }
        if let Some(max) = max_fds() {
            metrics::gauge!(MAX_FDS).set(max);
        }
    }

    /// When the process started, in seconds since the epoch: the boot time plus its start
    /// in ticks since boot.
    pub(super) fn start_time() -> Option<f64> {
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
        Some(boot + stat()?.starttime as f64 / TICKS_PER_SECOND as f64)
    }

    struct Stat {
        utime: u64,
        stime: u64,
        starttime: u64,
    }

    fn stat() -> Option<Stat> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name, field 2, is in parentheses and may hold spaces: count after it.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // Fields 14, 15 and 22 of proc(5), the first after the name being field 3.
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
        })
    }

    fn max_fds() -> Option<f64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse().ok()
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_process_reads_itself_on_linux() {
            if cfg!(target_os = "linux") {
                let stat = super::stat().expect("/proc/self/stat parses");
                assert!(stat.starttime > 0);
                assert!(super::max_fds().is_some_and(|max| max > 0.0));
                assert!(super::start_time().is_some_and(|t| t > 1.0e9));
            }
        }
    }
}
