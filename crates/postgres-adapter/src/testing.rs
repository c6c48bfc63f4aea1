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
            "\nSKIPPED: the PostgreSQL suites did not run: {server} is unusable ({reason}).\n\
             Start PostgreSQL with the hll extension installed (Debian and Ubuntu: the package \
             postgresql-<major version>-hll) or set TEST_DATABASE_URL; CI=true makes this a \
             failure.\n"
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
        // The migrations create the hll extension: a server without it cannot run the suites.
        let hll = admin
            .query_opt(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'hll'",
                &[],
            )
            .await
            .context("looking for the hll extension")?;
        if hll.is_none() {
            let reason = "the hll extension is not installed on the server";
            anyhow::ensure!(
                !required(),
                "PostgreSQL at {server} is required (CI) but {reason}"
            );
            announce_skip(&server, reason);
            return Ok(None);
        }
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
                 VALUES (2, 'stripe', 'Stripe'), (2, 'adyen', 'Adyen'), (2, 'paypal', 'PayPal');
                 -- Before the migration that gives every tenant a default source, that
                 -- migration adds it.
                 INSERT INTO event_sources (tenant_id, slug, provider_name, description)
                 SELECT 2, 'default', 'Default source', 'Events that name no source.'
                 WHERE EXISTS (SELECT 1 FROM event_sources WHERE tenant_id = 1 AND slug = 'default');",
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

    /// Applies the pending migrations up to `version` included; how many there were.
    ///
    /// # Errors
    /// When a migration fails.
    pub async fn migrate_to(&self, version: i32) -> anyhow::Result<usize> {
        migrate_to(&self.pool, Some(version)).await
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

/// A PostgreSQL cluster of a test's own (`initdb` into a fresh directory, `pg_ctl` on a free
/// port), for the fault tests: stopped, killed and started again without touching any other
/// server. Run as root, it runs the server as the unprivileged `postgres` user, which
/// PostgreSQL requires. Stopped and removed when dropped.
#[derive(Debug)]
pub struct OwnPostgres {
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    port: u16,
    as_postgres: bool,
}

impl OwnPostgres {
    /// The directory of `initdb` and `pg_ctl`: `PG_BINDIR`, else the one on `PATH`, else the
    /// newest of `/usr/lib/postgresql/*/bin`; `None` when there is none.
    pub fn bindir() -> Option<std::path::PathBuf> {
        use std::path::PathBuf;
        if let Ok(dir) = std::env::var("PG_BINDIR") {
            return Some(PathBuf::from(dir));
        }
        let on_path = std::env::var_os("PATH")
            .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file()));
        if on_path.is_some() {
            return on_path;
        }
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").is_file())
            .collect();
        versions.sort();
        versions.pop()
    }

    /// Creates a cluster in a new directory and starts it on a free port.
    ///
    /// # Errors
    /// When the PostgreSQL programs are missing or the cluster cannot be created or started.
    pub fn start() -> anyhow::Result<Self> {
        let bin = Self::bindir().context("initdb not found (set PG_BINDIR)")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("pga-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let as_postgres = is_root();
        let cluster = Self {
            bin,
            dir,
            port,
            as_postgres,
        };
        if as_postgres {
            cluster.run(
                "chown",
                &["postgres:", &cluster.dir.display().to_string()],
                false,
            )?;
        }
        let data = cluster.data_dir();
        cluster.run(
            &cluster.bin.join("initdb").display().to_string(),
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            true,
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs `program` with `args`, as `postgres` when `as_postgres` and the test runs as root.
    fn run(&self, program: &str, args: &[&str], as_postgres: bool) -> anyhow::Result<()> {
        let mut command = if as_postgres && self.as_postgres {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--", program]);
            command
        } else {
            std::process::Command::new(program)
        };
        let output = command
            .args(args)
            .output()
            .with_context(|| format!("running {program}"))?;
        anyhow::ensure!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    /// Starts the server (again) and waits until it accepts connections.
    ///
    /// # Errors
    /// When `pg_ctl start` fails.
    pub fn start_server(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60 -c shared_buffers=32MB",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            &self.bin.join("pg_ctl").display().to_string(),
            &[
                "-D",
                &self.data_dir(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            true,
        )
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`): sessions are
    /// cut, and the next start recovers from the write-ahead log.
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub fn stop_immediately(&self) -> anyhow::Result<()> {
        self.run(
            &self.bin.join("pg_ctl").display().to_string(),
            &["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"],
            true,
        )
    }

    /// The process id of the running server (from `postmaster.pid`).
    ///
    /// # Errors
    /// When the server is not running.
    pub fn pid(&self) -> anyhow::Result<u32> {
        let pidfile = std::fs::read_to_string(self.dir.join("data").join("postmaster.pid"))
            .context("postmaster.pid: is the server running?")?;
        Ok(pidfile.lines().next().unwrap_or_default().trim().parse()?)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log so far, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        if let Ok(pid) = self.pid() {
            // Its own postmaster only, by PID; the children follow it.
            let _ = std::process::Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .status();
            for _ in 0..100 {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the tests run as root (PostgreSQL will not).
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}
