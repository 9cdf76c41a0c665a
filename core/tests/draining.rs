//! `Director::unregister_draining`: the node leaves the routes at once,
//! delivers what it holds until a deadline, then leaves like `unregister`,
//! and its final counters come back.

mod common;
use common::*;

use chronica::{Batch, Director, DropReason, Message, NodeError, NodeOptions, RetryPolicy};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A recording node that waits inside its callback while `hold` is set.
fn held_node(log: &Log, hold: &Arc<AtomicBool>) -> impl Fn(&Batch) -> Result<(), NodeError> + Send + Sync {
    let (record, hold) = (log.node(), hold.clone());
    move |b: &Batch| {
        while hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        record(b)
    }
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..Default::default()
    }
}

#[test]
fn what_the_node_held_is_delivered_and_nothing_new_reaches_it() {
    let d = Director::new().unwrap();
    let (log, hold) = (Log::new(), Arc::new(AtomicBool::new(true)));
    d.register("n", held_node(&log, &hold)).unwrap();
    // The pull event holds the callback; these wait in the lane.
    let ids: Vec<u64> = (0..100).map(|i| d.emit(Message::new("t", format!("{i}"))).unwrap()).collect();
    let dd = d.clone();
    let drain = std::thread::spawn(move || dd.unregister_draining("n", Duration::from_secs(60)));
    wait_for("n to leave the routes", || d.nodes().is_empty());
    // The uid is free at once, and what is emitted now reaches the new node.
    let newcomer = Log::new();
    d.register("n", newcomer.node()).unwrap();
    let later = d.emit_to("n", Message::new("later", "")).unwrap();
    hold.store(false, Ordering::SeqCst);
    let last = drain.join().unwrap().unwrap();
    assert_eq!(log.user_ids(), ids, "every held event, in order");
    assert_eq!((last.accepted, last.delivered, last.dropped, last.pending), (101, 101, 0, 0), "{last:?}");
    assert!(last.balanced());
    settle(&d, "n");
    assert_eq!(newcomer.user_ids(), [later]);
    assert_eq!(d.close(Duration::from_secs(5)), Ok(0));
}

#[test]
fn at_the_deadline_what_is_left_goes_to_the_group() {
    let d = Director::new().unwrap();
    let (a, b) = (Log::new(), Log::new());
    a.fail.store(true, Ordering::SeqCst);
    d.register_with("a", a.node(), NodeOptions::default().group("g").retry(quick_retry())).unwrap();
    d.register_with("b", b.node(), NodeOptions::default().group("g").connected(false)).unwrap();
    let ids: Vec<u64> =
        (0..20).map(|i| d.emit(Message::new("t", "").key(format!("k{i}"))).unwrap()).collect();
    let held_by_a = d.stats("a").unwrap().pending - 1;
    assert!(held_by_a > 0);
    let last = d.unregister_draining("a", Duration::from_millis(300)).unwrap();
    assert!(last.failures > 0, "a kept retrying during the drain: {last:?}");
    assert_eq!(last.delivered, 0);
    assert_eq!(last.dropped, held_by_a + 1, "the held events and the pull, handed on or dropped: {last:?}");
    assert_eq!(last.pending, 0);
    assert!(last.balanced());
    connect_and_expect_exactly(&d, "b", &b, &ids);
}

#[test]
fn a_disconnected_node_ends_its_drain_at_once() {
    let reported = Arc::new(AtomicUsize::new(0));
    let r = reported.clone();
    let d = Director::builder()
        .on_drop(move |x| {
            assert_eq!(x.reason, DropReason::Unregistered);
            r.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    d.register_with("n", sink, NodeOptions::default().connected(false)).unwrap();
    for _ in 0..5 {
        d.emit(Message::new("t", "")).unwrap();
    }
    let started = Instant::now();
    let last = d.unregister_draining("n", Duration::from_secs(60)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "it waited for a node that cannot deliver");
    assert_eq!((last.accepted, last.delivered, last.dropped, last.pending), (6, 0, 6, 0), "{last:?}");
    assert_eq!(reported.load(Ordering::SeqCst), 6);
}

#[test]
fn from_inside_a_callback_it_returns_at_once_and_the_drain_goes_on() {
    let d = Director::new().unwrap();
    let (log, hold) = (Log::new(), Arc::new(AtomicBool::new(true)));
    d.register("n", held_node(&log, &hold)).unwrap();
    let ids: Vec<u64> = (0..10).map(|_| d.emit(Message::new("t", "")).unwrap()).collect();
    let seen = Arc::new(parking_lot::Mutex::new(None));
    let (dd, s) = (d.clone(), seen.clone());
    d.register("ctl", move |b: &Batch| -> Result<(), NodeError> {
        if b.iter().any(|e| e.topic() == "end-n") {
            *s.lock() = Some(dd.unregister_draining("n", Duration::from_secs(60)));
        }
        Ok(())
    })
    .unwrap();
    d.emit_to("ctl", Message::new("end-n", "")).unwrap();
    wait_for("the callback's call to return", || seen.lock().is_some());
    let now = seen.lock().take().unwrap().unwrap();
    assert!(now.pending > 0, "it did not wait for the held callback: {now:?}");
    assert_eq!(d.nodes(), ["ctl"]);
    hold.store(false, Ordering::SeqCst);
    wait_for("the drain to deliver", || log.user_ids().len() == ids.len());
    assert_eq!(log.user_ids(), ids);
    assert_eq!(d.close(Duration::from_secs(5)), Ok(0));
}

#[test]
fn a_close_stops_a_longer_drain_at_its_own_deadline() {
    let d = Director::new().unwrap();
    let log = Log::new();
    log.fail.store(true, Ordering::SeqCst);
    d.register_with("n", log.node(), NodeOptions::default().retry(quick_retry())).unwrap();
    for _ in 0..3 {
        d.emit(Message::new("t", "")).unwrap();
    }
    let dd = d.clone();
    let drain = std::thread::spawn(move || dd.unregister_draining("n", Duration::from_secs(120)));
    wait_for("n to leave the routes", || d.nodes().is_empty());
    let started = Instant::now();
    assert_eq!(d.close(Duration::from_millis(200)), Ok(4), "the pull and three events, undelivered");
    assert!(started.elapsed() < Duration::from_secs(60), "close waited for the drain's deadline");
    let last = drain.join().unwrap().unwrap();
    assert_eq!((last.accepted, last.pending), (4, 4), "left pending by the close: {last:?}");
    assert!(last.balanced());
}
