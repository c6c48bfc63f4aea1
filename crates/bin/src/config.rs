//! Typed configuration, read once from the environment at start-up.
//!
//! Every variable, its default and its rule:
//!
//! | variable | default | rule |
//! |---|---|---|
//! | `APP_HOST` | `0.0.0.0` | an IP address to listen on |
//! | `APP_PORT` | `3004` | 1..=65535 |
//! | `APP_VERSION` | the crate version | reported by `/health` |
//! | `DATABASE_URL` | unset | a `postgres://` URL; unset means embedded in-memory mode |
//! | `REDIS_URL` | unset | a `redis://` URL; unset means in-process cache and locks |
//! | `REDIS_KEY_PREFIX` | empty | prepended to every key, to share one Redis between deployments |
//! | `REDIS_COMMAND_TIMEOUT_MS` | `250` | 10..=10000: the longest one Redis command may take |
//! | `REDIS_RETRY_AFTER_MS` | `1000` | 50..=60000: how long to leave a failed Redis alone before trying again |
//! | `REDIS_MAX_CONNECTIONS` | `16` | 1..=1000 |
//! | `RESPONSE_CACHE_MB` | `32` | 0..=4096: without `REDIS_URL`, report results cached in this process, oldest out first; 0 caches none |
//! | `REDIS_LOCAL_CACHE_MB` | `32` | 0..=4096: cache entries this process holds in memory while it follows version changes; 0 asks Redis on every read |
//! | `DATABASE_MAX_CONNECTIONS` | `16` | 1..=1000: the pool size of this process |
//! | `INGEST_WRITERS` | `2` | 1..=64: gathered ingestion transactions written at once, each on a connection of its own besides the pool |
//! | `DATABASE_ACQUIRE_TIMEOUT_SECS` | `5` | 1..=300: wait for a connection before answering 503 |
//! | `DATABASE_STATEMENT_TIMEOUT_SECS` | `600` | 1..=86400: the server-side limit of one statement |
//! | `MANAGEMENT_API_KEY` | generated in embedded mode | at least 16 characters; required to serve with `DATABASE_URL` |
//! | `APP_AUTO_MIGRATE` | `true` | boolean |
//! | `APP_AUTO_SEED` | `false` | boolean; always on in embedded mode |
//! | `APP_SEED_EVENTS` | `25000` | demo events an automatic seed writes, 1..=100000000 |
//! | `MAX_REPORT_RANGE_DAYS` | `366` | 1..=3660 |
//! | `REPORT_REPLAY_MB` | `16` | 0..=4096: bodies of report cache hits this process keeps and sends again to the same request while the version, TTL and UTC day hold, a second at most; 0 runs every read |
//! | `RECOMPUTE_LOCK_TTL_SECS` | `900` | 1..=86400 |
//! | `RECOMPUTE_WORKERS` | `1` | 0..=64; 0 means this process never runs recomputes |
//! | `RECOMPUTE_QUEUE_SIZE` | `64` | 1..=100000 |
//! | `RECOMPUTE_LEASE_SECS` | `60` | 3..=3600: how long a claimed run survives its worker's silence |
//! | `RECOMPUTE_POLL_INTERVAL_MS` | `1000` | 50..=60000: how often idle workers look for runs queued elsewhere |
//! | `RATE_LIMIT_PER_SECOND` | `0` (off) | requests per second allowed to each API key, 0..=100000 |
//! | `RATE_LIMIT_BURST` | `100` | 1..=1000000: requests an API key may make at once before the rate applies |
//! | `API_KEY_CACHE_SECS` | `30` | 0..=3600: how long a key lookup is reused, so the longest a revocation made by another process takes to reach this one; 0 looks every key up |
//! | `API_KEY_OUTAGE_GRACE_SECS` | `900` | 0..=86400: while the key store is unreachable, keys this process verified this recently are still accepted; 0 refuses them |
//! | `HTTP_WORKERS` | the number of CPUs | 1..=256 |
//! | `HTTP_REQUEST_TIMEOUT_SECS` | `30` | 1..=3600: time for a client to send its request head; past it a 408 |
//! | `HTTP_BODY_TIMEOUT_SECS` | `30` | 1..=3600: time for a client to send a request body a route reads; past it a 408 |
//! | `HTTP_MAX_CONNECTIONS_PER_CLIENT` | `256` | 0..=1000000: connections one client address may hold open; beyond it a 429; 0 for no limit |
//! | `HTTP_KEEP_ALIVE_SECS` | `75` | 0..=3600; 0 disables keep-alive |
//! | `HTTP_SHUTDOWN_TIMEOUT_SECS` | `30` | 0..=3600: grace for in-flight requests on shutdown |
//! | `LOG_FORMAT` | `pretty` | `pretty` or `json` |
//! | `RUST_LOG` | `info` | a tracing filter |
//!
//! An invalid value is an error naming the variable, never a silent default.

