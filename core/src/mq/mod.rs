//! The MQ adapter contract: how directors in many processes share events
//! through a broker (SPEC section 4).
//!
//! An adapter moves [`Message`]s: `publish(topic, message)`,
//! `subscribe(pattern, group) -> stream`, `ack(message)`, `close()`. Patterns
//! use Chronica's topic syntax (`*` one segment, `>` the rest); an adapter
//! that cannot express one says so with [`MqError::Unsupported`]. A
//! subscription's `group` is the broker's own consumer group: subscribers
//! that share it receive each message once between them.
//!
//! Built in: [`memory::MemoryAdapter`] (always), and behind cargo features
//! `kafka`, `nats` and `redis` the adapters of those brokers. [`connect`]
//! picks one from a URL and fails at once, with a clear error, on a bad URL,
//! an unreachable broker or a missing feature.
//!
//! Every async method is cancel-safe in the sense that dropping its future
//! loses at most the message it was handling (which the broker redelivers,
//! since it was not acked).

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

pub use crate::node::BoxFuture;

mod call_gate;
mod channel;
mod error;
mod host_call;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kafka")]
mod kafka_headers;
#[cfg(feature = "kafka")]
mod kafka_start;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
mod redis_entry;

pub use self::call_gate::{CallGate, GateCall};
pub use self::channel::{ChannelStream, SUBSCRIPTION_CAPACITY};
pub use self::error::{MqError, MqResult};
pub use self::host_call::{in_host_call, HostCall};

/// The stream a subscription yields. An `Err` item reports a transient
/// broker problem (the adapter keeps trying); the stream ends only on close.
pub type MessageStream = Pin<Box<dyn Stream<Item = MqResult<Message>> + Send>>;

/// What an adapter needs to acknowledge a received message. Adapters put
/// their own value in (an offset, a stream entry id, a reply subject) and
/// downcast it back in [`MqAdapter::ack`].
#[derive(Clone)]
pub struct AckToken(Arc<dyn Any + Send + Sync>);

impl AckToken {
    /// Wraps an adapter-specific value.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Self(Arc::new(value))
    }
    /// The value, if it is a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for AckToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AckToken")
    }
}

/// One broker message: the payload travels untouched as `value`; metadata
/// travels in `headers` (Kafka headers, NATS headers, Redis entry fields).
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// The broker topic (Kafka topic, NATS subject, Redis stream key).
    pub topic: String,
    /// The partition / ordering key, if any.
    pub key: Option<Bytes>,
    /// The payload bytes.
    pub value: Bytes,
    /// Milliseconds since the Unix epoch, when the broker gives one.
    pub timestamp_ms: Option<i64>,
    /// Header names and values, in order; names may repeat. Chronica's own
    /// names are static strings ([`header_name`]), so the metadata of a
    /// message costs no allocation per name.
    pub headers: Vec<(Cow<'static, str>, String)>,
    /// Set by the adapter on received messages; `ack` uses it.
    pub ack: Option<AckToken>,
}

impl Message {
    /// A message carrying `value`, with no key, timestamp or headers.
    pub fn new(value: impl Into<Bytes>) -> Self {
        Self { value: value.into(), ..Self::default() }
    }
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A header name for [`Message::headers`]: one of Chronica's own names as
/// its static string (no allocation), any other as an owned copy.
/// Adapters call it on the names they receive.
pub fn header_name(name: &str) -> Cow<'static, str> {
    match crate::distributed::wire::NAMES.iter().find(|n| **n == name) {
        Some(n) => Cow::Borrowed(n),
        None => Cow::Owned(name.to_owned()),
    }
}

/// The header an adapter puts, alone, on a received message it could not
/// read whole (a header its client library cannot decode, say): the
/// distributed layer counts such a message as malformed, dead-letters it
/// and acknowledges it, so the subscription moves past it. The value says
/// why. Build it with [`unreadable`].
pub const UNREADABLE_HEADER: &str = crate::distributed::wire::UNREADABLE;

/// The [`UNREADABLE_HEADER`] header, saying `why`, for
/// [`Message::headers`].
pub fn unreadable(why: impl Into<String>) -> (Cow<'static, str>, String) {
    (Cow::Borrowed(UNREADABLE_HEADER), why.into())
}

