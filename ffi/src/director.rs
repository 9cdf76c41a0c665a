//! `chronica_director`: the handle, its lifetime, registration, connection
//! state and stats. The emit family lives in `emit.rs`.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use chronica::Director;

use crate::boundary::boundary;
use crate::input::{check_out, object, string, uid, write_out};
use crate::node::{chronica_free_fn, chronica_send_fn, hand_over, CNode};
use crate::node_options::{chronica_node_options, node_options_or_default};
use crate::options::{chronica_options, options_or_default};
use crate::parked::Parked;
use crate::reentry::{inside, CallScope};
use crate::stats::chronica_node_stats;
use crate::status::{chronica_status, set_last_error, Failure, FfiResult};

/// How long `chronica_director_free` drains a director still open (as the
/// Rust `Director` does when dropped).
const FREE_GRACE: Duration = Duration::from_secs(5);

/// The hub (opaque): registers nodes, routes events into their fibers,
/// reports stats. Thread-safe: every function taking a director may be
/// called from any thread at once, and from inside any of its callbacks and
/// hooks, except `chronica_director_close` / `chronica_director_free` there
/// (`CHRONICA_ERR_REENTRANT`). Made by `chronica_director_new`, released
/// by `chronica_director_free`, which must not race with other calls on it.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct chronica_director {
    pub(crate) director: Director,
    /// The destructors of nodes the close ended, run by the free.
    pub(crate) parked: Arc<Parked>,
}

/// Checks the handle and marks the thread as inside a call of it.
///
/// # Safety
/// `d` must be NULL or a live director.
#[inline]
pub(crate) unsafe fn enter<'a>(d: *const chronica_director) -> FfiResult<(&'a Director, CallScope)> {
    // SAFETY: forwarded from the caller.
    let h = unsafe { object(d, "director") }?;
    Ok((&h.director, CallScope::enter(h)))
}

fn reentrant(what: &str) -> Failure {
    Failure::new(
        chronica_status::CHRONICA_ERR_REENTRANT,
        format!("{what} from inside one of the director's own callbacks or hooks is refused"),
    )
}

/// Starts a director with `options` (NULL: the defaults; copied, so they
/// may be freed right after) and writes it to `*director_out`.
///
/// # Safety
/// `options` must be NULL or live options; `director_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_new(
    options: *const chronica_options,
    director_out: *mut *mut chronica_director,
) -> chronica_status {
    boundary(|| -> FfiResult {
        check_out(director_out, "director_out")?;
        // SAFETY: forwarded from the caller.
        let director = unsafe { options_or_default(options) }?.build()?;
        let handle = Box::into_raw(Box::new(chronica_director { director, parked: Arc::default() }));
        // SAFETY: checked non-NULL above; writable per the caller.
        unsafe { write_out(director_out, handle) };
        Ok(())
    })
}

/// Frees a director, closing it first if still open (draining for up to
/// 5 s, as `chronica_director_close` would), and runs the `free_user_data`
/// of every node still registered at the close, on this thread. Every
/// node's `free_user_data` has run when it returns. NULL is ignored.
///
/// From inside one of this director's callbacks, hooks or destructors it
/// cannot join the thread it runs on: the call is refused, the director is
/// left untouched and usable, and the thread's last error is set to
/// `CHRONICA_ERR_REENTRANT`; free it later from a thread of your own.
///
/// # Safety
/// `director` must be NULL or a live director, not used by another thread
/// during or after this call.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_free(director: *mut chronica_director) {
    boundary(|| {
        // SAFETY: NULL or live per the caller.
        let Some(h) = (unsafe { director.as_ref() }) else { return };
        if inside(h) {
            let f = reentrant("chronica_director_free");
            return set_last_error(f.status, &f.message);
        }
        // Nodes' free_user_data run on this thread, after the close: a
        // free of this director from there is refused (a second
        // Box::from_raw would free it twice).
        let _scope = CallScope::enter(h);
        // From a callback's own thread the engine refuses the close; asked
        // first, so that nothing is parked for a director left open.
        if !h.director.can_wait() {
            let f = reentrant("chronica_director_free");
            return set_last_error(f.status, &f.message);
        }
        h.parked.begin_close();
        let _ = h.director.close(FREE_GRACE);
        h.parked.run_parked();
        // SAFETY: made by Box::into_raw in chronica_director_new; the caller
        // frees it once and no call of ours is running on it (checked above).
        drop(unsafe { Box::from_raw(director) });
    })
}

