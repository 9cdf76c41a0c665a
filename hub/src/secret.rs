//! Per-node webhook secrets: the HMAC keys of webhook signatures.
//!
//! Each webhook node gets its own key, so a signature proves the delivery
//! came from the hub and was meant for that node. The trust token cannot
//! serve: every node receives it in its root events, so any node could sign
//! a delivery to any other with it.
//!
//! A secret lives only in the node's delivery task and in the registration
//! answer: it is never stored in the node table the API, the metrics and the
//! status page read, and its `Debug` form is redacted so a log line cannot
//! leak it. A node's key can be replaced (rotation) through a
//! [`SecretCell`], which can be written and used to sign but never read.

use std::fmt;

use parking_lot::RwLock;

use serde::Deserialize;

/// Random bytes in a generated secret (hex-encoded, so 64 characters).
const GENERATED_BYTES: usize = 32;
/// Shortest secret a client may choose: shorter keys could be found by
/// brute force from a single signed body.
pub(crate) const MIN_LEN: usize = 16;
/// Longest secret a client may choose.
pub(crate) const MAX_LEN: usize = 256;

/// A webhook node's signing key. The HMAC key is the secret's text as
/// given (its ASCII bytes), so receivers use the string exactly as the
/// registration answer shows it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct WebhookSecret(String);

impl WebhookSecret {
    /// A fresh secret from the operating system's CSPRNG.
    pub(crate) fn generate() -> Result<Self, String> {
        let mut bytes = [0u8; GENERATED_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a webhook secret: {e}"))?;
        Ok(Self(hex::encode(bytes)))
    }

    /// `chosen` when the client gave one, else a fresh secret.
    pub(crate) fn chosen_or_generated(chosen: Option<Self>) -> Result<Self, String> {
        chosen.map_or_else(Self::generate, Ok)
    }

    /// The key bytes for HMAC.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The secret's text, for the one answer that hands it out.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WebhookSecret {
    type Error = String;

    /// Accepts a client-chosen secret: printable ASCII (no spaces), so it
    /// survives environment variables, config files and shells unchanged.
    fn try_from(s: String) -> Result<Self, String> {
        let printable = s.bytes().all(|b| b.is_ascii_graphic());
        if (MIN_LEN..=MAX_LEN).contains(&s.len()) && printable {
            Ok(Self(s))
        } else {
            Err(format!(
                "\"secret\" must be {MIN_LEN} to {MAX_LEN} printable ASCII characters without spaces"
            ))
        }
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// A webhook node's current key, shared by its delivery task (which signs
/// with it) and the hub's node table (which may only replace it). There is
/// no getter: the key leaves the hub only in the answer that set it.
pub(crate) struct SecretCell(RwLock<WebhookSecret>);

impl SecretCell {
    /// A cell holding `secret`.
    pub(crate) fn new(secret: WebhookSecret) -> Self {
        Self(RwLock::new(secret))
    }

    /// The hex HMAC-SHA256 of `body` under the current key.
    pub(crate) fn sign(&self, body: &[u8]) -> String {
        crate::auth::sign(self.0.read().as_bytes(), body)
    }

    /// Makes `secret` the key of every signature from now on.
    pub(crate) fn replace(&self, secret: WebhookSecret) {
        *self.0.write() = secret;
    }
}

impl fmt::Debug for SecretCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretCell(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_hex_and_distinct() {
        let a = WebhookSecret::generate().unwrap();
        let b = WebhookSecret::generate().unwrap();
        assert_eq!(a.expose().len(), 2 * GENERATED_BYTES);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn chosen_secrets_are_validated_and_never_printed() {
        let ok = WebhookSecret::try_from("x".repeat(MIN_LEN)).unwrap();
        assert!(!format!("{ok:?}").contains("xxxx"));
        assert!(WebhookSecret::try_from("x".repeat(MAX_LEN)).is_ok());
        for bad in ["", "short", "has a space in it!!", "tab\there-0123456789", "é-0123456789abcdef"] {
            assert!(WebhookSecret::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
        assert!(WebhookSecret::try_from("x".repeat(MAX_LEN + 1)).is_err());
    }

    #[test]
    fn a_replaced_key_signs_from_then_on() {
        let (old, new) = (WebhookSecret::generate().unwrap(), WebhookSecret::generate().unwrap());
        let cell = SecretCell::new(old.clone());
        assert_eq!(cell.sign(b"body"), crate::auth::sign(old.as_bytes(), b"body"));
        cell.replace(new.clone());
        assert_eq!(cell.sign(b"body"), crate::auth::sign(new.as_bytes(), b"body"));
        assert_ne!(cell.sign(b"body"), crate::auth::sign(old.as_bytes(), b"body"));
        assert!(!format!("{cell:?}").contains(new.expose()));
    }
}
