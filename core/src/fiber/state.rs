//! The fiber's state machine, free of threads and clocks so it can be tested
//! on its own. Every field is guarded by the fiber's one mutex; the workers
//! call [`State::next_work`] and [`State::complete`], emitters call
//! [`State::accept`]. Nothing here runs user code.
//!
//! Rules it keeps:
//! * worker 0 owns the root lane; worker `w` owns user lane `w`;
//! * no user batch (new or retried) starts while a root event waits, a root
//!   batch is in flight or held for retry, or a lag notice is owed;
//! * a failed batch is held by its worker and re-offered at `retry_at`;
//! * counters change only together with the lanes, so the accounting
//!   equation holds in every snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::error::NodeError;
use crate::event::{Batch, Event, EventKind, LAGGED};
use crate::fiber::lane::{Lane, Overflow, Pushed};
use crate::fiber::retry::{Jitter, RetryPolicy};
use crate::stats::NodeStats;

/// The fixed settings of one fiber.
#[derive(Debug, Clone)]
pub(crate) struct FiberConfig {
    pub(crate) batch_size: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) root_capacity: usize,
    pub(crate) overflow: Overflow,
    pub(crate) retry: RetryPolicy,
    pub(crate) trust_token: Arc<str>,
    pub(crate) concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Running,
    /// Closing: deliver what is left, then exit.
    Draining,
    /// Unregistered or past the close deadline: exit after the current call.
    Stopped,
}

/// A batch on its way to the callback, or held for a retry.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) batch: Batch,
    pub(crate) root: bool,
    failures: u32,
    level: u32,
    retry_at: Instant,
}

/// Whether a worker sleeps, and how deeply.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idle {
    /// Running: it will look at its lanes before it sleeps again.
    #[default]
    Busy,
    /// Asleep with a flush timer, having just delivered: a producer is
    /// streaming to it, so emitters wake it only once a full batch waits.
    Warm,
    /// Asleep without a timer: the next event wakes it at once.
    Cold,
}

#[derive(Debug, Default)]
struct Worker {
    held: Option<Delivery>,
    idle: Idle,
}

#[derive(Debug, Default)]
struct Lag {
    count: u64,
    first: u64,
    last: u64,
}

/// What a worker should do next.
#[derive(Debug)]
pub(crate) enum Work {
    Deliver(Delivery),
    /// Sleep until woken, or until the instant (a retry is due).
    Wait(Option<Instant>),
    Exit,
}

/// Side effects of a state change that must happen after the lock is
/// released (hooks are user code) or on other workers (wake-ups).
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Workers to wake (bit `w` for worker `w`).
    pub(crate) wake: u64,
    pub(crate) dropped: Option<Arc<Event>>,
    pub(crate) error: Option<NodeError>,
    pub(crate) dead_letter: Option<(Batch, NodeError)>,
    /// Room was freed in a lane: blocked emitters may proceed.
    pub(crate) space: bool,
    /// A batch delivered, handed back to its worker.
    pub(crate) delivered: Option<Batch>,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: u64,
    delivered: u64,
    dropped: u64,
    dead_lettered: u64,
    retries: u64,
    failures: u64,
    last_error: Option<String>,
}

#[derive(Debug)]
pub(crate) struct State {
    cfg: FiberConfig,
    root: Lane,
    users: Vec<Lane>,
    workers: Vec<Worker>,
    root_held: Option<Delivery>,
    root_busy: bool,
    pub(crate) connected: bool,
    pub(crate) mode: Mode,
    pub(crate) live_workers: usize,
    /// Set once the last worker has exited and leftovers are settled.
    pub(crate) done: bool,
    counters: Counters,
    lag: Option<Lag>,
    round_robin: usize,
    jitter: Jitter,
}

impl State {
    pub(crate) fn new(cfg: FiberConfig, connected: bool, seed: u64) -> Self {
        let k = cfg.concurrency;
        // Split the user capacity so the lanes together hold exactly it.
        let users = (0..k)
            .map(|i| Lane::new(cfg.queue_capacity / k + usize::from(i < cfg.queue_capacity % k)))
            .collect();
        Self {
            root: Lane::new(cfg.root_capacity),
            users,
            workers: (0..k).map(|_| Worker::default()).collect(),
            root_held: None,
            root_busy: false,
            connected,
            mode: Mode::Running,
            live_workers: k,
            done: false,
            counters: Counters::default(),
            lag: None,
            round_robin: 0,
            jitter: Jitter::new(seed),
            cfg,
        }
    }

