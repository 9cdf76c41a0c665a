//! The scenarios every adapter passes.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronica::mq::{self, Message as MqMessage, MqError};
use chronica::{Director, Distributed, DistributedConfig, Message, NodeOptions};

use crate::common::{self, config, recorder, wait_for};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "fabric-secret";

/// A name unique to this test run.
pub(crate) fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{what}-{}-{:x}", std::process::id(), nanos)
}

fn director() -> Director {
    Director::builder().trust_token(TOKEN).queue_capacity(200_000).build().unwrap()
}

fn raw_publish(url: &str, topic: &str, msg: MqMessage) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let adapter = mq::connect(url).await.expect("connect raw client");
        adapter.publish(topic, msg).await.expect("raw publish");
        adapter.close().await.unwrap();
    });
}

/// Broadcast with sender exclusion, unicast, consumer-group split, root
/// events and their signatures, a foreign message, a malformed one.
pub(crate) fn scenario(url: &str) {
    let prefix = unique("t");
    let (da, db) = (director(), director());
    let a = Distributed::connect(&da, url, config("inst-a", &prefix)).expect("instance a");
    let b = Distributed::connect(&db, url, config("inst-b", &prefix)).expect("instance b");
    let (a1, a1_node) = recorder();
    let (b1, b1_node) = recorder();
    let (ga, ga_node) = recorder();
    let (gb, gb_node) = recorder();
    a.register_with("a1", a1_node, NodeOptions::default()).unwrap();
    b.register_with("b1", b1_node, NodeOptions::default()).unwrap();
    a.register_with("ga", ga_node, NodeOptions::default().group("workers")).unwrap();
    b.register_with("gb", gb_node, NodeOptions::default().group("workers")).unwrap();

    // Broadcast from a1: b1 gets all, a1 none, the group each event once.
    const N: usize = 40;
    for i in 0..N {
        a.emit(Message::new("orders.new", format!("o{i}")).source("a1")).unwrap();
    }
    assert!(wait_for(WAIT, || b1.lock().len() >= N), "b1 got {} of {N}", b1.lock().len());
    assert!(
        wait_for(WAIT, || ga.lock().len() + gb.lock().len() >= N),
        "group got {}; a {:?}; b {:?}",
        ga.lock().len() + gb.lock().len(),
        a.stats(),
        b.stats()
    );
    // An echo of the sender's own broadcast, or a second copy at b1, would
    // come after b1's last event: give it time to show.
    std::thread::sleep(Duration::from_millis(500));
    assert!(a1.lock().is_empty(), "sender received its own broadcast: {:?}", a1.lock());
    assert_eq!(b1.lock().len(), N);
    assert!(b1.lock().iter().all(|s| s.source.as_deref() == Some("a1") && s.topic == "orders.new"));
    let mut group: Vec<Vec<u8>> =
        ga.lock().iter().chain(gb.lock().iter()).map(|s| s.payload.clone()).collect();
    group.sort();
    group.dedup();
    assert_eq!(group.len(), N, "each event once across the group");
    assert_eq!(ga.lock().len() + gb.lock().len(), N);

    // Unicast across processes.
    a.emit_to("b1", Message::new("direct", "to-b1").source("a1")).unwrap();
    assert!(wait_for(WAIT, || b1.lock().iter().any(|s| s.payload == b"to-b1")));

    // A root event reaches every node of both instances.
    a.emit_root("fabric.sync", "{}").unwrap();
    for (name, rec) in [("a1", &a1), ("b1", &b1), ("ga", &ga), ("gb", &gb)] {
        assert!(
            wait_for(WAIT, || rec.lock().iter().any(|s| s.root && s.topic == "fabric.sync")),
            "{name} missed root"
        );
    }

    // Unsigned and forged root events from the broker are rejected.
    let root_msg = |sig: Option<&str>| {
        let mut m = crate::common::with_headers(
            "evil",
            &[
                ("chronica-id", "1"),
                ("chronica-origin", "mallory"),
                ("chronica-kind", "root"),
                ("chronica-ts", "1"),
                ("chronica-topic", "fabric.evil"),
            ],
        );
        if let Some(s) = sig {
            m.headers.push(("chronica-sig".into(), s.into()));
        }
        m
    };
    raw_publish(url, &prefix, root_msg(None));
    raw_publish(url, &prefix, root_msg(Some(&"ab".repeat(32))));
    assert!(
        wait_for(WAIT, || b.stats().rejected_unsigned >= 1 && b.stats().rejected_forged >= 1),
        "{:?}",
        b.stats()
    );
    assert!(!b1.lock().iter().any(|s| s.topic == "fabric.evil"));

    // A foreign producer's plain message is an event with no source.
    raw_publish(url, &prefix, MqMessage::new("plain-hello"));
    assert!(wait_for(WAIT, || b1.lock().iter().any(|s| s.payload == b"plain-hello" && s.source.is_none())));
    assert!(b.stats().foreign >= 1);

    // A malformed message is counted and dead-lettered, never delivered.
    let mut bad = MqMessage::new("broken");
    bad.headers.push(("chronica-id".into(), "not-a-number".into()));
    raw_publish(url, &prefix, bad);
    assert!(wait_for(WAIT, || b.stats().malformed >= 1 && b.stats().dead_lettered >= 1), "{:?}", b.stats());
    assert!(!b1.lock().iter().any(|s| s.payload == b"broken"));

    for d in [&da, &db] {
        for uid in d.nodes() {
            assert!(d.stats(&uid).unwrap().balanced(), "{uid}: {:?}", d.stats(&uid));
        }
    }
    assert_eq!(a.close(Duration::from_secs(10)).unwrap(), 0);
    b.close(Duration::from_secs(10)).unwrap();
    da.close(Duration::from_secs(5)).unwrap();
    db.close(Duration::from_secs(5)).unwrap();
}

