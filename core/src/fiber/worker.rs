//! The two worker drivers over [`State`]: a dedicated OS thread per worker
//! for sync nodes (so a callback may block without stalling anyone), and a
//! tokio task per worker for async nodes. Both follow the same loop: ask the
//! state what to do, sleep or call the node with no lock held, record the
//! result, run hooks with no lock held.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::state::{Delivery, Effects, Work};
use super::wake::Idle;
use super::{Fiber, Signal};
use crate::director::context::{LaneScope, Scope};
use crate::director::core::Core;
use crate::error::NodeError;
use crate::event::Event;
use crate::node::{AsyncNode, BoxFuture, Callback, Node, SendResult};

/// Starts the fiber's workers: threads for a sync node, tasks for an async
/// one. Each worker holds a reference to the node. `callback` is handed
/// back on failure, with the error; on success it is dropped here, under
/// the caller's membership lock, but never as the last reference (the
/// workers, held until `Fiber::start`, cannot exit before the lock is
/// released), so no destructor runs under that lock.
pub(crate) fn spawn_workers<C: Callback>(
    fiber: &Arc<Fiber>,
    callback: C,
    core: &Arc<Core>,
) -> Result<(), (std::io::Error, C)> {
    callback.spawn_workers(fiber, core)
}

impl Callback for Arc<dyn Node> {
    const ASYNC: bool = false;

    fn spawn_workers(self, fiber: &Arc<Fiber>, core: &Arc<Core>) -> Result<(), (std::io::Error, Self)> {
        let k = fiber.signals.len();
        let mut handles = Vec::with_capacity(k);
        for w in 0..k {
            let (f, n, c) = (fiber.clone(), self.clone(), core.clone());
            // A NUL would panic the spawn (uids are checked for it too).
            let name: String =
                format!("chronica-{}", fiber.uid).chars().filter(|c| *c != '\0').take(15).collect();
            let spawned = match refused_by_test(fiber, w) {
                Some(e) => Err(e),
                None => std::thread::Builder::new().name(name).spawn(move || run_thread(f, w, n, c)),
            };
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // Stop the ones already started; the caller joins
                    // them once it holds no lock they could wait for.
                    fiber.lock().live_workers -= k - w;
                    fiber.set_mode(super::state::Mode::Stopped);
                    fiber.threads.lock().extend(handles);
                    return Err((e, self));
                }
            }
        }
        fiber.threads.lock().extend(handles);
        Ok(())
    }
}

impl Callback for Arc<dyn AsyncNode> {
    const ASYNC: bool = true;

    fn spawn_workers(self, fiber: &Arc<Fiber>, core: &Arc<Core>) -> Result<(), (std::io::Error, Self)> {
        let handle = match core.runtime() {
            Ok(h) => h,
            Err(e) => return Err((e, self)),
        };
        if is_shut_down(&handle) {
            let e = std::io::Error::other("the tokio runtime the director's async nodes run on is shut down");
            return Err((e, self));
        }
        for w in 0..fiber.signals.len() {
            let (fiber, node, core) = (fiber.clone(), Some(self.clone()), core.clone());
            let worker = TaskWorker { fiber, w, node, core, runtime: handle.id() };
            handle.spawn(run_task(worker));
        }
        Ok(())
    }
}

