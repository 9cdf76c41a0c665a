//! `close` when the adapter cannot close: bounded, and said.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronica::mq::memory::MemoryAdapter;
use chronica::mq::{BoxFuture, Message as MqMessage, MessageStream, MqAdapter, MqError, MqResult};
use chronica::{Director, Distributed, DistributedConfig};

use crate::suite::unique;

/// A memory adapter whose `close` fails, or never finishes.
#[derive(Debug)]
struct Stubborn {
    inner: MemoryAdapter,
    hang: bool,
}

impl MqAdapter for Stubborn {
    fn name(&self) -> &str {
        "stubborn"
    }
    fn publish<'a>(&'a self, topic: &'a str, message: MqMessage) -> BoxFuture<'a, MqResult<()>> {
        self.inner.publish(topic, message)
    }
    fn subscribe<'a>(&'a self, pattern: &'a str, group: &'a str) -> BoxFuture<'a, MqResult<MessageStream>> {
        self.inner.subscribe(pattern, group)
    }
    fn ack<'a>(&'a self, message: &'a MqMessage) -> BoxFuture<'a, MqResult<()>> {
        self.inner.ack(message)
    }
    fn close(&self) -> BoxFuture<'_, MqResult<()>> {
        Box::pin(async move {
            let _ = self.inner.close().await;
            if self.hang {
                std::future::pending::<()>().await;
            }
            Err(MqError::Broker("the group did not let go".into()))
        })
    }
}

/// The layer closes whatever its adapter's `close` does: a failure, or a
/// `close` that never ends (cut after the layer's 5 s), is counted in
/// `broker_errors`, and the layer is closed all the same.
#[test]
fn adapter_close_failure_is_counted() {
    for hang in [false, true] {
        let d = Director::new().unwrap();
        let adapter = Arc::new(Stubborn { inner: MemoryAdapter::named(&unique("hub")), hang });
        let cfg = DistributedConfig {
            instance_id: "a".into(),
            topic_prefix: unique("close"),
            ..Default::default()
        };
        let fabric = Distributed::with_adapter(&d, adapter, cfg).unwrap();
        d.register("n", |_: &chronica::Batch| -> Result<(), chronica::NodeError> { Ok(()) }).unwrap();
        fabric.emit(chronica::Message::new("t", "x").source("n")).unwrap();
        let before = fabric.stats().broker_errors;
        let started = Instant::now();
        assert_eq!(fabric.close(Duration::from_secs(5)).unwrap(), 0, "hang={hang}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "hang={hang}: close took {:?}",
            started.elapsed()
        );
        assert_eq!(fabric.stats().broker_errors, before + 1, "hang={hang}");
        assert!(matches!(fabric.close(Duration::from_secs(1)), Err(MqError::Closed)));
        assert!(matches!(fabric.emit(chronica::Message::new("t", "x").source("n")), Err(MqError::Closed)));
        d.close(Duration::from_secs(5)).unwrap();
    }
}

/// Kafka: a subscriber whose broker was SIGKILLed cannot leave its group;
/// `close` gives up within its bound and returns a `Broker` error saying
/// so, instead of hanging or claiming success. The broker is restarted
/// for the tests after this one.
#[cfg(feature = "kafka")]
pub(crate) fn kafka_close_with_broker_gone(url: &str) {
    use crate::common::{brokers, next_message, runtime};
    let rt = runtime();
    let topic = unique("close");
    let outcome = rt.block_on(async {
        let adapter = chronica::mq::connect(url).await.expect("connect");
        let mut sub = adapter.subscribe(&topic, &unique("close")).await.expect("subscribe");
        adapter.publish(&topic, MqMessage::new("one")).await.unwrap();
        let m = next_message(&mut sub).await;
        adapter.ack(&m).await.unwrap();
        brokers(&["kill", "kafka"]);
        let started = Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(30), adapter.close()).await;
        (closed, started.elapsed())
    });
    brokers(&["up", "kafka"]);
    let (closed, took) = outcome;
    let closed = closed.expect("close hung for 30 s with the broker gone");
    assert!(
        matches!(&closed, Err(MqError::Broker(e)) if e.contains("did not leave")),
        "close with the broker gone returned {closed:?} after {took:?}"
    );
}

/// A closed fabric refuses a registration before the director takes the
/// node (the director itself stays open).
#[test]
fn a_closed_fabric_registers_nothing() {
    let d = Director::new().unwrap();
    let cfg =
        DistributedConfig { instance_id: "a".into(), topic_prefix: unique("closed"), ..Default::default() };
    let fabric = Distributed::with_adapter(&d, Arc::new(MemoryAdapter::named(&unique("hub"))), cfg).unwrap();
    fabric.close(Duration::from_secs(5)).unwrap();
    let node = |_: &chronica::Batch| -> Result<(), chronica::NodeError> { Ok(()) };
    let grouped = chronica::NodeOptions::default().group("g");
    assert!(matches!(fabric.register_with("late", node, grouped), Err(MqError::Closed)));
    assert!(matches!(fabric.register_with("plain", node, Default::default()), Err(MqError::Closed)));
    assert!(d.nodes().is_empty(), "registered {:?}", d.nodes());
    d.close(Duration::from_secs(5)).unwrap();
}