    /// The user lane an event goes to: by key hash, else round-robin.
    pub(crate) fn user_lane_for(&mut self, event: &Event) -> usize {
        let k = self.users.len();
        if k == 1 {
            return 0;
        }
        match &event.key {
            Some(key) => (crate::director::routing::stable_hash(key) % k as u64) as usize,
            None => {
                self.round_robin = self.round_robin.wrapping_add(1);
                self.round_robin % k
            }
        }
    }

    /// Places an event in a lane under the overflow policy. Returns `None`
    /// when the fiber no longer accepts events (unregistered or closing).
    pub(crate) fn accept(&mut self, event: Arc<Event>, root: bool) -> Option<Effects> {
        if self.mode != Mode::Running {
            return None;
        }
        let mut fx = Effects::default();
        self.counters.accepted += 1;
        let policy = self.cfg.overflow.non_blocking();
        let (pushed, worker) = if root {
            (self.root.push(event, policy), 0)
        } else {
            let i = self.user_lane_for(&event);
            (self.users[i].push(event, policy), i)
        };
        // A disconnected worker cannot deliver: waking it would cost a
        // futex call per event for nothing. Connecting wakes everyone.
        let wake = self.connected;
        match pushed {
            Pushed::Stored if wake => {
                let urgent = root || self.lane_wants_worker(worker);
                self.wake(worker, urgent, &mut fx);
            }
            Pushed::Stored => {}
            Pushed::Evicted(lost) | Pushed::Rejected(lost) => {
                self.note_drop(lost.id);
                fx.dropped = Some(lost);
                if wake {
                    self.wake(0, true, &mut fx);
                    self.wake(worker, true, &mut fx);
                }
            }
        }
        Some(fx)
    }

    /// Reserves room in user lane `lane` for a `block` emitter.
    /// `None`: the fiber no longer accepts; `Some(false)`: full for now.
    pub(crate) fn try_reserve(&mut self, lane: usize) -> Option<bool> {
        (self.mode == Mode::Running).then(|| self.users[lane].try_reserve())
    }

    pub(crate) fn release(&mut self, lane: usize) {
        self.users[lane].release();
    }

    /// Stores an event into room reserved earlier.
    pub(crate) fn accept_reserved(&mut self, event: Arc<Event>, lane: usize) -> Option<Effects> {
        if self.mode != Mode::Running {
            self.users[lane].release();
            return None;
        }
        let mut fx = Effects::default();
        self.counters.accepted += 1;
        self.users[lane].push_reserved(event);
        if self.connected {
            let urgent = self.lane_wants_worker(lane);
            self.wake(lane, urgent, &mut fx);
        }
        Some(fx)
    }

    fn note_drop(&mut self, id: u64) {
        self.counters.dropped += 1;
        let lag = self.lag.get_or_insert(Lag { count: 0, first: id, last: id });
        lag.count += 1;
        lag.first = lag.first.min(id);
        lag.last = lag.last.max(id);
    }

    /// A warm worker is worth waking for its user lane once a backlog of
    /// sixteen batches (or half the lane) waits, or the lane is full (a `block`
    /// emitter may be waiting). Below that its own flush timer is cheaper:
    /// on a small machine a wake-up costs the emitter microseconds.
    fn lane_wants_worker(&self, lane: usize) -> bool {
        let l = &self.users[lane];
        let backlog = (16 * self.cfg.batch_size).min(l.capacity() / 2).max(1);
        l.waiting() >= backlog || l.is_full()
    }

    /// Wakes a sleeping worker: a cold one always, a warm one only when
    /// `urgent` (its flush timer picks up anything less within `FLUSH`).
    fn wake(&mut self, worker: usize, urgent: bool, fx: &mut Effects) {
        if let Some(w) = self.workers.get_mut(worker) {
            if w.idle == Idle::Cold || (w.idle == Idle::Warm && urgent) {
                w.idle = Idle::Busy;
                fx.wake |= 1 << worker;
            }
        }
    }

