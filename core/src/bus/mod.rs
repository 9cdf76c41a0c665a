//! The EventBus facade: topic-centred `on` / `off` / `emit` / `close` over a
//! [`Director`], with typed payloads through a [`Serializer`].
//!
//! Each subscription is a node registered on the director under a uid
//! `bus.sub.<n>` (`n` unique in the process, so several buses can share one
//! director, with plain nodes too). The bus owns only its list of
//! subscriptions (see `list`, whose list and protocol the Python
//! binding's bus uses too); delivery, ordering, groups and retries are the
//! engine's. A bus built from a [`DirectorBuilder`] owns its director and
//! closes it on `close`; a bus given a director closes only its own
//! subscriptions.

mod decode;
mod dispatch;
mod ending;
mod list;
mod options;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

pub use self::decode::{decode, DecodeError, EventExt};
use self::dispatch::{in_handler_of, BatchFn, Dispatch, Handler};
#[doc(hidden)]
pub use self::list::{ListEntry, Listing, SubscriptionList, Taken};
pub use self::options::{DeadLetterHandler, Retry, SubscribeOptions};
use crate::director::Registration;
use crate::event::{Event, Message};
use crate::node::{Node, Refused, SendResult};
use crate::serializer::{Json, Serializer};
use crate::{Director, DirectorBuilder, Error, NodeStats, Result};

/// A shared handler of one event, the form [`EventBus::on_shared`] takes.
pub type EventHandler = Arc<dyn Fn(&Event) -> SendResult + Send + Sync>;

/// How long `off` and `close` wait for a subscription to drain by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the bus lists with a subscription besides its uid and
/// registration: its topic and group.
pub(crate) type Listed = (String, Option<String>);

/// Subscription numbers, unique in the process.
static NEXT_SUBSCRIPTION: AtomicU64 = AtomicU64::new(1);

/// A live subscription made by [`EventBus::on`]; give it to
/// [`EventBus::off`] to end it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    id: u64,
    uid: String,
    /// Which registration of `uid` is this subscription's node: the bus
    /// ends and reads only that node, whatever holds the uid now.
    registration: Registration,
    topic: String,
    group: Option<String>,
}

impl Subscription {
    /// The uid of the node behind the subscription (`bus.sub.<n>`).
    pub fn uid(&self) -> &str {
        &self.uid
    }
    /// The topic pattern subscribed to.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// The consumer group, if any.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }
}

/// The topic-centred facade over a director. Thread-safe; share it by
/// reference or `Arc`. See the module documentation.
#[derive(Debug)]
pub struct EventBus<S: Serializer = Json> {
    director: Director,
    serializer: S,
    owned: bool,
    /// Every subscription from its `on` until its node is gone, oldest
    /// first. Each subscription's node holds it weakly and unlists itself
    /// when dropped, whatever ended it: `off`, a close, or an unregister
    /// of its uid straight on the director. So a long-lived bus keeps no
    /// entry for a subscription ended behind its back. An entry can
    /// outlive its node's registration, though: an unregister that does
    /// not wait (`unregister_no_wait`, or one from inside a callback)
    /// leaves the node alive until its running handler returns, and its
    /// uid free to register meanwhile. So `off`, `close` and `stats` act
    /// on the uid only while it is still the subscription's own
    /// registration (`Director::unregister_registration`,
    /// `Director::stats_of`), never on a node that took the uid since.
    /// It holds `closed` too, set by `close` under the lock that the
    /// admission of a subscription takes (see `subscribe`).
    subscriptions: Arc<SubscriptionList<Listed>>,
}

impl EventBus<Json> {
    /// A JSON bus over a director it shares with its other users;
    /// `close` then ends only this bus's subscriptions.
    pub fn new(director: Director) -> Self {
        Self::make(director, Json, false)
    }

    /// A JSON bus over a new director of its own built from `builder`;
    /// `close` closes that director.
    pub fn from_builder(builder: DirectorBuilder) -> Result<Self> {
        Ok(Self::owning(builder.build()?))
    }

