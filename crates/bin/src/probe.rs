//! A plain HTTP/1.1 request over its own connection: how the process and fault tests and the
//! benchmark talk to a running service, without an HTTP client dependency.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use anyhow::{Context, Result};
use serde_json::Value;

/// One HTTP/1.1 request (its own connection, closed after) with `headers`; the status and
/// the JSON body (`null` when there is none). Waits at most 30 s for the answer.
///
/// # Errors
/// When the connection fails or the answer is not HTTP with a JSON body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    let payload = body.map(Value::to_string).unwrap_or_default();
    let answer = exchange(port, method, path, headers, &payload)?;
    let body = if answer.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&answer.body).with_context(|| format!("JSON body: {}", answer.body))?
    };
    Ok((answer.status, body))
}

/// An answer as it came: status, head (status line and headers) and body text.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// One HTTP/1.1 request (its own connection, closed after) with `headers` and a JSON
/// `payload` (empty for none); the answer as text. Waits at most 30 s for it.
///
/// # Errors
/// When the connection fails or the answer is not HTTP.
pub fn exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    payload: &str,
) -> Result<Answer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .context("status line")?
        .parse()?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    Ok(Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}
