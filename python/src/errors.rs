//! The exception hierarchy and the one conversion from engine errors.
//!
//! Every engine error becomes a subclass of `chronica.ChronicaError`;
//! `InvalidArgumentError` is also a `ValueError`, so hosts that only know
//! the built-in exceptions still catch bad values.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

create_exception!(chronica, ChronicaError, PyException, "Base class of every Chronica error.");
create_exception!(
    chronica,
    UnknownNodeError,
    ChronicaError,
    "The named source or target uid is not registered."
);
create_exception!(chronica, DuplicateNodeError, ChronicaError, "A node with this uid is already registered.");
create_exception!(
    chronica,
    QueueFullError,
    ChronicaError,
    "Under the 'block' overflow policy a target lane stayed full: for block_timeout, or at once where that wait could never end. try_emit returns None instead."
);
create_exception!(
    chronica,
    ClosedError,
    ChronicaError,
    "The director or event bus is closed; only stats remain readable."
);
create_exception!(
    chronica,
    ReentrantError,
    ChronicaError,
    "The call cannot be made from inside one of the director's own callbacks (closing it)."
);
create_exception!(
    chronica,
    ResourceError,
    ChronicaError,
    "The system refused a resource the director needed (a thread, a runtime)."
);

/// `InvalidArgumentError(ChronicaError, ValueError)`, made once at import.
static INVALID_ARGUMENT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn invalid_argument_type(py: Python<'_>) -> PyResult<&Py<PyType>> {
    INVALID_ARGUMENT.get_or_try_init(py, || {
        let bases = PyTuple::new(py, [py.get_type::<ChronicaError>(), py.get_type::<PyValueError>()])?;
        let ns = PyDict::new(py);
        ns.set_item("__doc__", "An argument is out of its allowed range (also a ValueError).")?;
        ns.set_item("__module__", "chronica")?;
        let made = py.get_type::<PyType>().call1(("InvalidArgumentError", bases, ns))?;
        Ok(made.cast_into::<PyType>()?.unbind())
    })
}

/// Adds the exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ChronicaError", py.get_type::<ChronicaError>())?;
    m.add("UnknownNodeError", py.get_type::<UnknownNodeError>())?;
    m.add("DuplicateNodeError", py.get_type::<DuplicateNodeError>())?;
    m.add("QueueFullError", py.get_type::<QueueFullError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    m.add("ReentrantError", py.get_type::<ReentrantError>())?;
    m.add("ResourceError", py.get_type::<ResourceError>())?;
    m.add("InvalidArgumentError", invalid_argument_type(py)?.bind(py))?;
    Ok(())
}

/// A ValueError that is also a `ChronicaError` (`InvalidArgumentError`).
pub(crate) fn invalid_argument(msg: impl Into<String>) -> PyErr {
    let msg = msg.into();
    Python::attach(|py| match invalid_argument_type(py) {
        Ok(t) => PyErr::from_type(t.bind(py).clone(), msg),
        Err(e) => e,
    })
}

/// The single conversion from an engine error to a Python exception.
pub(crate) fn to_py(err: chronica::Error) -> PyErr {
    use chronica::Error as E;
    let text = err.to_string();
    match err {
        E::UnknownNode(_) => UnknownNodeError::new_err(text),
        E::DuplicateNode(_) => DuplicateNodeError::new_err(text),
        E::InvalidArgument(_) => invalid_argument(text),
        E::QueueFull(_) => QueueFullError::new_err(text),
        E::Closed | E::Forked => ClosedError::new_err(text),
        E::Reentrant => ReentrantError::new_err(text),
        E::Resource(_) => ResourceError::new_err(text),
        _ => ChronicaError::new_err(text),
    }
}

/// `result.map_py()?` converts an engine result into a Python one.
pub(crate) trait MapPy<T> {
    /// Converts the error with [`to_py`].
    fn map_py(self) -> PyResult<T>;
}

impl<T> MapPy<T> for chronica::Result<T> {
    fn map_py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
