//! The Python objects that the engine holds for one director (or
//! `Distributed`): node callbacks and hooks, and a `Distributed`'s Python
//! adapter object and the ack tokens it hands back (`adapter.rs`), kept
//! where the garbage collector can see them. A bus's list (`bus.rs`)
//! keeps its `Subscription` objects in a table of its own, the same way.
//!
//! The engine keeps these callables on its own threads and structures,
//! which CPython's cycle collector cannot walk: a director whose callback
//! referenced it (a closure over `d`, a bound method of an object holding
//! it) made a cycle that was never collected, its threads running until
//! exit. So each callable is owned by the director's [`Held`] table, which
//! the Python object's `__traverse__` visits and its `__clear__` empties;
//! the engine keeps a [`HeldRef`], a key into that table.
//!
//! The table's lock is only ever taken with the thread attached to the
//! interpreter, and never held while Python code runs or the GIL is let
//! go: the collector, which runs with the GIL held, therefore always finds
//! it free, and every traversal of one collection sees the same objects.
//! (A traversal that found it taken would visit nothing, which is safe:
//! objects look referenced from outside, so nothing is collected.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;

use crate::callable::Callable;

/// The callables one director holds, by key.
#[derive(Debug, Default)]
pub(crate) struct Held {
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    next: u64,
    objs: HashMap<u64, Py<PyAny>>,
}

/// One callable of a [`Held`] table; it leaves the table when dropped.
#[derive(Debug)]
pub(crate) struct HeldRef {
    held: Arc<Held>,
    key: u64,
}

/// Strong references to what a table held at one moment, released when
/// dropped (attached if the interpreter allows it, as a [`Callable`]).
#[derive(Debug)]
pub(crate) struct Kept {
    _refs: Vec<Callable>,
}

impl Held {
    /// Puts `obj` in the table (`py`: attached, as the lock requires).
    pub(crate) fn hold(self: &Arc<Self>, _py: Python<'_>, obj: Py<PyAny>) -> HeldRef {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let key = slots.next;
        slots.next += 1;
        slots.objs.insert(key, obj);
        HeldRef { held: self.clone(), key }
    }

    /// Visits every object of the table (for `__traverse__`).
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Ok(slots) = self.slots.try_lock() else { return Ok(()) };
        slots.objs.values().try_for_each(|obj| visit.call(obj))
    }

    /// Lets go of every object (for `__clear__`): a callable used after
    /// this finds nothing ([`HeldRef::get`]).
    pub(crate) fn release(&self, _py: Python<'_>) {
        let objs = std::mem::take(&mut self.slots.lock().unwrap_or_else(|p| p.into_inner()).objs);
        // Dropped after the lock: a `__del__` may run, and a collection.
        drop(objs);
    }

    /// A strong reference to every object of the table now: while the
    /// result lives, a collection finds them referenced from outside.
    pub(crate) fn keep(&self, py: Python<'_>) -> Kept {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        Kept { _refs: slots.objs.values().map(|obj| Callable::new(obj.clone_ref(py))).collect() }
    }
}

impl Drop for Held {
    /// Only references [`HeldRef`]'s drop left while the interpreter
    /// finalised can be left: leaked, as they were.
    fn drop(&mut self) {
        let slots = self.slots.get_mut().unwrap_or_else(|p| p.into_inner());
        for (_, obj) in slots.objs.drain() {
            std::mem::forget(obj);
        }
    }
}

impl HeldRef {
    /// The callable, or None once the table has let go of it (the
    /// director was collected).
    pub(crate) fn get<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        let slots = self.held.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.objs.get(&self.key).map(|obj| obj.bind(py).clone())
    }
}

impl Drop for HeldRef {
    fn drop(&mut self) {
        // While the interpreter finalises the reference stays in the table,
        // which leaks it (`Held`'s drop).
        let _ = Python::try_attach(|_py| {
            let obj = self.held.slots.lock().unwrap_or_else(|p| p.into_inner()).objs.remove(&self.key);
            drop(obj);
        });
    }
}
