//! The EventBus workload (issue 5): 4 topics, 2 consumer groups of 4
//! members and 4 plain subscribers, JSON payloads of about 200 bytes,
//! 1,000,000 emits. Each emit reaches one member of each group and every
//! plain subscriber: 6 deliveries. The same topology runs on the raw
//! director (batch callbacks) and through the bus (one handler call per
//! event), in the same invocation, so the facade's cost is read directly.
//!
//! `cargo bench -p chronica --bench bus`; `BUS_EVENTS=n` changes the count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronica::{
    Batch, Bytes, Director, DirectorBuilder, Event, EventBus, Message, NodeError, NodeOptions, Overflow,
    SubscribeOptions, JSON_CONTENT_TYPE,
};

const TOPICS: [&str; 4] = ["orders.created", "orders.paid", "users.joined", "stock.moved"];
const DELIVERIES_PER_EMIT: u64 = 2 + 4;

#[derive(serde::Serialize)]
struct Payload<'a> {
    id: u64,
    customer: &'a str,
    items: [&'a str; 3],
    total: f64,
    currency: &'a str,
    note: &'a str,
}

fn payload(id: u64) -> Payload<'static> {
    Payload {
        id,
        customer: "customer-00042",
        items: ["sku-1001-red", "sku-2002-blue", "sku-3003-green"],
        total: 123.45,
        currency: "EUR",
        note: "leave the parcel with the neighbour at number twelve, please",
    }
}

fn builder() -> DirectorBuilder {
    Director::builder().overflow(Overflow::Block).block_timeout(Duration::from_secs(60))
}

/// Waits until `count` reaches `target`; returns the seconds since `start`.
fn finish(count: &AtomicU64, target: u64, start: Instant) -> f64 {
    while count.load(Ordering::Relaxed) < target {
        std::thread::sleep(Duration::from_micros(200));
    }
    start.elapsed().as_secs_f64()
}

fn raw(events: u64, bytes: &Bytes) -> f64 {
    let d = builder().build().expect("director");
    let count = Arc::new(AtomicU64::new(0));
    let node = |c: &Arc<AtomicU64>| {
        let c = c.clone();
        move |b: &Batch| -> Result<(), NodeError> {
            let n = b.iter().filter(|e| !e.is_root()).count();
            c.fetch_add(n as u64, Ordering::Relaxed);
            Ok(())
        }
    };
    for g in ["group-a", "group-b"] {
        for m in 0..4 {
            let opts = NodeOptions::default().topic(">").group(g);
            d.register_with(&format!("{g}-{m}"), node(&count), opts).expect("register");
        }
    }
    for p in 0..4 {
        d.register_with(&format!("plain-{p}"), node(&count), NodeOptions::default().topic("*.*"))
            .expect("register");
    }
    let start = Instant::now();
    for i in 0..events {
        let msg = Message::new(TOPICS[i as usize % 4], bytes.clone()).content_type(JSON_CONTENT_TYPE);
        d.emit(msg).expect("emit");
    }
    let secs = finish(&count, events * DELIVERIES_PER_EMIT, start);
    d.close(Duration::from_secs(10)).expect("close");
    secs
}

fn bus(events: u64, bytes: &Bytes, serialize: bool) -> f64 {
    let bus = EventBus::from_builder(builder()).expect("bus");
    let count = Arc::new(AtomicU64::new(0));
    let handler = |c: &Arc<AtomicU64>| {
        let c = c.clone();
        move |_: &Event| -> Result<(), NodeError> {
            c.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    };
    for g in ["group-a", "group-b"] {
        for _ in 0..4 {
            bus.on(">", handler(&count), SubscribeOptions::default().group(g)).expect("on");
        }
    }
    for _ in 0..4 {
        bus.on("*.*", handler(&count), SubscribeOptions::default()).expect("on");
    }
    let start = Instant::now();
    for i in 0..events {
        let topic = TOPICS[i as usize % 4];
        if serialize {
            bus.emit_value(topic, &payload(i)).expect("emit");
        } else {
            bus.emit_message(Message::new(topic, bytes.clone()).content_type(JSON_CONTENT_TYPE))
                .expect("emit");
        }
    }
    let secs = finish(&count, events * DELIVERIES_PER_EMIT, start);
    bus.close(Duration::from_secs(10)).expect("close");
    secs
}

fn main() {
    let events: u64 = std::env::var("BUS_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let bytes = Bytes::from(serde_json::to_vec(&payload(1_000_000)).expect("json"));
    println!("EventBus workload: {events} emits, {} byte JSON payloads, 4 topics,", bytes.len());
    println!("2 groups x 4 members + 4 plain subscribers ({DELIVERIES_PER_EMIT} deliveries per emit)");
    println!("{:<28} {:>12} {:>14} {:>9}", "case", "emits/s", "deliveries/s", "vs raw");
    let base = raw(events, &bytes);
    let rows = [
        ("raw director", base),
        ("bus, emit (bytes)", bus(events, &bytes, false)),
        ("bus, emit_value (serde)", bus(events, &bytes, true)),
    ];
    for (name, secs) in rows {
        let rate = events as f64 / secs;
        let overhead = (secs / base - 1.0) * 100.0;
        println!("{name:<28} {rate:>12.0} {:>14.0} {overhead:>+8.1}%", rate * DELIVERIES_PER_EMIT as f64);
    }
}
