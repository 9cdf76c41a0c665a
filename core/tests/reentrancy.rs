//! SPEC 2.9: a callback may call any director function without deadlock;
//! closing the director from its own callback is refused with `Reentrant`.

mod common;
use common::*;

use chronica::{Batch, Director, Error, Message, NodeError};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_callback_emits_registers_unregisters_and_reads_stats() {
    let d = Director::new().unwrap();
    let results = Arc::new(Mutex::new(Vec::new()));
    let (dd, res) = (d.clone(), results.clone());
    d.register("n", move |b: &Batch| -> Result<(), NodeError> {
        for e in b.iter().filter(|e| e.topic() == "go") {
            let _ = e;
            let mut r = res.lock();
            r.push(dd.emit(Message::new("echo", "").source("n")).is_ok());
            r.push(dd.register("child", sink).is_ok());
            r.push(dd.emit_to("child", Message::new("hi", "")).is_ok());
            r.push(dd.stats("n").is_ok());
            r.push(dd.unregister("child").is_ok());
            r.push(dd.unregister("n").is_ok()); // itself
            r.push(dd.close(Duration::from_secs(1)) == Err(Error::Reentrant));
        }
        Ok(())
    })
    .unwrap();
    let other = Log::new();
    d.register("other", other.node()).unwrap();
    d.emit(Message::new("go", "")).unwrap();
    wait_for("the callback to finish", || results.lock().len() == 7);
    assert!(results.lock().iter().all(|ok| *ok), "{:?}", results.lock());
    wait_for("echo", || other.user_topics().contains(&"echo".to_owned()));
    assert_eq!(d.nodes(), ["other"]);
    assert_eq!(d.close(Duration::from_secs(2)), Ok(0));
}

