//! Workload W1 (SPEC section 6): one producer emits 1,000,000 events of 64
//! bytes to 8 nodes (the producer is a registered 9th node, excluded); each
//! node counts. Chronica and two peers run in the same invocation, each in a
//! child process of its own so its peak memory (ru_maxrss) is its own.
//!
//! `chronica-many` is the same workload sent by `emit_many`, 64 events a
//! call: the producer batching that the crossbeam peer does too.
//!
//! The last cases, `ring-ceiling` and `ring-cloned`, are not peers but
//! yardsticks: a bare shared ring with none of the engine's semantics, its
//! consumers reading in place or taking an `Arc` clone per event (see
//! `peers/ring.rs`).
//!
//! `cargo bench -p chronica --bench w1` runs everything; `-- <case>` runs one.

#[path = "peers/ring.rs"]
mod ring;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronica::{Batch, Bytes, Director, Message, NodeError, NodeOptions, Overflow};

const EVENTS: u64 = 1_000_000;
const PAYLOAD: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if let Some(case) = args.first() {
        let (deliveries, secs) = run_case(case);
        println!("RESULT {case} {deliveries} {secs:.6} {}", peak_rss_kib());
        return;
    }
    let cases = [
        ("chronica", "Chronica W1 (8 nodes, block policy, capacity 65,536)"),
        ("chronica-unbounded", "Chronica W1, drop_oldest with capacity E (no back-pressure)"),
        ("chronica-many", "Chronica W1 by emit_many, 64 events a call (as the crossbeam peer batches)"),
        ("tokio-broadcast", "tokio::sync::broadcast, 8 receivers, capacity E"),
        ("crossbeam-batch", "crossbeam channel per node, Arc events, batches of 64"),
        ("chronica-64", "Chronica W1 with 64 nodes"),
        ("chronica-flaky", "Chronica W1, one node failing every other call"),
        ("ring-ceiling", "a bare shared ring, no engine semantics (the ceiling of that design)"),
        ("ring-cloned", "the same ring, each consumer taking an Arc clone per event"),
    ];
    let exe = std::env::current_exe().expect("bench executable path");
    let mut rates = Vec::new();
    println!("{:<18} {:>14} {:>10} {:>12}  what", "case", "deliveries/s", "seconds", "peak MiB");
    for (case, what) in cases {
        let out = Command::new(&exe).arg(case).output().expect("run bench case");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.starts_with("RESULT")).unwrap_or_else(|| panic!("{case}: {text}"));
        let f: Vec<&str> = line.split_whitespace().collect();
        let (n, secs, kib): (f64, f64, f64) =
            (f[2].parse().unwrap(), f[3].parse().unwrap(), f[4].parse().unwrap());
        let rate = n / secs;
        println!("{case:<18} {:>14.0} {secs:>10.3} {:>12.1}  {what}", rate, kib / 1024.0);
        rates.push((case, rate));
    }
    let rate = |name: &str| rates.iter().find(|(c, _)| *c == name).map(|(_, r)| *r).unwrap();
    println!(
        "ratio chronica / tokio-broadcast = {:.2}x, chronica / crossbeam-batch = {:.2}x",
        rate("chronica") / rate("tokio-broadcast"),
        rate("chronica") / rate("crossbeam-batch")
    );
    println!(
        "ratio chronica-many / tokio-broadcast = {:.2}x, chronica-many / crossbeam-batch = {:.2}x",
        rate("chronica-many") / rate("tokio-broadcast"),
        rate("chronica-many") / rate("crossbeam-batch")
    );
    println!(
        "ratio ring-ceiling / tokio-broadcast = {:.2}x, ring-ceiling / crossbeam-batch = {:.2}x",
        rate("ring-ceiling") / rate("tokio-broadcast"),
        rate("ring-ceiling") / rate("crossbeam-batch")
    );
    println!(
        "ratio ring-cloned / ring-ceiling = {:.2}x, ring-cloned / crossbeam-batch = {:.2}x",
        rate("ring-cloned") / rate("ring-ceiling"),
        rate("ring-cloned") / rate("crossbeam-batch")
    );
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn run_case(case: &str) -> (u64, f64) {
    match case {
        "chronica" => chronica(8, false),
        "chronica-unbounded" => chronica_with(8, false, Overflow::DropOldest, 1),
        "chronica-many" => chronica_with(8, false, Overflow::Block, RUN),
        "chronica-64" => chronica(64, false),
        "chronica-flaky" => chronica(8, true),
        "tokio-broadcast" => tokio_broadcast(8),
        "crossbeam-batch" => crossbeam_batch(8),
        "ring-ceiling" => ring::ring_ceiling(8, EVENTS, PAYLOAD, false),
        "ring-cloned" => ring::ring_ceiling(8, EVENTS, PAYLOAD, true),
        other => panic!("unknown case {other}"),
    }
}

