//! The HTTP server: the application behind a guard on every connection.
//!
//! actix answers some requests before any application code sees them, with a bare status line
//! and no body: a head that does not parse (a control character in a header, a request target
//! longer than 65,534 bytes) with 400, a head larger than its 128 KiB buffer with 431, a head
//! that never ends with 408. So every connection here passes through a [`GuardedStream`] that
//! frames the requests it carries with the decoder actix itself uses, hands actix only the
//! requests that will parse, and answers the others itself, in the JSON error envelope with an
//! `X-Request-Id`, before closing the connection. The same guard refuses a body announced
//! larger than any route accepts before a byte of it is read, and bounds the connections one
//! client address may hold open.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, TcpListener},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll, ready},
    time::Duration,
};

use actix_codec::{AsyncRead, AsyncWrite, Decoder, ReadBuf};
use actix_http::{
    HttpService, Protocol,
    error::ParseError,
    h1::{Codec, Message, MessageType},
    header::CONTENT_LENGTH,
};
use actix_server::Server;
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::AppConfig;
use bytes::{Buf, BytesMut};
use tokio::{net::TcpStream, time::Sleep};
use tracing::info;
use uuid::Uuid;

use crate::{AppState, build_app, error::ApiError, request_id::REQUEST_ID_HEADER};

/// The largest body any route accepts (a full bulk ingestion request); a request announcing a
/// longer one is refused from its head.
pub const MAX_BODY_BYTES: u64 = crate::routes::events::EVENTS_BODY_LIMIT as u64;

/// How long a refused connection keeps reading (and discarding) what the client still sends,
/// so closing it does not reset the connection before the client has read the refusal.
const LINGER: Duration = Duration::from_secs(2);

/// The most bytes a refused connection discards while it lingers.
const LINGER_BYTES: usize = 1 << 20;

/// How the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// Worker threads, each with its own copy of the application.
    pub workers: usize,
    /// How long an idle keep-alive connection is kept; zero disables keep-alive.
    pub keep_alive: Duration,
    /// How long a client may take to send a request head, from the connection (or the first
    /// byte of a later request) to its last header; past it the request is answered 408.
    pub request_timeout: Duration,
    /// How long in-flight requests may take to finish once shutdown starts.
    pub shutdown_timeout: Duration,
    /// Connections one client address may hold open at once; zero for no limit.
    pub max_connections_per_client: usize,
}

/// Serves `GET /metrics` alone on `listener` (`METRICS_ADDR`), on one worker thread; it stops
/// on SIGINT or SIGTERM as the API does.
///
/// # Errors
/// When the listener cannot be registered.
pub fn serve_metrics(
    listener: TcpListener,
    endpoint: crate::MetricsEndpoint,
) -> io::Result<Server> {
    Ok(
        actix_web::HttpServer::new(move || crate::metrics_app(endpoint.clone()))
            .workers(1)
            .listen(listener)?
            .run(),
    )
}

/// Binds the application to `listener` and returns the running server; awaiting it serves
/// until SIGINT or SIGTERM, then stops accepting, lets in-flight requests finish (up to the
/// shutdown timeout) and closes idle connections.
///
/// # Errors
/// When the listener cannot be registered.
pub fn serve(
    listener: TcpListener,
    state: AppState,
    settings: ServerSettings,
) -> io::Result<Server> {
    let builder = Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    let clients = ClientConnections::new(settings.max_connections_per_client);
    let local = listener.local_addr()?;
    let keep_alive = if settings.keep_alive.is_zero() {
        actix_http::KeepAlive::Disabled
    } else {
        actix_http::KeepAlive::Timeout(settings.keep_alive)
    };
    let server = builder
        .workers(settings.workers)
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        .listen("pg-analytics", listener, move || {
            let state = state.clone();
            let clients = clients.clone();
            let shutdown = shutdown.clone();
            let request_timeout = settings.request_timeout;
            let app = build_app(state)
                .into_factory()
                .map_err(|err: actix_web::Error| err.error_response());
            let http = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                .keep_alive(keep_alive)
                // The guard times request heads out itself, with an envelope.
                .client_request_timeout(Duration::ZERO)
                .client_disconnect_timeout(Duration::from_secs(1))
                .h1_allow_half_closed(true)
                .local_addr(local)
                .finish(map_config(app, |_: ()| AppConfig::default()));
            fn_service(move |io: TcpStream| {
                    let peer = io.peer_addr().ok();
                    let _ = io.set_nodelay(true);
                    let slot = peer.map(|peer| clients.enter(peer.ip()));
                    let stream = GuardedStream::new(io, slot, request_timeout);
                    async move {
                        Ok::<_, actix_http::error::DispatchError>((stream, Protocol::Http1, peer))
                    }
                })
                .and_then(http)
        })?
        .run();
    Ok(server)
}

