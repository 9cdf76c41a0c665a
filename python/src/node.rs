//! The node that runs a Python callback on the engine's delivery thread.

use chronica::{Batch, Node, NodeError, SendResult};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::callable::{describe, Callable};
use crate::event::py_event;

/// A registered Python callable: called with a list of `chronica.Event`, the
/// GIL held, on the node's own delivery thread. Raising fails the batch,
/// which the engine then retries by the node's policy.
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
            Ok(_) => Ok(()),
            Err(e) => Err(NodeError::new(describe(py, &e))),
        }
    }
}

impl Node for PyNode {
    fn send(&self, batch: &Batch) -> SendResult {
        Python::try_attach(|py| self.call(py, batch))
            .unwrap_or_else(|| Err(NodeError::new("the Python interpreter is shutting down")))
    }
}