    pub(crate) fn wake_all(&mut self, fx: &mut Effects) {
        for w in 0..self.workers.len() {
            self.wake(w, true, fx);
        }
    }

    /// Wakes the worker of user lane `lane`, however it sleeps.
    pub(crate) fn nudge(&mut self, lane: usize) -> Effects {
        let mut fx = Effects::default();
        if self.connected {
            self.wake(lane, true, &mut fx);
        }
        fx
    }

    /// Marks worker `w` as about to sleep, so emitters know to wake it.
    pub(crate) fn set_idle(&mut self, w: usize, how: Idle) {
        self.workers[w].idle = how;
    }

    /// Marks worker `w` as running again (after a timed wake-up).
    pub(crate) fn set_busy(&mut self, w: usize) {
        self.workers[w].idle = Idle::Busy;
    }

    fn root_clear(&self) -> bool {
        !self.root_busy && self.root.is_waiting_empty() && self.lag.is_none()
    }

    fn nothing_for(&self, w: usize) -> bool {
        let own = self.users[w].is_waiting_empty() && self.workers[w].held.is_none();
        own && (w != 0 || self.root_clear())
    }

    /// Decides worker `w`'s next step. `ids` numbers a lag notice.
    /// `spare` is an empty vector the worker recycles for the next batch.
    pub(crate) fn next_work(
        &mut self,
        w: usize,
        now: Instant,
        ids: &AtomicU64,
        spare: &mut Vec<Arc<Event>>,
    ) -> Work {
        if self.mode == Mode::Stopped {
            return Work::Exit;
        }
        // Closing: leave when nothing is left, or when nothing can be
        // delivered (a disconnected node cannot be reconnected once the
        // director is closing); what remains is reported as undelivered.
        if self.mode == Mode::Draining && (self.nothing_for(w) || !self.connected) {
            return Work::Exit;
        }
        if !self.connected {
            return Work::Wait(None);
        }
        if w == 0 {
            if let Some(held) = self.root_held.take() {
                if held.retry_at <= now {
                    self.counters.retries += 1;
                    return Work::Deliver(held);
                }
                let at = held.retry_at;
                self.root_held = Some(held);
                return Work::Wait(Some(at));
            }
            if !self.root_busy {
                if let Some(lag) = self.lag.take() {
                    let notice = self.lag_notice(lag, ids);
                    self.counters.accepted += 1;
                    self.root.push_notice(notice);
                }
                if !self.root.is_waiting_empty() {
                    self.root_busy = true;
                    return Work::Deliver(self.fresh(None, now, spare));
                }
            }
        }
        if !self.root_clear() {
            return Work::Wait(None);
        }
        if let Some(held) = self.workers[w].held.take() {
            if held.retry_at <= now {
                self.counters.retries += 1;
                return Work::Deliver(held);
            }
            let at = held.retry_at;
            self.workers[w].held = Some(held);
            return Work::Wait(Some(at));
        }
        if !self.users[w].is_waiting_empty() {
            return Work::Deliver(self.fresh(Some(w), now, spare));
        }
        Work::Wait(None)
    }

    fn fresh(&mut self, lane: Option<usize>, now: Instant, spare: &mut Vec<Arc<Event>>) -> Delivery {
        let mut events = std::mem::take(spare);
        events.reserve(self.cfg.batch_size.min(64));
        match lane {
            None => self.root.take(self.cfg.batch_size, &mut events),
            Some(i) => self.users[i].take(self.cfg.batch_size, &mut events),
        }
        Delivery { batch: Batch { events }, root: lane.is_none(), failures: 0, level: 0, retry_at: now }
    }

