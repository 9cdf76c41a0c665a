//! De-duplication by (origin, id) within a time window, bounded in size.
//!
//! Owned by one consumer task (no lock): each subscription keeps its own,
//! because one broker message legitimately arrives once per subscription
//! (the instance's broadcast group and each of its consumer groups).
//!
//! An origin numbers its events consecutively (from its start time in
//! milliseconds times a million, see `Distributed::connect`), so what was seen is
//! kept as bitmaps over ranges of `SPAN` ids rather than one hash entry per
//! event: remembering a million events costs 128 KiB, not the 100 MiB a set
//! of pairs took, and checking one is a bit test instead of an insert.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ids per bitmap chunk.
const SPAN: u64 = 4096;
const WORDS: usize = (SPAN / 64) as usize;

#[derive(Debug)]
struct Chunk {
    bits: Box<[u64; WORDS]>,
    /// Last time an id of the chunk was seen: the window runs from here.
    touched: Instant,
}

impl Chunk {
    /// Marks `id` (of this chunk) seen now; true if it was not yet.
    fn mark(&mut self, id: u64, now: Instant) -> bool {
        let (word, bit) = (((id % SPAN) / 64) as usize, 1u64 << (id % 64));
        self.touched = now;
        let first = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        first
    }
}

#[derive(Debug)]
pub(crate) struct Dedup {
    window: Duration,
    max_chunks: usize,
    /// Per origin, its chunks by first id.
    origins: HashMap<Arc<str>, HashMap<u64, Chunk>>,
    /// Every chunk, oldest first (but for swaps by `evict_least_recent`):
    /// the order of expiry, which may forget an id late, never early.
    order: VecDeque<(Arc<str>, u64)>,
}

impl Dedup {
    /// Remembers ids for at least `window` after they were last seen in
    /// their chunk, and at most `capacity` ids' worth of chunks (rounded up
    /// to whole chunks of 4,096 ids, at least one).
    pub(crate) fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            max_chunks: capacity.div_ceil(SPAN as usize).max(1),
            origins: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// True the first time (origin, id) is seen within the window.
    pub(crate) fn first_time(&mut self, origin: &str, id: u64, now: Instant) -> bool {
        self.expire(now);
        let start = id - id % SPAN;
        // Nearly always the chunk exists: one lookup, no key to share.
        if let Some(chunk) = self.origins.get_mut(origin).and_then(|c| c.get_mut(&start)) {
            return chunk.mark(id, now);
        }
        let mut chunk = Chunk { bits: Box::new([0; WORDS]), touched: now };
        chunk.mark(id, now);
        let key = self.origins_key(origin);
        self.origins.entry(key.clone()).or_default().insert(start, chunk);
        self.order.push_back((key, start));
        if self.order.len() > self.max_chunks {
            self.evict_least_recent();
        }
        true
    }

    /// Over capacity: drops the chunk seen least recently, not the oldest
    /// made, which may be an origin's current one (a slow origin stays in
    /// one chunk for long while busier ones make many). A scan, but only
    /// when a chunk is made at capacity: once per 4,096 ids of an origin.
    /// Forgets that (origin, id) was seen: a message marked seen but then
    /// not handled (its group had no member here) must not be taken for a
    /// duplicate when it is handled after all.
    pub(crate) fn forget(&mut self, origin: &str, id: u64) {
        if let Some(chunk) = self.origins.get_mut(origin).and_then(|c| c.get_mut(&(id - id % SPAN))) {
            chunk.bits[((id % SPAN) / 64) as usize] &= !(1u64 << (id % 64));
        }
    }

    fn evict_least_recent(&mut self) {
        let touched = |(origin, start): &(Arc<str>, u64)| {
            self.origins.get(origin).and_then(|c| c.get(start)).map(|c| c.touched)
        };
        let Some(at) = self.order.iter().enumerate().min_by_key(|(_, k)| touched(k)).map(|(i, _)| i) else {
            return;
        };
        self.order.swap(0, at);
        self.evict_front();
    }

    /// Drops the oldest chunks while unused for the window. A chunk still in
    /// use at the front holds back younger ones until capacity evicts it:
    /// ids are forgotten late, never early.
    fn expire(&mut self, now: Instant) {
        while let Some((origin, start)) = self.order.front() {
            let touched = self.origins.get(origin).and_then(|c| c.get(start)).map(|c| c.touched);
            match touched {
                Some(t) if now.duration_since(t) < self.window => break,
                _ => self.evict_front(),
            }
        }
    }

