//! EventBus retries (issue 5): backoff intervals, dead letters after
//! `max_retries`, and per-event resumption inside a retried batch.

mod common;
use common::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronica::{Backoff, Director, Event, EventBus, NodeError, Retry, SubscribeOptions};
use parking_lot::Mutex;

type Times = Arc<Mutex<Vec<Instant>>>;
type Letters = Arc<Mutex<Vec<(String, String)>>>;

/// Subscribes a handler that always fails, recording call times and dead letters.
fn failing(bus: &EventBus, retry: Retry) -> (chronica::Subscription, Times, Letters) {
    let (times, letters) = (Times::default(), Letters::default());
    let (t, l) = (times.clone(), letters.clone());
    let sub = bus
        .on(
            "pay",
            move |_: &Event| {
                t.lock().push(Instant::now());
                Err(NodeError::new("card declined"))
            },
            SubscribeOptions::default().retry(retry).dead_letter(move |e: &Event, err: &NodeError| {
                let payload = String::from_utf8(e.payload().to_vec()).unwrap();
                l.lock().push((payload, err.message().to_owned()));
            }),
        )
        .unwrap();
    (sub, times, letters)
}

fn gaps(times: &Times) -> Vec<f64> {
    times.lock().windows(2).map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0).collect()
}

/// Each measured gap is at least the nominal delay (less 5 ms of timer
/// slack) and at most three times it plus 60 ms (a loaded CI machine).
fn assert_near(measured: &[f64], nominal: &[f64]) {
    assert_eq!(measured.len(), nominal.len(), "{measured:?}");
    for (m, n) in measured.iter().zip(nominal) {
        assert!(*m >= n - 5.0 && *m <= n * 3.0 + 60.0, "gap {m:.1} ms, expected about {n} ms: {measured:?}");
    }
}

#[test]
fn exponential_backoff_then_dead_letter_after_max_retries() {
    let bus = EventBus::from_builder(Director::builder()).unwrap();
    let retry = Retry {
        max_retries: Some(3),
        initial_delay: Duration::from_millis(40),
        multiplier: 2.0,
        max_delay: Duration::from_millis(1000),
        jitter: 0.0,
        ..Retry::default()
    };
    let (sub, times, letters) = failing(&bus, retry);
    bus.emit("pay", "order-1").unwrap();
    wait_for("dead letter", || !letters.lock().is_empty());
    assert_eq!(times.lock().len(), 4, "one attempt and three retries");
    assert_near(&gaps(&times), &[40.0, 80.0, 160.0]);
    assert_eq!(*letters.lock(), [("order-1".to_owned(), "card declined".to_owned())]);
    let s = settle(bus.director(), sub.uid());
    assert_eq!((s.dead_lettered, s.retries, s.failures), (1, 3, 4));
}

#[test]
fn linear_backoff_grows_by_the_initial_delay() {
    let bus = EventBus::from_builder(Director::builder()).unwrap();
    let retry = Retry {
        backoff: Backoff::Linear,
        max_retries: Some(3),
        initial_delay: Duration::from_millis(40),
        max_delay: Duration::from_millis(1000),
        jitter: 0.0,
        ..Retry::default()
    };
    let (_sub, times, letters) = failing(&bus, retry);
    bus.emit("pay", "order-3").unwrap();
    wait_for("dead letter", || !letters.lock().is_empty());
    assert_near(&gaps(&times), &[40.0, 80.0, 120.0]);
}

#[test]
fn constant_backoff_waits_the_same_each_time() {
    let bus = EventBus::from_builder(Director::builder()).unwrap();
    let retry = Retry { jitter: 0.0, ..Retry::constant(Duration::from_millis(50), Some(3)) };
    let (_sub, times, letters) = failing(&bus, retry);
    bus.emit("pay", "order-2").unwrap();
    wait_for("dead letter", || !letters.lock().is_empty());
    assert_near(&gaps(&times), &[50.0, 50.0, 50.0]);
}

