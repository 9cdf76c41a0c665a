//! `chronica.Director`: the Python face of the engine's director.
//!
//! Every wait in Rust (close, unregister, register, subscribe, emits under
//! the `block` policy) runs with the GIL released, because delivery threads
//! need the GIL to run callbacks. Live directors are tracked weakly so an
//! `atexit` hook can close them before the interpreter finalises, and each
//! counts its closes under way (`closes.rs`) so that the hook waits for
//! those too.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use chronica::{Director, Error, Message, NodeOptions, Overflow};
use pyo3::exceptions::PyTypeError;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyRange, PyString, PyTuple, PyType};

use crate::callable::Callable;
use crate::closes::{Begun, Closes};
use crate::collected::Collectable;
use crate::errors::{invalid_argument, to_py, ClosedError, MapPy};
use crate::held::Held;
use crate::hooks::{dead_letter_hook, PyHooks};
use crate::loops::AsyncNodes;
use crate::payload;
use crate::retry::{seconds, PyRetry};
use crate::room::{emit_from_python, tried, MayWait, Wait};
use crate::stats::PyNodeStats;
use crate::waits::interruptible;

/// How long a director closed implicitly (garbage collection, exit) drains.
const IMPLICIT_CLOSE: Duration = Duration::from_secs(2);

/// State shared by the Python object and the registry of live directors.
struct Shared {
    director: Director,
    /// Whether an emit may wait for room (see `room::emit_from_python`).
    may_wait: MayWait,
    /// The async nodes: their close deadline and loops.
    aio: AsyncNodes,
    /// Whether a close has begun, set just before the director's: two
    /// closes that both passed `check_close` (the first one's deadline is
    /// armed by Python code, which hands the GIL over) armed it twice.
    begun: Begun,
    /// The closes under way, which the `atexit` hook waits for.
    closes: Arc<Closes>,
    /// The weakref whose callback closes the director when it is
    /// collected (`collected.rs`).
    watch: OnceLock<Callable>,
}

impl Collectable for Shared {
    /// The director has no reference left: closes it if still open, as
    /// `close` would with [`IMPLICIT_CLOSE`] (`AsyncNodes::close_collected`
    /// says where it waits). A close that outlasts the finalizer goes on,
    /// counted in `closes` for `atexit`.
    fn close_unreferenced(self: &Arc<Self>) {
        if !self.begun.begin() {
            return;
        }
        let (owned, closing) = (self.clone(), self.closes.begin());
        // Not inside one of its callbacks or hooks, which the close waits for.
        let waits_here = self.director.can_wait();
        self.aio.close_collected(IMPLICIT_CLOSE, waits_here, move || {
            let _ = owned.director.close(IMPLICIT_CLOSE);
            // The director first, then the count the `atexit` hook waits on.
            drop(owned);
            drop(closing);
        });
    }

    fn closes(&self) -> &Closes {
        &self.closes
    }

    fn held(&self) -> &Held {
        &self.aio.held
    }

    fn watch_slot(&self) -> &OnceLock<Callable> {
        &self.watch
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("director", &self.director).finish_non_exhaustive()
    }
}

static LIVE: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

fn track(shared: &Arc<Shared>) {
    let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    live.retain(|w| w.strong_count() > 0);
    live.push(Arc::downgrade(shared));
}

/// Closes every director still open, and waits for the closes already
/// under way (GIL released); run by `atexit`. Returns how many it closed.
#[pyfunction]
#[pyo3(signature = (timeout=2.0))]
pub(crate) fn _close_all(
    py: Python<'_>,
    #[pyo3(from_py_with = crate::args::timeout)] timeout: f64,
) -> PyResult<usize> {
    let timeout = seconds("timeout", timeout)?;
    let live: Vec<Arc<Shared>> = {
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        let out = live.iter().filter_map(Weak::upgrade).collect();
        live.clear();
        out
    };
    let mut closed = 0;
    for s in live {
        let begins = s.begun.begin();
        if begins {
            s.aio.begin_close(py, timeout);
        }
        // A close begun elsewhere (a daemon thread's, or one a finalizer
        // left to a thread of its own) may still be waiting for callbacks:
        // finalising under them aborted the process.
        let ours = py.detach(|| {
            let ours = begins && s.director.close(timeout).is_ok();
            s.closes.wait();
            ours
        });
        if ours {
            closed += 1;
        }
    }
    // Run last by `_at_exit`: the unregisters Ctrl-C left running too
    // (`waits.rs`), which these closes ended if they were waiting.
    py.detach(crate::waits::wait_left_running);
    Ok(closed)
}

