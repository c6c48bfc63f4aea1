//! What the service measures, named by the Prometheus conventions (`pg_analytics_` prefix,
//! base units, `_total` counters).
//!
//! Counters and histograms are recorded through the `metrics` facade where things happen; they
//! cost nothing until the binary installs a recorder. Gauges that describe stored state (the
//! run backlog, freshness, whether a dependency answers) are read by [`Sampler`] when metrics
//! are scraped, so an idle process asks its stores nothing.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use domain::{Actor, IngestOutcome, IngestStatus, RecomputeRun, TenantId};
use time::OffsetDateTime;

use crate::{
    health::HealthService,
    ports::{Clock, DependencyStatus, RollupStore, RunQueue, StoreError, TenantStore},
};

/// Events by outcome: `accepted`, `duplicate`, `conflict`, `rejected` (invalid requests).
pub const INGEST_EVENTS: &str = "pg_analytics_ingest_events_total";
/// Finished runs by `kind` (`recompute` asked for, `refresh` scheduled), `mode` and `outcome`.
pub const RUNS: &str = "pg_analytics_runs_total";
/// How long runs took, claim to outcome, by `kind` and `mode`.
pub const RUN_DURATION: &str = "pg_analytics_run_duration_seconds";
/// Triggers refused because their scope was locked or had an active run.
pub const RUN_LOCK_CONFLICTS: &str = "pg_analytics_run_lock_conflicts_total";
/// Pending runs, across every process.
pub const RUN_QUEUE_PENDING: &str = "pg_analytics_run_queue_pending";
/// How long the oldest pending run has waited.
pub const RUN_QUEUE_OLDEST_AGE: &str = "pg_analytics_run_queue_oldest_pending_age_seconds";
/// Report result lookups by `tier` (`local`, `shared`, `replay`) and `result` (`hit`, `miss`).
pub const CACHE_REQUESTS: &str = "pg_analytics_cache_requests_total";
/// How long a snapshot read (a cache miss) took.
pub const SNAPSHOT_READ_DURATION: &str = "pg_analytics_snapshot_read_duration_seconds";
/// Per report and window, how long the oldest change not yet counted has waited.
pub const FRESHNESS_LAG: &str = "pg_analytics_freshness_lag_seconds";
/// Per report and window, how many buckets wait for a refresh.
pub const FRESHNESS_DIRTY_BUCKETS: &str = "pg_analytics_freshness_dirty_buckets";
/// 1 when PostgreSQL answers, else 0; absent without `DATABASE_URL`.
pub const POSTGRES_UP: &str = "pg_analytics_postgres_up";
/// 1 when Redis answers, else 0; absent without `REDIS_URL`.
pub const REDIS_UP: &str = "pg_analytics_redis_up";

/// Gives every metric of the use cases its help text and unit, for the exposition.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        INGEST_EVENTS,
        Unit::Count,
        "Events by outcome: accepted (stored), duplicate (a retry), conflict (an event id reused with another body), rejected (refused as invalid)."
    );
    describe_counter!(
        RUNS,
        Unit::Count,
        "Finished runs by kind (recompute asked for, refresh scheduled), mode and outcome."
    );
    describe_histogram!(
        RUN_DURATION,
        Unit::Seconds,
        "How long runs took, from claim to outcome, by kind and mode."
    );
    describe_counter!(
        RUN_LOCK_CONFLICTS,
        Unit::Count,
        "Triggers refused because their scope was locked or had an active run."
    );
    describe_gauge!(
        RUN_QUEUE_PENDING,
        Unit::Count,
        "Runs waiting in the queue, across every process."
    );
    describe_gauge!(
        RUN_QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "How long the oldest pending run has waited; 0 when none waits."
    );
    describe_counter!(
        CACHE_REQUESTS,
        Unit::Count,
        "Report result lookups by tier (local, shared, replay) and result (hit, miss)."
    );
    describe_histogram!(
        SNAPSHOT_READ_DURATION,
        Unit::Seconds,
        "How long a report read from the snapshots (a cache miss) took."
    );
    describe_gauge!(
        FRESHNESS_LAG,
        Unit::Seconds,
        "Per report and window, the age of the oldest change not yet counted in its snapshots."
    );
    describe_gauge!(
        FRESHNESS_DIRTY_BUCKETS,
        Unit::Count,
        "Per report and window, the buckets waiting for a refresh."
    );
    describe_gauge!(
        POSTGRES_UP,
        "1 when PostgreSQL answers, else 0; absent without DATABASE_URL."
    );
    describe_gauge!(
        REDIS_UP,
        "1 when Redis answers, else 0; absent without REDIS_URL."
    );
}

