//! The Kafka adapter (feature `kafka`, rdkafka with bundled librdkafka).
//!
//! Publishing uses one idempotent `FutureProducer`; headers are Kafka
//! headers, the key the record key. Each subscription is a `StreamConsumer`
//! of its own in the Kafka consumer group named by `group` (Kafka's own
//! groups split partitions among members); a pattern with wildcards becomes
//! a regex subscription. Offsets are stored on `ack` and committed in the
//! background (at-least-once: unacked records are read again after a
//! restart or rebalance). `subscribe` returns once the group gave this
//! member its share of the partitions (none when the group has more
//! members than the topic has partitions), placed as `kafka_start` says: a
//! new group starts at the end of the topic, so nothing published
//! afterwards is missed and none of the history is replayed. Dropping a
//! subscription's stream makes its consumer leave the group.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::kafka_start::Start;
use super::{BoxFuture, Message, MessageStream, MqAdapter, MqError, MqResult, CONNECT_TIMEOUT};

/// Partitions of topics this adapter creates.
const PARTITIONS: i32 = 4;
/// Longest wait for room in librdkafka's local queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a new subscription's partition assignment.
const ASSIGN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait, in `close`, for the consumers to leave their groups (a
/// few round trips when the broker answers); with [`FLUSH_TIMEOUT`] it
/// stays within the `Distributed` layer's wait for an adapter's close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait, in `close`, for the producer to deliver what it holds.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// Most records a subscription's pump hands on at once: whatever the
/// consumer has ready, up to this, crosses the channel as one item (one
/// wake-up of the reader instead of one per record).
const PUMP_BATCH: usize = 256;

/// A subscription's consumer, placing new partitions as `kafka_start` says.
type Consumer = StreamConsumer<Start>;

/// A received record's position. It holds its consumer weakly: the adapter's
/// `close` must be where a consumer is dropped (see there).
struct KafkaAck {
    consumer: Weak<Consumer>,
    topic: Arc<str>,
    partition: i32,
    offset: i64,
}

/// A Kafka client: one producer, one consumer per subscription.
pub struct KafkaAdapter {
    brokers: String,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    pumps: Mutex<Vec<(Arc<Consumer>, JoinHandle<()>)>>,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for KafkaAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAdapter").field("brokers", &self.brokers).finish()
    }
}

fn err(e: rdkafka::error::KafkaError) -> MqError {
    MqError::Broker(e.to_string())
}

/// The error of a record that failed to be produced: [`MqError::Rejected`]
/// when the code is about the record itself, which no retry changes (the
/// codes are librdkafka's, as rdkafka's `RDKafkaErrorCode` names them:
/// local ones at `send`, the broker's in the delivery report); any other,
/// a broker away or busy, is transient.
fn produce_err(e: KafkaError) -> MqError {
    use RDKafkaErrorCode as C;
    if let KafkaError::Nul(_) = e {
        return MqError::Rejected(e.to_string()); // a NUL in the topic name
    }
    match e.rdkafka_error_code() {
        Some(
            C::MessageSizeTooLarge // above message.max.bytes (client or broker)
            | C::MessageBatchTooLarge // RECORD_LIST_TOO_LARGE
            | C::InvalidMessageSize
            | C::InvalidMessage // CORRUPT_MESSAGE: failed its CRC or format check
            | C::InvalidRecord // refused by broker-side record validation
            | C::InvalidTimestamp // outside message.timestamp.difference.max.ms
            | C::BadMessage // local: a record librdkafka cannot build
            | C::InvalidArgument, // local: an argument librdkafka refuses
        ) => MqError::Rejected(e.to_string()),
        _ => err(e),
    }
}