#[cfg(test)]
thread_local! {
    /// TEST-ONLY failure injection: the worker whose thread spawn fails on
    /// this (registering) thread, as if the system had refused a thread.
    pub(crate) static FAIL_SPAWN: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// TEST-ONLY: the injected spawn failure of worker `w`, if `FAIL_SPAWN`
/// asks for one. It comes once the workers already started have gone to
/// sleep, by when any of them that could call the node has called it.
#[cfg(test)]
fn refused_by_test(fiber: &Fiber, w: usize) -> Option<std::io::Error> {
    if FAIL_SPAWN.get() != Some(w) {
        return None;
    }
    while fiber.gates[..w].iter().any(|g| g.get() == Idle::Busy) {
        std::thread::yield_now();
    }
    Some(std::io::Error::other("thread spawn refused by a test"))
}

#[cfg(not(test))]
fn refused_by_test(_: &Fiber, _: usize) -> Option<std::io::Error> {
    None
}

/// How long a worker that has just delivered sleeps before looking at its
/// lanes again on its own. Emitters wake such a *warm* worker only once a
/// backlog waits (sixteen batches, or half the lane if less: `Fiber::new`),
/// so a streaming producer pays one wake-up per backlog rather than per
/// event; whatever is left below it waits at most this long. A worker that
/// finds nothing after its flush goes *cold*, and the next event wakes it
/// at once.
const FLUSH: Duration = Duration::from_millis(1);

/// [`State::next_work`], then the wake-ups it left to its caller (worker 0,
/// for a lag notice that a user batch starting elsewhere stops deferring).
fn next_work(
    fiber: &Fiber,
    st: &mut super::state::State,
    w: usize,
    now: Instant,
    ids: &std::sync::atomic::AtomicU64,
    spare: &mut Vec<Arc<Event>>,
) -> Work {
    let work = st.next_work(w, now, ids, spare);
    fiber.signal(&st.take_owed_wakes());
    work
}

/// How a worker that found nothing to do sleeps: warm with a flush timer if
/// it delivered since it last slept, else cold (until woken or `deadline`).
fn sleep_plan(delivered: bool, deadline: Option<Instant>, now: Instant) -> (Idle, Option<Instant>) {
    if delivered {
        let flush = now + FLUSH;
        (Idle::Warm, Some(deadline.map_or(flush, |d| d.min(flush))))
    } else {
        (Idle::Cold, deadline)
    }
}

fn run_thread(fiber: Arc<Fiber>, w: usize, node: Arc<dyn Node>, core: Arc<Core>) {
    crate::director::context::mark_worker_thread(core.id, &*fiber);
    super::drain_end::mark_thread(fiber.drain_end.clone());
    let Signal::Thread(me) = &fiber.signals[w] else { unreachable!("thread worker on a task signal") };
    // Set before this worker can first go idle, so every wake finds it.
    let _ = me.set(std::thread::current());
    let mut spare = Vec::new();
    let mut shells = Vec::new();
    let mut delivered = false;
    let mut st = fiber.lock();
    loop {
        let now = Instant::now();
        match next_work(&fiber, &mut st, w, now, &core.ids, &mut spare) {
            Work::Exit => break,
            Work::Wait(deadline) => {
                let (how, until) = sleep_plan(delivered, deadline, now);
                delivered = false;
                if !st.set_idle(w, how) {
                    continue;
                }
                // A wake-up between here and the park leaves its token:
                // the park then returns at once.
                parking_lot::MutexGuard::unlocked(&mut st, || match until {
                    Some(t) => std::thread::park_timeout(t.saturating_duration_since(Instant::now())),
                    None => std::thread::park(),
                });
                st.set_busy(w);
            }
            Work::Deliver(d) => {
                delivered = true;
                let mut next = Some(d);
                parking_lot::MutexGuard::unlocked(&mut st, || {
                    let mut deliver = || {
                        while let Some(d) = next.take() {
                            next = deliver_one(&fiber, w, &*node, &core, d, &mut spare, &mut shells);
                        }
                    };
                    // A node's session that panics before it delivers
                    // leaves the batch to be delivered without one.
                    let _ = catch_unwind(AssertUnwindSafe(|| node.session(&mut deliver)));
                    deliver();
                });
            }
        }
    }
    drop(st);
    drop(node);
    worker_exited(&fiber, &core);
}

/// Delivers `d` to a sync node and records the result, with no lock held
/// while the node or a hook runs; returns the next batch when one is ready
/// at once (root events, due retries and lag notices keep their priority:
/// `next_work` decides), so a session goes on.
fn deliver_one(
    fiber: &Fiber,
    w: usize,
    node: &dyn Node,
    core: &Core,
    d: Delivery,
    spare: &mut Vec<Arc<Event>>,
    shells: &mut Vec<Arc<Event>>,
) -> Option<Delivery> {
    let result = {
        let _scope = Scope::callback(core.id);
        // Worker `w` alone drains user lane `w`, root batch or not.
        let _lane = LaneScope::enter(fiber, w);
        catch_unwind(AssertUnwindSafe(|| node.send(&d.batch))).unwrap_or_else(panic_error)
    };
    let mut fx = fiber.lock().complete(w, d, result, Instant::now());
    fiber.signal(&fx);
    recycle(&mut fx, spare, shells, core);
    if fx.has_hooks() {
        core.run_hooks(fiber, fx);
    }
    core.released.signal();
    match next_work(fiber, &mut fiber.lock(), w, Instant::now(), &core.ids, spare) {
        Work::Deliver(d) => Some(d),
        // Looked at again by the worker's loop, which sleeps or exits.
        Work::Wait(_) | Work::Exit => None,
    }
}

/// Takes the delivered batch back: its events are released (or kept in
/// `shells` for emitters to reuse, see `director/recycle.rs`) here, outside
/// the fiber lock, and its vector is reused for the next batch. A batch
/// borrowed from a run gives the run's events back through the last lane
/// to let go of the run.
fn recycle(fx: &mut Effects, spare: &mut Vec<Arc<Event>>, shells: &mut Vec<Arc<Event>>, core: &Core) {
    let Some(batch) = fx.delivered.take() else { return };
    match batch.into_parts() {
        Ok(mut events) => {
            core.recycler.give_back(&mut events, shells);
            *spare = events;
        }
        Err(mut run) => {
            if Arc::get_mut(&mut run).is_some() {
                // The last holder: nobody else touches these counts now.
                spare.extend(run.iter().cloned());
                drop(run);
                core.recycler.give_back(spare, shells);
            }
        }
    }
}

/// Whether `handle`'s runtime has shut down (or begun to): it then drops
/// every task spawned onto it at once, unpolled, so a task that can never
/// end is finished as soon as it is spawned. A runtime that shuts down
/// later drops the workers' tasks then (see [`TaskWorker`]).
fn is_shut_down(handle: &tokio::runtime::Handle) -> bool {
    let probe = handle.spawn(std::future::pending::<()>());
    let gone = probe.is_finished();
    probe.abort();
    gone
}

/// An async worker's hold on its node, owned by its task. Reporting the
/// exit from `Drop` rather than at the end of the loop makes it happen
/// however the task ends: a runtime that shuts down (or is dropped: the
/// end of a `#[tokio::test]`) drops its tasks where they wait, or before
/// their first poll, and a worker that never reported its exit left
/// `close` and `unregister` waiting for good.
struct TaskWorker {
    fiber: Arc<Fiber>,
    w: usize,
    node: Option<Arc<dyn AsyncNode>>,
    core: Arc<Core>,
    runtime: tokio::runtime::Id,
}

thread_local! {
    /// The runtime whose async workers this thread last ran.
    static RUNS_TASKS_OF: std::cell::Cell<Option<tokio::runtime::Id>> = const { std::cell::Cell::new(None) };
}

/// Whether this thread has run async workers of `runtime`. A blocking
/// thread of a runtime (`spawn_blocking`) is in its context too but runs
/// none of its tasks; the thread of a current-thread runtime runs them all.
pub(crate) fn runs_tasks_of(runtime: tokio::runtime::Id) -> bool {
    RUNS_TASKS_OF.get() == Some(runtime)
}

impl Drop for TaskWorker {
    fn drop(&mut self) {
        // The node's destructor comes before the exit it signals.
        drop(self.node.take());
        worker_exited(&self.fiber, &self.core);
    }
}

/// A batch handed to an async node's future: put back in its worker's
/// held slot if the task is dropped before the result is recorded, so its
/// events stay counted as pending (undelivered at close, dropped or handed
/// to the group at unregister) instead of vanishing half-settled.
struct InFlight<'a> {
    fiber: &'a Fiber,
    w: usize,
    d: Option<Delivery>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(d) = self.d.take() {
            self.fiber.lock().put_back(self.w, d);
        }
    }
}

