//! `off` racing the bus's `close`, made deterministic with the list's
//! test hook (`BEFORE_WAIT`): the subscription's handler is held in a call
//! and let go by the hook, that is, only once the call under test waits.
//! A call that does not wait (as both did) returns with the handler alive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::ending::BEFORE_DRAIN;
use super::list::BEFORE_WAIT;
use super::{EventBus, Retry, SubscribeOptions, Subscription};
use crate::{Director, Error, Event, NodeError};

/// Up to how long a test waits for a state it expects.
const PATIENCE: Duration = Duration::from_secs(20);

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A subscription on `bus` whose handler reports its call on the returned
/// receiver, then waits for a `()` on the returned sender; the weak
/// reference dies with the handler.
fn held_subscription(bus: &EventBus) -> (Subscription, Receiver<()>, Sender<()>, Weak<()>) {
    let (entered_tx, entered) = channel();
    let (release, released) = channel::<()>();
    let released = Mutex::new(released);
    let alive = Arc::new(());
    let probe = Arc::downgrade(&alive);
    let handler = move |_: &Event| -> Result<(), NodeError> {
        let _keep = &alive;
        let _ = entered_tx.send(());
        let _ = released.lock().recv_timeout(PATIENCE);
        Ok(())
    };
    let sub = bus.on("t", handler, SubscribeOptions::default()).unwrap();
    (sub, entered, release, probe)
}

/// Lets the held handler go when this thread's next bus call first waits.
fn release_on_wait(release: &Sender<()>) {
    let release = release.clone();
    BEFORE_WAIT.set(Some(Box::new(move || {
        let _ = release.send(());
    })));
}

/// An `off` of a subscription the bus's close is ending (its unregister
/// waits for the handler's call) returns `Closed` once the close has ended
/// it, with the handler dropped; it used to return `Closed` at once, the
/// handler still running. For a bus owning its director too, whose close
/// is the director's.
#[test]
fn an_off_racing_the_bus_close_returns_once_the_close_has_ended_it() {
    for owned in [false, true] {
        let director = Director::new().unwrap();
        let bus = Arc::new(if owned {
            EventBus::owning(director.clone())
        } else {
            EventBus::new(director.clone())
        });
        let (sub, entered, release, handler) = held_subscription(&bus);
        bus.emit("t", "x").unwrap();
        entered.recv_timeout(PATIENCE).unwrap();
        let closer = {
            let bus = bus.clone();
            std::thread::spawn(move || bus.close(Duration::ZERO))
        };
        // The close has taken the subscription to end it (for an owned
        // bus, before it closes the director).
        let started = || if owned { director.is_closed() } else { bus.subscriptions().is_empty() };
        wait_for("the close to start", started);
        release_on_wait(&release);
        let off = bus.off(&sub);
        let gone = handler.upgrade().is_none();
        BEFORE_WAIT.take();
        let _ = release.send(());
        assert_eq!(off.map(|_| ()), Err(Error::Closed), "owned: {owned}");
        assert!(gone, "owned: {owned}: the off returned with the handler alive");
        assert!(closer.join().unwrap().is_ok(), "owned: {owned}");
    }
}

/// The bus's close, racing an `off` that is ending a subscription (its
/// unregister waits for the handler's call), returns once that `off` has
/// ended it; it used to return at once, the handler still running.
#[test]
fn a_bus_close_racing_an_off_returns_once_the_off_has_ended_it() {
    let director = Director::new().unwrap();
    let bus = Arc::new(EventBus::new(director.clone()));
    let (sub, entered, release, handler) = held_subscription(&bus);
    bus.emit("t", "x").unwrap();
    entered.recv_timeout(PATIENCE).unwrap();
    let off = {
        let (bus, sub) = (bus.clone(), sub.clone());
        std::thread::spawn(move || bus.off_within(&sub, Duration::ZERO))
    };
    // The off has taken the subscription to end it.
    wait_for("the off to start", || bus.subscriptions().is_empty());
    release_on_wait(&release);
    let closed = bus.close(Duration::from_secs(5));
    let gone = handler.upgrade().is_none();
    BEFORE_WAIT.take();
    let _ = release.send(());
    assert_eq!(closed, Ok(0));
    assert!(gone, "the close returned with the handler alive");
    assert!(off.join().unwrap().is_ok());
    assert!(director.nodes().is_empty());
}

