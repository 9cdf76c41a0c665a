//! Helpers shared by the integration tests: a recording node and polling.
#![allow(dead_code, unreachable_pub)]

pub mod model;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronica::{Batch, Director, Event, NodeError, NodeStats};
use parking_lot::Mutex;

/// What a recording node saw.
#[derive(Clone, Default)]
pub struct Log {
    pub events: Arc<Mutex<Vec<Arc<Event>>>>,
    pub batches: Arc<Mutex<Vec<usize>>>,
    pub calls: Arc<AtomicUsize>,
    pub fail: Arc<AtomicBool>,
}

impl Log {
    pub fn new() -> Self {
        Self::default()
    }

    /// A node closure that records every successful batch; it fails
    /// (recording nothing) while `fail` is set.
    pub fn node(&self) -> impl Fn(&Batch) -> Result<(), NodeError> + Send + Sync + 'static {
        let log = self.clone();
        move |b: &Batch| {
            log.calls.fetch_add(1, Ordering::SeqCst);
            if log.fail.load(Ordering::SeqCst) {
                return Err(NodeError::new("refused by test"));
            }
            log.batches.lock().push(b.len());
            log.events.lock().extend(b.iter().cloned());
            Ok(())
        }
    }

    pub fn topics(&self) -> Vec<String> {
        self.events.lock().iter().map(|e| e.topic().to_owned()).collect()
    }

    pub fn user_topics(&self) -> Vec<String> {
        self.events.lock().iter().filter(|e| !e.is_root()).map(|e| e.topic().to_owned()).collect()
    }

    pub fn user_ids(&self) -> Vec<u64> {
        self.events.lock().iter().filter(|e| !e.is_root()).map(|e| e.id()).collect()
    }

    pub fn count_user(&self) -> usize {
        self.events.lock().iter().filter(|e| !e.is_root()).count()
    }

    pub fn roots(&self) -> Vec<Arc<Event>> {
        self.events.lock().iter().filter(|e| e.is_root()).cloned().collect()
    }
}

/// Polls `cond` until it holds or 10 s pass; panics with `what` otherwise.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until `uid` has nothing pending and returns its stats.
pub fn settle(d: &Director, uid: &str) -> NodeStats {
    wait_for(&format!("{uid} to settle"), || d.stats(uid).unwrap().pending == 0);
    let s = d.stats(uid).unwrap();
    assert!(s.balanced(), "accounting equation broken for {uid}: {s:?}");
    s
}

/// Connects the group member `uid` (recorded by `log`), waits for it to
/// settle, and checks that it received exactly the events `ids` (in any
/// order: hand-overs come after its own) and dropped none.
pub fn connect_and_expect_exactly(d: &Director, uid: &str, log: &Log, ids: &[u64]) {
    d.node_connected(uid).unwrap();
    let s = settle(d, uid);
    let mut got = log.user_ids();
    got.sort_unstable();
    assert_eq!(got, ids, "every event reaches the group exactly once");
    assert_eq!(s.dropped, 0);
}

/// A node that accepts everything and records nothing.
pub fn sink(_: &Batch) -> Result<(), NodeError> {
    Ok(())
}
