//! The bus's list of subscriptions, and the waits of `off` and `close` on
//! it.
//!
//! Each entry goes through three stages. `Joining`: listed by its `on`
//! before the registration, which the director admits (`Live`) under its
//! membership lock unless the bus is closed by then (see
//! `EventBus::subscribe`). `Ending`: taken by the one `off` or `close` that
//! ends it (the stage changes only under the list's lock, so exactly one
//! call takes it). The entry leaves the list when its node is dropped
//! (`unlist`, run by the node, whatever ended it: that call, an unregister
//! straight on the director, a close of the director), or when the call
//! ending it finds the node already ended behind its back. An `off` or
//! `close` that finds an entry `Ending` in another call's hands waits for
//! it to leave the list, so neither returns while that subscription's
//! handler may still run.
//!
//! The lock is never held while user code runs or a director call waits;
//! the director takes it, briefly, to admit a subscription, and a node
//! takes it as it is dropped.

use std::sync::Weak;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::bus::Subscription;

/// The bus's subscriptions, oldest first.
#[derive(Debug, Default)]
pub(crate) struct List {
    entries: Mutex<Vec<Entry>>,
    /// Signalled when an entry leaves the list or goes back to `Live`.
    changed: Condvar,
}

/// A subscription of the bus.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) sub: Subscription,
    pub(crate) stage: Stage,
}

/// Where a subscription is in its life (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Its `on` is in progress; a close may still refuse it, nothing else
    /// looks at it.
    Joining,
    /// Admitted by the director: its node is registered.
    Live,
    /// Taken by the `off` or `close` that ends it.
    Ending,
}

impl List {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock()
    }

    /// Drops subscription `id` from the list and wakes whoever waits.
    pub(crate) fn remove(&self, id: u64) {
        self.entries.lock().retain(|e| e.sub.id != id);
        self.changed.notify_all();
    }

    /// Gives the subscriptions of `ids` still `Ending` back (to `Live`): the
    /// call that took them did not end them.
    pub(crate) fn release(&self, ids: &[u64]) {
        for e in self.entries.lock().iter_mut().filter(|e| ids.contains(&e.sub.id)) {
            if e.stage == Stage::Ending {
                e.stage = Stage::Live;
            }
        }
        self.changed.notify_all();
    }

    /// Waits, with `entries` (this list's guard) released meanwhile, until
    /// the list changes.
    pub(crate) fn wait(&self, entries: &mut MutexGuard<'_, Vec<Entry>>) {
        #[cfg(test)]
        if let Some(hook) = BEFORE_WAIT.take() {
            hook();
        }
        self.changed.wait(entries);
    }
}

/// Drops subscription `id` from `list` (if the bus is still there). Called
/// by the subscription's node as it is dropped, on whatever thread ends it.
pub(crate) fn unlist(list: &Weak<List>, id: u64) {
    if let Some(list) = list.upgrade() {
        list.remove(id);
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