/// Stops accepting, drains every fiber for up to `timeout_ms`, waits for the
/// callbacks in flight and joins every thread. The `free_user_data` of the
/// nodes still registered runs later, at `chronica_director_free`: their
/// `user_data` stays valid until then. Writes the number of events left
/// undelivered to `*undelivered_out` when it is not NULL. Afterwards every
/// call whose arguments pass the library's checks (NULL, UTF-8, range,
/// which come first) returns `CHRONICA_ERR_CLOSED`, except stats and free;
/// a second close returns `CHRONICA_ERR_CLOSED`. Refused with `CHRONICA_ERR_REENTRANT` from inside
/// one of the director's own callbacks, hooks or destructors.
///
/// # Safety
/// `director` must be NULL or a live director; `undelivered_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_close(
    director: *mut chronica_director,
    timeout_ms: u32,
    undelivered_out: *mut u64,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let h = unsafe { object(director, "director") }?;
        if inside(h) || !h.director.can_wait() {
            return Err(reentrant("chronica_director_close"));
        }
        // Hooks may run on this thread during the close: a close or free of
        // this director from one of them is refused.
        let _scope = CallScope::enter(h);
        h.parked.begin_close();
        let undelivered = h.director.close(Duration::from_millis(timeout_ms.into()))?;
        if !undelivered_out.is_null() {
            // SAFETY: non-NULL and writable per the caller.
            unsafe { write_out(undelivered_out, undelivered) };
        }
        Ok(())
    })
}

/// Registers a node that receives every topic; see
/// `chronica_director_register_with`.
///
/// # Safety
/// As for `chronica_director_register_with`.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_register(
    director: *mut chronica_director,
    uid: *const c_char,
    send: chronica_send_fn,
    user_data: *mut c_void,
    free_user_data: chronica_free_fn,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { register(director, uid, std::ptr::null(), send, user_data, free_user_data) })
}

/// Registers node `uid` (1 to 255 bytes of UTF-8, unique) with `options`
/// (NULL: the defaults; copied) and its callback `send` (not NULL). Its
/// first delivery is the root event "chronica.pull_current_state" with
/// payload `{"peers": [sorted uids of the other nodes]}` and the trust token.
///
/// Ownership of `user_data` passes to the director only when this returns
/// `CHRONICA_OK`; `free_user_data` (nullable) then runs exactly once, after
/// the node's last callback. On any other status nothing was registered and
/// nothing was freed. Callable from inside callbacks.
///
/// # Safety
/// `director` must be NULL or a live director; `uid` NULL or a
/// NUL-terminated string; `options` NULL or live node options; `send` must
/// be safe to call with `user_data` from another thread until
/// `free_user_data` has run.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_register_with(
    director: *mut chronica_director,
    uid: *const c_char,
    options: *const chronica_node_options,
    send: chronica_send_fn,
    user_data: *mut c_void,
    free_user_data: chronica_free_fn,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { register(director, uid, options, send, user_data, free_user_data) })
}

/// The shared body of the two registrations.
///
/// # Safety
/// As for `chronica_director_register_with`.
unsafe fn register(
    director: *mut chronica_director,
    uid_ptr: *const c_char,
    options: *const chronica_node_options,
    send: chronica_send_fn,
    user_data: *mut c_void,
    free_user_data: chronica_free_fn,
) -> FfiResult {
    // SAFETY: forwarded from the caller.
    let h = unsafe { object(director, "director") }?;
    let _scope = CallScope::enter(h);
    // SAFETY: forwarded from the caller.
    let uid = unsafe { uid(uid_ptr, "uid") }?;
    let send = send.ok_or_else(|| Failure::null("send"))?;
    // SAFETY: forwarded from the caller.
    let opts = unsafe { node_options_or_default(options) }?;
    let node = CNode::new(send, user_data, free_user_data, h.parked.clone());
    Ok(hand_over(node, |node| h.director.register_shared(uid, node, opts))?)
}

/// Removes node `uid`. Its pending user events go to another member of its
/// group, else they are dropped (and reported to the drop hook). Returns
/// after the node's last callback has finished and its `free_user_data` has
/// run, also from inside another node's callback. It does not wait where
/// the wait could never end, and the destructor then runs right after the
/// running callback returns: from the node's own callback (at once for a
/// node unregistering itself), from a callback the node waits for, itself
/// or through others (two callbacks unregistering each other: the first
/// waits, the second does not), and from a hook running on an emitting
/// thread. The uid may be registered again at once.
///
/// # Safety
/// `director` must be NULL or a live director; `uid` NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_unregister(
    director: *mut chronica_director,
    uid: *const c_char,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let (d, _scope) = unsafe { enter(director) }?;
        // SAFETY: forwarded from the caller.
        Ok(d.unregister(unsafe { crate::input::uid(uid, "uid") }?)?)
    })
}

