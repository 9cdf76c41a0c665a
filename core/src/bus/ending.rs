//! Ending a bus's subscriptions on its director: the steps of `off` and
//! `close` that act on the director (drain, unregister by registration,
//! read counters), over the list's own steps (`list.rs`). Shared by the
//! Rust bus and the Python one (python/src/bus.rs).

use std::time::{Duration, Instant};

use super::list::{SubscriptionList, Taken};
use crate::director::Registration;
use crate::{Director, Error, NodeStats, Result};

impl<T> SubscriptionList<T> {
    /// The counters of subscription `id`, node `uid` of `registration`, on
    /// `director`: only while it is live, or, once the director is closed
    /// (which keeps its nodes' final counters, and whose close unlisted the
    /// subscription), its final ones; else `UnknownNode`.
    pub fn stats(
        &self,
        director: &Director,
        id: u64,
        uid: &str,
        registration: Registration,
    ) -> Result<NodeStats> {
        let listed = self.is_live(id);
        if !listed && !director.is_closed() {
            return Err(Error::UnknownNode(uid.to_owned()));
        }
        director.stats_of(uid, registration)
    }

    /// An `off` of subscription `id`, node `uid`: takes it (see `take`) and
    /// ends it, draining it (see `leave`) if `drain` (not from inside its
    /// own handler, which the drain would wait for), else stopping it after
    /// its current call (see `end`); `UnknownNode` when it is not this
    /// call's to end (the caller tells why: ended, or the bus closed).
    ///
    /// A close of the director that begins before the unregister here
    /// ends the node itself, and the unregister then fails with `Closed`:
    /// this call waits for the entry to leave the list (unless the thread
    /// cannot wait for it), then returns `Closed` if that close had begun
    /// before the call, as the subscription was ended before it was asked
    /// to end it. A close that began later, with the subscription taken
    /// here, ended it as this call would have (drained within the close's
    /// own deadline, what was left counted as pending), so the call has
    /// done what was asked, and returns the node's last counters: once it
    /// has waited, the final ones, which the closed director keeps. (A
    /// close that begins during the drain stops it at the close's deadline,
    /// and the unregister returns those final counters itself.)
    pub fn off(
        &self,
        director: &Director,
        id: u64,
        uid: &str,
        timeout: Duration,
        drain: bool,
    ) -> Result<NodeStats> {
        let can_wait = director.can_wait();
        let closed_before = director.is_closed();
        let Some(taken) = self.take(id, can_wait) else {
            return Err(Error::UnknownNode(uid.to_owned()));
        };
        let ended = if drain {
            self.leave(director, &taken, timeout)
        } else {
            self.end(director, &taken).map(|(last, _)| last)
        };
        match ended {
            Err(Error::Closed) => {
                if can_wait {
                    self.wait_gone(id);
                }
                if closed_before {
                    return Err(Error::Closed);
                }
                director.stats_of(uid, taken.registration).map_err(|_| Error::Closed)
            }
            ended => ended,
        }
    }

    /// Ends the subscriptions a `close` took, within `timeout` in all, and
    /// returns the events they left: those it drains (`drain` tells of each
    /// id) as `off` does (see `leave`), the others as `end` does. What a
    /// subscription left is what was pending when it stopped, counted from
    /// its counters at the start and at the end, so an event its handler
    /// delivered meanwhile is not among them. One that fails (but with
    /// `Closed` or `UnknownNode`: ended already) is given back, and the
    /// first such error returned once every other is ended. Then it waits
    /// until those an `off` (or a close of the director) is ending have
    /// ended, unless the thread cannot wait for them; an `off` drains no
    /// longer than this close's deadline (see `cut_drains`), so the wait is
    /// for its unregister only, as for the subscriptions ended here.
    pub fn end_all(
        &self,
        director: &Director,
        taken: &[Taken],
        timeout: Duration,
        drain: impl Fn(u64) -> bool,
    ) -> Result<u64> {
        let can_wait = director.can_wait();
        let deadline = crate::time::deadline(timeout);
        self.cut_drains(deadline);
        let mut left = 0;
        let mut failed = None;
        for sub in taken {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let ended = if drain(sub.id) {
                let before = director.stats_of(&sub.uid, sub.registration).unwrap_or_default();
                self.leave(director, sub, remaining).map(|last| (before, last))
            } else {
                self.end(director, sub)
            };
            match ended {
                // Where the unregister waited, nothing is pending and what
                // it left was dropped (or handed on) as it stopped.
                Ok((before, last)) => left += last.pending + last.dropped.saturating_sub(before.dropped),
                Err(Error::Closed | Error::UnknownNode(_)) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                    self.release(&[sub.id]);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if can_wait {
            self.wait_settled();
        }
        Ok(left)
    }

    /// Ends a subscription that an `off` has taken, with the engine's
    /// draining unregister, only while the uid is still its registration:
    /// the node leaves the routes at once, so nothing new reaches it (what
    /// is emitted meanwhile goes to the other subscribers, another member
    /// of its group included), and delivers what it holds until `timeout`
    /// passes or the bus's close cuts the drain short. The drain starts
    /// with the list's `DrainCut`, which the close cuts: the engine orders
    /// the two, so a close that comes after this call's decision to drain
    /// and before the drain starts bounds it all the same. Returns the
    /// node's final counters, where nothing is pending (those of the moment
    /// where the thread cannot wait, inside a callback of the director).
    /// Found ended behind the bus's back, it leaves the list at once
    /// (`UnknownNode`), as in `end`.
    fn leave(&self, director: &Director, taken: &Taken, timeout: Duration) -> Result<NodeStats> {
        #[cfg(test)]
        if let Some(hook) = BEFORE_DRAIN.take() {
            hook();
        }
        let ended =
            director.unregister_registration_draining(&taken.uid, taken.registration, timeout, &self.cut);
        if let Err(Error::UnknownNode(_)) = ended {
            self.remove(taken.id);
        }
        ended
    }

    /// Ends a subscription that the caller (a `close`, or an `off` from
    /// inside its own handler) has taken, without a drain: unregisters its
    /// node, only while the uid is still its registration, so it stops
    /// after its current call. Returns the node's counters before the
    /// unregister and after it (its final ones where it waited). Found
    /// ended behind the bus's back, it leaves the list at once
    /// (`UnknownNode`): its node is no longer registered, and nobody must
    /// wait for it.
    pub fn end(&self, director: &Director, taken: &Taken) -> Result<(NodeStats, NodeStats)> {
        let (uid, ours) = (taken.uid.as_str(), taken.registration);
        let last = match director.stats_of(uid, ours) {
            Ok(last) => Ok(last),
            // Admitted but not routed yet: its `on` is still inside the
            // director's registration, which a close overtook (see
            // `EventBus::subscribe`). The unregister below waits for it to
            // finish; the node has had no time to take anything. (Or ended
            // behind our back, maybe with its uid taken since: then the
            // unregister finds no such registration.)
            Err(Error::UnknownNode(_)) => Ok(NodeStats::default()),
            Err(e) => Err(e),
        };
        let ended = last.and_then(|last| director.unregister_registration(uid, ours).map(|fin| (last, fin)));
        if let Err(Error::UnknownNode(_)) = ended {
            self.remove(taken.id);
        }
        ended
    }
}

#[cfg(test)]
thread_local! {
    /// TEST-ONLY: run (once) on this thread when an `off` here has decided
    /// to drain its subscription, just before it asks the engine to: a
    /// test runs a close of the bus in that window.
    pub(crate) static BEFORE_DRAIN: std::cell::Cell<Option<Box<dyn FnOnce()>>> =
        const { std::cell::Cell::new(None) };
}
