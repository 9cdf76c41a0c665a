//! `async def` nodes and the asyncio loops they wait on, for `Director`
//! and `Distributed` alike.
//!
//! An async node's delivery thread submits each coroutine to the node's
//! loop and waits for it (`chronica._aio.adapt`). On the thread that runs
//! that loop, a call that waits for the node's callback in flight waits
//! for itself: `unregister` there hung. So `unregister` remembers which
//! loop each async node waits on and, on that loop's thread, removes the
//! node without waiting ([`Director::unregister_no_wait`]), as the engine
//! does from inside a callback: the node is out at once and let go right
//! after its callback in flight returns, which happens once the caller
//! gives the loop back. Everywhere else `unregister` still waits for the
//! node's last callback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chronica::{Director, NodeStats};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::errors::MapPy;
use crate::held::Held;
use crate::node::PyNode;

/// One director's async nodes and the shared close deadline of their waits.
pub(crate) struct AsyncNodes {
    /// The callables of every node and hook (`held.rs`).
    pub(crate) held: Arc<Held>,
    /// `chronica._aio.Closing`, made on the first async registration. Not
    /// in `held`: it references nothing but a number.
    closing: PyOnceLock<Py<PyAny>>,
    /// The async nodes by uid, each with the address of the loop it waits
    /// on (kept alive by the node's adapter, so the address stays that
    /// loop's while the node lives). Weak: an entry ends with its node.
    /// More than one per uid while a node unregistered without waiting
    /// still runs its last callback and a new one has the uid. Never
    /// locked while calling into the engine or Python.
    by_uid: Mutex<ByUid>,
}

/// An async node, weakly, and the address of the loop it waits on.
type Served = (Weak<PyNode>, usize);

/// The async nodes by uid, and when next to drop the entries of nodes
/// gone. `unregister` drops those of its uid, but a node that
/// unregistered itself from its own callback is still alive then, and its
/// entry used to stay for good (about 225 bytes per uid, for a process
/// that gave each such node a new uid).
#[derive(Default)]
struct ByUid {
    nodes: HashMap<String, Vec<Served>>,
    /// The table's size that triggers the next sweep: twice its size
    /// after the last one, at least [`SWEEP_MIN`], so a sweep's cost is
    /// paid for by the registrations since the one before (amortised
    /// O(1)) and the table stays under twice its live nodes plus that.
    sweep_at: usize,
}

/// The smallest table that is swept.
const SWEEP_MIN: usize = 64;

impl ByUid {
    /// Records `node`, of `uid`, waiting on the loop at `target`.
    fn insert(&mut self, uid: &str, node: Weak<PyNode>, target: usize) {
        let entries = self.nodes.entry(uid.to_owned()).or_default();
        entries.retain(|(n, _)| n.strong_count() > 0);
        entries.push((node, target));
        if self.nodes.len() >= self.sweep_at {
            self.nodes.retain(|_, entries| {
                entries.retain(|(n, _)| n.strong_count() > 0);
                !entries.is_empty()
            });
            self.sweep_at = (2 * self.nodes.len()).max(SWEEP_MIN);
        }
    }
}

impl std::fmt::Debug for AsyncNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncNodes").finish_non_exhaustive()
    }
}

impl AsyncNodes {
    /// No async node yet.
    pub(crate) fn new() -> Self {
        Self { held: Arc::default(), closing: PyOnceLock::new(), by_uid: Mutex::default() }
    }

