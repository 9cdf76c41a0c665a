//! Several subscriptions and a consumer group on one bus. Mirrors
//! `examples/python/memory_multiple.py`:
//!
//! * "audit" (`orders.>`) and "metrics" (`orders.*`) each see every order;
//! * three workers form the group "workers": each order goes to exactly one
//!   of them (by key), so together they process every order once.
//!
//! Run: `cargo run -p chronica --example bus_multiple`

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronica::{Director, Event, EventBus, NodeError, SubscribeOptions};

const ORDERS: u64 = 1000;

#[derive(serde::Serialize)]
struct Order {
    id: u64,
    total: f64,
}

fn counter(n: &Arc<AtomicU64>) -> impl Fn(&Event) -> Result<(), NodeError> + Send + Sync + 'static {
    let n = n.clone();
    move |_| {
        n.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn main() -> Result<(), chronica::Error> {
    let bus = EventBus::from_builder(Director::builder())?;
    let (audit, metrics, group): (Arc<AtomicU64>, Arc<AtomicU64>, Arc<AtomicU64>) = Default::default();
    bus.on("orders.>", counter(&audit), SubscribeOptions::default())?;
    bus.on("orders.*", counter(&metrics), SubscribeOptions::default())?;
    let processed_by: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    for i in 1..=3 {
        let (name, by, total) = (format!("worker-{i}"), processed_by.clone(), Arc::clone(&group));
        let worker = move |e: &Event| -> Result<(), NodeError> {
            let order: serde_json::Value = e.json().map_err(|err| NodeError::new(err.to_string()))?;
            assert!(order["id"].as_u64().is_some());
            *by.lock().expect("lock").entry(name.clone()).or_default() += 1;
            total.fetch_add(1, Ordering::Relaxed);
            Ok(())
        };
        bus.on("orders.created", worker, SubscribeOptions::default().group("workers"))?;
    }

    for id in 0..ORDERS {
        let order = Order { id, total: id as f64 * 1.5 };
        bus.emit_value_keyed("orders.created", format!("customer-{}", id % 17), &order)?;
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let done = || [&audit, &metrics, &group].iter().all(|n| n.load(Ordering::Relaxed) == ORDERS);
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "audit saw {}, metrics saw {}, the group processed {}",
        audit.load(Ordering::Relaxed),
        metrics.load(Ordering::Relaxed),
        group.load(Ordering::Relaxed)
    );
    for (uid, n) in processed_by.lock().expect("lock").iter() {
        println!("  {uid}: {n} orders");
    }
    assert_eq!(group.load(Ordering::Relaxed), ORDERS);
    bus.close(Duration::from_secs(2))?;
    Ok(())
}
