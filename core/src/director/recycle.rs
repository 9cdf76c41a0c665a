//! Recycling of delivered events' allocations back to emitters.
//!
//! An event is allocated by its emitter and released by whichever worker
//! drops the last reference. With glibc's allocator that cross-thread free
//! takes the emitter's arena lock, and the emitter's next allocation then
//! misses its thread cache and waits for that lock: on W1 this was the
//! largest single cost after the fan-out itself. So a worker that holds the
//! last reference to a delivered event empties it of what may be large (the
//! payload, the key, the host extension, released right there as before)
//! and hands the small shell back; the next emit on any thread overwrites a
//! shell in place instead of allocating. Shells are fixed-size and bounded
//! in number (`SLOTS` vectors of at most one batch each, plus one vector per
//! emitting thread), so recycling keeps no payload alive.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;

use crate::event::Event;

/// How many vectors of shells wait between workers and emitters.
const SLOTS: usize = 32;
/// The most shells one vector carries (a larger batch frees the rest).
const PER_SLOT: usize = 256;

thread_local! {
    /// Shells this emitting thread took and has not used yet.
    static SHELLS: RefCell<Vec<Arc<Event>>> = const { RefCell::new(Vec::new()) };
}

/// The director's exchange of event shells between workers and emitters.
#[derive(Debug)]
pub(crate) struct Recycler {
    /// Vectors of emptied events whose last reference a worker held.
    full: ArrayQueue<Vec<Arc<Event>>>,
    /// Empty vectors for workers to fill, so neither side allocates them.
    empty: ArrayQueue<Vec<Arc<Event>>>,
}

impl Default for Recycler {
    fn default() -> Self {
        Self { full: ArrayQueue::new(SLOTS), empty: ArrayQueue::new(SLOTS) }
    }
}

impl Recycler {
    /// Takes a delivered batch's events: those this worker holds the last
    /// reference to are emptied and kept for emitters, the others are
    /// released. Leaves `events` empty.
    pub(crate) fn give_back(&self, events: &mut Vec<Arc<Event>>) {
        let mut shells = self.empty.pop().unwrap_or_default();
        for mut e in events.drain(..) {
            // `get_mut` succeeds only for the last reference (no other
            // `Arc` nor `Weak`), so nobody can observe the emptying.
            if shells.len() == PER_SLOT {
                continue;
            }
            if let Some(ev) = Arc::get_mut(&mut e) {
                ev.payload = Bytes::new();
                ev.key = None;
                ev.extension = None;
                shells.push(e);
            }
        }
        if !shells.is_empty() {
            // Full exchange: the shells are simply freed, as without it.
            let _ = self.full.push(shells);
        } else {
            let _ = self.empty.push(shells);
        }
    }

    /// `event` in a recycled shell when one is at hand, else newly
    /// allocated.
    pub(crate) fn make(&self, event: Event) -> Arc<Event> {
        SHELLS.with(|s| {
            let mut shells = s.borrow_mut();
            if shells.is_empty() {
                if let Some(more) = self.full.pop() {
                    let spent = std::mem::replace(&mut *shells, more);
                    let _ = self.empty.push(spent);
                }
            }
            while let Some(mut shell) = shells.pop() {
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

    #[test]
    fn a_last_reference_is_emptied_and_reused() {
        let r = Recycler::default();
        let first = Event::for_test(1);
        let addr = Arc::as_ptr(&first);
        let mut events = vec![first];
        r.give_back(&mut events);
        assert!(events.is_empty());
        let again = r.make(Event { id: 2, ..(*Event::for_test(0)).clone() });
        assert_eq!(Arc::as_ptr(&again), addr, "the shell is reused");
        assert_eq!(again.id, 2);
    }

    #[test]
    fn a_shared_event_is_not_recycled() {
        let r = Recycler::default();
        let kept = Event::for_test(1);
        let mut events = vec![kept.clone()];
        r.give_back(&mut events);
        let made = r.make((*Event::for_test(3)).clone());
        assert_ne!(Arc::as_ptr(&made), Arc::as_ptr(&kept));
        assert_eq!(kept.id, 1, "a reference held elsewhere is untouched");
    }

    #[test]
    fn a_recycled_shell_keeps_no_payload() {
        let r = Recycler::default();
        let payload = Bytes::from(vec![1u8; 1 << 20]);
        let mut e = (*Event::for_test(1)).clone();
        e.payload = payload.clone();
        let mut events = vec![Arc::new(e)];
        r.give_back(&mut events);
        assert!(payload.is_unique(), "the payload was released by give_back");
    }
}
