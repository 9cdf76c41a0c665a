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

use std::sync::{Arc, OnceLock};

use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyTuple, PyWeakrefReference};

use crate::callable::Callable;
use crate::closes::Closes;
use crate::held::Held;

/// The shared state of a Python object that closes itself when collected
/// (a director's, a `Distributed`'s), and what it needs for that.
pub(crate) trait Collectable: Send + Sync + 'static {
    /// Closes it if still open, as a drop without `close` does.
    fn close_unreferenced(self: &Arc<Self>);
    /// Its closes under way.
    fn closes(&self) -> &Closes;
    /// The callables the engine holds for it.
    fn held(&self) -> &Held;
    /// Where its weakref is kept ([`watch`]).
    fn watch_slot(&self) -> &OnceLock<Callable>;

    /// The collector found it unreachable (its weakref's callback, before
    /// anything is cleared): closes it, and keeps its callables alive while
    /// a close is under way, so that the collection leaves them, and what
    /// they reach, whole for the delivery threads still calling them (the
    /// cycle is collected by a later collection).
    fn collected(self: &Arc<Self>, py: Python<'_>) {
        self.close_unreferenced();
        self.closes().keep_until_idle(self.held().keep(py));
    }

    /// For `__clear__`: lets go of its callables once its closes are over
    /// (the weakref's callback closed it before the collector began to
    /// clear, and kept them while that close ran).
    fn clear(self: &Arc<Self>, py: Python<'_>) {
        self.close_unreferenced();
        if self.closes().idle() {
            self.held().release(py);
        }
    }
}

/// Makes `obj`, whose shared state is `shared`, close itself when the
/// collector finds it unreachable: a weakref to `obj` whose callback calls
/// [`Collectable::collected`], kept in `shared` (held by Rust only, it
/// counts as a reference from outside, so the collector calls it).
pub(crate) fn watch<T: Collectable>(obj: &Bound<'_, PyAny>, shared: &Arc<T>) -> PyResult<()> {
    let py = obj.py();
    let weak = Arc::downgrade(shared);
    let callback = PyCFunction::new_closure(py, None, None, move |args: &Bound<'_, PyTuple>, _kwargs| {
        if let Some(shared) = weak.upgrade() {
            shared.collected(args.py());
        }
    })?;
    let weakref = PyWeakrefReference::new_with(obj, callback)?;
    let _ = shared.watch_slot().set(Callable::new(weakref.into_any().unbind()));
    Ok(())
}
