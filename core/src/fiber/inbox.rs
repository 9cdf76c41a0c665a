//! A user lane: the bounded FIFO that emitters fill without taking the
//! fiber's lock.
//!
//! All the room accounting lives in one atomic word, `occ`: the events the
//! lane holds (waiting, on their way into the queue, or in flight), the room
//! reserved by `block` emitters, and a closed bit. An emitter claims room with
//! one compare-and-swap on `occ` and then pushes into a lock-free queue; the
//! fiber's worker (and the rare overflow and shutdown paths, under the fiber
//! lock) takes events out and gives room back with one subtraction. Because
//! `held` counts an event from the moment its room is claimed until it is
//! settled, a stats snapshot taken under the fiber lock can read it once and
//! add it to both `accepted` and `pending`: the accounting equation holds in
//! every snapshot without stopping emitters.

use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::sync::{yield_now, AtomicU64, Ordering, Queue};
use crate::event::Event;

/// The largest lane capacity (`queue_capacity` and `root_capacity` of a
/// director or node, the bus's `buffer`) the engine takes: a user lane's
/// counts share one 64-bit word. The root lane has no such word (a
/// `VecDeque` that grows on demand), but is held to the same bound: no
/// control lane needs more, and a larger value is a mistake to refuse (a
/// C caller's `(size_t)-1`) rather than a lane with no bound at all.
pub const MAX_CAPACITY: usize = (1 << 31) - 1;

const HELD: u64 = (1 << 32) - 1;
const RESERVED_ONE: u64 = 1 << 32;
const RESERVED: u64 = ((1 << 31) - 1) << 32;
const CLOSED: u64 = 1 << 63;

/// Events stored by one claim, in order, shared by every lane that took
/// them.
pub(crate) type Run = Arc<[Arc<Event>]>;

/// What a lane's queue holds: one event, or a run of events stored by one
/// claim (`Director::emit_many`), shared by every lane it went to, so a
/// run of n events costs each target one push, not n.
#[derive(Debug)]
pub(crate) enum Item {
    One(Arc<Event>),
    Run(Run),
}

impl Item {
    /// How many events the item holds.
    pub(crate) fn len(&self) -> usize {
        match self {
            Item::One(_) => 1,
            Item::Run(run) => run.len(),
        }
    }

    /// The item's events, in order, appended to `into`.
    pub(crate) fn append_to(self, into: &mut Vec<Arc<Event>>) {
        match self {
            Item::One(e) => into.push(e),
            Item::Run(run) => into.extend_from_slice(&run),
        }
    }
}

/// The outcome of claiming room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Room claimed; the lane now holds this many events.
    Room(u64),
    /// No room under the capacity.
    Full,
    /// The lane no longer accepts events (unregistered or closing).
    Closed,
}

#[derive(Debug)]
pub(crate) struct UserLane {
    occ: CachePadded<AtomicU64>,
    queue: Queue<Item>,
    capacity: u64,
}

impl UserLane {
    pub(crate) fn new(capacity: usize) -> Self {
        debug_assert!((1..=MAX_CAPACITY).contains(&capacity));
        Self { occ: CachePadded::new(AtomicU64::new(0)), queue: Queue::new(), capacity: capacity as u64 }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Claims room for `n` events (`reserved`: as a reservation).
    fn claim(&self, n: u64, reserved: bool) -> Claim {
        let unit = if reserved { n * RESERVED_ONE } else { n };
        let mut cur = self.occ.load(Ordering::Relaxed);
        loop {
            if cur & CLOSED != 0 {
                return Claim::Closed;
            }
            let held = cur & HELD;
            if held + ((cur & RESERVED) >> 32) + n > self.capacity {
                return Claim::Full;
            }
            match self.occ.compare_exchange_weak(cur, cur + unit, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Claim::Room(if reserved { held } else { held + n }),
                Err(now) => cur = now,
            }
        }
    }

    /// Claims room for one event, which the caller then [`push`](Self::push)es.
    pub(crate) fn admit(&self) -> Claim {
        self.claim(1, false)
    }

    /// Claims room for the `n` events of a run (`n` at most the capacity),
    /// which the caller then [`push_run`](Self::push_run)es: all or none.
    pub(crate) fn admit_run(&self, n: usize) -> Claim {
        self.claim(n as u64, false)
    }

    /// Claims room for a later [`commit`](Self::commit) (the `block` policy,
    /// which must secure room in every target before it stores anywhere).
    #[cfg(test)]
    pub(crate) fn reserve(&self) -> Claim {
        self.reserve_run(1)
    }

    /// Reserves room for `n` events (at most the capacity), as
    /// [`reserve`](Self::reserve) does for one.
    pub(crate) fn reserve_run(&self, n: usize) -> Claim {
        self.claim(n as u64, true)
    }

    /// Turns a reservation into a held event; `None` (reservation given
    /// back) when the lane closed meanwhile.
    pub(crate) fn commit(&self) -> Option<u64> {
        self.commit_run(1)
    }

    /// Turns a reservation of `n` events into held events, as
    /// [`commit`](Self::commit) does for one.
    pub(crate) fn commit_run(&self, n: usize) -> Option<u64> {
        let n = n as u64;
        let mut cur = self.occ.load(Ordering::Relaxed);
        loop {
            if cur & CLOSED != 0 {
                self.release_run(n as usize);
                return None;
            }
            let next = cur - n * RESERVED_ONE + n;
            match self.occ.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(next & HELD),
                Err(now) => cur = now,
            }
        }
    }

