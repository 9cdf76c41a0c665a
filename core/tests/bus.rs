//! The EventBus facade (issue 5): wildcard topics, consumer groups,
//! concurrency with per-key order, `off` during traffic, a shared director,
//! refused options, and when the handlers are dropped.

mod common;
use common::*;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chronica::{
    Director, Error, Event, EventBus, EventHandler, Message, NodeError, NodeOptions, Retry, SubscribeOptions,
};
use parking_lot::Mutex;

type Seen = Arc<Mutex<Vec<Event>>>;

fn recorder(seen: &Seen) -> impl Fn(&Event) -> Result<(), NodeError> + Send + Sync + 'static {
    let seen = seen.clone();
    move |e: &Event| {
        seen.lock().push(e.clone());
        Ok(())
    }
}

fn topics(seen: &Seen) -> Vec<String> {
    let mut t: Vec<String> = seen.lock().iter().map(|e| e.topic().to_owned()).collect();
    t.sort();
    t
}

fn settle_bus(bus: &EventBus, subs: &[&chronica::Subscription]) {
    for s in subs {
        settle(bus.director(), s.uid());
    }
}

#[test]
fn wildcard_topics_reach_the_matching_handlers() {
    let bus = EventBus::from_builder(Director::builder()).unwrap();
    let (one, rest, first, all) = (Seen::default(), Seen::default(), Seen::default(), Seen::default());
    let s1 = bus.on("orders.*", recorder(&one), SubscribeOptions::default()).unwrap();
    let s2 = bus.on("orders.>", recorder(&rest), SubscribeOptions::default()).unwrap();
    let s3 = bus.on("*.created", recorder(&first), SubscribeOptions::default()).unwrap();
    let s4 = bus.on(">", recorder(&all), SubscribeOptions::default()).unwrap();
    assert!(s1.uid().starts_with("bus.sub.") && s1.uid() != s2.uid());
    for t in ["orders.created", "orders.eu.created", "users.created", "orders", "billing.paid"] {
        bus.emit(t, "{}").unwrap();
    }
    settle_bus(&bus, &[&s1, &s2, &s3, &s4]);
    assert_eq!(topics(&one), ["orders.created"]);
    assert_eq!(topics(&rest), ["orders.created", "orders.eu.created"]);
    assert_eq!(topics(&first), ["orders.created", "users.created"]);
    assert_eq!(topics(&all).len(), 5);
    assert_eq!(bus.close(Duration::from_secs(2)).unwrap(), 0);
}

#[test]
fn a_group_takes_each_event_once_and_a_key_sticks_to_a_member() {
    let bus = EventBus::from_builder(Director::builder()).unwrap();
    let members: Vec<Seen> = (0..3).map(|_| Seen::default()).collect();
    let subs: Vec<_> = members
        .iter()
        .map(|m| bus.on("jobs.>", recorder(m), SubscribeOptions::default().group("workers")).unwrap())
        .collect();
    let plain = Seen::default();
    let p = bus.on("jobs.>", recorder(&plain), SubscribeOptions::default()).unwrap();
    let mut emitted = Vec::new();
    for i in 0..300u32 {
        let id = if i % 2 == 0 {
            bus.emit_message(Message::new("jobs.run", i.to_string()).key(format!("k{}", i % 10))).unwrap()
        } else {
            bus.emit("jobs.run", i.to_string()).unwrap()
        };
        emitted.push(id);
    }
    settle_bus(&bus, &subs.iter().chain([&p]).collect::<Vec<_>>());
    let mut ids: Vec<u64> =
        members.iter().flat_map(|m| m.lock().iter().map(Event::id).collect::<Vec<_>>()).collect();
    ids.sort_unstable();
    assert_eq!(ids, emitted, "each event exactly once across the group");
    assert!(members.iter().all(|m| !m.lock().is_empty()), "every member takes a share");
    let mut owner: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for (n, m) in members.iter().enumerate() {
        for e in m.lock().iter().filter_map(|e| e.key().map(<[u8]>::to_vec)) {
            assert_eq!(*owner.entry(e).or_insert(n), n, "a key moved between members");
        }
    }
    assert_eq!(plain.lock().len(), 300, "a plain subscriber sees everything");
}

