//! Typed configuration, declared once: each setting is a field named after its environment
//! variable, which clap reads (or the matching `--flag`, which wins), checks against its rule and
//! lists with its default in `pg-analytics --help`. `.env.example` is checked against these
//! declarations by a test.
//!
//! An invalid value stops the process with an error naming the variable, never a silent
//! default. A variable set to an empty value counts as unset.

use std::{ffi::OsStr, net::IpAddr, ops::RangeInclusive, time::Duration};

use clap::{
    ArgAction, Args, Command, FromArgMatches,
    builder::{BoolishValueParser, RangedU64ValueParser, TypedValueParser},
    error::{ContextKind, ContextValue, ErrorKind},
};

/// A secret that never prints itself (`secrecy`): a URL with its password, a key.
pub use secrecy::SecretString as Secret;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// An invalid configuration value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: String,
    pub message: String,
}

impl ConfigError {
    fn new(variable: &str, message: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            message: message.into(),
        }
    }
}

impl From<clap::Error> for ConfigError {
    fn from(err: clap::Error) -> Self {
        // The argument reads `--app-port <APP_PORT>`: the value name is the variable.
        let variable = match err.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(arg)) => arg
                .split_once('<')
                .and_then(|(_, rest)| rest.strip_suffix('>'))
                .unwrap_or(arg)
                .to_owned(),
            _ => String::new(),
        };
        Self {
            variable,
            message: err.render().to_string().trim().to_owned(),
        }
    }
}

/// Where the management key came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ManagementKeySource {
    Environment,
    /// Generated at start-up because none was set in embedded mode.
    Generated,
    /// None was set, and the process has a database: it may run commands, not serve.
    #[default]
    Missing,
}

/// The HTTP server and what it allows each client.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpConfig {
    /// The IP address to listen on.
    #[arg(long, env, default_value = "0.0.0.0")]
    pub app_host: IpAddr,
    /// The port to listen on, 1 to 65535.
    #[arg(long, env, default_value = "3004", value_parser = clap::value_parser!(u16).range(1..))]
    pub app_port: u16,
    /// Threads serving HTTP, 1 to 256 [default: the number of CPUs].
    #[arg(long, env, value_parser = between::<usize>(1..=256))]
    pub http_workers: Option<usize>,
    /// Seconds a client has to send its request head, 1 to 3600; past it a 408.
    #[arg(long, env, default_value = "30", value_parser = seconds(1..=3600))]
    pub http_request_timeout_secs: Duration,
    /// Seconds a client has to send a body a route reads, 1 to 3600; past it a 408.
    #[arg(long, env, default_value = "30", value_parser = seconds(1..=3600))]
    pub http_body_timeout_secs: Duration,
    /// Connections one client address may hold open, 0 to 1000000 (0: no limit; raise it
    /// behind a proxy); beyond it a 429.
    #[arg(long, env, default_value = "256", value_parser = between::<usize>(0..=1_000_000))]
    pub http_max_connections_per_client: usize,
    /// Seconds an idle keep-alive connection stays open, 0 to 3600 (0: no keep-alive).
    #[arg(long, env, default_value = "75", value_parser = seconds(0..=3600))]
    pub http_keep_alive_secs: Duration,
    /// Seconds a shutdown (SIGTERM, SIGINT) may take, 0 to 3600: in-flight requests and
    /// ingestion commits finish, then recompute workers finish their run; a run still going
    /// when it is up goes back to the queue once its lease expires.
    #[arg(long, env, default_value = "30", value_parser = seconds(0..=3600))]
    pub shutdown_timeout_secs: Duration,
    /// Requests per second allowed to each API key, 0 to 100000 (a token bucket per key, in each
    /// process; 0: no limit).
    #[arg(long, env, default_value = "0", value_parser = per_second)]
    pub rate_limit_per_second: f64,
    /// Requests an API key may make at once before the rate applies, 1 to 1000000.
    #[arg(long, env, default_value = "100", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit_burst: u32,
    /// MiB of report cache hit bodies kept and sent again to the same request while the
    /// version, TTL and UTC day hold, a second at most; 0 to 4096 (0: every read runs).
    #[arg(long, env, default_value = "16", value_parser = mebibytes())]
    pub report_replay_mb: usize,
}

