//! The in-memory adapter: a broker inside the process, for tests and for
//! several directors of one process sharing events the distributed way.
//!
//! Adapters made with the same name (`memory://NAME`, or
//! [`MemoryAdapter::named`]) share one hub while any of them is alive. A hub
//! keeps one bounded queue per (pattern, group); publishing puts the message
//! in every queue whose pattern matches, waiting while a queue is full and
//! has a subscriber. A queue with none left (its group's last member, or a
//! closed instance) keeps what fits, for a subscriber that comes back, and
//! drops the rest: publishers never wait for a reader that may never come.
//! Subscribers of one (pattern, group) share its queue, so each message goes
//! to one of them. Nothing is persisted; `ack` is a no-op.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{AckToken, BoxFuture, Message, MessageStream, MqAdapter, MqError, MqResult};
use crate::topic::Pattern;

/// Messages a group's queue holds before publishers wait.
const QUEUE_CAPACITY: usize = 65_536;

type SharedRx = Arc<tokio::sync::Mutex<mpsc::Receiver<Message>>>;

/// The ack token of a received message: the queue it came from.
struct Back(Arc<Queue>);

#[derive(Debug)]
struct Queue {
    pattern: Pattern,
    group: String,
    tx: mpsc::Sender<Message>,
    rx: SharedRx,
    /// Live subscription streams on this queue.
    readers: AtomicUsize,
}

impl Queue {
    /// Puts `m` in the queue: `try_send` first (an awaited send can yield
    /// to tokio's budget even with room, and a later publish could then
    /// overtake this one); when full, waits for room while the queue has
    /// a reader, looking again every 10 ms, and drops `m` once it has none.
    async fn put(&self, mut m: Message) {
        loop {
            match self.tx.try_send(m) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(back)) => m = back,
            }
            if self.readers.load(Ordering::Acquire) == 0 {
                return;
            }
            if let Ok(Ok(permit)) = tokio::time::timeout(Duration::from_millis(10), self.tx.reserve()).await {
                permit.send(m);
                return;
            }
        }
    }
}

/// A subscription stream's hold on its queue's reader count.
struct Reader(Arc<Queue>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.readers.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Default)]
struct Hub {
    queues: Mutex<Vec<Arc<Queue>>>,
}

static HUBS: Mutex<Option<HashMap<String, Weak<Hub>>>> = Mutex::new(None);

/// An in-process broker endpoint. Cheap to clone (clones share the hub).
#[derive(Debug, Clone)]
pub struct MemoryAdapter {
    hub: Arc<Hub>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Default for MemoryAdapter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryAdapter {
    /// A private hub.
    pub fn new() -> Self {
        Self { hub: Arc::default(), closed: Arc::default() }
    }

    /// The hub shared by every live adapter of this name.
    pub fn named(name: &str) -> Self {
        let mut hubs = HUBS.lock();
        let hubs = hubs.get_or_insert_with(HashMap::new);
        hubs.retain(|_, w| w.strong_count() > 0);
        let hub = match hubs.get(name).and_then(Weak::upgrade) {
            Some(hub) => hub,
            None => {
                let hub = Arc::new(Hub::default());
                hubs.insert(name.to_owned(), Arc::downgrade(&hub));
                hub
            }
        };
        Self { hub, closed: Arc::default() }
    }

    fn check_open(&self) -> MqResult<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(MqError::Closed)
        } else {
            Ok(())
        }
    }
}

impl MqAdapter for MemoryAdapter {
    fn name(&self) -> &str {
        "memory"
    }

    fn publish<'a>(&'a self, topic: &'a str, mut message: Message) -> BoxFuture<'a, MqResult<()>> {
        Box::pin(async move {
            self.check_open()?;
            message.topic = topic.to_owned();
            message.ack = None;
            if message.timestamp_ms.is_none() {
                message.timestamp_ms = Some(crate::director::now_ms());
            }
            let targets: Vec<Arc<Queue>> =
                self.hub.queues.lock().iter().filter(|q| q.pattern.matches(topic)).cloned().collect();
            for q in targets {
                q.put(message.clone()).await;
            }
            Ok(())
        })
    }

    fn subscribe<'a>(&'a self, pattern: &'a str, group: &'a str) -> BoxFuture<'a, MqResult<MessageStream>> {
        Box::pin(async move {
            self.check_open()?;
            let parsed = Pattern::new(pattern).map_err(|e| MqError::Config(e.to_string()))?;
            let queue = {
                let mut queues = self.hub.queues.lock();
                match queues.iter().find(|q| q.pattern.as_str() == pattern && q.group == group) {
                    Some(q) => q.clone(),
                    None => {
                        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
                        let q = Arc::new(Queue {
                            pattern: parsed,
                            group: group.to_owned(),
                            tx,
                            rx: Arc::new(tokio::sync::Mutex::new(rx)),
                            readers: AtomicUsize::new(0),
                        });
                        queues.push(q.clone());
                        q
                    }
                }
            };
            queue.readers.fetch_add(1, Ordering::AcqRel);
            let reader = Reader(queue.clone());
            let closed = self.closed.clone();
            // What `release` needs: the group's queue, to put messages back.
            let back = AckToken::new(Back(queue));
            let s = stream::unfold((reader, closed, back), |(reader, closed, back)| async move {
                if closed.load(Ordering::Acquire) {
                    return None;
                }
                let next = reader.0.rx.lock().await.recv().await;
                next.map(|mut m| {
                    m.ack = Some(back.clone());
                    (Ok(m), (reader, closed, back))
                })
            });
            Ok(Box::pin(s) as MessageStream)
        })
    }

    fn ack<'a>(&'a self, _message: &'a Message) -> BoxFuture<'a, MqResult<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Puts the messages back into their group's queue, for its other
    /// subscribers (behind what is already queued).
    fn release<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, MqResult<()>> {
        Box::pin(async move {
            for m in messages {
                if let Some(Back(queue)) = m.ack.as_ref().and_then(|t| t.get::<Back>()) {
                    let mut m = m.clone();
                    m.ack = None;
                    queue.put(m).await;
                }
            }
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, MqResult<()>> {
        Box::pin(async move {
            self.closed.store(true, Ordering::Release);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// A group whose last subscriber left does not hold publishers up once
    /// its queue is full; a subscriber that comes back finds what fitted.
    #[test]
    fn a_queue_nobody_reads_does_not_block_publishers() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let adapter = MemoryAdapter::new();
            drop(adapter.subscribe("t", "gone").await.unwrap());
            let mut live = adapter.subscribe("t", "live").await.unwrap();
            let n = QUEUE_CAPACITY + 100;
            let reading = async {
                for _ in 0..n {
                    live.next().await.unwrap().unwrap();
                }
            };
            let publishing = async {
                for i in 0..n {
                    adapter.publish("t", Message::new(i.to_string())).await.unwrap();
                }
            };
            let both = futures_util::future::join(publishing, reading);
            tokio::time::timeout(Duration::from_secs(60), both)
                .await
                .expect("a publisher waited for a queue nobody reads");
            let mut back = adapter.subscribe("t", "gone").await.unwrap();
            let first = back.next().await.unwrap().unwrap();
            assert_eq!(&first.value[..], b"0", "what fitted stays for a returning subscriber");
        });
    }
}
