//! An adapter whose acknowledgement never answers must not stop the
//! subscription for good: the wait is bounded by `connect_timeout`, counted
//! in `broker_errors`, and later messages are delivered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronica::mq::memory::MemoryAdapter;
use chronica::mq::{BoxFuture, Message as MqMessage, MqAdapter, MqResult};
use chronica::{AckMode, Distributed, DistributedConfig, Message, NodeOptions};

use crate::common::{recorder, wait_for};
use crate::pass_through::pass_through;
use crate::suite::unique;

/// The memory adapter, but its first acknowledgement never answers.
#[derive(Debug)]
struct DeafOnce {
    inner: MemoryAdapter,
    acks: AtomicUsize,
}

impl MqAdapter for DeafOnce {
    fn name(&self) -> &str {
        "deaf-once"
    }
    pass_through!(publish, subscribe, close);
    fn ack<'a>(&'a self, message: &'a MqMessage) -> BoxFuture<'a, MqResult<()>> {
        match self.acks.fetch_add(1, Ordering::SeqCst) {
            0 => Box::pin(std::future::pending()),
            _ => self.inner.ack(message),
        }
    }
}

pub(crate) fn an_ack_that_never_answers_does_not_stop_the_subscription(ack_mode: AckMode) {
    let hub = unique("hub");
    let cfg = |id: &str| DistributedConfig {
        instance_id: id.into(),
        ack_mode,
        connect_timeout: Duration::from_millis(300),
        ..DistributedConfig::default()
    };
    let (da, db) = (crate::common::director(), crate::common::director());
    let a = Distributed::connect(&da, &format!("memory://{hub}"), cfg("a")).unwrap();
    let deaf = DeafOnce { inner: MemoryAdapter::named(&hub), acks: AtomicUsize::new(0) };
    let b = Distributed::with_adapter(&db, Arc::new(deaf), cfg("b")).unwrap();
    let (seen, node) = recorder();
    b.register_with("n", node, NodeOptions::default()).unwrap();
    a.emit(Message::new("t", "first")).unwrap();
    assert!(wait_for(Duration::from_secs(10), || seen.lock().len() == 1), "{:?}", b.stats());
    assert!(wait_for(Duration::from_secs(10), || b.stats().broker_errors == 1), "{:?}", b.stats());
    a.emit(Message::new("t", "second")).unwrap();
    assert!(wait_for(Duration::from_secs(10), || seen.lock().len() == 2), "stopped: {:?}", b.stats());
    a.close(Duration::from_secs(5)).unwrap();
    b.close(Duration::from_secs(5)).unwrap();
}
