//! Events as C callbacks see them: borrowed views of the engine's shared
//! events, valid only for the duration of the call that receives them.

use std::cell::Cell;
use std::ffi::c_char;
use std::sync::Arc;

use chronica::{Event, EventKind};

use crate::boundary::boundary;
use crate::input::{check_out, object, write_out};
use crate::status::{chronica_status, FfiResult};

/// Which lane an event travelled on.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum chronica_event_kind {
    /// An application event (the user lane).
    CHRONICA_EVENT_USER = 0,
    /// A control event (the priority lane); its topic is its action, e.g.
    /// "chronica.pull_current_state" or "chronica.lagged".
    CHRONICA_EVENT_ROOT = 1,
}

/// One event, as handed to a node's callback or a hook.
///
/// Every pointer is borrowed from the engine and valid only until the
/// callback returns: copy what you need to keep. Strings are UTF-8 and NOT
/// NUL-terminated: use the `_len` fields (e.g. `printf("%.*s", (int)len,
/// ptr)`). No pointer is NULL except `key` when the event has no key; an
/// absent source or trust token has length 0.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct chronica_event {
    /// Director-unique id, increasing in emit order.
    pub id: u64,
    /// `CHRONICA_EVENT_USER` or `CHRONICA_EVENT_ROOT`.
    pub kind: chronica_event_kind,
    /// The topic (for a root event: its action). May be empty.
    pub topic: *const c_char,
    /// Length of `topic` in bytes.
    pub topic_len: usize,
    /// The uid of the node the event was emitted on behalf of.
    pub source: *const c_char,
    /// Length of `source`; 0 when the event has no source.
    pub source_len: usize,
    /// The ordering / partition key; NULL when the event has none.
    pub key: *const u8,
    /// Length of `key`.
    pub key_len: usize,
    /// The payload bytes (shared by every receiver, never copied per node).
    pub payload: *const u8,
    /// Length of `payload`.
    pub payload_len: usize,
    /// The director's trust token (root events only).
    pub trust_token: *const c_char,
    /// Length of `trust_token`; 0 on user events.
    pub trust_token_len: usize,
    /// Milliseconds since the Unix epoch at emit time.
    pub timestamp_ms: i64,
    /// The payload's content type as labelled by the emitter (for example
    /// "application/json"); read it with `chronica_event_content_type`.
    pub content_type: *const c_char,
    /// Length of `content_type`; 0 when the event carries none.
    pub content_type_len: usize,
}

/// Where zero-length fields point, so C never sees a dangling pointer.
static EMPTY: [u8; 1] = [0];

fn text(s: &str) -> (*const c_char, usize) {
    if s.is_empty() {
        (EMPTY.as_ptr().cast(), 0)
    } else {
        (s.as_ptr().cast(), s.len())
    }
}

fn data(b: &[u8]) -> (*const u8, usize) {
    if b.is_empty() {
        (EMPTY.as_ptr(), 0)
    } else {
        (b.as_ptr(), b.len())
    }
}

impl chronica_event {
    /// A view of `e`, valid while `e` is alive.
    #[inline]
    pub(crate) fn view(e: &Event) -> Self {
        let (topic, topic_len) = text(e.topic());
        let (source, source_len) = text(e.source().unwrap_or(""));
        let (key, key_len) = match e.key() {
            Some(k) => data(k),
            None => (std::ptr::null(), 0),
        };
        let (payload, payload_len) = data(e.payload());
        let (trust_token, trust_token_len) = text(e.trust_token().unwrap_or(""));
        let (content_type, content_type_len) = text(e.content_type().unwrap_or(""));
        Self {
            id: e.id(),
            kind: match e.kind() {
                EventKind::User => chronica_event_kind::CHRONICA_EVENT_USER,
                EventKind::Root => chronica_event_kind::CHRONICA_EVENT_ROOT,
            },
            topic,
            topic_len,
            source,
            source_len,
            key,
            key_len,
            payload,
            payload_len,
            trust_token,
            trust_token_len,
            timestamp_ms: e.timestamp_ms(),
            content_type,
            content_type_len,
        }
    }
}

/// Writes the event's content type (not NUL-terminated, `*len_out` bytes;
/// length 0 when the event carries none) to `*content_type_out`. The pointer
/// is valid as long as the event is (during the callback that received it).
/// A producer and a consumer compare it to detect a serializer mismatch.
///
/// # Safety
/// `event` must be NULL or an event handed to a callback still running;
/// the out-pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn chronica_event_content_type(
    event: *const chronica_event,
    content_type_out: *mut *const c_char,
    len_out: *mut usize,
) -> chronica_status {
    boundary(|| -> FfiResult {
        // SAFETY: forwarded from the caller.
        let e = unsafe { object(event, "event") }?;
        check_out(content_type_out, "content_type_out")?;
        check_out(len_out, "len_out")?;
        // SAFETY: both checked non-NULL and writable per the caller.
        unsafe {
            write_out(content_type_out, e.content_type);
            write_out(len_out, e.content_type_len);
        }
        Ok(())
    })
}

thread_local! {
    /// A per-thread buffer of views, reused from batch to batch so a
    /// delivery allocates nothing once warm. Each worker of a fiber is a
    /// thread of its own, so workers of one node (concurrency above 1) never
    /// share a buffer.
    static SCRATCH: Cell<Vec<chronica_event>> = const { Cell::new(Vec::new()) };
}

/// How many events ahead of the one being viewed are prefetched.
///
/// Building a view is cheap; reading the event it describes is not: the
/// emitter wrote it on another core, so its cache lines miss in this one,
/// and a view depends on three of them. Requested a few events ahead, the
/// lines of several events arrive in parallel instead of one event at a time.
const PREFETCH_AHEAD: usize = 8;

/// Runs `f` with C views of `events`, valid only during the call.
pub(crate) fn with_views<R>(events: &[Arc<Event>], f: impl FnOnce(&[chronica_event]) -> R) -> R {
    // Taking the buffer out (instead of borrowing it) keeps a nested use on
    // the same thread correct: it simply gets a fresh buffer.
    // `try_with`: no panic even on a thread whose locals are being destroyed.
    let mut views = SCRATCH.try_with(Cell::take).unwrap_or_default();
    views.clear();
    views.reserve(events.len());
    events.iter().take(PREFETCH_AHEAD).for_each(|e| prefetch(e));
    for (i, e) in events.iter().enumerate() {
        if let Some(ahead) = events.get(i + PREFETCH_AHEAD) {
            prefetch(ahead);
        }
        views.push(chronica_event::view(e));
    }
    let r = f(&views);
    views.clear();
    let _ = SCRATCH.try_with(|s| s.set(views));
    r
}

/// Asks the CPU to start loading every cache line of `e` (a hint: no
/// effect on what the program computes, and none off x86-64).
#[inline(always)]
fn prefetch(e: &Event) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        const SIZE: usize = std::mem::size_of::<Event>();
        let first = (e as *const Event).cast::<i8>();
        // One line per 64 bytes from the start, and the last byte's line,
        // which is one more when the event does not start on a line.
        let mut offset = 0;
        while offset < SIZE + 63 {
            // SAFETY: a prefetch never faults and reads nothing the program
            // sees; the address lies inside `e` anyway. (Safe to call on
            // newer compilers, hence the allow.)
            #[allow(unused_unsafe)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(offset.min(SIZE - 1)))
            };
            offset += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = e;
}
