//! `emit_many`: the same deliveries as one `emit` per message, in the same
//! order, with runs stored whole; all or nothing under `block`; the other
//! policies applied per event when a run does not fit.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chronica::{Director, Error, Event, Message, NodeOptions, Overflow, LAGGED};
use common::{settle, sink, wait_for, Log};
use proptest::prelude::*;

const TOPICS: [&str; 4] = ["a.x", "a.y", "b", "c.x"];

fn text(e: &Event) -> String {
    String::from_utf8(e.payload().to_vec()).unwrap()
}

/// Nodes of every kind routing knows: patterns, two groups (one member
/// with two lanes), and a plain node that takes everything.
fn nodes() -> Vec<(&'static str, NodeOptions)> {
    vec![
        ("all", NodeOptions::default()),
        ("ax", NodeOptions::default().topic("a.*")),
        ("x", NodeOptions::default().topic("*.x").topic("b")),
        ("g1", NodeOptions::default().group("g")),
        ("g2", NodeOptions::default().group("g").concurrency(2)),
        ("h1", NodeOptions::default().group("h").topic("a.>")),
        ("h2", NodeOptions::default().group("h")),
    ]
}

/// A director with `nodes()`, each recording what it gets.
fn director() -> (Director, HashMap<&'static str, Log>) {
    let d = Director::builder().batch_size(5).build().unwrap();
    let mut logs = HashMap::new();
    for (uid, opts) in nodes() {
        let log = Log::new();
        d.register_with(uid, log.node(), opts).unwrap();
        logs.insert(uid, log);
    }
    (d, logs)
}

/// What node `uid` got, as (topic, payload), per key. A node with two
/// lanes keeps order per key only: its keyless events are sorted.
/// (topic, payload) of each event a node got, by key.
type ByKey = HashMap<Option<Vec<u8>>, Vec<(String, Vec<u8>)>>;

fn received(uid: &str, log: &Log) -> ByKey {
    let mut by_key: HashMap<_, Vec<_>> = HashMap::new();
    for e in log.events.lock().iter().filter(|e| !e.is_root()) {
        by_key
            .entry(e.key().map(<[u8]>::to_vec))
            .or_default()
            .push((e.topic().to_owned(), e.payload().to_vec()));
    }
    if uid == "g2" {
        by_key.entry(None).or_default().sort();
    }
    by_key.retain(|_, v| !v.is_empty());
    by_key
}

/// (topic, source, key) of each message; `source` indexes `nodes()`.
type Spec = (usize, Option<usize>, Option<u8>);

fn message(i: usize, &(topic, source, key): &Spec) -> Message<'static> {
    let mut m = Message::new(TOPICS[topic], format!("m{i}"));
    if let Some(s) = source {
        m = m.source(nodes()[s].0);
    }
    if let Some(k) = key {
        m = m.key(vec![k]);
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// One `emit_many` delivers what the same messages sent by one `emit`
    /// each deliver, node by node and key by key, in the same order; its
    /// ids are consecutive and in message order.
    #[test]
    fn emit_many_delivers_what_emits_deliver(
        specs in prop::collection::vec((0..TOPICS.len(), prop::option::of(0..7usize), prop::option::of(0..3u8)), 0..40),
        cut in 0..40usize,
    ) {
        let (one, one_logs) = director();
        for (i, s) in specs.iter().enumerate() {
            one.emit(message(i, s)).unwrap();
        }
        let (many, many_logs) = director();
        // Two calls, cut anywhere, so runs meet runs in the lanes.
        let cut = cut.min(specs.len());
        let first = many.emit_many(specs[..cut].iter().enumerate().map(|(i, s)| message(i, s))).unwrap();
        let second = many.emit_many(specs[cut..].iter().enumerate().map(|(i, s)| message(cut + i, s))).unwrap();
        prop_assert_eq!(first.end - first.start, cut as u64);
        prop_assert_eq!(second.end - second.start, (specs.len() - cut) as u64);
        prop_assert!(cut == specs.len() || cut == 0 || second.start >= first.end);
        for (uid, _) in nodes() {
            let (a, b) = (settle(&one, uid), settle(&many, uid));
            prop_assert_eq!(a.accepted, b.accepted, "{} accepted", uid);
            prop_assert_eq!(received(uid, &one_logs[uid]), received(uid, &many_logs[uid]), "{} received", uid);
        }
    }
}

