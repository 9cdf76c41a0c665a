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
//! The `Subscription` objects live in a table of the list's own (`held.rs`)
//! that `__traverse__` shows the cycle collector, and the list keeps the
//! director it shares as the engine's handle, not as a Python reference:
//! a bus referenced from its own handlers (a cycle through the director's
//! node, its callable and the subscription) is then collected with its
//! director. The director closes itself before the collector clears
//! anything (`collected.rs`), which ends the bus's subscriptions, handlers
//! still whole, first; the list's own `Drop` then finds it closed.
//!
//! The list's lock is never held while Python runs or the GIL is wanted (a
//! removed `Subscription` is released after it); every wait here (for the
//! registration, for another call's subscription to end, for a drain, for
//! an unregister) runs with the GIL released, since the handlers being
//! waited for need it. A sharing bus's list, dropped with the bus, ends
//! the subscriptions still live on a thread of its own (its `Drop`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronica::{
    Batch, Director, Listing, Node, NodeOptions, Registration, SendResult, SubscriptionList, Taken,
};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;

use crate::director::PyDirector;
use crate::errors::MapPy;
use crate::held::{Held, HeldRef};
use crate::node::PyNode;
use crate::retry::{seconds, PyRetry};
use crate::stats::PyNodeStats;

type List = SubscriptionList<HeldRef>;

/// The node of one subscription: the Python callable's node, which unlists
/// the subscription once it is dropped (fields drop in order: the callable
/// first, so that the entry leaves after the handler is gone).
struct BusNode {
    node: PyNode,
    _listing: Listing<HeldRef>,
}

impl Node for BusNode {
    fn send(&self, batch: &Batch) -> SendResult {
        self.node.send(batch)
    }

    fn session(&self, deliver: &mut dyn FnMut()) {
        self.node.session(deliver)
    }
}

/// How long a sharing bus collected without `close` drains its
/// subscriptions, all of them together: as long as the Rust bus's drop.
const COLLECTED_DRAIN: Duration = Duration::from_millis(500);

/// The subscriptions of one `chronica.EventBus` (private to `_bus.py`).
#[pyclass(frozen, module = "chronica", name = "_BusList")]
#[derive(Debug)]
pub(crate) struct PyBusList {
    list: Arc<List>,
    /// The `Subscription` objects of the list's entries (each entry holds
    /// its key), for the cycle collector to see.
    subs: Arc<Held>,
    /// The director of a bus that shares it (None: the bus made its own,
    /// which closes itself when collected), on which the subscriptions
    /// still live when the list goes are ended (see `Drop`). The engine's
    /// handle, which references no Python object: the bus keeps the Python
    /// director, where the collector sees it.
    shared: Option<Director>,
}

#[pymethods]
impl PyBusList {
    /// The list of a bus sharing `shared`, or (None) of one that made its
    /// own director.
    #[new]
    #[pyo3(signature = (shared=None))]
    fn new(shared: Option<PyRef<'_, PyDirector>>) -> Self {
        let shared = shared.map(|d| d.director().clone());
        Self { list: Arc::default(), subs: Arc::default(), shared }
    }

