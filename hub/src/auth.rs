//! Bearer-token check for every client call, and webhook signing.
//!
//! Tokens are kept as SHA-256 digests and compared digest to digest in
//! constant time, every configured token each time, so neither the position
//! of the first wrong byte nor the length of a token leaks through timing.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::ApiError;
use crate::hub::Hub;
use std::sync::Arc;

/// The accepted client tokens, as digests.
#[derive(Debug, Clone)]
pub(crate) struct Tokens(Vec<[u8; 32]>);

impl Tokens {
    /// Digests the configured tokens.
    pub(crate) fn new(tokens: &[String]) -> Self {
        Self(tokens.iter().map(|t| Sha256::digest(t.as_bytes()).into()).collect())
    }

    /// True when `presented` is one of the tokens (constant time).
    pub(crate) fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut ok = subtle::Choice::from(0);
        for t in &self.0 {
            ok |= t.ct_eq(&digest);
        }
        ok.into()
    }
}

/// Middleware: refuses a request without a valid `Authorization: Bearer`.
pub(crate) async fn require_bearer(State(hub): State<Arc<Hub>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    match presented {
        Some(token) if hub.tokens.accepts(token.trim()) => next.run(req).await,
        Some(_) => unauthorized("invalid bearer token"),
        None => unauthorized("missing Authorization: Bearer <token> header"),
    }
}

fn unauthorized(why: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, why).into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    resp
}

/// The `X-Chronica-Signature` of a body: HMAC-SHA256 keyed by the
/// receiving node's webhook secret, lower-case hex.
pub(crate) fn sign(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly() {
        let t = Tokens::new(&["alpha".into(), "beta".into()]);
        assert!(t.accepts("alpha") && t.accepts("beta"));
        assert!(!t.accepts("alph") && !t.accepts("alphaa") && !t.accepts(""));
    }

    #[test]
    fn signature_is_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2.
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
