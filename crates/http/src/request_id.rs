//! The request middleware: one id, one trace context, one span, one log line and the HTTP
//! metrics of every request.

use std::{cell::RefCell, collections::HashMap, time::Instant};

use actix_web::{
    HttpResponse,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    error::InternalError,
    http::{
        Method, StatusCode,
        header::{HeaderMap, HeaderName, HeaderValue},
    },
    middleware::Next,
};
use tracing::Instrument;
use uuid::Uuid;

/// The header that carries the request id, both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-supplied id that is echoed; a longer one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of the request: the client's `X-Request-Id` when it is printable ASCII of at most
/// 128 characters (so it can be correlated across services and is safe to log and echo),
/// else a fresh UUID v4.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&REQUEST_ID_HEADER)
        .filter(|value| is_acceptable(value.as_bytes()))
        .cloned()
        .unwrap_or_else(|| {
            let generated = Uuid::new_v4().to_string();
            // A hyphenated UUID is always a valid header value; the fallback is unreachable.
            HeaderValue::try_from(generated)
                .unwrap_or(HeaderValue::from_static("invalid-request-id"))
        })
}

fn is_acceptable(id: &[u8]) -> bool {
    !id.trim_ascii().is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.iter().all(|byte| (0x20..=0x7e).contains(byte))
}

/// Runs the request inside a span carrying its id, trace id, method and path, logs its outcome
/// once with its route template, counts it in the HTTP metrics, and sets `X-Request-Id` and
/// `traceparent` on whatever response comes back, error responses included.
pub(crate) async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = request_id(req.headers());
    let trace = TraceContext::continued(req.headers());
    let span = tracing::info_span!(
        "http_request",
        request_id = %String::from_utf8_lossy(id.as_bytes()),
        trace_id = %trace.trace_id(),
        // The caller's span and sampling decision, for the span exporter.
        parent_id = trace.parent_id(),
        sampled = trace.sampled(),
        method = %req.method(),
        path = %req.path(),
        // Filled in once the request is routed, and by the tenant extractors once the caller
        // is known.
        route = tracing::field::Empty,
        principal = tracing::field::Empty,
        tenant = tracing::field::Empty,
        tenant_id = tracing::field::Empty,
    );
    let started = Instant::now();
    let method = req.method().clone();
    HANDLES.with(|handles| handles.in_flight.increment(1.0));
    let traceparent = trace.header();

    let outcome = async move {
        match next.call(req).await {
            Ok(response) => {
                let mut response = response.map_into_boxed_body();
                let route = response.request().match_pattern();
                let headers = response.headers_mut();
                headers.insert(REQUEST_ID_HEADER, id);
                headers.insert(TRACEPARENT, traceparent);
                completed(route, &method, response.status(), started);
                Ok(response)
            }
            // Handlers and extractors turn their errors into responses themselves; an error
            // here comes from the framework. It still gets the request id: `InternalError`
            // carries a ready-made response, which the server sends as it is.
            Err(err) => {
                let mut response = HttpResponse::from_error(err);
                let headers = response.headers_mut();
                headers.insert(REQUEST_ID_HEADER, id);
                headers.insert(TRACEPARENT, traceparent);
                completed(None, &method, response.status(), started);
                let cause = response
                    .error()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                Err(InternalError::from_response(cause, response).into())
            }
        }
    }
    .instrument(span)
    .await;
    HANDLES.with(|handles| handles.in_flight.decrement(1.0));
    outcome
}

/// Requests by route template, method and status.
pub const REQUESTS: &str = "pg_analytics_http_requests_total";
/// Request latency by route template and method, from the request head to the response head.
pub const DURATION: &str = "pg_analytics_http_request_duration_seconds";
/// Requests being served.
pub const IN_FLIGHT: &str = "pg_analytics_http_requests_in_flight";

