//! Async nodes on a caller's runtime (`DirectorBuilder::runtime`) that
//! shuts down while the director is open, or whose own thread calls
//! `close` or `unregister`: nothing waits for good.

use chronica::mq::BoxFuture;
use chronica::{AsyncNode, Batch, Director, DropReason, Error, Message, NodeOptions, SendResult};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs `f` on a thread and returns its result, or panics with `what`
/// after 20 s: the bugs under test hang, and a hang must fail the test
/// (also where a failed assertion leaves a director to close on drop).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("{what} never returned"))
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

/// Delivers root events; a batch of user events it never finishes, after
/// saying it started it. Sets `dropped` in its destructor.
struct Stuck {
    started: Mutex<mpsc::Sender<()>>,
    dropped: Arc<AtomicBool>,
}

impl Stuck {
    fn new() -> (Self, mpsc::Receiver<()>, Arc<AtomicBool>) {
        let (tx, rx) = mpsc::channel();
        let dropped = Arc::new(AtomicBool::new(false));
        (Self { started: Mutex::new(tx), dropped: dropped.clone() }, rx, dropped)
    }
}

impl Drop for Stuck {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl AsyncNode for Stuck {
    fn send<'a>(&'a self, b: &'a Batch) -> BoxFuture<'a, SendResult> {
        let user = b.iter().any(|e| !e.topic().starts_with("chronica."));
        Box::pin(async move {
            if user {
                let _ = self.started.lock().unwrap().send(());
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }
}

/// Counts the user events it delivers; sets `dropped` in its destructor.
struct Counting {
    delivered: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl AsyncNode for Counting {
    fn send<'a>(&'a self, b: &'a Batch) -> BoxFuture<'a, SendResult> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let user = b.iter().filter(|e| !e.topic().starts_with("chronica.")).count();
            self.delivered.fetch_add(user, Ordering::SeqCst);
            Ok(())
        })
    }
}

/// Registers a `Stuck` node "a" on `d` (attached to `rt`), emits three
/// events, and shuts `rt` down once the node is inside its first user
/// call (so the call's batch and two waiting events are left); returns
/// the node's `dropped` flag.
fn stuck_then_shut_down(d: &Director, rt: tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let (node, started, dropped) = Stuck::new();
    d.register_async("a", node, NodeOptions::default()).unwrap();
    for i in 0..3 {
        d.emit(Message::new(format!("t{i}"), "")).unwrap();
    }
    started.recv_timeout(Duration::from_secs(10)).expect("the node never started its batch");
    rt.shutdown_timeout(Duration::from_secs(5));
    dropped
}

/// A runtime that shuts down with a node mid-call and events waiting:
/// `close` returns and reports the call's batch and the
/// waiting events as undelivered, the counters balanced.
#[test]
fn close_after_the_attached_runtime_shut_down_reports_what_its_tasks_held() {
    within("the test", || {
        let rt = multi_thread();
        let d = Director::builder().runtime(rt.handle().clone()).build().unwrap();
        let dropped = stuck_then_shut_down(&d, rt);
        assert!(dropped.load(Ordering::SeqCst), "the runtime's shutdown dropped the node");
        assert_eq!(d.close(Duration::from_secs(1)), Ok(3));
        let s = d.stats("a").unwrap();
        assert_eq!((s.accepted, s.delivered, s.pending), (4, 1, 3), "{s:?}");
        assert!(s.balanced(), "{s:?}");
    });
}

/// The same shutdown, then `unregister`: it returns, and what the dropped
/// tasks held (the batch in the call included) is dropped and reported.
#[test]
fn unregister_after_the_attached_runtime_shut_down_drops_what_its_tasks_held() {
    within("the test", || {
        let rt = multi_thread();
        let reports = Arc::new(AtomicUsize::new(0));
        let r = reports.clone();
        let d = Director::builder()
            .runtime(rt.handle().clone())
            .on_drop(move |rep| {
                assert_eq!(rep.reason, DropReason::Unregistered);
                r.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .unwrap();
        stuck_then_shut_down(&d, rt);
        let s = d.unregister_draining("a", Duration::ZERO).unwrap();
        assert_eq!((s.accepted, s.delivered, s.dropped, s.pending), (4, 1, 3, 0), "{s:?}");
        assert!(s.balanced(), "{s:?}");
        assert_eq!(reports.load(Ordering::SeqCst), 3);
        assert_eq!(d.close(Duration::from_secs(1)), Ok(0));
    });
}

/// A registration onto a runtime already shut down is refused, not left
/// routed with workers that never run.
#[test]
fn registering_on_a_shut_down_runtime_is_refused() {
    within("the test", || {
        let rt = multi_thread();
        let d = Director::builder().runtime(rt.handle().clone()).build().unwrap();
        rt.shutdown_timeout(Duration::from_secs(5));
        let (node, _started, dropped) = Stuck::new();
        match d.register_async("a", node, NodeOptions::default()) {
            Err(Error::Resource(why)) => assert!(why.contains("shut down"), "{why}"),
            other => panic!("registered onto a shut-down runtime: {other:?}"),
        }
        assert!(dropped.load(Ordering::SeqCst), "the refused node is dropped");
        assert!(d.nodes().is_empty());
        assert_eq!(d.close(Duration::from_secs(1)), Ok(0));
    });
}

/// On the thread of the attached current-thread runtime (a
/// `#[tokio::test]` body) `close` cannot wait for the async nodes, whose
/// tasks need that thread: refused with `Reentrant`, changing nothing;
/// from `spawn_blocking` it works.
#[test]
fn close_on_the_attached_current_thread_runtime_is_refused() {
    let (delivered, closed) = within("the test body", || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let d = Director::builder().runtime(tokio::runtime::Handle::current()).build().unwrap();
            let delivered = Arc::new(AtomicUsize::new(0));
            let node = Counting { delivered: delivered.clone(), dropped: Arc::default() };
            d.register_async("a", node, NodeOptions::default()).unwrap();
            d.emit(Message::new("t", "")).unwrap();
            assert_eq!(d.close(Duration::from_millis(500)), Err(Error::Reentrant));
            assert_eq!(d.check_close(), Err(Error::Reentrant));
            assert!(!d.is_closed());
            let d2 = d.clone();
            let closed = tokio::task::spawn_blocking(move || d2.close(Duration::from_secs(5))).await.unwrap();
            (delivered.load(Ordering::SeqCst), closed)
        })
    });
    assert_eq!((delivered, closed), (1, Ok(0)));
}

/// There `unregister` does not wait: the node stops once the runtime next
/// runs its tasks, and then `close` may wait there (nothing async left).
#[test]
fn unregister_on_the_attached_current_thread_runtime_does_not_wait() {
    within("the test body", || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let d = Director::builder().runtime(tokio::runtime::Handle::current()).build().unwrap();
            let dropped = Arc::new(AtomicBool::new(false));
            let node = Counting { delivered: Arc::default(), dropped: dropped.clone() };
            d.register_async("a", node, NodeOptions::default()).unwrap();
            d.unregister("a").unwrap();
            assert!(d.nodes().is_empty());
            let deadline = Instant::now() + Duration::from_secs(10);
            while !dropped.load(Ordering::SeqCst) {
                assert!(Instant::now() < deadline, "the unregistered node was never dropped");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            assert_eq!(d.close(Duration::from_secs(1)), Ok(0));
        })
    });
}