/// The open connections of each client address, shared by every worker.
#[derive(Clone)]
struct ClientConnections {
    limit: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ClientConnections {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Arc::default(),
        }
    }

    /// Counts a new connection of `client`; the slot says whether it is over the limit and
    /// frees its place when dropped.
    fn enter(&self, client: IpAddr) -> ClientSlot {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client).or_insert(0);
        *count += 1;
        ClientSlot {
            over_limit: self.limit > 0 && *count > self.limit,
            client,
            open: self.open.clone(),
        }
    }
}

/// One counted connection.
struct ClientSlot {
    over_limit: bool,
    client: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// An answer the guard sends itself, and how much of it is written.
struct Refusal {
    bytes: Vec<u8>,
    written: usize,
}

impl Refusal {
    /// `error` as a complete HTTP/1.1 response in the envelope, with a new request id, that
    /// closes the connection.
    fn new(error: &ApiError, extra_headers: &[(&str, String)]) -> Self {
        let status = error.code().status();
        let id = Uuid::new_v4().to_string();
        let body = serde_json::to_vec(&error.envelope()).unwrap_or_default();
        info!(
            request_id = %id,
            status = status.as_u16(),
            reason = %error,
            "request refused before routing"
        );
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}: {id}\r\nconnection: close\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
            body.len(),
            REQUEST_ID_HEADER.as_str(),
        );
        for (name, value) in extra_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        Self { bytes, written: 0 }
    }

    /// The answer to a head the framework's decoder refused.
    fn for_parse_error(err: &ParseError) -> Self {
        let error = match err {
            ParseError::TooLarge => ApiError::HeaderFieldsTooLarge(
                "the request line and headers are larger than 128 KiB".to_owned(),
            ),
            ParseError::Uri(_) => {
                ApiError::invalid("the request target is malformed or longer than 65,534 bytes")
            }
            ParseError::Header => ApiError::invalid(
                "a header is malformed (a control character in a name or value, an invalid \
                 Content-Length or Transfer-Encoding, or more than 96 headers)",
            ),
            ParseError::Method => ApiError::invalid("the request method is malformed"),
            ParseError::Version => ApiError::invalid("the HTTP version is not supported"),
            other => ApiError::invalid(format!("the request is malformed: {other}")),
        };
        Self::new(&error, &[])
    }

    fn done(&self) -> bool {
        self.written >= self.bytes.len()
    }
}

/// The head timer: running from a connection's start, or from the first byte of a later
/// request, until the request's head is complete.
struct HeadTimer {
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl HeadTimer {
    fn start(&mut self) {
        if self.sleep.is_none() && !self.timeout.is_zero() {
            self.sleep = Some(Box::pin(tokio::time::sleep(self.timeout)));
        }
    }

    fn stop(&mut self) {
        self.sleep = None;
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.sleep
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
    }
}

/// A client connection as the framework reads it: only what a decoder of its own accepted.
struct GuardedStream {
    io: TcpStream,
    /// What the client sent that the framework has not read yet: first `accepted` bytes that
    /// may be handed over, then the bytes `decoder` has not framed yet (a copy is in `framing`).
    pending: BytesMut,
    accepted: usize,
    framing: BytesMut,
    decoder: Codec,
    head_timer: HeadTimer,
    /// Once set, the framework reads the end of the stream; the answer is written when it
    /// shuts the connection down.
    refusal: Option<Refusal>,
    /// When a refused connection stops lingering.
    linger: Option<Pin<Box<Sleep>>>,
    lingered: usize,
    _slot: Option<ClientSlot>,
}

impl GuardedStream {
    fn new(io: TcpStream, slot: Option<ClientSlot>, request_timeout: Duration) -> Self {
        let mut head_timer = HeadTimer {
            timeout: request_timeout,
            sleep: None,
        };
        head_timer.start();
        let refusal = slot.as_ref().filter(|slot| slot.over_limit).map(|_| {
            Refusal::new(
                &ApiError::RateLimited {
                    retry_after_secs: 1,
                },
                &[("retry-after", "1".to_owned())],
            )
        });
        Self {
            io,
            pending: BytesMut::new(),
            accepted: 0,
            framing: BytesMut::new(),
            decoder: Codec::default(),
            head_timer,
            refusal,
            linger: None,
            lingered: 0,
            _slot: slot,
        }
    }

