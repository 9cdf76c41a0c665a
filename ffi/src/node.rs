//! A C node: the send callback, its `user_data`, and the destructor.
//!
//! The engine holds the node as `Arc<dyn Node>` and drops it after the
//! node's last callback (at unregister or close); `CNode`'s `Drop` is
//! where `free_user_data` runs (or, from the director's close on, is
//! parked until its free: `parked.rs`), so it runs exactly once. A registration
//! hands the engine the only strong reference (`hand_over`): a reference
//! of ours would make the drop, and so the destructor, wait until the
//! registering call returned, after an unregister racing it had returned
//! (SPEC 2.7 says unregister returns after the destructor). A refused
//! registration gets the node back and disarms it before it is dropped:
//! `user_data` stays the caller's.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chronica::{Batch, Node, NodeError, Refused, SendResult};

use crate::event::{chronica_event, with_views};
use crate::parked::Parked;
use crate::send_report::{Report, SendFrame};

/// A node's callback. Receives `count` (at least 1) events of one lane, in
/// order; they and everything they point to are valid only during the call.
/// Return 0 when the batch was delivered; any other value keeps the batch at
/// the head of the lane for a retry under the node's retry policy. To say
/// that only the first n events were delivered (so only the rest is
/// retried), call `chronica_send_partial(n)` before returning non-zero.
///
/// Runs on a thread owned by the node's fiber, never concurrently with
/// itself (unless the node asked for a concurrency above 1). It may block,
/// and it may call any chronica function, except closing or freeing the
/// director that runs it (`CHRONICA_ERR_REENTRANT`). It must not unwind
/// (no C++ exception or longjmp may leave it).
#[allow(non_camel_case_types)]
pub type chronica_send_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, events: *const chronica_event, count: usize) -> i32>;

/// Destructor of a node's `user_data`. Ownership of `user_data` passes to
/// the director only when registration succeeds; then this function (if not
/// NULL) runs exactly once, after the node's last callback has returned: at
/// unregister, or when the director is freed (`chronica_director_free`),
/// never at close, so a node's `user_data` stays readable between close and
/// free. A refused registration leaves `user_data` with the caller and calls
/// nothing. It runs on the node's fiber thread, on the thread that
/// unregisters, or on the thread that frees the director.
#[allow(non_camel_case_types)]
pub type chronica_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// The host's opaque pointer, handed back verbatim.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserData(pub(crate) *mut c_void);

impl UserData {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    pub(crate) fn ptr(self) -> *mut c_void {
        self.0
    }
}

// SAFETY: the C API documents that `user_data` is used from the fiber's
// threads; making that safe is the host's part of the contract.
unsafe impl Send for UserData {}
// SAFETY: as above; we never dereference it.
unsafe impl Sync for UserData {}

/// The registered C node.
#[derive(Debug)]
pub(crate) struct CNode {
    send: unsafe extern "C" fn(*mut c_void, *const chronica_event, usize) -> i32,
    user_data: UserData,
    free_user_data: chronica_free_fn,
    armed: AtomicBool,
    /// Where the destructor waits if the director closes first.
    parked: Arc<Parked>,
}

impl CNode {
    /// A node of the director handle whose destructors `parked` keeps.
    pub(crate) fn new(
        send: unsafe extern "C" fn(*mut c_void, *const chronica_event, usize) -> i32,
        user_data: *mut c_void,
        free_user_data: chronica_free_fn,
        parked: Arc<Parked>,
    ) -> Self {
        Self { send, user_data: UserData(user_data), free_user_data, armed: AtomicBool::new(true), parked }
    }
}

/// A host callback whose destructor (`free_user_data`) the engine runs
/// once it owns it, unless a refused registration disarmed it first.
pub(crate) trait Disarm {
    /// After a refused registration: the destructor must not run.
    fn disarm(&self);
}

impl Disarm for CNode {
    fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
    }
}

/// Registers `node` (a `CNode`, or a bus subscription's handler) through
/// `register`, which gets the only strong reference. On refusal the engine
/// hands it back (or, for a subscription, the closure holding it): it is
/// disarmed (its destructor must not run) before it is dropped, and the
/// error returned.
pub(crate) fn hand_over<N: Disarm, T, E, R>(
    node: N,
    register: impl FnOnce(Arc<N>) -> Result<T, Refused<E, R>>,
) -> Result<T, E> {
    let node = Arc::new(node);
    // A weak one only: it keeps the node's memory, not the node, alive.
    let ours = Arc::downgrade(&node);
    register(node).map_err(|refused| {
        // `refused.node` is alive until this closure returns.
        if let Some(node) = ours.upgrade() {
            node.disarm();
        }
        refused.error
    })
}

impl Node for CNode {
    fn send(&self, batch: &Batch) -> SendResult {
        let count = batch.len();
        let frame = SendFrame::open(count);
        let rc = with_views(batch.events(), |views| {
            // SAFETY: `send` is the host's callback, registered non-NULL;
            // the views and what they point to outlive the call.
            unsafe { (self.send)(self.user_data.ptr(), views.as_ptr(), views.len()) }
        });
        let Report { delivered, message } = frame.close();
        if rc == 0 {
            // 0 says the whole batch was taken, whatever was reported.
            return Ok(());
        }
        let message = message.unwrap_or_else(|| match delivered {
            0 => format!("callback returned {rc}"),
            n => format!("callback returned {rc} after delivering {n} of {count} events"),
        });
        Err(NodeError::new(message).with_delivered(delivered))
    }
}

impl Drop for CNode {
    fn drop(&mut self) {
        if let (true, Some(free)) = (*self.armed.get_mut(), self.free_user_data) {
            // SAFETY: the director owned `user_data` since the registration
            // succeeded, and this is the one and only drop of the node.
            unsafe { self.parked.run_or_park(free, self.user_data) }
        }
    }
}
