//! Model tests of the fiber's lock-free protocol: the user lane's room word
//! and queue (`inbox.rs`) and the wake-up handshake between emitters and a
//! worker going to sleep (`wake.rs`). loom runs each test under every
//! interleaving (and every permitted reordering of the atomics) up to its
//! preemption bound, so a lost wake-up shows as a deadlock and an
//! over-committed lane as a failed assert, however rare.
//!
//! Run with `RUSTFLAGS="--cfg chronica_loom" cargo test -p chronica --lib
//! --release fiber::loom_tests` (scripts/test-rust.sh does). The rest of
//! the fiber (its mutex, conditions and threads) is not modelled: it takes
//! the lock, which orders it.
//!
//! Each test pops and parks as the worker does in `worker.rs` and
//! `State::next_work`, with the lane and gate code the engine runs.

use std::sync::Arc;

use loom::thread;

use super::inbox::{Claim, UserLane};
use super::wake::{after_pushes, Gate, Idle};
use crate::event::Event;

/// Bounded, because the unbounded search of the two wake-up tests does not
/// end in ten minutes here; five preemptions take about 15 s in all, and
/// every mutation tried (a fence removed, a CAS made a store, a closed
/// check dropped) already fails at three.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(5);
    builder.check(f);
}

/// An emitter's fast path, as `Fiber::offer_into` and `Wakes::flush` take
/// it for a cold sleeper: claim, push, fence, look at the gate.
fn offer(lane: &UserLane, gate: &Gate, worker: &thread::Thread, id: u64) -> Claim {
    let claim = lane.admit();
    if let Claim::Room(_) = claim {
        lane.push(Event::for_test(id));
        after_pushes();
        if gate.wake_if(|idle| idle == Idle::Cold) {
            worker.unpark();
        }
    }
    claim
}

/// A worker that takes events until it has `want`, sleeping cold whenever
/// its lane looks empty, as `run_thread` does. Returns the ids in order.
fn worker(lane: &UserLane, gate: &Gate, want: usize) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        while let Some(e) = lane.pop_one() {
            got.push(e.id);
            lane.settle(1);
        }
        if got.len() == want {
            return got;
        }
        if gate.sleep_unless(Idle::Cold, || !lane.is_empty()) {
            thread::park();
        }
        gate.set_busy();
    }
}

/// Two emitters race a worker that is going to sleep: each event is
/// delivered, so neither wake-up is lost (a lost one leaves the worker
/// parked for ever, which loom reports as a deadlock).
#[test]
fn a_worker_going_to_sleep_misses_no_push() {
    model(|| {
        let lane = Arc::new(UserLane::new(4));
        let gate = Arc::new(Gate::default());
        let w = {
            let (lane, gate) = (lane.clone(), gate.clone());
            thread::spawn(move || worker(&lane, &gate, 2))
        };
        let me = w.thread().clone();
        let e = {
            let (lane, gate, me) = (lane.clone(), gate.clone(), me.clone());
            thread::spawn(move || assert!(matches!(offer(&lane, &gate, &me, 1), Claim::Room(_))))
        };
        assert!(matches!(offer(&lane, &gate, &me, 2), Claim::Room(_)));
        e.join().unwrap();
        let mut got = w.join().unwrap();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        assert_eq!(lane.held(), 0);
    });
}

/// One emitter's events reach a sleeping worker in the order emitted.
#[test]
fn one_emitters_events_arrive_in_order() {
    model(|| {
        let lane = Arc::new(UserLane::new(4));
        let gate = Arc::new(Gate::default());
        let w = {
            let (lane, gate) = (lane.clone(), gate.clone());
            thread::spawn(move || worker(&lane, &gate, 3))
        };
        for id in 1..=3 {
            assert!(matches!(offer(&lane, &gate, w.thread(), id), Claim::Room(_)));
        }
        assert_eq!(w.join().unwrap(), [1, 2, 3]);
    });
}

