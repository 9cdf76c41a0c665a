//! The in-memory adapter: a broker inside the process, for tests and for
//! several directors of one process sharing events the distributed way.
//!
//! Adapters made with the same name (`memory://NAME`, or
//! [`MemoryAdapter::named`]) share one hub while any of them is alive. A hub
//! keeps one bounded queue per (pattern, group); publishing puts the message
//! in every queue whose pattern matches, waiting while a queue is full and
//! has a subscriber. A queue with none left (its group's last member left)
//! keeps what fits, for a subscriber that comes back, and drops the rest:
//! publishers never wait for a reader that may never come. Subscribers of
//! one (pattern, group) share its queue, so each message goes to one of
//! them. Nothing is persisted; `ack` is a no-op.
//!
//! Closing an adapter (or dropping its last clone) ends its subscription
//! streams, a stream waiting for a message included, and the hub forgets
//! every queue no open adapter has subscribed to any more: nobody will
//! read it, so it neither fills nor holds its messages for the hub's
//! lifetime (before, every closed instance's queue did, and took a copy of
//! every later message up to 65,536). A later subscriber of that (pattern,
//! group) starts afresh, at new messages.
//!
//! Locks: an endpoint's `queues`, then the hub's `queues`, never the other
//! way; a queue's `holders` changes under the hub's lock only, so a queue
//! is never forgotten while an adapter subscribes to it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

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
    /// Open adapters that subscribed to this queue (changed under the
    /// hub's lock); the hub forgets the queue when the last one closes.
    holders: AtomicUsize,
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

/// One adapter (shared by its clones): its hub, whether it closed, and the
/// queues it subscribed to.
#[derive(Debug)]
struct Endpoint {
    hub: Arc<Hub>,
    /// `true` once closed; the subscription streams watch it.
    closed: watch::Sender<bool>,
    /// The queues this adapter subscribed to, each once; emptied at close.
    queues: Mutex<Vec<Arc<Queue>>>,
}

impl Endpoint {
    fn new(hub: Arc<Hub>) -> Self {
        Self { hub, closed: watch::Sender::new(false), queues: Mutex::default() }
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Closes: ends the streams and lets go of the queues; the hub forgets
    /// those no other open adapter holds. Idempotent.
    fn shut(&self) {
        let mine = {
            let mut mine = self.queues.lock();
            if self.closed.send_replace(true) {
                return;
            }
            std::mem::take(&mut *mine)
        };
        let mut hub = self.hub.queues.lock();
        for q in mine {
            if q.holders.fetch_sub(1, Ordering::AcqRel) == 1 {
                hub.retain(|h| !Arc::ptr_eq(h, &q));
            }
        }
    }

    /// The queue of (`pattern`, `group`), made if new, held by this
    /// adapter from now on; `Closed` once it closed.
    fn hold(&self, pattern: Pattern, group: &str) -> MqResult<Arc<Queue>> {
        let mut mine = self.queues.lock();
        if self.is_closed() {
            return Err(MqError::Closed);
        }
        let mut queues = self.hub.queues.lock();
        let found = queues.iter().find(|q| q.pattern == pattern && q.group == group).cloned();
        let queue = found.unwrap_or_else(|| {
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            let q = Arc::new(Queue {
                pattern,
                group: group.to_owned(),
                tx,
                rx: Arc::new(tokio::sync::Mutex::new(rx)),
                readers: AtomicUsize::new(0),
                holders: AtomicUsize::new(0),
            });
            queues.push(q.clone());
            q
        });
        if !mine.iter().any(|m| Arc::ptr_eq(m, &queue)) {
            queue.holders.fetch_add(1, Ordering::AcqRel);
            mine.push(queue.clone());
        }
        Ok(queue)
    }
}

impl Drop for Endpoint {
    /// An adapter dropped without `close` lets go of its queues too.
    fn drop(&mut self) {
        self.shut();
    }
}

/// An in-process broker endpoint. Cheap to clone (clones share the hub,
/// and closing one closes them all).
#[derive(Debug, Clone)]
pub struct MemoryAdapter {
    endpoint: Arc<Endpoint>,
}

impl Default for MemoryAdapter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryAdapter {
    /// A private hub.
    pub fn new() -> Self {
        Self { endpoint: Arc::new(Endpoint::new(Arc::default())) }
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
        Self { endpoint: Arc::new(Endpoint::new(hub)) }
    }

