//! The Python module of Chronica, `chronica._chronica`.
//!
//! The package `chronica` (python/chronica/__init__.py) re-exports these
//! names; stubs live in `_chronica.pyi`. One file per concept: the director,
//! events, stats, the retry policy, the node that runs callbacks, hooks,
//! payload conversion, numeric arguments and the exception hierarchy.

mod adapter;
mod args;
mod bus;
mod callable;
mod closes;
mod collected;
mod director;
mod distributed;
mod emit_many;
mod errors;
mod event;
mod exiting;
mod held;
mod hooks;
mod loops;
mod node;
mod payload;
mod retry;
mod room;
mod stats;
mod waits;

use pyo3::prelude::*;

/// The compiled part of the `chronica` package; import `chronica` instead.
#[pymodule]
fn _chronica(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The engine's limits, for the Python bus's own checks (`_bus.py`),
    // which must name its arguments: read from the engine, not copied.
    m.add("MAX_CAPACITY", chronica::MAX_CAPACITY)?;
    m.add("MAX_CONCURRENCY", chronica::MAX_CONCURRENCY)?;
    m.add("MQ_SUBSCRIPTION_CAPACITY", chronica::mq::SUBSCRIPTION_CAPACITY)?;
    m.add_class::<director::PyDirector>()?;
    m.add_class::<event::PyEvent>()?;
    m.add_class::<stats::PyNodeStats>()?;
    m.add_class::<retry::PyRetry>()?;
    m.add_class::<bus::PyBusList>()?;
    m.add_function(wrap_pyfunction!(director::_close_all, m)?)?;
    m.add_function(wrap_pyfunction!(bus::_drain_deadline_passed, m)?)?;
    errors::register(m)?;
    distributed::register(m)?;
    Ok(())
}
