//! SPEC 2.6: disconnected nodes hold events; connecting resumes at once and
//! resets the backoff.

mod common;
use common::*;

use chronica::{Director, Message, NodeOptions, RetryPolicy};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[test]
fn registered_disconnected_holds_until_connected() {
    let d = Director::new().unwrap();
    let log = Log::new();
    d.register_with("n", log.node(), NodeOptions::default().connected(false)).unwrap();
    d.emit(Message::new("a", "")).unwrap();
    d.emit(Message::new("b", "")).unwrap();
    // Time for a worker that wrongly took the node for connected to call
    // it; a later call would also break the order asserted below.
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(log.calls.load(Ordering::SeqCst), 0);
    let s = d.stats("n").unwrap();
    assert_eq!((s.pending, s.connected), (3, false));
    d.node_connected("n").unwrap();
    settle(&d, "n");
    assert_eq!(log.user_topics(), ["a", "b"]);
}

#[test]
fn disconnect_pauses_and_connect_resumes() {
    let d = Director::new().unwrap();
    let log = Log::new();
    d.register("n", log.node()).unwrap();
    settle(&d, "n");
    d.node_disconnected("n").unwrap();
    d.emit(Message::new("held", "")).unwrap();
    // Time for a worker that missed the disconnect to deliver.
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(log.count_user(), 0);
    d.node_connected("n").unwrap();
    settle(&d, "n");
    assert_eq!(log.user_topics(), ["held"]);
}

#[test]
fn connect_retries_at_once_and_resets_backoff() {
    let slow = RetryPolicy {
        initial_delay: Duration::from_secs(30),
        max_delay: Duration::from_secs(60),
        jitter: 0.0,
        ..RetryPolicy::default()
    };
    let d = Director::builder().retry(slow).build().unwrap();
    let log = Log::new();
    d.register("n", log.node()).unwrap();
    settle(&d, "n");
    log.fail.store(true, Ordering::SeqCst);
    d.emit(Message::new("t", "")).unwrap();
    wait_for("first failure", || d.stats("n").unwrap().failures == 1);
    log.fail.store(false, Ordering::SeqCst);
    let start = Instant::now();
    d.node_connected("n").unwrap();
    settle(&d, "n");
    assert!(start.elapsed() < Duration::from_secs(10), "connected must not wait for the 30 s backoff");
    assert_eq!(log.user_topics(), ["t"]);
}
