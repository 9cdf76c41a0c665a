//! The fiber's state machine, free of threads and clocks. Every field is
//! guarded by the fiber's one mutex, except the user lanes' room counts and
//! queues and the workers' idle gates, which emitters use without the lock
//! (see `inbox.rs` and `wake.rs`); the workers call [`State::next_work`] and
//! [`State::complete`]. Nothing here runs user code.
//!
//! Rules it keeps:
//! * nothing is delivered before [`State::start`] (the registration
//!   committed): a refused registration never calls its node;
//! * worker 0 owns the root lane; worker `w` owns user lane `w`;
//! * no user batch (new or retried) starts while a root event waits, a root
//!   batch is in flight or held for retry, or a lag notice is owed (but
//!   a notice owed for drops made while the previous notice was
//!   delivered, which waits for one user batch: `noticed`);
//! * a failed batch is held by its worker and re-offered at `retry_at`;
//! * counters change only together with the lanes, so the accounting
//!   equation holds in every snapshot: a user event counts as accepted and
//!   pending from the moment its room is claimed (`UserLane::held`) until
//!   it is settled under the lock, where it moves to `user_settled`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::director::peers::Peers;
use crate::error::NodeError;
use crate::event::{Batch, Event, EventKind, LAGGED};
use crate::fiber::inbox::{Claim, Item, Run, UserLane};
use crate::fiber::lane::{Lane, Overflow, Pushed};
use crate::fiber::retry::{Jitter, RetryPolicy};
use crate::fiber::wake::{Gate, Idle};
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
    /// Held events never handed to the callback yet (those after an event
    /// dead-lettered alone): their next delivery is no retry.
    unattempted: bool,
}

#[derive(Debug, Default)]
struct Worker {
    held: Option<Delivery>,
    /// Events of this worker's user lane taken out and not yet settled
    /// (the batch in flight or held for a retry).
    in_flight: usize,
    /// The rest of a run taken out of the lane's queue by part (a batch
    /// smaller than the run, or an eviction): still waiting, and older
    /// than anything in the queue.
    front: Option<(Run, usize)>,
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
    pub(crate) dropped: Vec<Arc<Event>>,
    pub(crate) error: Option<NodeError>,
    pub(crate) dead_letter: Option<(Batch, NodeError)>,
    /// Room was freed in a lane: blocked emitters may proceed.
    pub(crate) space: bool,
    /// A batch delivered, handed back to its worker.
    pub(crate) delivered: Option<Batch>,
}

#[derive(Debug, Default)]
struct Counters {
    /// Root events and lag notices accepted, and user events refused at
    /// the door (accepted and dropped at once). User events that had room
    /// are counted by their lane while held, then in `user_settled`.
    accepted: u64,
    user_settled: u64,
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
    users: Arc<[UserLane]>,
    gates: Arc<[Gate]>,
    workers: Vec<Worker>,
    root_held: Option<Delivery>,
    root_busy: bool,
    pub(crate) connected: bool,
    pub(crate) mode: Mode,
    /// Draining ends here even with events left (a draining unregister's
    /// deadline, which its workers keep themselves: a caller inside a
    /// callback cannot wait to enforce it). `None`: until `Stopped`.
    drain_until: Option<Instant>,
    /// Set when the registration commits (`start`). Until then workers
    /// wait whatever their lanes hold, so that a registration refused after
    /// some of its workers started (a later spawn failed) never calls the
    /// node.
    started: bool,
    pub(crate) live_workers: usize,
    /// Set once the last worker has exited and leftovers are settled.
    pub(crate) done: bool,
    /// The last worker exited while the fiber ran (its runtime dropped the
    /// async workers' tasks): `done`, but the leftovers are not settled;
    /// whoever unregisters the node settles them.
    pub(crate) abandoned: bool,
    counters: Counters,
    lag: Option<Lag>,
    /// A lag notice was made and no user batch has started since: a lag
    /// owed now (drops while that notice was delivered) waits for the next
    /// user batch, whose notice comes before the one after it. Else a node
    /// losing events while each notice is delivered (overloaded) is called
    /// with notices only, its user events starved. The worker that starts
    /// that batch wakes worker 0 for the notice (`owed_wakes`).
    noticed: bool,
    /// Workers to wake that `next_work` found (bit `w` for worker `w`):
    /// its caller signals them (`take_owed_wakes`).
    owed_wakes: u64,
    jitter: Jitter,
}

