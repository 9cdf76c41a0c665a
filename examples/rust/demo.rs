//! The main job, embedded: a host with several nodes, one failing and then
//! recovering, a late joiner rebuilding its state from the current-state
//! event, and a stats table at the end.
//!
//! Run with `make demo` or `cargo run -p chronica --example demo`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronica::{Batch, Director, Message, NodeError, RetryPolicy, PULL_CURRENT_STATE};

fn main() -> Result<(), chronica::Error> {
    let retry = RetryPolicy { initial_delay: Duration::from_millis(50), ..RetryPolicy::default() };
    let director = Director::builder()
        .trust_token("demo-token")
        .retry(retry)
        .on_error(|uid, err| println!("  [hook] {uid} failed: {err} (will retry)"))
        .build()?;

    // Two healthy replicas that count what they apply.
    for uid in ["replica-a", "replica-b"] {
        let applied = AtomicUsize::new(0);
        let name = uid.to_owned();
        director.register(uid, move |batch: &Batch| -> Result<(), NodeError> {
            for e in batch.iter().filter(|e| !e.is_root()) {
                applied.fetch_add(1, Ordering::Relaxed);
                if e.topic() == "orders.shipped" {
                    println!("  {name} applied {} #{}", e.topic(), e.id());
                }
            }
            Ok(())
        })?;
    }

    // A flaky node: its backend is down for the first few attempts.
    let down = Arc::new(AtomicBool::new(true));
    let attempts = AtomicUsize::new(0);
    let told = AtomicBool::new(false);
    let d = down.clone();
    director.register("flaky", move |batch: &Batch| -> Result<(), NodeError> {
        if batch.is_root() {
            return Ok(());
        }
        if d.load(Ordering::SeqCst) {
            let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= 3 {
                d.store(false, Ordering::SeqCst); // the backend comes back
            }
            return Err(NodeError::new(format!("backend unavailable (attempt {n})")));
        }
        if !told.swap(true, Ordering::SeqCst) {
            println!("  flaky recovered: its held batch of {} went through", batch.len());
        }
        Ok(())
    })?;

    // The producer is a node too, so its own events skip it.
    director.register("producer", |_: &Batch| -> Result<(), NodeError> { Ok(()) })?;

    println!("emitting 1,000 order events from producer ...");
    for i in 0..1000 {
        let topic = if i % 100 == 99 { "orders.shipped" } else { "orders.created" };
        director
            .emit(Message::new(topic, format!("{{\"order\":{i}}}")).source("producer").key(format!("{i}")))?;
    }

    // A late joiner: its first event is the current-state pull.
    let (dd, joined) = (director.clone(), Arc::new(AtomicBool::new(false)));
    let j = joined.clone();
    director.register("late-joiner", move |batch: &Batch| -> Result<(), NodeError> {
        for e in batch.iter() {
            if let Some(root) = e.as_root().filter(|r| r.action() == PULL_CURRENT_STATE) {
                let state: serde_json::Value = e.json().map_err(|x| NodeError::new(x.to_string()))?;
                println!(
                    "  late-joiner pulled current state: peers={} token={:?}",
                    state["peers"],
                    root.trust_token()
                );
                // Ask a peer for a snapshot, as a real replica would.
                let ask = Message::new("state.request", "{}").source("late-joiner");
                dd.emit_to("replica-a", ask).map_err(|x| NodeError::new(x.to_string()))?;
                j.store(true, Ordering::SeqCst);
            }
        }
        Ok(())
    })?;

    while down.load(Ordering::SeqCst) || !joined.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let nodes = director.nodes();
    let undelivered = director.close(Duration::from_secs(10))?;

    println!();
    println!(
        "{:<12} {:>8} {:>9} {:>7} {:>6} {:>7} {:>7} {:>8}  last_error",
        "node", "accepted", "delivered", "dropped", "dead", "pending", "retries", "failures"
    );
    for uid in &nodes {
        let s = director.stats(uid)?;
        assert!(s.balanced(), "accounting equation broken for {uid}");
        println!(
            "{uid:<12} {:>8} {:>9} {:>7} {:>6} {:>7} {:>7} {:>8}  {}",
            s.accepted,
            s.delivered,
            s.dropped,
            s.dead_lettered,
            s.pending,
            s.retries,
            s.failures,
            s.last_error.unwrap_or_default()
        );
    }
    println!("undelivered at close: {undelivered}");
    Ok(())
}
