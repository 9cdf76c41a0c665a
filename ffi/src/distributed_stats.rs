//! `chronica_distributed_stats`: the distributed layer's counters, as a
//! struct that grows by appending (see `out_struct.rs`).

use chronica::DistributedStats;

use crate::boundary::boundary;
use crate::distributed::chronica_distributed;
use crate::input::object;
use crate::out_struct::{checked_size, field, write_fields, OutStruct};
use crate::status::{chronica_status, FfiResult};

/// A snapshot of the distributed layer's counters.
///
/// Set `struct_size` to `sizeof(chronica_distributed_stats)` before passing
/// one to `chronica_distributed_get_stats` (`chronica_distributed_stats s =
/// {.struct_size = sizeof s};`). The struct grows by appending counters;
/// the library writes only those that fit in `struct_size`, so a program
/// built against an older header keeps working with a newer library. The
/// first version ends after `resubscribes`
/// (`offsetof(chronica_distributed_stats, group_sender_only)` is the
/// smallest size accepted); a smaller one, 0 included, is
/// `CHRONICA_ERR_INVALID_ARGUMENT` with nothing written. `struct_size` is
/// never written; fields past it are left as they were.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct chronica_distributed_stats {
    /// Set by the caller: `sizeof(chronica_distributed_stats)`.
    pub struct_size: usize,
    /// Events handed to the broker successfully.
    pub published: u64,
    /// Publish attempts that failed and were retried (broker away).
    pub publish_retries: u64,
    /// Events waiting in the outbox to be published.
    pub buffered: u64,
    /// Events the full outbox dropped (oldest first) while the broker was away.
    pub buffer_dropped: u64,
    /// Broker messages received, on every subscription.
    pub received: u64,
    /// Received events handed to at least one local node.
    pub injected: u64,
    /// Received events already seen within the dedup window.
    pub duplicates: u64,
    /// Plain messages from foreign producers, accepted as events.
    pub foreign: u64,
    /// Malformed messages received.
    pub malformed: u64,
    /// Malformed received messages, and events the broker refused for good
    /// (`publish_rejected`), published to the dead-letter topic.
    pub dead_lettered: u64,
    /// Root events refused for a missing signature.
    pub rejected_unsigned: u64,
    /// Root events refused for a wrong signature.
    pub rejected_forged: u64,
    /// Errors reported by the broker (subscriptions, acks, and an adapter
    /// `close` that failed or outlasted the layer's 5 s).
    pub broker_errors: u64,
    /// Subscriptions re-established after their stream ended. The last
    /// field of the first version.
    pub resubscribes: u64,
    /// Version 2. Group shares that came to this instance when the group's only
    /// member here that matched was the event's own source: sender
    /// exclusion left nobody, so the share was acknowledged undelivered
    /// (a broker gives a share to an instance, and cannot be told to skip
    /// the sender's).
    pub group_sender_only: u64,
    /// Version 3. Events the broker refused for good (a publish answered
    /// `CHRONICA_ERR_INVALID_ARGUMENT`, or a built-in adapter's broker
    /// refused them: too large, say): not retried, so later events still
    /// go out; each is dead-lettered. Every event queued for the broker is
    /// counted once in `published`, `buffered`, `buffer_dropped` or here.
    pub publish_rejected: u64,
    /// Version 4. Unicast messages (`chronica_distributed_emit_to`, `_emit_root` with
    /// a target, across the broker) received for a target not registered
    /// on this instance. Every instance reads every unicast, the sender's
    /// own included, and only the one that has the target delivers it;
    /// each of the others counts it here. A unicast counted here by every
    /// instance of the fabric reached nobody: no instance had its target.
    pub unicast_not_here: u64,
    /// Version 5. Genuine root events rejected because their signed
    /// timestamp is further than the root max age
    /// (`chronica_distributed_options_set_root_max_age`) from this
    /// instance's clock: a replay, or clocks apart.
    pub rejected_stale: u64,
}

impl From<&DistributedStats> for chronica_distributed_stats {
    fn from(s: &DistributedStats) -> Self {
        Self {
            struct_size: std::mem::size_of::<Self>(),
            published: s.published,
            publish_retries: s.publish_retries,
            buffered: s.buffered,
            buffer_dropped: s.buffer_dropped,
            received: s.received,
            injected: s.injected,
            duplicates: s.duplicates,
            foreign: s.foreign,
            malformed: s.malformed,
            dead_lettered: s.dead_lettered,
            rejected_unsigned: s.rejected_unsigned,
            rejected_forged: s.rejected_forged,
            broker_errors: s.broker_errors,
            resubscribes: s.resubscribes,
            group_sender_only: s.group_sender_only,
            publish_rejected: s.publish_rejected,
            unicast_not_here: s.unicast_not_here,
            rejected_stale: s.rejected_stale,
        }
    }
}

impl OutStruct for chronica_distributed_stats {
    const NAME: &'static str = "chronica_distributed_stats";
    const FIRST_VERSION_SIZE: usize = std::mem::offset_of!(Self, resubscribes) + std::mem::size_of::<u64>();
    const FIELDS: &'static [(usize, usize)] = &[
        field!(Self, published: u64),
        field!(Self, publish_retries: u64),
        field!(Self, buffered: u64),
        field!(Self, buffer_dropped: u64),
        field!(Self, received: u64),
        field!(Self, injected: u64),
        field!(Self, duplicates: u64),
        field!(Self, foreign: u64),
        field!(Self, malformed: u64),
        field!(Self, dead_lettered: u64),
        field!(Self, rejected_unsigned: u64),
        field!(Self, rejected_forged: u64),
        field!(Self, broker_errors: u64),
        field!(Self, resubscribes: u64),
        field!(Self, group_sender_only: u64),
        field!(Self, publish_rejected: u64),
        field!(Self, unicast_not_here: u64),
        field!(Self, rejected_stale: u64),
    ];
}

/// Writes a snapshot of the layer's counters to `*stats_out`, as many as
/// its `struct_size` (set by the caller) has room for; see
/// `chronica_distributed_stats`. Works after close (the final counters).
///
/// # Safety
/// `distributed` must be NULL or a live handle; `stats_out` NULL or
/// `stats_out->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn chronica_distributed_get_stats(
    distributed: *mut chronica_distributed,
    stats_out: *mut chronica_distributed_stats,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let h = unsafe { object(distributed, "distributed") }?;
        // SAFETY: forwarded from the caller.
        let size = unsafe { checked_size(stats_out, "stats_out") }?;
        let stats = chronica_distributed_stats::from(&h.fabric.stats());
        // SAFETY: `size` writable bytes per the caller.
        unsafe { write_fields(stats_out, &stats, size) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stats_field_is_written() {
        let mut n = 0u64;
        let mut next = || {
            n += 1;
            n
        };
        crate::out_struct::tests::check(chronica_distributed_stats {
            struct_size: 1,
            published: next(),
            publish_retries: next(),
            buffered: next(),
            buffer_dropped: next(),
            received: next(),
            injected: next(),
            duplicates: next(),
            foreign: next(),
            malformed: next(),
            dead_lettered: next(),
            rejected_unsigned: next(),
            rejected_forged: next(),
            broker_errors: next(),
            resubscribes: next(),
            group_sender_only: next(),
            publish_rejected: next(),
            unicast_not_here: next(),
            rejected_stale: next(),
        });
    }
}