impl State {
    pub(crate) fn new(cfg: FiberConfig, connected: bool, seed: u64) -> Self {
        let k = cfg.concurrency;
        // Split the user capacity so the lanes together hold exactly it.
        let users = (0..k)
            .map(|i| UserLane::new(cfg.queue_capacity / k + usize::from(i < cfg.queue_capacity % k)))
            .collect();
        Self {
            root: Lane::new(cfg.root_capacity),
            users,
            gates: (0..k).map(|_| Gate::default()).collect(),
            workers: (0..k).map(|_| Worker::default()).collect(),
            root_held: None,
            root_busy: false,
            connected,
            mode: Mode::Running,
            drain_until: None,
            started: false,
            live_workers: k,
            done: false,
            abandoned: false,
            counters: Counters::default(),
            lag: None,
            noticed: false,
            owed_wakes: 0,
            jitter: Jitter::new(seed),
            cfg,
        }
    }

    /// The user lanes, shared with emitters (they claim room and push
    /// without the lock).
    pub(crate) fn user_lanes(&self) -> Arc<[UserLane]> {
        self.users.clone()
    }

    /// The workers' idle gates, shared with emitters.
    pub(crate) fn gates(&self) -> Arc<[Gate]> {
        self.gates.clone()
    }

    /// Places a root event in the root lane (control events never block:
    /// a full root lane drops under the node's policy, or the newest under
    /// `block`). `None` when the fiber no longer accepts events.
    pub(crate) fn accept_root(&mut self, event: Arc<Event>) -> Option<Effects> {
        self.admit_root(event, None)
    }

    /// Places a fresh node's first event (its `pull_current_state`, whose
    /// payload `peers` makes when it leaves the lane) in the empty root
    /// lane, where no overflow can evict it before delivery.
    pub(crate) fn accept_first(&mut self, event: Arc<Event>, peers: Peers) -> Option<Effects> {
        self.admit_root(event, Some(peers))
    }

    /// `first`: the event is the pull, owed these peers (see `accept_first`).
    fn admit_root(&mut self, event: Arc<Event>, first: Option<Peers>) -> Option<Effects> {
        if self.mode != Mode::Running {
            return None;
        }
        let mut fx = Effects::default();
        self.counters.accepted += 1;
        if let Some(peers) = first {
            self.root.push_pinned(event, Some(peers));
        } else {
            match self.root.push(event, self.cfg.overflow.non_blocking()) {
                Pushed::Stored => {}
                Pushed::Evicted(lost) | Pushed::Rejected(lost) => {
                    self.note_drop(lost.id);
                    fx.dropped.push(lost);
                }
            }
        }
        // A disconnected worker cannot deliver; connecting wakes everyone.
        if self.connected {
            self.wake(0, true, &mut fx);
        }
        Some(fx)
    }

