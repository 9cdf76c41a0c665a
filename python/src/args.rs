//! Numeric arguments: converted with errors that name the argument, and
//! out-of-range values reported as bad values.
//!
//! pyo3 converts a Python `int` to `i64` (or `u32`, or a float) with
//! CPython's own functions, which raise `OverflowError` for an int too large
//! for the type: `Director(queue_capacity=2**63)` would not raise the
//! `InvalidArgumentError` (a `ValueError`) every other bad value raises.
//! Their `TypeError`s ("'str' object cannot be interpreted as an integer")
//! name no argument; pyo3 names it only in a note ("while processing
//! 'queue_capacity'"), which it adds with `add_note`, so only on Python
//! 3.11 and later. And `bool` is a subclass of `int`: `Retry(max_retries=True)`
//! was taken as 1.
//!
//! So every numeric argument of the public API is converted here, through
//! `#[pyo3(from_py_with = crate::args::NAME)]` (which keeps the Python
//! defaults literal for the signatures and the stubs): one function per
//! argument name, made by [`named!`], so that each message names the
//! argument on every Python version. A bool where an int goes and a value
//! of a wrong type raise `TypeError` ("queue_capacity must be an int, got
//! bool"), an int too large for the type `InvalidArgumentError`. Values
//! that fit go on to the usual range checks (`count`, `seconds`, the
//! engine's builder), which name the argument too. Either error has the
//! original as its cause; any other error, which an object's own
//! `__index__` or `__float__` raised, goes through as it is. Float arguments (times,
//! `multiplier`, `jitter`) refuse a bool the same way ("timeout must be a
//! number, got bool"): Python's own float arguments take it as 1.0 or 0.0,
//! which they used to, but `close(True)` or `Retry(jitter=True)` is a
//! mistake (a flag passed in the wrong place), not a number of seconds.
//!
//! An object's own `__index__` or `__float__` is Python code, run while
//! the argument is converted, possibly on a daemon thread when the
//! interpreter exits: it runs through `exiting.rs` ([`as_i64`],
//! [`as_f64`]), since pyo3's conversion calls it through frames a forced
//! unwind cannot cross (the process aborted; `test_shutdown.py`).

use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt};

use crate::errors::{invalid_argument, ChronicaError};

/// The type name an error message gives for `obj` (`type(obj).__name__`,
/// as the Python parts' `_kind`).
fn kind(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map_or_else(|_| "object".to_owned(), |n| n.to_string())
}

/// The error for `obj`, given as `name`, that failed to convert with `err`:
/// an `InvalidArgumentError` saying `range` for an `OverflowError`, a
/// `TypeError` saying `name` must be `want` for a `TypeError` (each with
/// the original as its cause), else `err` itself: what the object's own
/// `__index__` or `__float__` raised (a `KeyboardInterrupt` too) used to
/// be replaced by that `TypeError`, which misled.
fn conversion_error(obj: &Bound<'_, PyAny>, err: PyErr, name: &str, want: &str, range: &str) -> PyErr {
    let py = obj.py();
    let mapped = if err.is_instance_of::<PyOverflowError>(py) {
        invalid_argument(format!("{name} {range}"))
    } else if err.is_instance_of::<PyTypeError>(py) {
        PyTypeError::new_err(format!("{name} must be {want}, got {}", kind(obj)))
    } else {
        return err;
    };
    mapped.set_cause(py, Some(err));
    mapped
}

/// TypeError for a bool, which `extract` would take as a number (1 or 0).
fn refuse_bool(obj: &Bound<'_, PyAny>, name: &str, want: &str) -> PyResult<()> {
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!("{name} must be {want}, got bool")));
    }
    Ok(())
}

/// `obj` as an i64, as pyo3 converts it: an `int`, or what the object's
/// `__index__` returns, called through `exiting.rs` (`operator.index`; the
/// module documentation says why). An exact `int` runs no Python code.
fn as_i64(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    if obj.is_exact_instance_of::<PyInt>() {
        return obj.extract();
    }
    let index = obj.py().import("operator")?.getattr("index")?;
    crate::exiting::call1(&index, (obj,))?.extract()
}

