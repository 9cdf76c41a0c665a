//! The outbox and its publisher task.
//!
//! Emits push their wire event into a bounded queue and return at once;
//! one task hands them to the adapter in batches (`publish_batch`) of up
//! to `max_in_flight` events, one batch at a time so they reach the broker
//! in emit order, and retries each failed one with exponential backoff
//! (50 ms to 2 s) until it succeeds or the layer stops, before the next
//! batch. While the broker is away the queue fills; when it is
//! full its oldest event is dropped and counted (`buffer_dropped`). The
//! batch being retried is out of the queue and kept whole, so up to
//! `outbox_capacity + max_in_flight` events are held.
//!
//! An event the broker refuses for good (`MqError::Rejected`: too large
//! for it, bytes it cannot carry) is not retried: retrying cannot change
//! the answer, and it would hold back every later event until the queue
//! overflowed. It is counted (`publish_rejected`) and dead-lettered, and
//! the rest of its batch goes on as if it had not been there.
//!
//! Invariant: `buffered = queue.len() + in_flight`, the events not yet
//! handed to the broker.
//!
//! Each publish attempt runs holding `Shared::publishing` and starts only
//! while the layer has not stopped. `close` takes that lock after closing
//! the adapter: by then no attempt is running (the one that was has
//! answered, and was counted) and none will start, so `buffered` is
//! exactly what never went out.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::stats::bump;
use super::wire::WireEvent;
use super::Shared;
use crate::mq::MqError;

const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// One publish attempt's longest wait before it counts as failed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

impl Shared {
    /// Queues `event` for publishing (drop-oldest when full).
    pub(crate) fn enqueue(&self, event: WireEvent<'static>) {
        {
            let mut q = self.outbox.lock();
            if q.len() >= self.cfg.outbox_capacity {
                q.pop_front();
                bump(&self.counters.buffer_dropped);
            }
            q.push_back(event);
        }
        self.wake.notify_one();
    }

    /// Events not yet handed to the broker.
    pub(crate) fn buffered(&self) -> u64 {
        self.outbox.lock().len() as u64 + self.in_flight.load(Ordering::Acquire)
    }

    /// Publishes `events` as one batch, retrying the failed ones with
    /// backoff until they succeed or the layer stops. Those the broker
    /// refused for good are dropped from the batch and dead-lettered.
    async fn publish_batch_with_retry(&self, mut events: Vec<WireEvent<'static>>) {
        let topic = &self.cfg.topic_prefix;
        let mut backoff = BACKOFF_START;
        loop {
            let gate = self.publishing.lock().await;
            if self.stopped() {
                return; // left in `in_flight`: reported as unpublished
            }
            let messages = events.iter().map(WireEvent::encode).collect();
            let attempt = tokio::time::timeout(PUBLISH_TIMEOUT, self.adapter.publish_batch(topic, messages));
            // A timeout, or an adapter answering for the wrong number of
            // messages, fails the whole batch (transiently).
            let results = attempt.await.ok().filter(|r| r.len() == events.len()).unwrap_or_default();
            let before = events.len();
            // The refused ones, encoded again for their dead letters (rare:
            // the batch's messages were moved into the adapter).
            let refused: Vec<_> = events
                .iter()
                .zip(&results)
                .filter_map(|(e, r)| match r {
                    Err(MqError::Rejected(why)) => Some((e.encode(), why.clone())),
                    _ => None,
                })
                .collect();
            // Missing results (a failed batch) mean retry.
            let mut retry = results.iter().map(|r| !matches!(r, Ok(()) | Err(MqError::Rejected(_))));
            events.retain(|_| retry.next().unwrap_or(true));
            let rejected = refused.len() as u64;
            let published = (before - events.len()) as u64 - rejected;
            self.counters.published.fetch_add(published, Ordering::Relaxed);
            self.counters.publish_rejected.fetch_add(rejected, Ordering::Relaxed);
            self.in_flight.fetch_sub(published + rejected, Ordering::AcqRel);
            drop(gate); // counted: `close` may count now
            for (m, why) in refused {
                self.dead_letter_refused(m, &why).await;
            }
            if events.is_empty() {
                return;
            }
            self.counters.publish_retries.fetch_add(events.len() as u64, Ordering::Relaxed);
            if self.stopped() {
                return; // left in `in_flight`: reported as unpublished
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// The publisher task: runs until the layer stops. It hands the adapter
/// one batch at a time, of up to `max_in_flight` events, and starts the
/// next once the broker confirmed (or the retries settled) the last: two
/// batches in flight at once could reach the broker interleaved (the NATS
/// client sends in chunks, C and Python adapters run on blocking threads),
/// and an instance's events would then arrive out of emit order.
pub(crate) async fn run(shared: Arc<Shared>) {
    while !shared.stopped() {
        let batch: Vec<WireEvent<'static>> = {
            let mut q = shared.outbox.lock();
            let n = q.len().min(shared.cfg.max_in_flight);
            shared.in_flight.fetch_add(n as u64, Ordering::AcqRel);
            q.drain(..n).collect()
        };
        if batch.is_empty() {
            // The timeout bounds a missed wake-up.
            let _ = tokio::time::timeout(Duration::from_millis(50), shared.wake.notified()).await;
            continue;
        }
        shared.publish_batch_with_retry(batch).await;
    }
}
