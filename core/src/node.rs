//! The node contract: what the director calls to hand a node its batches.
//!
//! A sync [`Node`] runs on a thread of its own fiber, so it may block for as
//! long as it likes without holding up other nodes or the runtime; this is
//! the variant the C and Python layers use. An [`AsyncNode`] runs as a task
//! on the director's tokio runtime and must not block.
//!
//! Dropping the node value is its destructor: the director drops it after
//! its last callback has returned, at unregister or close.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::NodeError;
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
    /// GIL through it, so a backlog costs one hand-over of the GIL rather
    /// than one per batch. The default just calls `deliver`.
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

/// A registered node's callback, sync or async.
#[derive(Clone)]
pub(crate) enum Callback {
    Sync(Arc<dyn Node>),
    Async(Arc<dyn AsyncNode>),
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Callback::Sync(_) => "Callback::Sync",
            Callback::Async(_) => "Callback::Async",
        })
    }
}