/// An `off` whose director is closed (straight on the director) while it
/// drains has its subscription ended all the same, by that close: it
/// returns once the node is gone, with the node's final counters. It used
/// to return `Closed`, as if the subscription had been ended before it
/// was called.
#[test]
fn an_off_whose_director_closes_during_its_drain_returns_the_final_counters() {
    let director = Director::new().unwrap();
    let bus = Arc::new(EventBus::new(director.clone()));
    let (sub, entered, release, handler) = held_subscription(&bus);
    bus.emit("t", "x").unwrap();
    entered.recv_timeout(PATIENCE).unwrap();
    let off = {
        let (bus, sub) = (bus.clone(), sub.clone());
        std::thread::spawn(move || {
            let off = bus.off_within(&sub, PATIENCE);
            (off, handler.upgrade().is_none())
        })
    };
    wait_for("the off to take the subscription", || bus.subscriptions().is_empty());
    let closer = {
        let director = director.clone();
        std::thread::spawn(move || director.close(PATIENCE))
    };
    wait_for("the director's close to begin", || director.is_closed());
    release.send(()).unwrap();
    let (off, gone) = off.join().unwrap();
    assert_eq!(closer.join().unwrap(), Ok(0));
    let last = off.expect("the subscription was ended during the off");
    // The current-state pull and the event.
    assert_eq!((last.accepted, last.delivered, last.pending), (2, 2, 0), "{last:?}");
    assert!(gone, "the off returned with the handler alive");
}

/// A bus with one subscription to "t" whose handler fails every event,
/// retried every 5 ms forever, holding one event it has failed once: its
/// drain lasts whatever deadline it is given.
fn never_settling() -> (Director, Arc<EventBus>, Subscription) {
    let director = Director::new().unwrap();
    let bus = Arc::new(EventBus::new(director.clone()));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let never = move |_: &Event| -> Result<(), NodeError> {
        c.fetch_add(1, Ordering::SeqCst);
        Err(NodeError::new("not yet"))
    };
    let retry = Retry::constant(Duration::from_millis(5), None);
    let sub = bus.on("t", never, SubscribeOptions::default().retry(retry)).unwrap();
    bus.emit("t", "x").unwrap();
    wait_for("a first failed call", || calls.load(Ordering::SeqCst) > 0);
    (director, bus, sub)
}

/// A bus close that finds a subscription taken by an `off` still draining
/// cuts that drain short at its own deadline, then waits for the `off` to
/// end it. Here the handler fails every event, retried forever, so the
/// drain would last the `off`'s whole timeout: the close used to wait for
/// it (30 s) whatever its own.
#[test]
fn a_bus_close_cuts_short_the_drain_of_a_racing_off() {
    const OFF_TIMEOUT: Duration = Duration::from_secs(30);
    let (director, bus, sub) = never_settling();
    let started = Instant::now();
    let off = {
        let (bus, sub) = (bus.clone(), sub.clone());
        std::thread::spawn(move || bus.off_within(&sub, OFF_TIMEOUT))
    };
    wait_for("the off to take the subscription", || bus.subscriptions().is_empty());
    let closed = bus.close(Duration::from_millis(50));
    let took = started.elapsed();
    assert!(took < OFF_TIMEOUT, "the close waited {took:?}, for the off's drain");
    // The subscription was the off's to end: its events are counted there.
    assert_eq!(closed, Ok(0));
    assert!(director.nodes().is_empty(), "{:?}", director.nodes());
    let last = off.join().unwrap().expect("the off ended the subscription");
    // Its final counters: what the cut left was dropped at the unregister.
    let counts = (last.accepted, last.delivered, last.dropped, last.pending);
    assert_eq!(counts, (2, 1, 1, 0), "{last:?}");
}

/// A bus close that comes after an `off` has decided to drain its
/// subscription and before the engine starts the drain (run there by the
/// test hook `BEFORE_DRAIN`) bounds the drain all the same: the engine
/// reads the cut as it starts the drain. Read by the `off` before it asks
/// the engine, the cut would be missed, and the drain (of a handler that
/// fails every event, retried forever) would last the `off`'s 30 s, the
/// close waiting for it.
#[test]
fn a_bus_close_between_an_off_s_decision_and_its_drain_still_cuts_it() {
    const OFF_TIMEOUT: Duration = Duration::from_secs(30);
    let (director, bus, sub) = never_settling();
    let closer = Arc::new(Mutex::new(None));
    let (b, slot) = (bus.clone(), closer.clone());
    BEFORE_DRAIN.set(Some(Box::new(move || {
        let bus = b.clone();
        let close = std::thread::spawn(move || bus.close(Duration::from_millis(50)));
        wait_for("the close to cut the drains", || b.subscriptions.cut.at().is_some());
        *slot.lock() = Some(close);
    })));
    let started = Instant::now();
    let off = bus.off_within(&sub, OFF_TIMEOUT);
    let took = started.elapsed();
    BEFORE_DRAIN.take();
    let closed = closer.lock().take().expect("the hook ran").join().unwrap();
    assert!(took < OFF_TIMEOUT / 2, "the off took {took:?}: its drain missed the close's cut");
    assert_eq!(closed, Ok(0));
    let last = off.expect("the off ended the subscription");
    let counts = (last.accepted, last.delivered, last.dropped, last.pending);
    assert_eq!(counts, (2, 1, 1, 0), "{last:?}");
    assert!(director.nodes().is_empty(), "{:?}", director.nodes());
}