#[test]
fn concurrency_runs_handlers_in_parallel_and_keeps_order_per_key() {
    let bus = EventBus::from_builder(Director::builder()).unwrap();
    let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let order: Arc<Mutex<BTreeMap<String, Vec<u32>>>> = Arc::default();
    let (f, pk, o) = (in_flight.clone(), peak.clone(), order.clone());
    let sub = bus
        .on(
            "work",
            move |e: &Event| {
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                pk.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                let key = String::from_utf8(e.key().unwrap().to_vec()).unwrap();
                let seq: u32 = std::str::from_utf8(e.payload()).unwrap().parse().unwrap();
                o.lock().entry(key).or_default().push(seq);
                f.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            },
            SubscribeOptions::default().concurrency(4),
        )
        .unwrap();
    for seq in 0..40u32 {
        for k in 0..8 {
            bus.emit_message(Message::new("work", seq.to_string()).key(format!("key-{k}"))).unwrap();
        }
    }
    settle(bus.director(), sub.uid());
    assert!(peak.load(Ordering::SeqCst) >= 2, "handlers never overlapped");
    let order = order.lock();
    assert_eq!(order.len(), 8);
    for (key, seqs) in order.iter() {
        assert_eq!(*seqs, (0..40).collect::<Vec<_>>(), "order broken for {key}");
    }
}

/// Emits `n` numbered events from another thread while `off` runs.
fn emit_in_background(
    bus: &Arc<EventBus>,
    n: u32,
    started: &Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    let (bus, started) = (bus.clone(), started.clone());
    std::thread::spawn(move || {
        for i in 0..n {
            bus.emit("flow", i.to_string()).unwrap();
            started.store(i as usize + 1, Ordering::SeqCst);
        }
    })
}

fn seqs(seen: &Seen) -> Vec<u32> {
    seen.lock().iter().map(|e| std::str::from_utf8(e.payload()).unwrap().parse().unwrap()).collect()
}

#[test]
fn off_during_traffic_loses_nothing_in_a_group() {
    let bus = Arc::new(EventBus::from_builder(Director::builder()).unwrap());
    let (a, b) = (Seen::default(), Seen::default());
    let sa = bus.on("flow", recorder(&a), SubscribeOptions::default().group("g")).unwrap();
    let sb = bus.on("flow", recorder(&b), SubscribeOptions::default().group("g")).unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let emitter = emit_in_background(&bus, 20_000, &sent);
    wait_for("traffic", || sent.load(Ordering::SeqCst) > 2_000);
    let last = bus.off(&sa).unwrap();
    assert!(last.balanced(), "{last:?}");
    assert!(last.delivered > 0);
    emitter.join().unwrap();
    settle(bus.director(), sb.uid());
    // Every event reaches the group exactly once, including those emitted
    // while `off` ran (the leaving member's pending events go to the other
    // member, and an event routed to it after it stopped is re-routed).
    let mut count = vec![0u32; 20_000];
    for s in seqs(&a).into_iter().chain(seqs(&b)) {
        count[s as usize] += 1;
    }
    let wrong: Vec<(u32, u32)> =
        (0..20_000).filter(|&i| count[i as usize] != 1).map(|i| (i, count[i as usize])).collect();
    assert!(wrong.is_empty(), "(event, times handled) not exactly once: {wrong:?}");
    assert_eq!(bus.stats(&sa), Err(Error::UnknownNode(sa.uid().to_owned())));
    assert_eq!(bus.off(&sa), Err(Error::UnknownNode(sa.uid().to_owned())));
}

#[test]
fn off_during_traffic_drains_what_was_accepted() {
    let dropped: Arc<Mutex<Vec<u32>>> = Arc::default();
    let d = dropped.clone();
    let builder = Director::builder().on_drop(move |r| {
        d.lock().push(std::str::from_utf8(r.event.payload()).unwrap().parse().unwrap());
    });
    let bus = Arc::new(EventBus::from_builder(builder).unwrap());
    let seen = Seen::default();
    let sub = bus.on("flow", recorder(&seen), SubscribeOptions::default()).unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let emitter = emit_in_background(&bus, 50_000, &sent);
    wait_for("traffic", || sent.load(Ordering::SeqCst) > 5_000);
    let before_off = sent.load(Ordering::SeqCst);
    let last = bus.off(&sub).unwrap();
    emitter.join().unwrap();
    assert!(last.balanced(), "accepted = delivered + dropped + dead_lettered + pending: {last:?}");
    // Every event accepted before off was called was handled, in order.
    let got = seqs(&seen);
    assert!(got.len() >= before_off, "{} handled, {before_off} sent before off", got.len());
    assert_eq!(got, (0..got.len() as u32).collect::<Vec<_>>(), "a gap: an accepted event was lost");
    // Whatever was still pending at removal was reported as dropped: handled
    // and dropped together are exactly the events the node ever accepted.
    let mut all: Vec<u32> = got.iter().copied().chain(dropped.lock().iter().copied()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..all.len() as u32).collect::<Vec<_>>(), "lost or duplicated across removal");
}