/// Registers one node per `(me, next)` whose callback, once every one of
/// them is inside, unregisters `next`; all must return.
fn unregister_in_a_circle(circle: &[(&'static str, &'static str)]) {
    let d = Director::new().unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    // Every callback is inside before any unregisters.
    let all_inside = Arc::new(std::sync::Barrier::new(circle.len()));
    for &(me, next) in circle {
        let (dd, done, barrier) = (d.clone(), done.clone(), all_inside.clone());
        d.register(me, move |b: &Batch| -> Result<(), NodeError> {
            if b.iter().any(|e| e.topic() == "bye") {
                barrier.wait();
                assert!(dd.unregister(next).is_ok());
                done.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
        .unwrap();
    }
    d.emit(Message::new("bye", "")).unwrap();
    wait_for("every callback to return", || done.load(Ordering::SeqCst) == circle.len());
    assert!(d.nodes().is_empty());
    assert_eq!(d.close(Duration::from_secs(2)), Ok(0));
}

#[test]
fn two_nodes_unregistering_each_other_do_not_deadlock() {
    unregister_in_a_circle(&[("x", "y"), ("y", "x")]);
}

#[test]
fn hooks_may_call_the_director() {
    let seen = Arc::new(Mutex::new(None));
    let cell: Arc<Mutex<Option<Director>>> = Arc::new(Mutex::new(None));
    let (c, s) = (cell.clone(), seen.clone());
    let d = Director::builder()
        .queue_capacity(1)
        .on_drop(move |r| {
            if let Some(d) = c.lock().as_ref() {
                *s.lock() = Some(d.stats(r.uid).map(|st| st.dropped));
            }
        })
        .build()
        .unwrap();
    *cell.lock() = Some(d.clone());
    d.register_with("n", sink, chronica::NodeOptions::default().connected(false)).unwrap();
    d.emit(Message::new("t", "")).unwrap();
    d.emit(Message::new("t", "")).unwrap();
    assert_eq!(*seen.lock(), Some(Ok(1)));
    cell.lock().take();
}

/// A node's first callback (its pull_current_state) can already call the
/// director about the node itself. Its workers once started before its
/// route existed, so such calls could fail with `UnknownNode`.
#[test]
fn the_first_callback_can_name_its_own_node() {
    let d = Director::new().unwrap();
    let failures = Arc::new(Mutex::new(Vec::new()));
    const NODES: usize = 300;
    let seen = Arc::new(AtomicUsize::new(0));
    for i in 0..NODES {
        let uid = format!("n{i}");
        let (dd, me, fails, seen) = (d.clone(), uid.clone(), failures.clone(), seen.clone());
        d.register(&uid, move |b: &Batch| -> Result<(), NodeError> {
            if b.iter().any(|e| e.topic() == chronica::PULL_CURRENT_STATE) {
                if let Err(e) = dd.stats(&me) {
                    fails.lock().push(format!("stats({me}): {e}"));
                }
                if let Err(e) = dd.emit_to(&me, Message::new("self", "").source(me.as_str())) {
                    fails.lock().push(format!("emit_to({me}): {e}"));
                }
                seen.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
        .unwrap();
    }
    wait_for("every first callback", || seen.load(Ordering::SeqCst) == NODES);
    assert_eq!(*failures.lock(), Vec::<String>::new());
    d.close(Duration::from_secs(10)).unwrap();
}

/// A hook that runs on the emitting thread (a drop at an overflow) is one
/// of the director's callbacks too: closing the director there is refused
/// with `Reentrant`, and the director goes on.
#[test]
fn close_from_a_hook_on_the_emitting_thread_is_refused() {
    let me: Arc<std::sync::OnceLock<Director>> = Arc::default();
    let outcome: Arc<Mutex<Vec<chronica::Result<u64>>>> = Arc::default();
    let (m, o) = (me.clone(), outcome.clone());
    let d = Director::builder()
        .queue_capacity(1)
        .on_drop(move |_: &chronica::DropReport<'_>| {
            if let Some(d) = m.get() {
                o.lock().push(d.close(Duration::from_secs(1)));
            }
        })
        .build()
        .unwrap();
    me.set(d.clone()).unwrap();
    d.register_with(
        "off",
        |_: &Batch| -> Result<(), NodeError> { Ok(()) },
        chronica::NodeOptions::default().connected(false),
    )
    .unwrap();
    d.emit(Message::new("t", "1")).unwrap();
    d.emit(Message::new("t", "2")).unwrap(); // drops "1" on this thread
    assert_eq!(*outcome.lock(), vec![Err(Error::Reentrant)]);
    assert!(!d.is_closed());
    d.emit(Message::new("t", "3")).unwrap();
    assert_eq!(d.close(Duration::from_secs(5)), Ok(2), "the pull and the last event are left");
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count())
}

/// One-shot nodes unregister themselves from their callback, where the
/// unregister cannot wait for them. Their exited threads used to stay
/// unjoined (stacks mapped) until close; later registrations now join them.
#[test]
fn nodes_that_unregister_themselves_do_not_pile_up_until_close() {
    const ONE_SHOTS: usize = 300;
    let d = Director::new().unwrap();
    let before = mappings();
    for i in 0..ONE_SHOTS {
        let uid = format!("once-{i}");
        let (dir, me) = (d.clone(), uid.clone());
        d.register(&uid, move |_: &chronica::Batch| -> Result<(), chronica::NodeError> {
            dir.unregister(&me).map_err(|e| chronica::NodeError::new(e.to_string()))
        })
        .unwrap();
        // Its pull makes it unregister itself; wait until it is gone.
        wait_for("the one-shot to leave", || d.nodes().is_empty());
    }
    // Every earlier one-shot has exited by now: the next membership change
    // joins them (this one reaps the last ones too).
    std::thread::sleep(std::time::Duration::from_millis(50));
    d.register("last", sink).unwrap();
    d.unregister("last").unwrap();
    let grown = mappings().saturating_sub(before);
    // Two mappings per unjoined thread stack; glibc keeps a few freed
    // stacks cached, which is what a small allowance covers.
    assert!(grown < ONE_SHOTS / 2, "{grown} more memory mappings after {ONE_SHOTS} one-shot nodes");
    assert_eq!(d.close(std::time::Duration::from_secs(5)), Ok(0));
}

/// A director under `block` whose lanes hold one event, with a block
/// timeout far beyond the tests' own: a wait that should not be made
/// would hang them.
fn block_of_one() -> Director {
    Director::builder()
        .overflow(chronica::Overflow::Block)
        .queue_capacity(1)
        .block_timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Sets its flag when dropped: a node value's drop, seen from outside.
struct OnDrop(Arc<AtomicBool>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// SPEC 2.7: `unregister` returns after the node's last callback has
/// finished (and the node value is dropped), also when called from inside
/// another node's callback; only its own callback is exempt.
#[test]
fn an_unregister_from_another_callback_waits_for_the_node() {
    let d = Director::new().unwrap();
    let [started, finished, dropped] = [(); 3].map(|()| Arc::new(AtomicBool::new(false)));
    let (s, f, guard) = (started.clone(), finished.clone(), OnDrop(dropped.clone()));
    d.register("slow", move |b: &Batch| -> Result<(), NodeError> {
        let _keep = &guard;
        if b.iter().any(|e| e.topic() == "work") {
            s.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(300));
            f.store(true, Ordering::SeqCst);
        }
        Ok(())
    })
    .unwrap();
    let seen: Arc<Mutex<Option<(bool, bool)>>> = Arc::default();
    let (dd, seen2, s, f, dr) = (d.clone(), seen.clone(), started.clone(), finished.clone(), dropped.clone());
    d.register("boss", move |b: &Batch| -> Result<(), NodeError> {
        if b.iter().any(|e| e.topic() == "fire") {
            while !s.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            dd.unregister("slow").unwrap();
            *seen2.lock() = Some((f.load(Ordering::SeqCst), dr.load(Ordering::SeqCst)));
        }
        Ok(())
    })
    .unwrap();
    d.emit_to("slow", Message::new("work", "")).unwrap();
    d.emit_to("boss", Message::new("fire", "")).unwrap();
    wait_for("the unregister to return", || seen.lock().is_some());
    assert_eq!(
        *seen.lock(),
        Some((true, true)),
        "(callback finished, node dropped) when unregister returned"
    );
    assert_eq!(d.close(Duration::from_secs(2)), Ok(0));
}

/// Three callbacks unregistering each other in a circle: each waits for
/// the next, but the one that would close the circle does not (it would
/// wait for itself), so all return.
#[test]
fn a_circle_of_unregisters_from_callbacks_does_not_deadlock() {
    unregister_in_a_circle(&[("a", "b"), ("b", "c"), ("c", "a")]);
}

/// A callback waiting (under `block`) for room in the lane of a node
/// whose callback waits for it in `unregister` would wait for good: only
/// that callback's return makes room. Whichever wait comes second is not
/// made: an emit fails at once with `QueueFull`, an unregister does not
/// wait.
#[test]
fn a_block_emit_and_an_unregister_never_wait_for_each_other() {
    for emit_first in [false, true] {
        let d = block_of_one();
        // t is inside its callback; x may go on.
        let [t_in, go] = [(); 2].map(|()| Arc::new(AtomicBool::new(false)));
        let until = |flag: &AtomicBool| {
            while !flag.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
        };
        let emitted: Arc<Mutex<Option<Result<u64, Error>>>> = Arc::default();
        let unregistered: Arc<Mutex<Option<Result<(), Error>>>> = Arc::default();
        let (dd, t_in2, go2, out) = (d.clone(), t_in.clone(), go.clone(), emitted.clone());
        d.register("t", move |b: &Batch| -> Result<(), NodeError> {
            if b.iter().any(|e| e.topic() == "go") {
                t_in2.store(true, Ordering::SeqCst);
                if !emit_first {
                    // Let x start waiting for us first.
                    until(&go2);
                    std::thread::sleep(Duration::from_millis(200));
                }
                *out.lock() = Some(dd.emit_to("x", Message::new("late", "")));
            }
            Ok(())
        })
        .unwrap();
        let (dd, t_in2, go2, out) = (d.clone(), t_in.clone(), go.clone(), unregistered.clone());
        d.register("x", move |b: &Batch| -> Result<(), NodeError> {
            if b.iter().any(|e| e.topic() == "fire") {
                // Its lane stays full while this callback runs.
                if emit_first {
                    until(&go2);
                } else {
                    until(&t_in2);
                    go2.store(true, Ordering::SeqCst);
                }
                *out.lock() = Some(dd.unregister("t"));
            }
            Ok(())
        })
        .unwrap();
        d.emit_to("x", Message::new("fire", "")).unwrap();
        d.emit_to("t", Message::new("go", "")).unwrap();
        if emit_first {
            // Let t start waiting for room in x's lane first.
            until(&t_in);
            std::thread::sleep(Duration::from_millis(200));
            go.store(true, Ordering::SeqCst);
        }
        wait_for("both callbacks to return", || emitted.lock().is_some() && unregistered.lock().is_some());
        assert_eq!(unregistered.lock().take(), Some(Ok(())), "emit first: {emit_first}");
        let emit = emitted.lock().take().map(|r| r.map(drop));
        let want = if emit_first { Ok(()) } else { Err(Error::QueueFull("x".into())) };
        assert_eq!(emit, Some(want), "emit first: {emit_first}");
        d.close(Duration::from_secs(5)).unwrap();
    }
}

/// A callback emitting to its own full lane under `block`: only its own
/// return can make room, so the emit fails at once with `QueueFull` (it
/// waited out `block_timeout`, and with no timeout it never returned).
#[test]
fn a_callback_emitting_into_its_own_full_lane_is_not_made_to_wait() {
    let d = block_of_one();
    let outcome: Arc<Mutex<Option<Result<u64, Error>>>> = Arc::default();
    let (dir, out) = (d.clone(), outcome.clone());
    d.register("self", move |b: &Batch| -> Result<(), NodeError> {
        if b.iter().any(|e| e.topic() == "go") {
            *out.lock() = Some(dir.emit_to("self", Message::new("again", "")));
        }
        Ok(())
    })
    .unwrap();
    d.emit_to("self", Message::new("go", "")).unwrap();
    wait_for("the emit from the callback to return", || outcome.lock().is_some());
    assert_eq!(outcome.lock().take(), Some(Err(Error::QueueFull("self".into()))));
    assert_eq!(d.close(Duration::from_secs(5)), Ok(0));
}
