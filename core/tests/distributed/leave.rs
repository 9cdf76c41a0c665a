//! An instance joined to a broker group with no member here leaves it
//! promptly, without waiting for a share of the group's traffic. Such a
//! subscription comes from a `join_group` for a group with no node here,
//! or from a join (the watcher's) that the group's last member left
//! during. It used to stay in the group until its first share, which it
//! then handed back: meanwhile the broker counted it a member, gave it a
//! part of the group's traffic (a Kafka partition, say) only to have it
//! come back, and a broker group nobody here needed held a subscription.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronica::mq::memory::MemoryAdapter;
use chronica::mq::{BoxFuture, MessageStream, MqAdapter, MqResult};
use chronica::{Distributed, DistributedConfig, Message, NodeOptions};

use crate::common::{recorder, wait_for};
use crate::pass_through::pass_through;
use crate::suite::unique;

/// Up to how long a test waits for what it expects.
const PATIENCE: Duration = Duration::from_secs(30);

/// A memory adapter that counts the group subscriptions (broker groups
/// `PREFIX.g-*`) made, and those ended: a subscription's stream dropped is
/// the instance leaving that broker group.
#[derive(Debug)]
struct Watched {
    inner: MemoryAdapter,
    joins: AtomicUsize,
    leaves: Arc<AtomicUsize>,
}

impl Watched {
    fn new() -> Arc<Self> {
        Arc::new(Watched {
            inner: MemoryAdapter::named(&unique("hub")),
            joins: AtomicUsize::new(0),
            leaves: Arc::new(AtomicUsize::new(0)),
        })
    }
}

/// Counts a leave when dropped, with the stream that holds it.
struct Leave(Arc<AtomicUsize>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl MqAdapter for Watched {
    fn name(&self) -> &str {
        "watched"
    }
    pass_through!(publish, ack, release, close);
    fn subscribe<'a>(&'a self, pattern: &'a str, group: &'a str) -> BoxFuture<'a, MqResult<MessageStream>> {
        use futures_util::StreamExt;
        Box::pin(async move {
            let stream = self.inner.subscribe(pattern, group).await?;
            if !group.contains(".g-") {
                return Ok(stream);
            }
            self.joins.fetch_add(1, Ordering::SeqCst);
            let leave = Leave(self.leaves.clone());
            // The guard lives in the closure, so in the stream.
            let watched = stream.map(move |m| {
                let _held = &leave;
                m
            });
            Ok(Box::pin(watched) as MessageStream)
        })
    }
}

fn fabric(adapter: &Arc<Watched>) -> (chronica::Director, Distributed) {
    fabric_watching_every(adapter, DistributedConfig::default().group_watch_interval)
}

fn fabric_watching_every(adapter: &Arc<Watched>, every: Duration) -> (chronica::Director, Distributed) {
    let d = crate::common::director();
    let cfg = DistributedConfig {
        instance_id: "a".into(),
        topic_prefix: unique("leave"),
        group_watch_interval: every,
        ..Default::default()
    };
    let fabric = Distributed::with_adapter(&d, adapter.clone(), cfg).unwrap();
    (d, fabric)
}

/// `join_group` for a group with no node here: the subscription is made,
/// then left, with no message of the group published. A member registered
/// afterwards joins anew and gets the group's events.
#[test]
fn a_group_joined_with_no_member_here_is_left() {
    let adapter = Watched::new();
    let (d, fabric) = fabric(&adapter);
    fabric.join_group("g").unwrap();
    assert_eq!(adapter.joins.load(Ordering::SeqCst), 1);
    let left = wait_for(PATIENCE, || adapter.leaves.load(Ordering::SeqCst) == 1);
    assert!(left, "still in a group with no member here after {PATIENCE:?}");

    let (seen, node) = recorder();
    fabric.register_with("m", node, NodeOptions::default().group("g").topic("t")).unwrap();
    assert_eq!(adapter.joins.load(Ordering::SeqCst), 2, "the member did not join the group again");
    fabric.emit(Message::new("t", "x")).unwrap();
    let delivered = wait_for(PATIENCE, || !seen.lock().is_empty());
    assert!(delivered, "the member got nothing: {:?}", fabric.stats());
    assert_eq!(adapter.leaves.load(Ordering::SeqCst), 1, "a group with a member here was left");
    fabric.close(Duration::from_secs(5)).unwrap();
    d.close(Duration::from_secs(5)).unwrap();
}

/// A group joined by the watcher for a node registered on the director
/// directly, whose last (only) member then leaves: the instance leaves the
/// group too, with no message of the group published.
#[test]
fn a_group_whose_last_member_left_after_the_watchers_join_is_left() {
    let adapter = Watched::new();
    let (d, fabric) = fabric(&adapter);
    join_and_leave_with_the_member(&adapter, &d, &fabric);
}

/// The same with a watcher whose period is an hour: the join and the
/// leave follow the registration and the unregistration on the director
/// (the watcher is told of each), not its timer. It used to look only
/// every 250 ms.
#[test]
fn the_watcher_acts_on_registrations_without_waiting_for_its_round() {
    let adapter = Watched::new();
    let (d, fabric) = fabric_watching_every(&adapter, Duration::from_secs(3600));
    join_and_leave_with_the_member(&adapter, &d, &fabric);
}

/// Registers a grouped node on the director directly, waits for the
/// watcher to join its group, unregisters it, and waits for the leave.
fn join_and_leave_with_the_member(adapter: &Arc<Watched>, d: &chronica::Director, fabric: &Distributed) {
    let node = |_: &chronica::Batch| -> Result<(), chronica::NodeError> { Ok(()) };
    d.register_with("w", node, NodeOptions::default().group("g")).unwrap();
    let joined = wait_for(PATIENCE, || adapter.joins.load(Ordering::SeqCst) == 1);
    assert!(joined, "the watcher never joined the group");
    d.unregister("w").unwrap();
    let left = wait_for(PATIENCE, || adapter.leaves.load(Ordering::SeqCst) == 1);
    assert!(left, "still in a group with no member here after {PATIENCE:?}");
    assert_eq!(adapter.joins.load(Ordering::SeqCst), 1, "the group was joined again with no member");
    fabric.close(Duration::from_secs(5)).unwrap();
    d.close(Duration::from_secs(5)).unwrap();
}
