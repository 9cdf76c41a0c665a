//! The director's hooks as C callbacks: dropped events, dead letters and
//! callback failures are reported to the host instead of printed.
//!
//! Hooks run with no engine lock held, on the thread that caused the report:
//! the emitting thread for an overflow drop, the node's fiber thread for a
//! failure, a dead letter or a drop at unregister. They may call any
//! chronica function except closing or freeing the director from a fiber
//! thread (`CHRONICA_ERR_REENTRANT`). Keep them short: they run in the
//! delivery path. Their `user_data` is borrowed, not owned: it must stay
//! valid until the director is freed, and chronica never frees it.

use std::ffi::{c_char, c_void};

use chronica::{DeadLetter, DirectorBuilder, DropReason, DropReport, NodeError};

use crate::event::{chronica_event, with_views};
use crate::node::UserData;

/// Why an event was dropped.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum chronica_drop_reason {
    /// The lane was full and the overflow policy removed this event.
    CHRONICA_DROP_OVERFLOW = 0,
    /// The node was unregistered with the event still pending and no other
    /// member of its group to take it.
    CHRONICA_DROP_UNREGISTERED = 1,
}

/// Called for every dropped event. `uid` (not NUL-terminated, `uid_len`
/// bytes) names the node that lost it; `event` is valid only during the call.
#[allow(non_camel_case_types)]
pub type chronica_drop_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        uid: *const c_char,
        uid_len: usize,
        event: *const chronica_event,
        reason: chronica_drop_reason,
    ),
>;

/// Called for every batch given up after the node's `max_retries`: the
/// `count` events and the last failure's text `error` (`error_len` bytes,
/// not NUL-terminated), all valid only during the call.
#[allow(non_camel_case_types)]
pub type chronica_dead_letter_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        uid: *const c_char,
        uid_len: usize,
        events: *const chronica_event,
        count: usize,
        error: *const c_char,
        error_len: usize,
    ),
>;

/// Called for every failed callback call (non-zero return), with the
/// failure's text (e.g. "callback returned 7"), valid only during the call.
#[allow(non_camel_case_types)]
pub type chronica_error_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        uid: *const c_char,
        uid_len: usize,
        error: *const c_char,
        error_len: usize,
    ),
>;

/// The hooks set on a `chronica_options`; each is optional. A hook and its
/// `user_data` are kept side by side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HookSet {
    pub(crate) on_drop: chronica_drop_fn,
    pub(crate) drop_data: UserData,
    pub(crate) on_dead_letter: chronica_dead_letter_fn,
    pub(crate) dead_letter_data: UserData,
    pub(crate) on_error: chronica_error_fn,
    pub(crate) error_data: UserData,
}

impl Default for HookSet {
    fn default() -> Self {
        let none = UserData(std::ptr::null_mut());
        Self {
            on_drop: None,
            drop_data: none,
            on_dead_letter: None,
            dead_letter_data: none,
            on_error: None,
            error_data: none,
        }
    }
}

impl HookSet {
    /// Installs the hooks on a director builder.
    pub(crate) fn apply(self, mut builder: DirectorBuilder) -> DirectorBuilder {
        if let (Some(hook), ud) = (self.on_drop, self.drop_data) {
            builder = builder.on_drop(move |r: &DropReport<'_>| {
                let reason = match r.reason {
                    DropReason::Overflow => chronica_drop_reason::CHRONICA_DROP_OVERFLOW,
                    _ => chronica_drop_reason::CHRONICA_DROP_UNREGISTERED,
                };
                let view = chronica_event::view(r.event);
                // SAFETY: the host's hook with its own user_data; every
                // pointer lives until the call returns.
                unsafe { hook(ud.ptr(), r.uid.as_ptr().cast(), r.uid.len(), &view, reason) }
            });
        }
        if let (Some(hook), ud) = (self.on_dead_letter, self.dead_letter_data) {
            builder = builder.on_dead_letter(move |d: &DeadLetter<'_>| {
                let msg = d.error.message();
                with_views(d.batch.events(), |views| {
                    // SAFETY: as above.
                    unsafe {
                        hook(
                            ud.ptr(),
                            d.uid.as_ptr().cast(),
                            d.uid.len(),
                            views.as_ptr(),
                            views.len(),
                            msg.as_ptr().cast(),
                            msg.len(),
                        )
                    }
                })
            });
        }
        if let (Some(hook), ud) = (self.on_error, self.error_data) {
            builder = builder.on_error(move |uid: &str, e: &NodeError| {
                let msg = e.message();
                // SAFETY: as above.
                unsafe { hook(ud.ptr(), uid.as_ptr().cast(), uid.len(), msg.as_ptr().cast(), msg.len()) }
            });
        }
        builder
    }
}
