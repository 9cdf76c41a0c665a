//! The fiber: one per node, the only place that calls the node's callback.
//!
//! Ownership: the [`State`] lives behind `state`, the fiber's one mutex,
//! which is never held while user code runs (callbacks and hooks are called
//! after the guard is released). Each worker sleeps on its own signal; an
//! emitter wakes a worker only when the worker said it was going idle, so a
//! busy fiber costs emitters no system call. `exited` is signalled when the
//! last worker has dropped its handle on the node (the node's destructor)
//! and the fiber's leftovers have been dealt with.

pub(crate) mod lane;
pub(crate) mod retry;
pub(crate) mod state;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::event::Event;
use crate::stats::NodeStats;
use state::{Effects, Mode, State};

pub(crate) use worker::spawn_workers;

/// How a sleeping worker is woken.
#[derive(Debug)]
pub(crate) enum Signal {
    Thread(Condvar),
    Task(tokio::sync::Notify),
}

impl Signal {
    fn notify(&self) {
        match self {
            Signal::Thread(c) => {
                c.notify_one();
            }
            Signal::Task(n) => n.notify_one(),
        }
    }
}

/// One node's delivery worker(s) and lanes.
#[derive(Debug)]
pub(crate) struct Fiber {
    pub(crate) uid: Arc<str>,
    pub(crate) group: Option<Arc<str>>,
    pub(crate) overflow: lane::Overflow,
    /// The node's own hooks (only `on_dead_letter` is per node).
    pub(crate) hooks: crate::hooks::Hooks,
    /// Mirror of `State::connected` for routing decisions without the lock.
    pub(crate) connected: AtomicBool,
    state: Mutex<State>,
    signals: Box<[Signal]>,
    /// Blocked emitters wait here for room; also "all workers exited".
    space: Condvar,
    exited: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Fiber {
    pub(crate) fn new(
        uid: Arc<str>,
        group: Option<Arc<str>>,
        overflow: lane::Overflow,
        state: State,
        asynchronous: bool,
    ) -> Self {
        let k = state.live_workers;
        let signals = (0..k)
            .map(|_| {
                if asynchronous {
                    Signal::Task(tokio::sync::Notify::new())
                } else {
                    Signal::Thread(Condvar::new())
                }
            })
            .collect();
        Self {
            uid,
            group,
            overflow,
            hooks: Default::default(),
            connected: AtomicBool::new(state.connected),
            state: Mutex::new(state),
            signals,
            space: Condvar::new(),
            exited: Condvar::new(),
            threads: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Applies the wake-ups of `fx` (cheap; safe under the lock) and returns
    /// it for the caller to run hooks once the lock is gone.
    pub(crate) fn signal(&self, fx: &Effects) {
        let mut bits = fx.wake;
        while bits != 0 {
            let w = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            self.signals[w].notify();
        }
        if fx.space {
            self.space.notify_all();
        }
    }

    /// Accepts an event into the root lane or (by key / round-robin) a user lane.
    pub(crate) fn accept(&self, event: Arc<Event>, root: bool) -> Option<Effects> {
        let fx = self.state.lock().accept(event, root)?;
        // Signal with the lock released: a woken worker can then take the
        // lock at once instead of being requeued behind us.
        self.signal(&fx);
        Some(fx)
    }

    /// Waits until user lane `lane` has room or `deadline` passes.
    /// `None` when the fiber no longer accepts events.
    pub(crate) fn reserve(&self, lane: usize, deadline: Instant) -> Option<bool> {
        let mut st = self.state.lock();
        loop {
            match st.try_reserve(lane) {
                Some(false) if Instant::now() < deadline => {
                    // The lane is full: make sure its worker is draining it.
                    let fx = st.nudge(lane);
                    self.signal(&fx);
                    self.space.wait_until(&mut st, deadline);
                }
                other => return other,
            }
        }
    }

    pub(crate) fn release(&self, lane: usize) {
        self.state.lock().release(lane);
        self.space.notify_all();
    }

    /// Stores an event into room reserved earlier; false when the fiber
    /// stopped meanwhile (the reservation is then released).
    pub(crate) fn accept_reserved(&self, event: Arc<Event>, lane: usize) -> bool {
        let fx = self.state.lock().accept_reserved(event, lane);
        if let Some(fx) = &fx {
            self.signal(fx);
        }
        fx.is_some()
    }

    pub(crate) fn set_connected(&self, on: bool) {
        let mut st = self.state.lock();
        self.connected.store(on, Ordering::Relaxed);
        let fx = st.set_connected(on, Instant::now());
        self.signal(&fx);
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        let mut st = self.state.lock();
        let fx = st.set_mode(mode);
        self.signal(&fx);
    }

    /// Waits until every worker has exited or `deadline` passes.
    pub(crate) fn wait_exited(&self, deadline: Option<Instant>) -> bool {
        let mut st = self.state.lock();
        while !st.done {
            match deadline {
                Some(t) => {
                    if self.exited.wait_until(&mut st, t).timed_out() {
                        return st.done;
                    }
                }
                None => self.exited.wait(&mut st),
            }
        }
        true
    }

    /// Joins the fiber's threads (never call from one of them).
    pub(crate) fn join(&self) {
        let handles = std::mem::take(&mut *self.threads.lock());
        for h in handles {
            // A worker never panics: callbacks run under catch_unwind.
            let _ = h.join();
        }
    }

    pub(crate) fn stats(&self) -> NodeStats {
        self.state.lock().stats()
    }

    pub(crate) fn user_lane_for(&self, event: &Event) -> usize {
        self.state.lock().user_lane_for(event)
    }
}
