//! A broker adapter written in Python: any object with `publish`,
//! `subscribe`, `ack` and `close` methods, given to `chronica.Distributed`
//! in place of a URL.
//!
//! The contract (the Python face of `chronica::mq::MqAdapter`):
//!
//! * `publish(topic, value, key, headers)`: `value` bytes, `key` bytes or
//!   None, `headers` a list of `(name, value)` str pairs; a `publish` that
//!   takes a `timestamp_ms` keyword (or `**kwargs`) gets the message's
//!   timestamp too (ms since the Unix epoch, or None). Return once the
//!   broker took the message; raise to have it retried.
//! * `subscribe(pattern, group, deliver)`: start delivering the messages of
//!   the topics matching `pattern` to `deliver(topic, value, key, headers,
//!   token, timestamp_ms)`, from any thread, each message to one subscriber
//!   of `group`. `token` is any object; it comes back in `ack`. `deliver`
//!   never blocks: it raises QueueFullError, taking nothing, while
//!   `MQ_SUBSCRIPTION_CAPACITY` messages of the subscription wait unread,
//!   as the C adapter's deliver answers `CHRONICA_ERR_QUEUE_FULL`.
//! * `ack(token)`: the message was handled.
//! * `release(token)`, optional: the message was not handled and will not
//!   be: the layer is leaving the subscription's group (its last local
//!   member unregistered). Give it to another subscriber of the group and
//!   stop delivering to this one (`deliver` raises ClosedError from now or
//!   soon). Every message delivered and not acked is released once, those
//!   the layer had not read yet shortly after the others. Without the
//!   method a released message waits for the broker's own redelivery.
//! * `close()`: stop delivering; `deliver` raises ClosedError afterwards.
//!
//! Python methods run on the distributed layer's blocking threads with the
//! GIL held; an exception becomes a broker error (counted, retried).
//! `Distributed.close` from inside one of them raises ReentrantError: it
//! would wait for the very method it is called from.
//!
//! The object and the tokens `deliver` takes are held by the instance's
//! table of Python objects (`held.rs`), which `Distributed.__traverse__`
//! shows the cycle collector: an adapter (or a token) that references its
//! `Distributed` makes a cycle that is collected, the instance closing
//! itself (the object's `close` included) before anything is cleared
//! (`collected.rs`). Once the collector has emptied the table, which it
//! does only after that close, a call finds no object and fails with
//! ClosedError.

use std::sync::Arc;

use chronica::mq::{
    AckToken, BoxFuture, CallGate, ChannelStream, Message, MessageStream, MqAdapter, MqError, MqResult,
    SUBSCRIPTION_CAPACITY,
};
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyList, PyString, PyTuple};
use tokio::sync::mpsc;

use crate::callable::describe;
use crate::errors::{ClosedError, QueueFullError};
use crate::exiting;
use crate::held::{Held, HeldRef};
use crate::payload::py_bytes;

/// A subscription's sender, shared by its `deliver` and the adapter.
type Slot = Arc<Mutex<Option<mpsc::Sender<Message>>>>;

/// The live subscriptions' slots of one adapter.
pub(crate) type Subs = Arc<Mutex<Vec<Slot>>>;

/// The Python adapter object, shared by the layer's tasks.
#[derive(Debug)]
pub(crate) struct PyAdapter {
    obj: Arc<HeldRef>,
    /// The instance's table, which holds the object and the tokens.
    held: Arc<Held>,
    /// Whether the object has the optional `release` method.
    releases: bool,
    /// Whether its `publish` takes the message's `timestamp_ms` (by that
    /// keyword, or `**kwargs`); the four-argument form stays valid.
    stamps: bool,
    /// No release reaches the object during or after its `close`.
    gate: Arc<CallGate>,
    /// The live subscriptions' senders, emptied at close (streams end).
    /// A stream that ends takes its own out ([`Ended`]).
    subs: Subs,
}

impl PyAdapter {
    /// Wraps `obj` after checking it has the four methods; `held`, the
    /// table of its instance, holds it and its tokens. The lookups are
    /// Python code when the object computes its methods (a `__getattr__`
    /// or a property of its own), run on the constructing thread, a daemon
    /// one maybe, when the interpreter exits: through `exiting.rs` (the
    /// process aborted; `test_shutdown.py`).
    pub(crate) fn new(obj: &Bound<'_, PyAny>, held: &Arc<Held>) -> PyResult<Self> {
        let callable = |m| Ok::<_, PyErr>(exiting::getattr_opt(obj, m)?.filter(|f| f.is_callable()));
        let missing = |m| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "an adapter needs callable publish, subscribe, ack and close methods; {m} is missing"
            ))
        };
        let publish = callable("publish")?.ok_or_else(|| missing("publish"))?;
        for m in ["subscribe", "ack", "close"] {
            callable(m)?.ok_or_else(|| missing(m))?;
        }
        let releases = callable("release")?.is_some();
        let stamps = takes_keyword(&publish, "timestamp_ms")?;
        Ok(Self {
            obj: Arc::new(held.hold(obj.py(), obj.clone().unbind())),
            held: held.clone(),
            releases,
            stamps,
            gate: Arc::default(),
            subs: Arc::default(),
        })
    }

    /// Its live subscriptions' slots, for `Distributed._adapter_subscriptions`.
    pub(crate) fn subs(&self) -> Subs {
        self.subs.clone()
    }
}

