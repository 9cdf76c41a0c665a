//! Per-node counters.

/// A consistent snapshot of one node's counters, taken under the fiber's
/// lock, so `accepted == delivered + dropped + dead_lettered + pending`
/// holds exactly in every snapshot (both lanes counted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Events placed in the node's lanes (including control events).
    pub accepted: u64,
    /// Events whose callback call succeeded.
    pub delivered: u64,
    /// Events removed by the overflow policy or left by an unregistered node.
    pub dropped: u64,
    /// Events handed to the dead-letter hook after `max_retries`.
    pub dead_lettered: u64,
    /// Events waiting or in flight.
    pub pending: u64,
    /// Re-attempts of a failed batch.
    pub retries: u64,
    /// Failed callback calls.
    pub failures: u64,
    /// The message of the most recent failure, if any.
    pub last_error: Option<String>,
    /// Whether the node is currently marked connected.
    pub connected: bool,
}

impl NodeStats {
    /// True when the accounting equation of SPEC section 2.4 holds.
    pub fn balanced(&self) -> bool {
        self.accepted == self.delivered + self.dropped + self.dead_lettered + self.pending
    }
}
