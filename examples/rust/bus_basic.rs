//! The smallest EventBus program: one bus, one typed subscription, a few
//! events, a clean close. Mirrors `examples/python/memory_basic.py`.
//!
//! Run: `cargo run -p chronica --example bus_basic`

use std::time::Duration;

use chronica::{Director, Event, EventBus, EventExt, NodeError, SubscribeOptions};

fn main() -> Result<(), chronica::Error> {
    let bus = EventBus::from_builder(Director::builder())?;

    let printer = |e: &Event| -> Result<(), NodeError> {
        match e.content_type() {
            Some(_) => {
                let value: serde_json::Value = e.unmarshal()?;
                println!("[printer] {}: {value} (id {})", e.topic(), e.id());
            }
            None => {
                println!("[printer] {}: {} (id {})", e.topic(), String::from_utf8_lossy(e.payload()), e.id())
            }
        }
        Ok(())
    };
    let sub = bus.on(">", printer, SubscribeOptions::default())?;

    bus.emit("greetings", "hello")?;
    bus.emit("greetings", "bonjour")?;
    bus.emit_value("orders.created", &serde_json::json!({"order": 42, "total": 9.5}))?;

    let last = bus.off(&sub)?;
    println!("printer: {last:?}");
    assert!(last.balanced());
    let undelivered = bus.close(Duration::from_secs(2))?;
    println!("undelivered: {undelivered}");
    Ok(())
}