    /// The `Subscription` objects, for the cycle collector.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.subs.traverse(&visit)
    }

    /// Lets go of the `Subscription` objects (the list no longer lists
    /// them). The subscriptions themselves end as the list's `Drop` says,
    /// or have ended with their director, which closed before the
    /// collector began to clear.
    fn __clear__(&self, py: Python<'_>) {
        self.subs.release(py);
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
        py: Python<'_>,
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
            on_dead_letter: on_dead_letter.map(|h| crate::hooks::dead_letter_hook(py, director.held(), h)),
            ..NodeOptions::default()
        };
        self.list.join(number, self.subs.hold(py, sub));
        let listing = List::listing(&self.list, number);
        let node = PyNode::new(director.held().hold(py, callback));
        let node: Arc<dyn Node> = Arc::new(BusNode { node, _listing: listing });
        let admitted = AtomicU64::new(0);
        let admit = |registration: Registration| -> chronica::Result<()> {
            self.list.admit(number, uid, registration)?;
            admitted.store(registration.get(), Ordering::Relaxed);
            Ok(())
        };
        let director = director.director();
        // GIL released, as `Director.register` (director.rs) says why; the
        // admit hook takes only the list's lock and runs no Python.
        let registered = py.detach(|| director.register_admitted(uid, node, opts, Some(&admit)));
        match registered {
            Ok(()) => Ok(admitted.load(Ordering::Relaxed)),
            // The refused node, dropped here with the GIL held, unlists the
            // entry and lets its callables go.
            Err(refused) => Err(refused.error).map_py(),
        }
    }

    /// Ends subscription `number` (node `uid`) for an `off`, as the Rust
    /// bus's `off_within` does (`SubscriptionList::off`), with the GIL
    /// released: unregisters it, draining it (if `drain`) for at most
    /// `timeout` seconds, returning its final stats. UnknownNodeError when it
    /// is not this call's to end (the bus tells why); ClosedError after a
    /// close of the director that began before this call, once it has
    /// ended (one that began during it ends the subscription in this
    /// call's stead, which then returns the final stats).
    fn off(
        &self,
        py: Python<'_>,
        director: PyRef<'_, PyDirector>,
        number: u64,
        uid: &str,
        timeout: f64,
        drain: bool,
    ) -> PyResult<PyNodeStats> {
        let (director, timeout) = (director.director().clone(), seconds("timeout", timeout)?);
        let ended = py.detach(|| self.list.off(&director, number, uid, timeout, drain));
        ended.map(PyNodeStats::from).map_py()
    }

    /// Closes the list: from now on an `on` not admitted yet is refused,
    /// and every admitted entry is taken (`Ending`) and returned as
    /// `(number, uid, registration)`, oldest first. ClosedError when
    /// already closed; ReentrantError, changing nothing, when this thread
    /// runs the handler of subscription `in_handler_of` (0: none) and it is
    /// listed, as the Rust bus refuses a close from inside its handlers.
    fn close(&self, in_handler_of: u64) -> PyResult<Vec<(u64, String, u64)>> {
        let taken = self.list.close(|id| id == in_handler_of).map_py()?;
        Ok(taken.into_iter().map(|t| (t.id, t.uid, t.registration.get())).collect())
    }

    /// Undoes a `close` whose director refused to close: reopens the list
    /// and gives `numbers` back.
    fn reopen(&self, numbers: Vec<u64>) {
        self.list.reopen(&numbers);
    }

    /// Ends the subscriptions `close` took, as the Rust bus's close does
    /// (`SubscriptionList::end_all`), with the GIL released: each drained
    /// (but the one whose handler this thread runs, `current`) within
    /// `timeout` seconds in all; returns the events they left.
    fn end_all(
        &self,
        py: Python<'_>,
        director: PyRef<'_, PyDirector>,
        taken: Vec<(u64, String, u64)>,
        timeout: f64,
        current: u64,
    ) -> PyResult<u64> {
        let (director, timeout) = (director.director().clone(), seconds("timeout", timeout)?);
        let taken: Vec<Taken> = taken
            .into_iter()
            .map(|(id, uid, registration)| Taken {
                id,
                uid,
                registration: Registration::from_number(registration),
            })
            .collect();
        py.detach(|| self.list.end_all(&director, &taken, timeout, |id| id != current)).map_py()
    }

    /// The live subscriptions, oldest first.
    fn live(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
        // Under the list's lock, with the GIL held: no Python runs.
        self.list.live(|e| e.payload.get(py).map(Bound::unbind)).into_iter().flatten().collect()
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
}

impl Drop for PyBusList {
    /// A sharing bus collected without `close` (its list goes with it):
    /// ends its live subscriptions, each drained within
    /// [`COLLECTED_DRAIN`] in all, as the Rust bus's drop does, but on a
    /// thread of its own, and returns at once. This runs wherever the last
    /// reference went, with the GIL held: maybe on a delivery thread inside
    /// a callback (one of this bus's handlers even, which the drain would
    /// wait for), or on a thread holding a Python lock that a handler
    /// waits for. Draining or unregistering here, even with the GIL
    /// released, could then wait for itself; the thread holds no lock and
    /// no GIL, and the subscriptions' nodes let their callables go on
    /// their own threads as usual. The list lives until the thread is done
    /// with it, so nodes still unlist themselves meanwhile.
    fn drop(&mut self) {
        // Nothing reads them any more; the entries a thread below still
        // ends would keep them out of the collector's sight meanwhile.
        let _ = Python::try_attach(|py| self.subs.release(py));
        let Some(director) = self.shared.take() else { return };
        // A closed director has ended every subscription itself.
        if director.is_closed() {
            return;
        }
        // Taken as a close takes them; none may be in its `on` (that call
        // would hold the bus) and a closed list has nothing left.
        let Ok(taken) = self.list.close(|_| false) else { return };
        if taken.is_empty() {
            return;
        }
        let list = Arc::clone(&self.list);
        // Without a thread (the system refused one) nothing here may wait
        // or run a hook, so they stay registered until the director
        // closes, as all of them did before; their nodes then unlist from
        // nothing, the list gone.
        let _ = std::thread::Builder::new().name("chronica-bus-end".into()).spawn(move || {
            let _ = list.end_all(&director, &taken, COLLECTED_DRAIN, |_| true);
        });
    }
}

/// True inside a subscription's handler once its drain's deadline has
/// passed (an `off`'s or a close's): the dispatcher, which hands a batch
/// over one event at a time, stops there (`chronica::drain_deadline_passed`).
#[pyfunction]
pub(crate) fn _drain_deadline_passed() -> bool {
    chronica::drain_deadline_passed()
}
