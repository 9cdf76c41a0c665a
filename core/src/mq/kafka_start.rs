//! Where a Kafka subscription's partitions start.
//!
//! The contract (`MqAdapter::subscribe`): a group the broker has not seen
//! starts at new messages, whatever history the topic retains; a group
//! resumes after what it acknowledged. Kafka's own choice for a partition
//! without a committed offset is `auto.offset.reset`, and neither value
//! fits: `earliest` hands a new instance the retained past (days of it),
//! `latest` is resolved some time after the assignment, so a message
//! published as `subscribe` returns can be skipped.
//!
//! So the consumer's context places each assigned partition before
//! librdkafka starts fetching it: its committed offset if it has one,
//! else the partition's high watermark read in the rebalance itself, which
//! `subscribe` waits for. That start is committed at once, so a member
//! that takes the partition over later resumes there rather than at a
//! newer end. A partition of a topic that did not exist when the
//! subscription began (a wildcard subscription discovering it) starts at
//! its beginning: all of it is new.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

/// Longest time the broker queries of one rebalance may take together: the
/// hook runs on the thread polling the consumer. A topic made a moment ago
/// may not have partition leaders yet (`NotLeaderForPartition`), so a
/// watermark query is retried within it.
const PLACING_TIME: Duration = Duration::from_secs(5);

/// The rebalance hook of one subscription's consumer.
#[derive(Default)]
pub(super) struct Start {
    /// Topics that existed when the subscription began.
    existing: HashSet<String>,
    /// Starts chosen by the last assignment, committed after it.
    chosen: Mutex<Option<TopicPartitionList>>,
    /// Whether the group has given this member its share yet, which may
    /// be no partition at all (more members than partitions).
    assigned: AtomicBool,
}

impl Start {
    /// Partitions of `topics` without a committed offset start at their
    /// end; those of any other topic at their beginning.
    pub(super) fn existing(topics: impl IntoIterator<Item = String>) -> Self {
        Self {
            existing: topics.into_iter().collect(),
            chosen: Mutex::default(),
            assigned: AtomicBool::new(false),
        }
    }

    /// Whether this member has been given its share of the partitions,
    /// placed.
    pub(super) fn assigned(&self) -> bool {
        self.assigned.load(Ordering::Acquire)
    }

    /// Sets the start of every partition of `assigned` that has no
    /// committed offset; returns the ones it set.
    fn place(&self, consumer: &BaseConsumer<Self>, assigned: &TopicPartitionList) -> TopicPartitionList {
        let mut chosen = TopicPartitionList::new();
        let deadline = Instant::now() + PLACING_TIME;
        let t = Timeout::After(PLACING_TIME);
        // Unknown commits leave the partitions to `auto.offset.reset`
        // (earliest): a repeat rather than a loss.
        let Ok(committed) = consumer.committed_offsets(assigned.clone(), t) else { return chosen };
        for mut e in assigned.elements() {
            let has_commit = committed
                .find_partition(e.topic(), e.partition())
                .is_some_and(|c| matches!(c.offset(), Offset::Offset(_)));
            if has_commit {
                continue;
            }
            let start = if self.existing.contains(e.topic()) {
                match high_watermark(consumer, e.topic(), e.partition(), deadline) {
                    Some(high) => Offset::Offset(high),
                    // librdkafka resolves the end itself, a little later.
                    None => Offset::End,
                }
            } else {
                Offset::Beginning
            };
            if e.set_offset(start).is_ok() {
                if let Offset::Offset(_) = start {
                    let _ = chosen.add_partition_offset(e.topic(), e.partition(), start);
                }
            }
        }
        chosen
    }
}

/// The partition's high watermark, retried until `deadline`.
fn high_watermark(
    consumer: &BaseConsumer<Start>,
    topic: &str,
    partition: i32,
    deadline: Instant,
) -> Option<i64> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match consumer.fetch_watermarks(topic, partition, Timeout::After(left)) {
            Ok((_, high)) => return Some(high),
            Err(_) => std::thread::sleep(Duration::from_millis(200).min(left)),
        }
    }
}

impl ClientContext for Start {}

impl ConsumerContext for Start {
    /// rdkafka's default, less its question to librdkafka about which
    /// rebalance protocol the group uses: `rd_kafka_rebalance_protocol()`
    /// can block forever when the revocation comes from the consumer's own
    /// close (librdkafka issue 4041; a clean-clone run of the Kafka fault
    /// test hung in `KafkaAdapter::close`, dropping a consumer, right
    /// there). The adapter never sets `partition.assignment.strategy`, so
    /// its groups use the eager protocol: assign the whole list, or clear it.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(tpl),
            other => Rebalance::Error(KafkaError::Rebalance(other.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        // Once the group has terminated, a request to it is never answered
        // (it is dropped unserved), so none is made.
        if !consumer.closed() {
            let _ = match rebalance {
                Rebalance::Assign(list) => consumer.assign(list),
                _ => consumer.unassign(),
            };
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            *self.chosen.lock() = Some(self.place(consumer, assigned));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            if let Some(chosen) = self.chosen.lock().take().filter(|c| c.count() > 0) {
                // Best effort: without it a later owner starts at the end
                // it finds, as a new group would.
                let _ = consumer.commit(&chosen, CommitMode::Async);
            }
            self.assigned.store(true, Ordering::Release);
        }
    }
}