/// Ids are consecutive, in message order, and each event says which.
#[test]
fn ids_are_consecutive_in_message_order() {
    let d = Director::new().unwrap();
    let log = Log::new();
    d.register("n", log.node()).unwrap();
    let ids = d.emit_many((0..10).map(|i| Message::new("t", format!("{i}")))).unwrap();
    assert_eq!(ids.end - ids.start, 10);
    settle(&d, "n");
    let got: Vec<(u64, Vec<u8>)> =
        log.events.lock().iter().filter(|e| !e.is_root()).map(|e| (e.id(), e.payload().to_vec())).collect();
    let want: Vec<(u64, Vec<u8>)> =
        ids.clone().zip(0..).map(|(id, i)| (id, format!("{i}").into_bytes())).collect();
    assert_eq!(got, want);
    assert!(d.emit_many(std::iter::empty()).unwrap().is_empty(), "nothing to emit is no error");
}

/// A run longer than the batch size is delivered in batches of at most
/// `batch_size`, in order, interleaved rightly with single emits.
#[test]
fn runs_are_cut_into_batches_in_order_among_single_emits() {
    let d = Director::builder().batch_size(4).build().unwrap();
    let log = Log::new();
    d.register_with("n", log.node(), NodeOptions::default().connected(false)).unwrap();
    d.emit(Message::new("t", "a")).unwrap();
    d.emit_many(["b", "c", "d", "e", "f", "g"].map(|p| Message::new("t", p))).unwrap();
    d.emit(Message::new("t", "h")).unwrap();
    d.emit_many(["i", "j"].map(|p| Message::new("t", p))).unwrap();
    d.node_connected("n").unwrap();
    let s = settle(&d, "n");
    let got: Vec<String> = log.events.lock().iter().filter(|e| !e.is_root()).map(|e| text(e)).collect();
    assert_eq!(got, ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]);
    assert!(log.batches.lock().iter().all(|&n| n <= 4), "{:?}", log.batches.lock());
    assert_eq!((s.accepted, s.delivered), (11, 11), "ten events and the pull");
}

/// An unknown source refuses the whole call; so does a closed director.
#[test]
fn an_unknown_source_or_a_closed_director_refuses_everything() {
    let d = Director::new().unwrap();
    let log = Log::new();
    d.register("n", log.node()).unwrap();
    let msgs = vec![Message::new("t", "1"), Message::new("t", "2").source("ghost")];
    assert_eq!(d.emit_many(msgs), Err(Error::UnknownNode("ghost".into())));
    assert_eq!(settle(&d, "n").accepted, 1, "only the pull");
    d.close(Duration::from_secs(1)).unwrap();
    assert_eq!(d.emit_many([Message::new("t", "1")]), Err(Error::Closed));
}

/// Under `block`: all or nothing. A run that cannot ever fit a node's
/// queue is refused; one that does not fit now waits, then fails having
/// accepted nothing anywhere.
#[test]
fn block_is_all_or_nothing() {
    let d = Director::builder()
        .overflow(Overflow::Block)
        .queue_capacity(4)
        .block_timeout(Duration::from_millis(30))
        .build()
        .unwrap();
    let (small, roomy) = (Log::new(), Log::new());
    d.register_with("small", small.node(), NodeOptions::default().connected(false)).unwrap();
    d.register_with("roomy", roomy.node(), NodeOptions::default().queue_capacity(100)).unwrap();
    let five = || (0..5).map(|i| Message::new("t", format!("{i}")));
    assert!(matches!(d.emit_many(five()), Err(Error::InvalidArgument(_))));
    d.emit_many((0..3).map(|i| Message::new("t", format!("{i}")))).unwrap();
    assert_eq!(d.emit_many((0..2).map(|_| Message::new("t", "late"))), Err(Error::QueueFull("small".into())));
    assert_eq!(d.stats("small").unwrap().accepted, 4, "three and the pull");
    assert_eq!(settle(&d, "roomy").accepted, 4, "the refused calls reached nobody");
    d.node_connected("small").unwrap();
    assert_eq!(settle(&d, "small").delivered, 4);
    assert_eq!(small.user_topics().len(), 3);
}

