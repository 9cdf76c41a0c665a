//! The error of the adapters and the distributed layer.

use std::fmt;

/// Why an adapter or the distributed layer refused or failed a call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MqError {
    /// A malformed setting or URL; the text says which.
    Config(String),
    /// The broker could not be reached (at construction, or now).
    Connect(String),
    /// The broker refused or failed an operation. Transient as far as the
    /// layer knows: a publish that fails so is tried again.
    Broker(String),
    /// The broker (or the adapter) refused this one message for good: it
    /// can never be published as it is (larger than the broker's message
    /// size limit, a byte the broker or a C adapter cannot carry, a record
    /// the broker calls invalid). The distributed layer does not try it
    /// again, so it cannot hold back the messages behind it; it counts it
    /// (`publish_rejected`) and dead-letters it. Only for a refusal that
    /// retrying cannot change: a broker away is [`MqError::Broker`].
    Rejected(String),
    /// Not possible with this adapter or build (a missing cargo feature).
    Unsupported(String),
    /// The adapter or distributed handle is closed.
    Closed,
    /// The local director refused the call.
    Engine(crate::Error),
}

impl fmt::Display for MqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MqError::Config(why) => write!(f, "bad configuration: {why}"),
            MqError::Connect(why) => write!(f, "broker unreachable: {why}"),
            MqError::Broker(why) => write!(f, "broker error: {why}"),
            MqError::Rejected(why) => write!(f, "refused by the broker for good: {why}"),
            MqError::Unsupported(why) => write!(f, "unsupported: {why}"),
            MqError::Closed => f.write_str("closed"),
            MqError::Engine(e) => write!(f, "director: {e}"),
        }
    }
}

impl std::error::Error for MqError {}

impl From<crate::Error> for MqError {
    fn from(e: crate::Error) -> Self {
        MqError::Engine(e)
    }
}

/// Result alias of the distributed layer.
pub type MqResult<T> = Result<T, MqError>;