/// The hub: registers nodes (Python callables), routes every emitted event
/// into one ordered, bounded, retrying queue per receiving node, and reports
/// per-node stats. Usable from any thread and from inside callbacks; also a
/// context manager that closes on exit. A director that is garbage-collected
/// or still open at interpreter exit closes itself, also when its callbacks
/// reference it (a reference cycle).
#[pyclass(frozen, weakref, module = "chronica", name = "Director")]
#[derive(Debug)]
pub(crate) struct PyDirector {
    shared: Arc<Shared>,
}

/// An overflow policy by name.
pub(crate) fn overflow(name: &str) -> PyResult<Overflow> {
    match name {
        "drop_oldest" => Ok(Overflow::DropOldest),
        "drop_newest" => Ok(Overflow::DropNewest),
        "block" => Ok(Overflow::Block),
        other => Err(invalid_argument(format!(
            "overflow must be 'drop_oldest', 'drop_newest' or 'block', got {other:?}"
        ))),
    }
}

/// A count of at least 1.
pub(crate) fn count(name: &str, value: i64) -> PyResult<usize> {
    usize::try_from(value)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| invalid_argument(format!("{name} must be at least 1, got {value}")))
}

/// An optional callable (None or absent: no hook).
pub(crate) fn hook(name: &str, obj: Option<Bound<'_, PyAny>>) -> PyResult<Option<Py<PyAny>>> {
    match obj {
        Some(o) if o.is_none() => Ok(None),
        Some(o) if !o.is_callable() => Err(PyTypeError::new_err(format!("{name} must be callable"))),
        o => Ok(o.map(Bound::unbind)),
    }
}

/// One str or an iterable of str (`what` names the argument in errors).
/// A TypeError only for an object that is not iterable or an item that is
/// not a str, with the original as its cause; what the object's own
/// `__iter__` or its iterator raises goes through as it is (a
/// `KeyboardInterrupt` too), as in `args.rs`, and so does the
/// `UnicodeEncodeError` of a str that holds a lone surrogate. Every error
/// of the iteration used to become "must be a str or an iterable of str",
/// which misled. Any iterable but a plain list or tuple is iterated
/// through `exiting.rs`, since its `__iter__` and `__next__` may be Python
/// code, run possibly on a daemon thread when the interpreter exits (the
/// process crashed; `test_shutdown.py`).
pub(crate) fn strings(what: &str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    match obj {
        None => Ok(Vec::new()),
        Some(o) if o.is_none() => Ok(Vec::new()),
        Some(o) if o.is_instance_of::<PyString>() => Ok(vec![o.extract()?]),
        Some(o) => {
            let one = |item: PyResult<Bound<'_, PyAny>>| {
                let item = item?;
                if !item.is_instance_of::<PyString>() {
                    return Err(PyTypeError::new_err(format!("{what} must contain str only")));
                }
                item.extract::<String>()
            };
            // Iterating a plain list or tuple runs no Python code.
            if o.is_exact_instance_of::<PyList>() || o.is_exact_instance_of::<PyTuple>() {
                return o.try_iter()?.map(one).collect();
            }
            let items = crate::exiting::iterate(o).map_err(|e| {
                if !e.is_instance_of::<PyTypeError>(o.py()) {
                    return e;
                }
                let mapped = PyTypeError::new_err(format!("{what} must be a str or an iterable of str"));
                mapped.set_cause(o.py(), Some(e));
                mapped
            })?;
            items.map(one).collect()
        }
    }
}

impl PyDirector {
    /// The engine's director (for the bus's list, `bus.rs`).
    pub(crate) fn director(&self) -> &Director {
        &self.shared.director
    }

    /// The table of the callables the engine holds for this director
    /// (for the bus's list, `bus.rs`).
    pub(crate) fn held(&self) -> &Arc<Held> {
        &self.shared.aio.held
    }
}

