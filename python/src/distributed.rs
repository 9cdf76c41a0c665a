//! `chronica.Distributed`: a director that shares its events with the
//! directors of other processes through a broker (SPEC section 4).
//!
//! The object owns its director (built from the same keyword arguments as
//! `chronica.Director`) and the engine's `chronica::Distributed` layer over
//! it. Every call that may wait (connecting, joining a broker group while
//! registering, flushing, closing, emits under the `block` policy) runs with
//! the GIL released, because delivery threads need the GIL to run callbacks.
//! Live instances are tracked weakly so an `atexit` hook closes them before
//! the interpreter finalises.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use chronica::mq::MqError;
use chronica::{AckMode, Director, Distributed, DistributedConfig, Error, NodeOptions};
use pyo3::create_exception;
use pyo3::exceptions::PyTypeError;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::adapter::{PyAdapter, Subs};
use crate::callable::Callable;
use crate::closes::{Begun, Closes};
use crate::collected::Collectable;
use crate::director::{count, hook, message, overflow, strings};
use crate::errors::{invalid_argument, to_py, ChronicaError, ClosedError, MapPy, ReentrantError};
use crate::held::Held;
use crate::hooks::PyHooks;
use crate::loops::AsyncNodes;
use crate::payload;
use crate::retry::{seconds, PyRetry};
use crate::room::{emit_from_python, tried, MayWait, Wait};
use crate::stats::PyNodeStats;
use crate::waits::interruptible;

create_exception!(
    chronica,
    BrokerError,
    ChronicaError,
    "The broker could not be reached, or refused or failed an operation."
);

/// How long an instance closed implicitly (garbage collection, exit) drains.
const IMPLICIT_CLOSE: Duration = Duration::from_secs(2);

/// The conversion from a distributed-layer error to a Python exception:
/// bad settings and URLs (and adapters a build lacks) are
/// `InvalidArgumentError`, broker trouble `BrokerError`, the director's own
/// errors their usual class.
fn mq_to_py(err: MqError) -> PyErr {
    match err {
        MqError::Engine(e) => to_py(e),
        MqError::Closed => ClosedError::new_err("closed"),
        e @ (MqError::Config(_) | MqError::Unsupported(_)) => invalid_argument(e.to_string()),
        e => BrokerError::new_err(e.to_string()),
    }
}

/// `result.map_mq()?` converts a distributed-layer result into a Python one.
trait MapMq<T> {
    fn map_mq(self) -> PyResult<T>;
}

impl<T> MapMq<T> for Result<T, MqError> {
    fn map_mq(self) -> PyResult<T> {
        self.map_err(mq_to_py)
    }
}

/// Whether the fabric refused an emit because a local node had no room.
fn is_full(e: &MqError) -> bool {
    matches!(e, MqError::Engine(Error::QueueFull(_)))
}

/// State shared by the Python object and the registry of live instances.
struct Shared {
    director: Director,
    fabric: Distributed,
    /// Whether an emit may wait for room (see `room::emit_from_python`).
    may_wait: MayWait,
    /// The async nodes: their close deadline and loops.
    aio: AsyncNodes,
    /// Whether a close has begun: set before the fabric closes, while the
    /// director is still open.
    begun: Begun,
    /// Whether the fabric's close has begun (the work of a close, on its
    /// thread): from then on Ctrl-C may end the wait of `close`.
    fabric_closing: AtomicBool,
    /// The closes under way, which the `atexit` hook waits for.
    closes: Arc<Closes>,
    /// The weakref whose callback closes the instance when it is
    /// collected (`collected.rs`).
    watch: OnceLock<Callable>,
    /// A Python adapter's live subscriptions, counted by
    /// `_adapter_subscriptions`; None for a URL.
    adapter_subs: Option<Subs>,
}

