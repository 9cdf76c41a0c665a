//! `chronica_node_stats`: one node's counters as C sees them.

use chronica::NodeStats;

/// A consistent snapshot of one node's counters, both lanes counted:
/// `accepted == delivered + dropped + dead_lettered + pending` holds in
/// every snapshot. Readable after close (the final counters).
///
/// The layout is the one SPEC section 5 fixes, seven `uint64_t` in this
/// order, and it never grows: a host may declare one uninitialised (or
/// `= {0}`) and pass it, and every function filling one writes all seven.
/// Later per-node facts come through functions of their own, as the
/// connection state does (`chronica_director_node_is_connected`).
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
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    /// SPEC section 5: seven `uint64_t`, in this order, nothing else.
    #[test]
    fn the_layout_is_the_specs() {
        type S = chronica_node_stats;
        let offsets = [
            offset_of!(S, accepted),
            offset_of!(S, delivered),
            offset_of!(S, dropped),
            offset_of!(S, dead_lettered),
            offset_of!(S, pending),
            offset_of!(S, retries),
            offset_of!(S, failures),
        ];
        assert_eq!(offsets, [0, 8, 16, 24, 32, 40, 48]);
        assert_eq!(size_of::<S>(), 7 * size_of::<u64>());
    }
}
