//! `Node::session`: a sync node's worker delivers a backlog inside one
//! session (the Python layer holds the GIL through it) without giving up
//! the lane rules: root events still come first, a failure ends the
//! session, and a node whose session panics still gets its events.

mod common;
use common::*;

use chronica::{Batch, Director, Message, Node, NodeError, NodeOptions, RetryPolicy, SendResult};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a session node saw.
#[derive(Default)]
struct Seen {
    sessions: AtomicUsize,
    inside: AtomicBool,
    outside_sends: AtomicUsize,
    topics: Mutex<Vec<String>>,
}

/// A node that records its sessions and sends; `on_send` may fail a batch
/// or act re-entrantly.
struct SessionNode {
    seen: Arc<Seen>,
    panic_in_session: bool,
    on_send: Box<dyn Fn(&Batch) -> SendResult + Send + Sync>,
}

impl Node for SessionNode {
    fn send(&self, batch: &Batch) -> SendResult {
        if !self.seen.inside.load(Ordering::SeqCst) {
            self.seen.outside_sends.fetch_add(1, Ordering::SeqCst);
        }
        (self.on_send)(batch)?;
        self.seen.topics.lock().extend(batch.iter().map(|e| e.topic().to_owned()));
        Ok(())
    }

    fn session(&self, deliver: &mut dyn FnMut()) {
        self.seen.sessions.fetch_add(1, Ordering::SeqCst);
        if self.panic_in_session {
            panic!("session set-up failed");
        }
        self.seen.inside.store(true, Ordering::SeqCst);
        deliver();
        self.seen.inside.store(false, Ordering::SeqCst);
    }
}

fn node(seen: &Arc<Seen>, on_send: impl Fn(&Batch) -> SendResult + Send + Sync + 'static) -> SessionNode {
    SessionNode { seen: seen.clone(), panic_in_session: false, on_send: Box::new(on_send) }
}

/// Registers `n` disconnected, queues `count` user events, then connects it.
fn backlog(d: &Director, n: SessionNode, count: usize) {
    d.register_with("n", n, NodeOptions::default().connected(false)).unwrap();
    for i in 0..count {
        d.emit(Message::new(format!("u{i}"), "")).unwrap();
    }
    d.node_connected("n").unwrap();
}

fn expected(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("u{i}")).collect()
}

#[test]
fn a_backlog_is_delivered_in_one_session() {
    let d = Director::builder().batch_size(8).build().unwrap();
    let seen = Arc::new(Seen::default());
    backlog(&d, node(&seen, |_| Ok(())), 64);
    settle(&d, "n");
    let topics = seen.topics.lock().clone();
    assert_eq!(topics[0], "chronica.pull_current_state");
    assert_eq!(topics[1..], expected(64));
    assert_eq!(seen.sessions.load(Ordering::SeqCst), 1, "nine batches were ready at once");
    assert_eq!(seen.outside_sends.load(Ordering::SeqCst), 0);
}

#[test]
fn a_root_event_overtakes_the_rest_of_a_session() {
    let d = Director::builder().batch_size(4).build().unwrap();
    let seen = Arc::new(Seen::default());
    let (emitter, once) = (d.clone(), AtomicBool::new(false));
    let n = node(&seen, move |b| {
        if !b[0].is_root() && !once.swap(true, Ordering::SeqCst) {
            emitter.emit_root_to("n", "urgent", "").unwrap();
        }
        Ok(())
    });
    backlog(&d, n, 16);
    settle(&d, "n");
    let topics = seen.topics.lock().clone();
    let mut want = vec!["chronica.pull_current_state".to_owned()];
    want.extend(expected(4));
    want.push("urgent".to_owned());
    want.extend(expected(16).into_iter().skip(4));
    assert_eq!(topics, want);
    assert_eq!(seen.sessions.load(Ordering::SeqCst), 1);
}

#[test]
fn a_failed_batch_ends_the_session_and_its_retry_starts_another() {
    let retry = RetryPolicy { initial_delay: Duration::from_millis(20), jitter: 0.0, ..Default::default() };
    let d = Director::builder().batch_size(4).retry(retry).build().unwrap();
    let seen = Arc::new(Seen::default());
    let failed = AtomicBool::new(false);
    let n = node(&seen, move |b| {
        if b[0].topic() == "u4" && !failed.swap(true, Ordering::SeqCst) {
            return Err(NodeError::new("once"));
        }
        Ok(())
    });
    backlog(&d, n, 12);
    let stats = settle(&d, "n");
    assert_eq!((stats.failures, stats.retries), (1, 1));
    assert_eq!(seen.topics.lock()[1..], expected(12));
    assert_eq!(seen.sessions.load(Ordering::SeqCst), 2);
    assert_eq!(seen.outside_sends.load(Ordering::SeqCst), 0);
}

#[test]
fn a_node_whose_session_panics_still_receives_everything() {
    let d = Director::builder().batch_size(8).build().unwrap();
    let seen = Arc::new(Seen::default());
    let n = SessionNode { panic_in_session: true, ..node(&seen, |_| Ok(())) };
    backlog(&d, n, 32);
    let stats = settle(&d, "n");
    assert_eq!(seen.topics.lock()[1..], expected(32));
    assert_eq!(stats.failures, 0);
    assert_eq!(seen.outside_sends.load(Ordering::SeqCst), 5, "the pull event and four batches");
}