async fn run_task(worker: TaskWorker) {
    let TaskWorker { fiber, w, core, runtime, .. } = &worker;
    let (fiber, w, core, runtime) = (&**fiber, *w, &**core, *runtime);
    let Some(node) = worker.node.as_deref() else {
        unreachable!("a task worker holds its node until dropped")
    };
    let Signal::Task(notify) = &fiber.signals[w] else { unreachable!("task worker on a thread signal") };
    let mut spare = Vec::new();
    let mut shells = Vec::new();
    let mut delivered = false;
    loop {
        // After every wait: a current-thread runtime runs on whichever
        // thread calls its `block_on`.
        RUNS_TASKS_OF.set(Some(runtime));
        let now = Instant::now();
        let work = {
            let mut st = fiber.lock();
            let work = next_work(fiber, &mut st, w, now, &core.ids, &mut spare);
            match work {
                Work::Wait(deadline) => {
                    let (how, until) = sleep_plan(delivered, deadline, now);
                    if st.set_idle(w, how) {
                        Work::Wait(until)
                    } else {
                        Work::Wait(Some(now))
                    }
                }
                work => work,
            }
        };
        match work {
            Work::Exit => break,
            Work::Wait(until) => {
                delivered = false;
                match until {
                    None => notify.notified().await,
                    Some(t) => {
                        let _ = tokio::time::timeout_at(t.into(), notify.notified()).await;
                    }
                }
                fiber.lock().set_busy(w);
            }
            Work::Deliver(d) => {
                delivered = true;
                let mut fx = deliver_async(fiber, w, node, core, d).await;
                recycle(&mut fx, &mut spare, &mut shells, core);
                if fx.has_hooks() {
                    core.run_hooks(fiber, fx);
                }
                core.released.signal();
            }
        }
    }
    // `worker` drops here: the node's handle goes, then the exit is reported.
}