/// Owned by a subscription's stream: when the stream drops (the layer
/// left the group, or closed), takes the slot out of the adapter's list
/// and lets go of the sender, so that neither the slot nor the channel
/// outlives the subscription (they did, about 5 KB each, until close).
/// `deliver` then raises ClosedError, as it did once the stream was gone.
struct Ended {
    slot: Slot,
    subs: Subs,
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.slot.lock().take();
        self.subs.lock().retain(|s| !Arc::ptr_eq(s, &self.slot));
    }
}

/// The object (or token) `held` refers to, or ClosedError once the table
/// has let go of it: the instance was collected, after its close.
fn bound<'py>(py: Python<'py>, held: &HeldRef) -> PyResult<Bound<'py, PyAny>> {
    held.get(py).ok_or_else(|| ClosedError::new_err("the Distributed was garbage-collected"))
}

/// Method `name` of the object `held` refers to. The method and its
/// lookup (a `__getattr__` of the object's own) are Python code, run on a
/// blocking thread of the layer that CPython may end at exit, so both go
/// through `exiting.rs`: a `Distributed.close` that gives up on a method
/// still running leaves it running into finalisation, and the thread's
/// forced unwind aborted the process (`test_shutdown.py`).
fn method<'py>(py: Python<'py>, held: &HeldRef, name: &str) -> PyResult<Bound<'py, PyAny>> {
    exiting::getattr(&bound(py, held)?, name)
}

/// Runs `f` with the GIL on a blocking thread; a Python exception becomes
/// a broker error.
async fn call<T: Send + 'static>(
    what: &'static str,
    f: impl for<'py> FnOnce(Python<'py>) -> PyResult<T> + Send + 'static,
) -> MqResult<T> {
    off_runtime(what, move || {
        let _inside = chronica::mq::HostCall::enter();
        Python::try_attach(|py| f(py).map_err(|e| MqError::Broker(format!("{what}: {}", describe(py, &e)))))
            .unwrap_or_else(|| Err(MqError::Closed))
    })
    .await
}

