//! `chronica_director_node_last_error`: the text of a node's most recent
//! failure, as Rust's `NodeStats::last_error` and Python's
//! `stats(uid).last_error` give it. It is a function of its own because
//! `chronica_node_stats` has the fixed layout of SPEC section 5.

use std::ffi::c_char;

use crate::boundary::boundary;
use crate::director::{chronica_director, enter};
use crate::input::{uid, write_out};
use crate::status::{chronica_status, FfiResult};
use crate::text_out::copy_text;

/// Copies the message of node `uid`'s most recent failed delivery (the
/// text its error hook received: a callback's `chronica_send_error` text,
/// or the library's "callback returned 7") into `buf`, NUL-terminated and
/// truncated to `len - 1` bytes, as `chronica_last_error` does, and writes
/// the message's full length without the NUL to `*len_out` when it is not
/// NULL. With `buf` NULL or `len` 0 nothing is copied: call it so to learn
/// the size, then with a buffer of `*len_out + 1` bytes. A later failure
/// replaces the message; a success does not clear it.
///
/// Whether the node has failed at all goes to `*failed_out` when it is not
/// NULL: `false` while it has not (then the text is empty, length 0),
/// `true` once it has, its text empty or not (a callback may fail with
/// `chronica_send_error("")`). So "never failed" and "failed without a
/// text" differ, read in the same call as the text, as Rust's
/// `NodeStats::last_error` (`None` / `Some("")`) and Python's
/// `stats(uid).last_error` (`None` / `""`) tell them apart. Checks its
/// arguments as `chronica_director_node_stats` does (NULL director or uid,
/// invalid UTF-8, an empty or over-long uid, an unknown uid) and, like it,
/// works after close (the last message) but not after unregister
/// (`CHRONICA_ERR_UNKNOWN_NODE`). Nothing is written on a refusal.
/// Callable from inside callbacks.
///
/// # Safety
/// `director` must be NULL or a live director; `uid` NULL or a
/// NUL-terminated string; `buf` NULL or `len` writable bytes; `len_out`
/// and `failed_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_node_last_error(
    director: *mut chronica_director,
    uid: *const c_char,
    buf: *mut c_char,
    len: usize,
    len_out: *mut usize,
    failed_out: *mut bool,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { last_error(director, uid, buf, len, len_out, failed_out) })
}

/// The body of `chronica_director_node_last_error`.
///
/// # Safety
/// As for `chronica_director_node_last_error`.
unsafe fn last_error(
    director: *mut chronica_director,
    uid_ptr: *const c_char,
    buf: *mut c_char,
    len: usize,
    len_out: *mut usize,
    failed_out: *mut bool,
) -> FfiResult {
    // SAFETY: forwarded from the caller.
    let (d, _scope) = unsafe { enter(director) }?;
    // SAFETY: forwarded from the caller.
    let uid = unsafe { uid(uid_ptr, "uid") }?;
    let last = d.stats(uid)?.last_error;
    let message = last.as_deref().unwrap_or_default();
    // SAFETY: `buf` holds `len` bytes per the caller and cannot overlap
    // the message, which this call owns.
    let full = unsafe { copy_text(message.as_bytes(), buf, len) };
    if !len_out.is_null() {
        // SAFETY: non-NULL and writable per the caller.
        unsafe { write_out(len_out, full) };
    }
    if !failed_out.is_null() {
        // SAFETY: non-NULL and writable per the caller.
        unsafe { write_out(failed_out, last.is_some()) };
    }
    Ok(())
}
