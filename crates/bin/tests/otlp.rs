//! Spans exported over OTLP/HTTP (feature `otlp`): the real binary against a fake collector
//! that records what it receives. A request's span reaches `/v1/traces` in the caller's trace
//! once SIGTERM flushes the batch; without `OTEL_EXPORTER_OTLP_ENDPOINT` nothing is sent.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use pg_analytics::testing::{self, Process, eventually, request};

const BINARY: &str = env!("CARGO_BIN_EXE_pg-analytics");
const KEY: &str = "otlp-test-key-0123456789";
/// The trace of the caller, and its span that sends the request.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A request the collector received: its request line and its body.
#[derive(Debug, Clone)]
struct Received {
    line: String,
    body: Vec<u8>,
}

/// A fake OTLP/HTTP collector on a free port of 127.0.0.1: it answers every request `200 OK`
/// with an empty body and keeps it.
struct Collector {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || serve(stream, &sink));
            }
        });
        Ok(Self { port, received })
    }

    /// Its base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` names it.
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What it received so far.
    fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .map(|received| received.clone())
            .unwrap_or_default()
    }
}

/// Answers the HTTP/1.1 requests of one connection until the client closes it; a request
/// whose body it cannot delimit is kept with an empty body, and ends the connection.
fn serve(stream: TcpStream, sink: &Mutex<Vec<Received>>) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut length = None;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.trim().eq_ignore_ascii_case("content-length")
            {
                length = Some(value.trim().parse::<usize>()?);
            }
        }
        let mut body = vec![0; length.unwrap_or(0)];
        reader.read_exact(&mut body)?;
        if let Ok(mut received) = sink.lock() {
            received.push(Received {
                line: line.trim_end().to_owned(),
                body,
            });
        }
        if length.is_none() {
            bail!("a request without Content-Length");
        }
        writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// The bytes of a trace or span id, as protobuf carries them.
fn trace_id_bytes(hex: &str) -> Result<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).context("a hex trace id"))
        .collect()
}

/// A request with the caller's `traceparent`, then SIGTERM.
fn one_traced_request(process: &mut Process) -> Result<()> {
    let (status, _) = request(
        process.port,
        "GET",
        "/api/v1/health",
        &[("traceparent", TRACEPARENT)],
        None,
    )?;
    ensure!(status == 200, "GET /api/v1/health: {status}");
    let exit = process.terminate()?;
    ensure!(exit.success(), "{exit} after SIGTERM: {}", process.log());
    Ok(())
}

#[test]
fn request_spans_are_exported_in_the_callers_trace_when_an_endpoint_is_set() -> Result<()> {
    let collector = Collector::start()?;
    let endpoint = collector.endpoint();
    let mut process = Process::start(
        BINARY,
        &[
            ("MANAGEMENT_API_KEY", KEY),
            // The spans the filter lets through are the ones exported.
            ("RUST_LOG", "info"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "otlp-test-service"),
        ],
    )?;
    one_traced_request(&mut process)?;

    let trace_id = trace_id_bytes(TRACE_ID)?;
    let export = eventually(
        "a POST /v1/traces with the request's span in the caller's trace",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            Ok(collector.received().into_iter().find(|received| {
                received.line.starts_with("POST /v1/traces ")
                    && contains(&received.body, b"http_request")
                    && contains(&received.body, &trace_id)
            }))
        },
    )
    .with_context(|| {
        let lines: Vec<_> = collector
            .received()
            .into_iter()
            .map(|received| received.line)
            .collect();
        format!("received {lines:?}; log: {}", process.log())
    })?;
    ensure!(
        contains(&export.body, &trace_id_bytes("00f067aa0ba902b7")?),
        "the exported span's parent is the caller's span"
    );
    ensure!(
        contains(&export.body, b"otlp-test-service"),
        "the spans name OTEL_SERVICE_NAME as their service"
    );
    ensure!(
        contains(&export.body, b"/api/v1/health"),
        "the span keeps its fields as attributes"
    );
    Ok(())
}

#[test]
fn nothing_is_sent_without_an_endpoint() -> Result<()> {
    let collector = Collector::start()?;
    let mut process = Process::start(BINARY, &[("MANAGEMENT_API_KEY", KEY), ("RUST_LOG", "info")])?;
    one_traced_request(&mut process)?;
    // The process has exited: whatever it would have sent, it has.
    let received = collector.received();
    ensure!(
        received.is_empty(),
        "sent without an endpoint: {received:?}"
    );
    Ok(())
}

#[test]
fn an_https_endpoint_stops_the_process_at_start() -> Result<()> {
    let port = testing::free_port()?;
    let mut child = testing::command(
        BINARY,
        &[
            ("MANAGEMENT_API_KEY", KEY),
            ("APP_HOST", "127.0.0.1"),
            ("APP_PORT", &port.to_string()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318"),
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()?;
    let exited = eventually(
        "the process exits",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || Ok(child.try_wait()?),
    );
    let status = match exited {
        Ok(status) => status,
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err);
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr)?;
    }
    ensure!(status.code() == Some(2), "{status}: {stderr}");
    ensure!(
        stderr.contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "the error names the variable: {stderr}"
    );
    Ok(())
}