/// Counts the outcomes of stored events.
pub(crate) fn ingested(outcomes: &[IngestOutcome]) {
    let (mut accepted, mut duplicate, mut conflict) = (0, 0, 0);
    for outcome in outcomes {
        match outcome.status {
            IngestStatus::Created => accepted += 1,
            IngestStatus::Duplicate => duplicate += 1,
            IngestStatus::Conflict => conflict += 1,
        }
    }
    for (outcome, count) in [
        ("accepted", accepted),
        ("duplicate", duplicate),
        ("conflict", conflict),
    ] {
        if count > 0 {
            metrics::counter!(INGEST_EVENTS, "outcome" => outcome).increment(count);
        }
    }
}

/// Counts the events of a refused request (nothing of it was stored).
pub(crate) fn rejected(events: usize) {
    metrics::counter!(INGEST_EVENTS, "outcome" => "rejected").increment(events as u64);
}

/// Counts a finished run and how long it ran.
pub(crate) fn run_finished(run: &RecomputeRun, seconds: f64) {
    let kind = if run.requested_by.as_str() == Actor::SCHEDULER {
        "refresh"
    } else {
        "recompute"
    };
    let outcome = run.status.as_str();
    let mode = run.mode.as_str();
    metrics::counter!(RUNS, "kind" => kind, "mode" => mode, "outcome" => outcome).increment(1);
    metrics::histogram!(RUN_DURATION, "kind" => kind, "mode" => mode).record(seconds);
}

/// Counts a trigger refused because its scope is busy.
pub(crate) fn lock_conflict() {
    metrics::counter!(RUN_LOCK_CONFLICTS).increment(1);
}

