//! `chronica_node_stats`: one node's counters as C sees them.

use chronica::NodeStats;

use crate::out_struct::{field, OutStruct};

/// A consistent snapshot of one node's counters, both lanes counted:
/// `accepted == delivered + dropped + dead_lettered + pending` holds in
/// every snapshot. Readable after close (the final counters).
///
/// Set `struct_size` to `sizeof(chronica_node_stats)` before passing one
/// to a function that fills it (`chronica_node_stats s = {.struct_size =
/// sizeof s};`): later versions append fields, and the library writes only
/// those that fit in `struct_size`, so a program built against an older
/// header keeps working with a newer library. A size below the first
/// version's, which ends after `connected` (`offsetof(chronica_node_stats,
/// connected) + sizeof(bool)`), 0 included, is
/// `CHRONICA_ERR_INVALID_ARGUMENT` with nothing written. `struct_size` is
/// never written; fields past it are left as they were.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct chronica_node_stats {
    /// Set by the caller: `sizeof(chronica_node_stats)`.
    pub struct_size: usize,
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
            struct_size: std::mem::size_of::<Self>(),
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

impl OutStruct for chronica_node_stats {
    const NAME: &'static str = "chronica_node_stats";
    const FIRST_VERSION_SIZE: usize = std::mem::offset_of!(Self, connected) + std::mem::size_of::<bool>();
    const FIELDS: &'static [(usize, usize)] = &[
        field!(Self, accepted: u64),
        field!(Self, delivered: u64),
        field!(Self, dropped: u64),
        field!(Self, dead_lettered: u64),
        field!(Self, pending: u64),
        field!(Self, retries: u64),
        field!(Self, failures: u64),
        field!(Self, connected: bool),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_written() {
        crate::out_struct::tests::check(chronica_node_stats {
            struct_size: 1,
            accepted: 2,
            delivered: 3,
            dropped: 4,
            dead_lettered: 5,
            pending: 6,
            retries: 7,
            failures: 8,
            connected: true,
        });
    }
}