use std::{net::IpAddr, str::FromStr, time::Duration};

use secrecy::ExposeSecret;

/// A secret that never prints itself (`secrecy`): a URL with its password, a key.
pub use secrecy::SecretString as Secret;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// An invalid configuration value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl ConfigError {
    fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self {
            variable,
            message: message.into(),
        }
    }
}

/// Where the management key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagementKeySource {
    Environment,
    /// Generated at start-up because none was set in embedded mode.
    Generated,
    /// None was set, and the process has a database: it may run commands, not serve.
    Missing,
}

/// HTTP server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub host: IpAddr,
    pub port: u16,
    pub workers: usize,
    pub request_timeout: Duration,
    /// How long a route may wait for the whole body of a request.
    pub body_timeout: Duration,
    pub keep_alive: Duration,
    pub shutdown_timeout: Duration,
    /// Connections one client address may hold open at once; 0 for no limit.
    pub max_connections_per_client: usize,
    /// Bytes of report hit bodies kept to be sent again; 0 keeps none.
    pub replay_bytes: usize,
    /// Bytes of report results cached in process when there is no Redis.
    pub response_cache_bytes: usize,
}

/// PostgreSQL pool settings (used when `DATABASE_URL` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    pub max_connections: usize,
    /// Gathered ingestion transactions written at once, each on a connection of its own.
    pub ingest_writers: usize,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
}

/// Redis settings (used when `REDIS_URL` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub key_prefix: String,
    pub command_timeout: Duration,
    pub retry_after: Duration,
    pub max_connections: usize,
    /// Bytes of cache entries held in process; 0 turns the in-process layer off.
    pub local_cache_bytes: usize,
}

/// Per-API-key rate limiting.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Requests per second per key; `None` when off.
    pub per_second: Option<f64>,
    pub burst: u32,
}

/// Recompute settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecomputeConfig {
    pub lock_ttl: Duration,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub workers: usize,
    pub queue_size: usize,
    pub max_range_days: u32,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub recompute: RecomputeConfig,
    pub version: String,
    pub database_url: Option<Secret>,
    pub database: DatabaseConfig,
    pub redis_url: Option<Secret>,
    pub redis: RedisSettings,
    pub rate_limit: RateLimitConfig,
    /// What the process remembers of API keys.
    pub api_keys: application::KeyCacheSettings,
    /// The management key; `None` only with a database and no `MANAGEMENT_API_KEY`, which
    /// the one-shot commands accept and `serve` refuses (see [`Config::management_key`]).
    management_key: Option<Secret>,
    pub management_key_source: ManagementKeySource,
    pub auto_migrate: bool,
    pub auto_seed: bool,
    pub seed_events: u64,
    pub log_format: LogFormat,
}