    fn evict_front(&mut self) {
        let Some((origin, start)) = self.order.pop_front() else { return };
        if let Some(chunks) = self.origins.get_mut(&origin) {
            chunks.remove(&start);
            if chunks.is_empty() {
                self.origins.remove(&origin);
            }
        }
    }

    /// The map's own key for `origin`, so chunks share its allocation.
    fn origins_key(&self, origin: &str) -> Arc<str> {
        self.origins.get_key_value(origin).map_or_else(|| origin.into(), |(k, _)| k.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_the_window_only() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_secs(10), 1_000_000);
        assert!(d.first_time("a", 1, t0));
        assert!(!d.first_time("a", 1, t0));
        assert!(d.first_time("b", 1, t0), "origins are apart");
        assert!(d.first_time("a", 2, t0));
        assert!(d.first_time("a", 1 << 40, t0), "a far id starts its own chunk");
        assert!(!d.first_time("a", 2, t0 + Duration::from_secs(9)));
        let later = t0 + Duration::from_secs(20);
        assert!(d.first_time("a", 2, later), "expired after the window");
        assert!(d.first_time("b", 1, later));
    }

    #[test]
    fn a_forgotten_id_is_new_again() {
        let mut d = Dedup::new(Duration::from_secs(10), 100);
        let t0 = Instant::now();
        assert!(d.first_time("a", 1, t0) && d.first_time("a", 2, t0));
        d.forget("a", 1);
        d.forget("b", 1); // never seen: nothing to forget
        assert!(d.first_time("a", 1, t0), "forgotten");
        assert!(!d.first_time("a", 2, t0), "its neighbour is still remembered");
        assert!(!d.first_time("a", 1, t0));
    }

    #[test]
    fn capacity_evicts_the_oldest_chunk() {
        let t0 = Instant::now();
        // Two chunks at most.
        let mut d = Dedup::new(Duration::from_secs(60), 2 * SPAN as usize);
        assert!(d.first_time("a", 5, t0));
        assert!(d.first_time("a", SPAN + 5, t0));
        assert!(!d.first_time("a", 5, t0));
        assert!(d.first_time("b", 5, t0)); // a third chunk: evicts ("a", 0)
        assert_eq!(d.order.len(), 2);
        assert!(d.first_time("a", 5, t0), "forgotten once evicted");
        assert!(d.origins.values().map(HashMap::len).sum::<usize>() <= 2);
    }

