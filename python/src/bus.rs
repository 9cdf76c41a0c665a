//! `chronica._BusList`: the list of an `EventBus`'s subscriptions, the part
//! of the Python bus (`chronica/_bus.py`) that must live in Rust.
//!
//! It mirrors the Rust bus's list (`core/src/bus/list.rs`; see docs/BUS.md,
//! "Model"). Each entry goes through three stages: `Joining`, listed by its
//! `on` before the registration; `Live`, admitted by the director under its
//! membership lock unless the bus is closed by then (`register`, with the
//! engine's admit hook, which only takes this list's lock and runs no
//! Python); `Ending`, taken by the one `off` or `close` that ends it. The
//! entry leaves the list when its node is dropped (the node unlists itself,
//! whatever ended it: an `off`, a close, an unregister of its uid straight
//! on the director, a close of the director), or when the call ending it
//! finds it ended behind its back. The bus acts on its node by uid *and*
//! registration (`Director::unregister_registration`, `stats_of`), never
//! on a node that took the uid since.
//!
//! The lock is never held while Python runs, while the GIL is wanted, or
//! while a director call waits; every wait here (for another call's
//! subscription to end, for a drain, for an unregister) runs with the GIL
//! released, since the handlers being waited for need it.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chronica::{Batch, Director, Error, Node, NodeOptions, NodeStats, Registration, SendResult};
use parking_lot::{Condvar, Mutex, MutexGuard};
use pyo3::prelude::*;

use crate::callable::Callable;
use crate::director::PyDirector;
use crate::errors::MapPy;
use crate::node::PyNode;
use crate::retry::{seconds, PyRetry};
use crate::stats::PyNodeStats;

/// Where a subscription is in its life (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Joining,
    Live,
    Ending,
}

#[derive(Debug)]
struct Entry {
    /// The subscription's number (`Subscription._number`).
    number: u64,
    uid: String,
    registration: Registration,
    stage: Stage,
    /// The `chronica.Subscription`, for `live`.
    sub: Callable,
}

#[derive(Debug, Default)]
struct State {
    /// Set by `close` under this lock, which admissions take too.
    closed: bool,
    entries: Vec<Entry>,
}

#[derive(Debug, Default)]
struct List {
    state: Mutex<State>,
    /// Signalled when an entry leaves the list or goes back to `Live`.
    changed: Condvar,
}

impl List {
    /// Drops entry `number` and wakes whoever waits. Its `Subscription` is
    /// released once the lock is (that takes the GIL).
    fn remove(&self, number: u64) {
        let gone: Vec<Entry> = {
            let mut s = self.state.lock();
            let (gone, keep) = std::mem::take(&mut s.entries).into_iter().partition(|e| e.number == number);
            s.entries = keep;
            gone
        };
        self.changed.notify_all();
        drop(gone);
    }

    /// Gives the entries of `numbers` still `Ending` back (to `Live`).
    fn release(&self, s: &mut MutexGuard<'_, State>, numbers: &[u64]) {
        for e in s.entries.iter_mut().filter(|e| numbers.contains(&e.number)) {
            if e.stage == Stage::Ending {
                e.stage = Stage::Live;
            }
        }
        self.changed.notify_all();
    }
}

/// The node of one subscription: the Python callable's node, which unlists
/// the subscription once it is dropped (fields drop in order: the callable
/// first, so that the entry leaves after the handler is gone).
struct BusNode {
    node: PyNode,
    _unlist: Unlist,
}

struct Unlist {
    list: Weak<List>,
    number: u64,
}

impl Drop for Unlist {
    fn drop(&mut self) {
        if let Some(list) = self.list.upgrade() {
            list.remove(self.number);
        }
    }
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
        self.list.state.lock().closed
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
        let entry = Entry {
            number,
            uid: String::new(),
            registration: Registration::default(),
            stage: Stage::Joining,
            sub: Callable::new(sub),
        };
        self.list.state.lock().entries.push(entry);
        let unlist = Unlist { list: Arc::downgrade(&self.list), number };
        let node: Arc<dyn Node> = Arc::new(BusNode { node: PyNode::new(callback), _unlist: unlist });
        let admitted = std::cell::Cell::new(Registration::default());
        let admit = |registration: Registration| -> chronica::Result<()> {
            let mut s = self.list.state.lock();
            if s.closed {
                return Err(Error::Closed);
            }
            if let Some(e) = s.entries.iter_mut().find(|e| e.number == number) {
                e.uid = uid.to_owned();
                e.registration = registration;
                e.stage = Stage::Live;
            }
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
        let list = &self.list;
        py.detach(|| {
            let mut s = list.state.lock();
            loop {
                let closed = s.closed;
                let e = s.entries.iter_mut().find(|e| e.number == number)?;
                match e.stage {
                    Stage::Live if !closed => {
                        e.stage = Stage::Ending;
                        return Some((e.uid.clone(), e.registration.get()));
                    }
                    Stage::Ending if can_wait => list.changed.wait(&mut s),
                    _ => return None,
                }
            }
        })
    }

