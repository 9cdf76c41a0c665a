//! Acknowledgements under [`AckMode::Delivery`](super::AckMode): a message
//! is acknowledged once every fiber that took it has finished with it
//! (delivered, dropped or dead-lettered), and a subscription acknowledges
//! its messages in the order it received them.
//!
//! Why in order: Kafka acknowledges by offset, a mark below which
//! everything counts as consumed. Acknowledging a message whose targets
//! finished while an earlier one is still in a callback would, if the
//! process died then, lose the earlier one. So one watcher task per
//! subscription queues what the subscription handled and acknowledges the
//! finished front of the queue with one `ack_batch`. Only the front is
//! checked, so a slow node delays the acknowledgement of what follows; if
//! the process dies meanwhile, those messages come again and
//! de-duplication drops what was already delivered.
//!
//! A message is finished when no fiber holds its event any more (a weak
//! reference says so without keeping it alive): each target has then
//! delivered, dropped or dead-lettered it, and a failed batch is held for
//! its retry. Until session 8 it was judged by the targets' counters
//! (finished events reaching the count accepted with it), which a root
//! event delivered ahead of it, or another lane of a node with
//! `concurrency > 1`, could reach first: the message was acknowledged
//! while its event still waited. A node that keeps events after its
//! callback (a Rust node cloning the `Arc`) delays their acknowledgement
//! until it drops them.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Shared;
use crate::event::Event;
use crate::mq::Message;

/// Messages queued for acknowledgement per subscription, at most; beyond it
/// the subscription stops reading until the front finishes.
const MAX_PENDING: usize = 4_096;
/// How often an unfinished front is looked at again without a signal from
/// the workers (`director::released`): events let go outside a worker.
const POLL: Duration = Duration::from_millis(20);

/// A handled message and what it waits for.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) msg: Message,
    /// The event the message became; dangling when it waits for nothing.
    event: Weak<Event>,
}

impl Pending {
    /// A message that waits for nothing (skipped, duplicate, malformed, or
    /// taken by no fiber).
    pub(crate) fn now(msg: Message) -> Self {
        Self { msg, event: Weak::new() }
    }

    /// A message to acknowledge once no fiber holds `event`.
    pub(crate) fn after(msg: Message, event: Weak<Event>) -> Self {
        Self { msg, event }
    }

    fn finished(&self) -> bool {
        self.event.strong_count() == 0
    }
}

/// Starts the watcher of one subscription; it ends when the layer stops
/// or every sender is gone and its queue is acknowledged.
pub(crate) fn spawn(shared: Arc<Shared>) -> mpsc::Sender<Pending> {
    let (tx, rx) = mpsc::channel(MAX_PENDING);
    tokio::spawn(watch(shared, rx));
    tx
}

async fn watch(shared: Arc<Shared>, mut rx: mpsc::Receiver<Pending>) {
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut done: Vec<Message> = Vec::new();
    let released = shared.director.released().watch();
    while !shared.stopped() {
        // Asked for before the front is looked at: a release in between
        // still wakes the sleep below.
        let signal = released.next();
        if queue.is_empty() {
            match rx.recv().await {
                Some(p) => queue.push_back(p),
                None => return,
            }
        }
        while queue.len() < MAX_PENDING {
            match rx.try_recv() {
                Ok(p) => queue.push_back(p),
                Err(_) => break,
            }
        }
        while queue.front().is_some_and(Pending::finished) {
            done.extend(queue.pop_front().map(|p| p.msg));
        }
        if done.is_empty() {
            let _ = tokio::time::timeout(POLL, signal).await;
        } else {
            shared.ack_batch(&done).await;
            done.clear();
        }
    }
}