    /// The slow path of a user event whose lane `lane` was full when its
    /// emitter tried to claim room: applies the overflow policy. `None`
    /// when the fiber no longer accepts events.
    pub(crate) fn overflow(&mut self, event: Arc<Event>, lane: usize) -> Option<Effects> {
        let mut fx = Effects::default();
        let users = self.users.clone();
        let l = &users[lane];
        loop {
            match l.admit() {
                Claim::Closed => return None,
                Claim::Room(_) => {
                    l.push(event);
                    break;
                }
                Claim::Full => {}
            }
            // Room may be taken again by a lock-free emitter between an
            // eviction and our claim; each turn evicts one more.
            let evicted = match self.cfg.overflow {
                Overflow::DropOldest => self.pop_user(lane),
                _ => None,
            };
            match evicted {
                Some(old) => {
                    l.settle(1);
                    self.counters.user_settled += 1;
                    self.note_drop(old.id);
                    fx.dropped.push(old);
                }
                None => {
                    // Nothing waiting to evict (all in flight), or a policy
                    // that refuses the newcomer.
                    self.counters.accepted += 1;
                    self.note_drop(event.id);
                    fx.dropped.push(event);
                    break;
                }
            }
        }
        if self.connected {
            self.wake(0, true, &mut fx);
            self.wake(lane, true, &mut fx);
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

    /// Wakes a sleeping worker: a cold one always, a warm one only when
    /// `urgent` (its flush timer picks up anything less within `FLUSH`).
    fn wake(&mut self, worker: usize, urgent: bool, fx: &mut Effects) {
        if let Some(g) = self.gates.get(worker) {
            if g.wake_if(|idle| idle == Idle::Cold || urgent) {
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
    /// Returns false, leaving it busy, when work it may take arrived in the
    /// meantime: emitters push without the lock, so the lanes are looked at
    /// again after the gate is published (an emitter looks at the gate
    /// after its push; one of the two sees the other).
    pub(crate) fn set_idle(&mut self, w: usize, how: Idle) -> bool {
        self.gates[w].sleep_unless(how, || self.user_ready(w) && self.user_stored(w))
    }

    /// Whether lane `w` has a stored event to take (one may still be on
    /// its way in).
    fn user_stored(&self, w: usize) -> bool {
        self.workers[w].front.is_some() || !self.users[w].is_empty()
    }

    /// Takes lane `w`'s oldest stored event: the rest of a run first.
    fn pop_user(&mut self, w: usize) -> Option<Arc<Event>> {
        let (run, from) = match self.workers[w].front.take() {
            Some(front) => front,
            None => match self.users[w].pop()? {
                Item::One(e) => return Some(e),
                Item::Run(run) => (run, 0),
            },
        };
        let e = run[from].clone();
        if from + 1 < run.len() {
            self.workers[w].front = Some((run, from + 1));
        }
        Some(e)
    }

    /// A batch of up to `max` of lane `w`'s oldest stored events. A run
    /// makes a batch of its own, borrowed in place (its rest, if it does
    /// not fit, waits in `front`); single events are gathered into `spare`.
    fn take_user(&mut self, w: usize, max: usize, spare: &mut Vec<Arc<Event>>) -> Batch {
        if let Some((run, from)) = self.workers[w].front.take() {
            return self.borrow_run(w, run, from, max);
        }
        let mut events = std::mem::take(spare);
        while events.len() < max {
            match self.users[w].pop() {
                None => break,
                Some(Item::One(e)) => events.push(e),
                Some(Item::Run(run)) if events.is_empty() => {
                    *spare = events;
                    return self.borrow_run(w, run, 0, max);
                }
                Some(Item::Run(run)) => {
                    self.workers[w].front = Some((run, 0));
                    break;
                }
            }
        }
        Batch::owned(events)
    }

    /// Events `from..` of `run`, up to `max`, as a batch; the rest waits in
    /// lane `w`'s `front`.
    fn borrow_run(&mut self, w: usize, run: Run, from: usize, max: usize) -> Batch {
        let to = run.len().min(from + max);
        if to < run.len() {
            self.workers[w].front = Some((run.clone(), to));
        }
        Batch::shared(run, from, to)
    }

    /// Marks worker `w` as running again (after a timed wake-up).
    pub(crate) fn set_busy(&mut self, w: usize) {
        self.gates[w].set_busy();
    }

    /// True when worker `w` may start a user batch of its own lane.
    fn user_ready(&self, w: usize) -> bool {
        self.started
            && self.connected
            && self.mode != Mode::Stopped
            && self.users_may_go()
            && self.workers[w].held.is_none()
    }

    /// User events of lane `w` that are neither in flight nor settled:
    /// stored, or on their way in from an emitter.
    fn waiting(&self, w: usize) -> u64 {
        self.users[w].held() - self.workers[w].in_flight as u64
    }

    fn root_clear(&self) -> bool {
        !self.root_busy && self.root.is_waiting_empty() && self.lag.is_none()
    }

    /// No root event waits or is in flight, and no lag notice is owed but
    /// one that waits for the next user batch (see `noticed`).
    fn users_may_go(&self) -> bool {
        !self.root_busy && self.root.is_waiting_empty() && (self.lag.is_none() || self.noticed)
    }

    /// A user batch starts: a notice owed waits no longer, so worker 0,
    /// which makes the notices, is woken for it (when it is not the one
    /// starting the batch).
    fn user_batch_starts(&mut self, w: usize) {
        self.noticed = false;
        if w != 0 && self.lag.is_some() {
            let mut fx = Effects::default();
            self.wake(0, true, &mut fx);
            self.owed_wakes |= fx.wake;
        }
    }

    /// The wake-ups `next_work` left to its caller, to signal (under the
    /// lock or not).
    pub(crate) fn take_owed_wakes(&mut self) -> Effects {
        Effects { wake: std::mem::take(&mut self.owed_wakes), ..Effects::default() }
    }

    fn nothing_for(&self, w: usize) -> bool {
        // An event on its way in counts: its emitter wakes us once stored.
        let own = self.waiting(w) == 0 && self.workers[w].held.is_none();
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
        let Some(until) = self.drain_until.filter(|_| self.mode == Mode::Draining) else {
            return self.next_work_in_mode(w, now, ids, spare);
        };
        if until <= now {
            return Work::Exit;
        }
        match self.next_work_in_mode(w, now, ids, spare) {
            Work::Wait(at) => Work::Wait(Some(at.map_or(until, |at| at.min(until)))),
            work => work,
        }
    }

    fn next_work_in_mode(
        &mut self,
        w: usize,
        now: Instant,
        ids: &AtomicU64,
        spare: &mut Vec<Arc<Event>>,
    ) -> Work {
        if self.mode == Mode::Stopped {
            return Work::Exit;
        }
        if !self.started {
            return Work::Wait(None);
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
                    self.counters.retries += u64::from(!held.unattempted);
                    return Work::Deliver(held);
                }
                let at = held.retry_at;
                self.root_held = Some(held);
                return Work::Wait(Some(at));
            }
            if !self.root_busy {
                let lag_now = !self.noticed || !self.has_user_work(now);
                if let Some(lag) = self.lag.take_if(|_| lag_now) {
                    let notice = self.lag_notice(lag, ids);
                    self.counters.accepted += 1;
                    self.root.push_notice(notice);
                    self.noticed = true;
                }
                if !self.root.is_waiting_empty() {
                    self.root_busy = true;
                    return Work::Deliver(self.fresh(None, now, spare));
                }
            }
        }
        if !self.users_may_go() {
            return Work::Wait(None);
        }
        if let Some(held) = self.workers[w].held.take() {
            if held.retry_at <= now {
                self.counters.retries += u64::from(!held.unattempted);
                self.user_batch_starts(w);
                return Work::Deliver(held);
            }
            let at = held.retry_at;
            self.workers[w].held = Some(held);
            return Work::Wait(Some(at));
        }
        if self.user_stored(w) {
            self.user_batch_starts(w);
            return Work::Deliver(self.fresh(Some(w), now, spare));
        }
        Work::Wait(None)
    }

    /// Whether some worker could start a user batch now, a lag owed aside
    /// (with none, the notice owed goes at once).
    fn has_user_work(&self, now: Instant) -> bool {
        (0..self.workers.len()).any(|w| match &self.workers[w].held {
            Some(held) => held.retry_at <= now,
            None => self.user_stored(w),
        })
    }

    fn fresh(&mut self, lane: Option<usize>, now: Instant, spare: &mut Vec<Arc<Event>>) -> Delivery {
        let batch = match lane {
            None => {
                let mut events = std::mem::take(spare);
                events.reserve(self.cfg.batch_size.min(64));
                self.root.take(self.cfg.batch_size, &mut events);
                Batch::owned(events)
            }
            Some(i) => {
                let batch = self.take_user(i, self.cfg.batch_size, spare);
                self.workers[i].in_flight += batch.len();
                batch
            }
        };
        Delivery { batch, root: lane.is_none(), failures: 0, level: 0, retry_at: now, unattempted: false }
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
                self.end_batch(d.root, &mut fx);
                fx.delivered = Some(d.batch);
            }
            Err(err) if err.is_interrupted() => {
                // Stopped at the drain's deadline: what it took is
                // delivered, the rest waits untouched for the drain's end.
                let taken = err.delivered().min(n);
                self.counters.delivered += taken as u64;
                self.finish(w, d.root, taken, &mut fx);
                d.batch.skip(taken);
                if d.batch.is_empty() {
                    self.end_batch(d.root, &mut fx);
                } else {
                    d.unattempted = true;
                    d.retry_at = now;
                    self.hold(w, d);
                }
            }
            Err(err) => {
                d.unattempted = false;
                self.counters.failures += 1;
                self.counters.last_error = Some(err.message().to_owned());
                // The node took a leading part of the batch: settle it as
                // delivered and retry the rest with a fresh budget.
                let taken = err.delivered().min(n);
                if taken > 0 {
                    self.counters.delivered += taken as u64;
                    self.finish(w, d.root, taken, &mut fx);
                    d.batch.skip(taken);
                    d.failures = 0;
                    d.level = 0;
                    if d.batch.is_empty() {
                        self.end_batch(d.root, &mut fx);
                        fx.error = Some(err);
                        return fx;
                    }
                }
                let n = d.batch.len();
                d.failures += 1;
                let exhausted = self.cfg.retry.max_retries.is_some_and(|max| d.failures > max);
                if exhausted && err.is_of_next_event() && n > 1 {
                    // Only the failing event goes; those after it were
                    // never attempted, and are delivered next, at once.
                    let failed = d.batch.take_first();
                    self.counters.dead_lettered += 1;
                    self.finish(w, d.root, 1, &mut fx);
                    fx.dead_letter = Some((Batch::owned(vec![failed]), err.clone()));
                    (d.failures, d.level, d.retry_at, d.unattempted) = (0, 0, now, true);
                    self.hold(w, d);
                } else if exhausted {
                    self.counters.dead_lettered += n as u64;
                    self.finish(w, d.root, n, &mut fx);
                    self.end_batch(d.root, &mut fx);
                    fx.dead_letter = Some((d.batch, err.clone()));
                } else {
                    d.retry_at = crate::time::after(now, self.cfg.retry.delay(d.level, self.jitter.unit()));
                    d.level = d.level.saturating_add(1);
                    self.hold(w, d);
                }
                fx.error = Some(err);
            }
        }
        fx
    }

    /// Keeps the rest of a failed batch for its retry at `d.retry_at`.
    fn hold(&mut self, w: usize, d: Delivery) {
        if d.root {
            self.root_held = Some(d);
        } else {
            self.workers[w].held = Some(d);
        }
    }

    /// A root batch is over (delivered or given up): user batches may
    /// start again.
    fn end_batch(&mut self, root: bool, fx: &mut Effects) {
        if root {
            self.root_busy = false;
            if self.root_clear() {
                self.wake_all(fx);
            }
        }
    }

    /// Settles `n` events of worker `w`'s batch; the caller ends the batch
    /// ([`State::end_batch`]) unless part of it is held for a retry.
    fn finish(&mut self, w: usize, root: bool, n: usize, fx: &mut Effects) {
        fx.space = true;
        if root {
            self.root.finish(n);
        } else {
            self.workers[w].in_flight -= n;
            self.counters.user_settled += n as u64;
            self.users[w].settle(n);
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

    /// The registration committed: workers may deliver.
    pub(crate) fn start(&mut self) -> Effects {
        self.started = true;
        let mut fx = Effects::default();
        if self.connected {
            self.wake_all(&mut fx);
        }
        fx
    }

    /// Draining until `until`, then as `Stopped` (see `drain_until`).
    /// Called again, it can only bring the end forward, never back: a
    /// caller that bounds a drain from outside (the bus's close cutting an
    /// `off`'s drain) must not extend one that was shorter.
    pub(crate) fn drain_until(&mut self, until: Instant) -> Effects {
        if self.mode != Mode::Stopped {
            self.drain_until = Some(self.drain_until.map_or(until, |t| t.min(until)));
        }
        self.set_mode(Mode::Draining)
    }

    /// Whether the fiber drains (and was not stopped outright first).
    pub(crate) fn is_draining(&self) -> bool {
        self.mode == Mode::Draining
    }

    pub(crate) fn set_mode(&mut self, mode: Mode) -> Effects {
        let mut fx = Effects::default();
        if self.mode != Mode::Stopped {
            self.mode = mode;
        }
        if self.mode != Mode::Running {
            self.users.iter().for_each(UserLane::close);
        }
        self.wake_all(&mut fx);
        fx.space = true;
        fx
    }

    /// Takes back a batch whose delivery never ended (its async worker's
    /// task was dropped mid-call) into its held slot, still counted as
    /// pending, to be settled as any held batch is.
    pub(crate) fn put_back(&mut self, w: usize, d: Delivery) {
        self.hold(w, d);
    }

    /// After every worker exited: removes the user events left behind
    /// (held batches first, then waiting ones, in lane order) and counts
    /// the root events left as dropped. Used on unregister only.
    pub(crate) fn take_leftovers(&mut self) -> (Vec<Arc<Event>>, Vec<Arc<Event>>) {
        let mut user = Vec::new();
        let users = self.users.clone();
        for (w, lane) in users.iter().enumerate() {
            let before = user.len();
            if let Some(d) = self.workers[w].held.take() {
                self.workers[w].in_flight -= d.batch.len();
                user.extend(d.batch.into_vec());
            }
            if let Some((run, from)) = self.workers[w].front.take() {
                user.extend_from_slice(&run[from..]);
            }
            lane.take_closed(self.waiting(w) - (user.len() - before) as u64, &mut user);
            let n = user.len() - before;
            lane.settle(n);
            self.counters.user_settled += n as u64;
        }
        let mut root: Vec<Arc<Event>> = Vec::new();
        if let Some(d) = self.root_held.take() {
            self.root.finish(d.batch.len());
            root.extend(d.batch.into_vec());
        }
        root.extend(self.root.drain_waiting());
        self.counters.dropped += (user.len() + root.len()) as u64;
        (user, root)
    }

    /// The node's effective settings.
    pub(crate) fn settings(&self) -> crate::director::NodeSettings {
        let c = &self.cfg;
        crate::director::NodeSettings {
            queue_capacity: c.queue_capacity,
            root_capacity: c.root_capacity,
            overflow: c.overflow,
            retry: c.retry.clone(),
            concurrency: c.concurrency,
        }
    }

    /// A consistent snapshot of the counters.
    pub(crate) fn stats(&self) -> NodeStats {
        let c = &self.counters;
        // Each lane's held count is read once and counted on both sides.
        let held: u64 = self.users.iter().map(UserLane::held).sum();
        let pending = self.root.pending() as u64 + held;
        NodeStats {
            accepted: c.accepted + c.user_settled + held,
            delivered: c.delivered,
            dropped: c.dropped,
            dead_lettered: c.dead_lettered,
            pending,
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
