//! The fiber: one per node, the only place that calls the node's callback.
//!
//! Ownership: the [`State`] lives behind `state`, the fiber's one mutex,
//! which is never held while user code runs (callbacks and hooks are called
//! after the guard is released). A user event does not take that mutex: its
//! emitter claims room in a user lane with one atomic operation and pushes
//! into the lane's lock-free queue (`inbox.rs`); only a full lane, root
//! events, block waits and the workers take the lock. Each worker sleeps on
//! its own signal; an emitter wakes a worker only when the worker's gate says
//! it went idle, so a busy fiber costs emitters no system call. `exited` is
//! signalled when the last worker has dropped its handle on the node (the
//! node's destructor) and the fiber's leftovers have been dealt with.

pub(crate) mod drain_end;
pub(crate) mod inbox;
pub(crate) mod lane;
#[cfg(all(test, chronica_loom))]
mod loom_tests;
pub(crate) mod retry;
pub(crate) mod state;
mod sync;
pub(crate) mod wake;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::director::peers::Peers;
use crate::director::Registration;
use crate::event::Event;
use crate::stats::NodeStats;
use inbox::{Claim, Run, UserLane};
use state::{Effects, Mode, State};
use wake::{Gate, Idle};

#[cfg(test)]
pub(crate) use worker::FAIL_SPAWN;
pub(crate) use worker::{panic_error, runs_tasks_of, spawn_workers};

/// How a sleeping worker is woken. Both keep a wake-up that comes before
/// the worker sleeps (a thread's unpark token, a task's stored permit), so
/// emitters can signal without the fiber lock.
#[derive(Debug)]
pub(crate) enum Signal {
    /// The worker thread, set by the thread itself before it first sleeps.
    Thread(OnceLock<Thread>),
    Task(tokio::sync::Notify),
}

impl Signal {
    fn notify(&self) {
        match self {
            Signal::Thread(t) => {
                if let Some(t) = t.get() {
                    t.unpark();
                }
            }
            Signal::Task(n) => n.notify_one(),
        }
    }
}

/// What became of a user event offered to a fiber.
#[derive(Debug)]
pub(crate) enum Offered {
    /// Stored; nothing else happened.
    Stored,
    /// Stored or refused under the overflow policy; the effects say what
    /// was dropped (hooks to run).
    Overflowed(Effects),
    /// The fiber no longer accepts events.
    Refused,
}

/// Wake-up checks owed by pushes into user lanes, made together when this
/// is flushed or dropped: one SeqCst fence, then each lane's gate. A
/// broadcast to eight nodes paid eight fences, a sizeable share of the
/// emitter's time; one suffices, since each push still comes before the
/// fence and each gate read after it (the handshake of `wake.rs`).
/// Flush before running user code (a hook), so that no worker waits for it.
#[derive(Default)]
pub(crate) struct Wakes<'a>(smallvec::SmallVec<[(&'a Fiber, usize, u64); WAKES_AT_ONCE]>);

/// Checks owed at most before a flush: one fence per so many targets keeps
/// the list on the stack (64 nodes spilled it to the heap, which cost more
/// than the fences saved).
const WAKES_AT_ONCE: usize = 16;

impl<'a> Wakes<'a> {
    /// Owes the check of lane `lane` of `fiber`, which now holds `held`.
    fn owe(&mut self, fiber: &'a Fiber, lane: usize, held: u64) {
        if self.0.len() == WAKES_AT_ONCE {
            self.flush();
        }
        self.0.push((fiber, lane, held));
    }

    /// Makes the owed checks now.
    pub(crate) fn flush(&mut self) {
        if self.0.is_empty() {
            return;
        }
        wake::after_pushes();
        for (fiber, lane, held) in self.0.drain(..) {
            fiber.wake_after_fence(lane, held);
        }
    }
}

impl Drop for Wakes<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One node's delivery worker(s) and lanes.
#[derive(Debug)]
pub(crate) struct Fiber {
    pub(crate) uid: Arc<str>,
    /// Which registration of `uid` this is (see `Registration`).
    pub(crate) registration: Registration,
    pub(crate) group: Option<Arc<str>>,
    pub(crate) overflow: lane::Overflow,
    /// The node's own hooks (only `on_dead_letter` is per node).
    pub(crate) hooks: crate::hooks::Hooks,
    /// Mirror of `State::connected` for routing decisions without the lock.
    pub(crate) connected: AtomicBool,
    state: Mutex<State>,
    users: Arc<[UserLane]>,
    gates: Arc<[Gate]>,
    round_robin: AtomicUsize,
    /// Events waiting in a lane that make a warm worker worth waking.
    backlog: u64,
    signals: Box<[Signal]>,
    /// Blocked emitters wait here for room; also "all workers exited".
    space: Condvar,
    exited: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The drain deadline, readable by the node's callbacks.
    pub(crate) drain_end: Arc<drain_end::DrainEnd>,
}

