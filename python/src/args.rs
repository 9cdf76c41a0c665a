//! Numeric arguments that report out-of-range values as bad values.
//!
//! pyo3 converts a Python `int` to `i64` (or `u32`, or a float) with
//! CPython's own functions, which raise `OverflowError` for an int too large
//! for the type: `Director(queue_capacity=2**63)` would not raise the
//! `InvalidArgumentError` (a `ValueError`) every other bad value raises.
//! These converters, used with `#[pyo3(from_py_with = ...)]` so that the
//! Python defaults stay literal, turn that `OverflowError` into an
//! `InvalidArgumentError` (pyo3 adds a note naming the argument); wrong
//! types still raise `TypeError`. Values that fit go on to the usual range
//! checks (`count`, `seconds`, the engine's builder).

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;

use crate::errors::invalid_argument;

/// `err`, or an `InvalidArgumentError` saying `what` when it is an `OverflowError`.
fn range_error(py: Python<'_>, err: PyErr, what: &str) -> PyErr {
    if err.is_instance_of::<PyOverflowError>(py) {
        let bad = invalid_argument(what);
        bad.set_cause(py, Some(err));
        bad
    } else {
        err
    }
}

/// An int argument (`from_py_with`): at most 64 bits, signed.
pub(crate) fn int(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    obj.extract::<i64>().map_err(|e| range_error(obj.py(), e, "integer out of range (-2**63 to 2**63 - 1)"))
}

/// An optional int argument (`from_py_with`): None, or as [`int`].
pub(crate) fn opt_int(obj: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    if obj.is_none() {
        Ok(None)
    } else {
        int(obj).map(Some)
    }
}

/// `Retry`'s `max_retries` (`from_py_with`): None, or an int from 0 to
/// 2**32 - 1.
pub(crate) fn max_retries(obj: &Bound<'_, PyAny>) -> PyResult<Option<u32>> {
    if obj.is_none() {
        return Ok(None);
    }
    let text = "max_retries must be None or an integer from 0 to 2**32 - 1";
    let n = obj.extract::<i64>().map_err(|e| range_error(obj.py(), e, text))?;
    u32::try_from(n).map(Some).map_err(|_| invalid_argument(format!("{text}, got {n}")))
}

/// A float argument (`from_py_with`); an int too large for a float is a bad
/// value, not an `OverflowError`.
pub(crate) fn float(obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    obj.extract::<f64>().map_err(|e| range_error(obj.py(), e, "number too large for a float"))
}
