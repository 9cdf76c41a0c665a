//! What a node's send callback reports beside its return value:
//! `chronica_send_partial` (how many leading events it delivered) and
//! `chronica_send_error` (why it failed).
//!
//! A `chronica_send_fn` returns one integer, so the rest travels beside
//! it, in a thread-local frame. The send trampoline (`CNode::send`) opens a
//! frame before it calls the callback and closes it after, so a report
//! never outlives the call that made it: each call starts with none (a
//! plain failure). Opening saves the frame already open on the thread and
//! closing restores it. No engine path runs a send callback inside another
//! today (each fiber thread runs only its own node), but if one ever does,
//! the outer callback still reads its own report.
//!
//! Every access uses `try_with`, as `reentry.rs` does: a call from a
//! `pthread_key` destructor, after the thread's locals are gone, must not
//! panic where nothing catches it.

use std::cell::RefCell;

use crate::boundary::boundary;
use crate::input::string;
use crate::status::{chronica_status, Failure, FfiResult};

/// The send callback running on this thread: its batch size and what it
/// reported.
#[derive(Debug)]
struct Frame {
    count: usize,
    report: Report,
}

/// What a send callback said beside its return value.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// The leading events it delivered (0 when it said nothing).
    pub(crate) delivered: usize,
    /// Its failure text, when it gave one.
    pub(crate) message: Option<String>,
}

thread_local! {
    static FRAME: RefCell<Option<Frame>> = const { RefCell::new(None) };
}

/// The frame of one send callback call, open until dropped (an unwind
/// included, so a stale frame cannot stay behind).
#[derive(Debug)]
pub(crate) struct SendFrame {
    outer: Option<Frame>,
}

impl SendFrame {
    /// Opens the frame of a call handed `count` events.
    pub(crate) fn open(count: usize) -> Self {
        let fresh = Some(Frame { count, report: Report::default() });
        Self { outer: FRAME.try_with(|f| f.replace(fresh)).ok().flatten() }
    }

    /// Closes the frame: what the callback reported.
    pub(crate) fn close(self) -> Report {
        FRAME.try_with(|f| f.borrow_mut().take()).ok().flatten().map(|f| f.report).unwrap_or_default()
    }
}

impl Drop for SendFrame {
    fn drop(&mut self) {
        let _ = FRAME.try_with(|f| f.replace(self.outer.take()));
    }
}

/// Runs `edit` on the frame of the send callback running on this thread;
/// `what` names the C function for the refusal outside one.
fn in_frame(what: &str, edit: impl FnOnce(&mut Frame) -> FfiResult) -> FfiResult {
    let outside = || Failure::invalid(format!("{what}: not called from inside a node's send callback"));
    FRAME
        .try_with(|f| match f.borrow_mut().as_mut() {
            Some(frame) => edit(frame),
            None => Err(outside()),
        })
        .unwrap_or_else(|_| Err(outside()))
}

/// Called by a node's send callback (`chronica_send_fn`) before it returns
/// non-zero: the first `delivered` events of its batch were delivered and
/// only the rest failed. Those count as delivered and are never handed
/// again; the rest is retried (or, after `max_retries`, dead-lettered) with
/// the retry budget and backoff starting afresh when `delivered` > 0.
/// `delivered` 0 is a plain failure. A later call in the same callback
/// replaces the count.
///
/// The count applies only to the call it was given in, and only when that
/// call returns non-zero: a callback returning 0 delivered its whole batch,
/// whatever it said. The failure text handed to the error and dead-letter
/// hooks then reads "callback returned 7 after delivering 2 of 5 events"
/// (or the callback's own, from `chronica_send_error`).
/// The count belongs to the send callback running on the calling thread,
/// so a drop hook that the callback's own emit runs there counts as inside
/// it.
///
/// Returns `CHRONICA_ERR_INVALID_ARGUMENT` (with `chronica_last_error` set),
/// changing nothing, when the calling thread is not running a node's send
/// callback (a bus handler, an error or dead-letter hook, a thread of the
/// host's), or when `delivered` is not below the batch's `count`: with
/// nothing left to fail, the callback should return 0.
#[no_mangle]
pub extern "C" fn chronica_send_partial(delivered: usize) -> chronica_status {
    boundary(|| -> FfiResult {
        in_frame("chronica_send_partial", |frame| {
            if delivered >= frame.count {
                return Err(Failure::invalid(format!(
                    "chronica_send_partial: delivered ({delivered}) must be below the batch's {} events",
                    frame.count
                )));
            }
            frame.report.delivered = delivered;
            Ok(())
        })
    })
}

/// Called by a node's send callback (`chronica_send_fn`) before it returns
/// non-zero: `message` (copied) says why it failed. It becomes the failure
/// text the error and dead-letter hooks receive, in place of the
/// library's "callback returned 7", as a Python callback's exception
/// message does. A later call in the same callback replaces it.
///
/// Like `chronica_send_partial`'s count, it applies only to the call it
/// was given in, and only when that call returns non-zero.
///
/// Returns `CHRONICA_ERR_NULL_ARGUMENT` for a NULL `message`,
/// `CHRONICA_ERR_INVALID_UTF8` for one that is not UTF-8, and
/// `CHRONICA_ERR_INVALID_ARGUMENT` when the calling thread is not running a
/// node's send callback; each with `chronica_last_error` set and nothing
/// changed.
///
/// # Safety
/// `message` must be NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn chronica_send_error(message: *const std::ffi::c_char) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let message = unsafe { string(message, "message") }?;
        in_frame("chronica_send_error", |frame| {
            frame.report.message = Some(message.to_owned());
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronica_status::*;

    fn partial(delivered: usize) -> Report {
        Report { delivered, message: None }
    }

    #[test]
    fn refused_outside_a_frame() {
        assert_eq!(chronica_send_partial(0), CHRONICA_ERR_INVALID_ARGUMENT);
        // SAFETY: a NUL-terminated literal.
        assert_eq!(unsafe { chronica_send_error(c"why".as_ptr()) }, CHRONICA_ERR_INVALID_ARGUMENT);
    }

    #[test]
    fn a_frame_starts_empty_and_keeps_the_last_valid_report() {
        let frame = SendFrame::open(5);
        assert_eq!(chronica_send_partial(3), CHRONICA_OK);
        assert_eq!(chronica_send_partial(5), CHRONICA_ERR_INVALID_ARGUMENT);
        // SAFETY: NULL, then NUL-terminated strings.
        unsafe {
            assert_eq!(chronica_send_error(std::ptr::null()), CHRONICA_ERR_NULL_ARGUMENT);
            assert_eq!(chronica_send_error(c"first".as_ptr()), CHRONICA_OK);
            assert_eq!(chronica_send_error(c"second".as_ptr()), CHRONICA_OK);
            assert_eq!(chronica_send_error(c"\xff".as_ptr()), CHRONICA_ERR_INVALID_UTF8);
        }
        assert_eq!(frame.close(), Report { delivered: 3, message: Some("second".into()) });
        assert_eq!(chronica_send_partial(1), CHRONICA_ERR_INVALID_ARGUMENT);
        assert_eq!(SendFrame::open(5).close(), Report::default());
    }

    #[test]
    fn a_nested_frame_leaves_the_outer_report_alone() {
        let outer = SendFrame::open(4);
        assert_eq!(chronica_send_partial(2), CHRONICA_OK);
        let inner = SendFrame::open(9);
        assert_eq!(chronica_send_partial(3), CHRONICA_OK);
        assert_eq!(inner.close(), partial(3));
        assert_eq!(outer.close(), partial(2));
    }
}
