//! Test support (feature `test-support`): the real binary as a child process, driven over
//! plain HTTP/1.1, for the process and fault tests.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Output},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

pub use crate::probe::{Answer, exchange, request};

/// A free port of 127.0.0.1 (free when asked; taken by whoever binds it first).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `binary` with exactly `env` (and `PATH`), warnings-only logs and one HTTP worker.
pub fn command(binary: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary);
    command.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    command.env("RUST_LOG", "warn").env("HTTP_WORKERS", "1");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Runs a one-shot command of `binary` to its end.
///
/// # Errors
/// When it cannot be started.
pub fn run(binary: &str, env: &[(&str, &str)], args: &[&str]) -> Result<Output> {
    Ok(command(binary, env).args(args).output()?)
}

/// A `serve` process on its own port, killed when dropped, its log kept in a file.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// The port it serves on.
    pub port: u16,
    log: PathBuf,
}

impl Process {
    /// Starts `serve` with `env` on a free port and waits until it answers `/health`
    /// (whatever its status), for at most 60 s.
    ///
    /// # Errors
    /// When it exits or does not answer in time.
    pub fn start(binary: &str, env: &[(&str, &str)]) -> Result<Self> {
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("pga-process-{}.log", uuid::Uuid::new_v4()));
        // Logs go to standard output, panics to standard error: both into the log file.
        let file = std::fs::File::create(&log)?;
        let child = command(binary, env)
            .env("APP_HOST", "127.0.0.1")
            .env("APP_PORT", port.to_string())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting pg-analytics")?;
        let mut process = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = process.child.try_wait()? {
                bail!("pg-analytics exited early with {status}: {}", process.log());
            }
            if request(port, "GET", "/api/v1/health", &[], None).is_ok() {
                return Ok(process);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "pg-analytics did not answer on port {port}: {}",
            process.log()
        )
    }

    /// Starts `binary` with `args` (a command that serves no HTTP, such as `consume`), its log
    /// kept in a file; `port` is 0.
    ///
    /// # Errors
    /// When it cannot be started.
    pub fn spawn(binary: &str, env: &[(&str, &str)], args: &[&str]) -> Result<Self> {
        let log = std::env::temp_dir().join(format!("pga-process-{}.log", uuid::Uuid::new_v4()));
        let file = std::fs::File::create(&log)?;
        let child = command(binary, env)
            .args(args)
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting pg-analytics {args:?}"))?;
        Ok(Self {
            child,
            port: 0,
            log,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for it to exit; its exit status.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        ensure!(
            Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status()?
                .success(),
            "SIGTERM sent"
        );
        Ok(self.child.wait()?)
    }

    /// Whether it has exited.
    ///
    /// # Errors
    /// When its state cannot be read.
    pub fn exited(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_some())
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The key `api-keys create` prints alone on its last line.
///
/// # Errors
/// When the command fails.
pub fn create_key(
    binary: &str,
    env: &[(&str, &str)],
    tenant: &str,
    scopes: &[&str],
) -> Result<String> {
    let mut args = vec!["api-keys", "create", "--tenant", tenant];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    let output = run(binary, env, &args)?;
    ensure!(
        output.status.success(),
        "api-keys create: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout
        .lines()
        .last()
        .context("a key line")?
        .trim()
        .to_owned())
}

/// Calls `check` every `every` until it returns `Some`, for at most `within`; what it
/// returned. A deadline for a condition to come true, never a measure of speed.
///
/// # Errors
/// `check`'s first error, or a timeout naming `what`.
pub fn eventually<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        ensure!(
            Instant::now() < deadline,
            "{what}: not true within {within:?}"
        );
        std::thread::sleep(every);
    }
}

/// The Redis on 127.0.0.1:6379 (or `TEST_REDIS_URL`) for the tests that share it; `None`
/// (skipped) when unreachable, which fails under `CI=true`.
///
/// # Errors
/// When Redis is unreachable in CI.
pub fn shared_redis() -> Result<Option<String>> {
    let url =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let reachable = std::net::TcpStream::connect("127.0.0.1:6379").is_ok()
        || std::env::var("TEST_REDIS_URL").is_ok();
    if reachable {
        return Ok(Some(url));
    }
    ensure!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "Redis is required (CI) but unreachable"
    );
    Ok(None)
}
