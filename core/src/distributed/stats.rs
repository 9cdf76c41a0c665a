//! Counters of the distributed layer: plain atomics bumped by its tasks,
//! read as one [`DistributedStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the distributed layer's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DistributedStats {
    /// Events handed to the broker successfully.
    pub published: u64,
    /// Publish attempts that failed and were retried (broker away).
    pub publish_retries: u64,
    /// Events the broker refused for good ([`crate::mq::MqError::Rejected`]:
    /// too large for it, or bytes it cannot carry). Not retried, so the
    /// events behind them still go out; each is dead-lettered (counted in
    /// `dead_lettered` when that publish succeeds). Neither published nor
    /// buffered: every event queued for the broker is counted once in
    /// `published`, `buffered`, `buffer_dropped` or here.
    pub publish_rejected: u64,
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
    /// Malformed messages (counted once, on the broadcast subscription).
    pub malformed: u64,
    /// Malformed received messages, and events the broker refused for good
    /// (`publish_rejected`), published to the dead-letter topic.
    pub dead_lettered: u64,
    /// Root events refused for a missing signature.
    pub rejected_unsigned: u64,
    /// Root events refused for a wrong signature.
    pub rejected_forged: u64,
    /// Genuine root events refused as too old or too far ahead: their
    /// signed timestamp is further than `root_max_age` from this
    /// instance's clock (a replay, or clocks apart).
    pub rejected_stale: u64,
    /// Errors reported by the broker (subscriptions, acks, and an adapter
    /// `close` that failed or outlasted the layer's 5 s).
    pub broker_errors: u64,
    /// Subscriptions re-established after their stream ended.
    pub resubscribes: u64,
    /// Group shares that came to this instance when the group's only
    /// member here that matched was the event's own source: sender
    /// exclusion left nobody, so the share was acknowledged undelivered
    /// (a broker gives a share to an instance, and cannot be told to skip
    /// the sender's; why the share is not re-routed to another instance
    /// instead: docs/DISTRIBUTED.md, Known limits).
    pub group_sender_only: u64,
    /// Unicast messages (`emit_to`, `emit_root_to` across the broker)
    /// received for a target not registered on this instance. Every
    /// instance reads every unicast, the sender's own included, and only
    /// the one that has the target delivers it; each of the others counts
    /// it here. A unicast counted here by every instance of the fabric
    /// reached nobody: no instance had its target (instances keep no shared
    /// list of uids, so none can tell that alone). With one instance, this
    /// counts exactly the unicasts lost.
    pub unicast_not_here: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) publish_retries: AtomicU64,
    pub(crate) publish_rejected: AtomicU64,
    pub(crate) buffer_dropped: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) injected: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) foreign: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) rejected_unsigned: AtomicU64,
    pub(crate) rejected_forged: AtomicU64,
    pub(crate) rejected_stale: AtomicU64,
    pub(crate) broker_errors: AtomicU64,
    pub(crate) resubscribes: AtomicU64,
    pub(crate) group_sender_only: AtomicU64,
    pub(crate) unicast_not_here: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self, buffered: u64) -> DistributedStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DistributedStats {
            published: r(&self.published),
            publish_retries: r(&self.publish_retries),
            publish_rejected: r(&self.publish_rejected),
            buffered,
            buffer_dropped: r(&self.buffer_dropped),
            received: r(&self.received),
            injected: r(&self.injected),
            duplicates: r(&self.duplicates),
            foreign: r(&self.foreign),
            malformed: r(&self.malformed),
            dead_lettered: r(&self.dead_lettered),
            rejected_unsigned: r(&self.rejected_unsigned),
            rejected_forged: r(&self.rejected_forged),
            rejected_stale: r(&self.rejected_stale),
            broker_errors: r(&self.broker_errors),
            resubscribes: r(&self.resubscribes),
            group_sender_only: r(&self.group_sender_only),
            unicast_not_here: r(&self.unicast_not_here),
        }
    }
}
