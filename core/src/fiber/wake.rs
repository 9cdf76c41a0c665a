//! How emitters, which push without the fiber lock, wake a worker that is
//! going to sleep without either side missing the other.
//!
//! The protocol is Dekker's: the worker publishes its [`Gate`] as idle and
//! then looks at its lanes ([`Gate::sleep_unless`]); an emitter pushes and
//! then looks at the gate ([`after_pushes`], [`Gate::wake_if`]). A SeqCst
//! fence on each side between its write and its read means at least one of
//! them sees the other's write: the worker finds the event and stays busy,
//! or the emitter finds the gate idle and wakes the worker. The worker's
//! park keeps a wake-up that comes before it (a thread's unpark token, a
//! task's stored permit), so the wake-up may land before the park does.
//! `loom_tests.rs` checks this under loom.

use super::sync::{fence, AtomicU8, Ordering};

/// Whether a worker sleeps, and how deeply.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Idle {
    /// Running: it will look at its lanes before it sleeps again.
    #[default]
    Busy = 0,
    /// Asleep with a flush timer, having just delivered: a producer is
    /// streaming to it, so emitters wake it only once a backlog waits
    /// (sixteen batches, or half the lane if less).
    Warm = 1,
    /// Asleep without a timer: the next event wakes it at once.
    Cold = 2,
}

/// A worker's idle state, read by emitters without the fiber lock. Whoever
/// moves it from idle to [`Idle::Busy`] owes the worker a wake-up.
#[derive(Debug)]
pub(crate) struct Gate(AtomicU8);

impl Default for Gate {
    fn default() -> Self {
        Self(AtomicU8::new(Idle::Busy as u8))
    }
}

impl Gate {
    pub(crate) fn get(&self) -> Idle {
        match self.0.load(Ordering::Relaxed) {
            1 => Idle::Warm,
            2 => Idle::Cold,
            _ => Idle::Busy,
        }
    }

    /// Moves an idle worker to busy; true when this call did it (and so
    /// must wake the worker).
    pub(crate) fn wake(&self, from: Idle) -> bool {
        from != Idle::Busy
            && self
                .0
                .compare_exchange(from as u8, Idle::Busy as u8, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// An emitter's half, after [`after_pushes`]: wakes the worker if it
    /// sleeps and `worth` says this sleep should end; true when the caller
    /// must now signal the worker.
    pub(crate) fn wake_if(&self, worth: impl FnOnce(Idle) -> bool) -> bool {
        let idle = self.get();
        worth(idle) && self.wake(idle)
    }

    /// The worker's half: publishes that it is about to sleep `how`, then
    /// looks again with `work_waiting` (a push may have raced the gate).
    /// False, leaving the gate busy, when there is work after all; true
    /// when the worker may sleep, an emitter now owing it a wake-up for
    /// anything it pushes.
    pub(crate) fn sleep_unless(&self, how: Idle, work_waiting: impl FnOnce() -> bool) -> bool {
        self.set(how);
        fence(Ordering::SeqCst);
        if work_waiting() {
            self.set(Idle::Busy);
            return false;
        }
        true
    }

    /// Marks the worker running again (after a wake-up or a timeout).
    pub(crate) fn set_busy(&self) {
        self.set(Idle::Busy);
    }

    fn set(&self, how: Idle) {
        self.0.store(how as u8, Ordering::SeqCst);
    }
}

/// An emitter's fence between its pushes and its reads of the gates of the
/// lanes it pushed into (one fence covers any number of pushes).
pub(crate) fn after_pushes() {
    fence(Ordering::SeqCst);
}
