//! The empty topic crosses every broker, and a Chronica message without a
//! topic is malformed.
//!
//! An event's topic may be empty (SPEC section 1), and only nodes with no
//! pattern receive it. Chronica writes `chronica-topic` on every message,
//! the empty topic as an empty value, which Kafka, NATS and Redis all keep
//! (checked here). So a message that carries `chronica-id` but no
//! `chronica-topic` was not written by Chronica whole: it is counted
//! malformed and dead-lettered like one missing any other field. Before,
//! it was taken as the empty topic and reached every node with no
//! pattern, uncounted; with none, it vanished.

use std::time::Duration;

use chronica::mq::{self, Message as MqMessage};
use chronica::{Distributed, Message, NodeOptions};

use crate::common::{config, director, next_message, recorder, runtime, wait_for, with_headers};
use crate::suite::unique;

const WAIT: Duration = Duration::from_secs(30);

/// Chronica's headers for a user event with id `id`, but no topic.
fn without_topic(id: &str, payload: &str) -> MqMessage {
    with_headers(
        payload,
        &[
            ("chronica-id", id),
            ("chronica-origin", "elsewhere"),
            ("chronica-kind", "user"),
            ("chronica-ts", "1"),
        ],
    )
}

pub(crate) fn empty_topic_crosses_and_a_missing_topic_is_malformed(url: &str) {
    let prefix = unique("notopic");
    let rt = runtime();
    let raw = rt.block_on(mq::connect(url)).expect("raw client");
    let mut wire = rt.block_on(raw.subscribe(&prefix, &unique("wire"))).expect("subscribe to the fabric");
    let dlq = format!("{prefix}.dlq");
    let mut dead = rt.block_on(raw.subscribe(&dlq, &unique("dlq"))).expect("subscribe to the dead letters");
    let (da, db) = (director(), director());
    let a = Distributed::connect(&da, url, config("inst-a", &prefix)).expect("instance a");
    let b = Distributed::connect(&db, url, config("inst-b", &prefix)).expect("instance b");
    let (all, all_node) = recorder();
    let (some, some_node) = recorder();
    b.register_with("all", all_node, NodeOptions::default()).unwrap();
    b.register_with("some", some_node, NodeOptions::default().topic("orders.>")).unwrap();

    a.emit(Message::new("", "empty")).unwrap();
    let sent = rt.block_on(next_message(&mut wire));
    assert_eq!(
        sent.header("chronica-topic"),
        Some(""),
        "{url}: the empty topic on the wire: {:?}",
        sent.headers
    );
    assert!(wait_for(WAIT, || !all.lock().is_empty()), "{url}: {:?}", b.stats());
    assert_eq!(all.lock()[0].topic, "");
    assert_eq!(all.lock()[0].payload, b"empty");

    rt.block_on(raw.publish(&prefix, without_topic("7", "no-topic"))).expect("raw publish");
    assert!(
        wait_for(WAIT, || b.stats().malformed == 1 && b.stats().dead_lettered >= 1),
        "{url}: {:?}",
        b.stats()
    );
    let letter = rt.block_on(next_message(&mut dead));
    assert_eq!(&letter.value[..], b"no-topic");
    let why = letter.header("chronica-error").unwrap_or_default();
    assert!(why.contains("chronica-topic"), "{url}: dead letter says {why:?}");
    // A later event shows that the malformed one was read and not delivered.
    a.emit(Message::new("", "after")).unwrap();
    assert!(wait_for(WAIT, || all.lock().len() >= 2), "{url}: {:?}", b.stats());
    let payloads: Vec<Vec<u8>> = all.lock().iter().map(|s| s.payload.clone()).collect();
    assert_eq!(payloads, [b"empty".to_vec(), b"after".to_vec()], "{url}");
    assert!(some.lock().is_empty(), "{url}: a node with a pattern got {:?}", some.lock());

    drop((wire, dead));
    rt.block_on(raw.close()).unwrap();
    for (d, x) in [(&da, a), (&db, b)] {
        x.close(Duration::from_secs(10)).unwrap();
        d.close(Duration::from_secs(10)).unwrap();
    }
}
