//! The EventBus's subscriptions and their handlers over their lifetime:
//! when the handlers are dropped (by `off`, a director close, a refusal),
//! and `on`, `off`, `close` and unregisters racing one another.

mod common;
use common::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chronica::{
    Director, Error, Event, EventBus, EventHandler, Message, NodeError, NodeOptions, Retry, SubscribeOptions,
};
use parking_lot::Mutex;

/// Something a handler captures, whose drop the test sees through the
/// weak half.
fn probe() -> (Arc<()>, Weak<()>) {
    let p = Arc::new(());
    let w = Arc::downgrade(&p);
    (p, w)
}

/// A director close drops a subscription's handler and dead-letter handler
/// before it returns (SPEC 2.7: the destructor has run). The node's
/// dead-letter hook used to hold the dead-letter handler, and the closed
/// director keeps its fibers for the final stats, so it lived on until the
/// director was dropped.
#[test]
fn a_director_close_drops_the_handlers_before_it_returns() {
    let director = Director::new().unwrap();
    let bus = EventBus::new(director.clone());
    let (h, h_gone) = probe();
    let (dl, dl_gone) = probe();
    let dead = Arc::new(AtomicUsize::new(0));
    let dd = dead.clone();
    let opts = SubscribeOptions::default()
        .retry(Retry::constant(Duration::from_millis(1), Some(0)))
        .dead_letter(move |_: &Event, _: &NodeError| {
            let _keep = &dl;
            dd.fetch_add(1, Ordering::SeqCst);
        });
    let handler = move |_: &Event| -> Result<(), NodeError> {
        let _keep = &h;
        Err(NodeError::new("refused by the test"))
    };
    let _sub = bus.on("t", handler, opts).unwrap();
    bus.emit("t", "x").unwrap();
    wait_for("the dead letter", || dead.load(Ordering::SeqCst) == 1);
    assert!(h_gone.upgrade().is_some() && dl_gone.upgrade().is_some());
    director.close(Duration::from_secs(5)).unwrap();
    assert!(h_gone.upgrade().is_none(), "the handler outlived the close");
    assert!(dl_gone.upgrade().is_none(), "the dead-letter handler outlived the close");
}