/// Whether `f` takes keyword argument `name`, by name or through
/// `**kwargs`. A callable `inspect` cannot read (some builtins) is taken
/// not to.
fn takes_keyword(f: &Bound<'_, PyAny>, name: &str) -> PyResult<bool> {
    // `inspect` is Python code, `parameters` and `kind` Python properties.
    use crate::exiting::{call1, getattr};
    let inspect = f.py().import("inspect")?;
    let Ok(signature) = call1(&inspect.getattr("signature")?, (f,)) else { return Ok(false) };
    let params = getattr(&signature, "parameters")?;
    if params.contains(name)? {
        return Ok(true);
    }
    let var_keyword = inspect.getattr("Parameter")?.getattr("VAR_KEYWORD")?;
    for p in params.call_method0("values")?.try_iter()? {
        if getattr(&p?, "kind")?.eq(&var_keyword)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Runs `f` on a blocking thread, off the runtime's workers (Python may
/// wait for the GIL there); a failed join is a broker error.
async fn off_runtime<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> MqResult<T> + Send + 'static,
) -> MqResult<T> {
    let out = tokio::task::spawn_blocking(f).await;
    out.unwrap_or_else(|e| Err(MqError::Broker(format!("{what}: {e}"))))
}

impl MqAdapter for PyAdapter {
    fn name(&self) -> &str {
        "python"
    }

    fn publish<'a>(&'a self, topic: &'a str, message: Message) -> BoxFuture<'a, MqResult<()>> {
        chronica::mq::publish_one(self, topic, message)
    }

    /// One blocking call, holding the GIL once, publishes the whole batch
    /// in order.
    fn publish_batch<'a>(
        &'a self,
        topic: &'a str,
        messages: Vec<Message>,
    ) -> BoxFuture<'a, Vec<MqResult<()>>> {
        let (obj, stamps) = (self.obj.clone(), self.stamps);
        let topic = topic.to_owned();
        let n = messages.len();
        Box::pin(async move {
            let out = call("publish", move |py| {
                let publish = method(py, &obj, "publish")?;
                let one = |m: &Message| -> PyResult<()> {
                    let key = m.key.as_ref().map(|k| py_bytes(py, k)).transpose()?;
                    let headers = PyList::new(py, m.headers.iter().map(|(k, v)| (&**k, v.as_str())))?;
                    let args = (topic.as_str(), py_bytes(py, &m.value)?, key, headers).into_pyobject(py)?;
                    let kwargs =
                        stamps.then(|| [("timestamp_ms", m.timestamp_ms)].into_py_dict(py)).transpose()?;
                    exiting::call(&publish, &args, kwargs.as_ref()).map(drop)
                };
                // A ValueError says the message can never be published as
                // it is (too large, bytes the broker cannot carry): not
                // retried, counted and dead-lettered. Anything else is
                // taken as the broker being away, and retried.
                let broker = |e: PyErr| {
                    let why = format!("publish: {}", describe(py, &e));
                    if e.is_instance_of::<pyo3::exceptions::PyValueError>(py) {
                        MqError::Rejected(why)
                    } else {
                        MqError::Broker(why)
                    }
                };
                Ok(messages.iter().map(|m| one(m).map_err(broker)).collect::<Vec<_>>())
            })
            .await;
            out.unwrap_or_else(|e| vec![Err(e); n])
        })
    }

    fn subscribe<'a>(&'a self, pattern: &'a str, group: &'a str) -> BoxFuture<'a, MqResult<MessageStream>> {
        let obj = self.obj.clone();
        let (releases, obj_r, gate) = (self.releases, self.obj.clone(), self.gate.clone());
        let (pattern, group) = (pattern.to_owned(), group.to_owned());
        let (subs, held) = (self.subs.clone(), self.held.clone());
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(SUBSCRIPTION_CAPACITY);
            let slot: Slot = Arc::new(Mutex::new(Some(tx)));
            let deliver = Deliver { tx: slot.clone(), held };
            let subscribed = call("subscribe", move |py| {
                let deliver = Bound::new(py, deliver)?;
                exiting::call1(&method(py, &obj, "subscribe")?, (pattern, group, deliver)).map(drop)
            })
            .await;
            if let Err(e) = subscribed {
                // The object may keep `deliver`: not the channel.
                slot.lock().take();
                return Err(e);
            }
            subs.lock().push(slot.clone());
            let ended = Ended { slot, subs };
            // Unread messages go back through the object's `release`. The
            // closure drops with the stream, `ended` with it.
            let unread = move |left: Vec<Message>| {
                let _ended = ended;
                if releases {
                    let tokens: Vec<Arc<HeldRef>> = left.iter().filter_map(token_of).collect();
                    drop(release_all(&gate, &obj_r, &tokens));
                }
            };
            Ok(Box::pin(ChannelStream::bounded(rx, unread)) as MessageStream)
        })
    }

    fn ack<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, MqResult<()>> {
        let obj = self.obj.clone();
        let token = token_of(message);
        Box::pin(async move {
            let Some(token) = token else { return Ok(()) };
            call("ack", move |py| exiting::call1(&method(py, &obj, "ack")?, (bound(py, &token)?,)).map(drop))
                .await
        })
    }

    /// One blocking call, holding the GIL once, acknowledges the whole
    /// read in order; the error is the first failure.
    fn ack_batch<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, MqResult<()>> {
        let obj = self.obj.clone();
        let tokens: Vec<Arc<HeldRef>> = messages.iter().filter_map(token_of).collect();
        Box::pin(async move {
            if tokens.is_empty() {
                return Ok(());
            }
            call("ack", move |py| call_each(py, &obj, "ack", &tokens)).await
        })
    }

    /// One blocking call, holding the GIL once, releases the whole read in
    /// order (when the object has `release`).
    fn release<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, MqResult<()>> {
        let (obj, gate) = (self.obj.clone(), self.gate.clone());
        let tokens: Vec<Arc<HeldRef>> = messages.iter().filter_map(token_of).collect();
        let releases = self.releases;
        Box::pin(async move {
            if tokens.is_empty() || !releases {
                return Ok(());
            }
            off_runtime("release", move || release_all(&gate, &obj, &tokens)).await
        })
    }

    fn close(&self) -> BoxFuture<'_, MqResult<()>> {
        let (obj, gate) = (self.obj.clone(), self.gate.clone());
        for slot in self.subs.lock().drain(..) {
            slot.lock().take();
        }
        Box::pin(async move {
            // Waits for releases in progress (off the runtime's threads);
            // a second close waits for the first to get past them.
            let _ = tokio::task::spawn_blocking(move || {
                if gate.begin_close() {
                    gate.finish_close();
                } else {
                    gate.wait_closed();
                }
            })
            .await;
            call("close", move |py| exiting::call1(&method(py, &obj, "close")?, ()).map(drop)).await
        })
    }
}

/// The ack token a Python adapter handed to `deliver`, held by the
/// instance's table.
#[derive(Debug)]
struct Token(Arc<HeldRef>);

