//! `chronica.NodeStats`: a snapshot of one node's counters.

use pyo3::prelude::*;

/// A consistent snapshot of one node's counters: in every snapshot
/// ``accepted == delivered + dropped + dead_lettered + pending`` (both lanes
/// counted). Still readable after the director is closed.
#[pyclass(frozen, eq, module = "chronica", name = "NodeStats")]
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PyNodeStats {
    /// Events placed in the node's lanes (including control events).
    #[pyo3(get)]
    accepted: u64,
    /// Events whose callback call succeeded.
    #[pyo3(get)]
    delivered: u64,
    /// Events removed by the overflow policy or left by an unregistered node.
    #[pyo3(get)]
    dropped: u64,
    /// Events handed to the dead-letter hook after max_retries.
    #[pyo3(get)]
    dead_lettered: u64,
    /// Events waiting or in flight.
    #[pyo3(get)]
    pending: u64,
    /// Re-attempts of a failed batch.
    #[pyo3(get)]
    retries: u64,
    /// Failed callback calls.
    #[pyo3(get)]
    failures: u64,
    /// The message of the most recent failure (e.g. the exception text), if any.
    #[pyo3(get)]
    last_error: Option<String>,
    /// Whether the node is currently marked connected.
    #[pyo3(get)]
    connected: bool,
}

#[pymethods]
impl PyNodeStats {
    /// True when ``accepted == delivered + dropped + dead_lettered + pending``.
    fn balanced(&self) -> bool {
        self.accepted == self.delivered + self.dropped + self.dead_lettered + self.pending
    }

    fn __repr__(&self) -> String {
        format!(
            "NodeStats(accepted={}, delivered={}, dropped={}, dead_lettered={}, pending={}, retries={}, \
             failures={}, last_error={}, connected={})",
            self.accepted,
            self.delivered,
            self.dropped,
            self.dead_lettered,
            self.pending,
            self.retries,
            self.failures,
            self.last_error.as_ref().map_or_else(|| "None".to_owned(), |e| format!("{e:?}")),
            if self.connected { "True" } else { "False" }
        )
    }
}

impl From<chronica::NodeStats> for PyNodeStats {
    fn from(s: chronica::NodeStats) -> Self {
        Self {
            accepted: s.accepted,
            delivered: s.delivered,
            dropped: s.dropped,
            dead_lettered: s.dead_lettered,
            pending: s.pending,
            retries: s.retries,
            failures: s.failures,
            last_error: s.last_error,
            connected: s.connected,
        }
    }
}
