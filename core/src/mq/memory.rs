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
//! A queue an open adapter still holds but nobody reads (its group's last
//! member on that adapter left) is kept for [`PARKED_RETENTION`] after its
//! last reader left, then forgotten and its messages freed: before, every
//! group an open instance ever left kept up to 65,536 copies of later
//! messages (about 40 MB) for the adapter's lifetime, so a server using a
//! group name per tenant or per version grew without bound. A member that
//! comes back within the retention finds what fitted; later, it starts at
//! new messages, as a Kafka group whose offsets expired does.
//!
//! Locks: an endpoint's `queues`, then the hub's `queues`, never the other
//! way; a queue's `holders` changes under the hub's lock only, so a queue
//! is never forgotten while an adapter subscribes to it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::stream;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use super::{AckToken, BoxFuture, Message, MessageStream, MqAdapter, MqError, MqResult};
use crate::topic::Pattern;

/// Messages a group's queue holds before publishers wait.
const QUEUE_CAPACITY: usize = 65_536;

/// How long a queue nobody reads is kept for a member that comes back
/// (see the module doc).
pub const PARKED_RETENTION: Duration = Duration::from_secs(60);

/// How often a publish looks for parked queues to forget.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

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
    /// When its last reader left, in ms of the hub's clock plus one; 0
    /// while it has never had one and from the moment one comes (under the
    /// hub's lock). May be stale while it has readers: only read together
    /// with `readers` at 0.
    parked_at: AtomicU64,
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
struct Reader {
    queue: Arc<Queue>,
    hub: Arc<Hub>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        if self.queue.readers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.queue.parked_at.store(self.hub.now_ms() + 1, Ordering::Release);
        }
    }
}

#[derive(Debug)]
struct Hub {
    queues: Mutex<Vec<Arc<Queue>>>,
    born: Instant,
    retention: Duration,
    /// When a publish last looked for parked queues (ms of `born`).
    swept_at: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Self::with_retention(PARKED_RETENTION)
    }
}