fn token_of(m: &Message) -> Option<Arc<HeldRef>> {
    m.ack.as_ref().and_then(|t| t.get::<Token>()).map(|t| t.0.clone())
}

/// Calls the object's `release` for each token, unless its `close` has
/// started (which then waits for this). Not while the interpreter
/// finalises (the tokens then leak, as every held object does then).
fn release_all(gate: &CallGate, obj: &HeldRef, tokens: &[Arc<HeldRef>]) -> MqResult<()> {
    let _call = gate.enter()?;
    Python::try_attach(|py| {
        call_each(py, obj, "release", tokens)
            .map_err(|e| MqError::Broker(format!("release: {}", describe(py, &e))))
    })
    .unwrap_or(Err(MqError::Closed))
}

/// Calls `obj.method(token)` for each token in order; the error is the
/// first failure (the others are still called).
fn call_each(py: Python<'_>, obj: &HeldRef, method: &str, tokens: &[Arc<HeldRef>]) -> PyResult<()> {
    let f = self::method(py, obj, method)?;
    let mut first = Ok(());
    for t in tokens {
        if let Err(e) = bound(py, t).and_then(|t| exiting::call1(&f, (t,))) {
            first = first.and(Err(e));
        }
    }
    first
}

/// `deliver`'s `headers` (`from_py_with`): None, or a sequence of `(name,
/// value)` str pairs, which pyo3 converts. A plain list or tuple runs no
/// Python code then; another sequence's `__iter__` and `__next__` may, on
/// the client's thread, a daemon one maybe, when the interpreter exits:
/// they are called through `exiting.rs` (the process aborted;
/// `test_shutdown.py`), and pyo3 converts the items.
fn headers(obj: &Bound<'_, PyAny>) -> PyResult<Option<Vec<(String, String)>>> {
    if obj.is_none() {
        return Ok(None);
    }
    // SAFETY: a live object, the GIL held. `PySequence_Check` reads the
    // type's slots, and runs no Python code.
    let sequence = unsafe { pyo3::ffi::PySequence_Check(obj.as_ptr()) } != 0;
    let plain = obj.is_exact_instance_of::<PyList>() || obj.is_exact_instance_of::<PyTuple>();
    if plain || !sequence || obj.is_instance_of::<PyString>() {
        // Taken, or refused with pyo3's own error, before any Python code.
        return obj.extract().map(Some);
    }
    exiting::iterate(obj)?.map(|item| item?.extract()).collect::<PyResult<_>>().map(Some)
}

/// The callable a Python adapter's `subscribe` receives: call it with
/// `(topic, value, key, headers, token, timestamp_ms)` for every message of
/// the subscription.
#[pyclass(frozen, module = "chronica", name = "_Deliver")]
#[derive(Debug)]
pub(crate) struct Deliver {
    tx: Slot,
    /// The instance's table, which holds the tokens.
    held: Arc<Held>,
}

#[pymethods]
impl Deliver {
    /// Hands one received message to the distributed layer, with the
    /// broker's timestamp (ms since the Unix epoch) if it has one; a
    /// negative one is none, as C's `deliver` reads it. Never
    /// blocks: raises QueueFullError, taking nothing, while
    /// `MQ_SUBSCRIPTION_CAPACITY` messages of the subscription wait unread
    /// (deliver it again later), and ClosedError once the subscription or
    /// the instance is closed.
    #[pyo3(signature = (topic, value, key=None, headers=None, token=None, timestamp_ms=None))]
    fn __call__(
        &self,
        topic: String,
        value: &Bound<'_, PyAny>,
        key: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = headers)] headers: Option<Vec<(String, String)>>,
        token: Option<Bound<'_, PyAny>>,
        #[pyo3(from_py_with = crate::args::timestamp_ms)] timestamp_ms: Option<i64>,
    ) -> PyResult<()> {
        let msg = Message {
            topic,
            key: key.filter(|k| !k.is_none()).map(crate::payload::key).transpose()?,
            value: crate::payload::payload(value)?,
            // The same adapter written in C or Python gives the same events.
            timestamp_ms: timestamp_ms.filter(|t| *t >= 0),
            headers: headers.unwrap_or_default().into_iter().map(|(k, v)| (k.into(), v)).collect(),
            ack: token.map(|t| AckToken::new(Token(Arc::new(self.held.hold(t.py(), t.unbind()))))),
        };
        let mut tx = self.tx.lock();
        let closed = || ClosedError::new_err("the subscription is closed");
        match tx.as_ref().ok_or_else(closed)?.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(QueueFullError::new_err(format!(
                "{SUBSCRIPTION_CAPACITY} messages of this subscription wait unread; deliver this one again later"
            ))),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                *tx = None;
                Err(closed())
            }
        }
    }
}
