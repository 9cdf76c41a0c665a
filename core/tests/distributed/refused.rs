//! Messages that cannot cross as they are: an event the broker refuses
//! for good (too large) is counted, dead-lettered and not retried, so the
//! events behind it still go out; a received record the client cannot read
//! (Kafka: a header name that is not UTF-8) is counted malformed and
//! dead-lettered, and the subscription moves past it.

use std::sync::Arc;
use std::time::Duration;

use chronica::mq::memory::MemoryAdapter;
use chronica::mq::{BoxFuture, Message as MqMessage, MqAdapter, MqError, MqResult};
use chronica::{Director, Distributed, DistributedConfig, Message};

use crate::common::{config, recorder, wait_for};
use crate::pass_through::pass_through;
use crate::suite::unique;

const WAIT: Duration = Duration::from_secs(60);
/// Small events emitted after the refused one.
const SMALL: usize = 10;

/// A memory adapter that refuses for good every message over 1000 bytes,
/// as a broker does one above its message size limit.
#[derive(Debug)]
struct Picky {
    inner: MemoryAdapter,
}

const PICKY_LIMIT: usize = 1000;

impl MqAdapter for Picky {
    fn name(&self) -> &str {
        "picky"
    }
    pass_through!(subscribe, ack, close);
    fn publish<'a>(&'a self, topic: &'a str, message: MqMessage) -> BoxFuture<'a, MqResult<()>> {
        if message.value.len() > PICKY_LIMIT {
            let why = format!("{} bytes is above {PICKY_LIMIT}", message.value.len());
            return Box::pin(async move { Err(MqError::Rejected(why)) });
        }
        self.inner.publish(topic, message)
    }
}

/// Emits one event of `big` bytes, then [`SMALL`] small ones, from the
/// instance `connect` makes; the other instance (`receiver`) must get the
/// small ones, in order, and the sender must count one refusal, one dead
/// letter and nothing left buffered.
fn oversized_event_does_not_block_later_ones(
    big: usize,
    connect: impl Fn(&Director, DistributedConfig) -> Distributed,
) {
    let prefix = unique("refused");
    let (da, db) = (crate::common::director(), crate::common::director());
    let b = connect(&db, config("receiver", &prefix));
    let (seen, node) = recorder();
    db.register("sink", node).unwrap();
    let a = connect(&da, config("sender", &prefix));
    // One key: Kafka orders records per partition.
    a.emit(Message::new("t", vec![b'x'; big]).key("k")).unwrap();
    for n in 0..SMALL {
        a.emit(Message::new("t", format!("small-{n}")).key("k")).unwrap();
    }
    let want: Vec<String> = (0..SMALL).map(|n| format!("small-{n}")).collect();
    let got =
        || seen.lock().iter().map(|s| String::from_utf8_lossy(&s.payload).into_owned()).collect::<Vec<_>>();
    assert!(wait_for(WAIT, || got().len() >= SMALL), "got {:?}; sender {:?}", got(), a.stats());
    assert_eq!(got(), want, "the small events, once each, in emit order");
    assert!(a.flush(WAIT), "{:?}", a.stats());
    assert!(wait_for(WAIT, || a.stats().dead_lettered == 1), "{:?}", a.stats());
    let st = a.stats();
    assert_eq!(
        (st.published, st.publish_rejected, st.buffered, st.buffer_dropped, st.publish_retries),
        (SMALL as u64, 1, 0, 0, 0),
        "{st:?}"
    );
    assert_eq!(a.close(Duration::from_secs(5)).unwrap(), 0, "nothing left unpublished");
    b.close(Duration::from_secs(5)).unwrap();
    da.close(Duration::from_secs(5)).unwrap();
    db.close(Duration::from_secs(5)).unwrap();
}

/// The reviewer's case: behind one event the adapter refuses for good, the
/// small events still go out (they waited behind its retries forever).
#[test]
fn refused_event_does_not_block_later_ones() {
    let hub = unique("hub");
    oversized_event_does_not_block_later_ones(2 * PICKY_LIMIT, |d, cfg| {
        let adapter = Arc::new(Picky { inner: MemoryAdapter::named(&hub) });
        Distributed::with_adapter(d, adapter, cfg).unwrap()
    });
}

/// The dead letter of a refused event: its metadata and why, without the
/// payload the adapter refused (a second refusal) but with its size.
#[test]
fn refused_event_is_dead_lettered_without_its_payload() {
    use futures_util::StreamExt;
    let (hub, prefix) = (unique("hub"), unique("refused"));
    let d = crate::common::director();
    let rt = crate::common::runtime();
    let watcher = MemoryAdapter::named(&hub);
    let mut dlq = rt.block_on(watcher.subscribe(&format!("{prefix}.dlq"), "watch")).unwrap();
    let adapter = Arc::new(Picky { inner: MemoryAdapter::named(&hub) });
    let a = Distributed::with_adapter(&d, adapter, config("sender", &prefix)).unwrap();
    a.emit(Message::new("orders.big", vec![b'x'; 5000])).unwrap();
    let dl = rt.block_on(async { tokio::time::timeout(WAIT, dlq.next()).await }).unwrap().unwrap().unwrap();
    assert!(dl.value.is_empty(), "the refused payload is left out");
    assert_eq!(dl.header("chronica-topic"), Some("orders.big"));
    assert_eq!(dl.header("chronica-dlq-topic"), Some(prefix.as_str()));
    let why = dl.header("chronica-error").unwrap();
    assert!(why.contains("5000 bytes is above 1000") && why.contains("5000 bytes is left out"), "{why}");
    a.close(Duration::from_secs(5)).unwrap();
    d.close(Duration::from_secs(5)).unwrap();
}

