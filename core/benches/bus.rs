//! The EventBus workload (issue 5): 4 topics, 2 consumer groups of 4
//! members and 4 plain subscribers, JSON payloads of about 200 bytes,
//! 1,000,000 emits. Each emit reaches one member of each group and every
//! plain subscriber: 6 deliveries. The same topology runs on the raw
//! director (batch callbacks) and through the bus (one handler call per
//! event), in the same invocation, so the facade's cost is read directly.
//!
//! Every subscriber counts into a counter of its own (summed by the
//! waiter), so neither side pays for a counter shared by twelve threads.
//! The three cases run interleaved `BUS_ROUNDS` times (default 3) and the
//! medians are reported: the machine is noisy, and a case run later in a
//! quiet spell would otherwise look faster.
//!
//! `cargo bench -p chronica --bench bus`; `BUS_EVENTS=n` changes the count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

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

/// One counter per subscriber, each on its own cache line.
#[derive(Default)]
struct Counters(Vec<Arc<CachePadded<AtomicU64>>>);

impl Counters {
    fn new_counter(&mut self) -> Arc<CachePadded<AtomicU64>> {
        let c = Arc::new(CachePadded::new(AtomicU64::new(0)));
        self.0.push(c.clone());
        c
    }
    fn total(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Waits until the counters reach `target`; returns the seconds since `start`.
fn finish(counters: &Counters, target: u64, start: Instant) -> f64 {
    while counters.total() < target {
        std::thread::sleep(Duration::from_micros(200));
    }
    start.elapsed().as_secs_f64()
}

fn raw(events: u64, bytes: &Bytes) -> f64 {
    let d = builder().build().expect("director");
    let mut count = Counters::default();
    let mut node = || {
        let c = count.new_counter();
        move |b: &Batch| -> Result<(), NodeError> {
            let n = b.iter().filter(|e| !e.is_root()).count();
            c.fetch_add(n as u64, Ordering::Relaxed);
            Ok(())
        }
    };
    for g in ["group-a", "group-b"] {
        for m in 0..4 {
            let opts = NodeOptions::default().topic(">").group(g);
            d.register_with(&format!("{g}-{m}"), node(), opts).expect("register");
        }
    }
    for p in 0..4 {
        d.register_with(&format!("plain-{p}"), node(), NodeOptions::default().topic("*.*"))
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
    let mut count = Counters::default();
    let mut handler = || {
        let c = count.new_counter();
        move |_: &Event| -> Result<(), NodeError> {
            c.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    };
    for g in ["group-a", "group-b"] {
        for _ in 0..4 {
            bus.on(">", handler(), SubscribeOptions::default().group(g)).expect("on");
        }
    }
    for _ in 0..4 {
        bus.on("*.*", handler(), SubscribeOptions::default()).expect("on");
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let events: u64 = std::env::var("BUS_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let rounds: usize = std::env::var("BUS_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let bytes = Bytes::from(serde_json::to_vec(&payload(1_000_000)).expect("json"));
    println!("EventBus workload: {events} emits, {} byte JSON payloads, 4 topics,", bytes.len());
    println!("2 groups x 4 members + 4 plain subscribers ({DELIVERIES_PER_EMIT} deliveries per emit)");
    let mut secs: [Vec<f64>; 3] = Default::default();
    for round in 1..=rounds {
        secs[0].push(raw(events, &bytes));
        secs[1].push(bus(events, &bytes, false));
        secs[2].push(bus(events, &bytes, true));
        let overhead = (secs[1][round - 1] / secs[0][round - 1] - 1.0) * 100.0;
        println!(
            "round {round}: raw {:.3} s, bus {:.3} s ({overhead:+.1}%)",
            secs[0][round - 1],
            secs[1][round - 1]
        );
    }
    println!(
        "{:<28} {:>12} {:>14} {:>9}",
        format!("case (median of {rounds})"),
        "emits/s",
        "deliveries/s",
        "vs raw"
    );
    let names = ["raw director", "bus, emit (bytes)", "bus, emit_value (serde)"];
    let medians: Vec<f64> = secs.into_iter().map(median).collect();
    for (name, secs) in names.iter().zip(&medians) {
        let rate = events as f64 / secs;
        let overhead = (secs / medians[0] - 1.0) * 100.0;
        println!("{name:<28} {rate:>12.0} {:>14.0} {overhead:>+8.1}%", rate * DELIVERIES_PER_EMIT as f64);
    }
}
