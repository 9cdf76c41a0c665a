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

/// The token of an `Authorization` value `Bearer <token>`: the scheme in
/// any case (RFC 7235 section 2.1: auth schemes are case-insensitive), then
/// one or more spaces or tabs. Blanks after the token are not part of it.
/// `None` when the value does not have that shape.
fn bearer_token(value: &str) -> Option<&str> {
    const SCHEME: &str = "Bearer";
    let scheme = value.get(..SCHEME.len())?;
    let rest = &value[SCHEME.len()..];
    let token = rest.trim_start_matches([' ', '\t']);
    if !scheme.eq_ignore_ascii_case(SCHEME) || token.len() == rest.len() {
        return None;
    }
    Some(token.trim_end_matches([' ', '\t']))
}

/// Middleware: refuses a request without a valid `Authorization: Bearer`.
pub(crate) async fn require_bearer(State(hub): State<Arc<Hub>>, req: Request, next: Next) -> Response {
    let presented =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    match presented {
        Some(token) if hub.tokens.accepts(token) => next.run(req).await,
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
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer t", "bearer t", "BEARER t", "bEaReR t", "Bearer  t", "Bearer\tt", "Bearer \t t \t"]
        {
            assert_eq!(bearer_token(v), Some("t"), "{v:?}");
        }
        assert_eq!(bearer_token("Bearer a b"), Some("a b"), "refused later: not a token");
        assert_eq!(bearer_token("Bearer "), Some(""), "refused later: empty");
        for v in ["Bearert", "Bearer", "Basic t", "Bearers t", "Bear t", "", " Bearer t", "Beärer t"] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
    }

    #[test]
    fn signature_is_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2.
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