/// The shortest management key accepted.
pub const MIN_KEY_LEN: usize = 16;

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// The first invalid variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    ///
    /// # Errors
    /// The first invalid variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let database_url = get("DATABASE_URL").map(Secret::from);
        if let Some(url) = &database_url
            && !(url.expose_secret().starts_with("postgres://")
                || url.expose_secret().starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must be a postgres:// or postgresql:// URL",
            ));
        }
        let redis_url = get("REDIS_URL").map(Secret::from);
        if let Some(url) = &redis_url
            && !(url.expose_secret().starts_with("redis://")
                || url.expose_secret().starts_with("rediss://"))
        {
            return Err(ConfigError::new(
                "REDIS_URL",
                "must be a redis:// or rediss:// URL",
            ));
        }

        let (management_key, management_key_source) = match get("MANAGEMENT_API_KEY") {
            Some(key) if key.chars().count() >= MIN_KEY_LEN => {
                (Some(Secret::from(key)), ManagementKeySource::Environment)
            }
            Some(_) => {
                return Err(ConfigError::new(
                    "MANAGEMENT_API_KEY",
                    format!("must be at least {MIN_KEY_LEN} characters"),
                ));
            }
            // Serving on a database needs it (see `Config::management_key`); the one-shot
            // commands never serve, so they run without it.
            None if database_url.is_some() => (None, ManagementKeySource::Missing),
            None => (
                Some(Secret::from(generate_key()?)),
                ManagementKeySource::Generated,
            ),
        };

        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let http = HttpConfig {
            host: parse(
                &get,
                "APP_HOST",
                "0.0.0.0".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
                |_| true,
                "an IP address",
            )?,
            port: parse(
                &get,
                "APP_PORT",
                3004u16,
                |p| *p >= 1,
                "a port between 1 and 65535",
            )?,
            workers: parse(
                &get,
                "HTTP_WORKERS",
                cpus,
                |n| (1..=256).contains(n),
                "an integer between 1 and 256",
            )?,
            request_timeout: secs(&get, "HTTP_REQUEST_TIMEOUT_SECS", 30, 1, 3600)?,
            body_timeout: secs(&get, "HTTP_BODY_TIMEOUT_SECS", 30, 1, 3600)?,
            max_connections_per_client: parse(
                &get,
                "HTTP_MAX_CONNECTIONS_PER_CLIENT",
                256usize,
                |n| *n <= 1_000_000,
                "a number of connections between 0 and 1000000",
            )?,
            keep_alive: secs(&get, "HTTP_KEEP_ALIVE_SECS", 75, 0, 3600)?,
            shutdown_timeout: secs(&get, "HTTP_SHUTDOWN_TIMEOUT_SECS", 30, 0, 3600)?,
            replay_bytes: parse(
                &get,
                "REPORT_REPLAY_MB",
                16usize,
                |n| *n <= 4096,
                "a number of MiB between 0 and 4096",
            )? << 20,
            response_cache_bytes: parse(
                &get,
                "RESPONSE_CACHE_MB",
                memory_adapter::cache::DEFAULT_CAPACITY >> 20,
                |n| *n <= 4096,
                "a number of MiB between 0 and 4096",
            )? << 20,
        };
        let recompute = RecomputeConfig {
            lock_ttl: secs(&get, "RECOMPUTE_LOCK_TTL_SECS", 900, 1, 86_400)?,
            lease: secs(&get, "RECOMPUTE_LEASE_SECS", 60, 3, 3600)?,
            poll_interval: Duration::from_millis(parse(
                &get,
                "RECOMPUTE_POLL_INTERVAL_MS",
                1000u64,
                |n| (50..=60_000).contains(n),
                "a number of milliseconds between 50 and 60000",
            )?),
            workers: parse(
                &get,
                "RECOMPUTE_WORKERS",
                1usize,
                |n| *n <= 64,
                "an integer between 0 and 64",
            )?,
            queue_size: parse(
                &get,
                "RECOMPUTE_QUEUE_SIZE",
                64usize,
                |n| (1..=100_000).contains(n),
                "an integer between 1 and 100000",
            )?,
            max_range_days: parse(
                &get,
                "MAX_REPORT_RANGE_DAYS",
                366u32,
                |n| (1..=3660).contains(n),
                "an integer between 1 and 3660",
            )?,
        };
        let log_format = match get("LOG_FORMAT")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("must be pretty or json, got {other:?}"),
                ));
            }
        };
        let database = DatabaseConfig {
            max_connections: parse(
                &get,
                "DATABASE_MAX_CONNECTIONS",
                16usize,
                |n| (1..=1000).contains(n),
                "an integer between 1 and 1000",
            )?,
            ingest_writers: parse(
                &get,
                "INGEST_WRITERS",
                postgres_adapter::PostgresEventStore::DEFAULT_WRITERS,
                |n| (1..=64).contains(n),
                "an integer between 1 and 64",
            )?,
            acquire_timeout: secs(&get, "DATABASE_ACQUIRE_TIMEOUT_SECS", 5, 1, 300)?,
            statement_timeout: secs(&get, "DATABASE_STATEMENT_TIMEOUT_SECS", 600, 1, 86_400)?,
        };
        let millis = |name: &'static str, default: u64, min: u64, max: u64| {
            parse(
                &get,
                name,
                default,
                |n| (min..=max).contains(n),
                &format!("a number of milliseconds between {min} and {max}"),
            )
            .map(Duration::from_millis)
        };
        let redis = RedisSettings {
            key_prefix: get("REDIS_KEY_PREFIX").unwrap_or_default(),
            command_timeout: millis("REDIS_COMMAND_TIMEOUT_MS", 250, 10, 10_000)?,
            retry_after: millis("REDIS_RETRY_AFTER_MS", 1_000, 50, 60_000)?,
            max_connections: parse(
                &get,
                "REDIS_MAX_CONNECTIONS",
                16usize,
                |n| (1..=1000).contains(n),
                "an integer between 1 and 1000",
            )?,
            local_cache_bytes: parse(
                &get,
                "REDIS_LOCAL_CACHE_MB",
                32usize,
                |n| *n <= 4096,
                "a number of MiB between 0 and 4096",
            )? << 20,
        };
        let per_second: f64 = parse(
            &get,
            "RATE_LIMIT_PER_SECOND",
            0.0,
            |n| (0.0..=100_000.0).contains(n),
            "a number of requests per second between 0 and 100000",
        )?;
        let rate_limit = RateLimitConfig {
            per_second: (per_second > 0.0).then_some(per_second),
            burst: parse(
                &get,
                "RATE_LIMIT_BURST",
                100u32,
                |n| (1..=1_000_000).contains(n),
                "an integer between 1 and 1000000",
            )?,
        };
        let api_keys = application::KeyCacheSettings {
            ttl: secs(
                &get,
                "API_KEY_CACHE_SECS",
                application::tenancy::DEFAULT_KEY_CACHE_TTL.as_secs(),
                0,
                3600,
            )?,
            outage_grace: secs(
                &get,
                "API_KEY_OUTAGE_GRACE_SECS",
                application::tenancy::DEFAULT_KEY_OUTAGE_GRACE.as_secs(),
                0,
                86_400,
            )?,
        };
        Ok(Self {
            http,
            recompute,
            database,
            redis,
            rate_limit,
            api_keys,
            version: get("APP_VERSION").unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            auto_migrate: boolean(&get, "APP_AUTO_MIGRATE", true)?,
            auto_seed: boolean(&get, "APP_AUTO_SEED", false)?,
            seed_events: parse(
                &get,
                "APP_SEED_EVENTS",
                25_000u64,
                |n| (1..=100_000_000).contains(n),
                "an integer between 1 and 100000000",
            )?,
            database_url,
            redis_url,
            management_key,
            management_key_source,
            log_format,
        })
    }

    /// The management key a serving process answers to.
    ///
    /// # Errors
    /// On `MANAGEMENT_API_KEY` when `DATABASE_URL` is set and no key is.
    pub fn management_key(&self) -> Result<&Secret, ConfigError> {
        self.management_key.as_ref().ok_or_else(|| {
            ConfigError::new(
                "MANAGEMENT_API_KEY",
                format!(
                    "is required to serve when DATABASE_URL is set (at least {MIN_KEY_LEN} characters)"
                ),
            )
        })
    }

    /// Whether the process runs on the in-memory adapters.
    pub fn is_embedded(&self) -> bool {
        self.database_url.is_none()
    }
}

