//! The C ABI of Chronica: `libchronica` and `include/chronica.h`.
//!
//! # Conventions
//!
//! * Every function is named `chronica_<type>_<verb>`, takes its object
//!   first, inputs next and out-pointers (`*_out`) last, and returns a
//!   `chronica_status` (`CHRONICA_OK` = 0). Out-pointers are written only on
//!   success. A refused call changes nothing.
//! * Objects are opaque handles made by `_new` and released by a `void
//!   _free` that accepts NULL.
//! * Every entry point validates its pointers, UTF-8 strings and ranges, and
//!   runs its body through one boundary function that catches any Rust
//!   panic (`CHRONICA_ERR_PANIC`); nothing aborts the host.
//! * `chronica_last_error` gives a thread-local message for the most recent
//!   failure on the calling thread, `chronica_last_event_id` the id of the
//!   event its most recent successful emit created.
//! * Statuses and enum values coming from C are taken as integers and
//!   range-checked.
//! * Callbacks receive `user_data` first. Pointers they receive are valid
//!   only during the call. Node callbacks run on threads owned by the
//!   node's fiber; every chronica function may be called from inside any
//!   callback or hook, except closing or freeing the director that runs it
//!   (`CHRONICA_ERR_REENTRANT`).
//! * `chronica_node_stats` has the fixed layout SPEC section 5 gives it
//!   and never grows (later per-node facts get functions of their own).
//!   An out-struct outside the SPEC that may grow
//!   (`chronica_distributed_stats`) starts with `struct_size`, set by the
//!   caller; the library writes only the fields that fit in it
//!   (`out_struct.rs`).
//! * Ownership of a node's `user_data` passes to the director only when its
//!   registration succeeds; its destructor then runs exactly once, after
//!   the node's last callback.

mod boundary;
pub mod bus;
pub mod capacity;
pub mod director;
pub mod distributed;
pub mod distributed_options;
pub mod distributed_stats;
pub mod emit;
pub mod emit_many;
pub mod event;
pub mod event_id;
pub mod hooks;
mod input;
pub mod mq_adapter;
pub mod node;
pub mod node_error;
pub mod node_options;
pub mod options;
mod out_struct;
mod parked;
pub mod payload;
mod reentry;
pub mod retry;
pub mod send_report;
mod slab;
pub mod stats;
pub mod status;
pub mod subscribe_options;
mod text_out;
pub mod timed_emit;
pub mod version;