#[pymethods]
impl PyDirector {
    /// Starts a director. Raises ValueError for out-of-range settings and
    /// TypeError for wrong types.
    #[new]
    #[pyo3(signature = (
        queue_capacity=65536, root_capacity=1024, batch_size=64, overflow="drop_oldest",
        block_timeout=1.0, trust_token="", membership_events=false, retry=None,
        on_drop=None, on_dead_letter=None, on_error=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        #[pyo3(from_py_with = crate::args::queue_capacity)] queue_capacity: i64,
        #[pyo3(from_py_with = crate::args::root_capacity)] root_capacity: i64,
        #[pyo3(from_py_with = crate::args::batch_size)] batch_size: i64,
        overflow: &str,
        #[pyo3(from_py_with = crate::args::block_timeout)] block_timeout: f64,
        trust_token: &str,
        membership_events: bool,
        retry: Option<PyRef<'_, PyRetry>>,
        on_drop: Option<Bound<'_, PyAny>>,
        on_dead_letter: Option<Bound<'_, PyAny>>,
        on_error: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Self>> {
        let policy = self::overflow(overflow)?;
        let block_timeout = seconds("block_timeout", block_timeout)?;
        let mut b = Director::builder()
            .queue_capacity(count("queue_capacity", queue_capacity)?)
            .root_capacity(count("root_capacity", root_capacity)?)
            .batch_size(count("batch_size", batch_size)?)
            .overflow(policy)
            .block_timeout(block_timeout)
            .trust_token(trust_token)
            .membership_events(membership_events);
        if let Some(r) = retry {
            b = b.retry(r.policy()?);
        }
        let hooks = PyHooks {
            on_drop: hook("on_drop", on_drop)?,
            on_dead_letter: hook("on_dead_letter", on_dead_letter)?,
            on_error: hook("on_error", on_error)?,
        };
        let aio = AsyncNodes::new();
        let director = hooks.install(py, &aio.held, b).build().map_py()?;
        let shared = Arc::new(Shared {
            director,
            may_wait: MayWait::new(policy, block_timeout),
            aio,
            begun: Begun::default(),
            closes: Arc::default(),
            watch: OnceLock::new(),
        });
        track(&shared);
        let obj = Py::new(py, Self { shared: shared.clone() })?;
        crate::collected::watch(obj.bind(py).as_any(), &shared)?;
        Ok(obj)
    }

