//! The outbox and its publisher task.
//!
//! Emits push their wire event into a bounded queue and return at once;
//! one task publishes from it, `max_in_flight` at a time, retrying each
//! failed publish with exponential backoff (50 ms to 2 s) until it succeeds
//! or the layer stops. While the broker is away the queue fills; when it is
//! full the oldest event is dropped and counted (`buffer_dropped`).
//!
//! Invariant: `buffered = queue.len() + in_flight`, the events not yet
//! handed to the broker.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::stats::bump;
use super::wire::WireEvent;
use super::Shared;

const BATCH: usize = 512;
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// One publish attempt's longest wait before it counts as failed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

impl Shared {
    /// Queues `event` for publishing (drop-oldest when full).
    pub(crate) fn enqueue(&self, event: WireEvent) {
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

    async fn publish_with_retry(&self, event: WireEvent) {
        let topic = &self.cfg.topic_prefix;
        let mut backoff = BACKOFF_START;
        loop {
            let attempt =
                tokio::time::timeout(PUBLISH_TIMEOUT, self.adapter.publish(topic, event.encode())).await;
            if let Ok(Ok(())) = attempt {
                bump(&self.counters.published);
                break;
            }
            bump(&self.counters.publish_retries);
            if self.stopped() {
                return; // left in `in_flight`: reported as unpublished
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The publisher task: runs until the layer stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    while !shared.stopped() {
        let batch: Vec<WireEvent> = {
            let mut q = shared.outbox.lock();
            let n = q.len().min(BATCH);
            shared.in_flight.fetch_add(n as u64, Ordering::AcqRel);
            q.drain(..n).collect()
        };
        if batch.is_empty() {
            // The timeout bounds a missed wake-up.
            let _ = tokio::time::timeout(Duration::from_millis(50), shared.wake.notified()).await;
            continue;
        }
        futures_util::stream::iter(batch)
            .map(|e| shared.publish_with_retry(e))
            .buffer_unordered(shared.cfg.max_in_flight)
            .for_each(|()| async {})
            .await;
    }
}
