//! `emit_many`: a run of events routed and stored together. Each target
//! lane gets the events routed to it as one run, stored with one claim and
//! one push, so a producer with many events to send pays per target and
//! run what `emit` pays per target and event. Events that every target
//! gets alike (the usual case: one topic, one source) share one run.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;

use crate::director::core::{now_ms, Core};
use crate::director::emit::Wait;
use crate::event::{Event, Message};
use crate::fiber::inbox::{Claim, Run};
use crate::fiber::lane::Overflow;
use crate::fiber::{Fiber, Offered, Wakes};
use crate::{Error, Result};

/// The events one target lane gets, in emit order.
struct Bucket<'a> {
    fiber: &'a Arc<Fiber>,
    lane: usize,
    /// Indices into the call's events; `None` when it gets all of them.
    picked: Option<Vec<usize>>,
}

/// One target lane of one event.
type Target<'a> = (&'a Arc<Fiber>, usize);

impl Core {
    /// Emits `msgs` in order, as many [`emit`](Core::emit)s would, with
    /// consecutive ids (returned). Under `block` it is all or nothing: room
    /// for every event is reserved in every target first, or nothing is
    /// accepted anywhere.
    pub(crate) fn emit_many<'m>(
        &self,
        msgs: impl IntoIterator<Item = Message<'m>>,
        wait: Wait,
    ) -> Result<Range<u64>> {
        self.check_open()?;
        let routes = self.routes();
        let msgs: Vec<Message<'m>> = msgs.into_iter().collect();
        // Every source is checked before anything is made or stored.
        let mut sources: Vec<Option<Arc<str>>> = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            let same = i > 0 && msgs[i - 1].source == m.source;
            sources.push(match same {
                true => sources[i - 1].clone(),
                false => Self::source_of(&routes, m.source.as_deref())?,
            });
        }
        let n = msgs.len() as u64;
        let first = self.ids.fetch_add(n, Ordering::Relaxed);
        if n == 0 {
            return Ok(first..first);
        }
        // One instant for the call: its events are emitted together.
        let now = now_ms();
        // Made straight into the run they share when every target gets them
        // all: no reference count moves to build it.
        let events: Run = msgs
            .into_iter()
            .zip(sources)
            .zip(first..)
            .map(|((m, source), id)| self.user_event_numbered((id, now), m, source))
            .collect();
        let buckets = self.buckets(&routes, &events);
        self.store_runs(&buckets, &events, wait)?;
        Ok(first..first + n)
    }

    /// The target lanes of `events` and which events each gets.
    fn buckets<'a>(
        &self,
        routes: &'a crate::director::routing::Routes,
        events: &[Arc<Event>],
    ) -> Vec<Bucket<'a>> {
        let mut each: SmallVec<[Target<'a>; 16]> = SmallVec::new();
        let mut first: SmallVec<[Target<'a>; 16]> = SmallVec::new();
        let mut index: HashMap<(usize, usize), usize> = HashMap::new();
        let mut buckets: Vec<Bucket<'a>> = Vec::new();
        // Whether the previous event's targets hold for the next one with
        // the same topic, source and key: no group picks a member per event
        // and no target picks a lane per event (round-robin).
        let mut repeatable = false;
        for (i, event) in events.iter().enumerate() {
            let like_previous = i > 0 && repeatable && same_route(&events[i - 1], event);
            if !like_previous {
                each.clear();
                let (topic, key, src) = (&*event.topic, event.key.as_deref(), event.source.as_deref());
                routes.for_each_target(topic, key, src, |f| each.push((f, f.user_lane_for(event))));
                repeatable = !routes.has_groups() && each.iter().all(|(f, _)| f.lanes() == 1);
            }
            if i == 0 {
                first.clone_from(&each);
                continue;
            }
            if like_previous && buckets.is_empty() {
                // The previous event's lanes, which were `first`'s.
                continue;
            }
            let same =
                buckets.is_empty() && each.len() == first.len() && each.iter().zip(&first).all(same_lane);
            if same {
                continue;
            }
            if buckets.is_empty() {
                // The events so far all went to `first`'s lanes.
                for &(fiber, lane) in &first {
                    index.insert(key_of(fiber, lane), buckets.len());
                    buckets.push(Bucket { fiber, lane, picked: Some((0..i).collect()) });
                }
            }
            for &(fiber, lane) in &each {
                let b = *index.entry(key_of(fiber, lane)).or_insert_with(|| {
                    buckets.push(Bucket { fiber, lane, picked: Some(Vec::new()) });
                    buckets.len() - 1
                });
                if let Some(picked) = &mut buckets[b].picked {
                    picked.push(i);
                }
            }
        }
        if buckets.is_empty() {
            // Every event went to the same lanes.
            return first.into_iter().map(|(fiber, lane)| Bucket { fiber, lane, picked: None }).collect();
        }
        for b in &mut buckets {
            if b.picked.as_ref().is_some_and(|p| p.len() == events.len()) {
                b.picked = None;
            }
        }
        buckets
    }

    /// Stores each bucket's run: `block` targets get room reserved for all
    /// of theirs first (all or nothing, as `deliver_all` does for one
    /// event); a run the lane cannot take whole under another policy, or a
    /// lane that left, gets its events one by one as `emit` would give
    /// them (overflow policy, another group member).
    fn store_runs(&self, buckets: &[Bucket<'_>], events: &Run, wait: Wait) -> Result<()> {
        let run_of = |b: &Bucket<'_>| -> Run {
            match &b.picked {
                None => events.clone(),
                Some(p) => p.iter().map(|&i| events[i].clone()).collect(),
            }
        };
        let mut deadline: Option<Option<Instant>> = None;
        let mut reserved: SmallVec<[(&Bucket<'_>, Run); 16]> = SmallVec::new();
        let mut singly: SmallVec<[(&Bucket<'_>, Run); 4]> = SmallVec::new();
        for b in buckets.iter().filter(|b| b.fiber.overflow == Overflow::Block) {
            let run = run_of(b);
            let capacity = b.fiber.lane_capacity(b.lane);
            if run.len() > capacity {
                release(&reserved);
                return Err(Error::InvalidArgument(format!(
                    "{} events for node {:?}, whose queue holds {capacity} (block policy): send fewer at once",
                    run.len(),
                    b.fiber.uid
                )));
            }
            let got = match b.fiber.try_reserve_run(b.lane, run.len()) {
                Claim::Room(_) => Some(true),
                Claim::Closed => None,
                Claim::Full => match *deadline.get_or_insert_with(|| wait.deadline(self.cfg.block_timeout)) {
                    Some(until) => b.fiber.reserve_run(b.lane, run.len(), until),
                    None => Some(false),
                },
            };
            match got {
                Some(true) => reserved.push((b, run)),
                None => singly.push((b, run)),
                Some(false) => {
                    release(&reserved);
                    return Err(Error::QueueFull(b.fiber.uid.to_string()));
                }
            }
        }
        let mut wakes = Wakes::default();
        let mut taken = false;
        for (b, run) in reserved {
            if b.fiber.accept_run_reserved_into(&run, b.lane, &mut wakes) {
                taken = true;
            } else {
                singly.push((b, run));
            }
        }
        for b in buckets.iter().filter(|b| b.fiber.overflow != Overflow::Block) {
            let run = run_of(b);
            match b.fiber.offer_run_into(&run, b.lane, &mut wakes) {
                Offered::Stored => taken = true,
                _ => singly.push((b, run)),
            }
        }
        for (b, run) in singly {
            for event in run.iter() {
                taken |= self.push_user_into(b.fiber, event, &mut wakes);
            }
        }
        drop(wakes);
        self.refused_by_all(!buckets.is_empty() && !taken)
    }
}

fn release(reserved: &[(&Bucket<'_>, Run)]) {
    for (b, run) in reserved {
        b.fiber.release_run(b.lane, run.len());
    }
}

/// Whether `b` routes as `a` does, given the same snapshot.
fn same_route(a: &Event, b: &Event) -> bool {
    // Topics and sources are mostly the same shared strings (interned,
    // the node's own uid): the pointers decide without reading the text.
    let same = |x: &Arc<str>, y: &Arc<str>| Arc::ptr_eq(x, y) || x == y;
    let source = match (&a.source, &b.source) {
        (Some(x), Some(y)) => same(x, y),
        (x, y) => x.is_none() && y.is_none(),
    };
    same(&a.topic, &b.topic) && source && a.key == b.key
}

fn same_lane(pair: (&Target<'_>, &Target<'_>)) -> bool {
    let ((f, l), (g, m)) = pair;
    Arc::ptr_eq(f, g) && l == m
}

fn key_of(fiber: &Arc<Fiber>, lane: usize) -> (usize, usize) {
    (Arc::as_ptr(fiber) as usize, lane)
}