/// `on_shared` (the C layer's form) takes the only strong reference: a
/// refusal hands the handler back as the only reference, never called (the
/// dead-letter handler is dropped), a uid held by a plain node is skipped
/// with the same handler, and once subscribed the handler is dropped inside
/// the `off` that ends it.
#[test]
fn a_shared_handler_is_handed_back_or_dropped_by_its_off() {
    let director = Director::new().unwrap();
    let bus = EventBus::new(director.clone());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handler: EventHandler = Arc::new(move |_: &Event| -> Result<(), NodeError> {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let ours = Arc::downgrade(&handler);
    let (dl, dl_gone) = probe();
    let opts = SubscribeOptions::default().dead_letter(move |_: &Event, _: &NodeError| {
        let _keep = &dl;
    });
    let refused = bus.on_shared("a.>.b", handler, opts).unwrap_err();
    assert!(matches!(refused.error, Error::InvalidArgument(_)), "{refused:?}");
    assert_eq!(Arc::strong_count(&refused.node), 1);
    assert!(dl_gone.upgrade().is_none(), "the refused dead-letter handler was kept");
    assert!(director.nodes().is_empty() && bus.subscriptions().is_empty());

    // The next numbers are held by plain nodes (other tests may take some
    // of them first; whatever is left must be skipped).
    let first =
        bus.on("x", |_: &Event| -> Result<(), NodeError> { Ok(()) }, SubscribeOptions::default()).unwrap();
    let n: u64 = first.uid().strip_prefix("bus.sub.").unwrap().parse().unwrap();
    let held: Vec<String> = (n + 1..=n + 64).map(|k| format!("bus.sub.{k}")).collect();
    for uid in &held {
        director.register_with(uid, sink, NodeOptions::default().topic("none")).unwrap();
    }
    let sub = bus.on_shared("t", refused.node, SubscribeOptions::default()).unwrap();
    assert!(!held.iter().any(|uid| uid == sub.uid()), "{} was held", sub.uid());
    bus.emit("t", "x").unwrap();
    settle(&director, sub.uid());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(ours.upgrade().is_some());
    bus.off(&sub).unwrap();
    assert!(ours.upgrade().is_none(), "the handler outlived its off");
}

/// A director whose registrations pause in the drop hook of their join
/// notice: the hook sends the new uid on the returned receiver, then waits
/// (up to 20 s) for a `()` on the returned sender. Its observer "obs" never
/// takes its root lane, full with its own pull, so every notice to it is
/// dropped and reported.
fn director_pausing_on_join() -> (Director, std::sync::mpsc::Receiver<String>, std::sync::mpsc::Sender<()>) {
    let (to_a, uids) = std::sync::mpsc::channel::<String>();
    let (to_hook, done) = std::sync::mpsc::channel::<()>();
    let done = Mutex::new(done);
    let director = Director::builder()
        .membership_events(true)
        .on_drop(move |rep: &chronica::DropReport<'_>| {
            if rep.event.topic() != chronica::NODE_JOINED {
                return;
            }
            let notice: serde_json::Value = serde_json::from_slice(rep.event.payload()).unwrap();
            to_a.send(notice["uid"].as_str().unwrap().to_owned()).unwrap();
            done.lock().recv_timeout(Duration::from_secs(20)).unwrap();
        })
        .build()
        .unwrap();
    let obs = NodeOptions::default().connected(false).root_capacity(1);
    director.register_with("obs", sink, obs).unwrap();
    (director, uids, to_hook)
}

/// An unregister of a subscription's uid racing its `on` returns after the
/// handler is dropped: here from another thread, while `on` runs the drop
/// hook of its own join notice. `on` kept its own references to the
/// handlers until it returned, so they were dropped after the unregister
/// had returned, on the subscribing thread.
#[test]
fn an_unregister_racing_on_returns_after_the_handler_is_dropped() {
    for with_dead_letter in [false, true] {
        let (director, uids, to_hook) = director_pausing_on_join();
        let bus = EventBus::new(director.clone());
        let (h, h_gone) = probe();
        let (dl, dl_gone) = probe();
        let a = {
            let director = director.clone();
            std::thread::spawn(move || {
                let uid = uids.recv_timeout(Duration::from_secs(20)).unwrap();
                director.unregister(&uid).unwrap();
                let gone = (h_gone.upgrade().is_none(), dl_gone.upgrade().is_none());
                to_hook.send(()).unwrap();
                (uid, gone)
            })
        };
        let mut opts = SubscribeOptions::default();
        if with_dead_letter {
            opts = opts.dead_letter(move |_: &Event, _: &NodeError| {
                let _keep = &dl;
            });
        } else {
            drop(dl);
        }
        let handler = move |_: &Event| -> Result<(), NodeError> {
            let _keep = &h;
            Ok(())
        };
        let sub = bus.on("t", handler, opts).unwrap();
        let (uid, gone) = a.join().unwrap();
        assert_eq!(uid, sub.uid());
        assert_eq!(gone, (true, true), "dropped when unregister returned (handler, dead-letter handler)");
        assert_eq!(bus.off(&sub), Err(Error::UnknownNode(uid)));
    }
}

/// A bus close racing an `on` ends the subscription before it returns:
/// here from another thread, while `on` runs the drop hook of its own join
/// notice (its node is registered by then). The close used to end only
/// the subscriptions listed when it started, and `on` listed its
/// subscription once the registration had returned: the node stayed
/// registered after the close, its handler alive until the director went.
#[test]
fn a_bus_close_racing_on_ends_the_subscription_before_it_returns() {
    let (director, uids, to_hook) = director_pausing_on_join();
    let bus = Arc::new(EventBus::new(director.clone()));
    let (h, h_gone) = probe();
    let a = {
        let (director, bus) = (director.clone(), bus.clone());
        std::thread::spawn(move || {
            let uid = uids.recv_timeout(Duration::from_secs(20)).unwrap();
            let closed = bus.close(Duration::from_secs(5));
            let seen = (director.nodes(), h_gone.upgrade().is_none());
            to_hook.send(()).unwrap();
            (uid, closed, seen)
        })
    };
    let handler = move |_: &Event| -> Result<(), NodeError> {
        let _keep = &h;
        Ok(())
    };
    // Registered before the close ended it: `on` succeeds.
    let sub = bus.on("t", handler, SubscribeOptions::default()).unwrap();
    let (uid, closed, (nodes, gone)) = a.join().unwrap();
    assert_eq!(uid, sub.uid());
    assert_eq!(closed, Ok(0));
    assert_eq!(nodes, ["obs"], "a subscription outlived the bus close");
    assert!(gone, "the handler was alive when the close returned");
    assert!(bus.subscriptions().is_empty());
    assert_eq!(director.nodes(), ["obs"]);
    assert_eq!(bus.off(&sub), Err(Error::Closed));
}

/// `on` racing a bus close from many threads: each call either succeeds,
/// and the close ends its subscription before returning, or is refused
/// with `Closed`, leaving nothing registered. Whatever the interleaving,
/// no node of the bus is registered once the close has returned.
#[test]
fn on_racing_a_bus_close_leaves_nothing_registered() {
    for round in 0..20 {
        let director = Director::new().unwrap();
        let bus = Arc::new(EventBus::new(director.clone()));
        let handlers = Arc::new(AtomicUsize::new(0));
        let ok = Arc::new(AtomicUsize::new(0));
        let subscribers: Vec<_> = (0..3)
            .map(|_| {
                let (bus, handlers, ok) = (bus.clone(), handlers.clone(), ok.clone());
                std::thread::spawn(move || loop {
                    // Counts live handlers: +1 here, -1 when dropped.
                    let guard = Live::new(&handlers);
                    let handler = move |_: &Event| -> Result<(), NodeError> {
                        let _keep = &guard;
                        Ok(())
                    };
                    match bus.on("t", handler, SubscribeOptions::default()) {
                        Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                        Err(Error::Closed) => return,
                        Err(e) => panic!("on refused with {e:?}"),
                    };
                })
            })
            .collect();
        wait_for("some subscriptions", || ok.load(Ordering::SeqCst) >= 2 + round % 5);
        bus.close(Duration::from_secs(5)).unwrap();
        let left: Vec<String> = director.nodes();
        for s in subscribers {
            s.join().unwrap();
        }
        assert!(left.is_empty(), "round {round}: registered after the bus close: {left:?}");
        assert!(director.nodes().is_empty(), "round {round}: {:?}", director.nodes());
        assert_eq!(handlers.load(Ordering::SeqCst), 0, "round {round}: a handler outlived it all");
        assert!(bus.subscriptions().is_empty());
    }
}

/// Counts itself in a shared counter while alive.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A subscription ended straight on the director (an unregister of its
/// uid) leaves the bus at once: the bus no longer lists it, `off` and
/// `stats` report it ended (`UnknownNode`), and when a plain node takes
/// the uid, neither `stats`, `off` nor `close` touches that node. The bus
/// used to keep the entry until an `off`, which (like a close) then
/// unregistered whatever held the uid. After a close of the director,
/// `off` says `Closed` and `stats` gives the final counters.
#[test]
fn a_subscription_ended_on_the_director_leaves_the_bus() {
    let director = Director::new().unwrap();
    let bus = EventBus::new(director.clone());
    let (h, h_gone) = probe();
    let handler = move |_: &Event| -> Result<(), NodeError> {
        let _keep = &h;
        Ok(())
    };
    let sub = bus.on("t", handler, SubscribeOptions::default()).unwrap();
    let uid = sub.uid().to_owned();
    director.unregister(&uid).unwrap();
    assert!(h_gone.upgrade().is_none());
    assert!(bus.subscriptions().is_empty(), "the bus still lists {uid}");
    assert_eq!(bus.stats(&sub), Err(Error::UnknownNode(uid.clone())));

    // A plain node takes the uid: it is not the subscription.
    plain_node_takes_the_uid(&director, &bus, &sub);
    assert_eq!(bus.off(&sub), Err(Error::Closed));

    // Ended by a close of the director.
    let bus = EventBus::new(director.clone());
    let sub =
        bus.on("t", |_: &Event| -> Result<(), NodeError> { Ok(()) }, SubscribeOptions::default()).unwrap();
    bus.emit("t", "x").unwrap();
    settle(&director, sub.uid());
    director.close(Duration::from_secs(5)).unwrap();
    assert!(bus.subscriptions().is_empty());
    let last = bus.stats(&sub).unwrap();
    // The current-state pull and the event.
    assert_eq!((last.accepted, last.delivered, last.pending), (2, 2, 0), "{last:?}");
    assert_eq!(bus.off(&sub), Err(Error::Closed));
    assert_eq!(bus.close(Duration::from_secs(1)), Ok(0));
}

/// Registers a plain node (topic `t`) under the uid of `sub`, a
/// subscription ended straight on the director, and checks that the bus's
/// `stats`, `off` and `close` leave that node alone (they used to act on
/// whatever held the uid). Returns the node's log; the bus is closed.
fn plain_node_takes_the_uid(director: &Director, bus: &EventBus, sub: &chronica::Subscription) -> Log {
    let uid = sub.uid().to_owned();
    let log = Log::new();
    director.register_with(&uid, log.node(), NodeOptions::default().topic("t")).unwrap();
    assert_eq!(bus.stats(sub), Err(Error::UnknownNode(uid.clone())), "stats of the plain node");
    assert_eq!(bus.off(sub), Err(Error::UnknownNode(uid.clone())));
    assert_eq!(director.nodes(), [uid.as_str()], "the off ended the plain node");
    assert_eq!(bus.close(Duration::from_secs(1)), Ok(0));
    assert_eq!(director.nodes(), [uid.as_str()], "the bus close ended the plain node");
    log
}

/// A handler that reports each call on `entered` and then waits (up to
/// 20 s) for a `()` on the returned sender.
fn held_handler(
    entered: std::sync::mpsc::Sender<()>,
) -> (impl Fn(&Event) -> Result<(), NodeError> + Send + Sync + 'static, std::sync::mpsc::Sender<()>) {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Mutex::new(released);
    let handler = move |_: &Event| -> Result<(), NodeError> {
        let _ = entered.send(());
        let _ = released.lock().recv_timeout(Duration::from_secs(20));
        Ok(())
    };
    (handler, release)
}

/// A subscription ended on the director without waiting for its handler
/// (`unregister_no_wait`, as from inside a callback) is still listed by
/// the bus until that handler returns. A plain node that takes its uid
/// meanwhile is not the subscription: `stats`, `off` and `close` of the
/// bus used to act on whatever node held the uid, and ended that node.
#[test]
fn a_uid_taken_while_the_ended_handler_still_runs_is_left_alone() {
    let director = Director::new().unwrap();
    let bus = EventBus::new(director.clone());
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (handler, release) = held_handler(entered_tx);
    let sub = bus.on("t", handler, SubscribeOptions::default()).unwrap();
    let uid = sub.uid().to_owned();
    bus.emit("t", "x").unwrap();
    entered.recv_timeout(Duration::from_secs(20)).unwrap();
    director.unregister_no_wait(&uid).unwrap();
    let log = plain_node_takes_the_uid(&director, &bus, &sub);
    release.send(()).unwrap();
    wait_for("the ended subscription's node to go", || bus.subscriptions().is_empty());
    director.emit(Message::new("t", "y")).unwrap();
    settle(&director, &uid);
    assert_eq!(log.user_topics(), ["t"], "the plain node stopped receiving");
}

/// After a close of the director, `stats` of a subscription gives its own
/// final counters or nothing: it used to read whatever node held the uid,
/// here a plain node that took it once the subscription had ended.
#[test]
fn stats_after_a_director_close_read_only_the_subscription_s_node() {
    let director = Director::new().unwrap();
    let bus = EventBus::new(director.clone());
    let sub =
        bus.on("t", |_: &Event| -> Result<(), NodeError> { Ok(()) }, SubscribeOptions::default()).unwrap();
    let uid = sub.uid().to_owned();
    director.unregister(&uid).unwrap();
    director.register_with(&uid, sink, NodeOptions::default().topic("t")).unwrap();
    director.emit(Message::new("t", "x")).unwrap();
    settle(&director, &uid);
    director.close(Duration::from_secs(5)).unwrap();
    assert_eq!(director.stats(&uid).map(|s| s.delivered), Ok(2), "the plain node's pull and event");
    assert_eq!(bus.stats(&sub), Err(Error::UnknownNode(uid)), "stats of the plain node");
}

/// `off` racing the bus's `close` from two threads, many rounds, on a bus
/// sharing its director and on one owning it, with events in flight:
/// whichever ends the subscription, `off` returns once it has ended (its
/// handler dropped): `Ok` when it ended it, `Closed` when the close did.
/// It used to return `Closed` at once while the close was still draining
/// the subscription. And the close returns with no subscription left.
#[test]
fn off_racing_a_bus_close_returns_once_the_subscription_has_ended() {
    for round in 0..60 {
        let owned = round % 2 == 1;
        let director = Director::new().unwrap();
        let bus = Arc::new(if owned {
            EventBus::owning(director.clone())
        } else {
            EventBus::new(director.clone())
        });
        let handlers = Arc::new(AtomicUsize::new(0));
        let guard = Live::new(&handlers);
        let handler = move |_: &Event| -> Result<(), NodeError> {
            let _keep = &guard;
            std::thread::sleep(Duration::from_millis(1));
            Ok(())
        };
        let sub = bus.on("t", handler, SubscribeOptions::default()).unwrap();
        for _ in 0..5 {
            bus.emit("t", "x").unwrap();
        }
        let start = Arc::new(std::sync::Barrier::new(2));
        let closer = {
            let (bus, start, handlers) = (bus.clone(), start.clone(), handlers.clone());
            std::thread::spawn(move || {
                start.wait();
                // Staggered, so that either call may come first.
                for _ in 0..(round / 2 % 4) * 200 {
                    std::thread::yield_now();
                }
                let closed = bus.close(Duration::from_secs(5));
                (closed, handlers.load(Ordering::SeqCst))
            })
        };
        start.wait();
        let off = bus.off(&sub);
        let alive = handlers.load(Ordering::SeqCst);
        let (closed, alive_at_close) = closer.join().unwrap();
        assert!(matches!(off, Ok(_) | Err(Error::Closed)), "round {round}: {off:?}");
        assert_eq!(alive, 0, "round {round} (owned: {owned}): off returned {off:?} with the handler alive");
        assert!(closed.is_ok(), "round {round}: {closed:?}");
        assert_eq!(
            alive_at_close, 0,
            "round {round} (owned: {owned}): the close returned with the handler alive"
        );
        if !owned {
            assert!(director.nodes().is_empty(), "round {round}: {:?}", director.nodes());
        }
    }
}

/// A bus close during an `off`'s long drain (a handler that takes 200 ms
/// over each of 300 events, a minute in all) returns within its own
/// deadline, give or take the call in flight and a generous margin: it
/// cuts the `off`'s drain short there. The `off` returns the node's final
/// counters: nothing pending, what the cut left counted as dropped (and
/// reported to the drop hook), so that the accounting equation holds. It
/// used to return the counters of the moment before its unregister, with
/// what was left still pending.
#[test]
fn a_bus_close_cuts_an_off_s_long_drain_and_the_off_returns_final_counters() {
    const EVENTS: u64 = 300;
    const CALL: Duration = Duration::from_millis(200);
    let reported = Arc::new(AtomicUsize::new(0));
    let r = reported.clone();
    // One event per batch: a node stops between batches, and the bus's
    // handler takes a whole batch in one call of the node.
    let director = Director::builder()
        .batch_size(1)
        .on_drop(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let bus = Arc::new(EventBus::new(director.clone()));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let slow = move |_: &Event| -> Result<(), NodeError> {
        c.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(CALL);
        Ok(())
    };
    let sub = bus.on("t", slow, SubscribeOptions::default()).unwrap();
    for _ in 0..EVENTS {
        bus.emit("t", "x").unwrap();
    }
    wait_for("a first call", || calls.load(Ordering::SeqCst) > 0);
    let off = {
        let (bus, sub) = (bus.clone(), sub.clone());
        std::thread::spawn(move || bus.off_within(&sub, Duration::from_secs(120)))
    };
    wait_for("the off to take the subscription", || bus.subscriptions().is_empty());
    let started = Instant::now();
    let closed = bus.close(Duration::from_millis(100));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "the close took {took:?}: it waited for the off's drain");
    // The subscription was the off's to end: its events are counted there.
    assert_eq!(closed, Ok(0));
    let last = off.join().unwrap().expect("the off ended the subscription");
    assert!(last.balanced(), "{last:?}");
    assert_eq!((last.accepted, last.pending), (EVENTS + 1, 0), "final counters: {last:?}");
    assert!(last.dropped > 0, "the cut left nothing: {last:?}");
    assert_eq!(last.dropped, reported.load(Ordering::SeqCst) as u64, "each drop reported: {last:?}");
    assert!(director.nodes().is_empty(), "{:?}", director.nodes());
}

/// A bus close racing the start of an `off`'s drain, many rounds,
/// staggered so that it comes before the `off` takes the subscription,
/// between that and the start of the drain, or during the drain: the
/// `off` never outlives the close's deadline by more than a (generous)
/// margin. Its drain would otherwise last its own timeout, 30 s: the
/// handler fails every event, retried forever. Whichever ends the
/// subscription, the `off` returns final counters or `Closed`. (The
/// narrowest window, between the `off`'s decision to drain and the
/// engine's start of the drain, is hit on purpose by a unit test,
/// `a_bus_close_between_an_off_s_decision_and_its_drain_still_cuts_it`.)
#[test]
fn a_bus_close_racing_the_start_of_an_off_s_drain_always_bounds_it() {
    const OFF_TIMEOUT: Duration = Duration::from_secs(30);
    const CLOSE_TIMEOUT: Duration = Duration::from_millis(20);
    const MARGIN: Duration = Duration::from_secs(10);
    for round in 0..200u32 {
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
        let start = Arc::new(std::sync::Barrier::new(2));
        let closer = {
            let (bus, start) = (bus.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                // Most rounds wait for the off to take the subscription,
                // then land at various points of its way to the start of
                // the drain (a few microseconds); the others may come
                // before the take.
                if round % 5 != 0 {
                    while !bus.subscriptions().is_empty() {
                        std::hint::spin_loop();
                    }
                }
                for _ in 0..(round % 25) * 40 {
                    std::hint::spin_loop();
                }
                let deadline = Instant::now() + CLOSE_TIMEOUT;
                (bus.close(CLOSE_TIMEOUT), deadline)
            })
        };
        start.wait();
        let off = bus.off_within(&sub, OFF_TIMEOUT);
        let off_ended = Instant::now();
        let (closed, deadline) = closer.join().unwrap();
        let late = off_ended.saturating_duration_since(deadline);
        assert!(late < MARGIN, "round {round}: the off returned {late:?} after the close's deadline");
        assert!(closed.is_ok(), "round {round}: {closed:?}");
        match off {
            Ok(last) => assert!(last.balanced() && last.pending == 0, "round {round}: {last:?}"),
            Err(e) => assert_eq!(e, Error::Closed, "round {round}"),
        }
        assert!(director.nodes().is_empty(), "round {round}: {:?}", director.nodes());
        director.close(Duration::from_secs(5)).unwrap();
    }
}

