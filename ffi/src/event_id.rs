//! The thread-local id of the last event an emit created.
//!
//! The SPEC fixes the emit signatures of the minimum C set (a status, no
//! out-pointer), while Rust's and Python's emits return the event's id. A
//! C producer needs the id to match its emits with a `chronica.lagged`
//! notice's id range or with what its nodes received, so every successful
//! emit stores the id here and `chronica_last_event_id` reads it back on
//! the same thread, as `chronica_last_error` does for failures. A failed
//! call leaves the slot alone (see docs/DECISIONS.md): the pair reads like
//! `errno` and a return value, the last error after a failure and the last
//! event id after a success, and the emit fast path pays one thread-local
//! store, nothing on the way in.

use std::cell::Cell;

use crate::boundary::boundary;
use crate::input::write_out;

thread_local! {
    // `const` and without a destructor: the access compiles to a plain
    // thread-local load or store, with no lazy-initialisation check, and
    // stays valid while the thread's other locals are destroyed.
    static LAST_EVENT_ID: Cell<u64> = const { Cell::new(0) };
}

/// Records `id` as the id of the event this thread's last successful emit
/// created, and hands it back.
#[inline(always)]
pub(crate) fn record(id: u64) -> u64 {
    let _ = LAST_EVENT_ID.try_with(|slot| slot.set(id));
    id
}

/// Records `id` as [`record`] does and writes it to `id_out` when that is
/// not NULL: the emits whose signatures are not the SPEC's (the
/// distributed handle's, the director's timed ones) return the id through
/// an out-pointer as well.
///
/// # Safety
/// `id_out` must be NULL or writable.
pub(crate) unsafe fn record_to(id_out: *mut u64, id: u64) {
    record(id);
    if !id_out.is_null() {
        // SAFETY: non-NULL and writable per the caller.
        unsafe { write_out(id_out, id) };
    }
}

/// The id of the event created by the last successful emit made on the
/// calling thread, through any of the director's (`chronica_director_emit`,
/// `_try_emit`, `_timed_emit`, `_emit_payload`, `_emit_keyed`, `_emit_to`,
/// `_try_emit_to`, `_timed_emit_to`, `_emit_root`, `_emit_root_to`; the
/// timed ones also write it to their `id_out`; `_emit_many` sets it to the
/// last of the call's ids, and leaves it alone when given no message), the
/// bus's
/// (`chronica_bus_emit`, `chronica_bus_emit_with`) or the distributed
/// handle's (`chronica_distributed_emit` and its forms, which also write it
/// to their `id_out`) emit functions: the `id` the receiving nodes see in
/// their `chronica_event`, and the number a `chronica.lagged` notice's
/// `first_id` / `last_id` range counts in.
///
/// 0 before the thread's first successful emit: the engine numbers events
/// from 1, so 0 is never an event's id. A failed emit (any status other
/// than `CHRONICA_OK`) leaves the value as it was, as a success leaves
/// `chronica_last_error`: read it right after an emit returned
/// `CHRONICA_OK`. Emits on other threads, and from callbacks running on
/// other threads, do not change it. Never fails; callable from anywhere,
/// callbacks included.
#[no_mangle]
pub extern "C" fn chronica_last_event_id() -> u64 {
    boundary(|| LAST_EVENT_ID.try_with(Cell::get).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_reads_back_what_was_recorded_on_this_thread_only() {
        assert_eq!(record(41), 41);
        assert_eq!(chronica_last_event_id(), 41);
        let there = std::thread::spawn(|| chronica_last_event_id()).join().unwrap();
        assert_eq!(there, 0);
    }
}