    /// A JSON bus that takes charge of `director`: `close` closes it (other
    /// handles to it stay valid and see it closed).
    pub fn owning(director: Director) -> Self {
        Self::make(director, Json, true)
    }
}

impl<S: Serializer> EventBus<S> {
    fn make(director: Director, serializer: S, owned: bool) -> Self {
        Self { director, serializer, owned, subscriptions: Arc::default() }
    }

    /// The same bus with another serializer (call before subscribing).
    pub fn with_serializer<T: Serializer>(mut self, serializer: T) -> EventBus<T> {
        // The list itself moves (closed or not): the subscriptions' nodes
        // hold it.
        let subs = std::mem::take(&mut self.subscriptions);
        let mut bus = EventBus::make(self.director.clone(), serializer, self.owned);
        bus.subscriptions = subs;
        // The subscriptions now belong to `bus`: the old value's drop must
        // not end them (its new list is empty).
        let _ = self.subscriptions.close(|_| false);
        bus
    }

    /// The director underneath (to register plain nodes, read stats, ...).
    pub fn director(&self) -> &Director {
        &self.director
    }

    /// The serializer `emit_value` and [`EventBus::decode`] use.
    pub fn serializer(&self) -> &S {
        &self.serializer
    }

    fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Subscribes `handler` to `topic` (a pattern: `*` one segment, `>` the
    /// rest). The handler receives one event per call, on the
    /// subscription's own threads; `Err` retries that event by the retry
    /// policy, without handing earlier events of the same batch again.
    /// Refused, registering nothing, when an option is invalid, and with
    /// `Closed` once the bus is closed. Once subscribed, the handler and the
    /// dead-letter handler are dropped by the `off`, unregister or close
    /// that ends the subscription, before it returns (called from inside a
    /// callback, that call does not wait: they are dropped once the running
    /// handler has returned).
    ///
    /// An `on` racing [`EventBus::close`] either registers its node before
    /// the close ends the bus's subscriptions, and the close ends it too
    /// (`on` then succeeds with a subscription that has already ended, as
    /// when an unregister of its uid races it), or is refused with
    /// `Closed`, having registered nothing and called nothing.
    pub fn on<F>(&self, topic: &str, handler: F, options: SubscribeOptions) -> Result<Subscription>
    where
        F: Fn(&Event) -> SendResult + Send + Sync + 'static,
    {
        let handler: EventHandler = Arc::new(handler);
        self.subscribe(topic, handler, options).map_err(|(e, _)| e)
    }

    /// Subscribes a shared handler (the form the C layer uses), as
    /// [`EventBus::on`] does. Pass the only strong reference: once
    /// subscribed, the handler is dropped when the subscription's node is
    /// done with it, inside the `off`, unregister or close that ends it,
    /// which a reference kept by the caller would delay past their return
    /// (even when that call races this one). A refusal hands the handler
    /// back untouched and never called ([`Refused`]); the dead-letter
    /// handler of `options` is dropped then.
    pub fn on_shared(
        &self,
        topic: &str,
        handler: EventHandler,
        options: SubscribeOptions,
    ) -> Result<Subscription, Refused<Error, EventHandler>> {
        self.subscribe(topic, handler, options).map_err(|(error, node)| Refused { error, node })
    }

    /// Like [`EventBus::on`], but the handler receives the engine's batches
    /// (1 to `batch_size` events, oldest first); `Err` retries the batch.
    pub fn on_batch<F>(&self, topic: &str, handler: F, options: SubscribeOptions) -> Result<Subscription>
    where
        F: Fn(&[Arc<Event>]) -> SendResult + Send + Sync + 'static,
    {
        let handler: Arc<BatchFn> = Arc::new(handler);
        self.subscribe(topic, handler, options).map_err(|(e, _)| e)
    }

    /// Registers the subscription's node. The engine gets the only strong
    /// reference to the node, which owns the handlers (see `Dispatch`):
    /// a reference kept here would keep them alive past an unregister or
    /// close of the node that completes while this call is still returning
    /// (say, while the registration runs a drop hook). A refusal hands the
    /// handler back, never called.
    ///
    /// A close must end every subscription registered before it returns.
    /// It cannot wait for an `on` in progress (whose registration may run
    /// a drop hook, which may wait for the closing thread), and the check
    /// of `closed` at the start of this call does not stop one that
    /// passed it. So the subscription's entry is listed first, not yet
    /// admitted, and the director admits the node
    /// (`SubscriptionList::admit`) under its membership lock, after its own
    /// checks and before it changes anything: a close that came first
    /// makes it refuse the registration (`Closed`, nothing registered);
    /// otherwise the close finds the entry admitted and ends the node,
    /// which the director has routed by the time any unregister takes that
    /// lock.
    fn subscribe<H: Handler>(
        &self,
        topic: &str,
        handler: H,
        options: SubscribeOptions,
    ) -> Result<Subscription, (Error, H)> {
        if let Err(e) = self.check_open() {
            return Err((e, handler));
        }
        let mut node_opts = match options.node_options(topic) {
            Ok(opts) => opts,
            Err(e) => return Err((e, handler)),
        };
        let SubscribeOptions { group, dead_letter, .. } = options;
        let id = NEXT_SUBSCRIPTION.fetch_add(1, Ordering::Relaxed);
        let listing = SubscriptionList::listing(&self.subscriptions, id);
        let dispatch = Arc::new(Dispatch::new(id, handler, dead_letter, listing));
        let ours = Arc::downgrade(&dispatch);
        node_opts.on_dead_letter = Dispatch::hook(&dispatch);
        let mut node: Arc<dyn Node> = dispatch;
        let sub = Subscription {
            id,
            uid: String::new(),
            registration: Registration::default(),
            topic: topic.to_owned(),
            group,
        };
        self.subscriptions.join(id, (sub.topic.clone(), sub.group.clone()));
        // The uid's number: the id, unless a plain node holds that uid (the
        // node keeps its id, which `in_handler_of` knows it by).
        let mut n = id;
        let admitted = std::cell::Cell::new(Registration::default());
        loop {
            let uid = format!("bus.sub.{n}");
            let admit = |registration| {
                admitted.set(registration);
                self.subscriptions.admit(id, &uid, registration)
            };
            match self.director.register_admitted(&uid, node, node_opts.clone(), Some(&admit)) {
                Ok(()) => return Ok(Subscription { uid, registration: admitted.get(), ..sub }),
                // A plain node took this uid: take the next number.
                Err(Refused { error: Error::DuplicateNode(_), node: back }) => {
                    node = back;
                    n = NEXT_SUBSCRIPTION.fetch_add(1, Ordering::Relaxed);
                }
                Err(Refused { error, node: back }) => {
                    self.subscriptions.remove(id);
                    return Err((error, Dispatch::handed_back(back, &ours)));
                }
            }
        }
    }

    /// Ends a subscription after draining it for at most
    /// [`DEFAULT_DRAIN_TIMEOUT`]; see [`EventBus::off_within`].
    pub fn off(&self, subscription: &Subscription) -> Result<NodeStats> {
        self.off_within(subscription, DEFAULT_DRAIN_TIMEOUT)
    }

    /// Ends a subscription with the director's draining unregister: its
    /// node leaves the routes at once, so that nothing emitted from then on
    /// reaches it (the other subscribers, another member of its group
    /// included, get it as if it had never subscribed), then delivers what
    /// it holds until none is left or `timeout` passes, and is dropped.
    /// Events still pending then go to another member of its group, else
    /// they are dropped and reported to the director's drop hook: nothing
    /// accepted is lost silently. Returns the node's final counters, in
    /// which those events count as dropped and nothing is pending. From
    /// inside the subscription's own handler it neither drains nor waits
    /// (the node stops after that call); from inside another callback of
    /// the director it does not wait (the drain goes on, still bounded)
    /// and returns the counters of the moment.
    ///
    /// `Closed` once the bus or its director is closed (which ended the
    /// subscription). Racing the bus's [`close`](Self::close), either this
    /// call ends the subscription, as above, or the close does and this
    /// call returns `Closed` once it has: in both cases the subscription's
    /// handlers have been dropped when it returns (except from inside a
    /// callback of the director, which cannot wait for them: see
    /// [`Director::unregister`]). A close of the bus that finds this call
    /// draining cuts the drain short at the close's own deadline, also
    /// when it comes just as the drain starts.
    ///
    /// A close of the director that begins once this call has taken the
    /// subscription ends its node in this call's stead (draining it within
    /// the close's deadline): the call then returns, once the node is
    /// gone, its final counters, as when it ends the subscription itself.
    /// It used to return `Closed` then, as if the subscription had ended
    /// before the call.
    ///
    /// `UnknownNode` (changing nothing) when the subscription has already
    /// ended: by an earlier `off`, or by an unregister of its uid straight
    /// on the director. Its handlers have been dropped then (or are, once
    /// their running call returns, when that unregister did not wait), and
    /// the bus no longer lists it, so there is nothing left to clean up; a
    /// caller that only wants it gone may take this error as done. (Its
    /// last counters went with its node: there are none to return.)
    pub fn off_within(&self, subscription: &Subscription, timeout: Duration) -> Result<NodeStats> {
        let (id, uid) = (subscription.id, subscription.uid());
        match self.subscriptions.off(&self.director, id, uid, timeout, !in_handler_of(id)) {
            Err(Error::UnknownNode(_)) => Err(self.ended(subscription)),
            ended => ended,
        }
    }

    /// Why a subscription that this call does not end is no longer there.
    fn ended(&self, subscription: &Subscription) -> Error {
        if self.is_closed() || self.director.is_closed() {
            Error::Closed
        } else {
            Error::UnknownNode(subscription.uid().to_owned())
        }
    }

    /// The current counters of a subscription's node; after a close of
    /// the director, its final counters. `UnknownNode` once an `off` or an
    /// unregister of its uid has ended it (even when a plain node has
    /// taken that uid since, before or after a close of the director:
    /// only the subscription's own node is ever read).
    pub fn stats(&self, subscription: &Subscription) -> Result<NodeStats> {
        let Subscription { id, ref uid, registration, .. } = *subscription;
        self.subscriptions.stats(&self.director, id, uid, registration)
    }

    /// The live subscriptions, oldest first.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.subscriptions.live(|e| Subscription {
            id: e.id,
            uid: e.uid.clone(),
            registration: e.registration,
            topic: e.payload.0.clone(),
            group: e.payload.1.clone(),
        })
    }

    /// Emits raw payload bytes on `topic` (no content type). Returns the
    /// event id.
    pub fn emit(&self, topic: &str, payload: impl Into<Bytes>) -> Result<u64> {
        self.emit_message(Message::new(topic, payload))
    }

    /// Emits a prepared message (key, content type, source).
    pub fn emit_message(&self, message: Message<'_>) -> Result<u64> {
        self.check_open()?;
        self.director.emit(message)
    }

    /// Serializes `value` with the bus's serializer and emits it, labelled
    /// with the serializer's content type.
    pub fn emit_value<T: Serialize + ?Sized>(&self, topic: &str, value: &T) -> Result<u64> {
        self.emit_message(self.message(topic, value)?)
    }

    /// Like [`EventBus::emit_value`] with an ordering / partition key.
    pub fn emit_value_keyed<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        key: impl Into<Bytes>,
        value: &T,
    ) -> Result<u64> {
        self.emit_message(self.message(topic, value)?.key(key))
    }

    fn message<'t, T: Serialize + ?Sized>(&self, topic: &'t str, value: &T) -> Result<Message<'t>> {
        let ct = self.serializer.content_type();
        let bytes = self.serializer.encode(value).map_err(|e| {
            Error::InvalidArgument(format!(
                "cannot encode {} as {ct} for topic {topic:?}: {e}",
                std::any::type_name::<T>()
            ))
        })?;
        Ok(Message::new(topic, bytes).content_type(ct))
    }

    /// Decodes an event with the bus's serializer (checking its content type).
    pub fn decode<T: serde::de::DeserializeOwned>(&self, event: &Event) -> Result<T, DecodeError> {
        decode(event, &self.serializer)
    }

    /// Closes the bus: new calls are refused with `Closed`. A bus that owns
    /// its director closes it (draining until `timeout`); a bus sharing one
    /// ends its own subscriptions, each drained within what is left of
    /// `timeout`. Returns the events left undelivered. `Closed` when already
    /// closed; `Reentrant`, changing nothing, from inside one of this bus's
    /// handlers (the handler would end its own subscription under itself,
    /// and a host freeing the bus there would free what is running).
    ///
    /// No subscription of the bus is left registered when it returns: an
    /// `on` racing it is either ended by it or refused (see
    /// [`EventBus::on`]), and one that an `off` is ending is waited for
    /// (except from inside a callback of the director, which cannot wait
    /// for it). It does not wait for such an `on` to return. Such an
    /// `off` drains no longer than this close's `timeout`: the close used
    /// to wait for the `off`'s drain, bounded only by the `off`'s timeout.
    /// On a bus sharing its director, what that `off` leaves is counted
    /// in the counters it returns, not in this call's result.
    pub fn close(&self, timeout: Duration) -> Result<u64> {
        // Under the lock that admissions take: from here on, an `on` not
        // admitted yet is refused, and one admitted is taken here.
        let taken = self.subscriptions.close(in_handler_of)?;
        let ids: Vec<u64> = taken.iter().map(|s| s.id).collect();
        if self.owned {
            // The director's close ends every node it has admitted (which
            // unlists them as they are dropped), those an `off` is ending
            // too.
            return match self.director.close(timeout) {
                Ok(n) => Ok(n),
                Err(e) => {
                    self.subscriptions.reopen(&ids);
                    Err(e)
                }
            };
        }
        self.subscriptions.end_all(&self.director, &taken, timeout, |id| !in_handler_of(id))
    }

    /// True once `close` has succeeded.
    pub fn is_closed(&self) -> bool {
        self.subscriptions.is_closed()
    }
}

