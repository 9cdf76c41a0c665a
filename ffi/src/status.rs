//! Statuses, their descriptions, and the thread-local last error.
//!
//! Every failing call records a message in a thread-local slot before it
//! returns its status; `chronica_last_error` reads it back on the same
//! thread. A success does not clear it (as with `errno`), so read it only
//! right after a call returned something other than `CHRONICA_OK`.

use std::cell::RefCell;
use std::ffi::c_char;

use crate::boundary::boundary;
use crate::text_out::copy_text;

/// The outcome of a call: `CHRONICA_OK` (0) or the reason it was refused.
/// A refused call changes nothing. Numbers are never reused.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum chronica_status {
    /// Success.
    CHRONICA_OK = 0,
    /// A required pointer argument was NULL.
    CHRONICA_ERR_NULL_ARGUMENT = 1,
    /// A string argument was not valid UTF-8.
    CHRONICA_ERR_INVALID_UTF8 = 2,
    /// An argument was out of its allowed range (an empty or over-long uid,
    /// a zero capacity, a bad pattern, an unknown enum value, ...).
    CHRONICA_ERR_INVALID_ARGUMENT = 3,
    /// The named source, target or node is not registered.
    CHRONICA_ERR_UNKNOWN_NODE = 4,
    /// A node with this uid is already registered.
    CHRONICA_ERR_DUPLICATE_NODE = 5,
    /// Under `CHRONICA_OVERFLOW_BLOCK`, a target lane stayed full for the
    /// whole block timeout, or was full when a call that does not wait
    /// found it (`chronica_director_try_emit`); no node accepted the event.
    CHRONICA_ERR_QUEUE_FULL = 6,
    /// The director is closed, or the bus called is (its director may be
    /// open); only stats, close and free remain usable.
    CHRONICA_ERR_CLOSED = 7,
    /// A message-broker adapter failed (distributed mode).
    CHRONICA_ERR_ADAPTER = 8,
    /// The call cannot be made from inside one of this director's own
    /// callbacks, hooks or `free_user_data` destructors (closing or freeing
    /// the director that runs it: it cannot join its own thread).
    CHRONICA_ERR_REENTRANT = 9,
    /// A Rust panic was caught at the boundary; the library state may be
    /// inconsistent for the object involved.
    CHRONICA_ERR_PANIC = 10,
    /// The system refused a resource (a thread, memory for a runtime).
    CHRONICA_ERR_RESOURCE = 11,
    /// An engine error this version of the C API does not know how to name.
    CHRONICA_ERR_INTERNAL = 12,
}

use chronica_status::*;

impl chronica_status {
    /// Every status, for tests and for `chronica_status_str`.
    pub(crate) const ALL: [chronica_status; 13] = [
        CHRONICA_OK,
        CHRONICA_ERR_NULL_ARGUMENT,
        CHRONICA_ERR_INVALID_UTF8,
        CHRONICA_ERR_INVALID_ARGUMENT,
        CHRONICA_ERR_UNKNOWN_NODE,
        CHRONICA_ERR_DUPLICATE_NODE,
        CHRONICA_ERR_QUEUE_FULL,
        CHRONICA_ERR_CLOSED,
        CHRONICA_ERR_ADAPTER,
        CHRONICA_ERR_REENTRANT,
        CHRONICA_ERR_PANIC,
        CHRONICA_ERR_RESOURCE,
        CHRONICA_ERR_INTERNAL,
    ];

    /// Converts an integer that came from C; `None` when out of range.
    pub(crate) fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| *s as u32 == raw)
    }

    /// A NUL-terminated, static description.
    fn text(self) -> &'static [u8] {
        match self {
            CHRONICA_OK => b"ok\0",
            CHRONICA_ERR_NULL_ARGUMENT => b"a required pointer argument was NULL\0",
            CHRONICA_ERR_INVALID_UTF8 => b"a string argument was not valid UTF-8\0",
            CHRONICA_ERR_INVALID_ARGUMENT => b"an argument was out of its allowed range\0",
            CHRONICA_ERR_UNKNOWN_NODE => b"unknown node\0",
            CHRONICA_ERR_DUPLICATE_NODE => b"a node with this uid is already registered\0",
            CHRONICA_ERR_QUEUE_FULL => b"a target queue is full under the block policy\0",
            CHRONICA_ERR_CLOSED => b"the director or bus is closed\0",
            CHRONICA_ERR_ADAPTER => b"message-broker adapter error\0",
            CHRONICA_ERR_REENTRANT => b"not allowed from inside one of the director's own callbacks\0",
            CHRONICA_ERR_PANIC => b"a panic was caught at the C boundary\0",
            CHRONICA_ERR_RESOURCE => b"out of resources\0",
            CHRONICA_ERR_INTERNAL => b"internal error\0",
        }
    }
}

/// Text of an integer that is not a status.
const UNKNOWN_STATUS: &[u8] = b"unknown status\0";