impl HttpConfig {
    /// `HTTP_WORKERS`, or the number of CPUs.
    pub fn workers(&self) -> usize {
        self.http_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// `RATE_LIMIT_PER_SECOND`, unless it is 0 (off).
    pub fn rate_limit(&self) -> Option<f64> {
        (self.rate_limit_per_second > 0.0).then_some(self.rate_limit_per_second)
    }
}

/// PostgreSQL, and what the process does to it at start-up.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "PostgreSQL")]
pub struct DatabaseConfig {
    /// A postgres:// URL. Without it the service runs on the embedded in-memory default, seeded
    /// with the demo data set; nothing is persisted.
    #[arg(long, env, hide_env_values = true, value_parser = SecretParser(url_of_postgres))]
    pub database_url: Option<Secret>,
    /// The pool size of this process, 1 to 1000.
    #[arg(long, env, default_value = "16", value_parser = between::<usize>(1..=1000))]
    pub database_max_connections: usize,
    /// Seconds to wait for a pool connection before answering 503, 1 to 300.
    #[arg(long, env, default_value = "5", value_parser = seconds(1..=300))]
    pub database_acquire_timeout_secs: Duration,
    /// The server-side limit of one statement in seconds, 1 to 86400.
    #[arg(long, env, default_value = "600", value_parser = seconds(1..=86_400))]
    pub database_statement_timeout_secs: Duration,
    /// Gathered ingestion transactions written at once, each on a connection of its own
    /// besides the pool, 1 to 64.
    #[arg(long, env, default_value_t = postgres_adapter::PostgresEventStore::DEFAULT_WRITERS, value_parser = between::<usize>(1..=64))]
    pub ingest_writers: usize,
    /// Apply pending migrations at start-up.
    #[arg(long, env, default_value = "true", action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub app_auto_migrate: bool,
    /// Seed an empty database at start-up (always on in embedded mode).
    #[arg(long, env, default_value = "false", action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub app_auto_seed: bool,
    /// Demo events an automatic seed writes, 1 to 100000000.
    #[arg(long, env, default_value = "25000", value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub app_seed_events: u64,
}

/// The response cache, its versions and the scope locks: Redis, or this process.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cache and Redis")]
pub struct CacheConfig {
    /// A redis:// URL. Without it the response cache, its versions and the recompute locks are
    /// in this process.
    #[arg(long, env, hide_env_values = true, value_parser = SecretParser(url_of_redis))]
    pub redis_url: Option<Secret>,
    /// Prepended to every key, to share one Redis between deployments.
    #[arg(long, env, default_value = "")]
    pub redis_key_prefix: String,
    /// Milliseconds one Redis command may take, 10 to 10000.
    #[arg(long, env, default_value = "250", value_parser = millis(10..=10_000))]
    pub redis_command_timeout_ms: Duration,
    /// Milliseconds to leave a failed Redis alone (serving without it) before trying again,
    /// 50 to 60000.
    #[arg(long, env, default_value = "1000", value_parser = millis(50..=60_000))]
    pub redis_retry_after_ms: Duration,
    /// Connections to Redis, 1 to 1000.
    #[arg(long, env, default_value = "16", value_parser = between::<usize>(1..=1000))]
    pub redis_max_connections: usize,
    /// MiB of decoded report results this process holds in front of Redis, each until its TTL
    /// ends, 0 to 4096 (0: ask Redis on every read, the report's version included).
    #[arg(long, env, default_value = "32", value_parser = mebibytes())]
    pub redis_local_cache_mb: usize,
    /// Without REDIS_URL: MiB of report results cached in this process, those read least out first,
    /// 0 to 4096 (0: cache none).
    #[arg(long, env, default_value_t = memory_adapter::cache::DEFAULT_CAPACITY >> 20, value_parser = mebibytes())]
    pub response_cache_mb: usize,
}

/// Reports and recompute runs.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Reports and recomputes")]
pub struct RecomputeConfig {
    /// The longest date range a report or a recompute may cover, in days, 1 to 3660.
    #[arg(long, env, default_value = "366", value_parser = clap::value_parser!(u32).range(1..=3660))]
    pub max_report_range_days: u32,
    /// How many reports (rollup definitions) a tenant may define, 1 to 1000.
    #[arg(long, env, default_value = "20", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_reports_per_tenant: u32,
    /// Seconds a scope lock of a recompute lasts, 1 to 86400.
    #[arg(long, env, default_value = "900", value_parser = seconds(1..=86_400))]
    pub recompute_lock_ttl_secs: Duration,
    /// Recompute workers in this process, 0 to 64 (0: this process never runs recomputes).
    #[arg(long, env, default_value = "1", value_parser = between::<usize>(0..=64))]
    pub recompute_workers: usize,
    /// Runs that may wait in the queue, 1 to 100000; beyond it a trigger is refused with 503.
    #[arg(long, env, default_value = "64", value_parser = between::<usize>(1..=100_000))]
    pub recompute_queue_size: usize,
    /// Seconds a claimed run survives its worker's silence before it is retried, 3 to 3600.
    #[arg(long, env, default_value = "60", value_parser = seconds(3..=3600))]
    pub recompute_lease_secs: Duration,
    /// Milliseconds between an idle worker's looks for runs queued elsewhere, 50 to 60000.
    #[arg(long, env, default_value = "1000", value_parser = millis(50..=60_000))]
    pub recompute_poll_interval_ms: Duration,
    /// Seconds, 1 to 86400: replaces every report window's refresh interval (for demos and
    /// tests; unset keeps each window's `refresh_interval_minutes`).
    #[arg(long, env, value_parser = seconds(1..=86_400))]
    pub refresh_interval_override_secs: Option<Duration>,
    /// Seconds, 1 to 3600: the buckets holding the current day are refreshed at most about this
    /// long after their first uncounted event, whatever the interval (unset: no target).
    #[arg(long, env, value_parser = seconds(1..=3600))]
    pub freshness_target_secs: Option<Duration>,
    /// Days, 1 to 36600: raw events older than this and than every retention of the tenant's
    /// reports are deleted by the scheduler (unset: events are kept).
    #[arg(long, env, value_parser = clap::value_parser!(u32).range(1..=36_600))]
    pub event_retention_days: Option<u32>,
}

/// The operator's key and what the process remembers of API keys.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Access")]
pub struct AccessConfig {
    /// The operator's key for the management routes, at least 16 characters. Required to serve
    /// with DATABASE_URL (the one-shot commands run without it); in embedded mode a random one
    /// is generated and logged at start-up.
    #[arg(long, env, hide_env_values = true, value_parser = SecretParser(long_enough_key))]
    management_api_key: Option<Secret>,
    /// Seconds a key lookup is reused, 0 to 3600: the longest a revocation made by another
    /// process takes to reach this one (0: look every key up).
    #[arg(long, env, default_value = "30", value_parser = seconds(0..=3600))]
    pub api_key_cache_secs: Duration,
    /// Seconds, 0 to 86400: while the key store is unreachable, keys this process verified this
    /// recently are still accepted (0: refuse them).
    #[arg(long, env, default_value = "900", value_parser = seconds(0..=86_400))]
    pub api_key_outage_grace_secs: Duration,
}

/// Ingestion from a NATS JetStream stream.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Stream ingestion (NATS JetStream)")]
pub struct StreamConfig {
    /// A nats:// (or tls://) URL. With it `serve` also consumes the stream, as `consume` does.
    #[arg(long, env, hide_env_values = true, value_parser = SecretParser(url_of_nats))]
    pub nats_url: Option<Secret>,
    /// The JetStream stream of events, created when missing (its dead letters go to a stream
    /// of the same name and `_DLQ`).
    #[arg(long, env, default_value = "EVENTS", value_parser = nats_name)]
    pub nats_stream: String,
    /// The first token of the consumed subjects, `<prefix>.<tenant>[.<source>]`; dead letters
    /// go to `dlq.<prefix>.<tenant>`.
    #[arg(long, env, default_value = "events", value_parser = nats_name)]
    pub nats_subject_prefix: String,
    /// The durable consumer every consuming process shares, splitting the messages.
    #[arg(long, env, default_value = "pg-analytics", value_parser = nats_name)]
    pub nats_consumer: String,
    /// Messages delivered and not settled at once, across every process, 1 to 100000: what
    /// bounds the memory a backlog takes.
    #[arg(long, env, default_value = "256", value_parser = between::<usize>(1..=100_000))]
    pub nats_max_ack_pending: usize,
    /// Seconds a delivery may stay unsettled before it is delivered again (to another process
    /// when this one died), 1 to 3600.
    #[arg(long, env, default_value = "30", value_parser = seconds(1..=3600))]
    pub nats_ack_wait_secs: Duration,
    /// Messages this process ingests at once, 1 to 64.
    #[arg(long, env, default_value = "8", value_parser = between::<usize>(1..=64))]
    pub nats_concurrency: usize,
}

/// Prometheus metrics.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Metrics")]
pub struct MetricsConfig {
    /// Record metrics and serve them at GET /metrics (Prometheus text format, no key needed).
    #[arg(long, env, default_value = "true", action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub metrics_enabled: bool,
    /// Serve GET /metrics on this address (e.g. 127.0.0.1:9464) instead of the API's.
    #[arg(long, env)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Label the freshness gauges with the tenant's slug (one series per tenant, report and
    /// window); off, the worst of all tenants.
    #[arg(long, env, default_value = "false", action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub metrics_tenant_labels: bool,
}

/// Logging.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogConfig {
    /// pretty (local) or json (production).
    #[arg(long, env, default_value = "pretty", value_enum, ignore_case = true)]
    pub log_format: LogFormat,
    /// A tracing filter, e.g. info or pg_analytics=debug,info.
    #[arg(long, env, default_value = "info", value_parser = log_filter)]
    pub rust_log: String,
    /// An OTLP/HTTP collector's base URL, e.g. http://127.0.0.1:4318: the spans RUST_LOG lets
    /// through are sent to its /v1/traces as protobuf (a build with the `otlp` feature; plain
    /// http:// only). Unset: no span leaves the process.
    #[arg(long, env)]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// The service.name of the exported spans.
    #[arg(long, env, default_value = "pg-analytics")]
    pub otel_service_name: String,
}

