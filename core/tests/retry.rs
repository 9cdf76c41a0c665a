//! SPEC 2.5: a failed batch stays at the head and is retried on a timer with
//! backoff (no other traffic needed), up to `max_retries`, then dead-lettered.

mod common;
use common::*;

use chronica::{Batch, Director, Message, NodeError, NodeOptions, RetryPolicy};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fast_retry(max: Option<u32>) -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_millis(20),
        multiplier: 2.0,
        max_delay: Duration::from_millis(200),
        jitter: 0.0,
        max_retries: max,
        ..RetryPolicy::default()
    }
}

#[test]
fn failed_batch_is_retried_by_timer_alone_and_keeps_order() {
    let d = Director::builder().retry(fast_retry(None)).build().unwrap();
    let log = Log::new();
    d.register("n", log.node()).unwrap();
    settle(&d, "n");
    log.fail.store(true, Ordering::SeqCst);
    let ids: Vec<u64> = (0..3).map(|_| d.emit(Message::new("t", "")).unwrap()).collect();
    wait_for("three failures", || d.stats("n").unwrap().failures >= 3);
    log.fail.store(false, Ordering::SeqCst);
    // No further emit: the timer alone must deliver.
    let s = settle(&d, "n");
    assert_eq!(log.user_ids(), ids);
    assert!(s.retries >= 3 && s.failures >= 3, "{s:?}");
    assert_eq!(s.last_error.as_deref(), Some("refused by test"));
}

#[test]
fn backoff_grows_between_attempts() {
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    let d = Director::builder().retry(fast_retry(Some(4))).build().unwrap();
    d.register_with(
        "n",
        move |b: &Batch| -> Result<(), NodeError> {
            if b.is_root() {
                return Ok(());
            }
            t.lock().push(Instant::now());
            Err("no".into())
        },
        NodeOptions::default(),
    )
    .unwrap();
    d.emit(Message::new("t", "")).unwrap();
    wait_for("dead letter", || d.stats("n").unwrap().dead_lettered == 1);
    let times = times.lock();
    assert_eq!(times.len(), 5, "one call and four retries");
    let gaps: Vec<u128> = times.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    // 20, 40, 80, 160 ms with no jitter; allow scheduling slack upwards.
    for (gap, want) in gaps.iter().zip([20u128, 40, 80, 160]) {
        assert!(*gap >= want && *gap < want + 400, "gaps {gaps:?}");
    }
}

