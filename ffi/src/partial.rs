//! Partial delivery from a node's send callback: `chronica_send_partial`.
//!
//! A `chronica_send_fn` returns one integer, so the count of leading events
//! it took before failing travels beside it, in a thread-local frame. The
//! send trampoline (`CNode::send`) opens a frame before it calls the
//! callback and closes it after, so a count never outlives the call that
//! set it: each call starts at 0 (a plain failure). Opening saves the
//! frame already open on the thread and closing restores it. No engine path
//! runs a send callback inside another today (each fiber thread runs only
//! its own node), but if one ever does, the outer callback still reads its
//! own count.
//!
//! Every access uses `try_with`, as `reentry.rs` does: a call from a
//! `pthread_key` destructor, after the thread's locals are gone, must not
//! panic where nothing catches it.

use std::cell::Cell;

use crate::boundary::boundary;
use crate::status::{chronica_status, Failure, FfiResult};

/// The send callback running on this thread: its batch size and the count
/// it said it delivered.
#[derive(Debug, Clone, Copy)]
struct Frame {
    count: usize,
    delivered: usize,
}

thread_local! {
    static FRAME: Cell<Option<Frame>> = const { Cell::new(None) };
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
        let fresh = Some(Frame { count, delivered: 0 });
        Self { outer: FRAME.try_with(|f| f.replace(fresh)).ok().flatten() }
    }

    /// Closes the frame: the count the callback gave (0 when none).
    pub(crate) fn close(self) -> usize {
        FRAME.try_with(Cell::get).ok().flatten().map_or(0, |f| f.delivered)
    }
}

impl Drop for SendFrame {
    fn drop(&mut self) {
        let _ = FRAME.try_with(|f| f.set(self.outer));
    }
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
/// hooks then reads "callback returned 7 after delivering 2 of 5 events".
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
        let outside =
            || Failure::invalid("chronica_send_partial: not called from inside a node's send callback");
        FRAME
            .try_with(|f| {
                let mut frame = f.get().ok_or_else(outside)?;
                if delivered >= frame.count {
                    return Err(Failure::invalid(format!(
                        "chronica_send_partial: delivered ({delivered}) must be below the batch's {} events",
                        frame.count
                    )));
                }
                frame.delivered = delivered;
                f.set(Some(frame));
                Ok(())
            })
            .unwrap_or_else(|_| Err(outside()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronica_status::*;

    #[test]
    fn refused_outside_a_frame() {
        assert_eq!(chronica_send_partial(0), CHRONICA_ERR_INVALID_ARGUMENT);
    }

    #[test]
    fn a_frame_starts_at_zero_and_keeps_the_last_valid_count() {
        let frame = SendFrame::open(5);
        assert_eq!(chronica_send_partial(3), CHRONICA_OK);
        assert_eq!(chronica_send_partial(5), CHRONICA_ERR_INVALID_ARGUMENT);
        assert_eq!(frame.close(), 3);
        assert_eq!(chronica_send_partial(1), CHRONICA_ERR_INVALID_ARGUMENT);
        assert_eq!(SendFrame::open(5).close(), 0);
    }

    #[test]
    fn a_nested_frame_leaves_the_outer_count_alone() {
        let outer = SendFrame::open(4);
        assert_eq!(chronica_send_partial(2), CHRONICA_OK);
        let inner = SendFrame::open(9);
        assert_eq!(chronica_send_partial(3), CHRONICA_OK);
        assert_eq!(inner.close(), 3);
        assert_eq!(outer.close(), 2);
    }
}