/// The whole configuration.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// The version GET /api/v1/health reports.
    #[arg(long, env, default_value = env!("CARGO_PKG_VERSION"))]
    pub app_version: String,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub cache: CacheConfig,
    #[command(flatten)]
    pub recompute: RecomputeConfig,
    #[command(flatten)]
    pub access: AccessConfig,
    #[command(flatten)]
    pub stream: StreamConfig,
    #[command(flatten)]
    pub metrics: MetricsConfig,
    #[command(flatten)]
    pub log: LogConfig,
    #[arg(skip)]
    pub management_key_source: ManagementKeySource,
}

/// The shortest management key accepted.
pub const MIN_KEY_LEN: usize = 16;

impl Config {
    /// Reads the configuration through `lookup` instead of the process environment (tests and
    /// tools); the same declarations, rules and errors as the command line.
    ///
    /// # Errors
    /// The first invalid variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let command = Self::augment_args(Command::new("pg-analytics"));
        let mut argv = vec!["pg-analytics".to_owned()];
        for arg in command.get_arguments() {
            if let (Some(name), Some(long)) =
                (arg.get_env().and_then(OsStr::to_str), arg.get_long())
                && let Some(value) = lookup(name).filter(|value| !value.trim().is_empty())
            {
                argv.push(format!("--{long}={value}"));
            }
        }
        let command = command.mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(argv)?;
        Self::from_arg_matches(&matches)?.finish()
    }

    /// Completes a parsed configuration: the pool checked against the workers, and the
    /// management key generated in embedded mode.
    ///
    /// # Errors
    /// On `DATABASE_MAX_CONNECTIONS` when it is below twice `RECOMPUTE_WORKERS` plus one (with
    /// a database), or when no key can be generated.
    pub fn finish(mut self) -> Result<Self, ConfigError> {
        // A rollup rebuild holds two pooled connections; leave one for everything else.
        let needed = self.recompute.recompute_workers * 2 + 1;
        if self.database.database_url.is_some() && self.database.database_max_connections < needed {
            return Err(ConfigError::new(
                "DATABASE_MAX_CONNECTIONS",
                format!(
                    "must be at least {needed} with RECOMPUTE_WORKERS={}: each rebuild holds two connections, and serving needs one more",
                    self.recompute.recompute_workers
                ),
            ));
        }
        self.management_key_source =
            match (&self.access.management_api_key, &self.database.database_url) {
                (Some(_), _) => ManagementKeySource::Environment,
                // Serving on a database needs one (see `Config::management_key`); the one-shot
                // commands never serve, so they run without it.
                (None, Some(_)) => ManagementKeySource::Missing,
                (None, None) => {
                    self.access.management_api_key = Some(Secret::from(generate_key()?));
                    ManagementKeySource::Generated
                }
            };
        Ok(self)
    }

    /// The management key a serving process answers to.
    ///
    /// # Errors
    /// On `MANAGEMENT_API_KEY` when `DATABASE_URL` is set and no key is.
    pub fn management_key(&self) -> Result<&Secret, ConfigError> {
        self.access.management_api_key.as_ref().ok_or_else(|| {
            ConfigError::new(
                "MANAGEMENT_API_KEY",
                format!(
                    "is required to serve when DATABASE_URL is set (at least {MIN_KEY_LEN} characters)"
                ),
            )
        })
    }

    /// What the process remembers of API keys.
    pub fn key_cache(&self) -> application::KeyCacheSettings {
        application::KeyCacheSettings {
            ttl: self.access.api_key_cache_secs,
            outage_grace: self.access.api_key_outage_grace_secs,
        }
    }

    /// Whether the process runs on the in-memory adapters.
    pub fn is_embedded(&self) -> bool {
        self.database.database_url.is_none()
    }
}

