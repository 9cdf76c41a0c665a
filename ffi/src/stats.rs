//! `chronica_node_stats`: one node's counters as C sees them.

use chronica::NodeStats;

/// A consistent snapshot of one node's counters, both lanes counted:
/// `accepted == delivered + dropped + dead_lettered + pending` holds in
/// every snapshot. Readable after close (the final counters).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct chronica_node_stats {
    /// Events placed in the node's lanes (control events included).
    pub accepted: u64,
    /// Events whose callback call succeeded.
    pub delivered: u64,
    /// Events removed by the overflow policy or left by an unregistered node.
    pub dropped: u64,
    /// Events handed to the dead-letter hook after `max_retries`.
    pub dead_lettered: u64,
    /// Events waiting or in flight (after close: left undelivered).
    pub pending: u64,
    /// Re-attempts of a failed batch.
    pub retries: u64,
    /// Failed callback calls.
    pub failures: u64,
    /// Whether the node is currently marked connected.
    pub connected: bool,
}

impl From<&NodeStats> for chronica_node_stats {
    fn from(s: &NodeStats) -> Self {
        Self {
            accepted: s.accepted,
            delivered: s.delivered,
            dropped: s.dropped,
            dead_lettered: s.dead_lettered,
            pending: s.pending,
            retries: s.retries,
            failures: s.failures,
            connected: s.connected,
        }
    }
}