/// Events per `emit_many` call in the `chronica-many` case: the crossbeam
/// peer's batch.
const RUN: usize = 64;

fn chronica(nodes: usize, flaky: bool) -> (u64, f64) {
    chronica_with(nodes, flaky, Overflow::Block, 1)
}

/// `run`: events per call, by `emit` when 1, else by `emit_many`.
fn chronica_with(nodes: usize, flaky: bool, overflow: Overflow, run: usize) -> (u64, f64) {
    let capacity = if overflow == Overflow::Block { 65_536 } else { EVENTS as usize };
    let retry = chronica::RetryPolicy {
        initial_delay: Duration::from_micros(50),
        max_delay: Duration::from_micros(50),
        ..Default::default()
    };
    let d = Director::builder()
        .overflow(overflow)
        .queue_capacity(capacity)
        .block_timeout(Duration::from_secs(60))
        .retry(retry)
        .build()
        .unwrap();
    let counted = Arc::new(AtomicU64::new(0));
    for i in 0..nodes {
        let c = counted.clone();
        let calls = AtomicU64::new(0);
        let fails = flaky && i == 0;
        d.register_with(
            &format!("node-{i}"),
            move |b: &Batch| -> Result<(), NodeError> {
                if fails && calls.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
                    return Err(NodeError::new("flaky"));
                }
                let users = b.iter().filter(|e| !e.is_root()).count();
                c.fetch_add(users as u64, Ordering::Relaxed);
                Ok(())
            },
            NodeOptions::default(),
        )
        .unwrap();
    }
    d.register("producer", |_: &Batch| -> Result<(), NodeError> { Ok(()) }).unwrap();
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    let want = EVENTS * nodes as u64;
    let start = Instant::now();
    if run == 1 {
        for _ in 0..EVENTS {
            d.emit(Message::new("w1", payload.clone()).source("producer")).unwrap();
        }
    } else {
        let mut left = EVENTS as usize;
        while left > 0 {
            let n = left.min(run);
            let msgs = (0..n).map(|_| Message::new("w1", payload.clone()).source("producer"));
            d.emit_many(msgs).unwrap();
            left -= n;
        }
    }
    while counted.load(Ordering::Relaxed) < want {
        std::thread::yield_now();
    }
    let secs = start.elapsed().as_secs_f64();
    for i in 0..nodes {
        let s = d.stats(&format!("node-{i}")).unwrap();
        assert_eq!(s.dropped, 0, "nothing may be dropped");
    }
    d.close(Duration::from_secs(5)).unwrap();
    (want, secs)
}

#[derive(Debug)]
struct PeerEvent {
    _id: u64,
    _payload: Bytes,
}

fn tokio_broadcast(nodes: usize) -> (u64, f64) {
    let (tx, _) = tokio::sync::broadcast::channel::<Arc<PeerEvent>>(EVENTS as usize);
    let counted = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..nodes)
        .map(|_| {
            let mut rx = tx.subscribe();
            let c = counted.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while n < EVENTS {
                    rx.blocking_recv().expect("no lag with capacity E");
                    n += 1;
                }
                c.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    let start = Instant::now();
    for id in 0..EVENTS {
        tx.send(Arc::new(PeerEvent { _id: id, _payload: payload.clone() })).unwrap();
    }
    for h in handles {
        h.join().unwrap();
    }
    (counted.load(Ordering::Relaxed), start.elapsed().as_secs_f64())
}

fn crossbeam_batch(nodes: usize) -> (u64, f64) {
    let counted = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let handles: Vec<_> = (0..nodes)
        .map(|_| {
            let (tx, rx) = crossbeam_channel::unbounded::<Vec<Arc<PeerEvent>>>();
            senders.push(tx);
            let c = counted.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                for batch in rx {
                    n += batch.len() as u64;
                }
                c.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    let start = Instant::now();
    let mut pending: Vec<Vec<Arc<PeerEvent>>> = (0..nodes).map(|_| Vec::with_capacity(64)).collect();
    for id in 0..EVENTS {
        let ev = Arc::new(PeerEvent { _id: id, _payload: payload.clone() });
        for (i, p) in pending.iter_mut().enumerate() {
            p.push(ev.clone());
            if p.len() == 64 {
                senders[i].send(std::mem::replace(p, Vec::with_capacity(64))).unwrap();
            }
        }
    }
    for (i, p) in pending.into_iter().enumerate() {
        if !p.is_empty() {
            senders[i].send(p).unwrap();
        }
    }
    drop(senders);
    for h in handles {
        h.join().unwrap();
    }
    (counted.load(Ordering::Relaxed), start.elapsed().as_secs_f64())
}
