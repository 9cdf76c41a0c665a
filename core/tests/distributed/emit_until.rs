//! `Distributed::try_emit_until`, `emit_until` and `emit_to_until`: waits
//! for room in a full local `block` target that end at the caller's
//! deadline instead of after `block_timeout`. Refused, the event reaches no
//! node and is not published; `emit_until` then pushes it under the lane's
//! rule, as `emit` does after `block_timeout`.

use std::time::{Duration, Instant};

use chronica::Message;

use crate::common::wait_for;
use crate::try_emit::{full, Blocked};

const WAIT: Duration = Duration::from_secs(30);

/// Far beyond the deadlines below: a wait for it instead would fail the
/// test (see `BOUND`), not pass it.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// A bound on a wait meant to end at a deadline of a fraction of a second:
/// generous for a loaded machine, well short of `BLOCK_TIMEOUT`.
const BOUND: Duration = Duration::from_secs(20);

/// Runs `emit` with a deadline 200 ms away; checks it ended at that
/// deadline (not before, nor after `block_timeout`).
fn until_200ms(emit: impl FnOnce(Instant) -> chronica::mq::MqResult<u64>) -> chronica::mq::MqResult<u64> {
    let (start, wait) = (Instant::now(), Duration::from_millis(200));
    let got = emit(start + wait);
    let took = start.elapsed();
    assert!(took >= wait, "it waited for room until its deadline, not less: {took:?}");
    assert!(took < BOUND, "it ended at its deadline, not after block_timeout: {took:?}");
    got
}

#[test]
fn waits_for_room_end_at_the_callers_deadline() {
    let t = Blocked::new(BLOCK_TIMEOUT);
    let Blocked { da, a, slow, far, .. } = &t;

    a.emit(Message::new("first", "1")).unwrap();
    assert!(full(&until_200ms(|d| a.try_emit_until(Message::new("refused", "2"), d))));
    assert!(full(&until_200ms(|d| a.emit_to_until("slow", Message::new("refused", "3"), d))));
    let s = da.stats("slow").unwrap();
    assert_eq!((s.accepted, s.dropped), (2, 0), "pull_current_state and the first event only");
    // emit_until, still full at its deadline, pushes under the lane's rule.
    until_200ms(|d| a.emit_until(Message::new("pushed", "4"), d)).unwrap();
    let s = da.stats("slow").unwrap();
    assert_eq!((s.accepted, s.dropped), (3, 1), "accepted, then dropped as the newest");

    std::thread::scope(|s| {
        let late = s.spawn(|| a.try_emit_until(Message::new("late", "5"), Instant::now() + WAIT));
        // Most likely waiting by now; either way it must get through.
        std::thread::sleep(Duration::from_millis(50));
        da.node_connected("slow").unwrap();
        late.join().unwrap().unwrap();
    });
    let topics = |log: &crate::common::Log| {
        // The lag notice of the drop aside.
        log.lock().iter().filter(|e| !e.root).map(|e| e.topic.clone()).collect::<Vec<_>>()
    };
    assert!(wait_for(WAIT, || topics(far).len() == 3 && topics(slow).len() == 2), "{:?}", slow.lock());
    assert!(a.flush(WAIT));
    assert_eq!(topics(slow), ["first", "late"]);
    assert_eq!(topics(far), ["first", "pushed", "late"], "the refused emits were not published");
    assert!(wait_for(WAIT, || da.stats("slow").unwrap().pending == 0));
    assert!(da.stats("slow").unwrap().balanced());
    t.close();
}
