//! The closes of one director (or `Distributed`) under way, counted so
//! that the `atexit` hook can wait for them (and, with the same count, the
//! works Ctrl-C left running, `waits.rs`).
//!
//! The engine's `Director::is_closed` is true from the moment a close
//! begins. The `atexit` hook used to skip such a director, and a close
//! still running then (on a daemon thread, or on the `chronica-close`
//! thread a finalizer left it to) went on under the interpreter's
//! finalisation: its delivery threads, still in a callback, were ended by
//! CPython mid-call and the process aborted (`FATAL: exception not
//! rethrown`). So every close the binding starts holds a [`Closing`] until
//! it is over, and the hook waits, GIL released, until none is held.
//!
//! A [`Closing`] is let go only once the thread that made the close has
//! nothing left to do in this crate with the GIL released: a Python thread
//! lets it go with the GIL held again (dropped after `py.detach` returns),
//! so it is back in Python code, with no Rust frame on its stack, before
//! the hook can go on; a thread of ours lets it go last, after dropping
//! what it held of the director.
//!
//! [`Begun`] says whether a close has begun at all, from the moment the
//! binding lets one proceed: a `Distributed` closes its fabric before its
//! director, and its director's `is_closed` read false meanwhile, so a
//! second close was not refused at once and armed the async nodes' close
//! deadline with its own timeout first, changing the first close's outcome.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::held::Kept;

/// How many closes of one director are under way (normally 0 or 1; a close
/// refused as `Closed` also counts while it runs).
#[derive(Debug, Default)]
pub(crate) struct Closes {
    running: Mutex<usize>,
    ended: Condvar,
    /// What a collected director's callables were kept alive by until its
    /// closes end ([`keep_until_idle`](Self::keep_until_idle)).
    kept: Mutex<Vec<Kept>>,
}

/// Whether a close of one director (or `Distributed`) has begun: only the
/// first close proceeds; every later one is refused with `Closed` before
/// it changes anything.
#[derive(Debug, Default)]
pub(crate) struct Begun(AtomicBool);

impl Begun {
    /// Marks the close as begun; false when one already had (this one is
    /// refused). Call once the close has passed every other check, so that
    /// a close refused otherwise leaves the object open.
    pub(crate) fn begin(&self) -> bool {
        !self.0.swap(true, Ordering::SeqCst)
    }

    /// Whether a close has begun.
    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One close under way; it ends when this is dropped.
#[derive(Debug)]
pub(crate) struct Closing(Arc<Closes>);

impl Closes {
    /// Counts a close from now until the returned value is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> Closing {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Closing(self.clone())
    }

    /// Whether no close is under way.
    pub(crate) fn idle(&self) -> bool {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) == 0
    }

    /// Keeps `kept` until no close is under way (drops it at once if none
    /// is): the callbacks of a collected director still being closed stay
    /// alive, so the collection leaves them whole (`director.rs`).
    pub(crate) fn keep_until_idle(&self, kept: Kept) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if *running > 0 {
            self.kept.lock().unwrap_or_else(|p| p.into_inner()).push(kept);
        }
        // Else `kept` goes here, after the lock (its drop takes the GIL).
        drop(running);
    }

    /// Waits until no close is under way. Call with the GIL released:
    /// the closes wait for callbacks, which need it.
    pub(crate) fn wait(&self) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let _idle = self.ended.wait_while(running, |n| *n > 0).unwrap_or_else(|p| p.into_inner());
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        let kept = {
            let mut running = self.0.running.lock().unwrap_or_else(|p| p.into_inner());
            *running -= 1;
            if *running > 0 {
                return;
            }
            self.0.ended.notify_all();
            std::mem::take(&mut *self.0.kept.lock().unwrap_or_else(|p| p.into_inner()))
        };
        // After the lock: letting go of the callables takes the GIL.
        drop(kept);
    }
}