    /// The callables the engine holds for this director (nodes, hooks),
    /// for the cycle collector.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.shared.aio.held.traverse(&visit)
    }

    /// Lets go of those callables, once the director's closes are over;
    /// the weakref's callback closed it before the collector began to
    /// clear, and kept them while that close ran (`collected.rs`).
    fn __clear__(&self, py: Python<'_>) {
        self.shared.clear(py);
    }

    /// Registers node ``uid``; ``callback(events)`` receives lists of
    /// ``Event``. Its first event is the root event
    /// ``chronica.pull_current_state``. ``topics`` (a pattern or a list of
    /// patterns; None = every topic), ``group`` (consumer group: members
    /// share each event), ``concurrency`` (parallel calls; order then holds
    /// per key), ``connected`` (False holds events until ``node_connected``),
    /// ``retry`` (this node's policy), ``queue_capacity`` (this node's user
    /// lane capacity), ``root_capacity`` and ``overflow`` (this node's root
    /// lane capacity and overflow policy; None = the director's; the
    /// director's ``block_timeout`` bounds a ``block`` node's waits),
    /// ``on_dead_letter`` (``f(uid, events, error_text)``
    /// for this node's dead letters, instead of the director's hook). An
    /// ``async def`` callback runs on ``loop``, or on the loop running at
    /// registration (InvalidArgumentError when there is none). Bad values,
    /// out-of-range ints and a closed ``loop`` included, raise
    /// InvalidArgumentError, wrong types TypeError (a ``loop`` that is not
    /// an asyncio loop too); ``loop`` is checked even for a plain callback,
    /// which does not use it.
    #[pyo3(signature = (uid, callback, topics=None, group=None, concurrency=1, connected=true, retry=None, r#loop=None, queue_capacity=None, root_capacity=None, overflow=None, on_dead_letter=None))]
    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        py: Python<'_>,
        uid: &str,
        callback: Bound<'_, PyAny>,
        topics: Option<Bound<'_, PyAny>>,
        group: Option<String>,
        #[pyo3(from_py_with = crate::args::concurrency)] concurrency: i64,
        connected: bool,
        retry: Option<PyRef<'_, PyRetry>>,
        r#loop: Option<Bound<'_, PyAny>>,
        #[pyo3(from_py_with = crate::args::opt_queue_capacity)] queue_capacity: Option<i64>,
        #[pyo3(from_py_with = crate::args::opt_root_capacity)] root_capacity: Option<i64>,
        overflow: Option<&str>,
        on_dead_letter: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        if !callback.is_callable() {
            return Err(PyTypeError::new_err("callback must be callable"));
        }
        let held = &self.shared.aio.held;
        let on_dead_letter = hook("on_dead_letter", on_dead_letter)?.map(|h| dead_letter_hook(py, held, h));
        let opts = NodeOptions {
            topics: strings("topics", topics.as_ref())?,
            group,
            concurrency: count("concurrency", concurrency)?,
            connected,
            retry: retry.map(|r| r.policy()).transpose()?,
            queue_capacity: queue_capacity.map(|n| count("queue_capacity", n)).transpose()?,
            root_capacity: root_capacity.map(|n| count("root_capacity", n)).transpose()?,
            overflow: overflow.map(crate::director::overflow).transpose()?,
            on_dead_letter,
        };
        self.shared.may_wait.note(opts.overflow);
        let node = self.shared.aio.node(py, uid, callback, r#loop)?;
        let director = &self.shared.director;
        // GIL released: the registration spawns the node's threads (up to
        // 64) and takes the director's membership lock, which another
        // registration may hold meanwhile for as long; holding the GIL
        // stalled every Python thread, delivery threads included, for all
        // of it. No lock it takes is held by a thread waiting for the GIL,
        // so this is not a deadlock fix; see docs/PYTHON.md.
        let registered = py.detach(|| director.register_shared(uid, node, opts));
        // A refused node is dropped here, GIL held, by which its callable goes.
        registered.map_err(|refused| refused.error).map_py()
    }

    /// Removes a node; its pending events go to another member of its group,
    /// else they are dropped, and ``uid`` can be registered again at once.
    /// Returns after the node's last callback has finished (GIL released),
    /// except where that callback waits for the calling thread: called on
    /// the thread running the asyncio loop of an ``async def`` node (from a
    /// coroutine, or from the node's own callback), it returns at once and
    /// the node is released right after its callback in flight finishes,
    /// once the caller lets the loop run it (as from inside a callback).
    /// On the main thread Ctrl-C ends the wait: KeyboardInterrupt is raised
    /// once the node is out of the routes, and the node is released when
    /// its callback returns.
    fn unregister(&self, py: Python<'_>, uid: &str) -> PyResult<()> {
        self.shared.aio.unregister(py, &self.shared.director, uid)
    }

    /// Removes a node after letting it deliver what it holds: at once, as
    /// with ``unregister``, it leaves the routes (nothing new reaches it,
    /// ``uid`` can be registered again); then it delivers its waiting
    /// events, retrying failures, until none is left, it is found
    /// disconnected, or ``timeout`` seconds pass. What is left goes to
    /// another member of its group, else it is dropped. Returns the node's
    /// final NodeStats (nothing pending; what was handed on counts as
    /// dropped here), waiting with the GIL released; where ``unregister``
    /// does not wait (the thread running an ``async def`` node's loop,
    /// or inside a callback), it returns the counters of the moment and
    /// the drain goes on, still bounded by ``timeout``. On the main thread
    /// Ctrl-C ends the wait, as in ``unregister``; the drain goes on.
    #[pyo3(signature = (uid, timeout=5.0))]
    fn unregister_draining(
        &self,
        py: Python<'_>,
        uid: &str,
        #[pyo3(from_py_with = crate::args::timeout)] timeout: f64,
    ) -> PyResult<PyNodeStats> {
        let timeout = seconds("timeout", timeout)?;
        self.shared.aio.unregister_draining(py, &self.shared.director, uid, timeout).map(PyNodeStats::from)
    }

    /// Adds a topic pattern to a node's subscription.
    fn subscribe(&self, py: Python<'_>, uid: &str, pattern: &str) -> PyResult<()> {
        // GIL released: the membership lock may be held by a registration
        // spawning its threads, which `register` now does without the GIL.
        py.detach(|| self.shared.director.subscribe(uid, pattern)).map_py()
    }

    /// Broadcasts to every subscriber of ``topic`` except ``source`` (one
    /// member per group). ``payload``: bytes, str, or a JSON-serialisable
    /// object (NaN and the infinities raise ValueError: JSON has no such
    /// numbers). ``content_type`` labels the payload's encoding (consumers
    /// read it as ``Event.content_type``). Returns the event id. Under
    /// ``overflow="block"`` a full target makes it wait for room up to
    /// ``block_timeout``, then raise QueueFullError having reached no node;
    /// Ctrl-C ends that wait on the main thread, the event reaching no node.
    #[pyo3(signature = (topic, payload, source=None, key=None, content_type=None))]
    fn emit(
        &self,
        py: Python<'_>,
        topic: &str,
        payload: &Bound<'_, PyAny>,
        source: Option<&str>,
        key: Option<&Bound<'_, PyAny>>,
        content_type: Option<&str>,
    ) -> PyResult<u64> {
        let msg = message(topic, payload, source, key, content_type)?;
        let d = &self.shared.director;
        let emit = |m, wait| match wait {
            Wait::Timeout => d.emit(m),
            Wait::Slice(until) | Wait::Last(until) => d.emit_until(m, until),
        };
        emit_from_python(py, self.shared.may_wait.block_timeout(), msg, is_full, |m| d.try_emit(m), emit)?
            .map_py()
    }

    /// ``emit`` of each payload of ``payloads`` in order, all on ``topic``
    /// with the same ``source``, ``key`` and ``content_type``, in one call
    /// of the engine: every target node gets its events of the call with
    /// one claim and one push. Returns the ids as a ``range``: consecutive,
    /// in payload order (empty for no payloads). ``payloads`` is any
    /// iterable (a list or tuple is cheapest), but not one payload that
    /// ``emit`` would take (str, bytes-like, dict: TypeError). Every payload
    /// is converted as ``emit`` converts one before anything is emitted:
    /// one that cannot be raises TypeError or ValueError naming its index
    /// (``payloads[3]: ...``), and nothing is emitted. An unknown
    /// ``source`` refuses the whole call (UnknownNodeError). Under
    /// ``overflow="block"`` it is all or nothing: it waits, as ``emit``
    /// does (GIL released, Ctrl-C ends it on the main thread), for room
    /// for all of each node's events, or raises QueueFullError having
    /// accepted none; more events for one ``block`` node than its queue
    /// holds raise InvalidArgumentError at once. Under the dropping
    /// policies a node without room for its run takes them one by one, as
    /// from ``emit``.
    #[pyo3(signature = (topic, payloads, source=None, key=None, content_type=None))]
    fn emit_many<'py>(
        &self,
        py: Python<'py>,
        topic: &str,
        payloads: &Bound<'py, PyAny>,
        source: Option<&str>,
        key: Option<&Bound<'py, PyAny>>,
        content_type: Option<&str>,
    ) -> PyResult<Bound<'py, PyRange>> {
        let msgs = crate::emit_many::messages(topic, payloads, source, key, content_type)?;
        let d = &self.shared.director;
        let emit = |m: Vec<Message<'_>>, wait| match wait {
            Wait::Timeout => d.emit_many(m),
            Wait::Slice(until) | Wait::Last(until) => d.emit_many_until(m, until),
        };
        // A deadline already passed waits for nothing: the engine's try.
        let try_emit = |m| d.emit_many_until(m, Instant::now());
        let block_timeout = self.shared.may_wait.block_timeout();
        let ids = emit_from_python(py, block_timeout, msgs, is_full, try_emit, emit)?.map_py()?;
        crate::emit_many::range(py, ids)
    }

    /// Sends to exactly ``target``, whatever its subscription. Returns the
    /// event id. Waits for room under ``overflow="block"`` as ``emit`` does.
    #[pyo3(signature = (target, topic, payload, source=None, key=None, content_type=None))]
    #[allow(clippy::too_many_arguments)] // the Python signature, keyword arguments
    fn emit_to(
        &self,
        py: Python<'_>,
        target: &str,
        topic: &str,
        payload: &Bound<'_, PyAny>,
        source: Option<&str>,
        key: Option<&Bound<'_, PyAny>>,
        content_type: Option<&str>,
    ) -> PyResult<u64> {
        let msg = message(topic, payload, source, key, content_type)?;
        let d = &self.shared.director;
        let emit = |m, wait| match wait {
            Wait::Timeout => d.emit_to(target, m),
            Wait::Slice(until) | Wait::Last(until) => d.emit_to_until(target, m, until),
        };
        let try_emit = |m| d.try_emit_to(target, m);
        emit_from_python(py, self.shared.may_wait.block_timeout(), msg, is_full, try_emit, emit)?.map_py()
    }

    /// ``emit`` that never waits: where a target under the ``block``
    /// policy (the director's or its own) is full, it returns None at once
    /// and the event reaches no node; otherwise it returns the event id
    /// (under the dropping policies it is ``emit``). Every other refusal
    /// raises as ``emit`` does. A full lane is an expected answer of a
    /// try, so it is a value, as C++'s ``try_emit`` returns an empty
    /// ``std::optional``.
    #[pyo3(signature = (topic, payload, source=None, key=None, content_type=None))]
    fn try_emit(
        &self,
        topic: &str,
        payload: &Bound<'_, PyAny>,
        source: Option<&str>,
        key: Option<&Bound<'_, PyAny>>,
        content_type: Option<&str>,
    ) -> PyResult<Option<u64>> {
        let msg = message(topic, payload, source, key, content_type)?;
        // The GIL stays held: the call never waits.
        tried(self.shared.director.try_emit(msg), is_full).map_py()
    }

    /// ``emit_to`` that never waits: None at once when ``target`` is full
    /// under the ``block`` policy, as ``try_emit``.
    #[pyo3(signature = (target, topic, payload, source=None, key=None, content_type=None))]
    #[allow(clippy::too_many_arguments)] // the Python signature, keyword arguments
    fn try_emit_to(
        &self,
        target: &str,
        topic: &str,
        payload: &Bound<'_, PyAny>,
        source: Option<&str>,
        key: Option<&Bound<'_, PyAny>>,
        content_type: Option<&str>,
    ) -> PyResult<Option<u64>> {
        let msg = message(topic, payload, source, key, content_type)?;
        tried(self.shared.director.try_emit_to(target, msg), is_full).map_py()
    }

    /// Sends a root (control) event to every node, or to ``target`` only.
    /// Root events carry the trust token and overtake waiting user events.
    /// ``content_type`` labels the payload as for ``emit``.
    #[pyo3(signature = (action, payload=None, target=None, content_type=None))]
    fn emit_root(
        &self,
        action: &str,
        payload: Option<&Bound<'_, PyAny>>,
        target: Option<&str>,
        content_type: Option<&str>,
    ) -> PyResult<u64> {
        let payload = payload.map(payload::payload).transpose()?.unwrap_or_default();
        let d = &self.shared.director;
        // The GIL stays held: a root event never waits for room.
        match (target, content_type) {
            (Some(t), Some(ct)) => d.emit_root_to_typed(t, action, payload, ct),
            (Some(t), None) => d.emit_root_to(t, action, payload),
            (None, Some(ct)) => d.emit_root_typed(action, payload, ct),
            (None, None) => d.emit_root(action, payload),
        }
        .map_py()
    }

    /// Resumes delivery to a node at once and resets its retry backoff.
    fn node_connected(&self, uid: &str) -> PyResult<()> {
        self.shared.director.node_connected(uid).map_py()
    }

    /// Pauses delivery to a node; its queue keeps events (bounded).
    fn node_disconnected(&self, uid: &str) -> PyResult<()> {
        self.shared.director.node_disconnected(uid).map_py()
    }

    /// A consistent snapshot of a node's counters; also works after close.
    fn stats(&self, uid: &str) -> PyResult<PyNodeStats> {
        self.shared.director.stats(uid).map(PyNodeStats::from).map_py()
    }

    /// The registered uids, sorted.
    fn nodes(&self) -> Vec<String> {
        self.shared.director.nodes()
    }

    /// The trust token root events carry.
    #[getter]
    fn trust_token(&self) -> &str {
        self.shared.director.trust_token()
    }

    /// True once ``close`` has begun.
    #[getter]
    fn closed(&self) -> bool {
        self.shared.begun.get() || self.shared.director.is_closed()
    }

    /// Stops accepting, drains every node until ``timeout`` seconds, waits
    /// for callbacks in flight (GIL released) and returns the number of
    /// events left undelivered. Raises ClosedError when already closed and
    /// ReentrantError from inside one of this director's callbacks. On the
    /// main thread Ctrl-C ends the wait: KeyboardInterrupt is raised once
    /// the director is closed to new calls, and the close goes on in the
    /// background (the interpreter's exit waits for it).
    #[pyo3(signature = (timeout=5.0))]
    fn close(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = crate::args::timeout)] timeout: f64,
    ) -> PyResult<u64> {
        let timeout = seconds("timeout", timeout)?;
        // A refused close must not arm the async callbacks' deadline.
        self.shared.director.check_close().map_py()?;
        if !self.shared.begun.begin() {
            return Err(to_py(Error::Closed));
        }
        // Let go with the GIL held again, on return (`closes.rs`), or by
        // the close's thread once over if Ctrl-C ended the wait (`waits.rs`).
        let closing = self.shared.closes.begin();
        self.shared.aio.begin_close(py, timeout);
        let s = self.shared.clone();
        let begun = || self.shared.director.is_closed();
        let (closed, _closing) = interruptible(py, begun, move || (s.director.close(timeout), closing))?;
        closed.map_py()
    }

    /// Returns the director itself; ``__exit__`` closes it.
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes the director (if still open) with the default timeout.
    #[pyo3(signature = (_exc_type=None, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<Bound<'_, PyType>>,
        _exc: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        match self.close(py, 5.0) {
            Err(e) if e.is_instance_of::<ClosedError>(py) => Ok(false),
            Err(e) => Err(e),
            Ok(_) => Ok(false),
        }
    }

    /// How many uids the table of async nodes holds, for the tests: that
    /// of a node that unregistered itself from its callback used to stay.
    fn _async_uids(&self) -> usize {
        self.shared.aio.uids()
    }

    fn __repr__(&self) -> String {
        let d = &self.shared.director;
        format!(
            "<chronica.Director nodes={} closed={}>",
            d.nodes().len(),
            if d.is_closed() { "True" } else { "False" }
        )
    }
}

