//! The lock-free user lanes under racing emitters: exact accounting in
//! every snapshot taken during traffic, no lost wake-up of a sleeping
//! worker, and nothing lost when a node leaves while emitters push.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use chronica::{Batch, Director, DropReason, Message, NodeError, NodeOptions, Overflow};

const EMITTERS: u64 = 4;
const PER_EMITTER: u64 = 20_000;

fn counting(n: Arc<AtomicU64>) -> impl Fn(&Batch) -> Result<(), NodeError> + Send + Sync {
    move |b: &Batch| {
        n.fetch_add(b.iter().filter(|e| !e.is_root()).count() as u64, Ordering::SeqCst);
        Ok(())
    }
}

/// Small lanes under each policy, four emitters, and a sampler that checks
/// the accounting equation in every snapshot it takes meanwhile.
#[test]
fn every_snapshot_balances_while_emitters_race() {
    let d = Director::builder()
        .queue_capacity(64)
        .batch_size(8)
        .block_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let policies = [Overflow::DropOldest, Overflow::DropNewest, Overflow::Block];
    let seen: Vec<Arc<AtomicU64>> = policies.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    for (i, p) in policies.iter().enumerate() {
        let opts = NodeOptions::default().overflow(*p);
        d.register_with(&format!("n{i}"), counting(seen[i].clone()), opts).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut last = [0u64; 3];
            let mut samples = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for (i, last) in last.iter_mut().enumerate() {
                    let s = d.stats(&format!("n{i}")).unwrap();
                    assert!(s.balanced(), "n{i} mid-traffic: {s:?}");
                    assert!(s.accepted >= *last, "n{i}: accepted went back from {last}: {s:?}");
                    *last = s.accepted;
                    samples += 1;
                }
            }
            samples
        })
    };
    let emitters: Vec<_> = (0..EMITTERS)
        .map(|t| {
            let d = d.clone();
            std::thread::spawn(move || {
                for s in 0..PER_EMITTER {
                    d.emit(Message::new("t", format!("{t}:{s}"))).unwrap();
                }
            })
        })
        .collect();
    emitters.into_iter().for_each(|h| h.join().unwrap());
    stop.store(true, Ordering::SeqCst);
    assert!(sampler.join().unwrap() > 0);
    assert_eq!(d.close(Duration::from_secs(30)), Ok(0));
    let total = EMITTERS * PER_EMITTER;
    for (i, p) in policies.iter().enumerate() {
        let s = d.stats(&format!("n{i}")).unwrap();
        // One pull_current_state root event each, plus any lag notices.
        let roots = s.accepted - total;
        assert!(s.balanced(), "n{i}: {s:?}");
        assert_eq!(s.pending, 0, "n{i}: {s:?}");
        assert_eq!(
            s.delivered - roots,
            seen[i].load(Ordering::SeqCst),
            "n{i}: delivered counts what the node saw"
        );
        assert_eq!(
            seen[i].load(Ordering::SeqCst) + s.dropped,
            total,
            "n{i}: every event delivered or dropped"
        );
        if *p == Overflow::Block {
            assert_eq!(s.dropped, 0, "block never drops");
        }
    }
}

/// One event at a time, each waited for: every delivery needs a sleeping
/// worker to be woken by an emitter that never takes the fiber lock. A
/// lost wake-up shows as a timeout.
#[test]
fn a_sleeping_worker_is_always_woken() {
    let d = Director::builder().build().unwrap();
    let (tx, rx) = mpsc::channel::<u64>();
    let tx = parking_lot::Mutex::new(tx);
    d.register("sink", move |b: &Batch| -> Result<(), NodeError> {
        for e in b.iter().filter(|e| !e.is_root()) {
            tx.lock().send(e.id()).unwrap();
        }
        Ok(())
    })
    .unwrap();
    for round in 0..3_000 {
        let id = d.emit(Message::new("ping", "x")).unwrap();
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(got) => assert_eq!(got, id),
            Err(e) => panic!("round {round}: event {id} never delivered ({e})"),
        }
        if round % 500 == 0 {
            // Let the worker go from warm to cold sleep now and then.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    d.close(Duration::from_secs(5)).unwrap();
}

/// A group member leaves while emitters push to the group: every event is
/// delivered once by a member or reported dropped, never lost; events on
/// their way into the leaving member's lane are handed on too.
#[test]
fn a_member_leaving_during_traffic_loses_nothing() {
    for round in 0..20 {
        let dropped = Arc::new(AtomicU64::new(0));
        let d = {
            let dropped = dropped.clone();
            Director::builder()
                .queue_capacity(1 << 16)
                .on_drop(move |r| {
                    assert_eq!(r.reason, DropReason::Unregistered, "only the leaver drops");
                    // Its pull_current_state may still wait when it leaves.
                    if !r.event.is_root() {
                        dropped.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .build()
                .unwrap()
        };
        let seen = Arc::new(AtomicU64::new(0));
        for m in ["a", "b"] {
            d.register_with(m, counting(seen.clone()), NodeOptions::default().group("g")).unwrap();
        }
        let emitters: Vec<_> = (0..2)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || {
                    for _ in 0..5_000 {
                        d.emit(Message::new("t", "x")).unwrap();
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(200 * round));
        d.unregister("a").unwrap();
        emitters.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(d.close(Duration::from_secs(30)), Ok(0));
        let s = d.stats("b").unwrap();
        assert!(s.balanced(), "{s:?}");
        assert_eq!(
            seen.load(Ordering::SeqCst) + dropped.load(Ordering::SeqCst),
            10_000,
            "round {round}: every event delivered once or reported"
        );
    }
}
