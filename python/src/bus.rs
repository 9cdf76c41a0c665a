//! `chronica._BusList`: the list of an `EventBus`'s subscriptions, the part
//! of the Python bus (`chronica/_bus.py`) that must live in Rust.
//!
//! A thin wrapper over the core's `SubscriptionList` (`core/src/bus/list.rs`:
//! the stages, the admission, the takes of `off` and `close`, `end`), the
//! very list and protocol of the Rust bus, holding each subscription's
//! `chronica.Subscription`. The node `register` makes wraps the Python
//! callable's node and holds the entry's `Listing`, which unlists it as the
//! node is dropped; the admit hook takes only the list's lock and runs no
//! Python.
//!
//! The list's lock is never held while Python runs or the GIL is wanted (a
//! removed `Subscription` is released after it); every wait here (for
//! another call's subscription to end, for a drain, for an unregister) runs
//! with the GIL released, since the handlers being waited for need it.

use std::sync::Arc;
use std::time::Duration;

use chronica::{Batch, Listing, Node, NodeOptions, Registration, SendResult, SubscriptionList, Taken};
use pyo3::prelude::*;

use crate::callable::Callable;
use crate::director::PyDirector;
use crate::errors::MapPy;
use crate::node::PyNode;
use crate::retry::{seconds, PyRetry};
use crate::stats::PyNodeStats;

type List = SubscriptionList<Callable>;

/// The node of one subscription: the Python callable's node, which unlists
/// the subscription once it is dropped (fields drop in order: the callable
/// first, so that the entry leaves after the handler is gone).
struct BusNode {
    node: PyNode,
    _listing: Listing<Callable>,
}

impl Node for BusNode {
    fn send(&self, batch: &Batch) -> SendResult {
        self.node.send(batch)
    }

    fn session(&self, deliver: &mut dyn FnMut()) {
        self.node.session(deliver)
    }
}

/// The subscriptions of one `chronica.EventBus` (private to `_bus.py`).
#[pyclass(frozen, module = "chronica", name = "_BusList")]
#[derive(Debug, Default)]
pub(crate) struct PyBusList {
    list: Arc<List>,
}

#[pymethods]
impl PyBusList {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// True once `close` has taken the list (and not given it back).
    #[getter]
    fn closed(&self) -> bool {
        self.list.is_closed()
    }

