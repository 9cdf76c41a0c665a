//! Python code called from Rust on a thread the interpreter may end at exit.
//!
//! CPython before 3.14 ends a thread other than the finalising one when it
//! takes the GIL after finalisation has begun (`PyThread_exit_thread`, a
//! forced unwind). A daemon thread inside one of our methods that runs
//! Python code (`json` encoding a payload, a hook, `Event.json`) hands the
//! GIL over at the interpreter's switch interval and takes it back: if the
//! interpreter started finalising meanwhile, the unwind went from the
//! interpreter's frames into ours and the process aborted (`FATAL:
//! exception not rethrown`, from the `catch_unwind` of pyo3's trampoline,
//! or from the unwinder itself at a frame whose call into Python was
//! declared not to unwind; `test_shutdown.py`: a daemon thread emitting
//! dicts while the main thread exits aborted 39 runs in 40).
//!
//! [`call`] calls Python through a declaration that may unwind (`C-unwind`),
//! so its frame has a landing pad, and there a guard parks the thread for
//! good, as pyo3 does for a thread ended while it takes the GIL back after
//! `py.detach`, and as CPython 3.14 does for every such thread: the process
//! exits around it. The thread gave the GIL up before it was ended, and
//! our code holds no lock around these calls. A guard in a frame above a
//! pyo3 call is not enough: pyo3 declares its calls into Python `C`, so a
//! frame between them and the guard may stop the unwind with an abort.
//!
//! Waits with the GIL released need nothing more: pyo3 (0.30) parks a
//! thread that CPython ends as it takes the GIL back after them.

use pyo3::exceptions::{PyAttributeError, PyStopIteration};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use pyo3::BoundObject;

extern "C-unwind" {
    /// `ffi::PyObject_Call`, declared as able to unwind (see above).
    #[link_name = "PyObject_Call"]
    fn py_object_call(
        callable: *mut ffi::PyObject,
        args: *mut ffi::PyObject,
        kwargs: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject;
}

/// Parks the thread when dropped: only a forced unwind drops it (see the
/// module documentation); the normal path forgets it, and `PyObject_Call`
/// makes no Rust panic.
struct ParkOnForcedUnwind;

impl Drop for ParkOnForcedUnwind {
    fn drop(&mut self) {
        loop {
            std::thread::park();
        }
    }
}

/// `f(*args, **kwargs)`, parking the thread rather than aborting the
/// process if CPython ends the thread meanwhile (see the module
/// documentation). For callables that may run Python code.
#[inline(never)]
pub(crate) fn call<'py>(
    f: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = kwargs.map_or(std::ptr::null_mut(), |k| k.as_ptr());
    let guard = ParkOnForcedUnwind;
    // SAFETY: the three pointers are live objects (or null for kwargs),
    // borrowed for the call, and the GIL is held (`'py`).
    let result = unsafe { py_object_call(f.as_ptr(), args.as_ptr(), kwargs) };
    std::mem::forget(guard);
    // SAFETY: a new reference, or null with the exception set.
    unsafe { Bound::from_owned_ptr_or_err(f.py(), result) }
}

/// [`call`] with positional arguments only.
pub(crate) fn call1<'py>(
    f: &Bound<'py, PyAny>,
    args: impl IntoPyObject<'py, Target = PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    let args = args.into_pyobject(f.py()).map_err(Into::into)?.into_bound();
    call(f, &args, None)
}

/// `getattr(obj, name)` through [`call`]: for an attribute a Python
/// property computes.
pub(crate) fn getattr<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let getattr = obj.py().import("builtins")?.getattr("getattr")?;
    call1(&getattr, (obj, name))
}

/// [`getattr`], None where `hasattr` is false (an `AttributeError`);
/// any other error the lookup raises goes through.
pub(crate) fn getattr_opt<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    match getattr(obj, name) {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_instance_of::<PyAttributeError>(obj.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `obj`'s items, as pyo3's `try_iter` gives them, its `__iter__` and
/// its iterator's `__next__` (Python code, maybe) called through [`call`]
/// (`iter(obj)`, then `next` for each item): pyo3 calls them through
/// frames a forced unwind cannot cross. The error is `iter`'s.
pub(crate) fn iterate<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Items<'py>> {
    let builtins = obj.py().import("builtins")?;
    let next = builtins.getattr("next")?;
    let iterator = call1(&builtins.getattr("iter")?, (obj,))?;
    Ok(Items { next, iterator: Some(iterator) })
}

/// The items of [`iterate`]: they end at the iterator's `StopIteration`,
/// or after an error.
pub(crate) struct Items<'py> {
    /// `builtins.next`.
    next: Bound<'py, PyAny>,
    /// None once the items have ended.
    iterator: Option<Bound<'py, PyAny>>,
}

impl<'py> Iterator for Items<'py> {
    type Item = PyResult<Bound<'py, PyAny>>;

    fn next(&mut self) -> Option<Self::Item> {
        let result = call1(&self.next, (self.iterator.as_ref()?,));
        match result {
            Ok(item) => Some(Ok(item)),
            Err(e) => {
                if let Some(ended) = self.iterator.take() {
                    release(ended);
                }
                (!e.is_instance_of::<PyStopIteration>(self.next.py())).then_some(Err(e))
            }
        }
    }
}

/// An iterator let go of before its end (the caller stopped at an item
/// it refused) may be a generator, whose `finally` then runs.
impl Drop for Items<'_> {
    fn drop(&mut self) {
        if let Some(unfinished) = self.iterator.take() {
            release(unfinished);
        }
    }
}

/// Lets go of `obj` inside [`call`]: if ours was its last reference, its
/// `__del__`, or an unfinished generator's `finally`, runs there (Python
/// code that aborted the process from a Rust frame at exit).
fn release(obj: Bound<'_, PyAny>) {
    let Ok(holder) = PyList::new(obj.py(), [obj]) else { return };
    // What `__del__` raises Python reports as unraisable, not here.
    let _ = holder.getattr("clear").and_then(|clear| call1(&clear, ()));
}

/// `str(obj)` through [`call`]: for an object whose `__str__` may be
/// Python code (an exception's, for its text).
pub(crate) fn str_of<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    let str = obj.py().import("builtins")?.getattr("str")?;
    Ok(call1(&str, (obj,))?.cast_into::<PyString>()?)
}