/// The adapter contract. Implementations are shared between tasks, so every
/// method takes `&self`; all of them are called on a tokio runtime.
pub trait MqAdapter: Send + Sync + fmt::Debug + 'static {
    /// A short name for errors and stats ("kafka", "memory", ...).
    fn name(&self) -> &str;
    /// Publishes `message` on `topic` (its `topic` field is ignored).
    /// Resolves once the broker has taken it (as durable as the broker's
    /// own acknowledgement makes it). A message the broker will never
    /// take is [`MqError::Rejected`]: the layer then drops it (counted and
    /// dead-lettered) instead of retrying it, which would hold back every
    /// later message; any other error is retried with backoff.
    fn publish<'a>(&'a self, topic: &'a str, message: Message) -> BoxFuture<'a, MqResult<()>>;
    /// Subscribes to the topics matching `pattern`. With a `group`, the
    /// subscribers sharing it receive each message once between them; the
    /// group starts at new messages when the broker first sees it.
    fn subscribe<'a>(&'a self, pattern: &'a str, group: &'a str) -> BoxFuture<'a, MqResult<MessageStream>>;
    /// Publishes `messages` on `topic`, handing them to the broker in
    /// order, and resolves with one result per message, in the same order,
    /// once the broker answered for all of them. Each result stands for its
    /// own message only: `Ok` means it went out, an error that it did not
    /// (the layer retries exactly those, or drops the
    /// [`MqError::Rejected`] ones), so one refused message must not fail
    /// the others of its batch. Adapters override it to
    /// give the client the whole batch at once (one pipeline, one flush);
    /// the default runs [`MqAdapter::publish`] for each in turn (running
    /// them concurrently could let a later one reach the broker first).
    fn publish_batch<'a>(
        &'a self,
        topic: &'a str,
        messages: Vec<Message>,
    ) -> BoxFuture<'a, Vec<MqResult<()>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(messages.len());
            for m in messages {
                results.push(self.publish(topic, m).await);
            }
            results
        })
    }
    /// Acknowledges a received message; unacked ones are redelivered.
    fn ack<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, MqResult<()>>;
    /// Acknowledges several received messages, in order; the error is the
    /// first failure (the others are still attempted). Adapters override
    /// it to acknowledge a read in one request; the default calls
    /// [`MqAdapter::ack`] for each.
    fn ack_batch<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, MqResult<()>> {
        Box::pin(async move {
            let mut first = Ok(());
            for m in messages {
                if let Err(e) = self.ack(m).await {
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
            first
        })
    }
    /// Hands back received messages this subscriber will not handle (it is
    /// leaving their group), so that the broker gives them to another
    /// member of the group. Dropping the subscription's stream ends the
    /// membership. The default does nothing: an unacknowledged message
    /// comes back when the broker's own timer or rebalance says so.
    fn release<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, MqResult<()>> {
        let _ = messages;
        Box::pin(async { Ok(()) })
    }
    /// Stops every subscription (their streams end) and releases the client.
    fn close(&self) -> BoxFuture<'_, MqResult<()>>;
}

/// The subscription stream of a reader task that sends what each read of
/// the broker brought as one item (one wake-up of the layer's reader per
/// read, not per message); the stream yields the messages one by one.
#[cfg(any(feature = "kafka", feature = "redis"))]
pub(crate) fn stream_of_reads(rx: tokio::sync::mpsc::Receiver<Vec<MqResult<Message>>>) -> MessageStream {
    use futures_util::{stream, StreamExt};
    let reads = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (stream::iter(r), rx)) });
    Box::pin(reads.flatten())
}

/// [`MqAdapter::publish`] for an adapter whose `publish_batch` does the
/// work: a batch of one. Such an adapter must override `publish_batch`
/// (the default one calls `publish`).
pub fn publish_one<'a, A: MqAdapter + ?Sized>(
    adapter: &'a A,
    topic: &'a str,
    message: Message,
) -> BoxFuture<'a, MqResult<()>> {
    Box::pin(async move {
        let mut results = adapter.publish_batch(topic, vec![message]).await;
        results.pop().unwrap_or(Err(MqError::Closed))
    })
}

/// How long [`connect`] waits for a broker before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the adapter a URL names, checking that the broker answers:
/// `memory://NAME`, `kafka://HOST:PORT[,HOST:PORT]`, `nats://HOST:PORT`,
/// `redis://HOST:PORT[/DB]`. A scheme whose cargo feature is off, a
/// malformed URL or an unreachable broker is an error, after at most
/// [`CONNECT_TIMEOUT`].
pub async fn connect(url: &str) -> MqResult<Arc<dyn MqAdapter>> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| MqError::Config(format!("{url:?} is not a URL (scheme://...)")))?;
    if rest.is_empty() {
        return Err(MqError::Config(format!("{url:?} names no broker")));
    }
    match scheme {
        "memory" => Ok(Arc::new(memory::MemoryAdapter::named(rest))),
        #[cfg(feature = "kafka")]
        "kafka" => Ok(Arc::new(kafka::KafkaAdapter::connect(rest).await?)),
        #[cfg(feature = "nats")]
        "nats" => Ok(Arc::new(nats::NatsAdapter::connect(url).await?)),
        #[cfg(feature = "redis")]
        "redis" => Ok(Arc::new(redis::RedisAdapter::connect(url).await?)),
        #[allow(unreachable_patterns)] // all three features on
        "kafka" | "nats" | "redis" => Err(MqError::Unsupported(format!(
            "the {scheme} adapter is not built in: enable chronica's cargo feature `{scheme}`"
        ))),
        other => {
            Err(MqError::Config(format!("unknown adapter scheme {other:?} (memory, kafka, nats, redis)")))
        }
    }
}
