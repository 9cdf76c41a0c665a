//! Recycling of delivered events' allocations back to emitters.
//!
//! An event is allocated by its emitter and released by whichever worker
//! drops the last reference. With glibc's allocator that cross-thread free
//! takes the emitter's arena lock, and the emitter's next allocation then
//! misses its thread cache and waits for that lock: on W1 this was the
//! largest single cost after the fan-out itself. So a worker that holds the
//! last reference to a delivered event empties it of what may be large (the
//! payload, the key, the host extension, released right there as before)
//! and keeps the small shell; once it has [`PER_SLOT`] of them it hands the
//! vector to the director, and emitters overwrite shells in place instead
//! of allocating.
//!
//! Bounds: a worker keeps fewer than `PER_SLOT` shells, the director at
//! most [`SLOTS`] vectors, an emitting thread one vector; a shell is a
//! fixed-size event with no payload. The exchange is a mutex taken once per
//! `PER_SLOT` shells: a lock-free queue taken per batch made 64 workers on
//! two cores spin on each other's preempted operations.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::event::Event;

/// How many vectors of shells wait between workers and emitters.
const SLOTS: usize = 32;
/// How many shells travel together.
const PER_SLOT: usize = 64;

thread_local! {
    /// Shells this emitting thread took and has not used yet.
    static SHELLS: RefCell<Vec<Arc<Event>>> = const { RefCell::new(Vec::new()) };
}

/// The director's exchange of event shells between workers and emitters.
#[derive(Debug, Default)]
pub(crate) struct Recycler {
    /// Vectors of `PER_SLOT` emptied events, for emitters.
    full: Mutex<Vec<Vec<Arc<Event>>>>,
    /// Emptied vectors, for workers to fill, so neither side allocates them.
    empty: Mutex<Vec<Vec<Arc<Event>>>>,
}

impl Recycler {
    /// Takes a delivered batch's events (leaving `events` empty): those
    /// this worker holds the last reference to are emptied into `shells`,
    /// the worker's own, the others are released.
    pub(crate) fn give_back(&self, events: &mut Vec<Arc<Event>>, shells: &mut Vec<Arc<Event>>) {
        for mut e in events.drain(..) {
            // `get_mut` succeeds only for the last reference (no other
            // `Arc` nor `Weak`), so nobody can observe the emptying. It
            // takes the counts' cache line once; the release that follows
            // when it fails then finds the line already here.
            if let Some(ev) = Arc::get_mut(&mut e) {
                ev.payload = Bytes::new();
                ev.key = None;
                ev.extension = None;
                shells.push(e);
                if shells.len() == PER_SLOT {
                    self.hand_over(shells);
                }
            }
        }
    }

    /// Gives a worker's full vector of shells to emitters (or frees the
    /// shells when emitters have enough) and leaves an empty one in place.
    fn hand_over(&self, shells: &mut Vec<Arc<Event>>) {
        let spare = self.empty.lock().pop().unwrap_or_else(|| Vec::with_capacity(PER_SLOT));
        let full = std::mem::replace(shells, spare);
        let mut slots = self.full.lock();
        if slots.len() < SLOTS {
            slots.push(full);
        }
    }

    /// `event` in a recycled shell when one is at hand, else newly
    /// allocated.
    pub(crate) fn make(&self, event: Event) -> Arc<Event> {
        SHELLS.with(|s| {
            let mut shells = s.borrow_mut();
            if shells.is_empty() {
                let more = self.full.lock().pop();
                if let Some(more) = more {
                    let spent = std::mem::replace(&mut *shells, more);
                    let mut empty = self.empty.lock();
                    if empty.len() < SLOTS {
                        empty.push(spent);
                    }
                }
            }
            if let Some(mut shell) = shells.pop() {
                // Unique since the worker emptied it: nobody can have
                // cloned it since.
                if let Some(slot) = Arc::get_mut(&mut shell) {
                    *slot = event;
                    return shell;
                }
            }
            Arc::new(event)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64) -> Event {
        Event { id, ..(*Event::for_test(0)).clone() }
    }

    /// Delivers `PER_SLOT` unshared events through one worker's shells.
    fn fill(r: &Recycler) -> Vec<*const Event> {
        let mut events: Vec<_> = (0..PER_SLOT as u64).map(Event::for_test).collect();
        let addrs = events.iter().map(Arc::as_ptr).collect();
        let mut shells = Vec::new();
        r.give_back(&mut events, &mut shells);
        assert!(events.is_empty() && shells.is_empty(), "a full vector is handed over");
        addrs
    }

    #[test]
    fn last_references_are_emptied_and_reused() {
        let r = Recycler::default();
        let addrs = fill(&r);
        let again = r.make(event(7));
        assert!(addrs.contains(&Arc::as_ptr(&again)), "a shell is reused");
        assert_eq!(again.id, 7);
    }

    #[test]
    fn a_shared_event_is_not_recycled() {
        let r = Recycler::default();
        let kept = Event::for_test(1);
        let mut events = vec![kept.clone()];
        let mut shells = Vec::new();
        r.give_back(&mut events, &mut shells);
        assert!(shells.is_empty());
        assert_eq!(kept.id, 1, "a reference held elsewhere is untouched");
    }

    #[test]
    fn a_shell_keeps_no_payload() {
        let r = Recycler::default();
        let payload = Bytes::from(vec![1u8; 1 << 20]);
        let mut e = event(1);
        e.payload = payload.clone();
        let mut events = vec![Arc::new(e)];
        let mut shells = Vec::new();
        r.give_back(&mut events, &mut shells);
        assert_eq!(shells.len(), 1);
        assert!(payload.is_unique(), "the payload was released by give_back");
    }

    #[test]
    fn the_exchange_is_bounded() {
        let r = Recycler::default();
        for _ in 0..SLOTS + 3 {
            fill(&r);
        }
        assert_eq!(r.full.lock().len(), SLOTS);
    }
}
