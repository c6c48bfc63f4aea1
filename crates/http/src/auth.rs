//! Management authentication: the shared key that guards recomputations and the audit trail.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header::HeaderMap, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{AppState, error::ApiError};

/// The header that carries the management key; when present it alone decides.
pub const MANAGEMENT_KEY_HEADER: &str = "X-Management-Key";

/// The management API key.
///
/// Only its SHA-256 is kept: comparing digests of equal length in constant time leaks neither
/// the key nor its length through timing, and the secret itself never sits in the state where a
/// stray `{:?}` could print it.
#[derive(Clone)]
pub struct ManagementKey {
    digest: [u8; 32],
}

impl ManagementKey {
    /// Wraps the configured secret.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self {
            digest: Sha256::digest(secret.as_ref()).into(),
        }
    }

    /// Whether `candidate` is the key, compared in constant time. An empty candidate never is,
    /// so a blank header cannot match a misconfigured empty key.
    pub fn verify(&self, candidate: &[u8]) -> bool {
        if candidate.is_empty() {
            return false;
        }
        let candidate: [u8; 32] = Sha256::digest(candidate).into();
        self.digest.ct_eq(&candidate).into()
    }
}

impl std::fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManagementKey(<redacted>)")
    }
}

/// Proof that the request presented the management key. Take it as the first argument of a
/// handler so that a request without the key is refused before its body or query is read.
#[derive(Debug, Clone, Copy)]
pub struct ManagementAuth(());

impl FromRequest for ManagementAuth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(authorize(req))
    }
}

fn authorize(req: &HttpRequest) -> Result<ManagementAuth, ApiError> {
    let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("the application state is not registered"))
    })?;
    match presented_key(req.headers()) {
        None => Err(ApiError::Unauthorized(
            "missing management key: send X-Management-Key: <key> or Authorization: Bearer <key>",
        )),
        Some(key) if state.management_key.verify(key) => Ok(ManagementAuth(())),
        Some(_) => Err(ApiError::Unauthorized("invalid management key")),
    }
}

/// The key the request presents: `X-Management-Key` if sent (even if wrong), else the token of
/// an `Authorization: Bearer` header. Raw bytes, so a non-UTF-8 header is simply a wrong key.
fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(value) = headers.get(MANAGEMENT_KEY_HEADER) {
        return Some(value.as_bytes().trim_ascii());
    }
    let authorization = headers
        .get(actix_web::http::header::AUTHORIZATION)?
        .as_bytes();
    let (scheme, token) = authorization.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{AUTHORIZATION, HeaderValue};

    use super::*;

    #[test]
    fn the_key_matches_only_itself() {
        let key = ManagementKey::new("correct horse battery staple");
        assert!(key.verify(b"correct horse battery staple"));
        assert!(
            !key.verify(b"correct horse battery stapl"),
            "a prefix is not the key"
        );
        assert!(!key.verify(b""), "an empty candidate never matches");
    }

    #[test]
    fn debug_output_never_contains_the_key() {
        let key = ManagementKey::new("super-secret-value");
        assert!(
            !format!("{key:?}").contains("super-secret"),
            "debug: {key:?}"
        );
    }

    #[test]
    fn the_management_header_decides_over_a_bearer_token() {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer from-bearer"),
        );
        assert_eq!(presented_key(&headers), Some(&b"from-bearer"[..]));
        headers.insert(
            actix_web::http::header::HeaderName::from_static("x-management-key"),
            HeaderValue::from_static("from-header"),
        );
        assert_eq!(presented_key(&headers), Some(&b"from-header"[..]));
    }

    #[test]
    fn other_authorization_schemes_present_no_key() {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert_eq!(presented_key(&headers), None);
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("bearer lower-case-scheme"),
        );
        assert_eq!(presented_key(&headers), Some(&b"lower-case-scheme"[..]));
    }
}