    /// Closes the list: from now on an `on` not admitted yet is refused,
    /// and every admitted entry is taken (`Ending`) and returned as
    /// `(number, uid, registration)`, oldest first. ClosedError when
    /// already closed.
    fn close(&self) -> PyResult<Vec<(u64, String, u64)>> {
        let mut s = self.list.state.lock();
        if s.closed {
            return Err(Error::Closed).map_py();
        }
        s.closed = true;
        let live = s.entries.iter_mut().filter(|e| e.stage == Stage::Live);
        Ok(live
            .map(|e| {
                e.stage = Stage::Ending;
                (e.number, e.uid.clone(), e.registration.get())
            })
            .collect())
    }

    /// Undoes a `close` whose director refused to close: reopens the list
    /// and gives `numbers` back.
    fn reopen(&self, numbers: Vec<u64>) {
        let mut s = self.list.state.lock();
        s.closed = false;
        self.list.release(&mut s, &numbers);
    }

    /// Gives `numbers` back (to `Live`): the call that took them did not
    /// end them.
    fn release(&self, numbers: Vec<u64>) {
        let mut s = self.list.state.lock();
        self.list.release(&mut s, &numbers);
    }

    /// Waits (GIL released) until subscription `number` has left the list.
    fn wait_gone(&self, py: Python<'_>, number: u64) {
        let list = &self.list;
        py.detach(|| {
            let mut s = list.state.lock();
            while s.entries.iter().any(|e| e.number == number) {
                list.changed.wait(&mut s);
            }
        })
    }

    /// Waits (GIL released) until no subscription is being ended.
    fn wait_settled(&self, py: Python<'_>) {
        let list = &self.list;
        py.detach(|| {
            let mut s = list.state.lock();
            while s.entries.iter().any(|e| e.stage == Stage::Ending) {
                list.changed.wait(&mut s);
            }
        })
    }

    /// The live subscriptions, oldest first.
    fn live(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
        let s = self.list.state.lock();
        s.entries.iter().filter(|e| e.stage == Stage::Live).map(|e| e.sub.bind(py).clone().unbind()).collect()
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
        let ours = Registration::from_number(registration);
        let ended = py.detach(|| end(&director, uid, ours, timeout, drain));
        if let Err(Error::UnknownNode(_)) = ended {
            self.list.remove(number);
        }
        ended.map(PyNodeStats::from).map_py()
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
        let director = director.director();
        let listed =
            self.list.state.lock().entries.iter().any(|e| e.stage == Stage::Live && e.number == number);
        if !listed && !director.is_closed() {
            return Err(Error::UnknownNode(uid.to_owned())).map_py();
        }
        director.stats_of(uid, Registration::from_number(registration)).map(PyNodeStats::from).map_py()
    }

    /// Whether this thread may wait for `director`'s callbacks: not from
    /// inside one of them (nor a hook).
    #[staticmethod]
    fn can_wait(director: PyRef<'_, PyDirector>) -> bool {
        director.director().can_wait()
    }
}

/// The Rust bus's `EventBus::end`, without the list: drains (if `drain`)
/// and unregisters `uid` while it is registration `ours`.
fn end(
    director: &Director,
    uid: &str,
    ours: Registration,
    timeout: Duration,
    drain: bool,
) -> chronica::Result<NodeStats> {
    let last = match director.stats_of(uid, ours) {
        Ok(first) => {
            if drain {
                let target = first.accepted;
                let deadline = Instant::now().checked_add(timeout);
                loop {
                    let s = director.stats_of(uid, ours)?;
                    let due = deadline.is_some_and(|d| Instant::now() >= d);
                    if s.delivered + s.dropped + s.dead_lettered >= target || due {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            director.stats_of(uid, ours)
        }
        // Admitted but not routed yet (its `on` is still inside the
        // registration, which the close overtook): the unregister below
        // waits for it. Or ended behind our back: the unregister finds no
        // such registration.
        Err(Error::UnknownNode(_)) => Ok(NodeStats::default()),
        Err(e) => Err(e),
    };
    last.and_then(|last| director.unregister_registration(uid, ours).map(|()| last))
}
