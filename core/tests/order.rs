//! SPEC 2.2: FIFO per lane, root before waiting user events, batching, and
//! a node's callback never concurrent with itself.

mod common;
use common::*;

use chronica::{Batch, Director, Message, NodeError};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn user_events_arrive_in_emit_order_in_batches() {
    let d = Director::builder().batch_size(16).build().unwrap();
    let log = Log::new();
    d.register("n", log.node()).unwrap();
    let ids: Vec<u64> = (0..5000).map(|i| d.emit(Message::new(format!("{i}"), "")).unwrap()).collect();
    settle(&d, "n");
    assert_eq!(log.user_ids(), ids);
    assert!(log.batches.lock().iter().all(|&n| (1..=16).contains(&n)));
}

#[test]
fn root_events_overtake_waiting_user_events() {
    let d = Director::builder().batch_size(4).build().unwrap();
    let log = Log::new();
    let gate = Arc::new(AtomicBool::new(false));
    let (g, l) = (gate.clone(), log.node());
    d.register("n", move |b: &Batch| {
        while !g.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        l(b)
    })
    .unwrap();
    // The pull event is in flight and blocked; queue users then a root.
    for i in 0..8 {
        d.emit(Message::new(format!("u{i}"), "")).unwrap();
    }
    d.emit_root("urgent", "").unwrap();
    gate.store(true, Ordering::SeqCst);
    settle(&d, "n");
    let topics = log.topics();
    assert_eq!(topics[0], "chronica.pull_current_state");
    assert_eq!(topics[1], "urgent", "{topics:?}");
    assert_eq!(&topics[2..], ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"]);
    // A batch holds one lane only.
    let events = log.events.lock();
    let mut i = 0;
    for n in log.batches.lock().iter() {
        let lane = events[i].is_root();
        assert!(events[i..i + n].iter().all(|e| e.is_root() == lane));
        i += n;
    }
}

#[test]
fn a_callback_never_runs_concurrently_with_itself() {
    let d = Director::new().unwrap();
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let (i, o) = (inside.clone(), overlaps.clone());
    d.register("n", move |_b: &Batch| -> Result<(), NodeError> {
        if i.swap(true, Ordering::SeqCst) {
            o.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::yield_now();
        i.store(false, Ordering::SeqCst);
        Ok(())
    })
    .unwrap();
    let emitters: Vec<_> = (0..4)
        .map(|_| {
            let d = d.clone();
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    d.emit(Message::new("t", "")).unwrap();
                    d.emit_root("r", "").unwrap();
                }
            })
        })
        .collect();
    emitters.into_iter().for_each(|h| h.join().unwrap());
    settle(&d, "n");
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
}