/// `command` reading a variable set to an empty value as unset (as `VAR=` in a compose file
/// means), so its default applies.
pub fn blank_variables_unset(command: Command) -> Command {
    command.mut_args(|arg| {
        let blank = arg
            .get_env()
            .and_then(std::env::var_os)
            .is_some_and(|value| value.to_string_lossy().trim().is_empty());
        if blank { arg.env(None) } else { arg }
    })
}

/// An integer in `range`, as `T`.
fn between<T>(range: RangeInclusive<u64>) -> RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
    <T as TryFrom<u64>>::Error: std::error::Error + Send + Sync + 'static,
{
    RangedU64ValueParser::<T>::new().range(range)
}

/// A number of seconds in `range`.
fn seconds(range: RangeInclusive<u64>) -> impl TypedValueParser<Value = Duration> {
    between::<u64>(range).map(Duration::from_secs)
}

/// A number of milliseconds in `range`.
fn millis(range: RangeInclusive<u64>) -> impl TypedValueParser<Value = Duration> {
    between::<u64>(range).map(Duration::from_millis)
}

/// A number of MiB from 0 to 4096, as bytes.
fn mebibytes() -> impl TypedValueParser<Value = usize> {
    between::<usize>(0..=4096).map(|mib| mib << 20)
}

fn per_second(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>()
        .ok()
        .filter(|rate| (0.0..=100_000.0).contains(rate))
        .ok_or_else(|| "expected a number of requests per second between 0 and 100000".to_owned())
}