impl Hub {
    fn with_retention(retention: Duration) -> Self {
        Self { queues: Mutex::default(), born: Instant::now(), retention, swept_at: AtomicU64::new(0) }
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// Forgets the queues nobody has read for the retention, at most once
    /// per [`SWEEP_EVERY`], and frees what they hold. Their adapters keep
    /// an empty queue each until they subscribe again or close.
    fn sweep(&self, queues: &mut Vec<Arc<Queue>>) {
        let now = self.now_ms();
        let last = self.swept_at.load(Ordering::Relaxed);
        if now < last + SWEEP_EVERY.as_millis() as u64
            || self.swept_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let retention = self.retention.as_millis() as u64;
        queues.retain(|q| {
            let parked = q.parked_at.load(Ordering::Acquire);
            let forget =
                q.readers.load(Ordering::Acquire) == 0 && parked != 0 && now + 1 >= parked + retention;
            if forget {
                // Nobody reads it, so nobody holds its receiver long.
                if let Ok(mut rx) = q.rx.try_lock() {
                    while rx.try_recv().is_ok() {}
                }
            }
            !forget
        });
    }
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

    /// A reader of the queue of (`pattern`, `group`), made if new, held
    /// by this adapter from now on; `Closed` once it closed. The reader is
    /// counted under the hub's lock, so a sweep never forgets the queue
    /// under a new reader. Lets go of the queues the hub forgot.
    fn read(&self, pattern: Pattern, group: &str) -> MqResult<Reader> {
        let mut mine = self.queues.lock();
        if self.is_closed() {
            return Err(MqError::Closed);
        }
        let mut queues = self.hub.queues.lock();
        mine.retain(|m| queues.iter().any(|q| Arc::ptr_eq(q, m)));
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
                parked_at: AtomicU64::new(0),
            });
            queues.push(q.clone());
            q
        });
        if !mine.iter().any(|m| Arc::ptr_eq(m, &queue)) {
            queue.holders.fetch_add(1, Ordering::AcqRel);
            mine.push(queue.clone());
        }
        if queue.readers.fetch_add(1, Ordering::AcqRel) == 0 {
            // A stale time from an earlier parking would let a sweep run
            // between a last reader's leaving and its new time forget the
            // queue at once.
            queue.parked_at.store(0, Ordering::Release);
        }
        Ok(Reader { queue, hub: self.hub.clone() })
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

    /// A private hub that keeps parked queues for `retention`.
    #[cfg(test)]
    fn with_retention(retention: Duration) -> Self {
        Self { endpoint: Arc::new(Endpoint::new(Arc::new(Hub::with_retention(retention)))) }
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
        m = async { reader.queue.rx.lock().await.recv().await } => m,
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
            let targets: Vec<Arc<Queue>> = {
                let hub = &self.endpoint.hub;
                let mut queues = hub.queues.lock();
                hub.sweep(&mut queues);
                queues.iter().filter(|q| q.pattern.matches(topic)).cloned().collect()
            };
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
            let reader = self.endpoint.read(parsed, group)?;
            let closed = self.endpoint.closed.subscribe();
            // What `release` needs: the group's queue, to put messages back.
            let back = AckToken::new(Back(reader.queue.clone()));
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

    /// A group left by its last member on an open adapter is forgotten,
    /// with what its queue held, once parked for the retention (it kept
    /// up to 65,536 copies of later messages for the adapter's lifetime);
    /// a group with a reader is not, and the adapter lets go of the
    /// forgotten queue when it subscribes again.
    #[test]
    fn a_group_left_on_an_open_adapter_is_forgotten_after_the_retention() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let retention = Duration::from_millis(200);
            let adapter = MemoryAdapter::with_retention(retention);
            let mut live = adapter.subscribe("t", "live").await.unwrap();
            let mut weak = Vec::new();
            for i in 0..20 {
                let group = format!("tenant-{i}");
                drop(adapter.subscribe("t", &group).await.unwrap());
                let q = adapter.hub().queues.lock().iter().find(|q| q.group == group).unwrap().clone();
                weak.push(Arc::downgrade(&q));
                adapter.publish("t", Message::new(format!("m{i}"))).await.unwrap();
            }
            assert_eq!(adapter.hub().queues.lock().len(), 21, "parked queues are kept for the retention");
            // Past the retention and the sweep interval; a publish sweeps.
            tokio::time::sleep(retention + SWEEP_EVERY + Duration::from_millis(50)).await;
            adapter.publish("t", Message::new("last")).await.unwrap();
            let groups: Vec<String> = adapter.hub().queues.lock().iter().map(|q| q.group.clone()).collect();
            assert_eq!(groups, ["live"], "the parked groups were not forgotten");
            for (i, w) in weak.iter().enumerate() {
                let q = w.upgrade().expect("the adapter keeps its (empty) queue until it subscribes again");
                assert_eq!(q.tx.max_capacity() - q.tx.capacity(), 0, "tenant-{i}'s messages were not freed");
            }
            drop(adapter.subscribe("t", "again").await.unwrap());
            assert!(weak.iter().all(|w| w.upgrade().is_none()), "the adapter kept the forgotten queues");
            let mut got = Vec::new();
            while got.len() < 21 {
                got.push(live.next().await.unwrap().unwrap().value);
            }
            assert_eq!(got.last().map(|v| &v[..]), Some(&b"last"[..]), "the live group lost messages");
        });
    }

    /// A member that comes back after the retention starts at new
    /// messages, in a queue the hub delivers to.
    #[test]
    fn a_member_back_after_the_retention_gets_new_messages() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let retention = Duration::from_millis(100);
            let adapter = MemoryAdapter::with_retention(retention);
            drop(adapter.subscribe("t", "g").await.unwrap());
            adapter.publish("t", Message::new("old")).await.unwrap();
            tokio::time::sleep(retention + SWEEP_EVERY + Duration::from_millis(50)).await;
            adapter.publish("t", Message::new("swept")).await.unwrap();
            let mut back = adapter.subscribe("t", "g").await.unwrap();
            adapter.publish("t", Message::new("new")).await.unwrap();
            assert_eq!(&back.next().await.unwrap().unwrap().value[..], b"new");
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
