//! Telling a director (or `Distributed`) that the cycle collector found it
//! unreachable, before the collector clears anything.
//!
//! With its callables visible to the collector (`held.rs`), a director in
//! a reference cycle is collected: the collector first calls the weakref
//! callbacks of every object it found unreachable, then clears them one by
//! one (`tp_clear`), in no order we choose. A director that closed only in
//! its own `__clear__` would drain after its callbacks' function objects,
//! closures or instances may already have been cleared, and a delivery
//! thread then called a half-cleared object (a function whose globals are
//! gone crashes the interpreter). So each director holds a weakref to
//! itself whose callback closes it while everything is still whole; pyo3
//! offers no `__del__` (`tp_finalize`), which the collector calls at the
//! same point. The weakref's callback also runs when the last reference
//! goes the usual way, before the director's `Drop`, which then finds it
//! closed.

use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyTuple, PyWeakrefReference};

use crate::callable::Callable;

/// A weakref to `obj` whose callback runs `gone` with the thread attached;
/// keep it where the collector does not look (the returned `Callable`,
/// held by Rust only, counts as a reference from outside), or it is never
/// called. `gone` must not hold `obj` or what holds it strongly.
pub(crate) fn watch<F>(obj: &Bound<'_, PyAny>, gone: F) -> PyResult<Callable>
where
    F: Fn(Python<'_>) + Send + Sync + 'static,
{
    let py = obj.py();
    let callback = PyCFunction::new_closure(py, None, None, move |args: &Bound<'_, PyTuple>, _kwargs| {
        gone(args.py());
    })?;
    let weakref = PyWeakrefReference::new_with(obj, callback)?;
    Ok(Callable::new(weakref.into_any().unbind()))
}
