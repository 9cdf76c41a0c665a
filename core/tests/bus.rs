//! The EventBus facade (issue 5): wildcard topics, consumer groups,
//! concurrency with per-key order, `off` during traffic, a shared director,
//! refused options, and `off` from inside its own handler (the handlers'
//! lifetime and the races are in `bus_lifetime.rs`).

mod common;
use common::*;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronica::{Director, Error, Event, EventBus, Message, NodeError, NodeOptions, Retry, SubscribeOptions};
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
    // Seven keys over four lanes: with a key count the concurrency divides,
    // choosing lanes round-robin would also keep each key on one lane, and
    // the test could not tell it from hashing the key.
    for seq in 0..40u32 {
        for k in 0..7 {
            bus.emit_message(Message::new("work", seq.to_string()).key(format!("key-{k}"))).unwrap();
        }
    }
    settle(bus.director(), sub.uid());
    assert!(peak.load(Ordering::SeqCst) >= 2, "handlers never overlapped");
    let order = order.lock();
    assert_eq!(order.len(), 7);
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
    // Over the engine's limit: the refusal names the option, not the
    // engine's `queue_capacity`.
    match bus.on("t", ok, d().buffer(chronica::MAX_CAPACITY + 1)) {
        Err(Error::InvalidArgument(why)) => assert!(why.starts_with("buffer"), "{why}"),
        other => panic!("an oversized buffer was not refused: {other:?}"),
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

/// `off` takes its subscription out of the routes at once and then drains
/// what it holds: what is emitted meanwhile reaches the other subscribers
/// (the other member of its group, and a plain subscriber), exactly once,
/// and never the leaving one. The subscription used to stay routed until
/// its drain was over, taking (and handing on or dropping) the new events.
#[test]
fn events_emitted_while_an_off_drains_reach_only_the_others() {
    let bus = Arc::new(EventBus::new(Director::new().unwrap()));
    let (leaving, member, plain) = (Seen::default(), Seen::default(), Seen::default());
    let hold = Arc::new(AtomicBool::new(true));
    let (seen, h) = (leaving.clone(), hold.clone());
    let held = move |e: &Event| -> Result<(), NodeError> {
        seen.lock().push(e.clone());
        while h.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    };
    let group = || SubscribeOptions::default().group("g");
    let sa = bus.on("t", held, group()).unwrap();
    let sb = bus.on("t", recorder(&member), group()).unwrap();
    let sc = bus.on("t", recorder(&plain), SubscribeOptions::default()).unwrap();
    // Round-robin over the group: the leaving member holds some of these,
    // its handler stuck in the first.
    let before: Vec<u64> = (0..20).map(|i| bus.emit("t", i.to_string()).unwrap()).collect();
    wait_for("the leaving member's handler", || !leaving.lock().is_empty());
    assert!(bus.stats(&sa).unwrap().pending > 1, "the leaving member holds events");
    let off = {
        let (bus, sa) = (bus.clone(), sa.clone());
        std::thread::spawn(move || bus.off_within(&sa, Duration::from_secs(60)))
    };
    let uid = sa.uid().to_owned();
    wait_for("the leaving member to leave the routes", || !bus.director().nodes().contains(&uid));
    let after: Vec<u64> = (0..50).map(|i| bus.emit("t", i.to_string()).unwrap()).collect();
    hold.store(false, Ordering::SeqCst);
    let last = off.join().unwrap().unwrap();
    settle_bus(&bus, &[&sb, &sc]);
    let ids = |s: &Seen| -> Vec<u64> { s.lock().iter().map(Event::id).collect() };
    let took = ids(&leaving);
    assert!(took.iter().all(|id| before.contains(id)), "an event emitted during the off reached it");
    // It left before its drain, which delivered everything it held.
    assert_eq!((last.delivered, last.dropped, last.pending), (took.len() as u64 + 1, 0, 0), "{last:?}");
    assert!(last.balanced(), "{last:?}");
    let mut group_got: Vec<u64> = took.into_iter().chain(ids(&member)).collect();
    group_got.sort_unstable();
    let all: Vec<u64> = before.iter().chain(&after).copied().collect();
    assert_eq!(group_got, all, "each event reached the group exactly once");
    assert_eq!(ids(&plain), all, "the plain subscriber got everything, in order");
    assert_eq!(bus.close(Duration::from_secs(5)), Ok(0));
}

/// An `off` from inside another subscription's handler does not wait
/// there (a callback of the director cannot wait for callbacks): it
/// returns at once with the counters of the moment, the subscription out
/// of the routes, and its drain goes on, bounded by the `off`'s timeout,
/// delivering what it held. It used to wait inside the handler, polling,
/// until the subscription had settled what it had accepted or the
/// timeout passed (here, while the subscription's own handler is held,
/// the whole 30 s).
#[test]
fn off_from_inside_another_handler_returns_at_once_and_the_drain_goes_on() {
    let bus = Arc::new(EventBus::new(Director::new().unwrap()));
    let (held, hold) = (Seen::default(), Arc::new(AtomicBool::new(true)));
    let (seen, h) = (held.clone(), hold.clone());
    let target = bus
        .on(
            "t",
            move |e: &Event| -> Result<(), NodeError> {
                seen.lock().push(e.clone());
                while h.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            },
            SubscribeOptions::default(),
        )
        .unwrap();
    let ids: Vec<u64> = (0..5).map(|i| bus.emit("t", i.to_string()).unwrap()).collect();
    wait_for("the target's handler", || !held.lock().is_empty());
    let outcome: Arc<Mutex<Option<chronica::Result<chronica::NodeStats>>>> = Arc::default();
    let (b, t, out) = (Arc::downgrade(&bus), target.clone(), outcome.clone());
    let ctl = bus
        .on(
            "ctl",
            move |_: &Event| -> Result<(), NodeError> {
                if let Some(bus) = b.upgrade() {
                    *out.lock() = Some(bus.off_within(&t, Duration::from_secs(30)));
                }
                Ok(())
            },
            SubscribeOptions::default(),
        )
        .unwrap();
    bus.emit("ctl", "").unwrap();
    wait_for("the off inside the other handler to return", || outcome.lock().is_some());
    let now = outcome.lock().take().unwrap().expect("the off ended the subscription");
    assert!(now.pending > 0, "it waited for the held handler: {now:?}");
    assert!(!bus.director().nodes().contains(&target.uid().to_owned()), "still routed");
    hold.store(false, Ordering::SeqCst);
    wait_for("the drain to deliver what it held", || held.lock().len() == ids.len());
    assert_eq!(held.lock().iter().map(Event::id).collect::<Vec<_>>(), ids);
    wait_for("the subscription to leave the bus", || bus.subscriptions().len() == 1);
    settle(bus.director(), ctl.uid());
    assert_eq!(bus.close(Duration::from_secs(5)), Ok(0));
}

/// A slow handler working through a batch, its subscription disconnected
/// while 40 events waited, so they come as one batch.
fn slow_batch(bus: &EventBus, handled: &Arc<AtomicUsize>) -> chronica::Subscription {
    let h = handled.clone();
    let sub = bus
        .on(
            "slow",
            move |_: &Event| {
                std::thread::sleep(Duration::from_millis(50));
                h.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
            SubscribeOptions::default(),
        )
        .unwrap();
    settle_bus(bus, &[&sub]);
    bus.director().node_disconnected(sub.uid()).unwrap();
    for _ in 0..40 {
        bus.emit("slow", "").unwrap();
    }
    bus.director().node_connected(sub.uid()).unwrap();
    sub
}

/// `off`'s timeout bounds the drain also inside a batch: a handler of one
/// event at a time stops at the deadline, and what is left is dropped (no
/// group to take it), not worked through for the batch's whole length.
#[test]
fn an_off_stops_a_handler_at_its_timeout_inside_a_batch() {
    let bus = EventBus::new(Director::new().unwrap());
    let handled = Arc::new(AtomicUsize::new(0));
    let sub = slow_batch(&bus, &handled);
    let s = bus.off_within(&sub, Duration::from_millis(150)).unwrap();
    let took = handled.load(Ordering::SeqCst) as u64;
    assert!(took < 20, "the handler went on past the deadline: {took} of 40");
    assert_eq!((s.delivered, s.dropped, s.pending), (1 + took, 40 - took, 0), "{s:?}");
    assert!(s.balanced());
}

/// A close of a bus that shares its director counts as left what its
/// subscriptions had not delivered when they stopped, not what was pending
/// before the handler's last call finished.
#[test]
fn a_bus_close_counts_only_what_its_subscriptions_left() {
    let director = Director::new().unwrap();
    let bus = EventBus::new(director.clone());
    let handled = Arc::new(AtomicUsize::new(0));
    let _sub = slow_batch(&bus, &handled);
    std::thread::sleep(Duration::from_millis(20));
    let left = bus.close(Duration::from_millis(150)).unwrap();
    let took = handled.load(Ordering::SeqCst) as u64;
    assert!(took < 20, "the handler went on past the deadline: {took} of 40");
    assert_eq!(left, 40 - took, "handled {took}");
    assert!(!director.is_closed());
}