/// `count` events from a to two nodes on b; with `kill`, the broker is
/// SIGKILLed a fifth of the way through and restarted. Every event reaches
/// both nodes exactly once (at least once on the wire, de-duplicated).
pub(crate) fn stream_exactly_once(url: &str, count: usize, kill: Option<&str>) {
    let prefix = unique("f");
    let (da, db) = (director(), director());
    let cfg = |id: &str| DistributedConfig { outbox_capacity: count * 2, ..config(id, &prefix) };
    let a = Distributed::connect(&da, url, cfg("src")).expect("instance src");
    let b = Distributed::connect(&db, url, cfg("dst")).expect("instance dst");
    let seen: Vec<Arc<Vec<AtomicU8>>> =
        (0..2).map(|_| Arc::new((0..count).map(|_| AtomicU8::new(0)).collect())).collect();
    for (i, s) in seen.iter().enumerate() {
        let s = s.clone();
        let node = move |batch: &chronica::Batch| -> Result<(), chronica::NodeError> {
            for e in batch.iter().filter(|e| !e.is_root()) {
                let n = u64::from_le_bytes(e.payload()[..8].try_into().unwrap()) as usize;
                s[n].fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        };
        b.register_with(&format!("sink{i}"), node, NodeOptions::default()).unwrap();
    }
    let started = Instant::now();
    let mut restart = None;
    for n in 0..count {
        a.emit(Message::new("stream", (n as u64).to_le_bytes().to_vec())).unwrap();
        if n == count / 5 {
            if let Some(broker) = kill {
                common::brokers(&["kill", broker]);
                let broker = broker.to_owned();
                restart = Some(std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(2));
                    common::brokers(&["up", &broker]);
                }));
            }
        }
    }
    if let Some(t) = restart {
        t.join().unwrap();
    }
    let limit = Duration::from_secs(300);
    assert!(a.flush(limit), "not all published: {:?}", a.stats());
    let done = || seen.iter().all(|s| s.iter().all(|c| c.load(Ordering::Relaxed) >= 1));
    let ok = wait_for(limit, done);
    let missing: Vec<usize> =
        seen.iter().map(|s| s.iter().filter(|c| c.load(Ordering::Relaxed) == 0).count()).collect();
    assert!(ok, "missing per node {missing:?}; src {:?}; dst {:?}", a.stats(), b.stats());
    std::thread::sleep(Duration::from_millis(500));
    for s in &seen {
        let dup = s.iter().filter(|c| c.load(Ordering::Relaxed) > 1).count();
        assert_eq!(dup, 0, "events delivered twice after de-duplication");
    }
    for uid in db.nodes() {
        let st = db.stats(&uid).unwrap();
        assert!(st.balanced(), "{uid}: {st:?}");
        assert_eq!(st.accepted, count as u64 + 1, "{uid}: {st:?}"); // + pull_current_state
        assert_eq!(st.dropped, 0);
    }
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.buffer_dropped, 0);
    assert!(sa.published >= count as u64);
    eprintln!("{count} events via {url} in {:?} (kill: {kill:?}); src {sa:?}; dst {sb:?}", started.elapsed());
    a.close(Duration::from_secs(10)).unwrap();
    b.close(Duration::from_secs(10)).unwrap();
    da.close(Duration::from_secs(5)).unwrap();
    db.close(Duration::from_secs(5)).unwrap();
}

