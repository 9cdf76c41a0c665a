//! `ack_mode = delivery`: a subscription acknowledges a message once its
//! targets finished with it, and never before an earlier message of the
//! same subscription (Kafka's offsets would commit the earlier one too).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronica::mq::memory::MemoryAdapter;
use chronica::mq::{BoxFuture, Message as MqMessage, MqAdapter, MqResult};
use chronica::{AckMode, Batch, Director, Distributed, DistributedConfig, Message, NodeError, NodeOptions};
use parking_lot::Mutex;

use crate::common::wait_for;
use crate::pass_through::pass_through;
use crate::suite::unique;

/// A memory adapter that records the payloads it acknowledges, in order.
#[derive(Debug)]
struct Recording {
    inner: MemoryAdapter,
    acked: Mutex<Vec<u8>>,
}

impl MqAdapter for Recording {
    fn name(&self) -> &str {
        "recording"
    }
    pass_through!(publish, subscribe, close);
    fn ack<'a>(&'a self, message: &'a MqMessage) -> BoxFuture<'a, MqResult<()>> {
        self.acked.lock().push(message.value[0]);
        self.inner.ack(message)
    }
    fn ack_batch<'a>(&'a self, messages: &'a [MqMessage]) -> BoxFuture<'a, MqResult<()>> {
        self.acked.lock().extend(messages.iter().map(|m| m.value[0]));
        self.inner.ack_batch(messages)
    }
}

/// Instance `a` sends, instance `b` receives with its acknowledgements
/// recorded; both on one memory hub under `ack_mode = delivery`.
struct Pair {
    receiver: Arc<Recording>,
    da: Director,
    db: Director,
    a: Distributed,
    b: Distributed,
}

fn delivery_pair() -> Pair {
    let (hub, prefix) = (unique("hub"), unique("acks"));
    let config = |instance: &str| DistributedConfig {
        instance_id: instance.into(),
        topic_prefix: prefix.clone(),
        ack_mode: AckMode::Delivery,
        ..DistributedConfig::default()
    };
    let receiver = Arc::new(Recording { inner: MemoryAdapter::named(&hub), acked: Mutex::default() });
    let (da, db) = (crate::common::director(), crate::common::director());
    let a = Distributed::with_adapter(&da, Arc::new(MemoryAdapter::named(&hub)), config("a")).unwrap();
    let b = Distributed::with_adapter(&db, receiver.clone(), config("b")).unwrap();
    Pair { receiver, da, db, a, b }
}

impl Pair {
    fn close(self) {
        self.a.close(Duration::from_secs(5)).unwrap();
        self.b.close(Duration::from_secs(5)).unwrap();
        self.da.close(Duration::from_secs(5)).unwrap();
        self.db.close(Duration::from_secs(5)).unwrap();
    }
}

