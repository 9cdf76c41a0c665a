//! `join_group` returns once the group's subscription is in place, even
//! when the group watcher (which joins the groups of nodes registered on
//! the director directly) is subscribing to the same group at that moment.
//! Before, the watcher's join marked the group joined before its
//! subscription was made, and `join_group` returned `Ok` at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronica::mq::memory::MemoryAdapter;
use chronica::mq::{BoxFuture, Message as MqMessage, MessageStream, MqAdapter, MqResult};
use chronica::{Distributed, DistributedConfig, NodeOptions};
use tokio::sync::watch;

use crate::common::wait_for;
use crate::suite::unique;

/// A memory adapter whose group subscriptions (broker groups `PREFIX.g-*`)
/// wait for a gate the test opens.
#[derive(Debug)]
struct GatedGroups {
    inner: MemoryAdapter,
    gate: watch::Sender<bool>,
    /// Group subscriptions begun, and finished.
    entered: AtomicUsize,
    made: AtomicUsize,
}

impl MqAdapter for GatedGroups {
    fn name(&self) -> &str {
        "gated-groups"
    }
    fn publish<'a>(&'a self, topic: &'a str, message: MqMessage) -> BoxFuture<'a, MqResult<()>> {
        self.inner.publish(topic, message)
    }
    fn subscribe<'a>(&'a self, pattern: &'a str, group: &'a str) -> BoxFuture<'a, MqResult<MessageStream>> {
        Box::pin(async move {
            if !group.contains(".g-") {
                return self.inner.subscribe(pattern, group).await;
            }
            self.entered.fetch_add(1, Ordering::SeqCst);
            let mut gate = self.gate.subscribe();
            let _ = gate.wait_for(|open| *open).await;
            let stream = self.inner.subscribe(pattern, group).await;
            self.made.fetch_add(1, Ordering::SeqCst);
            stream
        })
    }
    fn ack<'a>(&'a self, message: &'a MqMessage) -> BoxFuture<'a, MqResult<()>> {
        self.inner.ack(message)
    }
    fn close(&self) -> BoxFuture<'_, MqResult<()>> {
        self.gate.send_replace(true);
        self.inner.close()
    }
}

#[test]
fn join_group_waits_for_the_watchers_join_in_progress() {
    let d = crate::common::director();
    let adapter = Arc::new(GatedGroups {
        inner: MemoryAdapter::named(&unique("hub")),
        gate: watch::Sender::new(false),
        entered: AtomicUsize::new(0),
        made: AtomicUsize::new(0),
    });
    let cfg = DistributedConfig {
        instance_id: "a".into(),
        topic_prefix: unique("join"),
        connect_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let fabric = Arc::new(Distributed::with_adapter(&d, adapter.clone(), cfg).unwrap());
    // Registered on the director directly: the watcher joins its group.
    let node = |_: &chronica::Batch| -> Result<(), chronica::NodeError> { Ok(()) };
    d.register_with("w", node, NodeOptions::default().group("g")).unwrap();
    let watcher_joining = wait_for(Duration::from_secs(30), || adapter.entered.load(Ordering::SeqCst) == 1);
    assert!(watcher_joining, "the watcher never subscribed to the group");

    let returned = Arc::new(AtomicBool::new(false));
    let joining = {
        let (fabric, adapter, returned) = (fabric.clone(), adapter.clone(), returned.clone());
        std::thread::spawn(move || {
            let r = fabric.join_group("g");
            let made = adapter.made.load(Ordering::SeqCst);
            returned.store(true, Ordering::SeqCst);
            (r, made)
        })
    };
    // Give an early return the chance to show; a correct join_group waits
    // for the gate however long this is.
    wait_for(Duration::from_secs(1), || returned.load(Ordering::SeqCst));
    adapter.gate.send_replace(true);
    let (r, made) = joining.join().unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(made, 1, "join_group returned Ok before the group's subscription was made");
    assert_eq!(adapter.entered.load(Ordering::SeqCst), 1, "the group was subscribed twice");
    fabric.close(Duration::from_secs(5)).unwrap();
    d.close(Duration::from_secs(5)).unwrap();
}
