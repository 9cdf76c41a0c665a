//! A subscription whose stream ends is made again; an adapter that never
//! answers that `subscribe` must not end the subscription for good.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronica::mq::memory::MemoryAdapter;
use chronica::mq::{BoxFuture, MessageStream, MqAdapter, MqResult};
use chronica::{Distributed, DistributedConfig, Message, NodeOptions};

use crate::common::{recorder, wait_for};
use crate::pass_through::pass_through;
use crate::suite::unique;

/// The first subscription's stream ends at once; the next `subscribe`
/// never answers; later ones are the memory adapter's.
#[derive(Debug)]
struct Stalling {
    inner: MemoryAdapter,
    calls: AtomicUsize,
}

impl MqAdapter for Stalling {
    fn name(&self) -> &str {
        "stalling"
    }
    pass_through!(publish, ack, close);
    fn subscribe<'a>(&'a self, pattern: &'a str, group: &'a str) -> BoxFuture<'a, MqResult<MessageStream>> {
        match self.calls.fetch_add(1, Ordering::SeqCst) {
            0 => Box::pin(async { Ok(Box::pin(futures_util::stream::empty()) as MessageStream) }),
            1 => Box::pin(std::future::pending()),
            _ => self.inner.subscribe(pattern, group),
        }
    }
}

pub(crate) fn a_resubscribe_that_never_answers_is_retried() {
    let hub = unique("hub");
    let cfg = |id: &str| DistributedConfig {
        instance_id: id.into(),
        connect_timeout: Duration::from_millis(500),
        ..DistributedConfig::default()
    };
    let (da, db) = (crate::common::director(), crate::common::director());
    let a = Distributed::connect(&da, &format!("memory://{hub}"), cfg("a")).unwrap();
    let stalling = Stalling { inner: MemoryAdapter::named(&hub), calls: AtomicUsize::new(0) };
    let b = Distributed::with_adapter(&db, Arc::new(stalling), cfg("b")).unwrap();
    let (seen, node) = recorder();
    b.register_with("n", node, NodeOptions::default()).unwrap();
    assert!(wait_for(Duration::from_secs(20), || b.stats().resubscribes == 1), "{:?}", b.stats());
    a.emit(Message::new("t", "after")).unwrap();
    assert!(wait_for(Duration::from_secs(10), || seen.lock().len() == 1), "{:?}", b.stats());
    assert!(b.stats().broker_errors >= 1, "the stalled subscribe is counted: {:?}", b.stats());
    a.close(Duration::from_secs(5)).unwrap();
    b.close(Duration::from_secs(5)).unwrap();
}
