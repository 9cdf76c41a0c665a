//! SPEC 2.10: close drains until the deadline, joins, reports what is left;
//! every later call returns `Closed`, stats stay readable.

mod common;
use common::*;

use chronica::{Batch, Director, Error, Message, NodeError, NodeOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn close_drains_everything_it_can() {
    let d = Director::new().unwrap();
    let log = Log::new();
    let l = log.node();
    d.register("n", move |b: &Batch| {
        std::thread::sleep(Duration::from_micros(200));
        l(b)
    })
    .unwrap();
    for _ in 0..2000 {
        d.emit(Message::new("t", "")).unwrap();
    }
    assert_eq!(d.close(Duration::from_secs(10)), Ok(0));
    assert_eq!(log.count_user(), 2000);
    let s = d.stats("n").unwrap();
    assert!(s.balanced() && s.pending == 0);
}

#[test]
fn close_reports_what_a_disconnected_node_keeps() {
    let d = Director::new().unwrap();
    d.register_with("off", sink, NodeOptions::default().connected(false)).unwrap();
    d.register("on", sink).unwrap();
    for _ in 0..5 {
        d.emit(Message::new("t", "")).unwrap();
    }
    assert_eq!(d.close(Duration::from_secs(30)), Ok(6), "five events and the pull event");
    let s = d.stats("off").unwrap();
    assert_eq!(s.pending, 6);
    assert!(s.balanced());
}

#[test]
fn close_reports_what_the_deadline_left() {
    let d = Director::builder().batch_size(1).build().unwrap();
    let log = Log::new();
    let l = log.node();
    d.register("slow", move |b: &Batch| {
        std::thread::sleep(Duration::from_millis(20));
        l(b)
    })
    .unwrap();
    for _ in 0..100 {
        d.emit(Message::new("t", "")).unwrap();
    }
    let left = d.close(Duration::from_millis(50)).unwrap();
    let s = d.stats("slow").unwrap();
    assert!(left > 0 && left < 101, "{left}");
    assert_eq!(s.pending, left);
    assert_eq!(log.events.lock().len() as u64, s.delivered);
    assert!(s.balanced());
}

#[test]
fn every_call_after_close_is_refused() {
    let d = Director::new().unwrap();
    d.register("n", sink).unwrap();
    d.close(Duration::from_secs(1)).unwrap();
    assert!(d.is_closed());
    assert_eq!(d.emit(Message::new("t", "")), Err(Error::Closed));
    assert_eq!(d.emit_to("n", Message::new("t", "")), Err(Error::Closed));
    assert_eq!(d.emit_root("r", ""), Err(Error::Closed));
    assert_eq!(d.emit_root_to("n", "r", ""), Err(Error::Closed));
    assert_eq!(d.register("m", sink), Err(Error::Closed));
    assert_eq!(d.unregister("n"), Err(Error::Closed));
    assert_eq!(d.subscribe("n", "a.b"), Err(Error::Closed));
    assert_eq!(d.node_connected("n"), Err(Error::Closed));
    assert_eq!(d.node_disconnected("n"), Err(Error::Closed));
    assert_eq!(d.close(Duration::from_secs(1)), Err(Error::Closed));
    assert!(d.stats("n").unwrap().balanced());
    // Bad arguments too: after close, every call but stats is `Closed`.
    assert_eq!(d.register("", sink), Err(Error::Closed));
    assert_eq!(d.register_with("m", sink, NodeOptions::default().topic("a.>.b")), Err(Error::Closed));
    assert_eq!(d.register_with("m", sink, NodeOptions::default().group("")), Err(Error::Closed));
    assert_eq!(d.subscribe("n", ""), Err(Error::Closed));
    assert_eq!(d.subscribe("ghost", "a"), Err(Error::Closed));
    assert_eq!(d.unregister("ghost"), Err(Error::Closed));
    assert_eq!(d.emit(Message::new("t", "").source("ghost")), Err(Error::Closed));
    assert_eq!(d.emit_to("ghost", Message::new("t", "")), Err(Error::Closed));
    assert_eq!(d.emit_root_to("ghost", "r", ""), Err(Error::Closed));
    assert_eq!(d.node_connected("ghost"), Err(Error::Closed));
    assert_eq!(d.node_disconnected(""), Err(Error::Closed));
}

/// A director under `block` (30 s) whose node "n", disconnected, holds a
/// full lane of one: an emit to it waits.
fn full_block_lane() -> Director {
    let d = Director::builder()
        .overflow(chronica::Overflow::Block)
        .block_timeout(Duration::from_secs(30))
        .queue_capacity(1)
        .build()
        .unwrap();
    d.register_with("n", sink, NodeOptions::default().connected(false)).unwrap();
    d.emit(Message::new("t", "fills the lane")).unwrap();
    d
}

/// An emit waiting for room under `block` when `close` begins has lost
/// the race: it returns `Closed`, as an emit after the close would, not
/// `Ok` for an event no node counts.
#[test]
fn an_emit_waiting_for_room_when_close_begins_returns_closed() {
    let d = full_block_lane();
    let waiting = |emit: fn(&Director) -> Result<u64, Error>| {
        let d = d.clone();
        std::thread::spawn(move || emit(&d))
    };
    let broadcast = waiting(|d| d.emit(Message::new("t", "waits")));
    let unicast = waiting(|d| d.emit_to("n", Message::new("t", "waits")));
    // Room is reserved unseen by stats: give both time to start waiting.
    std::thread::sleep(Duration::from_millis(200));
    d.close(Duration::from_millis(50)).unwrap();
    assert_eq!(broadcast.join().unwrap(), Err(Error::Closed));
    assert_eq!(unicast.join().unwrap(), Err(Error::Closed));
    let s = d.stats("n").unwrap();
    assert_eq!((s.accepted, s.pending), (2, 2), "the pull and the first event: {s:?}");
    assert!(s.balanced());
}

/// A unicast waiting for room in a target that unregisters meanwhile (no
/// group to hand it to) reached nobody: `UnknownNode`, as for a target
/// unknown at the call.
#[test]
fn a_unicast_whose_target_leaves_while_it_waits_is_unknown_node() {
    let d = full_block_lane();
    let d2 = d.clone();
    let unicast = std::thread::spawn(move || d2.emit_to("n", Message::new("t", "waits")));
    // Lets the unicast reach its wait for room; one that has not yet meets
    // an unknown target, which must give the same answer.
    std::thread::sleep(Duration::from_millis(200));
    d.unregister("n").unwrap();
    assert_eq!(unicast.join().unwrap(), Err(Error::UnknownNode("n".into())));
}

#[test]
fn close_waits_for_a_callback_in_flight_and_drops_nodes() {
    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let d = Director::new().unwrap();
    let (flag, fin, st) = (Flag(dropped.clone()), finished.clone(), started.clone());
    d.register("n", move |b: &Batch| -> Result<(), NodeError> {
        let _keep = &flag;
        if !b.is_root() {
            st.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
            fin.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    })
    .unwrap();
    d.emit(Message::new("t", "")).unwrap();
    wait_for("callback in flight", || started.load(Ordering::SeqCst) == 1);
    d.close(Duration::from_millis(10)).unwrap();
    assert_eq!(finished.load(Ordering::SeqCst), 1);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn dropping_the_last_handle_closes() {
    let dropped = Arc::new(AtomicUsize::new(0));
    {
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let d = Director::new().unwrap();
        let flag = Flag(dropped.clone());
        d.register("n", move |_: &Batch| -> Result<(), NodeError> {
            let _keep = &flag;
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

/// `close` while an unregister waits for the node's callback to finish:
/// close waits for that node too (an async node's task is not dropped
/// half-way, which left the unregister waiting forever) and counts the
/// events it still held as undelivered.
#[test]
fn close_during_an_unregister_waits_for_the_leaving_node_and_counts_it() {
    let d = Director::new().unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let node = chronica::async_node(move |b: Batch| {
        let s = s.clone();
        async move {
            if !b.is_root() {
                s.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok(())
        }
    });
    d.register_async("b", node, NodeOptions::default()).unwrap();
    settle(&d, "b");
    d.emit(Message::new("t", "in the callback")).unwrap();
    wait_for("the callback to start", || started.load(Ordering::SeqCst) == 1);
    for i in 0..4 {
        d.emit(Message::new("t", format!("held {i}"))).unwrap();
    }
    let (done, unregistered) = std::sync::mpsc::channel();
    let leaving = {
        let d = d.clone();
        std::thread::spawn(move || done.send(d.unregister("b")).unwrap())
    };
    wait_for("the unregister to begin", || d.nodes().is_empty());
    assert_eq!(d.close(Duration::from_secs(5)), Ok(4), "the leaving node's held events are undelivered");
    let outcome = unregistered.recv_timeout(Duration::from_secs(20)).expect("unregister never returned");
    assert_eq!(outcome, Ok(()));
    leaving.join().unwrap();
}
