//! A Python object held by Rust and released safely: a director's weakref
//! to itself (`collected.rs`) and the strong references that keep its
//! callables alive while a collected director closes (`held.rs`). The
//! callables themselves live in the director's table (`held.rs`).
//!
//! Such references may be dropped on the engine's threads, possibly
//! while no thread state is attached. Dropping a `Py` there would defer the
//! decref to pyo3's pool; instead we attach when the interpreter allows it
//! and, while it finalises, leak the reference rather than touch Python.

use pyo3::prelude::*;
use pyo3::types::PyString;

/// A Python object owned by Rust code that may outlive any particular GIL
/// scope.
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
/// The text is the exception's `__str__`, Python code of the user's own
/// when the class defines it, run on a delivery thread or a blocking
/// thread of the distributed layer: through `exiting.rs` (a publish whose
/// error's text was still being made when the interpreter exited aborted
/// the process; `test_shutdown.py`).
pub(crate) fn describe(py: Python<'_>, err: &PyErr) -> String {
    let name = err.get_type(py).name().map_or_else(|_| "Exception".to_owned(), |n| n.to_string());
    let text = crate::exiting::str_of(err.value(py).as_any())
        .map_or_else(|_| String::new(), |s: Bound<'_, PyString>| s.to_string());
    if text.is_empty() {
        name
    } else {
        format!("{name}: {text}")
    }
}
