//! The NATS JetStream adapter (feature `nats`, async-nats).
//!
//! Topics are subjects (Chronica's pattern syntax is NATS's). Each topic's
//! first segment names a file-backed stream capturing `ROOT` and `ROOT.>`,
//! created on first use. A subscription is a durable pull consumer named
//! after its group (and a hash of its filter), with explicit acks: the
//! members of a group share the durable, so each message goes to one of
//! them. Written for nats-server 2.9: one `filter_subject` per consumer.
//! Streams keep messages 24 hours, and a durable consumer with no member
//! is deleted after as long (it was one hour: a group away longer lost its
//! position and skipped what was published meanwhile).
//! The message key travels in the `chronica-key` header, or hex-encoded in
//! `chronica-key-hex` when it is not UTF-8.
//! The client reconnects by itself; a pull stream that ends is re-made by
//! the caller through `subscribe`.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, consumer::DeliverPolicy, stream};
use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;

use crate::distributed::wire::{hex, unhex};

use super::{AckToken, BoxFuture, Message, MessageStream, MqAdapter, MqError, MqResult, CONNECT_TIMEOUT};

const KEY_HEADER: &str = "chronica-key";
/// A key that is not UTF-8, hex-encoded: NATS header values are text, and
/// a key dropped on one broker would move it to another group member and
/// out of per-key order, which the other brokers keep.
const KEY_HEX_HEADER: &str = "chronica-key-hex";
/// Publishes awaiting their JetStream ack, at most, across every batch:
/// below the client's own limit (5,000), which makes a publish wait for a
/// permit that only an awaited ack returns.
const ACKS_OUT: usize = 4_096;
/// Most publishes sent before their acks are awaited.
const ACK_CHUNK: usize = 256;
/// How long a stream keeps messages, and how long a durable consumer (a
/// group's position) outlives its last member: the same, so a group whose
/// members were all away finds every message the stream still holds.
const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// A NATS connection with its JetStream context.
#[derive(Debug)]
pub struct NatsAdapter {
    client: async_nats::Client,
    js: jetstream::Context,
    streams: Mutex<HashSet<String>>,
    closed: AtomicBool,
    acks_out: tokio::sync::Semaphore,
}

fn broker(e: impl std::fmt::Display) -> MqError {
    MqError::Broker(e.to_string())
}

/// A valid stream / consumer name: no `.`, `*`, `>`, white space or slash.
fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// The durable consumer of `group` on `pattern`. `sanitize` maps many
/// names to one (`a.b` and `a_b`, or any two non-ASCII letters), so the
/// hash covers the group as given as well as the pattern: two groups never
/// share a consumer, which would split their messages between them.
fn consumer_name(group: &str, pattern: &str) -> String {
    let hash = crate::director::routing::stable_hash(format!("{group}\0{pattern}").as_bytes());
    format!("{}_{:016x}", sanitize(group), hash)
}

fn root_of(subject: &str) -> MqResult<&str> {
    match subject.split('.').next() {
        Some(r) if !r.is_empty() && r != "*" && r != ">" => Ok(r),
        _ => {
            Err(MqError::Unsupported(format!("nats: subject {subject:?} must start with a literal segment")))
        }
    }
}

impl NatsAdapter {
    /// Connects to `nats://HOST:PORT`; fails within [`CONNECT_TIMEOUT`] when
    /// the server does not answer.
    pub async fn connect(url: &str) -> MqResult<Self> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(Duration::from_secs(10)))
            .max_reconnects(None)
            .connect(url)
            .await
            .map_err(|e| MqError::Connect(format!("nats at {url}: {e}")))?;
        let js = jetstream::new(client.clone());
        Ok(Self {
            client,
            js,
            streams: Mutex::default(),
            closed: AtomicBool::new(false),
            acks_out: tokio::sync::Semaphore::new(ACKS_OUT),
        })
    }

    async fn ensure_stream(&self, subject: &str) -> MqResult<stream::Stream> {
        let root = root_of(subject)?;
        let name = sanitize(root);
        let known = self.streams.lock().contains(&name);
        if known {
            return self.js.get_stream(&name).await.map_err(broker);
        }
        let s = self
            .js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![root.to_owned(), format!("{root}.>")],
                max_age: RETENTION,
                ..Default::default()
            })
            .await
            .map_err(broker)?;
        self.streams.lock().insert(name);
        Ok(s)
    }
}

