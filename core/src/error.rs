//! The one error type of the engine.

use std::fmt;

/// Why a director call was refused. A refused call changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The named source or target uid is not registered.
    UnknownNode(String),
    /// A node with this uid is already registered.
    DuplicateNode(String),
    /// An argument is out of its allowed range; the text says which and why.
    InvalidArgument(String),
    /// Under the `block` overflow policy, a target lane stayed full for the
    /// whole `block_timeout`, or was full when a call that does not wait
    /// found it (`try_emit`, an emit whose wait could never end); the event
    /// was accepted by no node.
    QueueFull(String),
    /// The director is closed (or closing); only stats remain readable. An
    /// [`EventBus`](crate::EventBus) refuses with it too once the bus is
    /// closed, its director open or not, so the text names both.
    Closed,
    /// The call cannot be made from inside one of this director's own
    /// callbacks (closing the director that runs the callback), nor
    /// (`close`) on the thread of the current-thread runtime its async
    /// nodes run on, which they need to finish (see
    /// [`DirectorBuilder::runtime`](crate::DirectorBuilder::runtime)).
    Reentrant,
    /// The system refused a resource the director needed (a thread, a runtime).
    Resource(String),
    /// The director (or fabric) was made in a parent of this process,
    /// before a `fork()`: its threads did not survive the fork, so it
    /// refuses every call here, and its `close` returns at once. Make a new
    /// one in this process.
    Forked,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownNode(uid) => write!(f, "unknown node {uid:?}"),
            Error::DuplicateNode(uid) => write!(f, "node {uid:?} is already registered"),
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::QueueFull(uid) => {
                write!(
                    f,
                    "queue of node {uid:?} is full under the block policy (an emit waits up to \
                     block_timeout for room; try_emit, or a wait that could never end, does not)"
                )
            }
            Error::Closed => f.write_str("director or bus is closed"),
            Error::Reentrant => f.write_str(
                "cannot close a director from inside one of its own callbacks, or where its callbacks \
                 could not end while it waits",
            ),
            Error::Resource(why) => write!(f, "out of resources: {why}"),
            Error::Forked => f.write_str(
                "this director was made before the process forked: its threads do not exist in \
                 this process, so it takes no calls here (make a new one after the fork)",
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The failure a node reports from its `send` callback. The message is kept
/// as the node's `last_error` and handed to the error and dead-letter hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError {
    message: String,
    delivered: usize,
    next_event_only: bool,
    interrupted: bool,
}

impl NodeError {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), delivered: 0, next_event_only: false, interrupted: false }
    }

    /// Not a failure: the node took the first `delivered` events of its
    /// batch and stopped there because its drain's deadline passed
    /// ([`drain_deadline_passed`](crate::drain_deadline_passed)). The rest
    /// stays the node's, as if never handed over: no failure is counted,
    /// and the drain's end hands it on or drops it as any event it left.
    pub fn interrupted(delivered: usize) -> Self {
        Self { interrupted: true, ..Self::new("stopped at the drain's deadline").with_delivered(delivered) }
    }

    /// Whether this is an [`interrupted`](Self::interrupted) batch.
    pub fn is_interrupted(&self) -> bool {
        self.interrupted
    }

    /// Says that the first `n` events of the failed batch were taken: they
    /// count as delivered and only the rest is retried (or dead-lettered),
    /// with the retry budget and backoff starting afresh when `n > 0`.
    pub fn with_delivered(mut self, n: usize) -> Self {
        self.delivered = n;
        self
    }

    /// Says that the failure is the first untaken event's alone, as for a
    /// handler of one event at a time (the bus's): once the retry budget
    /// is spent, only that event is dead-lettered, and the events after it,
    /// never attempted, go on to be delivered with a fresh budget. Without
    /// it the whole untaken rest of the batch is dead-lettered.
    pub fn of_next_event(mut self) -> Self {
        self.next_event_only = true;
        self
    }

    /// Whether the failure is the first untaken event's alone
    /// ([`of_next_event`](Self::of_next_event)).
    pub fn is_of_next_event(&self) -> bool {
        self.next_event_only
    }

    /// The message given by the node.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How many leading events of the batch the node took before failing.
    pub fn delivered(&self) -> usize {
        self.delivered
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {}

impl From<&str> for NodeError {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for NodeError {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}