fn log_filter(raw: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(raw)
        .map(|_| raw.to_owned())
        .map_err(|err| err.to_string())
}

fn url_of_postgres(raw: &str) -> Result<(), String> {
    (raw.starts_with("postgres://") || raw.starts_with("postgresql://"))
        .then_some(())
        .ok_or_else(|| "must be a postgres:// or postgresql:// URL".to_owned())
}

fn url_of_redis(raw: &str) -> Result<(), String> {
    (raw.starts_with("redis://") || raw.starts_with("rediss://"))
        .then_some(())
        .ok_or_else(|| "must be a redis:// or rediss:// URL".to_owned())
}

fn url_of_nats(raw: &str) -> Result<(), String> {
    (raw.starts_with("nats://") || raw.starts_with("tls://"))
        .then_some(())
        .ok_or_else(|| "must be a nats:// or tls:// URL".to_owned())
}

/// A stream, consumer or subject token: letters, digits, `-` and `_`.
fn nats_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(name.to_owned())
    } else {
        Err("must be 1 to 64 letters, digits, '-' or '_'".to_owned())
    }
}

fn long_enough_key(raw: &str) -> Result<(), String> {
    (raw.chars().count() >= MIN_KEY_LEN)
        .then_some(())
        .ok_or_else(|| format!("must be at least {MIN_KEY_LEN} characters"))
}

