//! `join_group` returns once the group's subscription is in place, even
//! when the group watcher (which joins the groups of nodes registered on
//! the director directly) is subscribing to the same group at that moment.
//! Before, the watcher's join marked the group joined before its
//! subscription was made, and `join_group` returned `Ok` at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronica::mq::memory::MemoryAdapter;
use chronica::mq::{BoxFuture, Message as MqMessage, MessageStream, MqAdapter, MqError, MqResult};
use chronica::{Distributed, DistributedConfig, NodeOptions};
use tokio::sync::watch;

use crate::common::{wait_for, with_headers};
use crate::pass_through::pass_through;
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
    /// Whether the adapter's `close` opens the gate.
    close_opens: bool,
}

impl GatedGroups {
    /// On a fresh memory hub, its gate `open` or shut, and opened by the
    /// adapter's `close` if `close_opens`.
    fn new(open: bool, close_opens: bool) -> Arc<Self> {
        Arc::new(GatedGroups {
            inner: MemoryAdapter::named(&unique("hub")),
            gate: watch::Sender::new(open),
            entered: AtomicUsize::new(0),
            made: AtomicUsize::new(0),
            close_opens,
        })
    }
}

impl MqAdapter for GatedGroups {
    fn name(&self) -> &str {
        "gated-groups"
    }
    pass_through!(publish, ack);
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
    fn close(&self) -> BoxFuture<'_, MqResult<()>> {
        if self.close_opens {
            self.gate.send_replace(true);
        }
        self.inner.close()
    }
}