impl Collectable for Shared {
    /// The instance has no reference left: closes it if still open, with
    /// [`IMPLICIT_CLOSE`] (`AsyncNodes::close_collected` says where it
    /// waits). Inside a method of a Python adapter, or a callback or hook
    /// of its director, which the close would wait for, it does not wait.
    fn close_unreferenced(self: &Arc<Self>) {
        if !self.begun.begin() {
            return;
        }
        let (owned, closing) = (self.clone(), self.closes.begin());
        let close = move || {
            let _ = owned.close(IMPLICIT_CLOSE);
            // The instance first, then the count the `atexit` hook waits on.
            drop(owned);
            drop(closing);
        };
        let waits_here = self.director.can_wait() && !chronica::mq::in_host_call();
        self.aio.close_collected(IMPLICIT_CLOSE, waits_here, close);
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
        f.debug_struct("Shared").field("fabric", &self.fabric).finish_non_exhaustive()
    }
}

impl Shared {
    /// Closes the fabric (publishing what is buffered until `timeout`), then
    /// the director, draining until that same deadline; returns emits never
    /// published plus local events never delivered. Call with the GIL
    /// released.
    fn close(&self, timeout: Duration) -> Result<u64, MqError> {
        let started = Instant::now();
        self.fabric_closing.store(true, Ordering::Release);
        let unpublished = self.fabric.close(timeout)?;
        // One timeout bounds both phases: the director drains for what the
        // fabric left (a `timeout` of its own made a close with both stuck
        // take twice its timeout). What it cannot deliver is counted.
        let undelivered = self.director.close(timeout.saturating_sub(started.elapsed()))?;
        Ok(unpublished + undelivered)
    }
}

static LIVE: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

fn track(shared: &Arc<Shared>) {
    let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    live.retain(|w| w.strong_count() > 0);
    live.push(Arc::downgrade(shared));
}

/// Closes every distributed instance still open, and waits for the closes
/// already under way (GIL released; see `_close_all`); run by `atexit`.
/// Returns how many it closed.
#[pyfunction]
#[pyo3(signature = (timeout=2.0))]
pub(crate) fn _close_all_distributed(
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
        // A close begun elsewhere holds a `Closing` until it is over (or
        // is the finalizer's, which does too): wait for it, and leave its
        // deadline and its result alone.
        let begins = s.begun.begin();
        if begins {
            s.aio.begin_close(py, timeout);
        }
        let ours = py.detach(|| {
            let ours = begins && s.close(timeout).is_ok();
            s.closes.wait();
            ours
        });
        if ours {
            closed += 1;
        }
    }
    Ok(closed)
}

/// A snapshot of the distributed layer's counters.
#[pyclass(frozen, eq, module = "chronica", name = "DistributedStats")]
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PyDistributedStats {
    /// Events handed to the broker successfully.
    #[pyo3(get)]
    published: u64,
    /// Publish attempts that failed and were retried (broker away).
    #[pyo3(get)]
    publish_retries: u64,
    /// Events waiting in the outbox to be published.
    #[pyo3(get)]
    buffered: u64,
    /// Events the full outbox dropped (oldest first) while the broker was away.
    #[pyo3(get)]
    buffer_dropped: u64,
    /// Broker messages received, on every subscription.
    #[pyo3(get)]
    received: u64,
    /// Received events handed to at least one local node.
    #[pyo3(get)]
    injected: u64,
    /// Received events already seen within the dedup window.
    #[pyo3(get)]
    duplicates: u64,
    /// Plain messages from foreign producers, accepted as events.
    #[pyo3(get)]
    foreign: u64,
    /// Malformed messages received.
    #[pyo3(get)]
    malformed: u64,
    /// Malformed messages published to the dead-letter topic.
    #[pyo3(get)]
    dead_lettered: u64,
    /// Root events refused for a missing signature.
    #[pyo3(get)]
    rejected_unsigned: u64,
    /// Root events refused for a wrong signature.
    #[pyo3(get)]
    rejected_forged: u64,
    /// Genuine root events refused because their signed timestamp is
    /// further than ``root_max_age`` from this instance's clock (a replay,
    /// or clocks apart).
    #[pyo3(get)]
    rejected_stale: u64,
    /// Errors reported by the broker (subscriptions, acks, and an adapter
    /// ``close`` that failed or outlasted the layer's 5 s).
    #[pyo3(get)]
    broker_errors: u64,
    /// Subscriptions re-established after their stream ended.
    #[pyo3(get)]
    resubscribes: u64,
    /// Group shares that came here when the group's only matching member
    /// here was the event's own source (sender exclusion left nobody), so
    /// they were acknowledged undelivered.
    #[pyo3(get)]
    group_sender_only: u64,
    /// Events the broker refused for good (too large, say; a Python
    /// adapter's ``publish`` raising ``ValueError``): not retried, counted
    /// here and sent to the dead-letter topic.
    #[pyo3(get)]
    publish_rejected: u64,
    /// Unicast messages (``emit_to``, ``emit_root`` with a target, across
    /// the broker) received for a target not registered here. Every
    /// instance reads every unicast, the sender's own included, and only
    /// the one that has the target delivers it; each of the others counts
    /// it here. One counted here by every instance of the fabric reached
    /// nobody: no instance had its target.
    #[pyo3(get)]
    unicast_not_here: u64,
}

