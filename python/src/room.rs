//! An emit's wait for room under the `block` policy, which Ctrl-C can end
//! on the main thread.
//!
//! The wait runs in Rust with the GIL released, where no signal handler
//! runs: Ctrl-C did nothing until `block_timeout` passed, which may be
//! minutes. On the main thread the wait is now cut into slices of
//! [`SLICE`]: each is a whole emit that waits for room until the slice's
//! end and, refused, accepted nothing anywhere (`Director::emit_until`,
//! `Distributed::try_emit_until`); between two, the signal handlers run
//! with the GIL held. An exception they raise (`KeyboardInterrupt`) is
//! raised by the emit, which has then changed nothing: a call that raised
//! changes nothing. The last slice ends at `block_timeout` and its answer
//! is the emit's, as that of the single wait it replaces. Elsewhere the
//! emit waits once, as before: no other thread runs signal handlers.
//!
//! A refused slice consumes an event id (and a fabric's wire id), as a
//! refused `try_emit` does: ids stay unique and increasing, not dense.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chronica::Overflow;
use pyo3::prelude::*;

use crate::waits::{on_main_thread, SLICE};

/// Whether an emit of a director (or fabric) may wait for room, and for
/// how long: under the director's `block` policy, and from the moment a
/// node with a `block` policy of its own is registered under another
/// (`register(overflow="block")`), since the engine then waits for that
/// node's lane up to the director's `block_timeout`. Without the second
/// case an emit under a dropping director would wait for such a node with
/// the GIL held, which its delivery thread needs to make room.
#[derive(Debug)]
pub(crate) struct MayWait {
    block_timeout: Duration,
    blocks: AtomicBool,
}

impl MayWait {
    /// The director's `overflow` policy and `block_timeout`.
    pub(crate) fn new(policy: Overflow, block_timeout: Duration) -> Self {
        Self { block_timeout, blocks: AtomicBool::new(policy == Overflow::Block) }
    }

    /// Notes a node's own policy, before it is registered: an emit that
    /// can reach the node then sees it (never undone; a `block` node gone
    /// only costs a `try_emit` first).
    pub(crate) fn note(&self, node_policy: Option<Overflow>) {
        if node_policy == Some(Overflow::Block) {
            self.blocks.store(true, Ordering::Release);
        }
    }

    /// The `block_timeout` that [`emit_from_python`] takes: `Some` once an
    /// emit may wait.
    pub(crate) fn block_timeout(&self) -> Option<Duration> {
        self.blocks.load(Ordering::Acquire).then_some(self.block_timeout)
    }
}

/// A `try_emit`'s answer for Python: `Ok(None)` for a refusal for want of
/// room (`full`), which accepted nothing anywhere; the id, or any other
/// error, as they are.
pub(crate) fn tried<E>(result: Result<u64, E>, full: fn(&E) -> bool) -> Result<Option<u64>, E> {
    match result {
        Err(e) if full(&e) => Ok(None),
        r => r.map(Some),
    }
}

/// How long one call of an emit's wait may wait for room.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// As the engine's waiting emit: up to `block_timeout`, its answer
    /// final; under the dropping policies, never.
    Timeout,
    /// Until this instant, a slice of the wait: refused for want of room,
    /// it must have accepted nothing anywhere.
    Slice(Instant),
    /// Until this instant, the end of the whole wait: its answer is final
    /// (a fabric's `emit` then pushes under the lane's rule, as after
    /// `block_timeout`).
    Last(Instant),
}

/// Emits `msg` (one message, or the run of `emit_many`) from Python with
/// `emit(msg, wait)`. Under the `block`
/// policy (`block_timeout` is then `Some`) it first tries `try_emit(msg)`
/// with the GIL held and, only when that finds a node full (`full`), waits
/// for room with the GIL released, since the delivery threads need it to
/// make room: releasing it for every emit handed it to a delivery thread
/// each time, which cost more than the emit. Under the other policies an
/// emit never waits. On the main thread the wait is cut into slices (see
/// the module documentation); the `Err` is then an exception a signal
/// handler raised between two of them.
pub(crate) fn emit_from_python<M: Clone + Send + Sync, T: Send, E: Send>(
    py: Python<'_>,
    block_timeout: Option<Duration>,
    msg: M,
    full: fn(&E) -> bool,
    try_emit: impl FnOnce(M) -> Result<T, E>,
    emit: impl Fn(M, Wait) -> Result<T, E> + Sync,
) -> PyResult<Result<T, E>> {
    let Some(block_timeout) = block_timeout else {
        return Ok(emit(msg, Wait::Timeout));
    };
    let start = Instant::now();
    let msg = match try_emit(msg.clone()) {
        Err(e) if full(&e) => msg,
        done => return Ok(done),
    };
    if !on_main_thread(py) {
        return Ok(py.detach(|| emit(msg, Wait::Timeout)));
    }
    // The engine saturates its deadlines likewise: a sum past the clock's
    // range means "never" all the same.
    let end = start.checked_add(block_timeout).unwrap_or_else(|| start + Duration::from_secs(1 << 30));
    loop {
        let now = Instant::now();
        let wait = match now + SLICE {
            slice if slice < end => Wait::Slice(slice),
            _ => Wait::Last(end),
        };
        match py.detach(|| emit(msg.clone(), wait)) {
            // Refused before its slice ended, the engine would not wait
            // at all (an emit into the caller's own lane, a circular
            // wait): trying again would only spin.
            Err(e) if full(&e) && matches!(wait, Wait::Slice(until) if Instant::now() >= until) => {
                py.check_signals()?
            }
            done => return Ok(done),
        }
    }
}