/// A secret checked by its rule; unlike clap's own parsers, an error never repeats the value.
#[derive(Clone)]
struct SecretParser(fn(&str) -> Result<(), String>);

impl TypedValueParser for SecretParser {
    type Value = Secret;

    fn parse_ref(
        &self,
        command: &Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Secret, clap::Error> {
        let name = arg.map(ToString::to_string).unwrap_or_default();
        let checked = value
            .to_str()
            .ok_or_else(|| "must be UTF-8".to_owned())
            .and_then(|text| (self.0)(text).map(|()| text));
        checked.map(Secret::from).map_err(|reason| {
            let mut err = clap::Error::raw(
                ErrorKind::ValueValidation,
                format!("invalid value for '{name}' (not shown): {reason}\n"),
            )
            .with_cmd(command);
            err.insert(ContextKind::InvalidArg, ContextValue::String(name));
            err
        })
    }
}

/// A random 48-character hex key: 192 bits from the operating system's random source.
fn generate_key() -> Result<String, ConfigError> {
    application::tenancy::random_hex::<24>().map_err(|err| {
        ConfigError::new(
            "MANAGEMENT_API_KEY",
            format!("could not generate one: {err}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use secrecy::ExposeSecret;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    /// Every variable with its default, as the declarations give them.
    fn declared() -> BTreeMap<String, Option<String>> {
        Config::augment_args(Command::new("pg-analytics"))
            .get_arguments()
            .filter_map(|arg| {
                let name = arg.get_env()?.to_str()?.to_owned();
                let default = arg
                    .get_default_values()
                    .first()
                    .map(|value| value.to_string_lossy().into_owned());
                Some((name, default))
            })
            .collect()
    }

    #[test]
    fn defaults_give_an_embedded_service_with_a_generated_key() {
        let config = config(&[]).unwrap();
        assert!(config.is_embedded());
        assert_eq!(config.http.app_port, 3004);
        assert_eq!(config.recompute.max_report_range_days, 366);
        assert_eq!(
            config.recompute.recompute_lock_ttl_secs,
            Duration::from_secs(900)
        );
        assert_eq!(config.recompute.recompute_workers, 1);
        assert_eq!(config.recompute.recompute_queue_size, 64);
        assert_eq!(config.http.report_replay_mb, 16 << 20);
        assert_eq!(
            config.cache.redis_command_timeout_ms,
            Duration::from_millis(250)
        );
        assert_eq!(config.database.ingest_writers, 2);
        assert_eq!(config.http.rate_limit(), None);
        assert_eq!(config.log.log_format, LogFormat::Pretty);
        assert_eq!(config.app_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(config.management_key_source, ManagementKeySource::Generated);
        assert!(
            config.management_key().unwrap().expose_secret().len() >= MIN_KEY_LEN,
            "generated keys are long enough"
        );
        assert!(config.database.app_auto_migrate && !config.database.app_auto_seed);
    }

    #[test]
    fn values_are_read_through_their_variables() {
        let config = config(&[
            ("APP_PORT", "8080"),
            ("HTTP_WORKERS", "3"),
            ("RATE_LIMIT_PER_SECOND", "2.5"),
            ("APP_AUTO_SEED", "yes"),
            ("LOG_FORMAT", "JSON"),
            ("REDIS_LOCAL_CACHE_MB", "0"),
            ("RECOMPUTE_POLL_INTERVAL_MS", "50"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
        ])
        .unwrap();
        assert_eq!(config.http.app_port, 8080);
        assert_eq!(config.http.workers(), 3);
        assert_eq!(config.http.rate_limit(), Some(2.5));
        assert!(config.database.app_auto_seed);
        assert_eq!(config.log.log_format, LogFormat::Json);
        assert_eq!(config.cache.redis_local_cache_mb, 0);
        assert_eq!(
            config.recompute.recompute_poll_interval_ms,
            Duration::from_millis(50)
        );
        assert!(config.cache.redis_url.is_some());
    }

    #[test]
    fn a_blank_variable_is_unset() {
        let config = config(&[("APP_PORT", "  "), ("DATABASE_URL", "")]).unwrap();
        assert_eq!(config.http.app_port, 3004);
        assert!(config.is_embedded());
    }

    #[test]
    fn an_invalid_value_names_its_variable() {
        for (name, value) in [
            ("APP_HOST", "localhost"),
            ("APP_PORT", "http"),
            ("APP_PORT", "0"),
            ("HTTP_WORKERS", "0"),
            ("MAX_REPORT_RANGE_DAYS", "0"),
            ("RECOMPUTE_WORKERS", "-1"),
            ("RECOMPUTE_QUEUE_SIZE", "0"),
            ("RECOMPUTE_LOCK_TTL_SECS", "soon"),
            ("RECOMPUTE_LEASE_SECS", "1"),
            ("RECOMPUTE_POLL_INTERVAL_MS", "10"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("DATABASE_ACQUIRE_TIMEOUT_SECS", "x"),
            ("INGEST_WRITERS", "0"),
            ("INGEST_WRITERS", "65"),
            ("REDIS_COMMAND_TIMEOUT_MS", "5"),
            ("REDIS_RETRY_AFTER_MS", "soon"),
            ("REDIS_MAX_CONNECTIONS", "0"),
            ("REDIS_LOCAL_CACHE_MB", "4097"),
            ("REPORT_REPLAY_MB", "-1"),
            ("RESPONSE_CACHE_MB", "4097"),
            ("HTTP_BODY_TIMEOUT_SECS", "0"),
            ("HTTP_MAX_CONNECTIONS_PER_CLIENT", "many"),
            ("RATE_LIMIT_PER_SECOND", "-1"),
            ("RATE_LIMIT_PER_SECOND", "NaN"),
            ("RATE_LIMIT_BURST", "0"),
            ("API_KEY_CACHE_SECS", "3601"),
            ("API_KEY_OUTAGE_GRACE_SECS", "-1"),
            ("APP_AUTO_SEED", "maybe"),
            ("APP_SEED_EVENTS", "0"),
            ("LOG_FORMAT", "xml"),
            ("RUST_LOG", "info,[[["),
            ("DATABASE_URL", "mysql://localhost/db"),
            ("REDIS_URL", "localhost:6379"),
            ("MANAGEMENT_API_KEY", "short"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(
                err.variable, name,
                "{name}={value} must be refused on its own name: {err}"
            );
        }
    }

    #[test]
    fn serving_on_a_database_needs_an_explicit_management_key_and_commands_do_not() {
        let commands = config(&[("DATABASE_URL", "postgres://localhost/analytics")]).unwrap();
        assert_eq!(commands.management_key_source, ManagementKeySource::Missing);
        let err = commands.management_key().unwrap_err();
        assert_eq!(err.variable, "MANAGEMENT_API_KEY");
        let ok = config(&[
            ("DATABASE_URL", "postgres://localhost/analytics"),
            ("MANAGEMENT_API_KEY", "0123456789abcdef"),
        ])
        .unwrap();
        assert!(!ok.is_embedded());
        assert_eq!(ok.management_key_source, ManagementKeySource::Environment);
    }

    #[test]
    fn secrets_never_print() {
        let config = config(&[("MANAGEMENT_API_KEY", "super-secret-key-123")]).unwrap();
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("super-secret-key-123"),
            "the key leaked: {printed}"
        );
        for (name, value) in [
            ("MANAGEMENT_API_KEY", "too-short-key"),
            ("DATABASE_URL", "mysql://user:hunter2@db"),
        ] {
            let err =
                Config::from_lookup(|var| (var == name).then(|| value.to_owned())).unwrap_err();
            assert!(
                !err.to_string().contains(value),
                "a refused secret is not repeated: {err}"
            );
        }
    }

    #[test]
    fn key_lookups_are_reused_for_30_seconds_unless_configured() {
        let defaults = config(&[]).unwrap().key_cache();
        assert_eq!(defaults, application::KeyCacheSettings::default());
        assert_eq!(defaults.ttl, Duration::from_secs(30));
        assert_eq!(defaults.outage_grace, Duration::from_secs(900));
        let off = config(&[
            ("API_KEY_CACHE_SECS", "0"),
            ("API_KEY_OUTAGE_GRACE_SECS", "0"),
        ])
        .unwrap()
        .key_cache();
        assert!(off.ttl.is_zero() && off.outage_grace.is_zero());
    }

    #[test]
    fn the_env_example_lists_every_variable_with_its_default() {
        let example = include_str!("../../../.env.example");
        let declared = declared();
        let mut listed = BTreeMap::new();
        for line in example.lines() {
            // `NAME=value` sets the default; `# NAME=value` shows an example of an unset one.
            let (commented, line) = match line.strip_prefix("# ") {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                continue;
            }
            assert!(
                declared.contains_key(name),
                ".env.example lists {name}, which no setting reads"
            );
            if !commented {
                assert_eq!(
                    declared[name].as_deref(),
                    Some(value),
                    ".env.example gives {name} a value other than its default"
                );
            }
            listed.insert(name.to_owned(), value.to_owned());
        }
        for name in declared.keys() {
            assert!(listed.contains_key(name), ".env.example leaves out {name}");
        }
    }

    #[test]
    fn the_operations_guide_names_every_variable() {
        let guide = include_str!("../../../docs/operations.md");
        for name in declared().keys() {
            assert!(
                guide.contains(&format!("`{name}`")),
                "docs/operations.md never names {name}"
            );
        }
    }

    #[test]
    fn the_pool_must_hold_two_connections_per_worker_and_one_more() {
        let err = config(&[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("RECOMPUTE_WORKERS", "4"),
            ("DATABASE_MAX_CONNECTIONS", "8"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "DATABASE_MAX_CONNECTIONS");
        assert!(err.message.contains("at least 9"), "{}", err.message);
        config(&[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("RECOMPUTE_WORKERS", "4"),
            ("DATABASE_MAX_CONNECTIONS", "9"),
        ])
        .unwrap();
    }

    #[test]
    fn zero_workers_is_a_serve_only_process() {
        assert_eq!(
            config(&[("RECOMPUTE_WORKERS", "0")])
                .unwrap()
                .recompute
                .recompute_workers,
            0
        );
    }
}
