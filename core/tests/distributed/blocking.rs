//! A local node under the `block` policy slows the remote events meant for
//! it, and nothing else: the layer's own work (publishing this instance's
//! emits, acknowledging) goes on while a remote event waits for room.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronica::{Batch, Director, Distributed, Message, NodeError, NodeOptions, Overflow};

use crate::common::{config, recorder, wait_for};

const WAIT: Duration = Duration::from_secs(20);

/// Two full `block` nodes on instance b (one ungrouped, one in a group:
/// each holds one of b's subscriptions waiting for room) must not keep b's
/// own emit from reaching instance a.
pub(crate) fn a_full_block_node_does_not_stall_the_instance(url: &str) {
    let token = "blocking-test";
    let da = Director::builder().trust_token(token).build().unwrap();
    let db = Director::builder().trust_token(token).block_timeout(Duration::from_secs(600)).build().unwrap();
    let a = Distributed::connect(&da, url, config("a", "chronica")).unwrap();
    let b = Distributed::connect(&db, url, config("b", "chronica")).unwrap();
    let open = Arc::new(AtomicBool::new(false));
    let gate = {
        let open = open.clone();
        move |batch: &Batch| -> Result<(), NodeError> {
            while !batch.is_root() && !open.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        }
    };
    let blocking = || NodeOptions::default().topic("t").overflow(Overflow::Block).queue_capacity(1);
    b.register_with("slow", gate.clone(), blocking()).unwrap();
    b.register_with("slow-member", gate, blocking().group("g")).unwrap();
    let (pings, ping_node) = recorder();
    a.register_with("pinged", ping_node, NodeOptions::default().topic("ping")).unwrap();
    for i in 0..10 {
        a.emit(Message::new("t", format!("{i}"))).unwrap();
    }
    // The pull, then one event held in the gated callback fills the lane
    // (capacity 1): the next one makes each of b's two subscriptions wait.
    let full = |uid: &str| db.stats(uid).unwrap().accepted >= 2;
    assert!(wait_for(WAIT, || full("slow") && full("slow-member")));
    std::thread::sleep(Duration::from_millis(100));
    b.emit(Message::new("ping", "from b")).unwrap();
    let arrived = wait_for(WAIT, || pings.lock().len() == 1);
    open.store(true, Ordering::SeqCst);
    assert!(arrived, "b's emit was not published while its block nodes were full: {:?}", b.stats());
    for uid in ["slow", "slow-member"] {
        assert!(wait_for(WAIT, || db.stats(uid).unwrap().delivered == 11), "{uid}: {:?}", db.stats(uid));
        let s = db.stats(uid).unwrap();
        assert_eq!((s.dropped, s.dead_lettered, s.pending), (0, 0, 0), "{uid}");
    }
    a.close(Duration::from_secs(5)).unwrap();
    b.close(Duration::from_secs(5)).unwrap();
}
