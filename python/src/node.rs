//! The node that runs a Python callback on the engine's delivery thread.

use std::cell::Cell;
use std::time::{Duration, Instant};

use chronica::{Batch, Node, NodeError, SendResult};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyList;

use crate::callable::describe;
use crate::event::py_event;
use crate::held::HeldRef;

/// A registered Python callable: called with a list of `chronica.Event`, the
/// GIL held, on the node's own delivery thread. Raising fails the batch,
/// which the engine then retries by the node's policy (from the first
/// event not handled, for a `chronica.PartialDeliveryError`).
#[derive(Debug)]
pub(crate) struct PyNode {
    callback: HeldRef,
}

impl PyNode {
    /// Wraps a callable (already checked to be callable), held by its
    /// director's table.
    pub(crate) fn new(callback: HeldRef) -> Self {
        Self { callback }
    }

    fn call(&self, py: Python<'_>, batch: &Batch) -> SendResult {
        let events = batch
            .iter()
            .map(|e| py_event(py, e))
            .collect::<PyResult<Vec<_>>>()
            .and_then(|v| PyList::new(py, v))
            .map_err(|e| NodeError::new(describe(py, &e)))?;
        // Gone once a collected director's `__clear__` let go of it, which
        // it does only when its close is over: the batch fails all the same.
        let Some(callback) = self.callback.get(py) else {
            return Err(NodeError::new("the director was garbage-collected"));
        };
        match callback.call1((events,)) {
            Ok(r) if r.is_none() || !r.hasattr("__await__").unwrap_or(false) => Ok(()),
            // A sync wrapper around an `async def` (a decorator that hides
            // it from `iscoroutinefunction`): nothing awaits the coroutine,
            // so the batch was not handled.
            Ok(r) => {
                let _ = r.call_method0("close");
                Err(NodeError::new(
                    "TypeError: the callback returned an awaitable, which nothing awaits; \
                     register the async def itself (with loop=)",
                ))
            }
            Err(e) => Err(node_error(py, &e)),
        }
    }
}

/// The engine's error for a callback's exception. A
/// `chronica.PartialDeliveryError` says how many leading events were
/// handled, and its message is the error text as given.
fn node_error(py: Python<'_>, e: &PyErr) -> NodeError {
    let partial = py
        .import("chronica")
        .and_then(|m| m.getattr("PartialDeliveryError"))
        .ok()
        .filter(|class| e.matches(py, class).unwrap_or(false));
    if partial.is_none() {
        return NodeError::new(describe(py, e));
    }
    let value = e.value(py);
    let delivered = value.getattr("delivered").and_then(|d| d.extract::<usize>()).unwrap_or(0);
    // The bus's dispatcher stopping at its drain's deadline: no failure.
    if value.getattr("_interrupted").and_then(|b| b.is_truthy()).unwrap_or(false) {
        return NodeError::interrupted(delivered);
    }
    let next_only = value.getattr("of_next_event").and_then(|b| b.is_truthy()).unwrap_or(false);
    // Its `__str__` may be the user's Python code (see `describe`).
    let text = crate::exiting::str_of(value.as_any()).map(|s| s.to_string()).unwrap_or_default();
    let error = NodeError::new(text).with_delivered(delivered);
    if next_only {
        error.of_next_event()
    } else {
        error
    }
}

impl Node for PyNode {
    fn send(&self, batch: &Batch) -> SendResult {
        Python::try_attach(|py| {
            yield_if_due(py);
            self.call(py, batch)
        })
        .unwrap_or_else(|| Err(NodeError::new("the Python interpreter is shutting down")))
    }

    /// Holds the GIL while batches are ready one after another (`send`'s
    /// own attach then only counts). Each hand-over of the GIL between
    /// eight delivery threads and a producer costs context switches; a
    /// backlog now costs one per switch interval instead of one per batch.
    ///
    /// The interpreter only hands the GIL over while it runs bytecode: a
    /// callback that is a C callable (`list.append`, `SimpleQueue.put`)
    /// runs none, and a session kept every other Python thread waiting for
    /// its whole backlog. So the session lets the GIL go between two batches
    /// once it has held it for one and a half switch intervals
    /// (`sys.getswitchinterval()`, read once per session), and takes it
    /// back. A thread waiting for the GIL asks for it after one interval
    /// (CPython's `take_gil`), and a thread that asked gets it before we
    /// take it back (`FORCE_SWITCHING`); letting go after exactly one
    /// interval raced that request and mostly came first, so nobody got
    /// the GIL (another thread then ran about every tenth interval).
    fn session(&self, deliver: &mut dyn FnMut()) {
        let attached = Python::try_attach(|py| {
            let _hold = Hold::start(switch_interval(py));
            deliver();
        });
        if attached.is_none() {
            deliver(); // finalizing: each send reports it
        }
    }
}

thread_local! {
    /// In a session on this delivery thread: since when it holds the GIL
    /// (taken or taken back) and for how long it may keep it.
    static HOLD: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// A session's claim on the GIL, cleared when the session ends (or unwinds).
struct Hold;

impl Hold {
    fn start(interval: Duration) -> Self {
        HOLD.set(Some((Instant::now(), interval)));
        Self
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        HOLD.set(None);
    }
}

/// Between two batches of a session: lets the GIL go and takes it back
/// when the session has held it for one and a half switch intervals (see
/// `session`).
fn yield_if_due(py: Python<'_>) {
    if let Some((since, interval)) = HOLD.get() {
        if since.elapsed() >= interval + interval / 2 {
            py.detach(|| ());
            HOLD.set(Some((Instant::now(), interval)));
        }
    }
}

/// `sys.getswitchinterval()`, CPython's default (5 ms) if it cannot be read.
fn switch_interval(py: Python<'_>) -> Duration {
    /// `sys.getswitchinterval`, looked up once. Not `get_or_try_init`,
    /// which lets the GIL go (see `event.rs`, `cached`).
    static GET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let get = match GET.get(py) {
        Some(f) => Ok(f.bind(py).clone()),
        None => py.import("sys").and_then(|sys| sys.getattr("getswitchinterval")).inspect(|f| {
            let _ = GET.set(py, f.clone().unbind());
        }),
    };
    get.and_then(|f| f.call0())
        .and_then(|v| v.extract::<f64>())
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(Duration::from_millis(5))
}
