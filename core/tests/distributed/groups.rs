//! A consumer group whose last member on one instance leaves: that
//! instance must stop taking the group's share, and what it had taken
//! without delivering must reach the members elsewhere. Before, it stayed
//! in the broker group and acknowledged its share with nobody to deliver
//! it to: those events were lost, uncounted.

use std::time::Duration;

use chronica::{Director, Distributed, Message, NodeOptions};

use crate::common::{recorder, wait_for};
use crate::suite::unique;

/// Two instances, `inst-a` and `inst-b`, each with a director of its own,
/// on a topic prefix of their own named after `name`.
fn pair(url: &str, name: &str) -> ((Director, Distributed), (Director, Distributed)) {
    let prefix = unique(name);
    let cfg = |id: &str| crate::common::config(id, &prefix);
    let (da, db) = (crate::common::director(), crate::common::director());
    let a = Distributed::connect(&da, url, cfg("inst-a")).expect("instance a");
    let b = Distributed::connect(&db, url, cfg("inst-b")).expect("instance b");
    ((da, a), (db, b))
}

/// `url` may carry broker options that hurry redelivery (Redis:
/// `reclaim_idle_ms`).
pub(crate) fn group_left_by_one_instance(url: &str) {
    const N: usize = 300;
    let ((da, a), (db, b)) = pair(url, "left");
    let (wa, wa_node) = recorder();
    let (wb, wb_node) = recorder();
    a.register_with("src", |_: &chronica::Batch| Ok(()), NodeOptions::default()).unwrap();
    a.register_with("wa", wa_node, NodeOptions::default().group("workers")).unwrap();
    b.register_with("wb", wb_node, NodeOptions::default().group("workers")).unwrap();
    db.unregister("wb").unwrap();
    for n in 0..N {
        a.emit(Message::new("jobs", format!("job{n}")).source("src")).unwrap();
    }
    let all = wait_for(Duration::from_secs(90), || wa.lock().len() >= N);
    let mut got: Vec<String> =
        wa.lock().iter().map(|s| String::from_utf8_lossy(&s.payload).into_owned()).collect();
    got.sort();
    got.dedup();
    assert!(all && got.len() == N, "{url}: the remaining member got {} of {N} jobs", got.len());
    assert!(wb.lock().is_empty(), "the member that left got jobs");
    for (d, x) in [(&da, a), (&db, b)] {
        x.close(Duration::from_secs(10)).unwrap();
        d.close(Duration::from_secs(10)).unwrap();
    }
}

/// A group member emits to its own group; its instance has no other member,
/// the other instance has one. The broker gives each event to one of the
/// instances: the other member's, which delivers it, or the sender's, where
/// sender exclusion leaves nobody. Those are counted (`group_sender_only`),
/// not lost without a trace: the two together account for every event.
pub(crate) fn a_share_only_the_sender_could_take_is_counted(url: &str) {
    const N: usize = 200;
    let ((da, a), (db, b)) = pair(url, "senderonly");
    let (wa, wa_node) = recorder();
    let (wb, wb_node) = recorder();
    a.register_with("wa", wa_node, NodeOptions::default().group("workers")).unwrap();
    b.register_with("wb", wb_node, NodeOptions::default().group("workers")).unwrap();
    for n in 0..N {
        a.emit(Message::new("jobs", format!("job{n}")).source("wa")).unwrap();
    }
    let accounted = || wb.lock().len() as u64 + a.stats().group_sender_only;
    let all = wait_for(Duration::from_secs(90), || accounted() >= N as u64);
    assert!(all, "{url}: {} delivered to wb, {} counted on a", wb.lock().len(), a.stats().group_sender_only);
    assert_eq!(accounted(), N as u64, "{url}");
    assert!(wa.lock().is_empty(), "the sender got its own events");
    assert_eq!(b.stats().group_sender_only, 0);
    for (d, x) in [(&da, a), (&db, b)] {
        x.close(Duration::from_secs(10)).unwrap();
        d.close(Duration::from_secs(10)).unwrap();
    }
}