/// An unreachable broker or a malformed URL fails at construction, fast.
pub(crate) fn unreachable(broker: &str) {
    let d = director();
    let t = Instant::now();
    let cfg = DistributedConfig { connect_timeout: Duration::from_secs(8), ..DistributedConfig::default() };
    let e = Distributed::connect(&d, &format!("{broker}://127.0.0.1:1"), cfg.clone()).unwrap_err();
    assert!(matches!(e, MqError::Connect(_) | MqError::Config(_)), "{e}");
    assert!(t.elapsed() < Duration::from_secs(15), "took {:?}", t.elapsed());
    let e = Distributed::connect(&d, &format!("{broker}://"), cfg.clone()).unwrap_err();
    assert!(matches!(e, MqError::Config(_)), "{e}");
    d.close(Duration::from_secs(1)).unwrap();
}

/// One instance's events reach another in the order they were emitted
/// (with `key`, as Kafka keeps order per partition and so per key only),
/// while the publisher keeps several batches in flight.
pub(crate) fn emit_order_kept(url: &str, key: Option<&str>) {
    const N: u64 = 20_000;
    let prefix = unique("o");
    let (da, db) = (director(), director());
    let a = Distributed::connect(&da, url, config("src", &prefix)).expect("instance src");
    let b = Distributed::connect(&db, url, config("dst", &prefix)).expect("instance dst");
    let got = Arc::new(parking_lot::Mutex::new(Vec::with_capacity(N as usize)));
    let g = got.clone();
    let node = move |batch: &chronica::Batch| -> Result<(), chronica::NodeError> {
        let mut g = g.lock();
        g.extend(
            batch
                .iter()
                .filter(|e| !e.is_root())
                .map(|e| u64::from_le_bytes(e.payload()[..8].try_into().unwrap())),
        );
        Ok(())
    };
    b.register_with("sink", node, NodeOptions::default()).unwrap();
    for n in 0..N {
        let m = Message::new("ordered", n.to_le_bytes().to_vec());
        a.emit(match key {
            Some(k) => m.key(k.as_bytes().to_vec()),
            None => m,
        })
        .unwrap();
    }
    assert!(a.flush(WAIT * 4), "not all published: {:?}", a.stats());
    assert!(wait_for(WAIT * 4, || got.lock().len() as u64 >= N), "{:?}", b.stats());
    let got = got.lock();
    let first_out_of_order = got.windows(2).position(|w| w[1] <= w[0]);
    assert_eq!(
        first_out_of_order,
        None,
        "order broken near {:?}",
        first_out_of_order.map(|i| &got[i..i + 2])
    );
    assert_eq!(got.len() as u64, N);
    a.close(Duration::from_secs(10)).unwrap();
    b.close(Duration::from_secs(10)).unwrap();
    da.close(Duration::from_secs(5)).unwrap();
    db.close(Duration::from_secs(5)).unwrap();
}
