//! A bus's list of subscriptions and the protocol of `on`, `off` and
//! `close` on it: one implementation for the Rust [`EventBus`] and the
//! Python binding's (`python/src/bus.rs`). They differ in what they keep
//! with each entry (`T`: the Rust bus a subscription's topic and group,
//! the Python bus its `Subscription` object) and in how they know the
//! handler a thread runs (the `drain` and `reentrant` arguments).
//!
//! Each entry goes through three stages. `Joining`: listed by its `on`
//! ([`SubscriptionList::join`]) before the registration, which the
//! director admits (`Live`, [`SubscriptionList::admit`]) under its
//! membership lock unless the bus is closed by then (see
//! `EventBus::subscribe`). `Ending`: taken by the one `off`
//! ([`SubscriptionList::take`]) or `close` ([`SubscriptionList::close`])
//! that ends it (the stage changes only under the list's lock, so exactly
//! one call takes it). The entry leaves the list when its node is dropped
//! (its [`Listing`], held by the node, whatever ended it: that call, an
//! unregister straight on the director, a close of the director), or when
//! the call ending it finds the node already ended behind its back
//! ([`SubscriptionList::end`]). An `off` or `close` that finds an entry
//! `Ending` in another call's hands waits for it to leave the list, so
//! neither returns while that subscription's handler may still run.
//!
//! `closed` is written only under the lock, which admissions take too, so
//! a close and an admission are ordered; it is read without it.
//!
//! The lock is never held while user code runs, a director call waits, or
//! an entry's payload is dropped (a Python object's drop takes the GIL);
//! the director takes it, briefly, to admit a subscription, and a node
//! takes it as it is dropped. The waits here block the calling thread: the
//! Python binding calls them with the GIL released.
//!
//! [`EventBus`]: crate::EventBus

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::director::{DrainCut, Registration};
use crate::{Error, Result};

/// A bus's subscriptions, oldest first (see the module documentation).
/// Public but hidden for the Python binding's bus; not a stable API.
#[derive(Debug)]
pub struct SubscriptionList<T> {
    entries: Mutex<Vec<ListEntry<T>>>,
    /// Set by `close` (cleared by `reopen`), only under `entries`' lock.
    closed: AtomicBool,
    /// Signalled when an entry leaves the list or goes back to `Live`.
    changed: Condvar,
    /// The deadline of the bus's close once it ends its subscriptions: no
    /// drain goes past it, an `off`'s included (see `cut_drains`). Every
    /// `off` starts its node's drain with it.
    pub(super) cut: DrainCut,
}

/// A subscription of the bus.
#[derive(Debug)]
pub struct ListEntry<T> {
    /// The subscription's number, unique in the process.
    pub id: u64,
    /// Its node's uid (empty until admitted).
    pub uid: String,
    /// Which registration of `uid` is its node (set when admitted).
    pub registration: Registration,
    /// What the bus keeps with it.
    pub payload: T,
    stage: Stage,
}

/// A subscription taken by the `off` or `close` that ends it: what
/// [`SubscriptionList::end`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The subscription's number.
    pub id: u64,
    /// Its node's uid.
    pub uid: String,
    /// Which registration of `uid` is its node.
    pub registration: Registration,
}

/// Where a subscription is in its life (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Its `on` is in progress; a close may still refuse it, nothing else
    /// looks at it.
    Joining,
    /// Admitted by the director: its node is registered.
    Live,
    /// Taken by the `off` or `close` that ends it.
    Ending,
}

impl<T> Default for SubscriptionList<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            changed: Condvar::new(),
            cut: DrainCut::default(),
        }
    }
}

impl<T> ListEntry<T> {
    fn taken(&self) -> Taken {
        Taken { id: self.id, uid: self.uid.clone(), registration: self.registration }
    }
}

impl<T> SubscriptionList<T> {
    /// True once `close` has succeeded (and no `reopen` undid it).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Lists subscription `id` (`Joining`), before its registration.
    pub fn join(&self, id: u64, payload: T) {
        let entry = ListEntry {
            id,
            uid: String::new(),
            registration: Registration::default(),
            payload,
            stage: Stage::Joining,
        };
        self.entries.lock().push(entry);
    }

    /// The place of subscription `id` in `list`, for its node to hold: its
    /// drop removes the entry.
    pub fn listing(list: &Arc<Self>, id: u64) -> Listing<T> {
        Listing { list: Arc::downgrade(list), id }
    }

    /// The director's last check of subscription `id`'s node, under its
    /// membership lock: `Closed` once the bus is closed, else the entry is
    /// admitted (`Live`) as `registration` of `uid`.
    pub fn admit(&self, id: u64, uid: &str, registration: Registration) -> Result<()> {
        let mut entries = self.entries.lock();
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if let Some(e) = entries.iter_mut().find(|e| e.id == id) {
            e.uid = uid.to_owned();
            e.registration = registration;
            e.stage = Stage::Live;
        }
        Ok(())
    }

    /// Takes subscription `id` for an `off` (`Ending`); None when it is not
    /// that call's to end (not listed, or the bus is closed). While another
    /// call is ending it, waits for it to leave the list first, if
    /// `can_wait` (returning then would leave its handler running after the
    /// `off` says it has ended).
    pub fn take(&self, id: u64, can_wait: bool) -> Option<Taken> {
        let mut entries = self.entries.lock();
        loop {
            let closed = self.is_closed();
            let e = entries.iter_mut().find(|e| e.id == id)?;
            match e.stage {
                // The close takes every live entry as it closes the bus.
                Stage::Live if !closed => {
                    e.stage = Stage::Ending;
                    return Some(e.taken());
                }
                Stage::Ending if can_wait => self.wait(&mut entries),
                _ => return None,
            }
        }
    }