/// Counts one lookup of a report result in a cache tier.
pub fn cache_lookup(tier: &'static str, hit: bool) {
    thread_local! {
        // A hit is the cheapest read there is: its counter is looked up once per thread.
        static LOOKUPS: std::cell::RefCell<HashMap<(&'static str, bool), metrics::Counter>> =
            std::cell::RefCell::default();
    }
    LOOKUPS.with(|lookups| {
        lookups
            .borrow_mut()
            .entry((tier, hit))
            .or_insert_with(|| {
                let result = if hit { "hit" } else { "miss" };
                metrics::counter!(CACHE_REQUESTS, "tier" => tier, "result" => result)
            })
            .increment(1);
    });
}

/// Records how long a snapshot read took.
pub(crate) fn snapshot_read(seconds: f64) {
    metrics::histogram!(SNAPSHOT_READ_DURATION).record(seconds);
}

/// The labels of one freshness series: report and window, and tenant when asked for.
type LabelSet = Vec<(&'static str, String)>;

/// The first day a dirty bucket may start on, for the whole backlog: year 1, which every
/// store's dates can hold (PostgreSQL's reach back to 4713 BC, not to `Date::MIN`).
const EARLIEST: time::Date = time::macros::date!(0001 - 01 - 01);

/// The stores the [`Sampler`] reads.
#[derive(Clone)]
pub struct SamplerPorts {
    pub queue: Arc<dyn RunQueue>,
    pub rollups: Arc<dyn RollupStore>,
    pub tenants: Arc<dyn TenantStore>,
    pub clock: Arc<dyn Clock>,
}

/// Sets the gauges that describe stored state, when metrics are scraped.
#[derive(Clone)]
pub struct Sampler {
    ports: SamplerPorts,
    health: HealthService,
    tenant_labels: bool,
    /// The label sets of the freshness gauges set before, so that a scope that caught up
    /// reads 0 rather than its last lag.
    seen: Arc<Mutex<HashSet<LabelSet>>>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("tenant_labels", &self.tenant_labels)
            .finish_non_exhaustive()
    }
}

impl Sampler {
    /// A sampler of `ports` and `health`; with `tenant_labels` the freshness gauges are per
    /// tenant (a `tenant` label with its slug), else the worst of all tenants.
    pub fn new(ports: SamplerPorts, health: HealthService, tenant_labels: bool) -> Self {
        Self {
            ports,
            health,
            tenant_labels,
            seen: Arc::default(),
        }
    }

    /// Reads the backlog, the freshness of every rollup and the dependencies, and sets their
    /// gauges. A store that cannot be read leaves its gauges as they were (the dependency's
    /// `_up` gauge says why).
    pub async fn sample(&self) {
        self.sample_stores().await;
        let health = self.health.check().await;
        for (name, status) in [(POSTGRES_UP, health.postgres), (REDIS_UP, health.redis)] {
            match status {
                DependencyStatus::Ok => metrics::gauge!(name).set(1.0),
                DependencyStatus::Unavailable => metrics::gauge!(name).set(0.0),
                DependencyStatus::NotConfigured => {}
            }
        }
    }

    async fn sample_stores(&self) {
        let now = self.ports.clock.now();
        if let Ok(backlog) = self.ports.queue.backlog().await {
            metrics::gauge!(RUN_QUEUE_PENDING).set(backlog.pending as f64);
            let age = backlog
                .oldest_requested_at
                .map_or(0.0, |oldest| seconds_since(oldest, now));
            metrics::gauge!(RUN_QUEUE_OLDEST_AGE).set(age);
        }
        if let Ok(scopes) = self.freshness(now).await {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let current: HashSet<_> = scopes.keys().cloned().collect();
            for stale in seen.difference(&current) {
                metrics::gauge!(FRESHNESS_LAG, to_labels(stale)).set(0.0);
                metrics::gauge!(FRESHNESS_DIRTY_BUCKETS, to_labels(stale)).set(0.0);
            }
            for (labels, (lag, buckets)) in &scopes {
                metrics::gauge!(FRESHNESS_LAG, to_labels(labels)).set(*lag);
                metrics::gauge!(FRESHNESS_DIRTY_BUCKETS, to_labels(labels)).set(*buckets as f64);
            }
            seen.extend(current);
        }
    }

    /// Per label set (report and window, and tenant when asked for), the lag and the dirty
    /// buckets: the worst lag and the sum of buckets over the tenants folded together.
    async fn freshness(
        &self,
        now: OffsetDateTime,
    ) -> Result<HashMap<LabelSet, (f64, u64)>, StoreError> {
        let scopes = self
            .ports
            .rollups
            .dirty_scopes(EARLIEST, now.date())
            .await?;
        let slugs: HashMap<TenantId, String> = if self.tenant_labels && !scopes.is_empty() {
            match self.ports.tenants.list().await {
                Ok(tenants) => tenants
                    .into_iter()
                    .map(|t| (t.id, t.slug.to_string()))
                    .collect(),
                Err(err) => return Err(StoreError::Unavailable(err.into())),
            }
        } else {
            HashMap::new()
        };
        let mut folded: HashMap<LabelSet, (f64, u64)> = HashMap::new();
        for scope in scopes {
            let mut labels = vec![
                ("report", scope.report.to_string()),
                ("window", scope.window.as_str().to_owned()),
            ];
            if self.tenant_labels {
                let slug = slugs
                    .get(&scope.tenant)
                    .cloned()
                    .unwrap_or_else(|| scope.tenant.to_string());
                labels.push(("tenant", slug));
            }
            let entry = folded.entry(labels).or_default();
            entry.0 = entry.0.max(seconds_since(scope.oldest, now));
            entry.1 += scope.buckets;
        }
        Ok(folded)
    }
}

fn to_labels(labels: &[(&'static str, String)]) -> Vec<metrics::Label> {
    labels
        .iter()
        .map(|(key, value)| metrics::Label::new(*key, value.clone()))
        .collect()
}

fn seconds_since(then: OffsetDateTime, now: OffsetDateTime) -> f64 {
    (now - then).as_seconds_f64().max(0.0)
}