    fn lag_notice(&self, lag: Lag, ids: &AtomicU64) -> Arc<Event> {
        let payload =
            format!(r#"{{"dropped":{},"first_id":{},"last_id":{}}}"#, lag.count, lag.first, lag.last);
        Arc::new(Event {
            id: ids.fetch_add(1, Ordering::Relaxed),
            kind: EventKind::Root,
            topic: LAGGED.into(),
            source: None,
            key: None,
            payload: payload.into(),
            trust_token: Some(self.cfg.trust_token.clone()),
            timestamp_ms: crate::director::now_ms(),
            content_type: None,
            extension: None,
        })
    }

    /// Records the result of delivering `d` by worker `w`. A delivered
    /// batch comes back in `Effects::delivered`, for the worker to drop
    /// (outside the lock) and recycle.
    pub(crate) fn complete(
        &mut self,
        w: usize,
        mut d: Delivery,
        result: Result<(), NodeError>,
        now: Instant,
    ) -> Effects {
        let mut fx = Effects::default();
        let n = d.batch.len();
        match result {
            Ok(()) => {
                self.counters.delivered += n as u64;
                self.finish(w, d.root, n, &mut fx);
                fx.delivered = Some(d.batch);
            }
            Err(err) => {
                self.counters.failures += 1;
                self.counters.last_error = Some(err.message().to_owned());
                d.failures += 1;
                let exhausted = self.cfg.retry.max_retries.is_some_and(|max| d.failures > max);
                if exhausted {
                    self.counters.dead_lettered += n as u64;
                    self.finish(w, d.root, n, &mut fx);
                    fx.dead_letter = Some((d.batch, err.clone()));
                } else {
                    d.retry_at = now + self.cfg.retry.delay(d.level, self.jitter.unit());
                    d.level = d.level.saturating_add(1);
                    if d.root {
                        self.root_held = Some(d);
                    } else {
                        self.workers[w].held = Some(d);
                    }
                }
                fx.error = Some(err);
            }
        }
        fx
    }

    fn finish(&mut self, w: usize, root: bool, n: usize, fx: &mut Effects) {
        fx.space = true;
        if root {
            self.root.finish(n);
            self.root_busy = false;
            if self.root_clear() {
                self.wake_all(fx);
            }
        } else {
            self.users[w].finish(n);
        }
    }

    /// `node_connected` / `node_disconnected`. Connecting makes held
    /// batches due at once and resets their backoff.
    pub(crate) fn set_connected(&mut self, on: bool, now: Instant) -> Effects {
        let mut fx = Effects::default();
        self.connected = on;
        if on {
            let held = self.workers.iter_mut().filter_map(|w| w.held.as_mut());
            for d in held.chain(self.root_held.as_mut()) {
                d.retry_at = now;
                d.level = 0;
            }
            self.wake_all(&mut fx);
        }
        fx
    }

    pub(crate) fn set_mode(&mut self, mode: Mode) -> Effects {
        let mut fx = Effects::default();
        if self.mode != Mode::Stopped {
            self.mode = mode;
        }
        self.wake_all(&mut fx);
        fx.space = true;
        fx
    }

    /// After every worker exited: removes the user events left behind
    /// (held batches first, then waiting ones, in lane order) and counts
    /// the root events left as dropped. Used on unregister only.
    pub(crate) fn take_leftovers(&mut self) -> (Vec<Arc<Event>>, Vec<Arc<Event>>) {
        let mut user = Vec::new();
        for (w, lane) in self.users.iter_mut().enumerate() {
            if let Some(d) = self.workers[w].held.take() {
                lane.finish(d.batch.len());
                user.extend(d.batch.events);
            }
            user.extend(lane.drain_waiting());
        }
        let mut root: Vec<Arc<Event>> = Vec::new();
        if let Some(d) = self.root_held.take() {
            self.root.finish(d.batch.len());
            root.extend(d.batch.events);
        }
        root.extend(self.root.drain_waiting());
        self.counters.dropped += (user.len() + root.len()) as u64;
        (user, root)
    }

    /// A consistent snapshot of the counters.
    pub(crate) fn stats(&self) -> NodeStats {
        let c = &self.counters;
        let pending = self.root.pending() + self.users.iter().map(Lane::pending).sum::<usize>();
        NodeStats {
            accepted: c.accepted,
            delivered: c.delivered,
            dropped: c.dropped,
            dead_lettered: c.dead_lettered,
            pending: pending as u64,
            retries: c.retries,
            failures: c.failures,
            last_error: c.last_error.clone(),
            connected: self.connected,
        }
    }
}

impl Overflow {
    /// The push policy once room is known to be short: a `block` emitter
    /// reserved room beforehand, so a plain push under `block` only happens
    /// for control events, which drop the newest.
    fn non_blocking(self) -> Overflow {
        match self {
            Overflow::Block => Overflow::DropNewest,
            other => other,
        }
    }
}