/// Instance "a" of a fabric over `adapter`, with a minute for the broker
/// to answer a subscribe.
fn gated_fabric(d: &chronica::Director, adapter: &Arc<GatedGroups>) -> Arc<Distributed> {
    let cfg = DistributedConfig {
        instance_id: "a".into(),
        topic_prefix: unique("join"),
        connect_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    Arc::new(Distributed::with_adapter(d, adapter.clone(), cfg).unwrap())
}

#[test]
fn join_group_waits_for_the_watchers_join_in_progress() {
    let d = crate::common::director();
    let adapter = GatedGroups::new(false, true);
    let fabric = gated_fabric(&d, &adapter);
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

/// A join in progress when the fabric closes gives up with `Closed`,
/// and `close` does not wait for the broker's answer. Before, `close` shut
/// the runtime down under the join, whose next poll of a timer panicked
/// on the joining thread ("A Tokio 1.x context was found, but it is being
/// shutdown"): a Python `register` racing `close` raised a PanicException.
#[test]
fn a_join_in_progress_at_close_gives_up_with_closed() {
    let d = crate::common::director();
    let adapter = GatedGroups::new(false, false);
    let fabric = gated_fabric(&d, &adapter);
    let joining = {
        let fabric = fabric.clone();
        std::thread::spawn(move || fabric.join_group("g"))
    };
    assert!(wait_for(Duration::from_secs(30), || adapter.entered.load(Ordering::SeqCst) == 1));
    fabric.close(Duration::from_secs(5)).unwrap();
    // The broker answers only now, past the close.
    adapter.gate.send_replace(true);
    let joined = joining.join().expect("the joining thread panicked");
    assert!(matches!(joined, Err(MqError::Closed)), "{joined:?}");
    assert_eq!(adapter.made.load(Ordering::SeqCst), 0, "the join went on past the close");
    assert!(matches!(fabric.join_group("g"), Err(MqError::Closed)));
    d.close(Duration::from_secs(5)).unwrap();
}

/// A memory adapter whose group subscriptions block the polling thread
/// (a synchronous client call) until the test lets them go.
#[derive(Debug)]
struct BlockingGroups {
    inner: MemoryAdapter,
    entered: AtomicUsize,
    gate: parking_lot::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl MqAdapter for BlockingGroups {
    fn name(&self) -> &str {
        "blocking-groups"
    }
    pass_through!(publish, ack, close);
    fn subscribe<'a>(&'a self, pattern: &'a str, group: &'a str) -> BoxFuture<'a, MqResult<MessageStream>> {
        Box::pin(async move {
            if group.contains(".g-") {
                self.entered.fetch_add(1, Ordering::SeqCst);
                let _ = self.gate.lock().recv();
            }
            self.inner.subscribe(pattern, group).await
        })
    }
}

/// A join whose adapter blocks its thread inside a poll cannot see the
/// close begin: `close` waits for it up to its own timeout only, and the
/// join, let go later, returns without a panic (the layer's runtime is
/// shut down once it is done). Before, `close` waited for it for good.
#[test]
fn a_close_does_not_wait_past_its_timeout_for_a_join_stuck_in_the_adapter() {
    let d = crate::common::director();
    let (release, gate) = std::sync::mpsc::channel();
    let adapter = Arc::new(BlockingGroups {
        inner: MemoryAdapter::named(&unique("hub")),
        entered: AtomicUsize::new(0),
        gate: parking_lot::Mutex::new(gate),
    });
    let cfg =
        DistributedConfig { instance_id: "a".into(), topic_prefix: unique("join"), ..Default::default() };
    let fabric = Arc::new(Distributed::with_adapter(&d, adapter.clone(), cfg).unwrap());
    let joining = {
        let fabric = fabric.clone();
        std::thread::spawn(move || fabric.join_group("g"))
    };
    assert!(wait_for(Duration::from_secs(30), || adapter.entered.load(Ordering::SeqCst) == 1));
    let (closed_tx, closed) = std::sync::mpsc::channel();
    let closer = {
        let fabric = fabric.clone();
        std::thread::spawn(move || closed_tx.send(fabric.close(Duration::from_millis(200))))
    };
    // Generous: a correct close returns within its 200 ms timeout plus
    // its own bounded steps; the old one never did while the join blocked.
    let outcome = closed.recv_timeout(Duration::from_secs(30));
    release.send(()).unwrap();
    assert!(matches!(outcome, Ok(Ok(_))), "close did not return while the join was stuck: {outcome:?}");
    closer.join().unwrap().unwrap();
    let joined = joining.join().expect("the joining thread panicked");
    assert!(matches!(joined, Err(MqError::Closed)), "{joined:?}");
    d.close(Duration::from_secs(5)).unwrap();
}

/// `join_group("")` is refused before the broker is asked anything, as a
/// registration with an empty group is: no broker group may be named
/// after nothing.
#[test]
fn an_empty_group_name_is_refused() {
    let d = crate::common::director();
    let adapter = GatedGroups::new(true, true);
    let cfg =
        DistributedConfig { instance_id: "a".into(), topic_prefix: unique("join"), ..Default::default() };
    let fabric = Distributed::with_adapter(&d, adapter.clone(), cfg).unwrap();
    let e = fabric.join_group("").unwrap_err();
    assert!(matches!(e, MqError::Engine(chronica::Error::InvalidArgument(_))), "{e}");
    assert_eq!(adapter.entered.load(Ordering::SeqCst), 0, "the broker was asked to join \"\"");
    fabric.join_group("g").unwrap();
    assert_eq!(adapter.entered.load(Ordering::SeqCst), 1);
    fabric.close(Duration::from_secs(5)).unwrap();
    d.close(Duration::from_secs(5)).unwrap();
}

/// A memory adapter whose one group subscription reads messages the test
/// hands it (each hand-off one read of the layer), whose acknowledgements
/// of them wait for permits the test gives, and which records the end of
/// that subscription (the instance leaving the group). Any later group
/// subscription waits until the adapter closes.
#[derive(Debug)]
struct Staged {
    inner: MemoryAdapter,
    reads: parking_lot::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Vec<MqMessage>>>>,
    acks: tokio::sync::Semaphore,
    /// Acknowledgements of handed messages begun.
    acking: AtomicUsize,
    /// The group subscription's stream was dropped: the group was left.
    left: Arc<AtomicBool>,
    /// Group subscriptions asked for.
    subscribes: AtomicUsize,
    closed: watch::Sender<bool>,
}

/// Marks the messages the test hands to the group subscription.
const HANDED: &str = "test-handed";

/// Sets `left` when dropped, with the stream that holds it.
struct OnDrop(Arc<AtomicBool>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl MqAdapter for Staged {
    fn name(&self) -> &str {
        "staged"
    }
    pass_through!(publish, ack);
    fn subscribe<'a>(&'a self, pattern: &'a str, group: &'a str) -> BoxFuture<'a, MqResult<MessageStream>> {
        use futures_util::StreamExt;
        Box::pin(async move {
            if !group.contains(".g-") {
                return self.inner.subscribe(pattern, group).await;
            }
            self.subscribes.fetch_add(1, Ordering::SeqCst);
            let Some(rx) = self.reads.lock().take() else {
                let _ = self.closed.subscribe().wait_for(|c| *c).await;
                return Err(chronica::mq::MqError::Closed);
            };
            let guard = OnDrop(self.left.clone());
            let reads = futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
                rx.recv().await.map(|read| (read, (rx, guard)))
            });
            let messages = reads.flat_map(|read| futures_util::stream::iter(read.into_iter().map(Ok)));
            Ok(Box::pin(messages) as MessageStream)
        })
    }
    fn ack_batch<'a>(&'a self, messages: &'a [MqMessage]) -> BoxFuture<'a, MqResult<()>> {
        Box::pin(async move {
            if messages.iter().any(|m| m.header(HANDED).is_some()) {
                self.acking.fetch_add(1, Ordering::SeqCst);
                self.acks.acquire().await.expect("open").forget();
            }
            Ok(())
        })
    }
    fn close(&self) -> BoxFuture<'_, MqResult<()>> {
        self.closed.send_replace(true);
        self.acks.add_permits(1 << 20);
        self.inner.close()
    }
}

