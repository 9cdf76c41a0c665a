//! `chronica.Retry`: the retry policy as a Python value.

use std::time::Duration;

use chronica::{Backoff, RetryPolicy};
use pyo3::prelude::*;

use crate::errors::invalid_argument;

/// How a node's failed batch is retried: on a timer, with backoff and
/// jitter, optionally giving up after ``max_retries`` re-attempts (the batch
/// then goes to the dead-letter hook and is counted as dead-lettered).
///
/// ``backoff`` is ``"exponential"`` (``initial * multiplier**k``, the
/// default), ``"linear"`` (``initial * (k + 1)``), both capped at ``max``,
/// or ``"constant"`` (``initial``). A value the shape does not use is not
/// checked: ``multiplier`` (at least 1) matters to exponential backoff
/// only, ``max`` (at least ``initial``) to all but constant. Times are in
/// seconds.
/// ``max_retries=None`` retries forever and ``max_retries=0`` never
/// re-attempts (the batch is dead-lettered at its first failure), whereas
/// C's ``max_retries`` and the hub's ``--retry-max-retries`` read 0 as
/// unlimited (docs/PYTHON.md). A bool there (an int subclass) is
/// a TypeError, not 0 or 1, and so it is for ``initial``, ``max``,
/// ``multiplier`` and ``jitter`` (not 0.0 or 1.0). ``initial`` must be at
/// least 1 ns (the engine counts whole nanoseconds): every shape is a
/// multiple of it, and a zero delay would call a failing node in a busy
/// loop.
#[pyclass(frozen, eq, module = "chronica", name = "Retry")]
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PyRetry {
    /// Delay before the first retry, in seconds (at least 1 ns).
    #[pyo3(get)]
    initial: f64,
    /// Upper bound of the delay, in seconds.
    #[pyo3(get)]
    max: f64,
    /// Factor applied to the delay after each failure (>= 1).
    #[pyo3(get)]
    multiplier: f64,
    /// Relative random spread of each delay, 0.0 to 1.0.
    #[pyo3(get)]
    jitter: f64,
    /// Re-attempts before the batch is dead-lettered; None retries forever.
    #[pyo3(get)]
    max_retries: Option<u32>,
    /// Shape of the delays: "exponential", "linear" or "constant".
    #[pyo3(get)]
    backoff: String,
}

#[pymethods]
impl PyRetry {
    /// Builds a policy; raises ValueError for negative, non-finite or
    /// inconsistent values, and for a zero ``initial``.
    #[new]
    #[pyo3(signature = (initial=0.1, max=5.0, multiplier=2.0, jitter=0.1, max_retries=None, backoff="exponential"))]
    fn new(
        #[pyo3(from_py_with = crate::args::initial)] initial: f64,
        #[pyo3(from_py_with = crate::args::max)] max: f64,
        #[pyo3(from_py_with = crate::args::multiplier)] multiplier: f64,
        #[pyo3(from_py_with = crate::args::jitter)] jitter: f64,
        #[pyo3(from_py_with = crate::args::max_retries)] max_retries: Option<u32>,
        backoff: &str,
    ) -> PyResult<Self> {
        let me = Self { initial, max, multiplier, jitter, max_retries, backoff: backoff.to_owned() };
        me.policy()?;
        Ok(me)
    }

    fn __repr__(&self) -> String {
        let max_retries = self.max_retries.map_or_else(|| "None".to_owned(), |n| n.to_string());
        format!(
            "Retry(initial={:?}, max={:?}, multiplier={:?}, jitter={:?}, max_retries={}, backoff={:?})",
            self.initial, self.max, self.multiplier, self.jitter, max_retries, self.backoff
        )
    }
}

/// A non-negative, finite number of seconds below 2**64 (what a
/// `Duration` holds) as a duration. Every timeout and duration of the
/// binding goes through here, and the Python parts (`_bus._seconds`) draw
/// the same line with the same messages.
pub(crate) fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(invalid_argument(format!("{name} must be a finite number of seconds >= 0, got {value}")));
    }
    // Written as Python's repr writes such a float (1e+300).
    Duration::try_from_secs_f64(value).map_err(|_| {
        let text = format!("{value:e}").replacen('e', "e+", 1);
        invalid_argument(format!("{name} must be less than 2**64 seconds, got {text}"))
    })
}

impl PyRetry {
    /// The engine's policy; validated the same way the engine does.
    pub(crate) fn policy(&self) -> PyResult<RetryPolicy> {
        let backoff = match self.backoff.as_str() {
            "exponential" => Backoff::Exponential,
            "linear" => Backoff::Linear,
            "constant" => Backoff::Constant,
            other => {
                return Err(invalid_argument(format!(
                    "backoff must be 'exponential', 'linear' or 'constant', got {other:?}"
                )))
            }
        };
        let p = RetryPolicy {
            backoff,
            initial_delay: seconds("initial", self.initial)?,
            multiplier: self.multiplier,
            max_delay: seconds("max", self.max)?,
            jitter: self.jitter,
            max_retries: self.max_retries,
        };
        // The engine refuses it too (`RetryPolicy::validate`); said here in
        // the Python argument's name. Below a nanosecond, a positive value
        // is a zero duration: "must be above 0 seconds", given 1e-10, was
        // wrong. The value as Python writes it (`{:?}`: 1e-10, not
        // 0.0000000001).
        if p.initial_delay.is_zero() {
            return Err(invalid_argument(format!(
                "retry initial must be at least 1 ns (1e-09 seconds; 0 would retry in a busy loop), got {:?}",
                self.initial
            )));
        }
        // What a shape ignores is not checked, as in the engine: the
        // multiplier matters to exponential backoff only, `max` to all but
        // constant.
        if p.backoff == Backoff::Exponential && !(p.multiplier.is_finite() && p.multiplier >= 1.0) {
            return Err(invalid_argument("retry multiplier must be a finite number >= 1.0"));
        }
        if !(0.0..=1.0).contains(&p.jitter) {
            return Err(invalid_argument("retry jitter must be between 0.0 and 1.0"));
        }
        if p.backoff != Backoff::Constant && p.max_delay < p.initial_delay {
            return Err(invalid_argument("retry max must not be smaller than initial"));
        }
        Ok(p)
    }
}
