//! What `close` reports as unpublished is exact: an emit whose publish was
//! still waiting for the broker when `close` began is counted by what that
//! publish answered once the adapter closed (a Kafka producer's `close`
//! flushes what it queued), not by where it stood before. `close` used to
//! count before closing the adapter, and reported as unpublished an emit
//! that the adapter's `close` then published.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronica::mq::memory::MemoryAdapter;
use chronica::mq::{BoxFuture, Message as MqMessage, MqAdapter, MqError, MqResult};
use chronica::{Distributed, DistributedConfig, Message};
use tokio::sync::watch;

use crate::common::wait_for;
use crate::pass_through::pass_through;
use crate::suite::unique;

/// An adapter whose publishes wait until its `close`, which then publishes
/// them (`deliver_on_close`) or fails them, as a producer's close flushes
/// what it queued or drops it.
#[derive(Debug)]
struct HeldUntilClose {
    inner: MemoryAdapter,
    deliver_on_close: bool,
    closed: watch::Sender<bool>,
    /// Publishes that began (and are waiting for `close`).
    waiting: AtomicUsize,
}

impl MqAdapter for HeldUntilClose {
    fn name(&self) -> &str {
        "held-until-close"
    }
    pass_through!(subscribe, ack);
    fn publish<'a>(&'a self, topic: &'a str, message: MqMessage) -> BoxFuture<'a, MqResult<()>> {
        Box::pin(async move {
            let mut closed = self.closed.subscribe();
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _ = closed.wait_for(|c| *c).await;
            if self.deliver_on_close {
                // Written before the inner adapter closes (see `close`).
                self.inner.publish(topic, message).await
            } else {
                Err(MqError::Broker("the producer closed with the message unsent".into()))
            }
        })
    }
    fn close(&self) -> BoxFuture<'_, MqResult<()>> {
        Box::pin(async move {
            self.closed.send_replace(true);
            // Let the held publishes finish first, as a producer's flush does.
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.inner.close().await
        })
    }
}

/// One emit whose publish is held until the adapter closes: `close`
/// reports it unpublished exactly when the adapter's `close` did not
/// publish it, and the counters agree.
#[test]
fn close_counts_what_the_adapter_close_published() {
    for deliver_on_close in [true, false] {
        let d = crate::common::director();
        let adapter = Arc::new(HeldUntilClose {
            inner: MemoryAdapter::named(&unique("hub")),
            deliver_on_close,
            closed: watch::Sender::new(false),
            waiting: AtomicUsize::new(0),
        });
        let cfg =
            DistributedConfig { instance_id: "a".into(), topic_prefix: unique("held"), ..Default::default() };
        let fabric = Distributed::with_adapter(&d, adapter.clone(), cfg).unwrap();
        fabric.emit(Message::new("t", "held")).unwrap();
        let held = wait_for(Duration::from_secs(20), || adapter.waiting.load(Ordering::SeqCst) == 1);
        assert!(held, "the publish never reached the adapter");
        let (left, flushed, flush_took) = std::thread::scope(|s| {
            // A flush on another thread ends with the close, not at its
            // own timeout, and says whether the close published it all.
            let flush = s.spawn(|| {
                let start = Instant::now();
                (fabric.flush(FLUSH_TIMEOUT), start.elapsed())
            });
            // The flush part of `close` cannot finish: the publish waits
            // for the adapter's close.
            let left = fabric.close(Duration::from_millis(100)).unwrap();
            let (flushed, took) = flush.join().unwrap();
            (left, flushed, took)
        });
        let s = fabric.stats();
        let expected = u64::from(!deliver_on_close);
        assert_eq!(left, expected, "deliver_on_close={deliver_on_close}: close reported {left}; {s:?}");
        assert_eq!((s.published, s.buffered), (1 - expected, expected), "{s:?}");
        assert_eq!(flushed, deliver_on_close, "flush says whether the close published the emit");
        assert!(flush_took < FLUSH_TIMEOUT / 2, "the flush waited out its timeout: {flush_took:?}");
        assert_eq!(fabric.flush(FLUSH_TIMEOUT), deliver_on_close, "a flush after the close answers at once");
        d.close(Duration::from_secs(5)).unwrap();
    }
}

/// Far beyond what these closes take: a flush that waited for it would
/// fail the test rather than pass it.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