impl From<chronica::DistributedStats> for PyDistributedStats {
    fn from(s: chronica::DistributedStats) -> Self {
        Self {
            published: s.published,
            publish_retries: s.publish_retries,
            buffered: s.buffered,
            buffer_dropped: s.buffer_dropped,
            received: s.received,
            injected: s.injected,
            duplicates: s.duplicates,
            foreign: s.foreign,
            malformed: s.malformed,
            dead_lettered: s.dead_lettered,
            rejected_unsigned: s.rejected_unsigned,
            rejected_forged: s.rejected_forged,
            rejected_stale: s.rejected_stale,
            broker_errors: s.broker_errors,
            resubscribes: s.resubscribes,
            group_sender_only: s.group_sender_only,
            publish_rejected: s.publish_rejected,
            unicast_not_here: s.unicast_not_here,
        }
    }
}

#[pymethods]
impl PyDistributedStats {
    fn __repr__(&self) -> String {
        format!(
            "DistributedStats(published={}, publish_retries={}, buffered={}, buffer_dropped={}, \
             received={}, injected={}, duplicates={}, foreign={}, malformed={}, dead_lettered={}, \
             rejected_unsigned={}, rejected_forged={}, rejected_stale={}, broker_errors={}, resubscribes={}, \
             group_sender_only={}, publish_rejected={}, unicast_not_here={})",
            self.published,
            self.publish_retries,
            self.buffered,
            self.buffer_dropped,
            self.received,
            self.injected,
            self.duplicates,
            self.foreign,
            self.malformed,
            self.dead_lettered,
            self.rejected_unsigned,
            self.rejected_forged,
            self.rejected_stale,
            self.broker_errors,
            self.resubscribes,
            self.group_sender_only,
            self.publish_rejected,
            self.unicast_not_here
        )
    }
}

/// A director joined to a fabric of directors in other processes through a
/// broker. Emits reach the matching nodes of every instance (one member per
/// consumer group across all of them); ``emit_to`` reaches a node wherever
/// it lives; root events, signed with the trust token, reach every node of
/// every instance. Also a context manager that closes on exit; closes itself
/// when garbage-collected or still open at interpreter exit.
#[pyclass(frozen, weakref, module = "chronica", name = "Distributed")]
#[derive(Debug)]
pub(crate) struct PyDistributed {
    shared: Arc<Shared>,
}

