//! A Python callable held by the engine and released safely.
//!
//! The engine drops node values and hooks on its own threads, possibly
//! while no thread state is attached. Dropping a `Py` there would defer the
//! decref to pyo3's pool; instead we attach when the interpreter allows it
//! and, while it finalises, leak the reference rather than touch Python.

use pyo3::prelude::*;
use pyo3::types::PyString;

/// A callable owned by Rust code that may outlive any particular GIL scope.
#[derive(Debug)]
pub(crate) struct Callable(Option<Py<PyAny>>);

impl Callable {
    /// Takes ownership of `obj`.
    pub(crate) fn new(obj: Py<PyAny>) -> Self {
        Self(Some(obj))
    }
}

impl Drop for Callable {
    fn drop(&mut self) {
        let mut slot = self.0.take();
        if slot.is_some() && Python::try_attach(|_py| drop(slot.take())).is_none() {
            // The interpreter is finalising: leak the reference.
            std::mem::forget(slot.take());
        }
    }
}

/// "TypeName: message" for an exception, the text kept as `last_error`.
pub(crate) fn describe(py: Python<'_>, err: &PyErr) -> String {
    let name = err.get_type(py).name().map_or_else(|_| "Exception".to_owned(), |n| n.to_string());
    let text = err.value(py).str().map_or_else(|_| String::new(), |s: Bound<'_, PyString>| s.to_string());
    if text.is_empty() {
        name
    } else {
        format!("{name}: {text}")
    }
}