/// Gives the HTTP metrics their help text and unit.
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "HTTP requests by route template, method and status."
    );
    describe_histogram!(
        DURATION,
        Unit::Seconds,
        "HTTP request latency by route template and method."
    );
    describe_gauge!(IN_FLIGHT, Unit::Count, "HTTP requests being served.");
}

/// Logs the outcome of a request and counts it. `route` is the template the request matched
/// (`/api/v1/reports/{slug}/run`), never its path, so the metrics' labels stay bounded.
fn completed(route: Option<String>, method: &Method, status: StatusCode, started: Instant) {
    let elapsed = started.elapsed().as_secs_f64();
    let route = route.unwrap_or_else(|| UNMATCHED.to_owned());
    tracing::Span::current().record("route", route.as_str());
    tracing::info!(
        status = status.as_u16(),
        // Microsecond precision is plenty and keeps log lines short.
        latency_ms = (elapsed * 1_000_000.0).round() / 1000.0,
        "request completed"
    );
    HANDLES.with(|handles| {
        handles.count(route, known_method(method), status_label(status), elapsed);
    });
}

/// The handles of the HTTP metrics a worker thread has used. Looking a labelled metric up in
/// the recorder builds its key and takes a lock on every request; a handle found once is a
/// map lookup and an atomic add after that. Routes, methods and statuses are bounded, so the
/// map is too.
struct Handles {
    in_flight: metrics::Gauge,
    /// By route, then by method and status.
    series: RefCell<HashMap<String, ByStatus>>,
}

/// The series of one route, by method and status.
type ByStatus = HashMap<(&'static str, &'static str), Series>;

/// The request counter and latency histogram of one route, method and status.
type Series = (metrics::Counter, metrics::Histogram);

thread_local! {
    // Made at a thread's first request, when the binary has installed its recorder.
    static HANDLES: Handles = Handles {
        in_flight: metrics::gauge!(IN_FLIGHT),
        series: RefCell::default(),
    };
}

impl Handles {
    /// Counts a request of `route`, `method` and `status` that took `elapsed` seconds.
    fn count(&self, route: String, method: &'static str, status: &'static str, elapsed: f64) {
        let mut series = self.series.borrow_mut();
        let by_route = match series.get_mut(route.as_str()) {
            Some(by_route) => by_route,
            None => series.entry(route.clone()).or_default(),
        };
        let (requests, duration) = by_route.entry((method, status)).or_insert_with(|| {
            (
                metrics::counter!(REQUESTS, "route" => route.clone(), "method" => method, "status" => status),
                metrics::histogram!(DURATION, "route" => route, "method" => method),
            )
        });
        requests.increment(1);
        duration.record(elapsed);
    }
}

/// The route label of a request that matched no route.
const UNMATCHED: &str = "unmatched";

/// The method as a label: one of the standard methods, else `other` (a client may send any
/// token as a method).
fn known_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_label(status: StatusCode) -> &'static str {
    // Every status the service sends is one of these; anything else is folded by class.
    match status.as_u16() {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        207 => "207",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        431 => "431",
        500 => "500",
        503 => "503",
        code if code < 300 => "2xx",
        code if code < 400 => "3xx",
        code if code < 500 => "4xx",
        _ => "5xx",
    }
}

/// The W3C trace context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The trace a request belongs to: the caller's (its `traceparent`, when well formed) or a new
/// one, and this server's span in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceContext {
    trace_id: u128,
    /// The caller's span, when it sent a `traceparent`.
    parent_id: Option<u64>,
    span_id: u64,
    sampled: bool,
}