/// `obj` as an f64, as pyo3 converts it (`PyFloat_AsDouble`: a `float`, or
/// what the object's `__float__`, else its `__index__`, returns), the
/// object's methods called through `exiting.rs`. `math.ldexp(x, 0)` is
/// `x`, its argument converted by that very function. An exact `float`
/// or `int` runs no Python code.
fn as_f64(obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    if obj.is_exact_instance_of::<PyFloat>() || obj.is_exact_instance_of::<PyInt>() {
        return obj.extract();
    }
    let ldexp = obj.py().import("math")?.getattr("ldexp")?;
    crate::exiting::call1(&ldexp, (obj, 0))?.extract()
}

/// An int argument called `name`: at most 64 bits, signed; not a bool.
fn int(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    refuse_bool(obj, name, "an int")?;
    as_i64(obj).map_err(|e| conversion_error(obj, e, name, "an int", "is out of range (-2**63 to 2**63 - 1)"))
}

/// An optional int argument called `name`: None, or as [`int`].
fn opt_int(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    if obj.is_none() {
        return Ok(None);
    }
    refuse_bool(obj, name, "an int or None")?;
    as_i64(obj).map(Some).map_err(|e| {
        conversion_error(obj, e, name, "an int or None", "is out of range (-2**63 to 2**63 - 1)")
    })
}

/// A float argument called `name`; not a bool. An int too large for a
/// float is a bad value, not an `OverflowError`.
fn float(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    refuse_bool(obj, name, "a number")?;
    as_f64(obj).map_err(|e| conversion_error(obj, e, name, "a number", "is out of range for a float"))
}

/// An optional float argument called `name`: None, or as [`float`].
fn opt_float(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    if obj.is_none() {
        return Ok(None);
    }
    refuse_bool(obj, name, "a number or None")?;
    as_f64(obj)
        .map(Some)
        .map_err(|e| conversion_error(obj, e, name, "a number or None", "is out of range for a float"))
}

/// `Retry`'s `max_retries` (`from_py_with`): None, or an int from 0 to
/// 2**32 - 1; not a bool.
pub(crate) fn max_retries(obj: &Bound<'_, PyAny>) -> PyResult<Option<u32>> {
    let text = "max_retries must be None or an integer from 0 to 2**32 - 1";
    let Some(n) = opt_int("max_retries", obj).map_err(|e| {
        // An int out of range; a TypeError or the object's own error as is.
        if e.is_instance_of::<ChronicaError>(obj.py()) {
            invalid_argument(text)
        } else {
            e
        }
    })?
    else {
        return Ok(None);
    };
    u32::try_from(n).map(Some).map_err(|_| invalid_argument(format!("{text}, got {n}")))
}

/// One `from_py_with` converter per argument name: `fn NAME(obj)` calls
/// `CONVERT("NAME", obj)`.
macro_rules! named {
    ($convert:ident -> $ty:ty: $($fn_name:ident = $arg:literal),+ $(,)?) => {
        $(
            #[doc = concat!("The argument `", $arg, "` (`from_py_with`), by [`", stringify!($convert), "`].")]
            pub(crate) fn $fn_name(obj: &Bound<'_, PyAny>) -> PyResult<$ty> {
                $convert($arg, obj)
            }
        )+
    };
}

named!(int -> i64:
    queue_capacity = "queue_capacity",
    root_capacity = "root_capacity",
    batch_size = "batch_size",
    concurrency = "concurrency",
    dedup_capacity = "dedup_capacity",
    outbox_capacity = "outbox_capacity",
    max_in_flight = "max_in_flight",
);

named!(opt_int -> Option<i64>:
    opt_queue_capacity = "queue_capacity",
    opt_root_capacity = "root_capacity",
    timestamp_ms = "timestamp_ms",
);

named!(opt_float -> Option<f64>: root_max_age = "root_max_age");

named!(float -> f64:
    timeout = "timeout",
    block_timeout = "block_timeout",
    dedup_window = "dedup_window",
    connect_timeout = "connect_timeout",
    group_watch_interval = "group_watch_interval",
    initial = "initial",
    max = "max",
    multiplier = "multiplier",
    jitter = "jitter",
);
