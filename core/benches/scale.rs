//! Routing at scale: what registration, unregistration, a bus `off` and a
//! topic-filtered emit cost with thousands of nodes registered. Each node
//! subscribes to a topic of its own (`t.<i>`), so an emit on one node's
//! topic reaches one node among all of them.
//!
//! The emit is timed twice in the same run, routed by the topic index
//! (`Director::emit`) and by the linear scan over every node that routed
//! before the index (`Director::emit_scanning`, kept for this comparison
//! and as the tests' model), and the ratio printed.
//!
//! `cargo bench -p chronica --bench scale` (`make bench-scale`).

use std::time::{Duration, Instant};

use chronica::{Batch, Director, EventBus, Message, NodeError, NodeOptions, SubscribeOptions};

/// Emits timed per routing, after as many unmeasured ones.
const EMITS: u32 = 20_000;
/// Unregistrations and `off`s timed at 10,000.
const LEAVES: usize = 1_000;

fn uid(i: usize) -> String {
    format!("n{i:05}")
}

fn quiet(_: &Batch) -> Result<(), NodeError> {
    Ok(())
}

/// Registers `n` nodes (topic `t.<i>` each) and prints the time taken.
fn register(n: usize) -> Director {
    let d = Director::new().expect("director");
    let t = Instant::now();
    for i in 0..n {
        d.register_with(&uid(i), quiet, NodeOptions::default().topic(format!("t.{i}"))).expect("register");
    }
    let took = t.elapsed();
    println!("register {n:>6} nodes: {:>9.3} ms total, {:>8.2} us per node", ms(took), us(took) / n as f64);
    d
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Times `EMITS` emits of `t.<n/2>`, which one node takes.
fn emits(d: &Director, n: usize, emit: impl Fn(&Director, Message<'_>)) -> Duration {
    let topic = format!("t.{}", n / 2);
    for _ in 0..EMITS {
        emit(d, Message::new(&topic, "x"));
    }
    let t = Instant::now();
    for _ in 0..EMITS {
        emit(d, Message::new(&topic, "x"));
    }
    t.elapsed()
}

fn main() {
    drop(register(1_000));
    let d = register(10_000);

    let indexed = emits(&d, 10_000, |d, m| {
        d.emit(m).expect("emit");
    });
    let scanning = emits(&d, 10_000, |d, m| {
        d.emit_scanning(m).expect("emit");
    });
    let per = |t: Duration| us(t) / f64::from(EMITS);
    println!("emit among 10000 filtered nodes, index: {:>8.3} us per emit", per(indexed));
    println!("emit among 10000 filtered nodes, scan:  {:>8.3} us per emit", per(scanning));
    println!("ratio scan / index = {:.1}x", scanning.as_secs_f64() / indexed.as_secs_f64());

    let t = Instant::now();
    for i in 0..LEAVES {
        d.unregister(&uid(i * 10)).expect("unregister");
    }
    let took = t.elapsed();
    println!(
        "unregister {LEAVES} of 10000 nodes: {:>9.3} ms total, {:>8.2} us per node",
        ms(took),
        us(took) / LEAVES as f64
    );
    d.close(Duration::from_secs(60)).expect("close");

    let bus = EventBus::from_builder(Director::builder()).expect("bus");
    let subs: Vec<_> = (0..10_000)
        .map(|i| bus.on(&format!("t.{i}"), |_| Ok(()), SubscribeOptions::default()).expect("on"))
        .collect();
    let t = Instant::now();
    for s in subs.iter().step_by(10) {
        bus.off(s).expect("off");
    }
    let took = t.elapsed();
    println!("bus off at 10000 subscriptions: {:>8.2} us per off ({LEAVES} offs)", us(took) / LEAVES as f64);
    bus.close(Duration::from_secs(60)).expect("bus close");
}
