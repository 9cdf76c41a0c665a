//! Turning Python payloads and keys into the engine's byte buffers.
//!
//! `bytes`, `bytearray` and `memoryview` are taken as they are, `str` as
//! UTF-8, anything else is serialised with `json.dumps(allow_nan=False)`,
//! which raises `TypeError` for objects JSON cannot represent and
//! `ValueError` for NaN and the infinities (RFC 8259 has no such numbers:
//! the default `allow_nan=True` wrote `NaN` and `Infinity`, which no strict
//! JSON parser reads).

use bytes::Bytes;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{IntoPyDict, PyByteArray, PyBytes, PyString, PyTuple};

/// What a Python emit attaches to its event: the payload's `bytes` object,
/// so every receiving node's `Event.payload` is this one object, and the
/// one `chronica.Event` every node's batch holds, made by the first node
/// that delivers it (`crate::event::py_event`).
pub(crate) struct SharedPayload {
    pub(crate) bytes: Py<PyBytes>,
    pub(crate) event: PyOnceLock<Py<crate::event::PyEvent>>,
}

impl std::fmt::Debug for SharedPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPayload").field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

impl SharedPayload {
    pub(crate) fn new(bytes: Py<PyBytes>) -> Self {
        Self { bytes, event: PyOnceLock::new() }
    }
}

/// `data` in a buffer of its own, or MemoryError when the memory cannot be
/// had (`Bytes::copy_from_slice` aborted the interpreter).
fn copy(data: &[u8]) -> PyResult<Bytes> {
    chronica::copy_bytes(data).map_err(|e| pyo3::exceptions::PyMemoryError::new_err(e.to_string()))
}

/// `data` in a new Python `bytes` object, or the MemoryError Python raises
/// when the memory cannot be had (`PyBytes::new` panicked then).
pub(crate) fn py_bytes<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, data.len(), |b| {
        b.copy_from_slice(data);
        Ok(())
    })
}

/// The payload of an emit as the engine's buffer (copied once, shared by
/// every node) and as one Python `bytes` object every node's event returns.
pub(crate) fn shared_payload(obj: &Bound<'_, PyAny>) -> PyResult<(Bytes, Py<PyBytes>)> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok((copy(b.as_bytes())?, b.clone().unbind()));
    }
    let buf = payload(obj)?;
    let py_bytes = py_bytes(obj.py(), &buf)?.unbind();
    Ok((buf, py_bytes))
}

/// The payload of an emit, copied once into a buffer every node shares.
pub(crate) fn payload(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return copy(b.as_bytes());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return copy(s.to_str()?.as_bytes());
    }
    if let Some(b) = buffer(obj)? {
        return Ok(b);
    }
    // The encoder's `encode` is Python code.
    let text = crate::exiting::call1(json_encode(obj.py())?, (obj,))?;
    copy(text.cast::<PyString>()?.to_str()?.as_bytes())
}

/// `json.JSONEncoder(allow_nan=False).encode`, made once: `json.dumps`
/// with that argument makes an encoder per call.
fn json_encode(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static ENCODE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let encode = ENCODE.get_or_try_init(py, || {
        let strict = [("allow_nan", false)].into_py_dict(py)?;
        let class = py.import("json")?.getattr("JSONEncoder")?;
        // Its `__init__` is Python code, and the first JSON emit may come late.
        let encoder = crate::exiting::call(&class, &PyTuple::empty(py), Some(&strict))?;
        encoder.getattr("encode").map(Bound::unbind)
    })?;
    Ok(encode.bind(py))
}

/// A key: bytes-like or str.
pub(crate) fn key(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return copy(b.as_bytes());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return copy(s.to_str()?.as_bytes());
    }
    match buffer(obj)? {
        Some(b) => Ok(b),
        None => Err(PyTypeError::new_err(format!(
            "key must be bytes or str, not {}",
            obj.get_type().name().map_or_else(|_| "?".to_owned(), |n| n.to_string())
        ))),
    }
}

/// A `bytearray` or `memoryview`, copied; None for any other object.
/// Each copy raises MemoryError when the memory cannot be had: the
/// bytearray's went through `to_vec`, which aborted the interpreter.
fn buffer(obj: &Bound<'_, PyAny>) -> PyResult<Option<Bytes>> {
    if let Ok(b) = obj.cast::<PyByteArray>() {
        // SAFETY: the GIL is held (and the object's critical section, on a
        // free-threaded build) and no Python code runs during the copy, so
        // nothing resizes the bytearray meanwhile.
        return pyo3::sync::critical_section::with_critical_section(b, || copy(unsafe { b.as_bytes() }))
            .map(Some);
    }
    if obj.is_instance_of::<pyo3::types::PyMemoryView>() {
        let b = obj.call_method0("tobytes")?;
        return Ok(Some(copy(b.cast::<PyBytes>()?.as_bytes())?));
    }
    Ok(None)
}