    /// Frames what has arrived: complete heads and body bytes become accepted; a head the
    /// decoder refuses, or one announcing a body larger than any route takes, is answered.
    fn frame(&mut self) {
        while self.refusal.is_none() {
            let before = self.framing.len();
            match self.decoder.decode(&mut self.framing) {
                Ok(Some(Message::Item(request))) => {
                    self.head_timer.stop();
                    let announced = request
                        .head()
                        .headers
                        .get(CONTENT_LENGTH)
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.trim().parse::<u64>().ok());
                    if let Some(length) = announced.filter(|length| *length > MAX_BODY_BYTES) {
                        self.refusal = Some(Refusal::new(
                            &ApiError::PayloadTooLarge(format!(
                                "the body has {length} bytes; no route accepts more than {MAX_BODY_BYTES}"
                            )),
                            &[],
                        ));
                        return;
                    }
                    self.accepted += before - self.framing.len();
                }
                Ok(Some(Message::Chunk(_))) => self.accepted += before - self.framing.len(),
                Ok(None) => break,
                Err(err) => {
                    self.refusal = Some(Refusal::for_parse_error(&err));
                    return;
                }
            }
        }
        // Bytes of a head that has begun but not ended start the clock.
        if !self.framing.is_empty() && self.decoder.message_type() == MessageType::None {
            self.head_timer.start();
        }
    }

    /// Hands accepted bytes to the framework's buffer; whether any were.
    fn hand_over(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let n = self.accepted.min(buf.remaining());
        if n == 0 {
            return false;
        }
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        self.accepted -= n;
        true
    }

    /// Reads and discards what the client still sends, for a while, before the connection is
    /// closed: closing a socket with unread data resets it, and the client could lose the
    /// answer it has not read yet.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let linger = self
            .linger
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
        if linger.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let mut scratch = [0u8; 8192];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    self.lingered += buf.filled().len();
                    if self.lingered >= LINGER_BYTES {
                        return Poll::Ready(());
                    }
                }
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.hand_over(buf) {
                return Poll::Ready(Ok(()));
            }
            if this.refusal.is_some() {
                // The end of the stream: the framework finishes what it holds and shuts down.
                return Poll::Ready(Ok(()));
            }
            if this.head_timer.expired(cx) {
                this.head_timer.stop();
                this.refusal = Some(Refusal::new(
                    &ApiError::RequestTimeout(format!(
                        "the request head did not arrive within {} s",
                        this.head_timer.timeout.as_secs()
                    )),
                    &[],
                ));
                return Poll::Ready(Ok(()));
            }
            this.pending.reserve(8192);
            let start = this.pending.len();
            ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.io),
                cx,
                &mut this.pending
            ))?;
            if this.pending.len() == start {
                // The client closed its side; what it left unframed is of no use.
                return Poll::Ready(Ok(()));
            }
            this.framing.extend_from_slice(&this.pending[start..]);
            this.frame();
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(refusal) = &mut this.refusal {
            while !refusal.done() {
                let n = ready!(
                    Pin::new(&mut this.io).poll_write(cx, &refusal.bytes[refusal.written..])
                )?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                refusal.written += n;
            }
            ready!(Pin::new(&mut this.io).poll_flush(cx))?;
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            ready!(this.poll_linger(cx));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        // The framework let the connection go without shutting it down: send what it can of
        // the answer, without waiting.
        if let Some(refusal) = &self.refusal
            && refusal.written == 0
        {
            let _ = self.io.try_write(&refusal.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_a_complete_response_in_the_envelope() {
        let refusal = Refusal::for_parse_error(&ParseError::TooLarge);
        let text = String::from_utf8_lossy(&refusal.bytes);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("\r\nx-request-id: "), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        let envelope: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(
            envelope["error"]["code"], "request_header_fields_too_large",
            "{body}"
        );
    }

    #[test]
    fn connections_beyond_the_limit_of_one_client_are_over_it_until_others_close() {
        let clients = ClientConnections::new(2);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let first = clients.enter(ip);
        let second = clients.enter(ip);
        let third = clients.enter(ip);
        let elsewhere = clients.enter([10, 0, 0, 2].into());
        assert!(!first.over_limit && !second.over_limit && !elsewhere.over_limit);
        assert!(third.over_limit, "the third connection of one client");
        drop((first, third));
        assert!(!clients.enter(ip).over_limit, "a place was freed");
    }
}