async fn deliver_async(fiber: &Fiber, w: usize, node: &dyn AsyncNode, core: &Core, d: Delivery) -> Effects {
    let mut held = InFlight { fiber, w, d: Some(d) };
    let result = {
        let batch = &held.d.as_ref().expect("held until recorded").batch;
        let start = Scope::callback(core.id);
        let fut = catch_unwind(AssertUnwindSafe(|| node.send(batch)));
        drop(start);
        match fut {
            Ok(fut) => {
                CatchUnwind { fut, director: core.id, fiber, lane: w }.await.unwrap_or_else(panic_error)
            }
            Err(p) => panic_error(p),
        }
    };
    let d = held.d.take().expect("held until recorded");
    let mut st = fiber.lock();
    let fx = st.complete(w, d, result, Instant::now());
    fiber.signal(&fx);
    fx
}

/// Polls a node's future with panics caught and the callback scope set, so
/// re-entrant calls from inside the future are recognised as such.
struct CatchUnwind<'a> {
    fut: BoxFuture<'a, SendResult>,
    director: u64,
    fiber: &'a Fiber,
    lane: usize,
}

impl Future for CatchUnwind<'_> {
    type Output = Result<SendResult, Box<dyn Any + Send>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let _scope = Scope::callback(self.director);
        let _lane = LaneScope::enter(self.fiber, self.lane);
        match catch_unwind(AssertUnwindSafe(|| self.fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

/// A callback's panic as the failure the engine retries or dead-letters.
pub(crate) fn panic_error(payload: Box<dyn Any + Send>) -> SendResult {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "callback panicked".to_owned());
    Err(NodeError::new(format!("callback panicked: {text}")))
}

/// Called by each worker after it dropped its handle on the node. The last
/// one out settles the fiber's leftovers and signals `exited`. A fiber
/// still running (its async workers dropped by their runtime: no worker
/// leaves a running fiber on its own) is still routed: its leftovers stay
/// pending, for `close` to report or `unregister` to settle
/// (`State::abandoned`).
fn worker_exited(fiber: &Arc<Fiber>, core: &Arc<Core>) {
    let last = {
        let mut st = fiber.lock();
        st.live_workers -= 1;
        if st.live_workers == 0 && st.mode == super::state::Mode::Running {
            st.abandoned = true;
            st.done = true;
            fiber.exited.notify_all();
            return;
        }
        st.live_workers == 0
    };
    if last {
        core.fiber_retired(fiber);
        fiber.lock().done = true;
        fiber.exited.notify_all();
    }
}

impl Effects {
    pub(crate) fn has_hooks(&self) -> bool {
        !self.dropped.is_empty() || self.error.is_some() || self.dead_letter.is_some()
    }
}
