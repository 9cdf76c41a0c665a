//! SPEC 2.7: registration at any time with the current-state pull,
//! membership notices, unregister with hand-off to the group.

mod common;
use common::*;

use chronica::{
    Batch, Director, Error, Message, NodeError, NodeOptions, NODE_JOINED, NODE_LEFT, PULL_CURRENT_STATE,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn newcomer_first_receives_the_sorted_peer_list_and_token() {
    let d = Director::builder().trust_token("tok").build().unwrap();
    d.register("zed", sink).unwrap();
    d.register("alpha", sink).unwrap();
    let log = Log::new();
    d.register("mid", log.node()).unwrap();
    d.emit(Message::new("t", "")).unwrap();
    settle(&d, "mid");
    let first = log.events.lock()[0].clone();
    let root = first.as_root().expect("first event is a root event");
    assert_eq!(root.action(), PULL_CURRENT_STATE);
    assert_eq!(root.trust_token(), "tok");
    let v: serde_json::Value = first.json().unwrap();
    assert_eq!(v, serde_json::json!({"peers": ["alpha", "zed"]}));
}

/// A pull delivered late still names the peers of its registration: the
/// node registers disconnected, others join and leave, and only then does
/// it connect and take the pull, whose payload is made at that point from
/// the snapshot its registration kept (see `director/peers.rs`). Its id
/// is the one given at registration, between the events emitted around it.
#[test]
fn a_pull_delivered_late_names_the_peers_at_its_registration() {
    let d = Director::builder().trust_token("tok").build().unwrap();
    d.register("zed", sink).unwrap();
    d.register("alpha", sink).unwrap();
    let before = d.emit(Message::new("t", "")).unwrap();
    let log = Log::new();
    d.register_with("mid", log.node(), NodeOptions::default().connected(false)).unwrap();
    let after = d.emit(Message::new("t", "")).unwrap();
    d.register("beta", sink).unwrap();
    d.unregister("zed").unwrap();
    d.register("aaa", sink).unwrap();
    d.node_connected("mid").unwrap();
    settle(&d, "mid");
    let first = log.events.lock()[0].clone();
    assert_eq!(first.as_root().expect("a root event").action(), PULL_CURRENT_STATE);
    assert_eq!(first.as_root().unwrap().trust_token(), "tok");
    assert_eq!(&first.payload()[..], br#"{"peers":["alpha","zed"]}"#);
    assert!(before < first.id() && first.id() < after, "{before} < {} < {after}", first.id());
}

/// The pull of a node unregistered before it ever delivered is reported
/// dropped with the payload it would have had: its peers at registration.
#[test]
fn an_undelivered_pull_is_reported_with_its_peers() {
    let dropped = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = dropped.clone();
    let d = Director::builder()
        .on_drop(move |r| seen.lock().push((r.event.topic().to_owned(), r.event.payload().clone())))
        .build()
        .unwrap();
    d.register("b", sink).unwrap();
    d.register_with("late", sink, NodeOptions::default().connected(false)).unwrap();
    d.register("a", sink).unwrap();
    settle(&d, "b"); // its own pull delivered, not dropped
    d.unregister("b").unwrap();
    d.unregister("late").unwrap();
    let want = (PULL_CURRENT_STATE.to_owned(), bytes::Bytes::from_static(br#"{"peers":["b"]}"#));
    assert_eq!(*dropped.lock(), [want]);
}

#[test]
fn membership_events_announce_joins_and_leaves() {
    let d = Director::builder().membership_events(true).build().unwrap();
    let log = Log::new();
    d.register("a", log.node()).unwrap();
    d.register("b", sink).unwrap();
    d.unregister("b").unwrap();
    settle(&d, "a");
    let roots: Vec<(String, serde_json::Value)> =
        log.roots().iter().map(|e| (e.topic().to_owned(), e.json().unwrap())).collect();
    assert_eq!(roots[1], (NODE_JOINED.to_owned(), serde_json::json!({"uid": "b"})));
    assert_eq!(roots[2], (NODE_LEFT.to_owned(), serde_json::json!({"uid": "b"})));
}

#[test]
fn membership_events_are_off_by_default() {
    let d = Director::new().unwrap();
    let log = Log::new();
    d.register("a", log.node()).unwrap();
    d.register("b", sink).unwrap();
    d.unregister("b").unwrap();
    settle(&d, "a");
    assert_eq!(log.roots().len(), 1);
}

#[test]
fn unregister_waits_for_the_destructor_and_frees_the_uid() {
    struct Dropper(Arc<AtomicUsize>);
    impl Drop for Dropper {
        fn drop(&mut self) {
            std::thread::sleep(Duration::from_millis(20));
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = Director::new().unwrap();
    let guard = Dropper(dropped.clone());
    d.register("n", move |_: &Batch| -> Result<(), NodeError> {
        let _keep = &guard;
        Ok(())
    })
    .unwrap();
    d.unregister("n").unwrap();
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "destructor ran before unregister returned");
    assert_eq!(d.stats("n"), Err(Error::UnknownNode("n".into())));
    assert_eq!(d.unregister("n"), Err(Error::UnknownNode("n".into())));
    d.register("n", sink).unwrap();
}

/// `unregister_no_wait` returns while the node's callback is still
/// running (it may be waiting for the caller's thread): the uid is free
/// at once, the node gets nothing more, and its destructor and the
/// hand-off of what it held run right after that callback returns.
#[test]
fn unregister_no_wait_returns_before_the_callback_in_flight_ends() {
    struct Dropper(Arc<AtomicUsize>);
    impl Drop for Dropper {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let reported = Arc::new(AtomicUsize::new(0));
    let r = reported.clone();
    let d = Director::builder()
        .on_drop(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (entered_tx, released) = (parking_lot::Mutex::new(entered_tx), parking_lot::Mutex::new(released));
    let guard = Dropper(dropped.clone());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    d.register("n", move |b: &Batch| -> Result<(), NodeError> {
        let _keep = &guard;
        if !b.is_root() {
            c.fetch_add(1, Ordering::SeqCst);
            entered_tx.lock().send(()).unwrap();
            released.lock().recv().unwrap();
        }
        Ok(())
    })
    .unwrap();
    d.emit(Message::new("t", "1")).unwrap();
    entered.recv_timeout(Duration::from_secs(10)).unwrap();
    d.emit(Message::new("t", "2")).unwrap();
    d.unregister_no_wait("n").unwrap();
    assert_eq!(d.stats("n"), Err(Error::UnknownNode("n".into())));
    assert_eq!(d.unregister_no_wait("n"), Err(Error::UnknownNode("n".into())));
    assert_eq!(dropped.load(Ordering::SeqCst), 0, "the callback in flight still holds the node");
    d.register("n", sink).unwrap();
    release.send(()).unwrap();
    wait_for("the destructor", || dropped.load(Ordering::SeqCst) == 1);
    wait_for("the held event to be reported", || reported.load(Ordering::SeqCst) == 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no callback after the one in flight");
    assert_eq!(d.close(Duration::from_secs(5)), Ok(0));
}

#[test]
fn pending_events_go_to_another_group_member() {
    let d = Director::new().unwrap();
    let (a, b) = (Log::new(), Log::new());
    d.register_with("a", a.node(), NodeOptions::default().group("g").connected(false)).unwrap();
    d.register_with("b", b.node(), NodeOptions::default().group("g").connected(false)).unwrap();
    // Keyed events land on fixed members; send enough that "a" holds some.
    let ids: Vec<u64> =
        (0..20).map(|i| d.emit(Message::new("t", "").key(format!("k{i}"))).unwrap()).collect();
    let held_by_a = d.stats("a").unwrap().pending - 1;
    assert!(held_by_a > 0);
    d.unregister("a").unwrap();
    connect_and_expect_exactly(&d, "b", &b, &ids);
}

/// The member that takes a leaver's events is picked by the broadcast
/// rule, which never picks an event's source: a member that emitted the
/// events the leaver held does not get them back (keyed or not).
#[test]
fn a_hand_off_never_returns_an_event_to_its_source() {
    let dropped = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = dropped.clone();
    let d = Director::builder()
        .on_drop(move |x| seen.lock().unwrap().push((x.uid.to_owned(), x.event.is_root())))
        .build()
        .unwrap();
    let (a, b, c) = (Log::new(), Log::new(), Log::new());
    d.register_with("a", a.node(), NodeOptions::default().group("g")).unwrap();
    d.register_with("b", b.node(), NodeOptions::default().group("g").connected(false)).unwrap();
    // From "a", so "b" (disconnected, holding) takes every one.
    let ids: Vec<u64> = (0..10)
        .map(|i| {
            let m = Message::new("t", "").source("a");
            d.emit(if i % 2 == 0 { m.key(format!("k{i}")) } else { m }).unwrap()
        })
        .collect();
    assert_eq!(d.stats("b").unwrap().pending, 11, "the pull and the ten events");
    d.register_with("c", c.node(), NodeOptions::default().group("g").connected(false)).unwrap();
    d.unregister("b").unwrap();
    connect_and_expect_exactly(&d, "c", &c, &ids);
    assert!(a.user_ids().is_empty(), "the source got its own events back: {:?}", a.user_ids());
    // With no member but the source left, they are dropped and counted.
    // "c" holds what it gets: connected, it could deliver the event below
    // before its unregister (it did whenever the unregister came more than
    // its worker's 1 ms flush window after the emit: a flaky test).
    d.node_disconnected("c").unwrap();
    d.register_with("e", sink, NodeOptions::default().group("g").connected(false)).unwrap();
    d.emit(Message::new("t", "").source("a")).unwrap();
    d.unregister("c").unwrap();
    d.unregister("e").unwrap();
    // b's pull was never delivered: a leaver's root events are dropped.
    let drops = [("b", true), ("e", false), ("e", true)].map(|(u, root)| (u.to_owned(), root));
    assert_eq!(*dropped.lock().unwrap(), drops, "b's pull, then e's event and pull");
    assert!(a.user_ids().is_empty());
}

#[test]
fn pending_events_without_a_group_are_dropped_and_reported() {
    let reported = Arc::new(AtomicUsize::new(0));
    let r = reported.clone();
    let d = Director::builder()
        .on_drop(move |x| {
            assert_eq!(x.reason, chronica::DropReason::Unregistered);
            r.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    d.register_with("n", sink, NodeOptions::default().connected(false)).unwrap();
    d.emit(Message::new("t", "")).unwrap();
    d.emit(Message::new("t", "")).unwrap();
    d.unregister("n").unwrap();
    assert_eq!(reported.load(Ordering::SeqCst), 3, "two user events and the pull event");
}

#[test]
fn concurrent_register_while_emitting_never_crashes() {
    let d = Director::new().unwrap();
    d.register("stable", sink).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let emitters: Vec<_> = (0..3)
        .map(|t| {
            let (d, stop) = (d.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let msg = Message::new("t", "").source("stable");
                    d.emit(msg).unwrap();
                    // Unicast to nodes that come and go: only UnknownNode may fail.
                    match d.emit_to(&format!("n{}", n % 10), Message::new("t", "")) {
                        Ok(_) | Err(Error::UnknownNode(_)) => {}
                        Err(e) => panic!("thread {t}: {e}"),
                    }
                    n += 1;
                }
            })
        })
        .collect();
    for round in 0..30 {
        for i in 0..10 {
            d.register(&format!("n{i}"), sink).unwrap();
        }
        for i in 0..10 {
            if (i + round) % 2 == 0 {
                d.unregister(&format!("n{i}")).unwrap();
            }
        }
        for i in 0..10 {
            let _ = d.unregister(&format!("n{i}"));
        }
    }
    stop.store(true, Ordering::SeqCst);
    emitters.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(d.nodes(), ["stable"]);
    settle(&d, "stable");
}

/// Two members of a group leave at once while one holds a backlog: each
/// event the leaver hands on reaches the other member or, that one leaving
/// too, is reported dropped; none vanishes. (The hand-off once pushed into
/// a member that had just closed its lanes and ignored the refusal.)
#[test]
fn a_hand_off_to_a_member_that_is_leaving_too_loses_nothing() {
    const N: u64 = 60_000;
    for pause_us in (0..40).map(|i| i * i * 10) {
        let reported = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let r = reported.clone();
        let d = Director::builder()
            .on_drop(move |rep: &chronica::DropReport<'_>| {
                if !rep.event.is_root() {
                    r.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build()
            .unwrap();
        for uid in ["a", "b"] {
            let opts = NodeOptions::default().group("g").connected(false);
            d.register_with(uid, |_: &Batch| -> Result<(), NodeError> { Ok(()) }, opts).unwrap();
        }
        for _ in 0..N {
            d.emit_to("a", Message::new("t", "x")).unwrap();
        }
        let leaving = {
            let d = d.clone();
            std::thread::spawn(move || d.unregister("a").unwrap())
        };
        std::thread::sleep(Duration::from_micros(pause_us));
        d.unregister("b").unwrap();
        leaving.join().unwrap();
        assert_eq!(
            reported.load(Ordering::Relaxed),
            N,
            "pause {pause_us} us: events vanished in the hand-off"
        );
        d.close(Duration::from_secs(5)).unwrap();
    }
}

/// The pull is the newcomer's first delivery even when its root lane
/// overflows before it runs: `drop_oldest` evicts the next oldest.
#[test]
fn a_full_root_lane_never_evicts_the_pull() {
    let d = Director::builder().root_capacity(2).build().unwrap();
    let log = Log::new();
    d.register_with("late", log.node(), NodeOptions::default().connected(false)).unwrap();
    for i in 0..4 {
        d.emit_root(&format!("r{i}"), "").unwrap();
    }
    d.node_connected("late").unwrap();
    let s = settle(&d, "late");
    let topics = log.topics();
    assert_eq!(topics[0], PULL_CURRENT_STATE, "delivered: {topics:?}");
    // The notice is pinned behind the pull, ahead of what waits.
    assert_eq!(topics[1], chronica::LAGGED, "delivered: {topics:?}");
    assert_eq!(topics[2], "r3", "the newest survives beside the pull: {topics:?}");
    // The lag notice counts as accepted and delivered, like any event.
    assert_eq!((s.accepted, s.delivered, s.dropped, s.pending), (6, 3, 3, 0));
}

/// SPEC 2.7: every observer sees membership notices in the order of the
/// changes. "x" is unregistered while its callback is still running, and
/// re-registered before that callback returns: the old registration's
/// `node_left` must still come before the new one's `node_joined` (it
/// was sent only after the last callback, so it came second).
#[test]
fn a_re_registration_never_overtakes_the_notice_of_the_leave() {
    let d = Director::builder().membership_events(true).build().unwrap();
    let observer = Log::new();
    d.register("obs", observer.node()).unwrap();
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = parking_lot::Mutex::new(release_rx);
    d.register("x", move |_: &Batch| -> Result<(), NodeError> {
        // Holds its first callback (the pull) until the test lets go.
        let _ = entered_tx.send(());
        let _ = release_rx.lock().recv();
        Ok(())
    })
    .unwrap();
    entered.recv().unwrap();
    let leaving = {
        let d = d.clone();
        std::thread::spawn(move || d.unregister("x").unwrap())
    };
    // The uid is free as soon as the unregister took "x" out of the routes.
    loop {
        match d.register("x", sink) {
            Ok(()) => break,
            Err(Error::DuplicateNode(_)) => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
    release.send(()).unwrap();
    leaving.join().unwrap();
    settle(&d, "obs");
    let notices: Vec<(String, serde_json::Value)> = observer
        .roots()
        .iter()
        .filter(|e| e.topic() != PULL_CURRENT_STATE)
        .map(|e| (e.topic().to_owned(), e.json().unwrap()))
        .collect();
    let notice = |action: &str| (action.to_owned(), serde_json::json!({"uid": "x"}));
    assert_eq!(notices, [notice(NODE_JOINED), notice(NODE_LEFT), notice(NODE_JOINED)]);
}

/// `register_shared` (the C and Python layers' form) takes the only strong
/// reference: once registered, the node is dropped inside the unregister
/// that ends it, and a refusal hands it back as the only reference, never
/// called.
#[test]
fn a_shared_node_is_dropped_by_its_unregister_or_handed_back() {
    let d = Director::new().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let node: Arc<dyn chronica::Node> = Arc::new(move |_: &Batch| -> Result<(), NodeError> {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let ours = Arc::downgrade(&node);
    d.register_shared("n", node, NodeOptions::default()).unwrap();
    let refused = d.register_shared("n", Arc::new(sink), NodeOptions::default()).unwrap_err();
    assert_eq!(refused.error, Error::DuplicateNode("n".into()));
    assert_eq!(Arc::strong_count(&refused.node), 1);
    settle(&d, "n");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the pull");
    d.unregister("n").unwrap();
    assert!(ours.upgrade().is_none(), "the node outlived its unregister");
}