fn parse<T: FromStr>(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: T,
    valid: impl Fn(&T) -> bool,
    expected: &str,
) -> Result<T, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<T>()
            .ok()
            .filter(|value| valid(value))
            .ok_or_else(|| ConfigError::new(name, format!("must be {expected}, got {raw:?}"))),
    }
}

fn secs(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    let expected = format!("a number of seconds between {min} and {max}");
    parse(get, name, default, |n| (min..=max).contains(n), &expected).map(Duration::from_secs)
}

fn boolean(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError::new(
            name,
            format!("must be true or false, got {other:?}"),
        )),
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
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_give_an_embedded_service_with_a_generated_key() {
        let config = config(&[]).unwrap();
        assert!(config.is_embedded());
        assert_eq!(config.http.port, 3004);
        assert_eq!(config.recompute.max_range_days, 366);
        assert_eq!(config.recompute.lock_ttl, Duration::from_secs(900));
        assert_eq!(config.recompute.workers, 1);
        assert_eq!(config.recompute.queue_size, 64);
        assert_eq!(config.http.replay_bytes, 16 << 20);
        assert_eq!(config.database.ingest_writers, 2);
        assert_eq!(config.management_key_source, ManagementKeySource::Generated);
        assert!(
            config.management_key().unwrap().expose_secret().len() >= MIN_KEY_LEN,
            "generated keys are long enough"
        );
        assert!(config.auto_migrate && !config.auto_seed);
    }

    #[test]
    fn an_invalid_value_names_its_variable() {
        for (name, value) in [
            ("APP_PORT", "http"),
            ("APP_PORT", "0"),
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
            ("RATE_LIMIT_BURST", "0"),
            ("API_KEY_CACHE_SECS", "3601"),
            ("API_KEY_OUTAGE_GRACE_SECS", "-1"),
            ("APP_AUTO_SEED", "maybe"),
            ("LOG_FORMAT", "xml"),
            ("DATABASE_URL", "mysql://localhost/db"),
            ("REDIS_URL", "localhost:6379"),
            ("MANAGEMENT_API_KEY", "short"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(
                err.variable, name,
                "{name}={value} must be refused on its own name"
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
    }

    #[test]
    fn key_lookups_are_reused_for_30_seconds_unless_configured() {
        let defaults = config(&[]).unwrap().api_keys;
        assert_eq!(defaults.ttl, Duration::from_secs(30));
        assert_eq!(defaults.outage_grace, Duration::from_secs(900));
        let off = config(&[
            ("API_KEY_CACHE_SECS", "0"),
            ("API_KEY_OUTAGE_GRACE_SECS", "0"),
        ])
        .unwrap()
        .api_keys;
        assert!(off.ttl.is_zero() && off.outage_grace.is_zero());
    }

    #[test]
    fn zero_workers_is_a_serve_only_process() {
        assert_eq!(
            config(&[("RECOMPUTE_WORKERS", "0")])
                .unwrap()
                .recompute
                .workers,
            0
        );
    }
}