/// A bus sharing its director whose last reference goes inside one of its
/// own handlers ends its subscriptions all the same, on a thread of its
/// own: the close its drop makes is refused there (`Reentrant`, since it
/// would wait for that very handler), and its subscriptions used to stay
/// registered, their handlers called, until the director closed.
#[test]
fn a_bus_dropped_inside_its_own_handler_ends_its_subscriptions() {
    let director = Director::new().unwrap();
    let bus = Arc::new(EventBus::new(director.clone()));
    let weak = Arc::downgrade(&bus);
    let calls = Arc::new(AtomicUsize::new(0));
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let (c, w) = (calls.clone(), weak.clone());
    bus.on(
        "t",
        move |_: &Event| {
            c.fetch_add(1, Ordering::SeqCst);
            // Holds the bus for a moment (as a handler emitting through
            // it would); the owner lets go meanwhile.
            if let Some(held) = w.upgrade() {
                let _ = go_rx.lock().recv_timeout(Duration::from_secs(10));
                drop(held);
            }
            Ok(())
        },
        SubscribeOptions::default(),
    )
    .unwrap();
    bus.emit("t", "first").unwrap();
    wait_for("the handler to hold the bus", || {
        calls.load(Ordering::SeqCst) == 1 && Arc::strong_count(&bus) == 2
    });
    drop(bus);
    go_tx.send(()).unwrap();
    wait_for("the bus to be gone", || weak.upgrade().is_none());
    wait_for("its subscription to leave the director", || director.nodes().is_empty());
    director.emit(Message::new("t", "after")).unwrap();
    assert_eq!(director.close(Duration::from_secs(5)), Ok(0));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a handler of the dropped bus was called again");
}