/// The drain a dropped bus gives its subscriptions, in all.
const DROP_DRAIN: Duration = Duration::from_millis(500);

impl<S: Serializer> Drop for EventBus<S> {
    /// A bus sharing its director removes its subscriptions (with a short
    /// drain); an owned director closes when its last handle goes. Dropped
    /// inside one of its own handlers, which a close would wait for, it
    /// ends them on a thread of its own and returns at once (before, they
    /// stayed registered until the director closed).
    fn drop(&mut self) {
        if self.owned || self.is_closed() {
            return;
        }
        if let Err(Error::Reentrant) = self.close(DROP_DRAIN) {
            self.end_elsewhere();
        }
    }
}

impl<S: Serializer> EventBus<S> {
    /// Takes the subscriptions as `close` does, but for the thread's own
    /// handler, and ends them on a new thread, which holds no lock.
    /// Without a thread (the system refused one) they stay registered
    /// until the director closes.
    fn end_elsewhere(&self) {
        let Ok(taken) = self.subscriptions.close(|_| false) else { return };
        if taken.is_empty() {
            return;
        }
        let (list, director) = (Arc::clone(&self.subscriptions), self.director.clone());
        let _ = std::thread::Builder::new().name("chronica-bus-end".into()).spawn(move || {
            let _ = list.end_all(&director, &taken, DROP_DRAIN, |_| true);
        });
    }
}