/// Removes node `uid` after letting it deliver what it holds. At once, as
/// with `chronica_director_unregister`, the node leaves the routes (nothing
/// new reaches it; the uid may be registered again) and the others hear
/// `chronica.node_left`. Its fiber then delivers its waiting events,
/// retrying failures under its policy, until none is left, the node is
/// found disconnected, or `timeout_ms` passes; then it stops after its
/// current callback. What is left goes to another member of its group,
/// else it is dropped and reported, as after `chronica_director_unregister`.
///
/// `stats_out`, when not NULL, receives the node's final counters: nothing
/// pending, events handed to another member counted as dropped. Returns
/// after the node's last callback and its `free_user_data`, except from
/// inside a callback or hook of this director: then it returns at once,
/// the drain goes on (still bounded by `timeout_ms`) and `stats_out` gets
/// the counters of that moment. A close of the director during the drain
/// stops it at the close's deadline.
///
/// # Safety
/// `director` must be NULL or a live director; `uid` NULL or a
/// NUL-terminated string; `stats_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_unregister_draining(
    director: *mut chronica_director,
    uid: *const c_char,
    timeout_ms: u32,
    stats_out: *mut chronica_node_stats,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let (d, _scope) = unsafe { enter(director) }?;
        // SAFETY: forwarded from the caller.
        let uid = unsafe { crate::input::uid(uid, "uid") }?;
        let last = d.unregister_draining(uid, Duration::from_millis(timeout_ms.into()))?;
        if !stats_out.is_null() {
            // SAFETY: non-NULL and writable per the caller.
            unsafe { write_out(stats_out, chronica_node_stats::from(&last)) };
        }
        Ok(())
    })
}

/// Adds a topic pattern to node `uid`'s subscription (a node with no
/// pattern receives every topic; the first pattern narrows it).
///
/// # Safety
/// `director` must be NULL or a live director; `uid` and `pattern` NULL or
/// NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_subscribe(
    director: *mut chronica_director,
    uid: *const c_char,
    pattern: *const c_char,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let (d, _scope) = unsafe { enter(director) }?;
        // SAFETY: forwarded from the caller.
        let (uid, pattern) = unsafe { (crate::input::uid(uid, "uid")?, string(pattern, "pattern")?) };
        Ok(d.subscribe(uid, pattern)?)
    })
}

/// Resumes delivery to node `uid` at once and resets its retry backoff.
///
/// # Safety
/// `director` must be NULL or a live director; `uid` NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_node_connected(
    director: *mut chronica_director,
    uid: *const c_char,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let (d, _scope) = unsafe { enter(director) }?;
        // SAFETY: forwarded from the caller.
        Ok(d.node_connected(unsafe { crate::input::uid(uid, "uid") }?)?)
    })
}

/// Pauses delivery to node `uid`; its fiber keeps events (bounded by its
/// capacities and overflow policy) until `chronica_director_node_connected`.
///
/// # Safety
/// `director` must be NULL or a live director; `uid` NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_node_disconnected(
    director: *mut chronica_director,
    uid: *const c_char,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let (d, _scope) = unsafe { enter(director) }?;
        // SAFETY: forwarded from the caller.
        Ok(d.node_disconnected(unsafe { crate::input::uid(uid, "uid") }?)?)
    })
}

/// Writes a consistent snapshot of node `uid`'s counters to `*stats_out`
/// (all seven; see `chronica_node_stats`). Works after close (the final
/// counters) but not after unregister (`CHRONICA_ERR_UNKNOWN_NODE`).
///
/// # Safety
/// `director` must be NULL or a live director; `uid` NULL or a
/// NUL-terminated string; `stats_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_node_stats(
    director: *mut chronica_director,
    uid: *const c_char,
    stats_out: *mut chronica_node_stats,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { read_node(director, uid, stats_out, "stats_out", |s| chronica_node_stats::from(s)) })
}

/// Writes whether node `uid` is currently marked connected to
/// `*connected_out`: true from registration (unless its options start it
/// disconnected) and after `chronica_director_node_connected`, false after
/// `chronica_director_node_disconnected`. Checks its arguments as
/// `chronica_director_node_stats` does; likewise works after close (the
/// node's last state) but not after unregister
/// (`CHRONICA_ERR_UNKNOWN_NODE`). Kept out of `chronica_node_stats`, whose
/// layout the SPEC fixes.
///
/// # Safety
/// `director` must be NULL or a live director; `uid` NULL or a
/// NUL-terminated string; `connected_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_director_node_is_connected(
    director: *mut chronica_director,
    uid: *const c_char,
    connected_out: *mut bool,
) -> chronica_status {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe { read_node(director, uid, connected_out, "connected_out", |s| s.connected) })
}

/// Writes `read` of node `uid`'s counters to `*out` (named `name` in
/// errors), after checking the director, the uid and `out`, in that order.
///
/// # Safety
/// `director` must be NULL or a live director; `uid` NULL or a
/// NUL-terminated string; `out` NULL or writable.
unsafe fn read_node<T>(
    director: *mut chronica_director,
    uid: *const c_char,
    out: *mut T,
    name: &str,
    read: impl FnOnce(&chronica::NodeStats) -> T,
) -> FfiResult {
    // SAFETY: forwarded from the caller.
    let (d, _scope) = unsafe { enter(director) }?;
    // SAFETY: forwarded from the caller.
    let uid = unsafe { crate::input::uid(uid, "uid") }?;
    check_out(out, name)?;
    let value = read(&d.stats(uid)?);
    // SAFETY: checked non-NULL above; writable per the caller.
    unsafe { write_out(out, value) };
    Ok(())
}