    /// Gives a reservation back.
    #[cfg(test)]
    pub(crate) fn release(&self) {
        self.release_run(1);
    }

    /// Gives a reservation of `n` events back.
    pub(crate) fn release_run(&self, n: usize) {
        self.occ.fetch_sub(n as u64 * RESERVED_ONE, Ordering::AcqRel);
    }

    /// Stores an event whose room was claimed.
    pub(crate) fn push(&self, event: Arc<Event>) {
        self.queue.push(Item::One(event));
    }

    /// Stores a run of events whose room was claimed together.
    pub(crate) fn push_run(&self, run: Run) {
        self.queue.push(Item::Run(run));
    }

    /// Takes the oldest stored item (its room stays held until settled).
    pub(crate) fn pop(&self) -> Option<Item> {
        self.queue.pop()
    }

    /// [`pop`](Self::pop) for the loom models, which push single events.
    #[cfg(all(test, chronica_loom))]
    pub(crate) fn pop_one(&self) -> Option<Arc<Event>> {
        self.pop().map(|item| match item {
            Item::One(e) => e,
            Item::Run(_) => panic!("a run where single events were pushed"),
        })
    }

    /// True when no stored event waits (one may still be on its way in).
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Returns the room of `n` events that were delivered, dropped or
    /// dead-lettered.
    pub(crate) fn settle(&self, n: usize) {
        if n > 0 {
            self.occ.fetch_sub(n as u64, Ordering::AcqRel);
        }
    }

    /// Takes the `waiting` events stored or on their way in from a closed
    /// lane, in order, into `into`: the claims made before the close are
    /// the last, and an emitter between its claim and its push is about to
    /// push, so this waits for it.
    pub(crate) fn take_closed(&self, mut waiting: u64, into: &mut Vec<Arc<Event>>) {
        debug_assert!(self.occ.load(Ordering::Relaxed) & CLOSED != 0);
        while waiting > 0 {
            match self.queue.pop() {
                Some(item) => {
                    waiting -= item.len() as u64;
                    item.append_to(into);
                }
                None => yield_now(),
            }
        }
    }

    /// Refuses every later claim; claims already made still complete.
    pub(crate) fn close(&self) {
        self.occ.fetch_or(CLOSED, Ordering::AcqRel);
    }

    /// Events held: stored, on their way in, or in flight.
    pub(crate) fn held(&self) -> u64 {
        self.occ.load(Ordering::Acquire) & HELD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u64) -> Arc<Event> {
        Event::for_test(id)
    }

    #[test]
    fn room_is_claimed_reserved_and_settled() {
        let lane = UserLane::new(2);
        assert_eq!(lane.admit(), Claim::Room(1));
        lane.push(ev(1));
        assert_eq!(lane.reserve(), Claim::Room(1));
        assert_eq!(lane.admit(), Claim::Full);
        assert_eq!(lane.reserve(), Claim::Full);
        assert_eq!(lane.commit(), Some(2));
        lane.push(ev(2));
        assert_eq!(lane.pop().map(|item| item.len()), Some(1));
        assert_eq!(lane.held(), 2, "a popped event holds its room until settled");
        lane.settle(1);
        assert_eq!(lane.held(), 1);
        assert_eq!(lane.reserve(), Claim::Room(1));
        lane.release();
        assert_eq!(lane.admit(), Claim::Room(2));
    }

    #[test]
    fn a_closed_lane_refuses_claims_and_gives_reservations_back() {
        let lane = UserLane::new(4);
        assert_eq!(lane.reserve(), Claim::Room(0));
        lane.close();
        assert_eq!(lane.admit(), Claim::Closed);
        assert_eq!(lane.commit(), None);
        assert_eq!(lane.held(), 0);
    }

    /// Many emitters against one consumer: every admitted event arrives once,
    /// in each emitter's order, and the capacity is never exceeded.
    #[test]
    fn concurrent_emitters_keep_capacity_and_order() {
        const PER: u64 = 20_000;
        let lane = Arc::new(UserLane::new(64));
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let lane = lane.clone();
                std::thread::spawn(move || {
                    let mut i = 0;
                    while i < PER {
                        match lane.admit() {
                            Claim::Room(h) => {
                                assert!(h <= 64);
                                lane.push(ev(p << 32 | i));
                                i += 1;
                            }
                            Claim::Full => std::thread::yield_now(),
                            Claim::Closed => unreachable!(),
                        }
                    }
                })
            })
            .collect();
        let mut next = [0u64; 3];
        let mut got = 0;
        while got < 3 * PER {
            match lane.pop() {
                Some(Item::One(e)) => {
                    let (p, i) = ((e.id >> 32) as usize, e.id & 0xffff_ffff);
                    assert_eq!(i, next[p], "producer {p} out of order");
                    next[p] += 1;
                    got += 1;
                    lane.settle(1);
                }
                Some(Item::Run(_)) => unreachable!("no runs were pushed"),
                None => std::thread::yield_now(),
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(lane.held(), 0);
    }
}
