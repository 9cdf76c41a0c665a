//! The shared heart of a director: settings, routing table, id counter,
//! runtime and shutdown. Owned by every `Director` handle and by every
//! fiber worker (which is why closing joins the workers: it ends the cycle).
//!
//! Locks: `routes` is held only to read or swap the snapshot `Arc`;
//! `membership` serialises register / unregister / subscribe / close and is
//! never held while waiting for a fiber or running user code.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::director::builder::Config;
use crate::director::context;
use crate::director::routing::Routes;
use crate::fiber::state::{Effects, Mode};
use crate::fiber::Fiber;
use crate::hooks::{DeadLetter, DropReason, DropReport};
use crate::{Error, Result};

static DIRECTOR_IDS: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
enum Runtime {
    None,
    Owned(tokio::runtime::Runtime),
    Attached(tokio::runtime::Handle),
}

#[derive(Debug)]
pub(crate) struct Core {
    /// Process-unique, for the thread-local callback markers.
    pub(crate) id: u64,
    /// The process's fork count when this was made (see `fork.rs`).
    born: u64,
    /// Next event id.
    pub(crate) ids: AtomicU64,
    pub(crate) cfg: Config,
    routes: RwLock<Arc<Routes>>,
    pub(crate) membership: Mutex<()>,
    closed: AtomicBool,
    runtime: Mutex<Runtime>,
    /// Fibers unregistered from inside a callback, to be joined at close.
    pub(crate) unjoined: Mutex<Vec<Arc<Fiber>>>,
    /// Fibers of nodes being unregistered: out of the routes, not yet
    /// exited. `close` waits for them too and counts what they still hold.
    pub(crate) leaving: Mutex<Vec<Arc<Fiber>>>,
    /// Delivered events' shells on their way back to emitters.
    pub(crate) recycler: super::recycle::Recycler,
    /// Says when workers let delivered events go (`delivery` acks).
    pub(crate) released: super::released::Released,
    /// Counts the changes of the routes (registrations, unregistrations,
    /// subscriptions), for those who act on them (the distributed layer's
    /// group watcher).
    routes_changed: tokio::sync::watch::Sender<u64>,
}

impl Core {
    pub(crate) fn new(cfg: Config) -> Self {
        let runtime = match &cfg.runtime {
            Some(h) => Runtime::Attached(h.clone()),
            None => Runtime::None,
        };
        Self {
            id: DIRECTOR_IDS.fetch_add(1, Ordering::Relaxed),
            born: crate::fork::generation(),
            ids: AtomicU64::new(1),
            cfg,
            routes: RwLock::new(Arc::new(Routes::default())),
            membership: Mutex::new(()),
            closed: AtomicBool::new(false),
            runtime: Mutex::new(runtime),
            unjoined: Mutex::new(Vec::new()),
            leaving: Mutex::new(Vec::new()),
            recycler: Default::default(),
            released: Default::default(),
            routes_changed: tokio::sync::watch::Sender::new(0),
        }
    }

    pub(crate) fn routes(&self) -> Arc<Routes> {
        self.routes.read().clone()
    }

    pub(crate) fn set_routes(&self, routes: Routes) {
        *self.routes.write() = Arc::new(routes);
        self.routes_changed.send_modify(|n| *n += 1);
    }