/// The same from a task on that runtime, once the nodes' tasks have run
/// there: the task holds the thread they need.
#[test]
fn close_from_a_task_on_the_attached_current_thread_runtime_is_refused() {
    let refused = within("the test body", || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let d = Director::builder().runtime(tokio::runtime::Handle::current()).build().unwrap();
            let delivered = Arc::new(AtomicUsize::new(0));
            let node = Counting { delivered: delivered.clone(), dropped: Arc::default() };
            d.register_async("a", node, NodeOptions::default()).unwrap();
            d.emit(Message::new("t", "")).unwrap();
            while delivered.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let d2 = d.clone();
            let refused = tokio::spawn(async move { d2.close(Duration::from_millis(500)) }).await.unwrap();
            let d3 = d.clone();
            tokio::task::spawn_blocking(move || d3.close(Duration::from_secs(5))).await.unwrap().unwrap();
            refused
        })
    });
    assert_eq!(refused, Err(Error::Reentrant));
}

/// A director dropped unclosed at the end of a `#[tokio::test]` body
/// closes on a helper thread; the runtime's end drops the node's tasks,
/// which ends that close (it waited for them for good), and the
/// director's last reference, held by that thread, goes.
#[test]
fn dropped_at_the_end_of_a_tokio_test_body() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    // Held by the director's hook: it goes with the director's heart.
    let held = Arc::new(());
    let in_hook = held.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let d = Director::builder()
            .runtime(tokio::runtime::Handle::current())
            .on_drop(move |_| {
                let _ = &in_hook;
            })
            .build()
            .unwrap();
        let node = Counting { delivered: Arc::default(), dropped: flag };
        d.register_async("a", node, NodeOptions::default()).unwrap();
        d.emit(Message::new("t", "")).unwrap();
        tokio::task::yield_now().await;
        drop(d);
    });
    drop(rt);
    assert!(dropped.load(Ordering::SeqCst), "the runtime's end dropped the node");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&held) > 1 {
        assert!(Instant::now() < deadline, "the helper thread's close never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
}
