//! SPEC 2.3: bounded lanes, the three overflow policies, and the in-band
//! `chronica.lagged` notice with the count and id range of what was lost.

mod common;
use common::*;

use chronica::{Director, Error, Message, NodeOptions, Overflow, LAGGED};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn lagged_payload(log: &Log) -> Vec<serde_json::Value> {
    log.roots().iter().filter(|e| e.topic() == LAGGED).map(|e| e.json().unwrap()).collect()
}

#[test]
fn drop_oldest_keeps_the_newest_and_tells_the_node() {
    let d = Director::builder().queue_capacity(4).build().unwrap();
    let log = Log::new();
    d.register_with("n", log.node(), NodeOptions::default().connected(false)).unwrap();
    let ids: Vec<u64> = (0..10).map(|i| d.emit(Message::new(format!("{i}"), "")).unwrap()).collect();
    let s = d.stats("n").unwrap();
    assert_eq!((s.accepted, s.dropped, s.pending), (11, 6, 5));
    assert!(s.balanced());
    d.node_connected("n").unwrap();
    settle(&d, "n");
    assert_eq!(log.user_ids(), ids[6..]);
    let topics = log.topics();
    assert_eq!(topics[0], "chronica.pull_current_state");
    assert_eq!(topics[1], LAGGED, "the notice comes before the next delivery: {topics:?}");
    let lag = &lagged_payload(&log)[0];
    assert_eq!(lag["dropped"], 6);
    assert_eq!(lag["first_id"], ids[0]);
    assert_eq!(lag["last_id"], ids[5]);
}

#[test]
fn drop_newest_keeps_the_oldest() {
    let d = Director::builder().queue_capacity(3).overflow(Overflow::DropNewest).build().unwrap();
    let log = Log::new();
    d.register_with("n", log.node(), NodeOptions::default().connected(false)).unwrap();
    let ids: Vec<u64> = (0..7).map(|_| d.emit(Message::new("t", "")).unwrap()).collect();
    d.node_connected("n").unwrap();
    let s = settle(&d, "n");
    assert_eq!(s.dropped, 4);
    assert_eq!(log.user_ids(), ids[..3]);
    let lag = &lagged_payload(&log)[0];
    assert_eq!((lag["dropped"].as_u64(), lag["first_id"].as_u64()), (Some(4), Some(ids[3])));
    assert_eq!(lag["last_id"], ids[6]);
}

/// A director whose lanes hold two events under the `block` policy.
fn block_director(block_timeout: Duration) -> Director {
    Director::builder()
        .queue_capacity(2)
        .overflow(Overflow::Block)
        .block_timeout(block_timeout)
        .build()
        .unwrap()
}

#[test]
fn block_waits_then_fails_with_queue_full_and_changes_nothing() {
    let d = block_director(Duration::from_millis(50));
    let (slow, fast) = (Log::new(), Log::new());
    d.register_with("slow", slow.node(), NodeOptions::default().connected(false)).unwrap();
    d.register("fast", fast.node()).unwrap();
    d.emit(Message::new("t", "1")).unwrap();
    d.emit(Message::new("t", "2")).unwrap();
    let before = d.stats("fast").unwrap().accepted;
    assert_eq!(d.emit(Message::new("t", "3")), Err(Error::QueueFull("slow".into())));
    assert_eq!(d.stats("fast").unwrap().accepted, before, "a refused emit reaches nobody");
    assert_eq!(d.stats("slow").unwrap().dropped, 0);
    d.node_connected("slow").unwrap();
    let s = settle(&d, "slow");
    assert_eq!((s.delivered, s.dropped), (3, 0), "the pull and the two accepted: {s:?}");
}

#[test]
fn room_made_while_a_block_emit_waits_lets_it_through() {
    // A block timeout far beyond the wait below: the emit can only end by
    // finding room (or hang the test, were room never seen).
    let d = block_director(Duration::from_secs(600));
    let slow = Log::new();
    d.register_with("slow", slow.node(), NodeOptions::default().connected(false)).unwrap();
    d.emit(Message::new("1", "")).unwrap();
    d.emit(Message::new("2", "")).unwrap();
    let d2 = d.clone();
    let waiter = std::thread::spawn(move || Director::emit(&d2, Message::new("late", "")).map(|_| ()));
    // Most likely waiting by now; either way it must get through.
    std::thread::sleep(Duration::from_millis(50));
    d.node_connected("slow").unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(()));
    wait_for("the late event", || slow.user_topics() == ["1", "2", "late"]);
    let s = settle(&d, "slow");
    assert_eq!((s.accepted, s.delivered, s.dropped), (4, 4, 0), "{s:?}");
}