/// Kafka: an event above the broker's `message.max.bytes` (1 MB by
/// default) is refused at once and does not hold back the later ones.
#[cfg(feature = "kafka")]
pub(crate) fn kafka_oversized_event_does_not_block_later_ones(url: &str) {
    oversized_event_does_not_block_later_ones(2 << 20, |d, cfg| Distributed::connect(d, url, cfg).unwrap());
}

/// Kafka: a record whose header name is not UTF-8 (written with
/// librdkafka's C API: rdkafka's own takes `&str` names) reaches the layer
/// as a malformed message, dead-lettered; the events after it on the same
/// partition arrive. rdkafka 0.39 panics reading such a name, which killed
/// the subscription's pump before the offset was stored, again on every
/// resubscription.
#[cfg(feature = "kafka")]
pub(crate) fn kafka_unreadable_header_is_dead_lettered(url: &str) {
    let prefix = unique("unreadable");
    let (da, db) = (crate::common::director(), crate::common::director());
    let b = Distributed::connect(&db, url, config("receiver", &prefix)).unwrap();
    let (seen, node) = recorder();
    db.register("sink", node).unwrap();
    let a = Distributed::connect(&da, url, config("sender", &prefix)).unwrap();
    let brokers = url.strip_prefix("kafka://").unwrap();
    // The same key as the events after it: the same partition, behind it.
    produce_with_raw_header_name(brokers, &prefix, b"k", b"bad-\xff-name\0", b"boom");
    for n in 0..SMALL {
        a.emit(Message::new("t", format!("after-{n}")).key("k")).unwrap();
    }
    let got =
        || seen.lock().iter().map(|s| String::from_utf8_lossy(&s.payload).into_owned()).collect::<Vec<_>>();
    assert!(wait_for(WAIT, || got().len() >= SMALL), "got {:?}; receiver {:?}", got(), b.stats());
    assert_eq!(got(), (0..SMALL).map(|n| format!("after-{n}")).collect::<Vec<_>>());
    assert!(wait_for(WAIT, || b.stats().dead_lettered == 1), "{:?}", b.stats());
    let st = b.stats();
    assert_eq!((st.malformed, st.dead_lettered, st.foreign), (1, 1, 0), "{st:?}");
    a.close(Duration::from_secs(5)).unwrap();
    b.close(Duration::from_secs(5)).unwrap();
    da.close(Duration::from_secs(5)).unwrap();
    db.close(Duration::from_secs(5)).unwrap();
}

/// Produces one record on `topic` with key `key`, value `value` and one
/// header whose name is the NUL-terminated `name` (any bytes), through
/// librdkafka's `rd_kafka_produceva`, and waits for its delivery.
#[cfg(feature = "kafka")]
fn produce_with_raw_header_name(brokers: &str, topic: &str, key: &[u8], name: &[u8], value: &[u8]) {
    use rdkafka::bindings as rd;
    use rdkafka::producer::{BaseProducer, Producer};
    use std::ffi::{c_void, CString};
    assert_eq!(name.last(), Some(&0), "NUL-terminated");
    let producer: BaseProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let topic = CString::new(topic).unwrap();
    let vu = |vtype, u| rd::rd_kafka_vu_t { vtype, u };
    let mem = |b: &[u8]| rd::rd_kafka_vu_s__bindgen_ty_1 {
        mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 { ptr: b.as_ptr() as *mut c_void, size: b.len() },
    };
    let vus = [
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC,
            rd::rd_kafka_vu_s__bindgen_ty_1 { cstr: topic.as_ptr() },
        ),
        vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_KEY, mem(key)),
        vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE, mem(value)),
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_MSGFLAGS,
            rd::rd_kafka_vu_s__bindgen_ty_1 { i: rd::RD_KAFKA_MSG_F_COPY },
        ),
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                header: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                    name: name.as_ptr().cast(),
                    val: b"v".as_ptr().cast(),
                    size: 1,
                },
            },
        ),
    ];
    // SAFETY: the client pointer is the live producer's; every pointer in
    // `vus` points into buffers that outlive the call, which copies them
    // (RD_KAFKA_MSG_F_COPY; headers are always copied).
    let error = unsafe { rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len()) };
    assert!(error.is_null(), "rd_kafka_produceva refused the record");
    producer.flush(Duration::from_secs(30)).expect("the raw record delivered");
}
