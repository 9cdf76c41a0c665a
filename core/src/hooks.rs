//! Hooks: how the engine reports drops, dead letters and callback failures
//! to the host instead of printing them. Hooks run on the thread that caused
//! the report (the emitter for an overflow drop, the fiber's worker for a
//! failure or dead letter) with no engine lock held, so a hook may call the
//! director. Keep them short: they run in the delivery path.

use std::fmt;
use std::sync::Arc;

use crate::error::NodeError;
use crate::event::{Batch, Event};

/// Why an event was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The lane was full and the overflow policy removed this event.
    Overflow,
    /// The node was unregistered with this event still pending and no other
    /// member of its group to take it.
    Unregistered,
}

/// A dropped event, as reported to the drop hook.
#[derive(Debug, Clone, Copy)]
pub struct DropReport<'a> {
    /// The node that lost the event.
    pub uid: &'a str,
    /// The event lost.
    pub event: &'a Event,
    /// Why.
    pub reason: DropReason,
}

/// A batch that exhausted `max_retries`, as reported to the dead-letter hook.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// The node that failed to take the batch.
    pub uid: &'a str,
    /// The batch given up on.
    pub batch: &'a Batch,
    /// The last failure.
    pub error: &'a NodeError,
}

pub(crate) type DropHook = Arc<dyn Fn(&DropReport<'_>) + Send + Sync>;
/// A shared dead-letter hook.
pub type DeadLetterHook = Arc<dyn Fn(&DeadLetter<'_>) + Send + Sync>;
pub(crate) type ErrorHook = Arc<dyn Fn(&str, &NodeError) + Send + Sync>;

/// The host's hooks; each is optional.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) on_drop: Option<DropHook>,
    pub(crate) on_dead_letter: Option<DeadLetterHook>,
    pub(crate) on_error: Option<ErrorHook>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_drop", &self.on_drop.is_some())
            .field("on_dead_letter", &self.on_dead_letter.is_some())
            .field("on_error", &self.on_error.is_some())
            .finish()
    }
}