impl TraceContext {
    /// Continues the caller's trace, or starts one (sampled) when it sent none or a malformed
    /// one, as the W3C recommendation says.
    pub(crate) fn continued(headers: &HeaderMap) -> Self {
        let parent = headers
            .get(&TRACEPARENT)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_traceparent);
        let random = Uuid::new_v4().as_u128();
        let span_id = (random as u64) | 1;
        match parent {
            Some(Parent {
                trace_id,
                span_id: parent_id,
                sampled,
            }) => Self {
                trace_id,
                parent_id: Some(parent_id),
                span_id,
                sampled,
            },
            None => Self {
                trace_id: Uuid::new_v4().as_u128(),
                parent_id: None,
                span_id,
                sampled: true,
            },
        }
    }

    /// The trace id, 32 lower-case hex digits.
    pub(crate) fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The caller's span id, 16 lower-case hex digits, when it sent one.
    pub(crate) fn parent_id(&self) -> Option<String> {
        self.parent_id.map(|id| format!("{id:016x}"))
    }

    /// Whether the trace is sampled: the caller's choice, or yes for a new trace.
    pub(crate) fn sampled(&self) -> bool {
        self.sampled
    }

    /// The `traceparent` naming this server's span as the parent of whatever follows.
    fn header(&self) -> HeaderValue {
        let value = format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        );
        HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static("invalid-traceparent"))
    }
}

/// What a caller's `traceparent` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parent {
    trace_id: u128,
    span_id: u64,
    sampled: bool,
}

/// The trace id, parent span id and sampled flag of a `traceparent` of version 00 (or a later
/// version, read as 00): `version-traceid-parentid-flags`, lower-case hex, neither id all
/// zeros.
fn parse_traceparent(raw: &str) -> Option<Parent> {
    let raw = raw.trim();
    let mut parts = raw.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let is_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !is_hex(version, 2) || version == "ff" || !is_hex(trace, 32) || !is_hex(parent, 16) {
        return None;
    }
    if !is_hex(flags, 2) || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let trace_id = u128::from_str_radix(trace, 16).ok()?;
    let parent_id = u64::from_str_radix(parent, 16).ok()?;
    if trace_id == 0 || parent_id == 0 {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(Parent {
        trace_id,
        span_id: parent_id,
        sampled: flags & 1 == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ids_up_to_128_characters_are_kept() {
        assert!(is_acceptable(b"abc-123"));
        assert!(is_acceptable("x".repeat(128).as_bytes()));
        assert!(!is_acceptable("x".repeat(129).as_bytes()), "too long");
        assert!(!is_acceptable(b"   "), "blank");
        assert!(!is_acceptable(b"caf\xc3\xa9"), "not ASCII");
        assert!(!is_acceptable(b"a\tb"), "control character");
    }

    #[test]
    fn a_well_formed_traceparent_is_continued() {
        let parsed = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(
            parsed,
            Some(Parent {
                trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                span_id: 0x00f0_67aa_0ba9_02b7,
                sampled: true
            })
        );
        assert_eq!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .map(|parent| parent.sampled),
            Some(false)
        );
        // A later version may add fields after the flags.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
                .is_some()
        );
    }

    #[test]
    fn a_malformed_traceparent_starts_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static("garbage"));
        let started = TraceContext::continued(&headers);
        assert_ne!(started.trace_id, 0);
        assert!(started.sampled);
    }

    #[test]
    fn the_response_traceparent_keeps_the_trace_and_names_a_new_span() {
        let mut headers = HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let context = TraceContext::continued(&headers);
        let header = context.header();
        let text = header.to_str().unwrap_or_default();
        assert!(
            text.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{text}"
        );
        assert!(!text.contains("00f067aa0ba902b7"), "{text}");
        assert_eq!(
            parse_traceparent(text).map(|parent| parent.sampled),
            Some(true)
        );
        assert_eq!(context.parent_id().as_deref(), Some("00f067aa0ba902b7"));
    }

    #[test]
    fn a_missing_id_is_generated_as_a_uuid() {
        let id = request_id(&HeaderMap::new());
        let text = id.to_str().unwrap_or_default();
        assert!(
            Uuid::parse_str(text).is_ok(),
            "generated id {text:?} is a UUID"
        );
    }
}
