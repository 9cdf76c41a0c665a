//! Many threads emit while nodes fail at random, disconnect and reconnect,
//! and come and go. At the end: the accounting equation holds for every
//! node, no event was delivered twice, and each emitter's events arrived in
//! order at every node.

mod common;

use chronica::{Batch, Director, Message, NodeError, NodeOptions, RetryPolicy};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const EMITTERS: u64 = 4;
const PER_EMITTER: u64 = 5_000;
const STABLE: usize = 6;

struct Record {
    /// (emitter, sequence) pairs in arrival order.
    got: Mutex<Vec<(u64, u64)>>,
    fail_now: AtomicBool,
}

fn flaky_node(rec: Arc<Record>, seed: u64) -> impl Fn(&Batch) -> Result<(), NodeError> + Send + Sync {
    let rng = AtomicU64::new(seed | 1);
    move |b: &Batch| {
        let mut x = rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        rng.store(x, Ordering::Relaxed);
        if rec.fail_now.load(Ordering::Relaxed) && x % 4 == 0 {
            return Err(NodeError::new("random failure"));
        }
        let mut got = rec.got.lock();
        for e in b.iter().filter(|e| !e.is_root()) {
            let text = std::str::from_utf8(e.payload()).unwrap();
            let (t, s) = text.split_once(':').unwrap();
            got.push((t.parse().unwrap(), s.parse().unwrap()));
        }
        Ok(())
    }
}

#[test]
fn accounting_order_and_uniqueness_under_churn() {
    let retry = RetryPolicy {
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    let d = Director::builder().retry(retry).queue_capacity(1 << 20).batch_size(32).build().unwrap();
    let records: Vec<Arc<Record>> = (0..STABLE)
        .map(|_| Arc::new(Record { got: Mutex::new(Vec::new()), fail_now: AtomicBool::new(true) }))
        .collect();
    for (i, r) in records.iter().enumerate() {
        d.register_with(&format!("s{i}"), flaky_node(r.clone(), i as u64 + 7), NodeOptions::default())
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let emitters: Vec<_> = (0..EMITTERS)
        .map(|t| {
            let d = d.clone();
            std::thread::spawn(move || {
                // Odd emitters send runs of varying length with `emit_many`,
                // so runs and single events meet in the same lanes.
                let mut s = 0;
                while s < PER_EMITTER {
                    if t % 2 == 0 {
                        d.emit(Message::new("t", format!("{t}:{s}"))).unwrap();
                        s += 1;
                        continue;
                    }
                    let n = (1 + s % 37).min(PER_EMITTER - s);
                    let msgs = (s..s + n).map(|s| Message::new("t", format!("{t}:{s}")));
                    let ids = d.emit_many(msgs).unwrap();
                    assert_eq!(ids.end - ids.start, n);
                    s += n;
                }
            })
        })
        .collect();
    let churn = {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let uid = format!("c{}", round % 3);
                let rec = Arc::new(Record { got: Mutex::new(Vec::new()), fail_now: AtomicBool::new(true) });
                d.register(&uid, flaky_node(rec, round)).unwrap();
                let flip = format!("s{}", round as usize % STABLE);
                d.node_disconnected(&flip).unwrap();
                std::thread::sleep(Duration::from_millis(1));
                d.node_connected(&flip).unwrap();
                let s = d.stats(&uid).unwrap();
                assert!(s.balanced(), "{uid}: {s:?}");
                d.unregister(&uid).unwrap();
                round += 1;
            }
        })
    };
    emitters.into_iter().for_each(|h| h.join().unwrap());
    stop.store(true, Ordering::SeqCst);
    churn.join().unwrap();
    for r in &records {
        r.fail_now.store(false, Ordering::SeqCst);
    }
    for i in 0..STABLE {
        d.node_connected(&format!("s{i}")).unwrap();
    }
    assert_eq!(d.close(Duration::from_secs(30)), Ok(0));
    for (i, r) in records.iter().enumerate() {
        let s = d.stats(&format!("s{i}")).unwrap();
        assert!(s.balanced(), "s{i}: {s:?}");
        assert_eq!(s.dropped, 0);
        let got = r.got.lock();
        assert_eq!(got.len() as u64, EMITTERS * PER_EMITTER, "s{i} got every event");
        let unique: HashSet<_> = got.iter().collect();
        assert_eq!(unique.len(), got.len(), "s{i}: an event was delivered twice");
        let mut last = vec![None; EMITTERS as usize];
        for &(t, seq) in got.iter() {
            assert!(last[t as usize] < Some(seq), "s{i}: emitter {t} out of order at {seq}");
            last[t as usize] = Some(seq);
        }
        assert!(s.failures > 0, "the test exercised failures");
    }
}
