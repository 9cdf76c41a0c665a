//! Events as nodes receive them, and the batches that carry them.
//!
//! An [`Event`] is built once per `emit` and shared by reference count
//! between every receiving fiber: the payload is never copied per node.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;

/// Which lane an event travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// An application event (the user lane).
    User,
    /// A control event (the priority lane); its topic is its action.
    Root,
}

/// Root action sent first to every newly registered node.
pub const PULL_CURRENT_STATE: &str = "chronica.pull_current_state";
/// Root action telling a node how many of its events were dropped.
pub const LAGGED: &str = "chronica.lagged";
/// Root action announcing a new node (with `membership_events` on).
pub const NODE_JOINED: &str = "chronica.node_joined";
/// Root action announcing a departed node (with `membership_events` on).
pub const NODE_LEFT: &str = "chronica.node_left";

/// Host data the emitting layer attaches to an event and every receiving
/// node sees (the Python layer keeps the payload's `bytes` object here, so
/// all nodes share one object). The engine never looks inside.
pub type Extension = Arc<dyn Any + Send + Sync>;

/// One event as delivered to a node. Immutable and shared between fibers.
#[derive(Clone)]
pub struct Event {
    pub(crate) id: u64,
    pub(crate) kind: EventKind,
    pub(crate) topic: Arc<str>,
    pub(crate) source: Option<Arc<str>>,
    pub(crate) key: Option<Bytes>,
    pub(crate) payload: Bytes,
    pub(crate) trust_token: Option<Arc<str>>,
    pub(crate) timestamp_ms: i64,
    pub(crate) content_type: Option<Arc<str>>,
    pub(crate) extension: Option<Extension>,
}

/// Equality of the event's fields; the extension is not compared.
impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        (self.id, self.kind, &self.topic, &self.source, &self.key, &self.payload)
            == (o.id, o.kind, &o.topic, &o.source, &o.key, &o.payload)
            && (&self.trust_token, self.timestamp_ms, &self.content_type)
                == (&o.trust_token, o.timestamp_ms, &o.content_type)
    }
}

impl Eq for Event {}

impl Event {
    /// A bare user event with this id, for the engine's unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(id: u64) -> Arc<Event> {
        Arc::new(Event {
            id,
            kind: EventKind::User,
            topic: "".into(),
            source: None,
            key: None,
            payload: Bytes::new(),
            trust_token: None,
            timestamp_ms: 0,
            content_type: None,
            extension: None,
        })
    }

    /// Director-unique id, increasing in emit order.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// User or root.
    pub fn kind(&self) -> EventKind {
        self.kind
    }
    /// The topic (for a root event, its action). May be empty.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// The emitting node, if the event was emitted on behalf of one.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }
    /// The ordering / partition key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    /// The opaque payload bytes (shared, never copied per node).
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
    /// The director's trust token; present on root events only.
    pub fn trust_token(&self) -> Option<&str> {
        self.trust_token.as_deref()
    }
    /// Milliseconds since the Unix epoch at emit time.
    pub fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }
    /// The payload's content type as given by the emitter (for example
    /// `application/json`), so a consumer can detect a serializer mismatch.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }
    /// The host data attached by the emitting layer, if any.
    pub fn extension(&self) -> Option<&Extension> {
        self.extension.as_ref()
    }
    /// This event without its host extension: for a host layer that keeps
    /// its own view of the event inside the extension, which must then not
    /// hold the event itself (that would be a reference cycle).
    pub fn without_extension(&self) -> Event {
        Event { extension: None, ..self.clone() }
    }
    /// Whether releasing `event` is awaited: the distributed layer under
    /// `ack_mode = delivery` acknowledges an event's broker message once no
    /// node holds the event any more. A host layer that hands its users
    /// objects that may outlive the callback should then give them a copy
    /// (`Arc::new(Event::clone(event))`), not the shared event.
    pub fn release_awaited(event: &Arc<Event>) -> bool {
        Arc::weak_count(event) > 0
    }
    /// True for a root (control) event.
    pub fn is_root(&self) -> bool {
        self.kind == EventKind::Root
    }
    /// The root view of this event, or `None` for a user event.
    pub fn as_root(&self) -> Option<RootEvent<'_>> {
        self.is_root().then_some(RootEvent { event: self })
    }
    /// Decodes the payload as JSON into `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.payload)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("topic", &self.topic)
            .field("source", &self.source)
            .field("key", &self.key)
            .field("payload_len", &self.payload.len())
            .field("timestamp_ms", &self.timestamp_ms)
            .finish()
    }
}

/// A root (control) event seen through its control fields.
#[derive(Debug, Clone, Copy)]
pub struct RootEvent<'a> {
    event: &'a Event,
}

impl<'a> RootEvent<'a> {
    /// The control action, e.g. [`PULL_CURRENT_STATE`].
    pub fn action(&self) -> &'a str {
        &self.event.topic
    }
    /// The action's payload.
    pub fn payload(&self) -> &'a Bytes {
        &self.event.payload
    }
    /// The director's trust token.
    pub fn trust_token(&self) -> &'a str {
        self.event.trust_token.as_deref().unwrap_or("")
    }
    /// The underlying event.
    pub fn event(&self) -> &'a Event {
        self.event
    }
}