    #[cfg(test)]
    fn hub(&self) -> &Hub {
        &self.endpoint.hub
    }

    fn check_open(&self) -> MqResult<()> {
        if self.endpoint.is_closed() {
            Err(MqError::Closed)
        } else {
            Ok(())
        }
    }
}

/// The next message of `reader`'s queue, or `None` once `closed` turns
/// true (or its adapter is gone), even while waiting: for the queue's
/// receiver (another stream of the group holds it) or in `recv`.
async fn next(reader: &Reader, closed: &mut watch::Receiver<bool>) -> Option<Message> {
    // Cancel-safe both: a lock waiter or `recv` dropped loses nothing.
    tokio::select! {
        biased;
        _ = closed.wait_for(|c| *c) => None,
        m = async { reader.0.rx.lock().await.recv().await } => m,
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
            let targets: Vec<Arc<Queue>> = self
                .endpoint
                .hub
                .queues
                .lock()
                .iter()
                .filter(|q| q.pattern.matches(topic))
                .cloned()
                .collect();
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
            let queue = self.endpoint.hold(parsed, group)?;
            queue.readers.fetch_add(1, Ordering::AcqRel);
            let reader = Reader(queue.clone());
            let closed = self.endpoint.closed.subscribe();
            // What `release` needs: the group's queue, to put messages back.
            let back = AckToken::new(Back(queue));
            let s = stream::unfold((reader, closed, back), |(reader, mut closed, back)| async move {
                let m = next(&reader, &mut closed).await;
                m.map(|mut m| {
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

    /// Ends every subscription stream of this adapter (and its clones) and
    /// lets go of its queues (see the module doc).
    fn close(&self) -> BoxFuture<'_, MqResult<()>> {
        Box::pin(async move {
            self.endpoint.shut();
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

    /// `close` ends a subscription whose stream waits for a message, as it
    /// ends one between messages.
    #[test]
    fn close_ends_a_stream_waiting_for_a_message() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async {
            let adapter = MemoryAdapter::new();
            let mut stream = adapter.subscribe("t", "g").await.unwrap();
            let waiting = tokio::spawn(async move { stream.next().await.map(|m| m.map(|m| m.value)) });
            // Parked: it holds its queue's receiver while it waits in `recv`.
            let queue = adapter.hub().queues.lock()[0].clone();
            while queue.rx.try_lock().is_ok() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            adapter.close().await.unwrap();
            // The bound only turns a hang into a failure.
            let ended = tokio::time::timeout(Duration::from_secs(30), waiting).await;
            let ended = ended.expect("a stream parked in recv outlived the adapter's close");
            assert!(ended.unwrap().is_none(), "the stream ended with a message");
        });
    }

    /// The queues of a closed adapter are forgotten by the hub (and freed)
    /// once no open adapter of the hub subscribed to them; a queue another
    /// open adapter still subscribes to keeps working.
    #[test]
    fn a_closed_adapters_queues_are_freed() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let name = format!("freed-{}", std::process::id());
            let (a, b) = (MemoryAdapter::named(&name), MemoryAdapter::named(&name));
            let own = a.subscribe("t", "a-only").await.unwrap();
            let shared_by_a = a.subscribe("t", "shared").await.unwrap();
            let mut shared = b.subscribe("t", "shared").await.unwrap();
            let groups = |x: &MemoryAdapter| {
                let mut g: Vec<String> = x.hub().queues.lock().iter().map(|q| q.group.clone()).collect();
                g.sort();
                g
            };
            assert_eq!(groups(&b), ["a-only", "shared"]);
            let a_only =
                Arc::downgrade(&a.hub().queues.lock().iter().find(|q| q.group == "a-only").unwrap().clone());
            b.publish("t", Message::new("before")).await.unwrap();
            a.close().await.unwrap();
            drop((own, shared_by_a)); // ended by the close: the layer drops them
            assert_eq!(groups(&b), ["shared"], "the hub kept a closed adapter's queue");
            assert!(
                a_only.upgrade().is_none(),
                "the closed adapter's queue (and what it held) is still alive"
            );
            b.publish("t", Message::new("after")).await.unwrap();
            let mut got = Vec::new();
            while got.len() < 2 {
                got.push(shared.next().await.unwrap().unwrap().value);
            }
            assert_eq!(got, ["before", "after"], "the shared queue lost messages");
            drop(shared);
            b.close().await.unwrap();
            assert!(groups(&b).is_empty(), "{:?}", groups(&b));
        });
    }
}
