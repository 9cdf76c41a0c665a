//! The optional director hooks `on_drop`, `on_dead_letter` and `on_error`,
//! as Python callables. They run on the engine thread that caused the report
//! (an emitter or a delivery thread) with the GIL held; an exception they
//! raise is reported through `sys.unraisablehook` and otherwise ignored.

use std::sync::Arc;

use chronica::{DeadLetter, DeadLetterHook, DirectorBuilder, DropReason, DropReport, NodeError};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::event::{py_event, PyEvent};
use crate::held::{Held, HeldRef};

/// The three optional hook callables given to `Director(...)`.
#[derive(Debug, Default)]
pub(crate) struct PyHooks {
    pub(crate) on_drop: Option<Py<PyAny>>,
    pub(crate) on_dead_letter: Option<Py<PyAny>>,
    pub(crate) on_error: Option<Py<PyAny>>,
}

/// Calls `hook`, if its director's table still holds it (see `held.rs`).
fn run(py: Python<'_>, hook: &HeldRef, args: impl for<'p> FnOnce(Python<'p>) -> PyResult<Bound<'p, PyAny>>) {
    let Some(hook) = hook.get(py) else { return };
    // Maybe on an emitter's thread, which may be a daemon thread.
    let result =
        args(py).and_then(|a| crate::exiting::call(&hook, &a.cast_into::<pyo3::types::PyTuple>()?, None));
    if let Err(e) = result {
        e.write_unraisable(py, Some(&hook));
    }
}

/// A dead-letter hook calling `h(uid, events, error_text)` with the GIL held.
/// `h` is held by the director's table `held`.
pub(crate) fn dead_letter_hook(py: Python<'_>, held: &Arc<Held>, h: Py<PyAny>) -> DeadLetterHook {
    let h = Arc::new(held.hold(py, h));
    Arc::new(move |d: &DeadLetter<'_>| {
        Python::try_attach(|py| {
            run(py, &h, |py| {
                let events = d.batch.iter().map(|e| py_event(py, e)).collect::<PyResult<Vec<_>>>()?;
                let events = PyList::new(py, events)?;
                Ok((d.uid, events, d.error.message()).into_pyobject(py)?.into_any())
            })
        });
    })
}

impl PyHooks {
    /// Installs the hooks present on the builder, held by the director's
    /// table `held`.
    pub(crate) fn install(self, py: Python<'_>, held: &Arc<Held>, mut b: DirectorBuilder) -> DirectorBuilder {
        if let Some(h) = self.on_drop {
            let h = Arc::new(held.hold(py, h));
            b = b.on_drop(move |r: &DropReport<'_>| {
                Python::try_attach(|py| {
                    run(py, &h, |py| {
                        let reason = match r.reason {
                            DropReason::Overflow => "overflow",
                            DropReason::Unregistered => "unregistered",
                        };
                        let event = Bound::new(py, PyEvent::new(Arc::new(r.event.clone())))?;
                        Ok((r.uid, event, reason).into_pyobject(py)?.into_any())
                    })
                });
            });
        }
        if let Some(h) = self.on_dead_letter {
            let hook = dead_letter_hook(py, held, h);
            b = b.on_dead_letter(move |d: &DeadLetter<'_>| hook(d));
        }
        if let Some(h) = self.on_error {
            let h = Arc::new(held.hold(py, h));
            b = b.on_error(move |uid: &str, err: &NodeError| {
                Python::try_attach(|py| {
                    run(py, &h, |py| Ok((uid, err.message()).into_pyobject(py)?.into_any()))
                });
            });
        }
        b
    }
}