/// Subscribes `handler` (given each payload as text) on "batch" with
/// `max_retries` constant 10 ms retries, sends "good", "poison", "after"
/// as one batch, and waits for a dead letter and "after" to be handled.
/// Returns the payloads the handler was given, in order, and the dead
/// letters.
fn poison_batch(
    max_retries: u32,
    handler: impl Fn(&str) -> Result<(), NodeError> + Send + Sync + 'static,
) -> (EventBus, chronica::Subscription, Vec<String>, Vec<(String, String)>) {
    let bus = EventBus::from_builder(Director::builder()).unwrap();
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let letters = Letters::default();
    let (c, l) = (calls.clone(), letters.clone());
    let retry = Retry { jitter: 0.0, ..Retry::constant(Duration::from_millis(10), Some(max_retries)) };
    let sub = bus
        .on(
            "batch",
            move |e: &Event| {
                let p = String::from_utf8(e.payload().to_vec()).unwrap();
                c.lock().push(p.clone());
                handler(&p)
            },
            SubscribeOptions::default().retry(retry).dead_letter(move |e: &Event, err: &NodeError| {
                l.lock().push((String::from_utf8(e.payload().to_vec()).unwrap(), err.message().to_owned()));
            }),
        )
        .unwrap();
    settle(bus.director(), sub.uid());
    // Hold delivery so the three events travel as one batch.
    bus.director().node_disconnected(sub.uid()).unwrap();
    for p in ["good", "poison", "after"] {
        bus.emit("batch", p).unwrap();
    }
    bus.director().node_connected(sub.uid()).unwrap();
    wait_for("the dead letter and 'after'", || {
        !letters.lock().is_empty() && calls.lock().last().is_some_and(|p| p == "after")
    });
    settle(bus.director(), sub.uid());
    let (calls, letters) = (calls.lock().clone(), letters.lock().clone());
    (bus, sub, calls, letters)
}

#[test]
fn a_retry_resumes_at_the_failed_event_and_dead_letters_only_it() {
    let (bus, sub, calls, letters) =
        poison_batch(2, |p| if p == "poison" { Err(NodeError::new("bad event")) } else { Ok(()) });
    assert_eq!(calls, ["good", "poison", "poison", "poison", "after"], "'good' is not handed again");
    // Only the event that failed: 'after' was never attempted with it.
    assert_eq!(letters, [("poison".to_owned(), "bad event".to_owned())]);
    // Exact per event: the pull, 'good' and 'after' delivered, 'poison'
    // given up; its two re-attempts are the only retries.
    let s = settle(bus.director(), sub.uid());
    assert_eq!((s.delivered, s.dead_lettered, s.failures, s.retries), (3, 1, 3, 2), "{s:?}");
}

#[test]
fn a_handler_that_recovers_is_delivered_once() {
    let bus = EventBus::from_builder(Director::builder()).unwrap();
    let calls = Arc::new(Mutex::new(0u32));
    let c = calls.clone();
    let retry = Retry { jitter: 0.0, ..Retry::constant(Duration::from_millis(5), None) };
    let sub = bus
        .on(
            "flaky",
            move |_: &Event| {
                let mut n = c.lock();
                *n += 1;
                if *n < 3 {
                    Err(NodeError::new("not yet"))
                } else {
                    Ok(())
                }
            },
            SubscribeOptions::default().retry(retry),
        )
        .unwrap();
    bus.emit("flaky", "").unwrap();
    let s = settle(bus.director(), sub.uid());
    assert_eq!(*calls.lock(), 3);
    assert_eq!((s.delivered, s.failures, s.dead_lettered), (2, 2, 0), "the pull and the event");
}

/// A handler that panics on an event is treated as failing on that event:
/// the events before it count as delivered and are not handed again.
#[test]
fn a_panicking_handler_resumes_at_the_event_that_panicked() {
    let (_bus, _sub, calls, letters) = poison_batch(1, |p| {
        assert!(p != "poison", "poisoned");
        Ok(())
    });
    assert_eq!(calls, ["good", "poison", "poison", "after"], "'good' is not handed again");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, "poison");
    assert!(letters[0].1.contains("poisoned"), "{:?}", letters[0]);
}