#[pymethods]
impl PyDistributed {
    /// Builds a director (the keyword arguments of ``chronica.Director``) and
    /// joins the fabric through the broker ``url`` names: ``memory://NAME``
    /// (in-process), ``nats://HOST:PORT`` or ``redis://HOST:PORT[/DB]``
    /// (``kafka://`` needs a module built with the ``kafka`` feature; the
    /// default build refuses it with a clear error); or through ``url``, an
    /// adapter object with ``publish``, ``subscribe``, ``ack`` and ``close``
    /// methods, and optionally ``release`` (see the ``Adapter`` protocol in
    /// the stubs). ``instance_id`` (unique per process;
    /// default ``HOSTNAME-PID-RANDOM``), ``topic_prefix`` (the broker topic
    /// the instances share), ``ack_mode`` (``"enqueue"`` or ``"delivery"``),
    /// ``dedup_window`` (seconds), ``content_type`` (stamped on emits that
    /// carry none), ``foreign_topics`` (broker topics of foreign producers),
    /// ``connect_timeout`` (seconds), ``root_max_age`` (seconds, or None for
    /// no limit: root events whose signed timestamp is further than this
    /// from this instance's clock are rejected and counted in
    /// ``rejected_stale``, which stops replays; needs clocks in step),
    /// ``group_watch_interval`` (seconds: how often the group watcher looks
    /// again; it acts on every registration at once regardless).
    /// ``trust_token`` is required: it signs root events on the broker, and
    /// every instance needs the same. Raises
    /// InvalidArgumentError for bad settings or URLs (an empty trust token
    /// included) and BrokerError when the broker does not answer within
    /// ``connect_timeout``.
    #[new]
    #[pyo3(signature = (
        url, instance_id=None, topic_prefix="chronica", ack_mode="enqueue", dedup_window=300.0,
        dedup_capacity=1_000_000, outbox_capacity=65536, max_in_flight=4096, content_type=None,
        foreign_topics=None, connect_timeout=10.0, root_max_age=None, group_watch_interval=0.25,
        queue_capacity=65536, root_capacity=1024, batch_size=64, overflow="drop_oldest",
        block_timeout=1.0, trust_token="", membership_events=false, retry=None,
        on_drop=None, on_dead_letter=None, on_error=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        url: &Bound<'_, PyAny>,
        instance_id: Option<String>,
        topic_prefix: &str,
        ack_mode: &str,
        #[pyo3(from_py_with = crate::args::dedup_window)] dedup_window: f64,
        #[pyo3(from_py_with = crate::args::dedup_capacity)] dedup_capacity: i64,
        #[pyo3(from_py_with = crate::args::outbox_capacity)] outbox_capacity: i64,
        #[pyo3(from_py_with = crate::args::max_in_flight)] max_in_flight: i64,
        content_type: Option<String>,
        foreign_topics: Option<Bound<'_, PyAny>>,
        #[pyo3(from_py_with = crate::args::connect_timeout)] connect_timeout: f64,
        #[pyo3(from_py_with = crate::args::root_max_age)] root_max_age: Option<f64>,
        #[pyo3(from_py_with = crate::args::group_watch_interval)] group_watch_interval: f64,
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
        let mut cfg = DistributedConfig {
            topic_prefix: topic_prefix.to_owned(),
            ack_mode: ack_mode.parse::<AckMode>().map_mq()?,
            dedup_window: seconds("dedup_window", dedup_window)?,
            dedup_capacity: count("dedup_capacity", dedup_capacity)?,
            outbox_capacity: count("outbox_capacity", outbox_capacity)?,
            max_in_flight: count("max_in_flight", max_in_flight)?,
            content_type,
            foreign_topics: strings("foreign_topics", foreign_topics.as_ref())?,
            connect_timeout: seconds("connect_timeout", connect_timeout)?,
            root_max_age: root_max_age.map(|a| seconds("root_max_age", a)).transpose()?,
            group_watch_interval: seconds("group_watch_interval", group_watch_interval)?,
            ..DistributedConfig::default()
        };
        if let Some(id) = instance_id {
            cfg.instance_id = id;
        }
        cfg.validate().map_mq()?;

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
        let mut adapter_subs = None;
        let connected = match url.extract::<String>() {
            Ok(url) => py.detach(|| Distributed::connect(&director, &url, cfg)),
            Err(_) => match PyAdapter::new(url, &aio.held) {
                Ok(a) => {
                    adapter_subs = Some(a.subs());
                    py.detach(|| Distributed::with_adapter(&director, Arc::new(a), cfg))
                }
                Err(e) => {
                    let _ = py.detach(|| director.close(Duration::ZERO));
                    return Err(e);
                }
            },
        };
        let fabric = match connected {
            Ok(f) => f,
            Err(e) => {
                let _ = py.detach(|| director.close(Duration::ZERO));
                return Err(mq_to_py(e));
            }
        };
        let shared = Arc::new(Shared {
            director,
            fabric,
            may_wait: MayWait::new(policy, block_timeout),
            aio,
            begun: Begun::default(),
            fabric_closing: AtomicBool::new(false),
            closes: Arc::default(),
            watch: OnceLock::new(),
            adapter_subs,
        });
        track(&shared);
        let obj = Py::new(py, Self { shared: shared.clone() })?;
        crate::collected::watch(obj.bind(py).as_any(), &shared)?;
        Ok(obj)
    }

    /// The callables the engine holds for this instance (nodes, hooks),
    /// for the cycle collector.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.shared.aio.held.traverse(&visit)
    }

    /// Lets go of those callables once its closes are over (see
    /// `Director.__clear__`).
    fn __clear__(&self, py: Python<'_>) {
        self.shared.clear(py);
    }

    /// Registers node ``uid`` exactly as ``Director.register`` does; with a
    /// ``group`` it also joins that consumer group on the broker before
    /// returning (GIL released), so the group's share of every instance's
    /// emits starts reaching it.
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
        let on_dead_letter =
            hook("on_dead_letter", on_dead_letter)?.map(|h| crate::hooks::dead_letter_hook(py, held, h));
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
        let node: Arc<dyn chronica::Node> = self.shared.aio.node(py, uid, callback, r#loop)?;
        let fabric = &self.shared.fabric;
        py.detach(|| fabric.register_shared(uid, node, opts))
            .map_err(|refused| refused.error)
            .and_then(|joined| joined)
            .map_mq()
    }

    /// Removes a local node (see ``Director.unregister``: on the thread
    /// running an ``async def`` node's loop it does not wait for that
    /// node's callback in flight, and Ctrl-C ends its wait on the main
    /// thread).
    fn unregister(&self, py: Python<'_>, uid: &str) -> PyResult<()> {
        self.shared.aio.unregister(py, &self.shared.director, uid)
    }

    /// Removes a local node after letting it deliver what it holds, for at
    /// most ``timeout`` seconds; returns its final counters (see
    /// ``Director.unregister_draining``).
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

    /// Adds a topic pattern to a local node's subscription.
    fn subscribe(&self, py: Python<'_>, uid: &str, pattern: &str) -> PyResult<()> {
        // GIL released, as `Director.subscribe` (director.rs) says why.
        py.detach(|| self.shared.director.subscribe(uid, pattern)).map_py()
    }

    /// Joins consumer ``group`` on the broker now (``register`` with a group
    /// does it). Idempotent. A group with no member here is left again
    /// within ``group_watch_interval`` (250 ms by default). An empty
    /// ``group`` raises InvalidArgumentError and joins nothing, as
    /// ``register(group="")`` is refused.
    fn join_group(&self, py: Python<'_>, group: &str) -> PyResult<()> {
        py.detach(|| self.shared.fabric.join_group(group)).map_mq()
    }

    /// Broadcasts to every matching subscriber of every instance except
    /// ``source`` (one member per group across all instances). ``payload``:
    /// bytes, str, or a JSON-serialisable object (as ``Director.emit``
    /// takes it). Returns the event's id on
    /// the wire (unique per instance, increasing). Under
    /// ``overflow="block"`` a full local node makes it wait for room up to
    /// ``block_timeout``, then take the event under the lane's rule (it
    /// drops the newest); Ctrl-C ends that wait on the main thread, the
    /// event then reaching no node and not published.
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
        let f = &self.shared.fabric;
        // A slice refused accepts nothing; the last one pushes under the
        // lane's rule, as `emit` after `block_timeout`.
        let emit = |m, wait| match wait {
            Wait::Timeout => f.emit(m),
            Wait::Slice(until) => f.try_emit_until(m, until),
            Wait::Last(until) => f.emit_until(m, until),
        };
        emit_from_python(py, self.shared.may_wait.block_timeout(), msg, is_full, |m| f.try_emit(m), emit)?
            .map_mq()
    }

    /// Sends to node ``target`` of whichever instance owns it: at once when
    /// it is local, else through the broker. Returns the local event id or
    /// the wire id.
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
        let f = &self.shared.fabric;
        let emit = |m, wait| match wait {
            Wait::Timeout => f.emit_to(target, m),
            Wait::Slice(until) | Wait::Last(until) => f.emit_to_until(target, m, until),
        };
        let try_emit = |m| f.try_emit_to(target, m);
        emit_from_python(py, self.shared.may_wait.block_timeout(), msg, is_full, try_emit, emit)?.map_mq()
    }

    /// ``emit`` that never waits: where a local node under the ``block``
    /// policy is full, it returns None at once, the event reaching no
    /// node and not published; otherwise the wire id (see
    /// ``Director.try_emit``).
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
        tried(self.shared.fabric.try_emit(msg), is_full).map_mq()
    }

    /// ``emit_to`` that never waits: None at once when ``target`` is a
    /// local node full under the ``block`` policy (a remote one cannot be
    /// full here), as ``try_emit``.
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
        tried(self.shared.fabric.try_emit_to(target, msg), is_full).map_mq()
    }

    /// Sends a signed root (control) event to every node of every instance,
    /// or to node ``target`` wherever it lives. ``content_type`` labels the
    /// payload as for ``emit`` (and is signed with it).
    #[pyo3(signature = (action, payload=None, target=None, content_type=None))]
    fn emit_root(
        &self,
        action: &str,
        payload: Option<&Bound<'_, PyAny>>,
        target: Option<&str>,
        content_type: Option<&str>,
    ) -> PyResult<u64> {
        let payload = payload.map(payload::payload).transpose()?.unwrap_or_default();
        let fabric = &self.shared.fabric;
        // The GIL stays held: a root event never waits for room.
        match (target, content_type) {
            (Some(t), Some(ct)) => fabric.emit_root_to_typed(t, action, payload, ct),
            (Some(t), None) => fabric.emit_root_to(t, action, payload),
            (None, Some(ct)) => fabric.emit_root_typed(action, payload, ct),
            (None, None) => fabric.emit_root(action, payload),
        }
        .map_mq()
    }

    /// Resumes delivery to a local node at once.
    fn node_connected(&self, uid: &str) -> PyResult<()> {
        self.shared.director.node_connected(uid).map_py()
    }

    /// Pauses delivery to a local node; its queue keeps events (bounded).
    fn node_disconnected(&self, uid: &str) -> PyResult<()> {
        self.shared.director.node_disconnected(uid).map_py()
    }

    /// A snapshot of the distributed layer's counters.
    fn stats(&self) -> PyDistributedStats {
        self.shared.fabric.stats().into()
    }

    /// A snapshot of a local node's counters (``Director.stats``).
    fn node_stats(&self, uid: &str) -> PyResult<PyNodeStats> {
        self.shared.director.stats(uid).map(PyNodeStats::from).map_py()
    }

    /// The local registered uids, sorted.
    fn nodes(&self) -> Vec<String> {
        self.shared.director.nodes()
    }

    /// Waits (GIL released) until every emit so far reached the broker, at
    /// most ``timeout`` seconds; True when none is left. A ``close`` on
    /// another thread ends the wait (False if it left emits unpublished).
    #[pyo3(signature = (timeout=5.0))]
    fn flush(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = crate::args::timeout)] timeout: f64,
    ) -> PyResult<bool> {
        let timeout = seconds("timeout", timeout)?;
        Ok(py.detach(|| self.shared.fabric.flush(timeout)))
    }

    /// This instance's id on the fabric.
    #[getter]
    fn instance_id(&self) -> &str {
        self.shared.fabric.instance_id()
    }

    /// The trust token root events carry (shared by every instance).
    #[getter]
    fn trust_token(&self) -> &str {
        self.shared.director.trust_token()
    }

    /// True once ``close`` has begun (its fabric phase included).
    #[getter]
    fn closed(&self) -> bool {
        self.shared.begun.get()
    }

    /// Publishes what is buffered until ``timeout`` seconds, leaves the
    /// fabric, then closes the director like ``Director.close``, draining
    /// for what is left of that one ``timeout`` (GIL released). Returns the emits never published plus the local events
    /// left undelivered. Raises ClosedError when already closed, and
    /// ReentrantError, changing nothing, from inside a method of a Python
    /// adapter (it would wait for that very method). On the main thread
    /// Ctrl-C ends the wait, as in ``Director.close``, in either phase: the
    /// close goes on in the background, its result lost.
    #[pyo3(signature = (timeout=5.0))]
    fn close(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = crate::args::timeout)] timeout: f64,
    ) -> PyResult<u64> {
        let timeout = seconds("timeout", timeout)?;
        if chronica::mq::in_host_call() {
            return Err(ReentrantError::new_err(
                "Distributed.close from inside a Python adapter's method would wait for that method",
            ));
        }
        // Refused before the fabric closes: a close the director would
        // refuse (from one of its callbacks), or a second close, must
        // change nothing (the async nodes' deadline included). The
        // director stays open through the fabric phase, hence `begun`.
        self.shared.director.check_close().map_py()?;
        if !self.shared.begun.begin() {
            return Err(to_py(Error::Closed));
        }
        // Let go with the GIL held again, on return (`closes.rs`), or by
        // the close's thread once over if Ctrl-C ended the wait (`waits.rs`).
        let closing = self.shared.closes.begin();
        self.shared.aio.begin_close(py, timeout);
        let s = self.shared.clone();
        // The fabric's phase first (publishing what is buffered, the
        // adapter's close), which may take the whole `timeout` and more: the
        // handlers ran only once the director was closing, so Ctrl-C did
        // nothing until that phase was over.
        let begun = || self.shared.fabric_closing.load(Ordering::Acquire);
        let (closed, _closing) = interruptible(py, begun, move || (s.close(timeout), closing))?;
        closed.map_mq()
    }

    /// Returns the instance itself; ``__exit__`` closes it.
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes the instance (if still open) with the default timeout.
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

    /// How many subscriptions a Python adapter has live (None for a URL),
    /// for the tests: each ended one used to stay until close.
    fn _adapter_subscriptions(&self) -> Option<usize> {
        self.shared.adapter_subs.as_ref().map(|s| s.lock().len())
    }

    fn __repr__(&self) -> String {
        format!(
            "<chronica.Distributed instance_id={:?} nodes={} closed={}>",
            self.shared.fabric.instance_id(),
            self.shared.director.nodes().len(),
            if self.shared.begun.get() { "True" } else { "False" }
        )
    }
}

impl Drop for PyDistributed {
    /// Garbage-collected while open: close so that in-flight callbacks can
    /// finish. The weakref's callback, which runs first, has normally
    /// closed it already.
    fn drop(&mut self) {
        self.shared.close_unreferenced();
    }
}

/// Adds `Distributed`, `DistributedStats`, `BrokerError` and the atexit
/// helper to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDistributed>()?;
    m.add_class::<PyDistributedStats>()?;
    m.add("BrokerError", m.py().get_type::<BrokerError>())?;
    m.add_function(wrap_pyfunction!(_close_all_distributed, m)?)?;
    Ok(())
}