impl Fiber {
    pub(crate) fn new(
        uid: Arc<str>,
        registration: Registration,
        group: Option<Arc<str>>,
        overflow: lane::Overflow,
        state: State,
        batch_size: usize,
        asynchronous: bool,
    ) -> Self {
        let k = state.live_workers;
        let signals = (0..k)
            .map(|_| {
                if asynchronous {
                    Signal::Task(tokio::sync::Notify::new())
                } else {
                    Signal::Thread(OnceLock::new())
                }
            })
            .collect();
        let users = state.user_lanes();
        // Sixteen batches (or half the lane): below that a warm worker's own
        // flush timer is cheaper than a wake-up, which on a small machine
        // costs the emitter microseconds.
        let backlog = (batch_size as u64).saturating_mul(16).min(users[0].capacity() / 2).max(1);
        Self {
            uid,
            registration,
            group,
            overflow,
            hooks: Default::default(),
            connected: AtomicBool::new(state.connected),
            gates: state.gates(),
            users,
            round_robin: AtomicUsize::new(0),
            backlog,
            state: Mutex::new(state),
            signals,
            space: Condvar::new(),
            exited: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            drain_end: Arc::default(),
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

    /// Accepts a root event into the root lane.
    pub(crate) fn accept_root(&self, event: Arc<Event>) -> Option<Effects> {
        let fx = self.state.lock().accept_root(event)?;
        // Signal with the lock released: a woken worker can then take the
        // lock at once instead of being requeued behind us.
        self.signal(&fx);
        Some(fx)
    }

    /// Places a fresh fiber's `pull_current_state`, which no later root
    /// event can evict (see `Lane::push_pinned`); its payload, rendered
    /// from `peers` when it leaves the lane, is empty until then.
    pub(crate) fn accept_first(&self, event: Arc<Event>, peers: Peers) {
        if let Some(fx) = self.state.lock().accept_first(event, peers) {
            self.signal(&fx);
        }
    }

    /// Offers a user event to its lane (by key, else round-robin) without
    /// taking the fiber lock unless the lane is full.
    pub(crate) fn offer(&self, event: Arc<Event>) -> Offered {
        let mut wakes = Wakes::default();
        self.offer_into(event, &mut wakes)
    }

    /// [`offer`](Self::offer) that leaves the wake-up check of a stored
    /// event to `wakes` (see [`Wakes`]).
    pub(crate) fn offer_into<'a>(&'a self, event: Arc<Event>, wakes: &mut Wakes<'a>) -> Offered {
        let lane = self.user_lane_for(&event);
        match self.users[lane].admit() {
            Claim::Room(held) => {
                self.users[lane].push(event);
                wakes.owe(self, lane, held);
                Offered::Stored
            }
            Claim::Closed => Offered::Refused,
            Claim::Full => {
                let fx = self.state.lock().overflow(event, lane);
                match fx {
                    Some(fx) => {
                        self.signal(&fx);
                        Offered::Overflowed(fx)
                    }
                    None => Offered::Refused,
                }
            }
        }
    }

    /// After a push into lane `lane`, which now holds `held` events, and a
    /// fence ([`Wakes::flush`]): wakes its worker if it sleeps cold, or warm
    /// with a backlog worth a wake-up.
    fn wake_after_fence(&self, lane: usize, held: u64) {
        // A disconnected worker cannot deliver; connecting wakes everyone.
        if !self.connected.load(Ordering::Relaxed) {
            return;
        }
        let backlog = held >= self.backlog || held >= self.users[lane].capacity();
        if self.gates[lane].wake_if(|idle| idle == Idle::Cold || backlog) {
            self.signals[lane].notify();
        }
    }

    /// Offers a run of events to user lane `lane` in one claim: `Stored`,
    /// or `Refused` with nothing stored when the lane lacks room for all of
    /// them or is closed (the caller then offers them one by one, under the
    /// overflow policy or to another group member).
    pub(crate) fn offer_run_into<'a>(&'a self, run: &Run, lane: usize, wakes: &mut Wakes<'a>) -> Offered {
        match self.users[lane].admit_run(run.len()) {
            Claim::Room(held) => {
                self.users[lane].push_run(run.clone());
                wakes.owe(self, lane, held);
                Offered::Stored
            }
            Claim::Full | Claim::Closed => Offered::Refused,
        }
    }

    /// How many user lanes (its `concurrency`) the fiber has.
    pub(crate) fn lanes(&self) -> usize {
        self.users.len()
    }

    /// The capacity of user lane `lane`.
    pub(crate) fn lane_capacity(&self, lane: usize) -> usize {
        self.users[lane].capacity() as usize
    }

    /// Reserves room in user lane `lane` if there is some now.
    pub(crate) fn try_reserve(&self, lane: usize) -> Claim {
        self.try_reserve_run(lane, 1)
    }

    /// Reserves room for `n` events in user lane `lane` if there is some now.
    pub(crate) fn try_reserve_run(&self, lane: usize, n: usize) -> Claim {
        self.users[lane].reserve_run(n)
    }

    /// Waits until user lane `lane` has room reserved for us, or `deadline`
    /// passes (`Some(false)`). `None` when the fiber no longer accepts events.
    /// From inside the callback whose worker alone drains the lane it does
    /// not wait: only that callback's return can make room, so the wait
    /// could only time out (or, with no timeout, never end). Nor from a
    /// node this one waits for (an unregister from its callback).
    pub(crate) fn reserve(&self, lane: usize, deadline: Instant) -> Option<bool> {
        self.reserve_run(lane, 1, deadline)
    }