    /// Closes the list and takes every `Live` entry (`Ending`), returning
    /// them oldest first: from now on an `on` not admitted yet is refused,
    /// and one admitted is taken here, so that an `off` waits for the
    /// close to end it rather than saying `Closed` before it has.
    /// `Reentrant`, changing nothing, when `reentrant` holds for the id of
    /// a listed subscription; `Closed` when already closed.
    pub fn close(&self, reentrant: impl Fn(u64) -> bool) -> Result<Vec<Taken>> {
        let mut entries = self.entries.lock();
        if entries.iter().any(|e| reentrant(e.id)) {
            return Err(Error::Reentrant);
        }
        if self.closed.swap(true, Ordering::AcqRel) {
            return Err(Error::Closed);
        }
        let live = entries.iter_mut().filter(|e| e.stage == Stage::Live);
        Ok(live
            .map(|e| {
                e.stage = Stage::Ending;
                e.taken()
            })
            .collect())
    }

    /// Undoes a `close` whose director refused to close: reopens the list
    /// and gives `ids` back (first reopened, so that an `off` woken by the
    /// release takes its subscription back to end it itself).
    pub fn reopen(&self, ids: &[u64]) {
        // Only a close that ends the subscriptions itself cuts drains, and
        // that one never reopens: a cut cannot be taken back (drains only
        // ever end earlier).
        debug_assert!(self.cut.at().is_none(), "a list reopened after a cut");
        let mut entries = self.entries.lock();
        self.closed.store(false, Ordering::Release);
        self.give_back(&mut entries, ids);
    }

    /// Bounds every drain an `off` on this list has started or starts
    /// from now on by `deadline`, the close's: a close waits for the
    /// subscriptions an `off` is ending, and must not wait past its own
    /// deadline for that `off`'s drain, bounded only by the `off`'s
    /// timeout. The engine keeps the bound (see `DrainCut`), also for an
    /// `off` that decided to drain just before and starts the drain just
    /// after.
    pub(crate) fn cut_drains(&self, deadline: Instant) {
        self.cut.cut(deadline);
    }

    /// Gives the subscriptions of `ids` still `Ending` back (to `Live`): the
    /// call that took them did not end them.
    pub fn release(&self, ids: &[u64]) {
        self.give_back(&mut self.entries.lock(), ids);
    }

    fn give_back(&self, entries: &mut [ListEntry<T>], ids: &[u64]) {
        for e in entries.iter_mut().filter(|e| ids.contains(&e.id)) {
            if e.stage == Stage::Ending {
                e.stage = Stage::Live;
            }
        }
        self.changed.notify_all();
    }

    /// Drops subscription `id` from the list and wakes whoever waits; its
    /// payload is dropped once the lock is released.
    pub fn remove(&self, id: u64) {
        let gone: Vec<ListEntry<T>> = {
            let mut entries = self.entries.lock();
            let (gone, keep) = std::mem::take(&mut *entries).into_iter().partition(|e| e.id == id);
            *entries = keep;
            gone
        };
        self.changed.notify_all();
        drop(gone);
    }

    /// Waits until subscription `id` has left the list.
    pub fn wait_gone(&self, id: u64) {
        let mut entries = self.entries.lock();
        while entries.iter().any(|e| e.id == id) {
            self.wait(&mut entries);
        }
    }

    /// Waits until no subscription is being ended.
    pub fn wait_settled(&self) {
        let mut entries = self.entries.lock();
        while entries.iter().any(|e| e.stage == Stage::Ending) {
            self.wait(&mut entries);
        }
    }

    /// `f` of each live subscription, oldest first (under the lock: `f`
    /// must not call the bus).
    pub fn live<R>(&self, f: impl FnMut(&ListEntry<T>) -> R) -> Vec<R> {
        self.entries.lock().iter().filter(|e| e.stage == Stage::Live).map(f).collect()
    }

    /// Whether subscription `id` is listed and live.
    pub(crate) fn is_live(&self, id: u64) -> bool {
        self.entries.lock().iter().any(|e| e.stage == Stage::Live && e.id == id)
    }

    /// Waits, with `entries` (this list's guard) released meanwhile, until
    /// the list changes.
    fn wait(&self, entries: &mut MutexGuard<'_, Vec<ListEntry<T>>>) {
        #[cfg(test)]
        if let Some(hook) = BEFORE_WAIT.take() {
            hook();
        }
        self.changed.wait(entries);
    }
}

/// A subscription's place in its bus's list, held by its node: dropped
/// with the node (unregistered, by whatever call, or never registered), it
/// removes the entry (if the bus is still there), on whatever thread ends
/// the node. The subscription has ended then, and the bus must neither
/// list it nor act on its uid any more.
#[derive(Debug)]
pub struct Listing<T> {
    list: Weak<SubscriptionList<T>>,
    id: u64,
}

impl<T> Drop for Listing<T> {
    fn drop(&mut self) {
        if let Some(list) = self.list.upgrade() {
            list.remove(self.id);
        }
    }
}

#[cfg(test)]
thread_local! {
    /// TEST-ONLY: run (once) on this thread the first time an `off` or
    /// `close` here is about to wait for another call's subscription to
    /// end, with the list locked: a test lets the handler return there, so
    /// that the wait is known to have begun.
    pub(crate) static BEFORE_WAIT: std::cell::Cell<Option<Box<dyn FnOnce()>>> =
        const { std::cell::Cell::new(None) };
}
