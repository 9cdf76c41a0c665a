//! The node contract: what the director calls to hand a node its batches.
//!
//! A sync [`Node`] runs on a thread of its own fiber, so it may block for as
//! long as it likes without holding up other nodes or the runtime; this is
//! the variant the C and Python layers use. An [`AsyncNode`] runs as a task
//! on the director's tokio runtime and must not block.
//!
//! Dropping the node value is its destructor: the director drops it after
//! its last callback has returned, at unregister or close.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::{Error, NodeError};
use crate::event::Batch;

/// Outcome of one delivery attempt: `Ok` means delivered; `Err` keeps the
/// batch at the head of its lane for a retry.
pub type SendResult = Result<(), NodeError>;

/// A boxed future returned by [`AsyncNode::send`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A synchronous receiver. Implemented for every
/// `Fn(&Batch) -> Result<(), NodeError> + Send + Sync + 'static`.
pub trait Node: Send + Sync + 'static {
    /// Delivers one batch. Called on the node's own fiber thread, never
    /// concurrently with itself unless the node asked for `concurrency > 1`.
    fn send(&self, batch: &Batch) -> SendResult;

    /// Runs `deliver`, which calls [`send`](Self::send) for one batch and
    /// then for each further batch that is ready at once, inside whatever
    /// this node keeps across consecutive calls. The Python layer holds the
    /// GIL through it (letting it go between batches every one and a half
    /// switch intervals), so a backlog costs a few hand-overs of the GIL
    /// rather than one per batch. The default just calls `deliver`.
    fn session(&self, deliver: &mut dyn FnMut()) {
        deliver()
    }
}

impl<F> Node for F
where
    F: Fn(&Batch) -> SendResult + Send + Sync + 'static,
{
    fn send(&self, batch: &Batch) -> SendResult {
        self(batch)
    }
}

/// A refused registration of a shared node ([`Director::register_shared`])
/// or subscription handler ([`EventBus::on_shared`]): why, and what was
/// given handed back. Nothing was registered, it was never called and the
/// engine keeps no reference to it, so the caller decides what dropping it
/// means (the C layer must not run the `user_data` destructor then).
/// Converts into its error.
///
/// [`Director::register_shared`]: crate::Director::register_shared
/// [`EventBus::on_shared`]: crate::EventBus::on_shared
pub struct Refused<E = Error, T = Arc<dyn Node>> {
    /// Why the registration was refused.
    pub error: E,
    /// The node (or the subscription's handler), as it was given.
    pub node: T,
}

impl<E: fmt::Debug, T> fmt::Debug for Refused<E, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused").field("error", &self.error).finish_non_exhaustive()
    }
}

impl<E: fmt::Display, T> fmt::Display for Refused<E, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl<E: fmt::Debug + fmt::Display, T> std::error::Error for Refused<E, T> {}

impl<T> From<Refused<Error, T>> for Error {
    fn from(refused: Refused<Error, T>) -> Self {
        refused.error
    }
}

/// An asynchronous receiver, run as a task on the director's runtime.
pub trait AsyncNode: Send + Sync + 'static {
    /// Delivers one batch; the future must not block the runtime.
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, SendResult>;
}

/// Wraps an async closure taking an owned [`Batch`] (a cheap clone of shared
/// events) as an [`AsyncNode`].
pub fn async_node<F, Fut>(f: F) -> impl AsyncNode
where
    F: Fn(Batch) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = SendResult> + Send + 'static,
{
    AsyncFn(f)
}

struct AsyncFn<F>(F);

impl<F, Fut> AsyncNode for AsyncFn<F>
where
    F: Fn(Batch) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = SendResult> + Send + 'static,
{
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, SendResult> {
        Box::pin((self.0)(batch.clone()))
    }
}

/// A registered node's callback: a sync node (`Arc<dyn Node>`, run on
/// threads of its own) or an async one (`Arc<dyn AsyncNode>`, run as
/// tasks). Registration is generic over it, so a refusal hands back the
/// very type it was given: a shared sync node comes back as one, with no
/// case left for a kind it could not have been given.
pub(crate) trait Callback: Send + Sync + Sized + 'static {
    /// Whether the workers are tasks on the director's runtime.
    const ASYNC: bool;

    /// Starts `fiber`'s workers, each holding a reference to the node;
    /// hands the callback back, with the error, when one cannot start
    /// (see `fiber::spawn_workers`).
    fn spawn_workers(
        self,
        fiber: &Arc<crate::fiber::Fiber>,
        core: &Arc<crate::director::core::Core>,
    ) -> Result<(), (std::io::Error, Self)>;
}
