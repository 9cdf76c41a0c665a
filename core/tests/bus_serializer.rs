//! EventBus serializers (issue 5): JSON and MessagePack round trips, type
//! mismatches and serializer mismatches as clear errors, never panics.

mod common;
use common::*;

use std::sync::Arc;
use std::time::Duration;

use chronica::{
    decode, DecodeError, Director, Event, EventBus, EventExt, Json, MessagePack, NodeError, Retry,
    Serializer, SubscribeOptions, JSON_CONTENT_TYPE, MSGPACK_CONTENT_TYPE,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    items: Vec<String>,
    total: f64,
    note: Option<String>,
}

fn order() -> Order {
    Order { id: 42, items: vec!["tea".into(), "cake".into()], total: 7.5, note: None }
}

fn collect<S: Serializer>(
    bus: &EventBus<S>,
    topic: &str,
) -> (chronica::Subscription, Arc<Mutex<Vec<Event>>>) {
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let s = seen.clone();
    let sub = bus
        .on(
            topic,
            move |e: &Event| {
                s.lock().push(e.clone());
                Ok(())
            },
            SubscribeOptions::default(),
        )
        .unwrap();
    (sub, seen)
}

#[test]
fn json_round_trip_and_content_type() {
    let bus = EventBus::from_builder(Director::builder()).unwrap();
    let (sub, seen) = collect(&bus, "orders.>");
    bus.emit_value("orders.created", &order()).unwrap();
    settle(bus.director(), sub.uid());
    let e = seen.lock()[0].clone();
    assert_eq!(e.content_type(), Some(JSON_CONTENT_TYPE));
    assert_eq!(bus.decode::<Order>(&e).unwrap(), order());
    assert_eq!(e.unmarshal::<Order>().unwrap(), order());
    assert_eq!(e.json::<Order>().unwrap(), order());
}

#[test]
fn msgpack_round_trip_and_content_type() {
    let bus = EventBus::from_builder(Director::builder()).unwrap().with_serializer(MessagePack);
    let (sub, seen) = collect(&bus, "orders.>");
    bus.emit_value_keyed("orders.created", "customer-1", &order()).unwrap();
    settle(bus.director(), sub.uid());
    let e = seen.lock()[0].clone();
    assert_eq!(e.content_type(), Some(MSGPACK_CONTENT_TYPE));
    assert_eq!(e.key(), Some(&b"customer-1"[..]));
    assert_eq!(bus.decode::<Order>(&e).unwrap(), order());
    assert_eq!(e.unmarshal::<Order>().unwrap(), order(), "unmarshal picks the serializer by content type");
    // Structs travel as maps with field names, readable by any MessagePack library.
    let generic: serde_json::Value = MessagePack.decode(e.payload()).unwrap();
    assert_eq!(generic["items"][1], "cake");
}

#[test]
fn a_serializer_mismatch_is_detected_from_the_content_type() {
    let director = Director::new().unwrap();
    let producer = EventBus::new(director.clone()).with_serializer(MessagePack);
    let consumer = EventBus::new(director.clone());
    let (sub, seen) = collect(&consumer, "orders.*");
    producer.emit_value("orders.paid", &order()).unwrap();
    settle(&director, sub.uid());
    let e = seen.lock()[0].clone();
    let err = consumer.decode::<Order>(&e).unwrap_err();
    assert_eq!(
        err,
        DecodeError::SerializerMismatch {
            topic: "orders.paid".into(),
            expected: JSON_CONTENT_TYPE.into(),
            found: MSGPACK_CONTENT_TYPE.into(),
        }
    );
    let text = err.to_string();
    assert!(text.contains("orders.paid") && text.contains("application/msgpack"), "{text}");
    assert!(matches!(e.unmarshal_with::<Order, _>(&Json), Err(DecodeError::SerializerMismatch { .. })));
}

#[test]
fn a_type_mismatch_names_the_topic_and_the_expected_type() {
    let bus = EventBus::from_builder(Director::builder()).unwrap();
    let (sub, seen) = collect(&bus, ">");
    bus.emit_value("orders.created", &serde_json::json!({"id": "not a number"})).unwrap();
    bus.emit("raw.bytes", &b"\xff\x00 not json"[..]).unwrap();
    settle(bus.director(), sub.uid());
    let events = seen.lock().clone();
    for (e, json) in events.iter().zip([true, false]) {
        let err = e.unmarshal::<Order>().unwrap_err();
        let DecodeError::Type { topic, expected_type, content_type, .. } = &err else { panic!("{err:?}") };
        assert_eq!(topic, e.topic());
        assert!(expected_type.ends_with("Order"), "{expected_type}");
        assert_eq!(content_type, JSON_CONTENT_TYPE);
        let text = err.to_string();
        assert!(text.contains(e.topic()) && text.contains("Order"), "{text}");
        assert_eq!(e.content_type().is_some(), json, "raw emits carry no content type");
    }
    // MessagePack bytes read as a wrong type: an error, not a panic.
    let mp = EventBus::from_builder(Director::builder()).unwrap().with_serializer(MessagePack);
    let (sub, seen) = collect(&mp, "x");
    mp.emit_value("x", &vec![1u8, 2, 3]).unwrap();
    settle(mp.director(), sub.uid());
    assert!(matches!(decode::<Order, _>(&seen.lock()[0], &MessagePack), Err(DecodeError::Type { .. })));
}

#[test]
fn an_unknown_content_type_asks_for_unmarshal_with() {
    let bus = EventBus::from_builder(Director::builder()).unwrap();
    let (sub, seen) = collect(&bus, "x");
    bus.emit_message(chronica::Message::new("x", "<a/>").content_type("text/xml")).unwrap();
    settle(bus.director(), sub.uid());
    let err = seen.lock()[0].unmarshal::<Order>().unwrap_err();
    assert!(matches!(err, DecodeError::UnknownContentType { .. }), "{err:?}");
}

#[test]
fn a_decode_error_in_a_handler_becomes_a_dead_letter_with_its_text() {
    let bus = EventBus::from_builder(Director::builder()).unwrap();
    let letters: Arc<Mutex<Vec<String>>> = Arc::default();
    let l = letters.clone();
    let retry = Retry { jitter: 0.0, ..Retry::constant(Duration::from_millis(1), Some(1)) };
    bus.on(
        "orders.created",
        |e: &Event| {
            let _order: Order = e.unmarshal()?;
            Ok(())
        },
        SubscribeOptions::default().retry(retry).dead_letter(move |_: &Event, err: &NodeError| {
            l.lock().push(err.message().to_owned());
        }),
    )
    .unwrap();
    bus.emit_value("orders.created", &"just a string").unwrap();
    wait_for("dead letter", || !letters.lock().is_empty());
    let text = letters.lock()[0].clone();
    assert!(text.contains("orders.created") && text.contains("Order"), "{text}");
}

#[test]
fn a_value_that_cannot_be_encoded_is_refused() {
    let bus = EventBus::from_builder(Director::builder()).unwrap();
    let mut bad = std::collections::HashMap::new();
    bad.insert(vec![1u8], 1); // JSON map keys must be strings
    let err = bus.emit_value("t", &bad).unwrap_err();
    assert!(matches!(err, chronica::Error::InvalidArgument(ref why) if why.contains("\"t\"")), "{err:?}");
}
