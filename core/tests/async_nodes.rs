//! Async nodes on the director's own runtime and on a caller's runtime.

mod common;
use common::*;

use chronica::{async_node, Batch, Director, Message, NodeOptions};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

fn recorder(seen: Arc<Mutex<Vec<String>>>) -> impl chronica::AsyncNode {
    async_node(move |b: Batch| {
        let seen = seen.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            seen.lock().extend(b.iter().map(|e| e.topic().to_owned()));
            Ok(())
        }
    })
}

#[test]
fn async_node_on_the_owned_runtime() {
    let d = Director::new().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    d.register_async("a", recorder(seen.clone()), NodeOptions::default()).unwrap();
    for i in 0..50 {
        d.emit(Message::new(format!("{i}"), "")).unwrap();
    }
    settle(&d, "a");
    let seen = seen.lock();
    assert_eq!(seen.len(), 51);
    assert_eq!(seen[1..].to_vec(), (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
    drop(seen);
    assert_eq!(d.close(Duration::from_secs(2)), Ok(0));
}

#[test]
fn async_node_on_a_caller_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let d = Director::builder().runtime(rt.handle().clone()).build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    d.register_async("a", recorder(seen.clone()), NodeOptions::default()).unwrap();
    d.emit(Message::new("x", "")).unwrap();
    settle(&d, "a");
    assert_eq!(seen.lock().len(), 2);
    assert_eq!(d.close(Duration::from_secs(2)), Ok(0));
}

#[test]
fn async_failures_retry_like_sync_ones() {
    let d = Director::builder()
        .retry(chronica::RetryPolicy { initial_delay: Duration::from_millis(5), ..Default::default() })
        .build()
        .unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    d.register_async(
        "a",
        async_node(move |_b: Batch| {
            let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n < 3 {
                    Err("not yet".into())
                } else {
                    Ok(())
                }
            }
        }),
        NodeOptions::default(),
    )
    .unwrap();
    let s = settle(&d, "a");
    assert_eq!((s.failures, s.retries, s.delivered), (3, 3, 1));
}

/// A hook runs on the async node's task: an `unregister` of that node from
/// it must not wait for the task it runs on (it waited forever, and a
/// later `close` with it).
#[test]
fn unregister_from_an_async_nodes_hook_returns() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;
    let director: Arc<OnceLock<Director>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let (dir, flag) = (director.clone(), done.clone());
    let d = Director::builder()
        .on_error(move |uid, _| {
            if uid == "a" {
                let _ = dir.get().unwrap().unregister("a");
                flag.store(true, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    director.set(d.clone()).unwrap();
    let failing = async_node(|b: Batch| async move {
        if b.is_root() {
            Ok(())
        } else {
            Err("no".into())
        }
    });
    d.register_async("a", failing, NodeOptions::default()).unwrap();
    d.emit(Message::new("t", "x")).unwrap();
    wait_for("unregister from the hook to return", || done.load(Ordering::SeqCst));
    assert!(d.nodes().is_empty());
    assert_eq!(d.close(Duration::from_secs(5)), Ok(0));
}
