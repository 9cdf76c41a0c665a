//! The `ring-ceiling` case: the least work any design that shares one
//! ring between all nodes (the LMAX Disruptor's, named in ARCHITECTURE.md
//! as the next data path) can do on W1 on this machine. The producer writes
//! each event once into a slot and publishes a sequence number; each of the
//! 8 consumer threads keeps a cursor and reads batches of up to 64 events
//! in place, with no reference count touched per node; the producer waits
//! only for the slowest cursor a whole ring behind. Idle consumers yield
//! for 200 us, then park, and the producer unparks them. It carries none
//! of the engine's semantics (topics, groups, per-node capacity and
//! policy, retries, stats), so the engine can only be slower: it tells
//! whether the targets of issue 2 are within reach of that design here.

use std::cell::UnsafeCell;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use chronica::Bytes;
use crossbeam_utils::CachePadded;

const CAPACITY: usize = 65_536;
const BATCH: usize = 64;
const WARM: Duration = Duration::from_micros(200);

#[derive(Debug)]
struct Slot {
    _id: u64,
    source: u32,
    _payload: Bytes,
}

struct Ring {
    slots: Box<[UnsafeCell<Option<Arc<Slot>>>]>,
    published: CachePadded<AtomicU64>,
    cursors: Vec<CachePadded<AtomicU64>>,
    sleepers: CachePadded<AtomicUsize>,
    parked: Vec<CachePadded<AtomicBool>>,
    threads: Mutex<Vec<(usize, Thread)>>,
}

// SAFETY: a slot is written only by the producer, and only once every
// cursor has passed it (so no consumer reads it); a consumer reads only
// slots below `published`, whose Release store follows the write.
unsafe impl Sync for Ring {}

impl Ring {
    fn wake_parked(&self, threads: &[Thread]) {
        for (i, t) in threads.iter().enumerate() {
            if self.parked[i].load(Ordering::SeqCst) {
                t.unpark();
            }
        }
    }

    /// Counts this consumer's events. With `cloned`, each batch is first
    /// collected as `Arc` clones, which the consumer drops before it moves
    /// its cursor: what a ring engine would do if its batches did not
    /// borrow the slots in place (`RING-DESIGN.md`, open questions).
    fn consume(&self, me: usize, events: u64, cloned: bool) -> u64 {
        let (mut cursor, mut counted) = (0u64, 0u64);
        let mut batch: Vec<Arc<Slot>> = Vec::with_capacity(BATCH);
        let mut idle_since: Option<Instant> = None;
        while cursor < events {
            let published = self.published.load(Ordering::Acquire);
            if published == cursor {
                if idle_since.get_or_insert_with(Instant::now).elapsed() < WARM {
                    std::thread::yield_now();
                    continue;
                }
                // The SeqCst pair (this flag and load against the
                // producer's store, fence and load) loses no wake-up.
                self.parked[me].store(true, Ordering::SeqCst);
                self.sleepers.fetch_add(1, Ordering::SeqCst);
                if self.published.load(Ordering::SeqCst) == cursor {
                    std::thread::park();
                }
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                self.parked[me].store(false, Ordering::SeqCst);
                idle_since = None;
                continue;
            }
            idle_since = None;
            while cursor < published {
                let start = cursor as usize % CAPACITY;
                let len = ((published - cursor) as usize).min(BATCH).min(CAPACITY - start);
                for slot in &self.slots[start..start + len] {
                    // SAFETY: below `published` and not yet passed by this
                    // cursor, so the producer does not write it (see `Ring`).
                    let event = unsafe { &*slot.get() }.as_ref().expect("published slot");
                    if cloned {
                        batch.push(event.clone());
                    } else {
                        counted += u64::from(event.source != me as u32 + 1);
                    }
                }
                counted += batch.iter().filter(|e| e.source != me as u32 + 1).count() as u64;
                batch.clear();
                cursor += len as u64;
                self.cursors[me].store(cursor, Ordering::Release);
            }
        }
        counted
    }
}

/// Runs W1 through the bare ring: `(deliveries, seconds)`; `cloned` as in
/// [`Ring::consume`].
pub(crate) fn ring_ceiling(nodes: usize, events: u64, payload_len: usize, cloned: bool) -> (u64, f64) {
    let ring = Arc::new(Ring {
        slots: (0..CAPACITY).map(|_| UnsafeCell::new(None)).collect(),
        published: CachePadded::new(AtomicU64::new(0)),
        cursors: (0..nodes).map(|_| CachePadded::new(AtomicU64::new(0))).collect(),
        sleepers: CachePadded::new(AtomicUsize::new(0)),
        parked: (0..nodes).map(|_| CachePadded::new(AtomicBool::new(false))).collect(),
        threads: Mutex::new(Vec::new()),
    });
    let consumers: Vec<_> = (0..nodes)
        .map(|me| {
            let ring = ring.clone();
            std::thread::spawn(move || {
                ring.threads.lock().unwrap().push((me, std::thread::current()));
                ring.consume(me, events, cloned)
            })
        })
        .collect();
    while ring.threads.lock().unwrap().len() < nodes {
        std::thread::yield_now();
    }
    let mut threads = ring.threads.lock().unwrap().clone();
    threads.sort_by_key(|(me, _)| *me);
    let threads: Vec<Thread> = threads.into_iter().map(|(_, t)| t).collect();
    let payload = Bytes::from(vec![7u8; payload_len]);
    let start = Instant::now();
    let mut slowest = 0u64;
    for id in 0..events {
        while id >= slowest + CAPACITY as u64 {
            slowest = ring.cursors.iter().map(|c| c.load(Ordering::Acquire)).min().unwrap_or(id);
            ring.wake_parked(&threads);
            std::thread::yield_now();
        }
        // SAFETY: every cursor is past this slot (the wait above), so no
        // consumer reads it until `published` says so.
        let slot = unsafe { &mut *ring.slots[id as usize % CAPACITY].get() };
        match slot.as_mut().and_then(Arc::get_mut) {
            Some(event) => {
                event._id = id;
                event.source = 0;
                event._payload = payload.clone();
            }
            None => *slot = Some(Arc::new(Slot { _id: id, source: 0, _payload: payload.clone() })),
        }
        ring.published.store(id + 1, Ordering::Release);
        fence(Ordering::SeqCst);
        if ring.sleepers.load(Ordering::Relaxed) > 0 {
            ring.wake_parked(&threads);
        }
    }
    let deliveries: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(deliveries, events * nodes as u64, "every node counts every event");
    (deliveries, secs)
}
