//! The root lane: a bounded FIFO of shared control events, kept under the
//! fiber lock (root events are rare; user lanes are in `inbox.rs`).
//!
//! Invariant: `queue.len() + in_flight <= capacity` after every call except
//! for lag notices, which are created at delivery time. Events taken for
//! delivery stay counted in `in_flight` until the batch completes, so a
//! lane's pending count includes the batch being delivered or retried. The
//! overflow policy never drops an in-flight event: `drop_oldest` drops the
//! oldest *waiting* one, and when none waits the newcomer is dropped.
//! Nor does it drop a *pinned* event: a newcomer's
//! `chronica.pull_current_state` (the SPEC makes it the node's first
//! delivery) or a `chronica.lagged` notice (the only report of what was
//! dropped); `drop_oldest` evicts the oldest unpinned one instead. Pinned
//! events wait at the front, in the order they were pinned.
//!
//! The pull's payload (its peer list) is made only when the pull leaves
//! the lane (taken for delivery or drained at unregister): until then the
//! lane keeps the peers as a shared snapshot beside it (see
//! `director/peers.rs`), and the pull's payload is empty. Every way out of
//! the lane goes through `take` or `drain_waiting`, which fill it in; the
//! lane holds the only reference to the event until then, so the fill
//! changes it in place.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::director::peers::Peers;
use crate::event::Event;

/// What a lane does when an event arrives and it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop the oldest waiting event to make room (the default).
    #[default]
    DropOldest,
    /// Drop the arriving event.
    DropNewest,
    /// Make the emitter wait up to `block_timeout`, then fail with `QueueFull`.
    Block,
}

/// The outcome of [`Lane::push`].
#[derive(Debug)]
pub(crate) enum Pushed {
    /// Stored, nothing lost.
    Stored,
    /// Stored after dropping this (older) event.
    Evicted(Arc<Event>),
    /// Not stored: the arriving event is the one dropped.
    Rejected(Arc<Event>),
}

#[derive(Debug)]
pub(crate) struct Lane {
    queue: VecDeque<Arc<Event>>,
    capacity: usize,
    in_flight: usize,
    /// How many waiting events, at the front, may not be evicted.
    pinned: usize,
    /// The payload owed to the event at the front (a pull still waiting):
    /// rendered when it leaves (see the module's doc).
    owed: Option<Peers>,
}