/// Whether the director refused an emit for want of room.
fn is_full(e: &Error) -> bool {
    matches!(e, Error::QueueFull(_))
}

/// An emit's message: payload shared by every node (one Python bytes object).
pub(crate) fn message<'a>(
    topic: &'a str,
    payload: &Bound<'_, PyAny>,
    source: Option<&'a str>,
    key: Option<&Bound<'_, PyAny>>,
    content_type: Option<&str>,
) -> PyResult<Message<'a>> {
    let shared = payload::shared_payload(payload)?;
    let key = key.filter(|k| !k.is_none()).map(payload::key).transpose()?;
    Ok(shared_message(topic, shared, source, key, content_type))
}

/// The message of a payload already converted (`payload::shared_payload`)
/// and of a key already converted: `emit_many` converts its key once for
/// the run.
pub(crate) fn shared_message<'a>(
    topic: &'a str,
    (buf, py_bytes): (Bytes, Py<PyBytes>),
    source: Option<&'a str>,
    key: Option<Bytes>,
    content_type: Option<&str>,
) -> Message<'a> {
    let shared: chronica::Extension = std::sync::Arc::new(payload::SharedPayload::new(py_bytes));
    let mut msg = Message::new(topic, buf).extension(shared);
    if let Some(s) = source {
        msg = msg.source(s);
    }
    if let Some(ct) = content_type {
        msg = msg.content_type(ct);
    }
    if let Some(k) = key {
        msg = msg.key(k);
    }
    msg
}

impl Drop for PyDirector {
    /// Garbage-collected while open: close so that in-flight callbacks can
    /// finish. The weakref's callback, which runs first, has normally
    /// closed it already.
    fn drop(&mut self) {
        self.shared.close_unreferenced();
    }
}