    #[test]
    fn capacity_evicts_the_chunk_seen_least_recently() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut d = Dedup::new(Duration::from_secs(60), 2 * SPAN as usize);
        assert!(d.first_time("slow", 1, at(0)));
        assert!(d.first_time("busy", 1, at(1)));
        assert!(d.first_time("slow", 2, at(2)), "the slow origin's chunk, in use");
        assert!(d.first_time("busy", SPAN + 1, at(3)), "a third chunk evicts busy's first");
        assert!(!d.first_time("slow", 1, at(4)), "still remembered");
        assert!(d.first_time("busy", 1, at(5)), "forgotten: it was the least recent");
    }

    #[test]
    fn every_id_of_a_long_stream_once() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_secs(60), 1_000_000);
        // Two interleaved partitions, as a Kafka topic delivers them.
        let ids: Vec<u64> =
            (0..50_000u64).map(|i| 1_000_000 + if i % 2 == 0 { i / 2 } else { 25_000 + i / 2 }).collect();
        assert!(ids.iter().all(|&id| d.first_time("o", id, t0)));
        assert!(ids.iter().all(|&id| !d.first_time("o", id, t0)));
        assert!(d.order.len() <= 50_000 / SPAN as usize + 2);
    }

    mod model {
        //! `Dedup` against a plain model: random sightings and forgets of
        //! ids from a few origins, at times moving forward by up to a
        //! window and a half.

        use super::*;
        use proptest::prelude::*;
        use std::collections::{HashMap, HashSet};

        const WINDOW: Duration = Duration::from_secs(4);
        /// Ids on chunk edges, far apart, and at the end of the range (where
        /// a chunk's arithmetic could overflow), so sightings share chunks
        /// and neighbour them.
        const IDS: [u64; 10] = [0, 1, 63, 64, SPAN - 1, SPAN, 3 * SPAN + 7, 1 << 40, u64::MAX - 1, u64::MAX];

        #[derive(Debug, Clone)]
        enum Op {
            Seen { origin: usize, id: u64, after_ms: u64 },
            Forget { origin: usize, id: u64 },
        }

        fn op() -> impl Strategy<Value = Op> {
            let id = prop_oneof![prop::sample::select(&IDS[..]), 0..3 * SPAN];
            prop_oneof![
                6 => (0..3usize, id.clone(), prop_oneof![Just(0u64), 0..6_000u64])
                    .prop_map(|(origin, id, after_ms)| Op::Seen { origin, id, after_ms }),
                1 => (0..3usize, id).prop_map(|(origin, id)| Op::Forget { origin, id }),
            ]
        }

        /// Each chunk `d` keeps, by origin and first id, and when it was
        /// last touched.
        fn chunks(d: &Dedup) -> HashMap<(String, u64), Instant> {
            let by_origin = d.origins.iter();
            by_origin.flat_map(|(o, c)| c.iter().map(|(s, c)| ((o.to_string(), *s), c.touched))).collect()
        }

        /// Replays `ops` on a `Dedup` of `capacity` ids and checks, at each
        /// sighting, the model's rules: a duplicate is only ever an id seen
        /// and not forgotten since (a false one would lose an event); an id
        /// is a duplicate if its chunk was touched with no pause as long as
        /// the window since the id was seen (remembered at least that
        /// long), unless capacity pushed the chunk out, which only ever
        /// takes the chunk seen least recently. The chunks kept never
        /// exceed the capacity.
        fn replay(ops: &[Op], capacity: usize) -> Result<(), TestCaseError> {
            let origins = ["a", "b", "c"];
            let t0 = Instant::now();
            let mut now = t0;
            let mut d = Dedup::new(WINDOW, capacity);
            let mut seen: HashSet<(usize, u64)> = HashSet::new();
            // Chunks touched within the window, and the ids they must
            // still remember.
            let mut touched: HashMap<(usize, u64), Instant> = HashMap::new();
            let mut remembered: HashSet<(usize, u64)> = HashSet::new();
            for op in ops {
                match *op {
                    Op::Seen { origin, id, after_ms } => {
                        now += Duration::from_millis(after_ms);
                        let chunk = (origin, id - id % SPAN);
                        touched.retain(|_, t| now.duration_since(*t) < WINDOW);
                        remembered.retain(|(o, i)| touched.contains_key(&(*o, i - i % SPAN)));
                        let before = chunks(&d);
                        let first = d.first_time(origins[origin], id, now);
                        let after = chunks(&d);
                        if !first {
                            prop_assert!(
                                seen.contains(&(origin, id)),
                                "{id} of {origin} taken for a duplicate"
                            );
                        }
                        // A chunk gone within the window was pushed out
                        // for capacity: the one seen least recently, whose
                        // ids are then forgotten early.
                        let least_recent_kept = after.values().copied().filter(|t| *t < now).min();
                        for (gone, t) in before.iter().filter(|(c, _)| !after.contains_key(*c)) {
                            if now.duration_since(*t) < WINDOW {
                                prop_assert!(
                                    least_recent_kept.is_none_or(|n| *t <= n),
                                    "{gone:?} was not the least recent"
                                );
                                remembered.retain(|(o, i)| {
                                    (origins[*o], i - i % SPAN) != (gone.0.as_str(), gone.1)
                                });
                            }
                        }
                        if remembered.contains(&(origin, id)) {
                            prop_assert!(!first, "{id} of {origin} forgotten within the window");
                        }
                        seen.insert((origin, id));
                        remembered.insert((origin, id));
                        touched.insert(chunk, now);
                        prop_assert!(d.order.len() <= capacity.div_ceil(SPAN as usize).max(1));
                        let kept: usize = d.origins.values().map(HashMap::len).sum();
                        prop_assert_eq!(kept, d.order.len(), "chunks and their order disagree");
                    }
                    Op::Forget { origin, id } => {
                        d.forget(origins[origin], id);
                        seen.remove(&(origin, id));
                        remembered.remove(&(origin, id));
                    }
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn unbounded(ops in prop::collection::vec(op(), 1..80)) {
                replay(&ops, usize::MAX / 2)?;
            }

            #[test]
            fn two_chunks(ops in prop::collection::vec(op(), 1..80)) {
                replay(&ops, 2 * SPAN as usize)?;
            }
        }
    }
}
