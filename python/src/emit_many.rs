//! The run of messages `Director.emit_many` hands the engine in one call.
//!
//! Every payload is converted, as `emit` converts one, before anything is
//! emitted: a payload that cannot be converted raises having emitted
//! nothing, where converting while emitting would have left the payloads
//! before it emitted and the call half done. The engine's `emit_many` is
//! then all or nothing under `block` (`core/src/director/emit_many.rs`).

use std::ops::Range;

use bytes::Bytes;
use chronica::Message;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PyRange, PyString, PyTuple};

use crate::director::shared_message;
use crate::payload;

/// The messages of `payloads` (an iterable of payloads), on `topic`, each
/// with `source`, `key` and `content_type`. A payload that cannot be
/// converted raises the TypeError or ValueError of its conversion, with
/// its index in front of the text and the original as the cause; what
/// iterating `payloads` raises goes through as it is, as in
/// `director::strings`. Any iterable but a plain list or tuple is iterated
/// through `exiting.rs`: its `__iter__` and `__next__` may be Python code.
pub(crate) fn messages<'a>(
    topic: &'a str,
    payloads: &Bound<'_, PyAny>,
    source: Option<&'a str>,
    key: Option<&Bound<'_, PyAny>>,
    content_type: Option<&str>,
) -> PyResult<Vec<Message<'a>>> {
    let py = payloads.py();
    refuse_one_payload(payloads)?;
    let key: Option<Bytes> = key.filter(|k| !k.is_none()).map(payload::key).transpose()?;
    let one = |(i, item): (usize, PyResult<Bound<'_, PyAny>>)| -> PyResult<Message<'a>> {
        let shared = payload::shared_payload(&item?).map_err(|e| at_index(py, i, e))?;
        Ok(shared_message(topic, shared, source, key.clone(), content_type))
    };
    // Iterating a plain list or tuple runs no Python code.
    if payloads.is_exact_instance_of::<PyList>() || payloads.is_exact_instance_of::<PyTuple>() {
        let mut out = Vec::with_capacity(payloads.len()?);
        for item in payloads.try_iter()?.enumerate() {
            out.push(one(item)?);
        }
        return Ok(out);
    }
    let items = crate::exiting::iterate(payloads).map_err(|e| {
        if !e.is_instance_of::<PyTypeError>(py) {
            return e;
        }
        let mapped = PyTypeError::new_err("payloads must be an iterable of payloads");
        mapped.set_cause(py, Some(e));
        mapped
    })?;
    items.enumerate().map(one).collect()
}

/// A TypeError for an object `emit` takes as one payload: iterated, a str
/// would become one event per character, bytes one per byte (as ints), a
/// dict one per key; each is a call of `emit_many` meant as `emit`.
fn refuse_one_payload(payloads: &Bound<'_, PyAny>) -> PyResult<()> {
    let one = payloads.is_instance_of::<PyString>()
        || payloads.is_instance_of::<PyBytes>()
        || payloads.is_instance_of::<PyByteArray>()
        || payloads.is_instance_of::<PyMemoryView>()
        || payloads.is_instance_of::<PyDict>();
    if !one {
        return Ok(());
    }
    let name = payloads.get_type().name().map_or_else(|_| "?".to_owned(), |n| n.to_string());
    Err(PyTypeError::new_err(format!(
        "payloads must be an iterable of payloads, not one {name} payload (emit sends one)"
    )))
}

/// The error of the payload at `i`: a TypeError or ValueError (a subclass
/// too, such as the UnicodeEncodeError of a str with a lone surrogate)
/// becomes one of the base class whose text begins with the index, the
/// original as its cause; any other error (MemoryError) goes through.
fn at_index(py: Python<'_>, i: usize, e: PyErr) -> PyErr {
    let make = if e.is_instance_of::<PyTypeError>(py) {
        PyTypeError::new_err
    } else if e.is_instance_of::<PyValueError>(py) {
        PyValueError::new_err
    } else {
        return e;
    };
    // An exception's `__str__` may be Python code.
    let text = crate::exiting::str_of(e.value(py))
        .map_or_else(|_| "cannot be converted".to_owned(), |s| s.to_string());
    let mapped = make(format!("payloads[{i}]: {text}"));
    mapped.set_cause(py, Some(e));
    mapped
}

/// The ids of a run as a Python `range`. Made by calling the type, which
/// takes any int: `PyRange::new` takes `isize`, and ids are `u64`.
pub(crate) fn range(py: Python<'_>, ids: Range<u64>) -> PyResult<Bound<'_, PyRange>> {
    Ok(py.get_type::<PyRange>().call1((ids.start, ids.end))?.cast_into::<PyRange>()?)
}