/// The NATS headers of `message`: its own (taken), and its key. Static
/// names stay static and values move, so building them copies no string.
/// A name or value NATS cannot carry is an error for this message: the
/// client's own conversions panic on one (CR or LF in a value; a control
/// character, non-ASCII or ':' in a name).
fn headers_of(message: &mut Message) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (k, v) in std::mem::take(&mut message.headers) {
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(format!("nats: header name {k:?} must be printable ASCII without ':'"));
        }
        if v.contains(['\r', '\n']) {
            return Err(format!("nats: header {k} value {v:?} contains CR or LF"));
        }
        match k {
            Cow::Borrowed(name) => headers.append(HeaderName::from_static(name), v),
            Cow::Owned(name) => headers.append(name.as_str(), v),
        }
    }
    match message.key.as_deref().map(|k| (k, std::str::from_utf8(k))) {
        Some((_, Ok(k))) => {
            if k.contains(['\r', '\n']) {
                return Err(format!("nats: key {k:?} contains CR or LF"));
            }
            headers.insert(HeaderName::from_static(KEY_HEADER), k);
        }
        Some((k, Err(_))) => {
            headers.insert(HeaderName::from_static(KEY_HEX_HEADER), hex(k));
        }
        None => {}
    }
    Ok(headers)
}

fn to_message(m: jetstream::Message) -> Message {
    let (m, acker) = m.split();
    let mut headers = Vec::new();
    let mut key = None;
    if let Some(h) = &m.headers {
        for (name, values) in h.iter() {
            for v in values {
                let name: &str = name.as_ref();
                let hex_key = (name == KEY_HEX_HEADER).then(|| unhex(v.as_str())).flatten().map(Bytes::from);
                if name == KEY_HEADER {
                    key = Some(Bytes::copy_from_slice(v.as_str().as_bytes()));
                } else if hex_key.is_some() {
                    key = hex_key;
                } else {
                    headers.push((super::header_name(name), v.as_str().to_owned()));
                }
            }
        }
    }
    Message {
        topic: m.subject.to_string(),
        key,
        value: m.payload,
        timestamp_ms: None,
        headers,
        ack: Some(AckToken::new(acker)),
    }
}

/// The acker of a message this adapter received.
fn acker(message: &Message) -> Option<&jetstream::message::Acker> {
    message.ack.as_ref().and_then(|t| t.get::<jetstream::message::Acker>())
}

/// The error of a message that could not be published: refused for good
/// ([`MqError::Rejected`]) when it is larger than the server's
/// `max_payload`, which no retry changes; else transient.
fn publish_err(e: PublishError) -> MqError {
    match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => MqError::Rejected(e.to_string()),
        _ => broker(e),
    }
}

/// Waits for the JetStream acks of one sent chunk, in order.
async fn await_acks(acks: Vec<MqResult<PublishAckFuture>>, results: &mut Vec<MqResult<()>>) {
    for a in acks {
        results.push(match a {
            Ok(ack) => ack.await.map(|_| ()).map_err(publish_err),
            Err(e) => Err(e),
        });
    }
}

impl MqAdapter for NatsAdapter {
    fn name(&self) -> &str {
        "nats"
    }

    fn publish<'a>(&'a self, topic: &'a str, message: Message) -> BoxFuture<'a, MqResult<()>> {
        super::publish_one(self, topic, message)
    }

