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
//! checked (one look at each target's counters), so a slow node delays the
//! acknowledgement of what follows; if the process dies meanwhile, those
//! messages come again and de-duplication drops what was already
//! delivered.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Shared;
use crate::fiber::Fiber;
use crate::mq::Message;

/// Messages queued for acknowledgement per subscription, at most; beyond it
/// the subscription stops reading until the front finishes.
const MAX_PENDING: usize = 4_096;
/// How often an unfinished front is looked at again.
const POLL: Duration = Duration::from_millis(1);

/// A handled message and what it waits for.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) msg: Message,
    /// Each target fiber with the count of events it had accepted right
    /// after taking this one: it has finished with the message once its
    /// finished events reach that count (a fiber finishes in order).
    marks: Vec<(Arc<Fiber>, u64)>,
}

impl Pending {
    /// A message that waits for nothing (skipped, duplicate, malformed, or
    /// taken by no fiber).
    pub(crate) fn now(msg: Message) -> Self {
        Self { msg, marks: Vec::new() }
    }

    /// A message to acknowledge once `fibers` finished with it.
    pub(crate) fn after(msg: Message, fibers: impl IntoIterator<Item = Arc<Fiber>>) -> Self {
        let marks = fibers
            .into_iter()
            .map(|f| {
                let accepted = f.stats().accepted;
                (f, accepted)
            })
            .collect();
        Self { msg, marks }
    }

    fn finished(&self) -> bool {
        self.marks.iter().all(|(f, mark)| {
            let s = f.stats();
            s.delivered + s.dropped + s.dead_lettered >= *mark
        })
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
    while !shared.stopped() {
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
            tokio::time::sleep(POLL).await;
        } else {
            shared.ack_batch(&done).await;
            done.clear();
        }
    }
}
