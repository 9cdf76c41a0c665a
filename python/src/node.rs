//! The node that runs a Python callback on the engine's delivery thread.

use chronica::{Batch, Node, NodeError, SendResult};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::callable::{describe, Callable};
use crate::event::py_event;

/// A registered Python callable: called with a list of `chronica.Event`, the
/// GIL held, on the node's own delivery thread. Raising fails the batch,
/// which the engine then retries by the node's policy (from the first
/// event not handled, for a `chronica.PartialDeliveryError`).
#[derive(Debug)]
pub(crate) struct PyNode {
    callback: Callable,
}

impl PyNode {
    /// Wraps a callable (already checked to be callable).
    pub(crate) fn new(callback: Py<PyAny>) -> Self {
        Self { callback: Callable::new(callback) }
    }

    fn call(&self, py: Python<'_>, batch: &Batch) -> SendResult {
        let events = batch
            .iter()
            .map(|e| py_event(py, e))
            .collect::<PyResult<Vec<_>>>()
            .and_then(|v| PyList::new(py, v))
            .map_err(|e| NodeError::new(describe(py, &e)))?;
        match self.callback.bind(py).call1((events,)) {
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
    let text = value.str().map(|s| s.to_string()).unwrap_or_default();
    NodeError::new(text).with_delivered(delivered)
}

impl Node for PyNode {
    fn send(&self, batch: &Batch) -> SendResult {
        Python::try_attach(|py| self.call(py, batch))
            .unwrap_or_else(|| Err(NodeError::new("the Python interpreter is shutting down")))
    }

    /// Holds the GIL while batches are ready one after another (`send`'s
    /// own attach then only counts). Each hand-over of the GIL between
    /// eight delivery threads and a producer costs context switches; a
    /// backlog now costs one instead of one per batch. Other Python threads
    /// still run: the interpreter hands the GIL over while the callback runs
    /// Python code, at its usual switch interval.
    fn session(&self, deliver: &mut dyn FnMut()) {
        if Python::try_attach(|_| deliver()).is_none() {
            deliver(); // finalizing: each send reports it
        }
    }
}