    /// Told of every change of the routes from now on.
    pub(crate) fn routes_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.routes_changed.subscribe()
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        self.check_unforked()?;
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// `Forked` in a child forked after this director was made: nothing
    /// here may be touched there, a lock included (see `fork.rs`).
    pub(crate) fn check_unforked(&self) -> Result<()> {
        crate::fork::check(self.born)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The runtime async nodes run on, created on first use.
    pub(crate) fn runtime(&self) -> std::io::Result<tokio::runtime::Handle> {
        let mut rt = self.runtime.lock();
        match &*rt {
            Runtime::Owned(r) => Ok(r.handle().clone()),
            Runtime::Attached(h) => Ok(h.clone()),
            Runtime::None => {
                let r = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(self.cfg.worker_threads)
                    .thread_name("chronica-rt")
                    .enable_time()
                    .build()?;
                let h = r.handle().clone();
                *rt = Runtime::Owned(r);
                Ok(h)
            }
        }
    }

    /// Runs the hooks an effect calls for. No lock may be held.
    pub(crate) fn run_hooks(&self, fiber: &Fiber, fx: Effects) {
        let (hooks, uid) = (&self.cfg.hooks, &*fiber.uid);
        let _hook = context::Scope::hook(self.id);
        if let Some(h) = &hooks.on_drop {
            for event in &fx.dropped {
                h(&DropReport { uid, event, reason: DropReason::Overflow });
            }
        }
        if let (Some(err), Some(h)) = (&fx.error, &hooks.on_error) {
            h(uid, err);
        }
        let dead_letter = fiber.hooks.on_dead_letter.as_ref().or(hooks.on_dead_letter.as_ref());
        if let (Some((batch, error)), Some(h)) = (&fx.dead_letter, dead_letter) {
            h(&DeadLetter { uid, batch, error });
        }
    }

    /// True on a thread where `close` (or `unregister`) cannot wait for the
    /// fibers: inside one of this director's callbacks or hooks, or on its
    /// worker thread.
    pub(crate) fn closing_here(&self) -> bool {
        context::in_callback_of(self.id) || context::is_worker_of(self.id) || context::in_hook_of(self.id)
    }

    /// True on the thread that runs the attached runtime when that is a
    /// current-thread one (a `#[tokio::test]` body, a task on it): the
    /// async nodes' tasks run only once this thread goes back to the
    /// runtime, so waiting for them here would never end. Such a thread
    /// is in the runtime's context and has run our tasks, or, before they
    /// first ran, runs no task itself (the body of `block_on`): a blocking
    /// thread of the runtime (`spawn_blocking`), in its context too, runs
    /// a task of its own and none of ours.
    pub(crate) fn on_attached_current_thread(&self) -> bool {
        let Runtime::Attached(attached) = &*self.runtime.lock() else {
            return false;
        };
        let id = attached.id();
        attached.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread
            && tokio::runtime::Handle::try_current().is_ok_and(|here| here.id() == id)
            && (crate::fiber::runs_tasks_of(id) || tokio::task::try_id().is_none())
    }

    /// Whether this thread may wait for `fiber`'s workers to exit: not for
    /// an async node's, still running, from the thread its tasks need.
    pub(crate) fn may_wait_on_runtime(&self, fiber: &Fiber) -> bool {
        !fiber.is_async() || fiber.lock().done || !self.on_attached_current_thread()
    }

    /// Whether `close` could wait here for every node it would wait for
    /// (see [`may_wait_on_runtime`](Self::may_wait_on_runtime)).
    pub(crate) fn may_wait_on_runtime_for_all(&self) -> bool {
        let routes = self.routes();
        let leaving = self.leaving.lock().clone();
        // Bound before returning: the iterator borrows `routes`, which the
        // temporaries of a tail expression would outlive.
        let all = routes.nodes.iter().map(|r| &r.fiber).chain(&leaving).all(|f| self.may_wait_on_runtime(f));
        all
    }

    /// `close(timeout)`: refuse new calls, drain until the deadline, stop,
    /// wait for in-flight callbacks, join every thread, report what is left.
    pub(crate) fn close(&self, timeout: Duration) -> Result<u64> {
        self.check_unforked()?;
        if self.closing_here() {
            return Err(Error::Reentrant);
        }
        {
            let _m = self.membership.lock();
            if self.is_closed() {
                return Err(Error::Closed);
            }
            // Under the lock, which every registration and unregister
            // takes: no node this close would wait for comes after it.
            if !self.may_wait_on_runtime_for_all() {
                return Err(Error::Reentrant);
            }
            self.closed.store(true, Ordering::Release);
        }
        let deadline = crate::time::deadline(timeout);
        let routes = self.routes();
        let fibers: Vec<Arc<Fiber>> =
            routes.nodes.iter().map(|r| r.fiber.clone()).chain(self.unjoined.lock().drain(..)).collect();
        // Nodes an unregister had taken out of the routes before `closed`
        // was set (it holds the membership lock): stopping, or draining
        // until a deadline of their own, so not drained any further by
        // this close, but waited for (stopped at our deadline, like the
        // others) before the runtime
        // goes (an async node's task dropped half-way would never report
        // its exit, and the unregister would wait forever), and counted.
        let leaving: Vec<Arc<Fiber>> = self.leaving.lock().clone();
        for f in &fibers {
            f.set_mode(Mode::Draining);
        }
        for f in fibers.iter().chain(&leaving) {
            f.wait_exited(Some(deadline));
        }
        for f in fibers.iter().chain(&leaving) {
            f.set_mode(Mode::Stopped);
        }
        for f in fibers.iter().chain(&leaving) {
            f.wait_exited(None);
            f.join();
        }
        self.shutdown_runtime(deadline);
        let held = |f: &Arc<Fiber>| f.stats().pending;
        Ok(routes.nodes.iter().map(|r| held(&r.fiber)).sum::<u64>() + leaving.iter().map(held).sum::<u64>())
    }

    fn shutdown_runtime(&self, deadline: Instant) {
        let rt = std::mem::replace(&mut *self.runtime.lock(), Runtime::None);
        if let Runtime::Owned(r) = rt {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Dropping a runtime inside another's context panics.
                r.shutdown_background();
            } else {
                r.shutdown_timeout(deadline.saturating_duration_since(Instant::now()));
            }
        }
    }

    /// The last handle is gone without `close`: close with a short grace
    /// period, on a helper thread when we are on one of our own workers or
    /// inside a runtime (where blocking or joining ourselves is not possible).
    pub(crate) fn close_on_drop(self: &Arc<Self>) {
        if self.check_unforked().is_err() {
            // Never freed in this process: freeing would drop the runtime,
            // which waits for its threads, and those are not here.
            std::mem::forget(self.clone());
            return;
        }
        if self.is_closed() {
            return;
        }
        const GRACE: Duration = Duration::from_secs(5);
        if context::is_worker_of(self.id) || tokio::runtime::Handle::try_current().is_ok() {
            let core = self.clone();
            let spawned = std::thread::Builder::new().name("chronica-close".into()).spawn(move || {
                let _ = core.close(GRACE);
            });
            if spawned.is_err() {
                // No thread to close on: stop accepting; workers end with the process.
                self.closed.store(true, Ordering::Release);
            }
        } else {
            let _ = self.close(GRACE);
        }
    }

    /// Reports an unregistered node's leftover event as dropped.
    pub(crate) fn report_unregistered_drop(&self, uid: &str, event: &crate::Event) {
        if let Some(h) = &self.cfg.hooks.on_drop {
            let _hook = context::Scope::hook(self.id);
            h(&DropReport { uid, event, reason: DropReason::Unregistered });
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
