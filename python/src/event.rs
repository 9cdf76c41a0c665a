//! `chronica.Event`: one delivered event, a thin view over the engine's
//! shared event.
//!
//! The engine shares one event (and one payload buffer) between every
//! receiving node. A Python `Event` wraps that shared event without copying.
//! Its `payload` is the very `bytes` object the Python emitter passed (or
//! made once from its `str` / JSON form), shared by every node; events from
//! other layers (C, root events) make theirs on first access and cache it.

use std::sync::Arc;

use chronica::{Event, EventKind};

use crate::payload::SharedPayload;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;

/// One event as a node receives it. Immutable.
#[pyclass(frozen, module = "chronica", name = "Event")]
pub(crate) struct PyEvent {
    inner: Arc<Event>,
    payload: PyOnceLock<Py<PyBytes>>,
}

impl std::fmt::Debug for PyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyEvent").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl PyEvent {
    /// Wraps an engine event.
    pub(crate) fn new(inner: Arc<Event>) -> Self {
        Self { inner, payload: PyOnceLock::new() }
    }
}

/// The `chronica.Event` for an engine event. An event emitted from Python
/// has one, shared by every node that receives it (made by the first, kept
/// in the event's extension): a broadcast to N nodes makes one object, not
/// N. That object wraps a copy of the event *without* the extension, so the
/// extension never holds the event that holds it.
pub(crate) fn py_event(py: Python<'_>, e: &Arc<Event>) -> PyResult<Py<PyEvent>> {
    let shared = e.extension().and_then(|x| x.downcast_ref::<SharedPayload>());
    match shared {
        Some(sp) => cached(&sp.event, py, || {
            let view = PyEvent { inner: Arc::new(e.without_extension()), payload: PyOnceLock::new() };
            let _ = view.payload.set(py, sp.bytes.clone_ref(py));
            Py::new(py, view)
        })
        .map(|obj| obj.clone_ref(py)),
        // A Python callback may keep its events: when the broker message
        // waits for the event's release, the object holds a copy.
        None if Event::release_awaited(e) => Py::new(py, PyEvent::new(Arc::new(Event::clone(e)))),
        None => Py::new(py, PyEvent::new(e.clone())),
    }
}

/// The value of `cell`, made by `make` (with the GIL held) if it has none.
///
/// Not `PyOnceLock::get_or_try_init`: that detaches from the interpreter
/// before it initializes (so that an initializer that blocks cannot
/// deadlock) and then waits to attach again, which, with eight delivery
/// threads wanting the GIL, made every event's first `py_event` hand the
/// GIL over: most of W1's time from Python went there. `make` never blocks;
/// if it runs Python code that lets another thread fill the cell first,
/// that thread's value is kept and ours dropped.
fn cached<'a, T>(
    cell: &'a PyOnceLock<T>,
    py: Python<'_>,
    make: impl FnOnce() -> PyResult<T>,
) -> PyResult<&'a T> {
    if let Some(value) = cell.get(py) {
        return Ok(value);
    }
    let _ = cell.set(py, make()?);
    cell.get(py).ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("event cache left empty"))
}

#[pymethods]
impl PyEvent {
    /// Director-unique id, increasing in emit order.
    #[getter]
    fn id(&self) -> u64 {
        self.inner.id()
    }

    /// ``"user"`` for an application event, ``"root"`` for a control event.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.inner.kind() {
            EventKind::User => "user",
            EventKind::Root => "root",
        }
    }

    /// The topic; for a root event, its action (e.g. ``chronica.pull_current_state``).
    #[getter]
    fn topic(&self) -> &str {
        self.inner.topic()
    }

    /// The emitting node's uid, or None.
    #[getter]
    fn source(&self) -> Option<&str> {
        self.inner.source()
    }

    /// The ordering / partition key as bytes, or None.
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.inner.key().map(|k| crate::payload::py_bytes(py, k)).transpose()
    }

    /// The payload's encoding as labelled by the emitter, or None.
    #[getter]
    fn content_type(&self) -> Option<&str> {
        self.inner.content_type()
    }

    /// The payload as bytes (made on first access, then cached).
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let shared = self.inner.extension().and_then(|e| e.downcast_ref::<SharedPayload>());
        match shared {
            // Emitted from Python: every node gets the emitter's own object.
            Some(p) => Ok(p.bytes.bind(py).clone()),
            None => {
                cached(&self.payload, py, || Ok(crate::payload::py_bytes(py, self.inner.payload())?.unbind()))
                    .map(|b| b.bind(py).clone())
            }
        }
    }

    /// The director's trust token on root events; None on user events.
    #[getter]
    fn trust_token(&self) -> Option<&str> {
        self.inner.trust_token()
    }

    /// Milliseconds since the Unix epoch at emit time.
    #[getter]
    fn timestamp_ms(&self) -> i64 {
        self.inner.timestamp_ms()
    }

    /// True for a root (control) event.
    #[getter]
    fn is_root(&self) -> bool {
        self.inner.is_root()
    }

    /// The payload decoded as JSON, as ``unmarshal("json")`` decodes it:
    /// raises ``chronica.SerializerMismatchError`` when the event's
    /// ``content_type`` names another encoding, ``chronica.DecodeError``
    /// (naming the topic) when the payload is not JSON; both are
    /// ``ValueError``s.
    fn json<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        crate::exiting::call1(&py.import("chronica._bus")?.getattr("unmarshal")?, (slf, "json"))
    }

    /// The payload decoded by ``serializer``: ``"json"``, ``"msgpack"``, or
    /// an object with ``dumps`` and ``loads`` (an ``EventBus``'s
    /// ``serializer`` too), as ``EventBus`` takes them. Without one (None),
    /// the built-in serializer the event's ``content_type`` names, JSON when
    /// it has none. Raises ``chronica.SerializerMismatchError`` when the
    /// event's ``content_type`` names another encoding than ``serializer``,
    /// ``chronica.DecodeError`` when the payload does not decode or no
    /// built-in serializer has its content type (both
    /// ``InvalidArgumentError``, so ``ValueError``), ``InvalidArgumentError``
    /// for an unknown serializer name and ``TypeError`` for an object that
    /// is not a serializer.
    #[pyo3(signature = (serializer=None))]
    fn unmarshal<'py>(
        slf: &Bound<'py, Self>,
        serializer: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        crate::exiting::call1(&py.import("chronica._bus")?.getattr("unmarshal")?, (slf, serializer))
    }

    fn __repr__(&self) -> String {
        format!(
            "Event(id={}, kind={:?}, topic={:?}, source={}, payload_len={})",
            self.inner.id(),
            self.kind(),
            self.inner.topic(),
            self.inner.source().map_or_else(|| "None".to_owned(), |s| format!("{s:?}")),
            self.inner.payload().len()
        )
    }
}