/// What one callback call receives: 1 to `batch_size` events of one lane,
/// in acceptance order. Dereferences to a slice of shared events.
#[derive(Debug, Clone)]
pub struct Batch {
    events: Events,
}

/// Where a batch's events live: a vector of its own, or a slice of a run
/// that `emit_many` stored in several lanes, borrowed where it lies so
/// that no node takes a reference per event.
#[derive(Debug, Clone)]
enum Events {
    Owned(Vec<Arc<Event>>),
    Shared { run: crate::fiber::inbox::Run, from: usize, to: usize },
}

impl Default for Batch {
    fn default() -> Self {
        Self::owned(Vec::new())
    }
}

impl Batch {
    /// The events of the batch, oldest first.
    pub fn events(&self) -> &[Arc<Event>] {
        match &self.events {
            Events::Owned(v) => v,
            Events::Shared { run, from, to } => &run[*from..*to],
        }
    }
    /// True when the batch holds root events (the priority lane).
    pub fn is_root(&self) -> bool {
        self.events().first().is_some_and(|e| e.is_root())
    }

    pub(crate) fn owned(events: Vec<Arc<Event>>) -> Self {
        Self { events: Events::Owned(events) }
    }

    /// Events `from..to` of `run`, in place.
    pub(crate) fn shared(run: crate::fiber::inbox::Run, from: usize, to: usize) -> Self {
        debug_assert!(from < to && to <= run.len());
        Self { events: Events::Shared { run, from, to } }
    }

    /// Drops the first `n` events (at most all of them).
    pub(crate) fn skip(&mut self, n: usize) {
        match &mut self.events {
            Events::Owned(v) => {
                v.drain(..n.min(v.len()));
            }
            Events::Shared { from, to, .. } => *from = (*from + n).min(*to),
        }
    }

    /// Takes the first event out (the batch must not be empty).
    pub(crate) fn take_first(&mut self) -> Arc<Event> {
        match &mut self.events {
            Events::Owned(v) => v.remove(0),
            Events::Shared { run, from, .. } => {
                *from += 1;
                run[*from - 1].clone()
            }
        }
    }

    /// The events as a vector of their own.
    pub(crate) fn into_vec(self) -> Vec<Arc<Event>> {
        match self.events {
            Events::Owned(v) => v,
            Events::Shared { run, from, to } => run[from..to].to_vec(),
        }
    }

    /// The vector of an owned batch (emptied, to reuse), or the run a
    /// shared one borrowed from.
    pub(crate) fn into_parts(self) -> Result<Vec<Arc<Event>>, crate::fiber::inbox::Run> {
        match self.events {
            Events::Owned(v) => Ok(v),
            Events::Shared { run, .. } => Err(run),
        }
    }
}

impl Deref for Batch {
    type Target = [Arc<Event>];
    fn deref(&self) -> &[Arc<Event>] {
        self.events()
    }
}

/// An application event to emit: topic, payload, and optional source and key.
///
/// The topic and source are borrowed when given as `&str` (and owned when
/// given as `String`): an emit copies neither, since the event keeps the
/// topic as a string shared with the emitting thread's previous event and
/// the source as the node's own uid.
#[derive(Clone, Default)]
pub struct Message<'a> {
    pub(crate) topic: Cow<'a, str>,
    pub(crate) payload: Bytes,
    pub(crate) source: Option<Cow<'a, str>>,
    pub(crate) key: Option<Bytes>,
    pub(crate) content_type: Option<Arc<str>>,
    pub(crate) extension: Option<Extension>,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("payload_len", &self.payload.len())
            .field("source", &self.source)
            .field("key", &self.key)
            .field("content_type", &self.content_type)
            .field("extension", &self.extension.is_some())
            .finish()
    }
}

impl<'a> Message<'a> {
    /// A message on `topic` (may be empty) carrying `payload`.
    pub fn new(topic: impl Into<Cow<'a, str>>, payload: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            source: None,
            key: None,
            content_type: None,
            extension: None,
        }
    }
    /// Emits on behalf of node `uid`: it is excluded from broadcast delivery.
    pub fn source(mut self, uid: impl Into<Cow<'a, str>>) -> Self {
        self.source = Some(uid.into());
        self
    }
    /// Labels the payload's encoding (for example `application/json`).
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into().into());
        self
    }
    /// Attaches host data every receiving node's event carries (see [`Extension`]).
    pub fn extension(mut self, extension: Extension) -> Self {
        self.extension = Some(extension);
        self
    }
    /// Sets the ordering / partition key (consumer groups hash it; with
    /// `concurrency > 1`, order holds per key).
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An emit copies neither its topic nor its source when they are
    /// borrowed, whatever their lifetime; owned strings are taken as they are.
    #[test]
    fn a_message_borrows_its_topic_and_source() {
        let topic = String::from("orders.created");
        let m = Message::new(topic.as_str(), Bytes::new()).source("svc");
        assert!(matches!(m.topic, Cow::Borrowed(t) if std::ptr::eq(t, topic.as_str())));
        assert!(matches!(m.source, Some(Cow::Borrowed("svc"))));
        let m = Message::new(topic.clone(), Bytes::new()).source(String::from("svc"));
        assert!(matches!(m.topic, Cow::Owned(ref t) if t == "orders.created"));
        assert!(matches!(m.source, Some(Cow::Owned(ref s)) if s == "svc"));
    }
}