    /// Registers subscription `number` (`sub`) as node `uid` on `director`
    /// and returns its registration number. The entry is listed first
    /// (`Joining`); the director admits it (`Live`) under its membership
    /// lock once its own checks have passed, unless the bus is closed by
    /// then: ClosedError, nothing registered. Any refusal unlists it.
    #[pyo3(signature = (director, number, uid, sub, callback, topic, group, concurrency, retry, queue_capacity, on_dead_letter))]
    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        director: PyRef<'_, PyDirector>,
        number: u64,
        uid: &str,
        sub: Py<PyAny>,
        callback: Py<PyAny>,
        topic: String,
        group: Option<String>,
        concurrency: usize,
        retry: Option<PyRef<'_, PyRetry>>,
        queue_capacity: Option<usize>,
        on_dead_letter: Option<Py<PyAny>>,
    ) -> PyResult<u64> {
        let opts = NodeOptions {
            topics: vec![topic],
            group,
            concurrency,
            retry: retry.map(|r| r.policy()).transpose()?,
            queue_capacity,
            on_dead_letter: on_dead_letter.map(crate::hooks::dead_letter_hook),
            ..NodeOptions::default()
        };
        self.list.join(number, Callable::new(sub));
        let listing = List::listing(&self.list, number);
        let node: Arc<dyn Node> = Arc::new(BusNode { node: PyNode::new(callback), _listing: listing });
        let admitted = std::cell::Cell::new(Registration::default());
        let admit = |registration: Registration| -> chronica::Result<()> {
            self.list.admit(number, uid, registration)?;
            admitted.set(registration);
            Ok(())
        };
        match director.director().register_admitted(uid, node, opts, Some(&admit)) {
            Ok(()) => Ok(admitted.get().get()),
            // The refused node, dropped here, unlists the entry.
            Err(refused) => Err(refused.error).map_py(),
        }
    }

    /// Takes subscription `number` for an `off` (`Ending`) and returns its
    /// `(uid, registration)`; None when it is not this call's to end (not
    /// listed, or the bus is closed). While another call is ending it, waits
    /// (GIL released) for it to leave the list, if `can_wait`.
    fn take(&self, py: Python<'_>, number: u64, can_wait: bool) -> Option<(String, u64)> {
        let taken = py.detach(|| self.list.take(number, can_wait))?;
        Some((taken.uid, taken.registration.get()))
    }

    /// Closes the list: from now on an `on` not admitted yet is refused,
    /// and every admitted entry is taken (`Ending`) and returned as
    /// `(number, uid, registration)`, oldest first. ClosedError when
    /// already closed.
    fn close(&self) -> PyResult<Vec<(u64, String, u64)>> {
        let taken = self.list.close(|_| false).map_py()?;
        Ok(taken.into_iter().map(|t| (t.id, t.uid, t.registration.get())).collect())
    }

    /// Undoes a `close` whose director refused to close: reopens the list
    /// and gives `numbers` back.
    fn reopen(&self, numbers: Vec<u64>) {
        self.list.reopen(&numbers);
    }

    /// Gives `numbers` back (to `Live`): the call that took them did not
    /// end them.
    fn release(&self, numbers: Vec<u64>) {
        self.list.release(&numbers);
    }

    /// Waits (GIL released) until subscription `number` has left the list.
    fn wait_gone(&self, py: Python<'_>, number: u64) {
        py.detach(|| self.list.wait_gone(number));
    }

    /// Waits (GIL released) until no subscription is being ended.
    fn wait_settled(&self, py: Python<'_>) {
        py.detach(|| self.list.wait_settled());
    }

    /// The live subscriptions, oldest first.
    fn live(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
        // Under the list's lock, with the GIL held: no Python runs.
        self.list.live(|e| e.payload.bind(py).clone().unbind())
    }

    /// Ends taken subscription `number`, node `uid` of `registration`: if
    /// `drain`, waits (GIL released) until what it had accepted is settled
    /// or `timeout` seconds pass, then unregisters it, only while the uid is
    /// still that registration. Returns its last stats. Found ended behind
    /// the bus's back (UnknownNodeError), it leaves the list at once.
    #[allow(clippy::too_many_arguments)] // the Python signature
    fn end(
        &self,
        py: Python<'_>,
        director: PyRef<'_, PyDirector>,
        number: u64,
        uid: &str,
        registration: u64,
        timeout: f64,
        drain: bool,
    ) -> PyResult<PyNodeStats> {
        // Checked by the bus; what is left of a close's timeout, computed
        // in floats, may round up to 2**64 seconds: no deadline then.
        let timeout = if timeout.is_finite() && timeout >= 0.0 {
            Duration::try_from_secs_f64(timeout).unwrap_or(Duration::MAX)
        } else {
            seconds("timeout", timeout)?
        };
        let director = director.director().clone();
        let taken =
            Taken { id: number, uid: uid.to_owned(), registration: Registration::from_number(registration) };
        py.detach(|| self.list.end(&director, &taken, timeout, drain)).map(PyNodeStats::from).map_py()
    }

    /// The counters of subscription `number` (node `uid` of
    /// `registration`): only while it is live, or, once the director is
    /// closed, its final ones; else UnknownNodeError.
    fn stats(
        &self,
        director: PyRef<'_, PyDirector>,
        number: u64,
        uid: &str,
        registration: u64,
    ) -> PyResult<PyNodeStats> {
        let stats =
            self.list.stats(director.director(), number, uid, Registration::from_number(registration));
        stats.map(PyNodeStats::from).map_py()
    }

    /// Whether this thread may wait for `director`'s callbacks: not from
    /// inside one of them (nor a hook).
    #[staticmethod]
    fn can_wait(director: PyRef<'_, PyDirector>) -> bool {
        director.director().can_wait()
    }
}