struct ReleaseOnDrop(Arc<AtomicBool>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Event 0 goes to a node that holds it in its callback; events 1 to 9 go
/// to a fast node. Nothing is acknowledged until event 0 is delivered, then
/// all ten are, in the order they were received.
#[test]
fn delivery_acks_wait_for_earlier_messages() {
    let Pair { receiver, da, db, a, b } = delivery_pair();

    let (holding, release) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    // Lets the held callback go however the test ends (a failed assert
    // would otherwise leave `close` waiting for it).
    let _release_on_exit = ReleaseOnDrop(release.clone());
    let (h, r) = (holding.clone(), release.clone());
    let slow = move |batch: &Batch| -> Result<(), NodeError> {
        if batch.iter().any(|e| !e.is_root()) {
            h.store(true, Ordering::Release);
            while !r.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    };
    db.register_with("slow", slow, NodeOptions::default().topic("slow")).unwrap();
    let fast_got = Arc::new(AtomicUsize::new(0));
    let f = fast_got.clone();
    let fast = move |batch: &Batch| -> Result<(), NodeError> {
        f.fetch_add(batch.iter().filter(|e| !e.is_root()).count(), Ordering::Relaxed);
        Ok(())
    };
    db.register_with("fast", fast, NodeOptions::default().topic("fast")).unwrap();

    a.emit(Message::new("slow", vec![0u8])).unwrap();
    for n in 1..10u8 {
        a.emit(Message::new("fast", vec![n])).unwrap();
    }
    let fast_done = || fast_got.load(Ordering::Relaxed) == 9 && holding.load(Ordering::Acquire);
    assert!(wait_for(Duration::from_secs(10), fast_done), "{:?}", b.stats());
    // Events 1 to 9 are delivered; event 0 is still in its callback.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(*receiver.acked.lock(), Vec::<u8>::new(), "acknowledged ahead of event 0");

    release.store(true, Ordering::Release);
    assert!(wait_for(Duration::from_secs(10), || receiver.acked.lock().len() == 10));
    assert_eq!(*receiver.acked.lock(), (0..10).collect::<Vec<u8>>());
    for uid in ["slow", "fast"] {
        let s = db.stats(uid).unwrap();
        assert!(s.balanced() && s.pending == 0, "{uid}: {s:?}");
    }
    Pair { receiver, da, db, a, b }.close();
}

/// A root event that overtakes a waiting user event (root events go first)
/// must not get that user event's message acknowledged: the node has not
/// had it yet. Event 0 is held in the callback while event 1 and root
/// event 2 queue; once 0 is let go, 2 is delivered and 1 is held in turn.
/// Only message 0 may be acknowledged then (counting finished events, as
/// the layer did until session 8, acknowledged 0, 1 and 2).
#[test]
fn a_root_event_delivered_first_does_not_ack_a_waiting_event() {
    let Pair { receiver, da, db, a, b } = delivery_pair();

    // The k-th batch with a user event waits until `allowed` reaches k.
    let (entered, allowed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let _release_on_exit = ReleaseAll(allowed.clone());
    let (e, al) = (entered.clone(), allowed.clone());
    let held = move |batch: &Batch| -> Result<(), NodeError> {
        if batch.iter().any(|e| !e.is_root()) {
            let k = e.fetch_add(1, Ordering::AcqRel) + 1;
            while al.load(Ordering::Acquire) < k {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    };
    db.register("n", held).unwrap();
    let stats = || db.stats("n").unwrap();

    a.emit(Message::new("t", vec![0u8])).unwrap();
    assert!(wait_for(Duration::from_secs(10), || entered.load(Ordering::Acquire) == 1));
    a.emit(Message::new("t", vec![1u8])).unwrap();
    a.emit_root("sync", vec![2u8]).unwrap();
    // The pull event, 0, 1 and 2.
    assert!(wait_for(Duration::from_secs(10), || stats().accepted == 4), "{:?}", stats());

    allowed.store(1, Ordering::Release);
    let one_held = || entered.load(Ordering::Acquire) == 2 && stats().delivered == 3;
    assert!(wait_for(Duration::from_secs(10), one_held), "{:?}", stats());
    assert!(wait_for(Duration::from_secs(10), || !receiver.acked.lock().is_empty()));
    // The watcher looks every millisecond: give a wrong ack time to happen.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(*receiver.acked.lock(), vec![0u8], "acknowledged an event still waiting");

    allowed.store(2, Ordering::Release);
    assert!(wait_for(Duration::from_secs(10), || receiver.acked.lock().len() == 3));
    assert_eq!(*receiver.acked.lock(), vec![0u8, 1, 2]);
    let s = stats();
    assert!(s.balanced() && s.pending == 0, "{s:?}");
    Pair { receiver, da, db, a, b }.close();
}

/// Lets every held callback go however the test ends.
struct ReleaseAll(Arc<AtomicUsize>);

impl Drop for ReleaseAll {
    fn drop(&mut self) {
        self.0.store(usize::MAX, Ordering::Release);
    }
}

/// Events a closing director leaves undelivered are not acknowledged: the
/// broker keeps their messages for a later instance.
#[test]
fn events_left_undelivered_at_close_are_not_acknowledged() {
    let Pair { receiver, da, db, a, b } = delivery_pair();
    // Disconnected: it holds its events, bounded, and delivers none.
    db.register_with(
        "off",
        |_: &Batch| -> Result<(), NodeError> { Ok(()) },
        NodeOptions::default().connected(false),
    )
    .unwrap();
    for n in 0..3u8 {
        a.emit(Message::new("t", vec![n])).unwrap();
    }
    assert!(wait_for(Duration::from_secs(10), || db.stats("off").unwrap().accepted == 4));
    assert_eq!(db.close(Duration::from_millis(100)).unwrap(), 4, "the pull event and three events");
    // The watcher looks every millisecond: give a wrong ack time to happen.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(*receiver.acked.lock(), Vec::<u8>::new());
    a.close(Duration::from_secs(5)).unwrap();
    b.close(Duration::from_secs(5)).unwrap();
    da.close(Duration::from_secs(5)).unwrap();
}
