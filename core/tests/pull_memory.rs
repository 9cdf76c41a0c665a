//! The heap that nodes waiting to take their `pull_current_state` hold
//! (SPEC 2.7), counted by a global allocator: the only test in this file,
//! so that the count is of it alone (each integration test file is a
//! process of its own). Nothing is timed.
//!
//! Formerly the pull's payload (`{"peers": [...]}`, every other
//! node's uid) was rendered at registration and held until delivered, so
//! n nodes registered disconnected held about n^2/2 uids of JSON. They
//! now hold a snapshot of the routed uids that shares its chunks with the
//! routes, rendered when the pull is taken.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use chronica::{Batch, Director, NodeError, NodeOptions};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on unchanged to `System`, which upholds
// the `GlobalAlloc` contract; the counting touches only an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are `System`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`, as the caller says.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const NODES: usize = 3_000;
/// Uid length: a UUID (36 bytes) with a prefix, as a hub's stream nodes.
const UID_LEN: usize = 64;

fn uid(i: usize) -> String {
    format!("{:0>width$}", format!("stream-{i}"), width = UID_LEN)
}

fn quiet(_: &Batch) -> Result<(), NodeError> {
    Ok(())
}

/// 3,000 nodes registered disconnected, with 64-byte uids. With the
/// payload rendered at registration they held 3,000^2/2 uids of 67 JSON
/// bytes (quotes and comma), 301 MB, and this measured 459 MB held in all
/// (153 KB a node): it failed. With the snapshot it measured
/// 16.8 MB (5.6 KB a node, mostly the node's own state). The bound is a
/// tenth of the old payloads alone.
#[test]
fn nodes_waiting_for_their_pull_hold_no_quadratic_heap() {
    let d = Director::new().unwrap();
    let uids: Vec<String> = (0..NODES).map(uid).collect();
    let before = LIVE.load(Ordering::Relaxed);
    for u in &uids {
        d.register_with(u, quiet, NodeOptions::default().connected(false)).unwrap();
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    let old_payloads = (NODES * (NODES - 1) / 2 * (UID_LEN + 3)) as isize;
    let per_node = held / NODES as isize;
    assert!(
        held < old_payloads / 10,
        "{NODES} waiting nodes hold {held} bytes ({per_node} a node); their payloads alone were {old_payloads}"
    );
    // Still the peers at registration, once a node takes its pull.
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = parking_lot::Mutex::new(tx);
    let last = uids.last().unwrap();
    d.unregister(last).unwrap();
    let node = move |b: &Batch| -> Result<(), NodeError> {
        b.iter().for_each(|e| tx.lock().send(e.payload().clone()).unwrap());
        Ok(())
    };
    d.register_with(last, node, NodeOptions::default().connected(false)).unwrap();
    d.unregister(&uids[0]).unwrap();
    d.node_connected(last).unwrap();
    let got = rx.recv_timeout(Duration::from_secs(60)).expect("the pull");
    let want: Vec<&str> = uids[..NODES - 1].iter().map(String::as_str).collect();
    assert_eq!(got, serde_json::json!({ "peers": want }).to_string());
}