impl Lane {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { queue: VecDeque::new(), capacity, in_flight: 0, pinned: 0, owed: None }
    }

    /// Events waiting or in flight.
    pub(crate) fn pending(&self) -> usize {
        self.queue.len() + self.in_flight
    }

    pub(crate) fn is_waiting_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn full(&self) -> bool {
        self.queue.len() + self.in_flight >= self.capacity
    }

    /// Adds an event under `policy` (`Block` refuses the newcomer: control
    /// events never make their emitter wait).
    pub(crate) fn push(&mut self, event: Arc<Event>, policy: Overflow) -> Pushed {
        if !self.full() {
            self.queue.push_back(event);
            return Pushed::Stored;
        }
        match policy {
            Overflow::DropOldest => match self.queue.remove(self.pinned) {
                Some(old) => {
                    self.queue.push_back(event);
                    Pushed::Evicted(old)
                }
                None => Pushed::Rejected(event),
            },
            Overflow::DropNewest | Overflow::Block => Pushed::Rejected(event),
        }
    }

    /// Stores the event a fresh lane must deliver first: it counts against
    /// the capacity but no overflow evicts it while it waits. With `peers`,
    /// its payload is their rendering, made when it leaves the lane.
    pub(crate) fn push_pinned(&mut self, event: Arc<Event>, peers: Option<Peers>) {
        debug_assert!(self.queue.is_empty() && self.in_flight == 0, "pinned into a used lane");
        self.queue.push_front(event);
        self.pinned = 1;
        self.owed = peers;
    }

    /// Renders the payload owed to the front event, which is leaving.
    /// Under the fiber lock, but it calls no user code and takes no lock.
    fn pay_owed(&mut self) {
        if let (Some(peers), Some(front)) = (self.owed.take(), self.queue.front_mut()) {
            Arc::make_mut(front).payload = peers.render();
        }
    }

    /// Adds a control notice regardless of capacity (it is created at
    /// delivery time, one at a time), pinned right behind what is already
    /// pinned: it goes out in the next batch, before the waiting events,
    /// and no overflow evicts it. Appended at the back instead, it waited
    /// behind more than a batch of root events and could be evicted, and
    /// the drops it reported were never reported.
    pub(crate) fn push_notice(&mut self, event: Arc<Event>) {
        self.queue.insert(self.pinned, event);
        self.pinned += 1;
    }

    /// Moves up to `max` waiting events into `out` and counts them in flight.
    pub(crate) fn take(&mut self, max: usize, out: &mut Vec<Arc<Event>>) {
        let n = max.min(self.queue.len());
        if n > 0 {
            self.pay_owed();
        }
        self.pinned = self.pinned.saturating_sub(n);
        out.extend(self.queue.drain(..n));
        self.in_flight += n;
    }

    /// A batch of `n` in-flight events has left the lane (delivered,
    /// dead-lettered or handed elsewhere).
    pub(crate) fn finish(&mut self, n: usize) {
        self.in_flight -= n;
    }

    /// Takes every waiting event out (for hand-off or final counting).
    pub(crate) fn drain_waiting(&mut self) -> VecDeque<Arc<Event>> {
        self.pay_owed();
        self.pinned = 0;
        std::mem::take(&mut self.queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(id: u64) -> Arc<Event> {
        Event::for_test(id)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(bool),
        Notice,
        Take(usize),
        Finish,
    }

    /// The pull's payload is made as it leaves, by a take or a drain, in
    /// the event itself (the lane's is the only reference: no copy).
    #[test]
    fn a_pinned_pull_gets_its_payload_as_it_leaves() {
        let want: &[u8] = br#"{"peers":[]}"#;
        for drained in [false, true] {
            let mut lane = Lane::new(2);
            let pull = ev(0);
            let at = Arc::as_ptr(&pull);
            lane.push_pinned(pull, Some(Peers::default()));
            lane.push_notice(ev(1));
            let out: Vec<Arc<Event>> = if drained {
                lane.drain_waiting().into()
            } else {
                let mut out = Vec::new();
                lane.take(1, &mut out);
                out
            };
            assert_eq!(&out[0].payload[..], want, "drained: {drained}");
            assert_eq!(Arc::as_ptr(&out[0]), at, "drained: {drained}");
        }
    }

    proptest! {
        /// The lane against a plain model: a deque of waiting ids, a list of
        /// in-flight batches, the capacity rule, and a pinned front (a first
        /// event, then notices pinned behind it) that no overflow evicts.
        #[test]
        fn lane_matches_model(
            cap in 1usize..8,
            pin in any::<bool>(),
            ops in prop::collection::vec(prop_oneof![
                any::<bool>().prop_map(Op::Push),
                Just(Op::Notice),
                (1usize..5).prop_map(Op::Take),
                Just(Op::Finish),
            ], 0..200),
        ) {
            let mut lane = Lane::new(cap);
            let mut waiting: VecDeque<u64> = VecDeque::new();
            let mut flights: VecDeque<usize> = VecDeque::new();
            let mut next = 0u64;
            let mut pinned = usize::from(pin);
            let mut notices = 0usize; // waiting or in flight: beyond capacity
            let mut notice_ids: Vec<u64> = Vec::new();
            if pin {
                lane.push_pinned(ev(0), None);
                waiting.push_back(0);
            }
            for op in ops {
                match op {
                    Op::Push(oldest) => {
                        next += 1;
                        let policy = if oldest { Overflow::DropOldest } else { Overflow::DropNewest };
                        let in_flight: usize = flights.iter().sum();
                        let full = waiting.len() + in_flight >= cap;
                        let got = lane.push(ev(next), policy);
                        let oldest_evictable = pinned;
                        match (full, oldest, waiting.get(oldest_evictable).copied()) {
                            (false, _, _) => { prop_assert!(matches!(got, Pushed::Stored)); waiting.push_back(next); }
                            (true, true, Some(old)) => {
                                prop_assert!(!notice_ids.contains(&old), "a notice was evicted");
                                prop_assert!(matches!(&got, Pushed::Evicted(e) if e.id == old));
                                waiting.remove(oldest_evictable);
                                waiting.push_back(next);
                            }
                            (true, _, _) => prop_assert!(matches!(&got, Pushed::Rejected(e) if e.id == next)),
                        }
                    }
                    Op::Notice => {
                        next += 1;
                        lane.push_notice(ev(next));
                        waiting.insert(pinned, next);
                        pinned += 1;
                        notices += 1;
                        notice_ids.push(next);
                    }
                    Op::Take(max) => {
                        let mut out = Vec::new();
                        lane.take(max, &mut out);
                        let n = max.min(waiting.len());
                        let want: Vec<u64> = waiting.drain(..n).collect();
                        pinned = pinned.saturating_sub(n);
                        prop_assert_eq!(out.iter().map(|e| e.id).collect::<Vec<_>>(), want);
                        if n > 0 { flights.push_back(n); }
                    }
                    Op::Finish => {
                        if let Some(n) = flights.pop_front() { lane.finish(n); }
                    }
                }
                let in_flight: usize = flights.iter().sum();
                prop_assert_eq!(lane.pending(), waiting.len() + in_flight);
                prop_assert!(lane.pending() <= cap + notices);
            }
        }
    }
}