impl KafkaAdapter {
    /// Connects to `HOST:PORT[,HOST:PORT...]` and checks that a broker
    /// answers within [`CONNECT_TIMEOUT`].
    pub async fn connect(brokers: &str) -> MqResult<Self> {
        let valid = brokers.split(',').all(|b| {
            b.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
        });
        if !valid {
            return Err(MqError::Config(format!(
                "kafka brokers {brokers:?} must be HOST:PORT[,HOST:PORT...]"
            )));
        }
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", brokers).set("log_level", "0");
        let producer: FutureProducer = cfg
            .clone()
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "20000")
            .create()
            .map_err(|e| MqError::Config(e.to_string()))?;
        let admin: AdminClient<DefaultClientContext> =
            cfg.create().map_err(|e| MqError::Config(e.to_string()))?;
        let probe = producer.clone();
        tokio::task::spawn_blocking(move || {
            probe.client().fetch_metadata(None, Timeout::After(CONNECT_TIMEOUT))
        })
        .await
        .map_err(|e| MqError::Connect(e.to_string()))?
        .map_err(|e| MqError::Connect(format!("kafka at {brokers}: {e}")))?;
        Ok(Self {
            brokers: brokers.to_owned(),
            producer,
            admin,
            pumps: Mutex::default(),
            closed: Arc::default(),
        })
    }

    /// Hands `record` to librdkafka, waiting (up to [`QUEUE_TIMEOUT`]) while
    /// its local queue is full.
    async fn enqueue(&self, mut record: FutureRecord<'_, [u8], [u8]>) -> MqResult<DeliveryFuture> {
        let deadline = Instant::now() + QUEUE_TIMEOUT;
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(produce_err(e)),
            }
        }
    }

    /// The topics that exist now and match `pattern`.
    async fn topics_matching(&self, pattern: &str) -> MqResult<Vec<String>> {
        let matcher = crate::topic::Pattern::new(pattern).map_err(|e| MqError::Config(e.to_string()))?;
        let client = self.producer.clone();
        let meta = tokio::task::spawn_blocking(move || {
            client.client().fetch_metadata(None, Timeout::After(Duration::from_secs(10)))
        })
        .await
        .map_err(|e| MqError::Broker(e.to_string()))?
        .map_err(err)?;
        Ok(meta.topics().iter().map(|t| t.name().to_owned()).filter(|t| matcher.matches(t)).collect())
    }

    async fn ensure_topic(&self, topic: &str) -> MqResult<()> {
        let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = self.admin.create_topics([&new], &opts).await.map_err(err)?;
        for r in results {
            if let Err((_, code)) = r {
                if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                    return Err(MqError::Broker(format!("creating topic {topic:?}: {code}")));
                }
            }
        }
        Ok(())
    }
}

/// The record of `message` on `topic`.
fn record<'m>(topic: &'m str, message: &'m Message) -> FutureRecord<'m, [u8], [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
    for (k, v) in &message.headers {
        headers = headers.insert(Header { key: k, value: Some(v.as_bytes()) });
    }
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(&message.value[..]).headers(headers);
    if let Some(k) = &message.key {
        record = record.key(&k[..]);
    }
    if let Some(ts) = message.timestamp_ms {
        record = record.timestamp(ts);
    }
    record
}

/// The ack token of a message this adapter received.
fn kafka_ack(message: &Message) -> MqResult<&KafkaAck> {
    message
        .ack
        .as_ref()
        .and_then(|t| t.get::<KafkaAck>())
        .ok_or_else(|| MqError::Config("message was not received from this kafka adapter".into()))
}

/// Chronica's pattern syntax as an anchored librdkafka regex subscription.
fn regex_of(pattern: &str) -> String {
    let mut re = String::from("^");
    for (i, seg) in pattern.split('.').enumerate() {
        if i > 0 {
            re.push_str("\\.");
        }
        match seg {
            "*" => re.push_str("[^.]+"),
            ">" => re.push_str(".+"),
            lit => lit.chars().for_each(|c| {
                if !c.is_ascii_alphanumeric() {
                    re.push('\\');
                }
                re.push(c);
            }),
        }
    }
    re.push('$');
    re
}

/// The owned message of `m`. `topic` caches the last topic name, which the
/// acks of every message of that topic then share.
fn to_message(
    m: &rdkafka::message::BorrowedMessage<'_>,
    consumer: &Arc<Consumer>,
    topic: &mut Arc<str>,
) -> Message {
    if &**topic != m.topic() {
        *topic = m.topic().into();
    }
    // A header name that is not UTF-8 makes the record unreadable (see
    // `kafka_headers`).
    let headers = match m.headers().map(super::kafka_headers::read).unwrap_or(Ok(Vec::new())) {
        Ok(headers) => headers,
        Err(why) => vec![super::unreadable(why)],
    };
    Message {
        topic: m.topic().to_owned(),
        key: m.key().map(Bytes::copy_from_slice),
        value: m.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
        timestamp_ms: m.timestamp().to_millis(),
        headers,
        ack: Some(super::AckToken::new(KafkaAck {
            consumer: Arc::downgrade(consumer),
            topic: topic.clone(),
            partition: m.partition(),
            offset: m.offset(),
        })),
    }
}

/// Drops the consumers of subscriptions whose stream was dropped (their
/// pumps left the group and ended), on a thread of their own: a consumer's
/// drop serves its last rebalance events and may wait on the broker (see
/// `close`). Kept until then, each would hold a whole librdkafka client,
/// threads and sockets, for the adapter's life.
fn drop_consumers(left: Vec<(Arc<Consumer>, JoinHandle<()>)>) {
    if left.is_empty() {
        return;
    }
    // Should no thread start, the closure, and the consumers with it, are
    // dropped here: slower, not lost.
    let _ = std::thread::Builder::new().name("chronica-kafka-drop".into()).spawn(move || drop(left));
}

