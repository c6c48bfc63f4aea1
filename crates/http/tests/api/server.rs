//! The server on a real socket: what the connection guard answers before any route runs, and
//! that ordinary requests pass through it untouched.

use std::{net::TcpListener, time::Duration};

use anyhow::{Context, Result, ensure};
use domain::{Scope, TenantId};
use http_api::{ServerSettings, serve};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{Harness, KEY};

/// A server over `h`'s state on a free port of 127.0.0.1, stopped when dropped.
struct Running {
    port: u16,
    handle: actix_server::ServerHandle,
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn settings() -> ServerSettings {
    ServerSettings {
        workers: 1,
        keep_alive: Duration::from_secs(5),
        request_timeout: Duration::from_secs(1),
        shutdown_timeout: Duration::from_secs(1),
        max_connections_per_client: 4,
    }
}

fn start(h: &Harness, settings: ServerSettings) -> Result<Running> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = serve(listener, h.state.clone(), settings)?;
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Ok(Running { port, handle })
}

/// One response as read off the socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Value,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }

    /// Asserts an error envelope with `status` and `code` and a request id.
    fn assert_envelope(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.body["error"]["code"], code, "{self:?}");
        assert!(
            self.body["error"]["message"].is_string(),
            "a message: {self:?}"
        );
        assert!(
            self.header("x-request-id").is_some_and(|id| !id.is_empty()),
            "a request id: {self:?}"
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
    }
}

/// Splits every response in `bytes` (as many as were sent back to back).
fn responses(bytes: &[u8]) -> Result<Vec<Raw>> {
    let mut rest = bytes;
    let mut all = Vec::new();
    while !rest.is_empty() {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("a complete head")?;
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .context("a status")?
            .parse()?;
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let body_bytes = rest
            .get(end + 4..end + 4 + length)
            .context("the whole body")?;
        let body = serde_json::from_slice(body_bytes).unwrap_or(Value::Null);
        all.push(Raw { status, head, body });
        rest = &rest[end + 4 + length..];
    }
    Ok(all)
}

/// Sends `request` on a new connection and reads until the server closes it (within 15 s).
async fn exchange(port: u16, request: &[u8]) -> Result<Vec<Raw>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(request).await?;
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> Result<Vec<Raw>> {
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut received))
        .await
        .context("the server closes the connection")??;
    responses(&received)
}

fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nhost: localhost\r\n{extra}connection: close\r\n\r\n")
        .into_bytes()
}

#[actix_web::test]
async fn a_control_character_in_a_header_is_a_400_in_the_envelope() -> Result<()> {
    let h = Harness::new();
    let server = start(&h, settings())?;
    let mut request = b"GET /api/v1/health HTTP/1.1\r\nhost: localhost\r\nx-request-id: a".to_vec();
    request.push(0x7f);
    request.extend_from_slice(b"b\r\n\r\n");

    let replies = exchange(server.port, &request).await?;

    ensure!(replies.len() == 1, "one answer: {replies:?}");
    replies[0].assert_envelope(400, "invalid_request");
    Ok(())
}

#[actix_web::test]
async fn a_path_longer_than_a_uri_may_be_is_a_400_in_the_envelope() -> Result<()> {
    let h = Harness::new();
    let server = start(&h, settings())?;
    let target = format!("/api/v1/reports/{}", "a".repeat(70_000));

    let replies = exchange(server.port, &get(&target, "")).await?;

    ensure!(replies.len() == 1, "one answer: {replies:?}");
    replies[0].assert_envelope(400, "invalid_request");
    Ok(())
}

#[actix_web::test]
async fn a_head_larger_than_the_server_reads_is_a_431_in_the_envelope() -> Result<()> {
    let h = Harness::new();
    let server = start(&h, settings())?;
    let target = format!("/api/v1/reports?search={}", "a".repeat(200_000));

    let replies = exchange(server.port, &get(&target, "")).await?;

    ensure!(replies.len() == 1, "one answer: {replies:?}");
    replies[0].assert_envelope(431, "request_header_fields_too_large");
    Ok(())
}

