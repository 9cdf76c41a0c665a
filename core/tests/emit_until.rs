//! `Director::emit_until` / `emit_to_until`: a blocking emit that waits
//! for room until the caller's deadline instead of `block_timeout`, and,
//! refused, changes nothing, as a timed-out `emit`.

mod common;
use common::*;

use chronica::{Director, Error, Message, NodeOptions, Overflow};
use std::time::{Duration, Instant};

/// Far beyond any wait of these tests: an emit that waited for it instead
/// of its own deadline would fail them (see `BOUND`) rather than pass.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound on a wait meant to end at a deadline of a fraction of a second:
/// generous for a loaded machine, well short of `BLOCK_TIMEOUT`.
const BOUND: Duration = Duration::from_secs(15);

/// A `block` director whose node "slow" (disconnected) has its lane of
/// two full, and whose node "fast" has room.
fn full_slow_node() -> (Director, Log, Log) {
    let d = Director::builder()
        .queue_capacity(2)
        .overflow(Overflow::Block)
        .block_timeout(BLOCK_TIMEOUT)
        .build()
        .unwrap();
    let (slow, fast) = (Log::new(), Log::new());
    d.register_with("slow", slow.node(), NodeOptions::default().connected(false)).unwrap();
    d.register("fast", fast.node()).unwrap();
    d.emit_to("slow", Message::new("t", "1")).unwrap();
    d.emit_to("slow", Message::new("t", "2")).unwrap();
    (d, slow, fast)
}

#[test]
fn a_full_block_lane_refuses_emit_until_at_its_deadline_and_nothing_is_accepted() {
    let (d, slow, fast) = full_slow_node();
    let (slow_before, fast_before) = (d.stats("slow").unwrap(), d.stats("fast").unwrap());
    let full = Err(Error::QueueFull("slow".into()));
    for to in [false, true] {
        let (start, wait) = (Instant::now(), Duration::from_millis(200));
        let got = if to {
            d.emit_to_until("slow", Message::new("t", "refused"), start + wait)
        } else {
            d.emit_until(Message::new("t", "refused"), start + wait)
        };
        let took = start.elapsed();
        assert_eq!(got, full, "emit_to_until: {to}");
        assert!(took >= wait, "it waited for room until its deadline, not less: {took:?}");
        assert!(took < BOUND, "it ended at its deadline, not after block_timeout: {took:?}");
    }
    // A deadline already past is try_emit: refused at once.
    assert_eq!(d.emit_until(Message::new("t", "refused"), Instant::now()), full);
    let (slow_after, fast_after) = (d.stats("slow").unwrap(), d.stats("fast").unwrap());
    assert_eq!((slow_after.accepted, slow_after.dropped), (slow_before.accepted, 0));
    assert_eq!(fast_after.accepted, fast_before.accepted, "a refused broadcast reaches nobody");
    d.node_connected("slow").unwrap();
    let (s, f) = (settle(&d, "slow"), settle(&d, "fast"));
    assert_eq!((s.accepted, s.delivered, s.dropped), (3, 3, 0), "the pull and \"1\", \"2\": {s:?}");
    assert!(s.balanced() && f.balanced(), "{s:?} {f:?}");
    assert_eq!(slow.user_topics(), ["t", "t"]);
    assert!(fast.user_topics().is_empty(), "{:?}", fast.user_topics());
}

#[test]
fn room_made_before_the_deadline_lets_emit_until_through() {
    let (d, slow, fast) = full_slow_node();
    let far = Instant::now() + Duration::from_secs(600);
    let d2 = d.clone();
    let waiter = std::thread::spawn(move || {
        let broadcast = d2.emit_until(Message::new("late", ""), far).map(|_| ());
        let unicast = d2.emit_to_until("slow", Message::new("later", ""), far).map(|_| ());
        (broadcast, unicast)
    });
    // Most likely waiting by now; either way it must get through.
    std::thread::sleep(Duration::from_millis(50));
    d.node_connected("slow").unwrap();
    assert_eq!(waiter.join().unwrap(), (Ok(()), Ok(())));
    wait_for("the late events", || slow.user_topics() == ["t", "t", "late", "later"]);
    wait_for("the broadcast", || fast.user_topics() == ["late"]);
    let s = settle(&d, "slow");
    assert_eq!((s.accepted, s.delivered, s.dropped), (5, 5, 0), "{s:?}");
}
