//! The destructors of the nodes a director's close ends, kept until
//! `chronica_director_free`.
//!
//! SPEC section 5 runs a node's `free_user_data` "at unregister or when the
//! director is freed". The engine drops the nodes still registered at
//! close, so a C node's destructor, which runs where the node is dropped,
//! would run at close, and a host reading what its nodes kept in
//! `user_data` (final counts, say) between close and free would read
//! freed memory. So from the start of a close on, a dropped node's
//! destructor is parked here, and `chronica_director_free` runs what was
//! parked, on its own thread; a node dropped after that runs its own at
//! once.

use std::ffi::c_void;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::node::UserData;

type Free = unsafe extern "C" fn(*mut c_void);

#[derive(Debug, Default)]
struct State {
    closing: bool,
    freed: bool,
    frees: Vec<(Free, UserData)>,
}

/// One director handle's parked destructors (shared with the nodes
/// registered through it, and with its distributed handles).
#[derive(Debug, Default)]
pub(crate) struct Parked(Mutex<State>);

impl Parked {
    /// The state; no code of ours panics holding it, nor does host code
    /// run under it, so a poisoned lock still holds good state.
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on, destructors wait for [`run_parked`](Self::run_parked).
    pub(crate) fn begin_close(&self) {
        self.state().closing = true;
    }

    /// Runs `free(user_data)` now, or parks it while the director is
    /// closed but not yet freed.
    ///
    /// # Safety
    /// `free` must be the host's destructor for `user_data`, owned by the
    /// caller and handed over here for its one and only run.
    pub(crate) unsafe fn run_or_park(&self, free: Free, user_data: UserData) {
        {
            let mut s = self.state();
            if s.closing && !s.freed {
                s.frees.push((free, user_data));
                return;
            }
        }
        // SAFETY: per this function's contract; no lock is held.
        unsafe { free(user_data.ptr()) }
    }

    /// Runs every parked destructor (the director is being freed); later
    /// ones run at once.
    pub(crate) fn run_parked(&self) {
        let frees = {
            let mut s = self.state();
            s.freed = true;
            std::mem::take(&mut s.frees)
        };
        for (free, user_data) in frees {
            // SAFETY: parked by `run_or_park`, whose caller handed it over
            // for its one run; taken out of the list, so run once.
            unsafe { free(user_data.ptr()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static RUNS: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn count(_: *mut c_void) {
        RUNS.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn parked_from_the_close_until_the_free_then_at_once() {
        let p = Parked::default();
        let none = UserData(std::ptr::null_mut());
        // SAFETY: `count` ignores its argument.
        unsafe { p.run_or_park(count, none) };
        assert_eq!(RUNS.load(Ordering::SeqCst), 1, "open: at once");
        p.begin_close();
        // SAFETY: as above.
        unsafe { p.run_or_park(count, none) };
        unsafe { p.run_or_park(count, none) };
        assert_eq!(RUNS.load(Ordering::SeqCst), 1, "closed: parked");
        p.run_parked();
        assert_eq!(RUNS.load(Ordering::SeqCst), 3, "freed: both, once");
        p.run_parked();
        // SAFETY: as above.
        unsafe { p.run_or_park(count, none) };
        assert_eq!(RUNS.load(Ordering::SeqCst), 4, "after the free: at once");
    }
}