/// Under `drop_oldest` a run larger than the room left evicts the oldest
/// events, as the same emits would, and the node is told what it lost.
#[test]
fn drop_oldest_applies_per_event_when_a_run_does_not_fit() {
    let d = Director::builder().queue_capacity(4).build().unwrap();
    let log = Log::new();
    d.register_with("n", log.node(), NodeOptions::default().connected(false)).unwrap();
    let ids = d.emit_many((0..6).map(|i| Message::new("t", format!("{i}")))).unwrap();
    d.node_connected("n").unwrap();
    let s = settle(&d, "n");
    assert_eq!(s.dropped, 2);
    let got: Vec<u64> = log.user_ids();
    assert_eq!(got, (ids.start + 2..ids.end).collect::<Vec<_>>(), "the newest four");
    let lag: Vec<Arc<Event>> = log.roots().into_iter().filter(|e| e.topic() == LAGGED).collect();
    assert_eq!(lag.len(), 1);
    let want = format!(r#"{{"dropped":2,"first_id":{},"last_id":{}}}"#, ids.start, ids.start + 1);
    assert_eq!(text(&lag[0]), want);
}

/// A node that fails part-way through a batch borrowed from a run gets
/// the rest retried, in order, and a dead letter takes only what failed.
#[test]
fn retries_and_dead_letters_of_a_run_keep_order() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dead = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let dl = dead.clone();
    let d = Director::builder()
        .retry(chronica::RetryPolicy {
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            max_retries: Some(1),
            ..Default::default()
        })
        .on_dead_letter(move |info| dl.lock().extend(info.batch.iter().map(|e| text(e))))
        .build()
        .unwrap();
    let got = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, c) = (got.clone(), calls.clone());
    d.register_with(
        "n",
        move |b: &chronica::Batch| -> Result<(), chronica::NodeError> {
            let users: Vec<String> = b.iter().filter(|e| !e.is_root()).map(|e| text(e)).collect();
            if users.is_empty() {
                return Ok(());
            }
            // The first call takes two and fails on the rest; "x" always fails.
            let first = c.fetch_add(1, Ordering::SeqCst) == 0;
            let take = if first { 2 } else { users.iter().position(|p| p == "x").unwrap_or(users.len()) };
            g.lock().extend(users[..take].iter().cloned());
            if take < users.len() {
                let offset = b.len() - users.len();
                return Err(chronica::NodeError::new("partial")
                    .with_delivered(offset + take)
                    .of_next_event());
            }
            Ok(())
        },
        NodeOptions::default().connected(false),
    )
    .unwrap();
    d.emit_many(["a", "b", "c", "x", "d"].map(|p| Message::new("t", p))).unwrap();
    d.node_connected("n").unwrap();
    wait_for("the run to settle", || d.stats("n").unwrap().pending == 0);
    assert_eq!(*got.lock(), ["a", "b", "c", "d"]);
    assert_eq!(*dead.lock(), ["x"]);
    let s = d.stats("n").unwrap();
    assert!(s.balanced(), "{s:?}");
    assert_eq!(s.dead_lettered, 1);
}

/// A group member that leaves with a run waiting, part of it held for a
/// retry and the rest not yet taken, hands all of it to another member,
/// in order.
#[test]
fn a_leaving_member_hands_its_run_on() {
    let d = Director::builder().batch_size(2).build().unwrap();
    let b = Log::new();
    let refuse_users = |batch: &chronica::Batch| match batch.is_root() {
        true => Ok(()),
        false => Err(chronica::NodeError::new("not now")),
    };
    d.register_with("a", refuse_users, NodeOptions::default().group("g")).unwrap();
    let ids = d.emit_many((0..6).map(|i| Message::new("t", format!("{i}")))).unwrap();
    wait_for("a's first batch to fail", || d.stats("a").unwrap().failures > 0);
    d.register_with("b", b.node(), NodeOptions::default().group("g").connected(false)).unwrap();
    d.unregister("a").unwrap();
    let want: Vec<u64> = ids.collect();
    common::connect_and_expect_exactly(&d, "b", &b, &want);
    assert_eq!(b.user_ids(), want, "in order");
}

/// A run is shared: every node's events are the same allocations, not
/// copies per node.
#[test]
fn a_run_is_shared_not_copied_per_node() {
    let d = Director::new().unwrap();
    let logs: Vec<Log> = (0..3).map(|_| Log::new()).collect();
    for (i, l) in logs.iter().enumerate() {
        d.register(&format!("n{i}"), l.node()).unwrap();
    }
    d.register("src", sink).unwrap();
    d.emit_many((0..50).map(|i| Message::new("t", format!("{i}")).source("src"))).unwrap();
    for i in 0..3 {
        settle(&d, &format!("n{i}"));
    }
    let events =
        |l: &Log| -> Vec<Arc<Event>> { l.events.lock().iter().filter(|e| !e.is_root()).cloned().collect() };
    let (first, rest) = (events(&logs[0]), [events(&logs[1]), events(&logs[2])]);
    assert_eq!(first.len(), 50);
    for other in rest {
        assert!(first.iter().zip(&other).all(|(x, y)| Arc::ptr_eq(x, y)), "one event per message");
        assert_eq!(other.len(), 50);
    }
}