#[test]
fn exhausted_batches_go_to_the_dead_letter_hook() {
    let dead = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let (dl, er) = (dead.clone(), errors.clone());
    let d = Director::builder()
        .retry(fast_retry(Some(2)))
        .on_dead_letter(move |x| dl.lock().push((x.uid.to_owned(), x.batch.len(), x.error.to_string())))
        .on_error(move |_, _| {
            er.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let log = Log::new();
    d.register("n", log.node()).unwrap();
    settle(&d, "n");
    log.fail.store(true, Ordering::SeqCst);
    d.emit(Message::new("t", "")).unwrap();
    wait_for("dead letter", || !dead.lock().is_empty());
    let s = settle(&d, "n");
    assert_eq!(s.dead_lettered, 1);
    assert_eq!((s.failures, s.retries), (3, 2));
    assert_eq!(errors.load(Ordering::SeqCst), 3);
    assert_eq!(dead.lock()[0], ("n".to_owned(), 1, "refused by test".to_owned()));
    // The node carries on with later events.
    log.fail.store(false, Ordering::SeqCst);
    d.emit(Message::new("after", "")).unwrap();
    settle(&d, "n");
    assert_eq!(log.user_topics(), ["after"]);
}

#[test]
fn per_node_retry_overrides_the_director() {
    let d = Director::builder().retry(fast_retry(None)).build().unwrap();
    let log = Log::new();
    d.register_with("n", log.node(), NodeOptions::default().retry(fast_retry(Some(0)))).unwrap();
    settle(&d, "n");
    log.fail.store(true, Ordering::SeqCst);
    d.emit(Message::new("t", "")).unwrap();
    wait_for("dead letter", || d.stats("n").unwrap().dead_lettered == 1);
    assert_eq!(d.stats("n").unwrap().retries, 0);
}

#[test]
fn a_panicking_callback_is_a_failure_not_a_crash() {
    let d = Director::builder().retry(fast_retry(Some(1))).build().unwrap();
    d.register("n", |b: &Batch| -> Result<(), NodeError> {
        if b.is_root() {
            Ok(())
        } else {
            panic!("boom")
        }
    })
    .unwrap();
    d.emit(Message::new("t", "")).unwrap();
    wait_for("dead letter", || d.stats("n").unwrap().dead_lettered == 1);
    let s = d.stats("n").unwrap();
    assert!(s.last_error.unwrap().contains("boom"));
    assert_eq!(d.close(Duration::from_secs(1)), Ok(0));
}

#[test]
fn a_node_hook_takes_its_dead_letters_instead_of_the_director() {
    let (global, own) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (g, o) = (global.clone(), own.clone());
    let d = Director::builder()
        .retry(fast_retry(Some(0)))
        .on_dead_letter(move |_| {
            g.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let failing = |b: &Batch| -> Result<(), NodeError> {
        if b.is_root() {
            Ok(())
        } else {
            Err("no".into())
        }
    };
    let opts = NodeOptions::default().on_dead_letter(move |x| {
        assert_eq!(x.uid, "own");
        o.fetch_add(1, Ordering::SeqCst);
    });
    d.register_with("own", failing, opts).unwrap();
    d.register("plain", failing).unwrap();
    d.emit(Message::new("t", "")).unwrap();
    wait_for("both dead letters", || global.load(Ordering::SeqCst) + own.load(Ordering::SeqCst) == 2);
    assert_eq!((global.load(Ordering::SeqCst), own.load(Ordering::SeqCst)), (1, 1));
}

/// A node that took the first events of a batch before failing says so
/// (`NodeError::with_delivered`): those count as delivered, only the rest is
/// retried, and its retry budget starts afresh.
#[test]
fn a_partly_taken_batch_retries_only_the_rest() {
    let d = Director::builder().retry(fast_retry(Some(1))).batch_size(8).build().unwrap();
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let letters: Arc<Mutex<Vec<String>>> = Arc::default();
    let (s2, l2) = (seen.clone(), letters.clone());
    let opts = NodeOptions {
        on_dead_letter: Some(Arc::new(move |dl: &chronica::DeadLetter<'_>| {
            l2.lock().extend(dl.batch.iter().map(|e| String::from_utf8_lossy(e.payload()).into_owned()));
        })),
        connected: false,
        ..NodeOptions::default()
    };
    d.register_with(
        "n",
        move |b: &Batch| -> Result<(), NodeError> {
            let users: Vec<String> = b
                .iter()
                .filter(|e| !e.is_root())
                .map(|e| String::from_utf8_lossy(e.payload()).into_owned())
                .collect();
            if users.is_empty() {
                return Ok(());
            }
            s2.lock().push(users.clone());
            // Takes events up to the first "bad" one, then fails on it.
            match users.iter().position(|p| p.starts_with("bad")) {
                Some(at) => Err(NodeError::new("bad event").with_delivered(at + b.len() - users.len())),
                None => Ok(()),
            }
        },
        opts,
    )
    .unwrap();
    for p in ["a", "b", "bad1", "c", "bad2", "d"] {
        d.emit(Message::new("t", p)).unwrap();
    }
    d.node_connected("n").unwrap();
    let s = settle(&d, "n");
    let seen = seen.lock();
    // First call: all six; fails at bad1 having taken a, b. The retry (budget
    // 1) fails again without progress, so bad1.. is dead-lettered whole.
    assert_eq!(seen[0], ["a", "b", "bad1", "c", "bad2", "d"]);
    assert_eq!(seen[1], ["bad1", "c", "bad2", "d"], "a and b are not handed again");
    assert_eq!(seen.len(), 2);
    assert_eq!(*letters.lock(), ["bad1", "c", "bad2", "d"]);
    // The pull, a and b delivered; four given up; two failures, one retry.
    assert_eq!((s.delivered, s.dead_lettered, s.failures, s.retries), (3, 4, 2, 1), "{s:?}");
}

/// Progress resets the budget: each failure after new progress is a first
/// failure, so a batch that keeps advancing is never dead-lettered.
#[test]
fn progress_renews_the_retry_budget() {
    let d = Director::builder().retry(fast_retry(Some(1))).batch_size(8).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let opts = NodeOptions { connected: false, ..NodeOptions::default() };
    d.register_with(
        "n",
        move |b: &Batch| -> Result<(), NodeError> {
            if b.is_root() {
                return Ok(());
            }
            c2.fetch_add(1, Ordering::SeqCst);
            // Takes one event per call and fails on the next, until one is left.
            if b.len() > 1 {
                return Err(NodeError::new("one at a time").with_delivered(1));
            }
            Ok(())
        },
        opts,
    )
    .unwrap();
    for _ in 0..5 {
        d.emit(Message::new("t", "x")).unwrap();
    }
    d.node_connected("n").unwrap();
    let s = settle(&d, "n");
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!((s.delivered, s.dead_lettered, s.failures), (6, 0, 4), "{s:?}");
}