/// A Chronica user event from instance `elsewhere`, handed to the group
/// subscription; `target` makes it a unicast, which a group subscription
/// acknowledges unhandled.
fn handed(id: &str, payload: &str, target: Option<&str>) -> MqMessage {
    let mut m = with_headers(
        payload,
        &[
            ("chronica-id", id),
            ("chronica-origin", "elsewhere"),
            ("chronica-kind", "user"),
            ("chronica-ts", "1"),
            ("chronica-topic", "t"),
            (HANDED, "1"),
        ],
    );
    if let Some(t) = target {
        m.headers.push(("chronica-target".into(), t.into()));
    }
    m
}

/// A grouped node registered while the group's subscription has just read
/// a message the group had no member for: `register_with` finds the
/// subscription in place and returns, so the subscription must stay, and
/// the message goes to the new member. Before, the subscription left the
/// group regardless (`register_with` had returned `Ok` with the instance
/// out of the group, until the watcher joined again up to 250 ms later),
/// and the message was handed back to a broker group this instance had
/// just left.
#[test]
fn a_member_registered_as_the_group_is_left() {
    let d = crate::common::director();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let adapter = Arc::new(Staged {
        inner: MemoryAdapter::named(&unique("hub")),
        reads: parking_lot::Mutex::new(Some(rx)),
        acks: tokio::sync::Semaphore::new(0),
        acking: AtomicUsize::new(0),
        left: Arc::new(AtomicBool::new(false)),
        subscribes: AtomicUsize::new(0),
        closed: watch::Sender::new(false),
    });
    let cfg = DistributedConfig {
        instance_id: "a".into(),
        topic_prefix: unique("leave"),
        // The reader acknowledges a read itself before it looks at the
        // group (under `delivery` a task of its own does).
        ack_mode: chronica::AckMode::Enqueue,
        ..Default::default()
    };
    let fabric = Distributed::with_adapter(&d, adapter.clone(), cfg).unwrap();
    // One read: a unicast (acknowledged, unhandled) and then a share the
    // group has no member here for. The reader stops acknowledging the
    // unicast, with the share found orphaned and the group not yet left.
    // Queued before the join, so that it is the subscription's first read,
    // taken before the group watcher can tell it the group has no member
    // here (which would leave the group with nothing read).
    tx.send(vec![handed("1", "unicast", Some("nobody")), handed("2", "share", None)]).unwrap();
    fabric.join_group("g").unwrap();
    let stopped = wait_for(Duration::from_secs(30), || adapter.acking.load(Ordering::SeqCst) == 1);
    assert!(stopped, "the reader never acknowledged the read");

    let (seen, node) = crate::common::recorder();
    fabric.register_with("m", node, NodeOptions::default().group("g").topic("t")).unwrap();
    assert_eq!(adapter.subscribes.load(Ordering::SeqCst), 1, "the join found the subscription in place");
    adapter.acks.add_permits(1 << 20);
    let settled =
        wait_for(Duration::from_secs(30), || adapter.left.load(Ordering::SeqCst) || !seen.lock().is_empty());
    assert!(settled, "neither delivered nor left: {:?}", fabric.stats());
    assert!(!adapter.left.load(Ordering::SeqCst), "the group was left with a member registered");
    let payloads: Vec<Vec<u8>> = seen.lock().iter().map(|s| s.payload.clone()).collect();
    assert_eq!(payloads, [b"share".to_vec()]);
    let s = fabric.stats();
    assert_eq!((s.received, s.duplicates, s.injected), (2, 0, 1), "{s:?}");
    fabric.close(Duration::from_secs(5)).unwrap();
    d.close(Duration::from_secs(5)).unwrap();
}