/// Hands on what `c` receives, a read at a time, until the adapter closes
/// or the stream is dropped.
async fn pump(c: &Arc<Consumer>, tx: &mpsc::Sender<Vec<MqResult<Message>>>, closed: &AtomicBool) {
    let mut topic: Arc<str> = "".into();
    while !closed.load(Ordering::Acquire) {
        let received = tokio::select! {
            r = c.recv() => r,
            () = tx.closed() => break,
        };
        let mut items = Vec::new();
        let mut next = Some(received);
        // What is ready now goes along; an error ends the batch.
        while let Some(r) = next.take() {
            let item = r.map(|m| to_message(&m, c, &mut topic)).map_err(err);
            let failed = item.is_err();
            items.push(item);
            if failed || items.len() == PUMP_BATCH {
                break;
            }
            next = c.recv().now_or_never();
        }
        let failed = items.last().is_some_and(Result::is_err);
        if tx.send(items).await.is_err() {
            break;
        }
        if failed {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Commits what was acknowledged, then leaves the group.
fn leave(consumer: &Consumer) {
    let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
    consumer.unsubscribe();
}

impl MqAdapter for KafkaAdapter {
    fn name(&self) -> &str {
        "kafka"
    }

    fn publish<'a>(&'a self, topic: &'a str, message: Message) -> BoxFuture<'a, MqResult<()>> {
        super::publish_one(self, topic, message)
    }

    /// Enqueues every record in librdkafka first (which batches them into
    /// few produce requests), then awaits their delivery reports together.
    fn publish_batch<'a>(
        &'a self,
        topic: &'a str,
        messages: Vec<Message>,
    ) -> BoxFuture<'a, Vec<MqResult<()>>> {
        Box::pin(async move {
            if self.closed.load(Ordering::Acquire) {
                return messages.iter().map(|_| Err(MqError::Closed)).collect();
            }
            let mut pending = Vec::with_capacity(messages.len());
            for m in &messages {
                pending.push(self.enqueue(record(topic, m)).await);
            }
            let mut results = Vec::with_capacity(pending.len());
            for p in pending {
                results.push(match p {
                    Ok(delivery) => match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((e, _))) => Err(produce_err(e)),
                        Err(_) => Err(MqError::Closed),
                    },
                    Err(e) => Err(e),
                });
            }
            results
        })
    }

    fn subscribe<'a>(&'a self, pattern: &'a str, group: &'a str) -> BoxFuture<'a, MqResult<MessageStream>> {
        Box::pin(async move {
            if self.closed.load(Ordering::Acquire) {
                return Err(MqError::Closed);
            }
            let wild = pattern.split('.').any(|s| s == "*" || s == ">");
            let topic = if wild { regex_of(pattern) } else { pattern.to_owned() };
            let existing = if wild {
                self.topics_matching(pattern).await?
            } else {
                self.ensure_topic(pattern).await?;
                vec![pattern.to_owned()]
            };
            let consumer: Consumer = ClientConfig::new()
                .set("bootstrap.servers", &self.brokers)
                .set("group.id", group)
                .set("log_level", "0")
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "500")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "1000")
                .set("topic.metadata.refresh.interval.ms", "2000")
                .create_with_context(Start::existing(existing))
                .map_err(|e| MqError::Config(e.to_string()))?;
            consumer.subscribe(&[&topic]).map_err(err)?;
            let consumer = Arc::new(consumer);
            let (tx, rx) = mpsc::channel::<Vec<MqResult<Message>>>(8);
            let (c, closed) = (consumer.clone(), self.closed.clone());
            let pump = tokio::spawn(async move {
                // A panic in there (the client library's, on some record)
                // is caught: left to unwind, it would end the task with the
                // consumer still in its group and no longer polled, holding
                // its partitions away from the layer's next subscription
                // until the broker's poll timeout. Caught, it ends the
                // stream as a drop does (the layer subscribes again), and
                // the consumer leaves its group.
                let _ = AssertUnwindSafe(pump(&c, &tx, &closed)).catch_unwind().await;
                drop(tx);
                if !closed.load(Ordering::Acquire) {
                    // The stream was dropped, or the pump failed: leave the
                    // group, committing what was acknowledged, so other
                    // members take over.
                    let _ = tokio::task::spawn_blocking(move || leave(&c)).await;
                }
            });
            // Wait (bounded) for the group to give this member its share,
            // placed; with more members than partitions the share is none.
            let deadline = Instant::now() + ASSIGN_TIMEOUT;
            while !consumer.context().assigned() {
                if Instant::now() >= deadline || pump.is_finished() {
                    pump.abort();
                    return Err(MqError::Connect(format!(
                        "kafka: the group did not take this member in for {pattern:?} in {ASSIGN_TIMEOUT:?}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let left: Vec<_> = {
                let mut pumps = self.pumps.lock();
                let (left, live) = pumps.drain(..).partition(|(_, pump)| pump.is_finished());
                *pumps = live;
                pumps.push((consumer, pump));
                left
            };
            drop_consumers(left);
            Ok(super::stream_of_reads(rx))
        })
    }

    fn ack<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, MqResult<()>> {
        Box::pin(async move {
            let a = kafka_ack(message)?;
            // Checked first, so that once `close` began no ack takes a new
            // reference to a consumer (`close` waits for those taken before).
            if self.closed.load(Ordering::Acquire) {
                return Err(MqError::Closed);
            }
            let consumer = a.consumer.upgrade().ok_or(MqError::Closed)?;
            consumer.store_offset(&a.topic, a.partition, a.offset).map_err(err)
        })
    }

    /// One offset store per partition: a partition's stored offset is a
    /// mark (everything before it counts as consumed), so storing the last
    /// offset the batch holds for each partition, as the batch orders them,
    /// ends where storing every one in turn would.
    fn ack_batch<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, MqResult<()>> {
        Box::pin(async move {
            if self.closed.load(Ordering::Acquire) {
                return Err(MqError::Closed); // as in `ack`
            }
            let mut last: Vec<&KafkaAck> = Vec::new();
            let mut outcome = Ok(());
            for m in messages {
                let a = match kafka_ack(m) {
                    Ok(a) => a,
                    Err(e) => {
                        outcome = outcome.and(Err(e));
                        continue;
                    }
                };
                let same = |b: &&KafkaAck| {
                    Weak::ptr_eq(&a.consumer, &b.consumer) && a.partition == b.partition && a.topic == b.topic
                };
                match last.iter_mut().find(|b| same(b)) {
                    Some(b) => *b = a,
                    None => last.push(a),
                }
            }
            for a in last {
                let stored = match a.consumer.upgrade() {
                    Some(c) => c.store_offset(&a.topic, a.partition, a.offset).map_err(err),
                    None => Err(MqError::Closed),
                };
                if let Err(e) = stored {
                    outcome = outcome.and(Err(e));
                }
            }
            outcome
        })
    }

    /// Leaves every group and drops the consumers on a thread of their own,
    /// waiting for it at most 3 s (`CLOSE_TIMEOUT`): dropping a consumer serves
    /// its last rebalance events, and librdkafka can leave a request made
    /// there unanswered forever once the group has terminated (see
    /// `kafka_start`'s `rebalance`). The pumps (stopped first) and this are
    /// the only owners of a consumer, so the drop happens here, not on a
    /// runtime thread or in an acknowledgement.
    fn close(&self) -> BoxFuture<'_, MqResult<()>> {
        Box::pin(async move {
            self.closed.store(true, Ordering::Release);
            let pumps: Vec<_> = self.pumps.lock().drain(..).collect();
            let mut consumers = Vec::with_capacity(pumps.len());
            for (consumer, pump) in pumps {
                pump.abort();
                let _ = pump.await; // the task's own reference goes with it
                consumers.push(consumer);
            }
            let (done, finished) = std::sync::mpsc::channel::<()>();
            let deadline = Instant::now() + CLOSE_TIMEOUT;
            let closing = std::thread::Builder::new().name("chronica-kafka-close".into()).spawn(move || {
                for c in &consumers {
                    // An acknowledgement that upgraded its weak reference
                    // before `closed` was set still holds the consumer for
                    // one offset store; wait for it so that the last drop is
                    // this thread's.
                    while Arc::strong_count(c) > 1 && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    leave(c);
                }
                drop(consumers);
                let _ = done.send(());
            });
            let left = match closing {
                Ok(_) => {
                    let waited =
                        tokio::task::spawn_blocking(move || finished.recv_timeout(CLOSE_TIMEOUT)).await;
                    match waited {
                        Ok(Ok(())) => Ok(()),
                        _ => Err(MqError::Broker(format!(
                            "kafka: the consumers did not leave their groups within {CLOSE_TIMEOUT:?}"
                        ))),
                    }
                }
                Err(e) => Err(MqError::Broker(format!("kafka: no thread to close the consumers on: {e}"))),
            };
            let producer = self.producer.clone();
            let _ = tokio::task::spawn_blocking(move || producer.flush(Timeout::After(FLUSH_TIMEOUT))).await;
            left
        })
    }
}