    /// Sends every message before awaiting any acknowledgement, so the
    /// client writes them in few flushes and the server's acks overlap.
    fn publish_batch<'a>(
        &'a self,
        topic: &'a str,
        messages: Vec<Message>,
    ) -> BoxFuture<'a, Vec<MqResult<()>>> {
        Box::pin(async move {
            let ready = async {
                if self.closed.load(Ordering::Acquire) {
                    return Err(MqError::Closed);
                }
                if !self.streams.lock().contains(&sanitize(root_of(topic)?)) {
                    self.ensure_stream(topic).await?;
                }
                Ok(())
            };
            if let Err(e) = ready.await {
                return messages.iter().map(|_| Err(e.clone())).collect();
            }
            let subject = async_nats::Subject::from(topic);
            let mut results = Vec::with_capacity(messages.len());
            // Chunks sent and not yet confirmed, oldest first, each with the
            // ack permits it holds.
            let mut out = VecDeque::new();
            let mut messages = messages.into_iter().peekable();
            while messages.peek().is_some() {
                let chunk: Vec<Message> = messages.by_ref().take(ACK_CHUNK).collect();
                let n = chunk.len() as u32;
                // All of the chunk's permits or none, so a batch never waits
                // for the client's ack permits while holding some; when
                // they are short, this batch's own oldest acks free them.
                let permits = loop {
                    if let Ok(p) = self.acks_out.try_acquire_many(n) {
                        break Some(p);
                    }
                    match out.pop_front() {
                        Some((acks, _permits)) => await_acks(acks, &mut results).await,
                        None => break self.acks_out.acquire_many(n).await.ok(),
                    }
                };
                let Some(permits) = permits else {
                    results.extend(chunk.iter().map(|_| Err(MqError::Closed)));
                    continue;
                };
                let mut acks = Vec::with_capacity(chunk.len());
                for mut m in chunk {
                    // A header NATS cannot carry never will be: refused.
                    acks.push(match headers_of(&mut m) {
                        Ok(headers) => self
                            .js
                            .publish_with_headers(subject.clone(), headers, m.value)
                            .await
                            .map_err(publish_err),
                        Err(why) => Err(MqError::Rejected(why)),
                    });
                }
                out.push_back((acks, permits));
            }
            for (acks, _permits) in out {
                await_acks(acks, &mut results).await;
            }
            results
        })
    }

    fn subscribe<'a>(&'a self, pattern: &'a str, group: &'a str) -> BoxFuture<'a, MqResult<MessageStream>> {
        Box::pin(async move {
            if self.closed.load(Ordering::Acquire) {
                return Err(MqError::Closed);
            }
            let s = self.ensure_stream(pattern).await?;
            let name = consumer_name(group, pattern);
            let consumer = s
                .get_or_create_consumer(
                    &name,
                    pull::Config {
                        durable_name: Some(name.clone()),
                        filter_subject: pattern.to_owned(),
                        ack_policy: AckPolicy::Explicit,
                        deliver_policy: DeliverPolicy::New,
                        ack_wait: Duration::from_secs(30),
                        max_ack_pending: 20_000,
                        inactive_threshold: RETENTION,
                        ..Default::default()
                    },
                )
                .await
                .map_err(broker)?;
            let messages = consumer.messages().await.map_err(broker)?;
            let s = messages.map(|r| r.map(to_message).map_err(broker));
            Ok(Box::pin(s) as MessageStream)
        })
    }

    fn ack<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, MqResult<()>> {
        Box::pin(async move {
            let Some(acker) = acker(message) else {
                return Err(MqError::Config("message was not received from this nats adapter".into()));
            };
            acker.ack().await.map_err(broker)
        })
    }

    /// Refuses each message (`-NAK`): the server redelivers it at once, to
    /// whichever member of the group pulls next.
    fn release<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, MqResult<()>> {
        Box::pin(async move {
            let mut first = Ok(());
            for m in messages {
                let Some(acker) = acker(m) else { continue };
                if let Err(e) = acker.ack_with(jetstream::AckKind::Nak(None)).await {
                    first = first.and(Err(broker(e)));
                }
            }
            first
        })
    }

    fn close(&self) -> BoxFuture<'_, MqResult<()>> {
        Box::pin(async move {
            self.closed.store(true, Ordering::Release);
            self.client.drain().await.map_err(broker)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_nats_cannot_carry_are_an_error_not_a_panic() {
        let with = |name: &'static str, value: &str| {
            let mut m = Message::new("x");
            m.headers.push((Cow::Borrowed(name), value.to_owned()));
            headers_of(&mut m)
        };
        assert!(with("chronica-topic", "fine").is_ok());
        assert!(with("chronica-topic", "a\nb").unwrap_err().contains("CR or LF"));
        assert!(with("chronica-topic", "a\rb").is_err());
        assert!(with("bad:name", "v").is_err());
        assert!(with("bad name", "v").is_err());
        let mut keyed = Message::new("x");
        keyed.key = Some(Bytes::from_static(b"k\n"));
        assert!(headers_of(&mut keyed).is_err());
    }

    #[test]
    fn groups_that_sanitize_alike_get_their_own_consumers() {
        assert_eq!(sanitize("a.b"), sanitize("a_b"));
        assert_ne!(consumer_name("a.b", "p"), consumer_name("a_b", "p"));
        assert_ne!(consumer_name("é1", "p"), consumer_name("ü1", "p"));
        assert_ne!(consumer_name("g", "p.one"), consumer_name("g", "p.two"));
        assert_eq!(consumer_name("g", "p"), consumer_name("g", "p"), "durable: the same name every time");
        let name = consumer_name("g.x y", "p.>");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{name}");
    }
}