#[actix_web::test]
async fn a_body_announced_larger_than_any_route_takes_is_refused_before_it_is_sent() -> Result<()> {
    let h = Harness::new();
    let key = h.key(TenantId::DEFAULT, &[Scope::Ingest]).await?;
    let server = start(&h, settings())?;
    let head = format!(
        "POST /api/v1/events/bulk HTTP/1.1\r\nhost: localhost\r\nx-api-key: {key}\r\n\
         content-type: application/json\r\ncontent-length: 10000000\r\n\r\n"
    );

    // Only the head is sent: the answer does not wait for the body.
    let replies = exchange(server.port, head.as_bytes()).await?;

    ensure!(replies.len() == 1, "one answer: {replies:?}");
    replies[0].assert_envelope(413, "payload_too_large");
    Ok(())
}

#[actix_web::test]
async fn a_head_that_never_ends_is_a_408_in_the_envelope() -> Result<()> {
    let h = Harness::new();
    let server = start(&h, settings())?;

    let replies = exchange(server.port, b"GET /api/v1/health HTTP/1.1\r\nhost: loc").await?;

    ensure!(replies.len() == 1, "one answer: {replies:?}");
    replies[0].assert_envelope(408, "request_timeout");
    Ok(())
}

#[actix_web::test]
async fn a_body_shorter_than_its_content_length_is_a_408_in_the_envelope() -> Result<()> {
    let mut h = Harness::new();
    h.state.body_timeout = Duration::from_secs(1);
    let server = start(&h, settings())?;
    let request = format!(
        "POST /api/v1/sources HTTP/1.1\r\nhost: localhost\r\nx-management-key: {KEY}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"slug\": \"sh"
    );

    let replies = exchange(server.port, request.as_bytes()).await?;

    ensure!(replies.len() == 1, "one answer: {replies:?}");
    replies[0].assert_envelope(408, "request_timeout");
    Ok(())
}

#[actix_web::test]
async fn connections_beyond_the_limit_of_one_client_are_a_429_in_the_envelope() -> Result<()> {
    let h = Harness::new();
    let server = start(&h, settings())?;
    let mut held = Vec::new();
    for _ in 0..settings().max_connections_per_client {
        held.push(TcpStream::connect(("127.0.0.1", server.port)).await?);
    }

    let replies = exchange(server.port, &get("/api/v1/health", "")).await?;

    ensure!(replies.len() == 1, "one answer: {replies:?}");
    replies[0].assert_envelope(429, "rate_limited");
    ensure!(replies[0].header("retry-after") == Some("1"), "{replies:?}");
    drop(held);
    // Once the others close, the client is served again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let replies = exchange(server.port, &get("/api/v1/health", "")).await?;
        if replies.first().is_some_and(|r| r.status == 200) {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "served again: {replies:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[actix_web::test]
async fn a_good_request_before_a_malformed_one_is_answered_first() -> Result<()> {
    let h = Harness::new();
    let server = start(&h, settings())?;
    let mut request =
        b"GET /api/v1/health HTTP/1.1\r\nhost: localhost\r\nx-request-id: first\r\n\r\n".to_vec();
    request
        .extend_from_slice(b"GET /api/v1/health HTTP/1.1\r\nhost: localhost\r\nbad header\r\n\r\n");

    let replies = exchange(server.port, &request).await?;

    ensure!(replies.len() == 2, "two answers, in order: {replies:?}");
    ensure!(
        replies[0].status == 200 && replies[0].header("x-request-id") == Some("first"),
        "the good request is served: {replies:?}"
    );
    replies[1].assert_envelope(400, "invalid_request");
    Ok(())
}

#[actix_web::test]
async fn keep_alive_requests_pass_through_the_guard_unchanged() -> Result<()> {
    let h = Harness::new();
    let server = start(&h, settings())?;
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).await?;
    for n in 0..3 {
        let request = format!(
            "GET /api/v1/reports/status-counts/run?date_from=2026-11-01&date_to=2026-11-20 HTTP/1.1\r\n\
             host: localhost\r\nx-request-id: keep-{n}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        // Read exactly one response: its head, then its announced body.
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        let reply = loop {
            let n = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut chunk))
                .await
                .context("an answer")??;
            ensure!(n > 0, "the connection stays open");
            received.extend_from_slice(&chunk[..n]);
            if let Ok(mut parsed) = responses(&received)
                && parsed.len() == 1
            {
                break parsed.remove(0);
            }
        };
        ensure!(
            reply.status == 200 && reply.header("x-request-id") == Some(&format!("keep-{n}")),
            "request {n} is served on the same connection: {reply:?}"
        );
    }
    stream
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await?;
    let last = read_to_close(&mut stream).await?;
    ensure!(last.len() == 1 && last[0].status == 200, "{last:?}");
    Ok(())
}