#[test]
fn try_emit_fails_at_once_where_block_would_wait_and_changes_nothing() {
    // A block timeout far beyond the test's own: waiting would hang it.
    let d = block_director(Duration::from_secs(600));
    let (slow, fast) = (Log::new(), Log::new());
    d.register_with("slow", slow.node(), NodeOptions::default().connected(false)).unwrap();
    d.register("fast", fast.node()).unwrap();
    d.try_emit(Message::new("1", "")).unwrap();
    d.try_emit_to("slow", Message::new("2", "")).unwrap();
    let (slow_before, fast_before) = (d.stats("slow").unwrap(), d.stats("fast").unwrap());
    assert_eq!(d.try_emit(Message::new("3", "")), Err(Error::QueueFull("slow".into())));
    assert_eq!(d.try_emit_to("slow", Message::new("4", "")), Err(Error::QueueFull("slow".into())));
    let (slow_after, fast_after) = (d.stats("slow").unwrap(), d.stats("fast").unwrap());
    assert_eq!((slow_after.accepted, slow_after.dropped), (slow_before.accepted, 0));
    assert_eq!(fast_after.accepted, fast_before.accepted, "a refused emit reaches nobody");
    // A target with room is not held up by the full one's policy.
    d.try_emit_to("fast", Message::new("5", "")).unwrap();
    d.node_connected("slow").unwrap();
    // Both settled: with a capacity of 2, "fast" still holding "5" in
    // flight could refuse "6".
    settle(&d, "slow");
    settle(&d, "fast");
    d.try_emit(Message::new("6", "")).unwrap();
    wait_for("event 6", || slow.user_topics().len() == 3 && fast.user_topics().len() == 3);
    assert_eq!(slow.user_topics(), ["1", "2", "6"]);
    assert_eq!(fast.user_topics(), ["1", "5", "6"]);
    assert!(d.stats("slow").unwrap().balanced());
}

#[test]
fn try_emit_is_emit_under_the_dropping_policies() {
    let d = Director::builder().queue_capacity(1).build().unwrap();
    let log = Log::new();
    d.register_with("n", log.node(), NodeOptions::default().connected(false)).unwrap();
    d.try_emit(Message::new("t", "1")).unwrap();
    d.try_emit(Message::new("t", "2")).unwrap();
    let s = d.stats("n").unwrap();
    assert_eq!((s.accepted, s.dropped), (3, 1), "drop_oldest made room, as emit does");
}

#[test]
fn root_lane_is_bounded_too() {
    let d = Director::builder().root_capacity(2).build().unwrap();
    let log = Log::new();
    d.register_with("n", log.node(), NodeOptions::default().connected(false)).unwrap();
    for i in 0..5 {
        d.emit_root(&format!("r{i}"), "").unwrap();
    }
    let s = d.stats("n").unwrap();
    assert!(s.balanced());
    assert_eq!(s.pending, 2);
    d.node_connected("n").unwrap();
    settle(&d, "n");
    assert_eq!(lagged_payload(&log)[0]["dropped"], 4);
}

