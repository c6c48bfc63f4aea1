//! The request-id middleware: one id, one span and one log line per request.

use std::time::Instant;

use actix_web::{
    HttpResponse,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    error::InternalError,
    http::{
        StatusCode,
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

/// Runs the request inside a span carrying its id, method and path, logs its outcome once, and
/// sets `X-Request-Id` on whatever response comes back, error responses included.
pub(crate) async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = request_id(req.headers());
    let span = tracing::info_span!(
        "http_request",
        request_id = %String::from_utf8_lossy(id.as_bytes()),
        method = %req.method(),
        path = %req.path(),
        // Filled in by the tenant extractors once the caller is known.
        principal = tracing::field::Empty,
        tenant = tracing::field::Empty,
    );
    let started = Instant::now();

    async move {
        match next.call(req).await {
            Ok(response) => {
                let mut response = response.map_into_boxed_body();
                response.headers_mut().insert(REQUEST_ID_HEADER, id);
                log_completion(response.status(), started);
                Ok(response)
            }
            // Handlers and extractors turn their errors into responses themselves; an error
            // here comes from the framework. It still gets the request id: `InternalError`
            // carries a ready-made response, which the server sends as it is.
            Err(err) => {
                let mut response = HttpResponse::from_error(err);
                response.headers_mut().insert(REQUEST_ID_HEADER, id);
                log_completion(response.status(), started);
                let cause = response
                    .error()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                Err(InternalError::from_response(cause, response).into())
            }
        }
    }
    .instrument(span)
    .await
}

fn log_completion(status: StatusCode, started: Instant) {
    tracing::info!(
        status = status.as_u16(),
        // Microsecond precision is plenty and keeps log lines short.
        latency_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0,
        "request completed"
    );
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
    fn a_missing_id_is_generated_as_a_uuid() {
        let id = request_id(&HeaderMap::new());
        let text = id.to_str().unwrap_or_default();
        assert!(
            Uuid::parse_str(text).is_ok(),
            "generated id {text:?} is a UUID"
        );
    }
}
