//! The in-memory adapter: a broker inside the process, for tests and for
//! several directors of one process sharing events the distributed way.
//!
//! Adapters made with the same name (`memory://NAME`, or
//! [`MemoryAdapter::named`]) share one hub while any of them is alive. A hub
//! keeps one bounded queue per (pattern, group); publishing puts the message
//! in every queue whose pattern matches, waiting while a queue is full.
//! Subscribers of one (pattern, group) share its queue, so each message goes
//! to one of them. Nothing is persisted; `ack` is a no-op.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use futures_util::stream;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{AckToken, BoxFuture, Message, MessageStream, MqAdapter, MqError, MqResult};
use crate::topic::Pattern;

/// Messages a group's queue holds before publishers wait.
const QUEUE_CAPACITY: usize = 65_536;

type SharedRx = Arc<tokio::sync::Mutex<mpsc::Receiver<Message>>>;

/// The ack token of a received message: the queue it came from.
struct Back(mpsc::Sender<Message>);

#[derive(Debug)]
struct Queue {
    pattern: Pattern,
    group: String,
    tx: mpsc::Sender<Message>,
    rx: SharedRx,
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
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
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
            let targets: Vec<mpsc::Sender<Message>> = self
                .hub
                .queues
                .lock()
                .iter()
                .filter(|q| q.pattern.matches(topic))
                .map(|q| q.tx.clone())
                .collect();
            for tx in targets {
                // A queue whose last subscriber is gone is simply skipped.
                // `try_send` first: an awaited send can yield to tokio's
                // budget even with room, and a later publish could then
                // overtake this one.
                if let Err(mpsc::error::TrySendError::Full(m)) = tx.try_send(message.clone()) {
                    let _ = tx.send(m).await;
                }
            }
            Ok(())
        })
    }

    fn subscribe<'a>(&'a self, pattern: &'a str, group: &'a str) -> BoxFuture<'a, MqResult<MessageStream>> {
        Box::pin(async move {
            self.check_open()?;
            let parsed = Pattern::new(pattern).map_err(|e| MqError::Config(e.to_string()))?;
            let (tx, rx) = {
                let mut queues = self.hub.queues.lock();
                match queues.iter().find(|q| q.pattern.as_str() == pattern && q.group == group) {
                    Some(q) => (q.tx.clone(), q.rx.clone()),
                    None => {
                        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
                        let rx = Arc::new(tokio::sync::Mutex::new(rx));
                        queues.push(Arc::new(Queue {
                            pattern: parsed,
                            group: group.to_owned(),
                            tx: tx.clone(),
                            rx: rx.clone(),
                        }));
                        (tx, rx)
                    }
                }
            };
            let closed = self.closed.clone();
            // What `release` needs: the group's queue, to put messages back.
            let back = AckToken::new(Back(tx));
            let s = stream::unfold((rx, closed, back), |(rx, closed, back)| async move {
                if closed.load(std::sync::atomic::Ordering::Acquire) {
                    return None;
                }
                let next = rx.lock().await.recv().await;
                next.map(|mut m| {
                    m.ack = Some(back.clone());
                    (Ok(m), (rx, closed, back))
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
                if let Some(Back(tx)) = m.ack.as_ref().and_then(|t| t.get::<Back>()) {
                    let mut m = m.clone();
                    m.ack = None;
                    let _ = tx.send(m).await;
                }
            }
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, MqResult<()>> {
        Box::pin(async move {
            self.closed.store(true, std::sync::atomic::Ordering::Release);
            Ok(())
        })
    }
}