/// A refused call: the status to return and the detail for the last error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) status: chronica_status,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: chronica_status, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
    pub(crate) fn null(what: &str) -> Self {
        Self::new(CHRONICA_ERR_NULL_ARGUMENT, format!("{what} must not be NULL"))
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(CHRONICA_ERR_INVALID_ARGUMENT, message)
    }
}

impl From<chronica::Error> for Failure {
    fn from(e: chronica::Error) -> Self {
        use chronica::Error as E;
        let status = match &e {
            E::UnknownNode(_) => CHRONICA_ERR_UNKNOWN_NODE,
            E::DuplicateNode(_) => CHRONICA_ERR_DUPLICATE_NODE,
            E::InvalidArgument(_) => CHRONICA_ERR_INVALID_ARGUMENT,
            E::QueueFull(_) => CHRONICA_ERR_QUEUE_FULL,
            E::Closed => CHRONICA_ERR_CLOSED,
            E::Reentrant => CHRONICA_ERR_REENTRANT,
            // The director is as good as closed in this process; the text says why.
            E::Forked => CHRONICA_ERR_CLOSED,
            E::Resource(_) => CHRONICA_ERR_RESOURCE,
            _ => CHRONICA_ERR_INTERNAL,
        };
        Self::new(status, e.to_string())
    }
}

/// Result of an export's body.
pub(crate) type FfiResult<T = ()> = Result<T, Failure>;

thread_local! {
    static LAST_ERROR: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Records `message` as this thread's last error. Nothing is recorded on a
/// thread whose thread-locals are already destroyed (a call from a
/// `pthread_key` destructor): `with` would panic there, outside any
/// `catch_unwind`, and abort the host.
pub(crate) fn set_last_error(status: chronica_status, message: &str) {
    let text = format!("{}: {}", status_name(status), message);
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            slot.clear();
            // Interior NULs would cut the C string short: replace them.
            slot.extend(text.bytes().map(|b| if b == 0 { b'?' } else { b }));
        }
    });
}

fn status_name(status: chronica_status) -> String {
    format!("{status:?}")
}

/// A static, NUL-terminated description of a status. The argument is taken
/// as an integer: a value that is not a status gives "unknown status".
/// Never returns NULL; the string must not be freed.
#[no_mangle]
pub extern "C" fn chronica_status_str(status: chronica_status_t) -> *const c_char {
    boundary(|| {
        let text = chronica_status::from_raw(status).map_or(UNKNOWN_STATUS, chronica_status::text);
        text.as_ptr().cast::<c_char>()
    })
}

/// Copies this thread's last error message into `buf` (NUL-terminated,
/// truncated to `len - 1` bytes) and returns the message's full length
/// without the NUL, like `snprintf`. With `buf` NULL or `len` 0 it only
/// returns the length. Returns 0 when no call on this thread has failed.
/// The message describes the most recent failed call on the calling thread;
/// a message read on another thread is unrelated. Callable from anywhere,
/// callbacks included.
///
/// # Safety
/// `buf`, when not NULL, must point to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn chronica_last_error(buf: *mut c_char, len: usize) -> usize {
    boundary(|| {
        LAST_ERROR
            .try_with(|slot| {
                let Ok(msg) = slot.try_borrow() else { return 0 };
                // SAFETY: `buf` holds `len` bytes per the caller and cannot
                // overlap our Rust-owned message.
                unsafe { copy_text(&msg, buf, len) }
            })
            .unwrap_or(0)
    })
}

/// A status as C passes it back: a plain integer, converted with a range
/// check (an out-of-range enum value would be undefined behaviour in Rust).
/// In the header this is the `chronica_status` typedef itself.
#[allow(non_camel_case_types)]
pub type chronica_status_t = u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_dense_and_round_trip() {
        for (i, s) in chronica_status::ALL.iter().enumerate() {
            assert_eq!(*s as u32, i as u32);
            assert_eq!(chronica_status::from_raw(i as u32), Some(*s));
            assert_eq!(s.text().last(), Some(&0));
        }
        assert_eq!(chronica_status::from_raw(9999), None);
    }

    /// `Closed` also comes from a closed bus over an open director: neither
    /// the status text nor the last error may say only the director is.
    #[test]
    fn the_closed_texts_name_the_bus_too() {
        assert_eq!(CHRONICA_ERR_CLOSED.text(), b"the director or bus is closed\0");
        let failure = Failure::from(chronica::Error::Closed);
        assert_eq!(failure.status, CHRONICA_ERR_CLOSED);
        assert_eq!(failure.message, "director or bus is closed");
    }

    #[test]
    fn last_error_truncates_like_snprintf() {
        set_last_error(CHRONICA_ERR_CLOSED, "director or bus is closed");
        let mut buf = [0x7f as c_char; 8];
        // SAFETY: buf has 8 bytes.
        let n = unsafe { chronica_last_error(buf.as_mut_ptr(), buf.len()) };
        assert!(n > 8);
        assert_eq!(buf[7], 0);
        // SAFETY: NULL with length 0 is allowed.
        assert_eq!(unsafe { chronica_last_error(std::ptr::null_mut(), 0) }, n);
    }
}