#[test]
fn drop_hook_reports_each_loss() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let h = dropped.clone();
    let d = Director::builder()
        .queue_capacity(1)
        .on_drop(move |r| {
            assert_eq!(r.uid, "n");
            h.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    d.register_with("n", sink, NodeOptions::default().connected(false)).unwrap();
    for _ in 0..5 {
        d.emit(Message::new("t", "")).unwrap();
    }
    assert_eq!(dropped.load(Ordering::SeqCst), 4);
    assert_eq!(d.stats("n").unwrap().dropped, 4);
    // Still disconnected: the pull event and the one kept event stay undelivered.
    assert_eq!(d.close(Duration::from_millis(20)), Ok(2));
}

/// A lag notice waiting behind more than a batch of root events used to
/// sit at the back of the root lane, where a root overflow could evict it:
/// the drops it reported were then never reported. It now goes out first,
/// pinned, so every drop is in some notice.
#[test]
fn a_lag_notice_is_never_evicted() {
    use parking_lot::Mutex;
    let d = Director::builder().batch_size(1).build().unwrap();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let entered = Arc::new(AtomicUsize::new(0));
    let notices: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let (e, n) = (entered.clone(), notices.clone());
    let node = move |b: &chronica::Batch| -> Result<(), chronica::NodeError> {
        n.lock().extend(b.iter().filter(|e| e.topic() == LAGGED).map(|e| e.json().unwrap()));
        e.fetch_add(1, Ordering::SeqCst);
        let _ = gate.lock().recv();
        Ok(())
    };
    d.register_with("n", node, NodeOptions::default().root_capacity(2)).unwrap();
    wait_for("the pull in the callback", || entered.load(Ordering::SeqCst) == 1);
    for r in ["r1", "r2", "r3"] {
        d.emit_root(r, "").unwrap(); // r2 evicts r1, r3 evicts r2
    }
    release.send(()).unwrap();
    wait_for("the second batch in the callback", || entered.load(Ordering::SeqCst) == 2);
    d.emit_root("r4", "").unwrap(); // the lane is full again: something is evicted
    for _ in 0..16 {
        let _ = release.send(());
    }
    let s = settle(&d, "n");
    let reported: u64 = notices.lock().iter().map(|v| v["dropped"].as_u64().unwrap()).sum();
    assert!(s.dropped >= 3, "{s:?}");
    assert_eq!(reported, s.dropped, "every drop is in a notice: {:?}", notices.lock());
    assert_eq!(s.accepted, s.delivered + s.dropped + s.dead_lettered + s.pending);
}

/// A node that loses events while each lag notice is delivered (it is
/// overloaded) still gets its user events: a notice lets the next user
/// batch through before the one for the drops made meanwhile. Before, a
/// notice owed blocked every user batch, so each notice's own callback
/// time brought the next notice and a node under sustained overload was
/// called with notices only (the scale audit saw 496 calls in 5 s, none
/// with a user event).
#[test]
fn an_overloaded_node_gets_user_batches_between_its_lag_notices() {
    overloaded_between_notices(1);
}

/// The same with two workers: the one that starts the user batch wakes
/// worker 0, which makes the notices, for the notice it let wait.
#[test]
fn an_overloaded_node_of_concurrency_2_gets_user_batches_between_its_lag_notices() {
    overloaded_between_notices(2);
}

fn overloaded_between_notices(concurrency: usize) {
    const ROUNDS: usize = 20;
    let d = Director::builder().queue_capacity(4).batch_size(2).build().unwrap();
    let calls: Arc<parking_lot::Mutex<String>> = Arc::default();
    let rounds = Arc::new(AtomicUsize::new(0));
    let (dd, c, r) = (d.clone(), calls.clone(), rounds.clone());
    let node = move |b: &chronica::Batch| -> Result<(), chronica::NodeError> {
        let notice = b.iter().any(|e| e.topic() == LAGGED);
        let user = b.iter().any(|e| !e.is_root());
        c.lock().push(if notice {
            'N'
        } else if user {
            'U'
        } else {
            'R'
        });
        // Overloaded: while each notice is delivered, more arrives than
        // the lane holds, so events are dropped again.
        if notice && r.fetch_add(1, Ordering::SeqCst) < ROUNDS {
            for i in 0..6 {
                dd.emit(Message::new("t", format!("{i}"))).unwrap();
            }
        }
        Ok(())
    };
    d.register_with("n", node, NodeOptions::default().connected(false).concurrency(concurrency)).unwrap();
    for i in 0..10 {
        d.emit(Message::new("t", format!("{i}"))).unwrap();
    }
    d.node_connected("n").unwrap();
    let s = settle(&d, "n");
    assert!(s.balanced(), "{s:?}");
    let calls = calls.lock().clone();
    assert!(rounds.load(Ordering::SeqCst) > ROUNDS, "every round ran: {calls}");
    // With one worker the calls are the order of the takes. With two, the
    // user batch let through is taken before the next notice is made, but
    // its worker may enter the callback after worker 0 entered the
    // notice's (seen once in a loaded run): the count below is what holds.
    if concurrency == 1 {
        assert!(
            !calls.contains("NN"),
            "a notice came right after a notice, with user events waiting: {calls}"
        );
    }
    assert!(calls.matches('U').count() >= ROUNDS, "{calls}");
    d.close(Duration::from_secs(5)).unwrap();
}