#[test]
fn a_bus_shares_its_director_with_plain_nodes() {
    let director = Director::new().unwrap();
    let log = Log::new();
    director.register_with("plain", log.node(), NodeOptions::default().topic("orders.*")).unwrap();
    let bus = EventBus::new(director.clone());
    let seen = Seen::default();
    let sub = bus.on("orders.*", recorder(&seen), SubscribeOptions::default()).unwrap();
    bus.emit("orders.created", "1").unwrap();
    director.emit(Message::new("orders.paid", "2")).unwrap();
    settle(&director, sub.uid());
    settle(&director, "plain");
    assert_eq!(topics(&seen), ["orders.created", "orders.paid"]);
    assert_eq!(log.user_topics(), ["orders.created", "orders.paid"]);
    assert_eq!(bus.close(Duration::from_secs(1)).unwrap(), 0);
    assert_eq!(director.nodes(), ["plain"], "closing the bus ends only its own nodes");
    assert!(!director.is_closed());
    let refused = bus.emit("orders.x", "");
    assert_eq!(refused, Err(Error::Closed));
    // The director is open: the text must not say only that it is closed.
    assert_eq!(refused.unwrap_err().to_string(), "director or bus is closed");
    // A second bus on the same director gets fresh uids.
    let again = EventBus::new(director.clone());
    let s2 = again.on("x", recorder(&seen), SubscribeOptions::default()).unwrap();
    assert_ne!(s2.uid(), sub.uid());
    drop(again);
    assert_eq!(director.nodes(), ["plain"], "dropping a sharing bus ends its subscriptions");
}

#[test]
fn bad_options_are_refused_and_register_nothing() {
    let bus = EventBus::from_builder(Director::builder()).unwrap();
    let ok = |e: &Event| -> Result<(), NodeError> {
        let _ = e;
        Ok(())
    };
    let d = SubscribeOptions::default;
    let retry = |r: Retry| d().retry(r);
    let cases = [
        ("t", d().concurrency(0)),
        ("t", d().concurrency(65)),
        ("t", d().buffer(0)),
        ("t", d().concurrency(4).buffer(2)),
        ("t", d().group("")),
        ("a.>.b", d()),
        ("", d()),
        ("t", retry(Retry { multiplier: 0.5, ..Retry::default() })),
        ("t", retry(Retry { jitter: 2.0, ..Retry::default() })),
        ("t", retry(Retry { max_delay: Duration::ZERO, ..Retry::default() })),
    ];
    for (topic, opts) in cases {
        let shown = format!("{topic:?} {opts:?}");
        match bus.on(topic, ok, opts) {
            Err(Error::InvalidArgument(why)) => assert!(!why.is_empty()),
            other => panic!("{shown} was not refused: {other:?}"),
        }
    }
    assert!(bus.director().nodes().is_empty());
    assert!(bus.subscriptions().is_empty());
    let sub = bus.on("t", ok, d().concurrency(64).buffer(64)).unwrap();
    assert_eq!(bus.subscriptions(), [sub]);
    bus.close(Duration::from_secs(1)).unwrap();
    assert!(matches!(bus.on("t", ok, d()), Err(Error::Closed)));
    assert_eq!(bus.close(Duration::from_secs(1)), Err(Error::Closed));
}

#[test]
fn off_from_inside_its_own_handler_does_not_wait() {
    let bus = Arc::new(EventBus::from_builder(Director::builder()).unwrap());
    let slot: Arc<Mutex<Option<chronica::Subscription>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let (b, s, dn) = (Arc::downgrade(&bus), slot.clone(), done.clone());
    let sub = bus
        .on(
            "t",
            move |_: &Event| {
                let (Some(bus), Some(sub)) = (b.upgrade(), s.lock().clone()) else { return Ok(()) };
                let t = std::time::Instant::now();
                bus.off(&sub).unwrap();
                assert!(t.elapsed() < Duration::from_secs(2));
                dn.store(true, Ordering::SeqCst);
                Ok(())
            },
            SubscribeOptions::default(),
        )
        .unwrap();
    *slot.lock() = Some(sub);
    bus.emit("t", "").unwrap();
    wait_for("off from the handler", || done.load(Ordering::SeqCst));
    assert!(bus.subscriptions().is_empty());
    let seen: HashSet<String> = bus.director().nodes().into_iter().collect();
    assert!(seen.is_empty());
}

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
