//! Test support (feature `test-support`): a fresh, migrated database per test, dropped
//! afterwards.
//!
//! The server is `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! When it cannot be reached the tests skip with a message, unless `CI=true` or
//! `PG_TESTS_REQUIRED=1`, in which case they fail: CI never silently skips them.

use std::time::Duration;

use anyhow::Context;

use crate::{Pool, PostgresConfig, connect, migrate, migrate_to};
use tokio_postgres::NoTls;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The tenant the fixtures add beside `default`.
pub const OTHER_TENANT: domain::TenantId = domain::TenantId::new(2);

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("PG_TESTS_REQUIRED").is_ok_and(|v| v == "1")
}

/// Says once per test binary, past the test harness's output capture, that the PostgreSQL
/// suites did not run, so a green `cargo test` without a database is never mistaken for one
/// that exercised PostgreSQL.
fn announce_skip(server: &str, reason: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED: the PostgreSQL suites did not run: {server} is unreachable ({reason}).\n\
             Start PostgreSQL or set TEST_DATABASE_URL; CI=true makes this a failure.\n"
        );
    });
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let prefix = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(query) => format!("{prefix}/{name}?{query}"),
        None => format!("{prefix}/{name}"),
    }
}

/// A database that exists for one test.
pub struct TestDatabase {
    pub name: String,
    /// The URL of this database.
    pub url: String,
    pub pool: Pool,
}

impl TestDatabase {
    /// Creates and migrates a database, with a second tenant and its sources; `None` (after
    /// saying so) when no server is reachable and the tests are not required.
    ///
    /// # Errors
    /// When the server is unreachable but required, or creating the database fails.
    pub async fn create() -> anyhow::Result<Option<Self>> {
        Self::create_at(None).await
    }

    /// As [`TestDatabase::create`], migrated only up to `version` (all with `None`), to test
    /// a migration against data written under the schema before it; [`TestDatabase::migrate`]
    /// applies the rest.
    ///
    /// # Errors
    /// As [`TestDatabase::create`].
    pub async fn create_at(version: Option<i32>) -> anyhow::Result<Option<Self>> {
        let server = server_url();
        let admin = match tokio::time::timeout(
            Duration::from_secs(5),
            tokio_postgres::connect(&server, NoTls),
        )
        .await
        {
            Ok(Ok((client, connection))) => {
                tokio::spawn(connection);
                client
            }
            failure => {
                let reason = match failure {
                    Ok(Err(err)) => err.to_string(),
                    _ => "timed out".to_owned(),
                };
                anyhow::ensure!(
                    !required(),
                    "PostgreSQL at {server} is required (CI) but unreachable: {reason}"
                );
                announce_skip(&server, &reason);
                return Ok(None);
            }
        };
        let name = format!("pga_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating {name}"))?;
        let url = with_database(&server, &name);
        let pool = connect(&PostgresConfig {
            url: url.clone(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(60),
        })
        .with_context(|| format!("pool for {name}"))?;
        migrate_to(&pool, version)
            .await
            .with_context(|| format!("migrating {name}"))?;
        pool.get()
            .await
            .with_context(|| format!("connecting to {name}"))?
            .batch_execute(
                "INSERT INTO tenants (id, slug, name) VALUES (2, 'other', 'Other tenant');
                 SELECT setval(pg_get_serial_sequence('tenants', 'id'), 2);
                 INSERT INTO event_sources (tenant_id, slug, provider_name)
                 VALUES (2, 'stripe', 'Stripe'), (2, 'adyen', 'Adyen'), (2, 'paypal', 'PayPal');",
            )
            .await
            .context("adding the second tenant")?;
        Ok(Some(Self { name, url, pool }))
    }
}

impl TestDatabase {
    /// Applies every pending migration; how many there were.
    ///
    /// # Errors
    /// When a migration fails.
    pub async fn migrate(&self) -> anyhow::Result<usize> {
        migrate(&self.pool).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        self.pool.close();
        let name = self.name.clone();
        let server = server_url();
        // Drop runs outside any async context we could rely on: use a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&server, NoTls).await.ok()?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}