    /// The node that runs `callback` for `uid`: a plain callable as is; an
    /// `async def` adapted to run on `loop` (None: the loop running now)
    /// and recorded, before the engine can know the node, so that no
    /// `unregister` can miss it. Raises what `chronica._aio.adapt` raises,
    /// TypeError for a `loop` that is not an event loop and
    /// InvalidArgumentError for a closed one, whatever the callback (a
    /// plain one used to ignore it, of any type).
    pub(crate) fn node(
        &self,
        py: Python<'_>,
        uid: &str,
        callback: Bound<'_, PyAny>,
        r#loop: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Arc<PyNode>> {
        // `chronica._aio` is Python code.
        use crate::exiting::call1;
        let aio = py.import("chronica._aio")?;
        call1(&aio.getattr("check_loop")?, (&r#loop,))?;
        if !call1(&aio.getattr("is_async")?, (&callback,))?.is_truthy()? {
            return Ok(Arc::new(PyNode::new(self.held.hold(py, callback.unbind()))));
        }
        let closing =
            self.closing.get_or_try_init(py, || call1(&aio.getattr("Closing")?, ()).map(Bound::unbind))?;
        let (call, target): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
            call1(&aio.getattr("adapt")?, (&callback, r#loop, closing.bind(py)))?.extract()?;
        let node = Arc::new(PyNode::new(self.held.hold(py, call.unbind())));
        let mut by_uid = self.by_uid.lock().unwrap_or_else(|p| p.into_inner());
        by_uid.insert(uid, Arc::downgrade(&node), target.as_ptr() as usize);
        Ok(node)
    }

    /// How many uids the table holds, for `Director._async_uids`.
    pub(crate) fn uids(&self) -> usize {
        self.by_uid.lock().unwrap_or_else(|p| p.into_inner()).nodes.len()
    }

    /// Arms the close deadline of the async callbacks' waits.
    pub(crate) fn begin_close(&self, py: Python<'_>, timeout: Duration) {
        if let Some(c) = self.closing.get(py) {
            let begin = c.bind(py).getattr("begin");
            let _ = begin.and_then(|b| crate::exiting::call1(&b, (timeout.as_secs_f64(),)));
        }
    }

    /// Removes node `uid` from `director`. Waits (GIL released) for its
    /// last callback, except on the thread that runs the loop an async
    /// node `uid` waits on (see the module documentation); Ctrl-C ends the
    /// wait, the node leaving all the same (`waits.rs`).
    pub(crate) fn unregister(&self, py: Python<'_>, director: &Director, uid: &str) -> PyResult<()> {
        let result = if self.waits_on_this_thread(py, uid) {
            Ok(py.detach(|| director.unregister_no_wait(uid)))
        } else {
            let (d, owned) = (director.clone(), uid.to_owned());
            leaving(py, director, uid, move || d.unregister(&owned))
        };
        self.forget(uid);
        result?.map_py()
    }

    /// [`unregister`](Self::unregister) after a drain of at most `timeout`
    /// (`Director::unregister_draining`); returns the node's counters, its
    /// final ones where this waited.
    pub(crate) fn unregister_draining(
        &self,
        py: Python<'_>,
        director: &Director,
        uid: &str,
        timeout: Duration,
    ) -> PyResult<NodeStats> {
        let result = if self.waits_on_this_thread(py, uid) {
            Ok(py.detach(|| director.unregister_draining_no_wait(uid, timeout)))
        } else {
            let (d, owned) = (director.clone(), uid.to_owned());
            leaving(py, director, uid, move || d.unregister_draining(&owned, timeout))
        };
        self.forget(uid);
        result?.map_py()
    }

    /// Drops the entries of `uid` whose node is gone.
    fn forget(&self, uid: &str) {
        let mut by_uid = self.by_uid.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entries) = by_uid.nodes.get_mut(uid) {
            entries.retain(|(n, _)| n.strong_count() > 0);
            if entries.is_empty() {
                by_uid.nodes.remove(uid);
            }
        }
    }

    /// Whether an async node `uid` waits on the loop that this thread is
    /// running now.
    fn waits_on_this_thread(&self, py: Python<'_>, uid: &str) -> bool {
        let loops: Vec<usize> = {
            let by_uid = self.by_uid.lock().unwrap_or_else(|p| p.into_inner());
            let Some(entries) = by_uid.nodes.get(uid) else { return false };
            entries.iter().filter(|(n, _)| n.strong_count() > 0).map(|&(_, l)| l).collect()
        };
        running_one_of(py, &loops)
    }

    /// The close of a director (or fabric) collected while open, from its
    /// finalizer: the async callbacks' waits are bounded by `timeout`, as
    /// in `close`. `close` runs on a thread of its own. The finalizer
    /// returns at once where the close would wait for this thread: where
    /// `waits_here` is false (inside one of the director's callbacks or
    /// hooks: the close waits for that callback, which waited up to 3 s
    /// for the finalizer and lost the events queued behind it to the
    /// drain's deadline), and on the thread running the loop of one of its
    /// async nodes (the callbacks in flight wait for this very loop, which
    /// runs them once the finalizer returns: waiting here hung for good). Else
    /// it waits, GIL released, for the close to end, but at most the drain
    /// and [`FINALIZER_GRACE`]: this thread may hold a lock that a callback
    /// in flight waits for (a `threading.Lock` around `del`), and then the
    /// close cannot end before the finalizer returns. Waiting at all keeps
    /// the usual case as it was: the close is over when the collection is.
    /// A close that outlasts the finalizer goes on; `close` holds what the
    /// `atexit` hook waits for (a [`Closing`](crate::closes::Closing)).
    pub(crate) fn close_collected<F: FnOnce() + Send + 'static>(
        &self,
        timeout: Duration,
        waits_here: bool,
        close: F,
    ) {
        let _ = Python::try_attach(|py| {
            self.begin_close(py, timeout);
            let (done, ended) = std::sync::mpsc::sync_channel::<()>(1);
            let close = move || {
                close();
                let _ = done.send(());
            };
            match close_elsewhere(close) {
                // No thread to close on: close here.
                Err(close) => py.detach(close),
                Ok(()) if !waits_here || self.any_waits_on_this_thread(py) => {}
                Ok(()) => {
                    let _ = py.detach(move || ended.recv_timeout(timeout + FINALIZER_GRACE));
                }
            }
        });
    }

    /// Whether any async node waits on the loop that this thread is
    /// running now: a close here would wait for callbacks that need this
    /// very thread.
    fn any_waits_on_this_thread(&self, py: Python<'_>) -> bool {
        let loops: Vec<usize> = {
            let by_uid = self.by_uid.lock().unwrap_or_else(|p| p.into_inner());
            by_uid.nodes.values().flatten().filter(|(n, _)| n.strong_count() > 0).map(|&(_, l)| l).collect()
        };
        running_one_of(py, &loops)
    }
}

/// How long a finalizer waits for its close past the close's drain: the
/// engine's close then only joins its threads, which takes milliseconds
/// unless a callback is stuck.
const FINALIZER_GRACE: Duration = Duration::from_secs(1);

/// `unregister`, an unregister of node `uid` from `director`, run with the
/// GIL released; Ctrl-C ends its wait once the node is out of the routes
/// (`waits::interruptible`), where it waits at all: not inside a callback
/// or hook of `director`, where the engine decides whether it waits from
/// the thread it runs on.
fn leaving<T: Send + 'static>(
    py: Python<'_>,
    director: &Director,
    uid: &str,
    unregister: impl FnOnce() -> T + Send + 'static,
) -> PyResult<T> {
    if !director.can_wait() {
        return Ok(py.detach(unregister));
    }
    // Another node may take the uid meanwhile; the wait is then as before.
    let gone = || !director.nodes().iter().any(|n| n == uid);
    crate::waits::interruptible(py, gone, unregister)
}

/// Runs `close` on a thread of its own; gives it back when no thread could
/// be started.
fn close_elsewhere<F: FnOnce() + Send + 'static>(close: F) -> Result<(), F> {
    crate::waits::spawn("chronica-close", close).map(drop)
}

/// Whether this thread is running one of the loops at `loops` now.
fn running_one_of(py: Python<'_>, loops: &[usize]) -> bool {
    if loops.is_empty() {
        return false;
    }
    // `asyncio._get_running_loop`: the loop running on this thread, or
    // None (`get_running_loop` without the exception).
    py.import("asyncio")
        .and_then(|m| m.getattr("_get_running_loop"))
        .and_then(|f| f.call0())
        .is_ok_and(|running| !running.is_none() && loops.contains(&(running.as_ptr() as usize)))
}