/// An emitter racing `node_connected` for a disconnected worker. The
/// emitter skips the wake-up when it reads the node as disconnected
/// (`Fiber::wake_after_fence`, a relaxed read after its fence); the
/// connect sets the flag and wakes every worker under the fiber lock
/// (`Fiber::set_connected`), and the worker looks at the flag under that
/// lock and at its lane after its own fence. The event is delivered
/// whichever way they interleave. The lock and the emitter's flag check
/// are modelled here as those functions take them.
#[test]
fn an_emitter_racing_a_connect_loses_no_wake_up() {
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::Mutex;

    model(|| {
        let lane = Arc::new(UserLane::new(4));
        let gate = Arc::new(Gate::default());
        // The fiber lock over `State::connected`, and the emitters' copy.
        let state = Arc::new(Mutex::new(false));
        let connected = Arc::new(AtomicBool::new(false));
        let w = {
            let (lane, gate, state) = (lane.clone(), gate.clone(), state.clone());
            thread::spawn(move || {
                let mut st = state.lock().unwrap();
                loop {
                    if *st {
                        if let Some(e) = lane.pop_one() {
                            lane.settle(1);
                            return e.id;
                        }
                    }
                    let on = *st;
                    if gate.sleep_unless(Idle::Cold, || on && !lane.is_empty()) {
                        drop(st);
                        thread::park();
                        st = state.lock().unwrap();
                    }
                    gate.set_busy();
                }
            })
        };
        let me = w.thread().clone();
        let connect = {
            let (gate, state, connected, me) = (gate.clone(), state.clone(), connected.clone(), me.clone());
            thread::spawn(move || {
                let mut st = state.lock().unwrap();
                connected.store(true, Ordering::Relaxed);
                *st = true;
                if gate.wake_if(|_| true) {
                    me.unpark();
                }
            })
        };
        assert!(matches!(lane.admit(), Claim::Room(_)));
        lane.push(Event::for_test(7));
        after_pushes();
        if connected.load(Ordering::Relaxed) && gate.wake_if(|idle| idle == Idle::Cold) {
            me.unpark();
        }
        connect.join().unwrap();
        assert_eq!(w.join().unwrap(), 7);
        assert_eq!(lane.held(), 0);
    });
}

/// Emitters racing for the last room of a lane while the worker frees some:
/// the lane never holds more than its capacity, and every admitted event is
/// either taken or still stored and held, so nothing is lost or counted
/// twice.
#[test]
fn room_is_never_overcommitted() {
    model(|| {
        let lane = Arc::new(UserLane::new(1));
        let emitters: Vec<_> = (1..=2u64)
            .map(|id| {
                let lane = lane.clone();
                thread::spawn(move || match lane.admit() {
                    Claim::Room(held) => {
                        assert_eq!(held, 1, "a lane of capacity 1 holding {held}");
                        lane.push(Event::for_test(id));
                        1
                    }
                    Claim::Full => 0,
                    Claim::Closed => unreachable!("nobody closes the lane"),
                })
            })
            .collect();
        let taken = match lane.pop_one() {
            Some(_) => {
                lane.settle(1);
                1
            }
            None => 0,
        };
        let admitted: u64 = emitters.into_iter().map(|e| e.join().unwrap()).sum();
        let mut stored = 0;
        while lane.pop_one().is_some() {
            stored += 1;
        }
        assert!(admitted >= 1, "the first claim always finds room");
        assert_eq!(admitted, taken + stored);
        assert_eq!(lane.held(), stored);
    });
}

/// Emitters racing the lane's close, as an unregister closes it and then
/// takes what is left (`State::take_leftovers`): a `block` emitter between
/// its reservation and its commit, a plain one between its claim and its
/// push. Every event that was stored is taken, and the lane ends empty
/// with nothing held: a claim or commit that succeeded after the close
/// would leave an event nobody takes.
#[test]
fn a_close_takes_every_event_claimed_before_it() {
    model(|| {
        let lane = Arc::new(UserLane::new(2));
        let blocking = {
            let lane = lane.clone();
            thread::spawn(move || match lane.reserve() {
                Claim::Room(_) => match lane.commit() {
                    Some(_) => {
                        lane.push(Event::for_test(1));
                        vec![1]
                    }
                    None => vec![],
                },
                Claim::Closed => vec![],
                Claim::Full => unreachable!("the lane has room for both"),
            })
        };
        let plain = {
            let lane = lane.clone();
            thread::spawn(move || match lane.admit() {
                Claim::Room(_) => {
                    lane.push(Event::for_test(2));
                    vec![2]
                }
                Claim::Closed => vec![],
                Claim::Full => unreachable!("the lane has room for both"),
            })
        };
        lane.close();
        let mut taken = Vec::new();
        lane.take_closed(lane.held(), &mut taken);
        lane.settle(taken.len());
        let mut stored = blocking.join().unwrap();
        stored.extend(plain.join().unwrap());
        let mut taken: Vec<u64> = taken.iter().map(|e| e.id).collect();
        taken.sort_unstable();
        assert_eq!(taken, stored);
        assert_eq!(lane.held(), 0);
        assert!(lane.pop_one().is_none());
        assert_eq!(lane.reserve(), Claim::Closed);
    });
}
