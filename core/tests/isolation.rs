//! SPEC 2.8: a slow, failing or blocked node delays nobody else and never
//! blocks `emit`.

mod common;
use common::*;

use chronica::{async_node, Batch, Director, Message, NodeError, NodeOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn sixty_four_blocked_callbacks_do_not_stall_a_sixty_fifth() {
    let d = Director::new().unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for i in 0..64 {
        let (r, e) = (release.clone(), entered.clone());
        d.register_with(
            &format!("blocked-{i}"),
            move |b: &Batch| -> Result<(), NodeError> {
                if !b.is_root() {
                    e.fetch_add(1, Ordering::SeqCst);
                    while !r.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                Ok(())
            },
            NodeOptions::default().topic("block"),
        )
        .unwrap();
    }
    // An async node on the director's runtime must keep running too.
    let async_seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = async_seen.clone();
    d.register_async(
        "async",
        async_node(move |b: Batch| {
            let a = a.clone();
            async move {
                a.fetch_add(b.len(), Ordering::SeqCst);
                Ok(())
            }
        }),
        NodeOptions::default().topic("live"),
    )
    .unwrap();
    let live = Log::new();
    d.register_with("live", live.node(), NodeOptions::default().topic("live")).unwrap();
    d.emit(Message::new("block", "")).unwrap();
    wait_for("all 64 callbacks to block", || entered.load(Ordering::SeqCst) == 64);
    for i in 0..100 {
        d.emit(Message::new("live", format!("{i}"))).unwrap();
    }
    wait_for("the 65th node to receive", || live.count_user() == 100);
    wait_for("the async node to receive", || async_seen.load(Ordering::SeqCst) == 101);
    release.store(true, Ordering::SeqCst);
    assert_eq!(d.close(Duration::from_secs(5)), Ok(0));
}

#[test]
fn a_failing_node_does_not_delay_a_healthy_one() {
    let d = Director::new().unwrap();
    let bad = Log::new();
    bad.fail.store(true, Ordering::SeqCst);
    d.register("bad", bad.node()).unwrap();
    let good = Log::new();
    d.register("good", good.node()).unwrap();
    for _ in 0..1000 {
        d.emit(Message::new("t", "")).unwrap();
    }
    wait_for("good to get everything", || good.count_user() == 1000);
    assert_eq!(bad.count_user(), 0);
    let s = d.stats("bad").unwrap();
    assert!(s.balanced() && s.pending == 1001, "{s:?}");
    assert_eq!(d.close(Duration::from_millis(20)), Ok(1001));
}