    /// [`reserve`](Self::reserve) for `n` events at once (at most the
    /// lane's capacity).
    pub(crate) fn reserve_run(&self, lane: usize, n: usize, deadline: Instant) -> Option<bool> {
        let l = &self.users[lane];
        match l.reserve_run(n) {
            Claim::Room(_) => return Some(true),
            Claim::Closed => return None,
            Claim::Full if crate::director::context::in_lane(self, lane) => return Some(false),
            Claim::Full => {}
        }
        // Another node's worker waiting here is an edge in `waits`, unless
        // this node waits for it already: then its callback cannot return
        // to make room while we wait, and we do not.
        let me = self as *const Self as usize;
        let _edge = match crate::director::context::worker_fiber().filter(|w| *w != me) {
            Some(waiter) => match crate::director::waits::begin(waiter, me) {
                Some(edge) => Some(edge),
                None => return Some(false),
            },
            None => None,
        };
        // Room comes back under the lock (`State::complete`), which then
        // signals `space`: checking again under it cannot miss that.
        let mut st = self.state.lock();
        loop {
            match l.reserve_run(n) {
                Claim::Room(_) => return Some(true),
                Claim::Closed => return None,
                Claim::Full if Instant::now() < deadline => {
                    // The lane is full: make sure its worker is draining it.
                    let fx = st.nudge(lane);
                    self.signal(&fx);
                    self.space.wait_until(&mut st, deadline);
                }
                Claim::Full => return Some(false),
            }
        }
    }

    pub(crate) fn release(&self, lane: usize) {
        self.release_run(lane, 1);
    }

    /// Gives back a reservation of `n` events.
    pub(crate) fn release_run(&self, lane: usize, n: usize) {
        self.users[lane].release_run(n);
        let _st = self.state.lock();
        self.space.notify_all();
    }

    /// Stores an event into room reserved earlier; false when the fiber
    /// stopped meanwhile (the reservation is then released).
    pub(crate) fn accept_reserved(&self, event: Arc<Event>, lane: usize) -> bool {
        self.accept_reserved_into(event, lane, &mut Wakes::default())
    }

    /// [`accept_reserved`](Self::accept_reserved) that leaves the wake-up
    /// check to `wakes` (see [`Wakes`]).
    pub(crate) fn accept_reserved_into<'a>(
        &'a self,
        event: Arc<Event>,
        lane: usize,
        wakes: &mut Wakes<'a>,
    ) -> bool {
        match self.users[lane].commit() {
            Some(held) => {
                self.users[lane].push(event);
                wakes.owe(self, lane, held);
                true
            }
            None => false,
        }
    }

    /// Stores a run of events into room reserved for them earlier; false
    /// when the fiber stopped meanwhile (the reservation is then released).
    pub(crate) fn accept_run_reserved_into<'a>(
        &'a self,
        run: &Run,
        lane: usize,
        wakes: &mut Wakes<'a>,
    ) -> bool {
        match self.users[lane].commit_run(run.len()) {
            Some(held) => {
                self.users[lane].push_run(run.clone());
                wakes.owe(self, lane, held);
                true
            }
            None => false,
        }
    }

    pub(crate) fn set_connected(&self, on: bool) {
        let mut st = self.state.lock();
        self.connected.store(on, Ordering::Relaxed);
        let fx = st.set_connected(on, Instant::now());
        self.signal(&fx);
    }

    /// Lets the workers deliver: the registration is committed.
    pub(crate) fn start(&self) {
        let fx = self.state.lock().start();
        self.signal(&fx);
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        let mut st = self.state.lock();
        let fx = st.set_mode(mode);
        self.signal(&fx);
    }

    /// Drains until `until`, then stops: the workers end at that instant
    /// themselves, whoever waits or not. Again during the drain, it brings
    /// the end forward, never back (see `State::drain_until`), and wakes
    /// the sleeping workers to keep the new one.
    pub(crate) fn drain_until(&self, until: Instant) {
        let mut st = self.state.lock();
        let fx = st.drain_until(until);
        if st.is_draining() {
            self.drain_end.bring_to(until);
        }
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

    /// Whether the node is an async one, delivered by tasks on a runtime.
    pub(crate) fn is_async(&self) -> bool {
        matches!(self.signals.first(), Some(Signal::Task(_)))
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

    /// The settings the fiber was built with.
    pub(crate) fn settings(&self) -> crate::director::NodeSettings {
        self.state.lock().settings()
    }

    /// The user lane an event goes to: by key hash, else round-robin.
    pub(crate) fn user_lane_for(&self, event: &Event) -> usize {
        let k = self.users.len();
        if k == 1 {
            return 0;
        }
        match &event.key {
            Some(key) => (crate::director::routing::stable_hash(key) % k as u64) as usize,
            None => self.round_robin.fetch_add(1, Ordering::Relaxed) % k,
        }
    }
}
