//! Which directors the current thread is inside a call of.
//!
//! A hook can run on the emitting thread, in the middle of an emit; freeing
//! or closing the director there would pull the director out from under the
//! call that is still running. Every director entry point holds a
//! [`CallScope`], and close / free refuse with `CHRONICA_ERR_REENTRANT`
//! while the thread is inside a call of the same director. (Calls from a
//! node's fiber thread are refused by the engine itself.) A bus is tracked
//! the same way, and a bus subscription's destructor, which can run on a
//! fiber thread inside the call that ends the subscription, counts as a
//! call of its bus.
//!
//! Every access uses `try_with`: a call made while the thread's locals are
//! being destroyed (from a `pthread_key` destructor) would otherwise panic
//! where nothing catches it. No call of ours can be in progress on such a
//! thread, so not tracking it there loses nothing.

use std::cell::RefCell;

thread_local! {
    static ACTIVE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Marks the thread as inside a call of the director at `addr` until dropped.
#[derive(Debug)]
pub(crate) struct CallScope {
    addr: usize,
}

impl CallScope {
    pub(crate) fn enter<T>(director: &T) -> Self {
        Self::enter_at(director as *const T as usize)
    }

    /// Like `enter`, for the handle at `addr` (a bus subscription's
    /// destructor knows its bus by address only: it may run after the
    /// handle is gone, where only the comparison is made).
    pub(crate) fn enter_at(addr: usize) -> Self {
        let _ = ACTIVE.try_with(|a| a.borrow_mut().push(addr));
        Self { addr }
    }
}

impl Drop for CallScope {
    fn drop(&mut self) {
        let _ = ACTIVE.try_with(|a| {
            let mut a = a.borrow_mut();
            if let Some(i) = a.iter().rposition(|x| *x == self.addr) {
                a.swap_remove(i);
            }
        });
    }
}

/// True while the thread is inside a call of the director at `addr`.
pub(crate) fn inside<T>(director: &T) -> bool {
    let addr = director as *const T as usize;
    ACTIVE.try_with(|a| a.borrow().contains(&addr)).unwrap_or(false)
}
