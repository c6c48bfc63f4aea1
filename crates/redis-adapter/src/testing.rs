//! A `redis-server` of a test's own, for the fault tests of this and other crates (feature
//! `test-support`): killed and started again on the same port, so a test can take Redis away
//! from a running client and give it back.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
};

use anyhow::Context;

/// A `redis-server` on a free local port, without persistence, stopped when dropped.
#[derive(Debug)]
pub struct OwnRedis {
    child: Option<Child>,
    port: u16,
}

impl OwnRedis {
    /// Whether `redis-server` can be run here.
    pub fn available() -> bool {
        Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok()
    }

    /// Starts a server on a free port.
    ///
    /// # Errors
    /// When no port is free or `redis-server` cannot be started.
    pub fn start() -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = Self { child: None, port };
        server.restart()?;
        Ok(server)
    }

    /// Its `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its data is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty (stopping it first if it runs).
    ///
    /// # Errors
    /// When `redis-server` cannot be started.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed?)")?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
