//! A fiber's drain deadline where its callbacks can read it: a handler
//! that works through a batch one event at a time (the bus's) stops at
//! the deadline instead of finishing the batch, which could take the
//! batch's length times its slowest call past the deadline an `off` or a
//! close gave.
//!
//! The workers keep the deadline under the fiber's lock (`State`); this
//! mirror is written where it is set (`Fiber::drain_until`) and read
//! without a lock, through the worker thread's own reference
//! ([`drain_deadline_passed`]), so a delivery pays nothing for it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// The instant the offsets below count from.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds after [`base`] at which the drain ends; `u64::MAX`: none.
#[derive(Debug)]
pub(crate) struct DrainEnd(AtomicU64);

impl Default for DrainEnd {
    fn default() -> Self {
        Self(AtomicU64::new(u64::MAX))
    }
}

impl DrainEnd {
    /// Brings the end to `until` if that is earlier (it never moves later).
    pub(crate) fn bring_to(&self, until: Instant) {
        let at = until.saturating_duration_since(base()).as_nanos().min(u128::from(u64::MAX - 1)) as u64;
        self.0.fetch_min(at, Ordering::Release);
    }

    fn passed(&self) -> bool {
        let at = self.0.load(Ordering::Acquire);
        at != u64::MAX && base().elapsed().as_nanos() >= u128::from(at)
    }
}

thread_local! {
    /// The drain end of the fiber whose sync worker this thread is.
    static MINE: RefCell<Option<Arc<DrainEnd>>> = const { RefCell::new(None) };
}

/// Marks the current thread, for its whole life, as a worker of the fiber
/// whose drain end is `end`.
pub(crate) fn mark_thread(end: Arc<DrainEnd>) {
    MINE.with(|m| *m.borrow_mut() = Some(end));
}

/// True inside a callback whose node is draining (an `off`, an
/// `unregister_draining`, a close) and whose drain's deadline has passed:
/// a handler working through its batch one event at a time should stop
/// there, reporting what it took with [`NodeError::interrupted`]
/// (`crate::NodeError`); the rest is then handed on or dropped as any
/// event the drain left. False anywhere else.
#[doc(hidden)]
pub fn drain_deadline_passed() -> bool {
    MINE.try_with(|m| m.borrow().as_ref().is_some_and(|e| e.passed())).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_end_only_moves_earlier_and_is_read_on_its_thread() {
        let end = Arc::new(DrainEnd::default());
        assert!(!end.passed(), "no drain");
        end.bring_to(Instant::now() + Duration::from_secs(3600));
        assert!(!end.passed());
        end.bring_to(Instant::now());
        end.bring_to(Instant::now() + Duration::from_secs(3600));
        assert!(end.passed(), "a later end does not move it back");
        assert!(!drain_deadline_passed(), "this thread is no worker");
        mark_thread(end);
        assert!(drain_deadline_passed());
        assert!(!std::thread::spawn(drain_deadline_passed).join().unwrap());
    }
}
