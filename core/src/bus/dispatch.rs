//! The node each subscription registers: it hands the engine's batches to
//! the user's handler one event at a time.
//!
//! The engine retries a failed *batch*; a handler sees *events*. When the
//! handler fails on the i-th event, the dispatcher reports the i events
//! before it as delivered (`NodeError::with_delivered`): the engine settles
//! them and retries from the failed event with a fresh retry budget, so no
//! event is handed twice. The failure is that event's alone
//! (`NodeError::of_next_event`): once its budget is spent, the dead-letter
//! handler receives it, and the events after it are handed on.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};

use crate::bus::list::Listing;
use crate::bus::options::DeadLetterHandler;
use crate::bus::Listed;
use crate::event::{Batch, Event};
use crate::fiber::panic_error;
use crate::hooks::{DeadLetter, DeadLetterHook};
use crate::node::{Node, SendResult};
use crate::NodeError;

/// A handler of one event.
pub(crate) type EachFn = dyn Fn(&Event) -> SendResult + Send + Sync;
/// A handler of a whole batch.
pub(crate) type BatchFn = dyn Fn(&[Arc<Event>]) -> SendResult + Send + Sync;

/// What the user gave `on` (an [`EachFn`]) or `on_batch` (a
/// [`BatchFn`]). Subscribing is generic over it, so a refusal hands back
/// the very type it was given.
pub(crate) trait Handler: Clone + Send + Sync + 'static {
    /// Hands the handler `batch`, an application batch.
    fn handle(&self, batch: &Batch) -> SendResult;
}

impl Handler for Arc<EachFn> {
    /// One event per call. When the handler fails on the i-th event, the i
    /// before it count as delivered (see the module documentation).
    fn handle(&self, batch: &Batch) -> SendResult {
        for (i, event) in batch.iter().enumerate() {
            // An `off` or a close drains the subscription until a deadline:
            // past it, the rest of the batch is what the drain left, not
            // the handler's to work through.
            if crate::drain_deadline_passed() {
                return Err(NodeError::interrupted(i));
            }
            // A panic is a failure of this event too: caught here, the
            // events before it still count as delivered (the engine's own
            // catch would fail, and so hand again, the whole batch).
            catch_unwind(AssertUnwindSafe(|| self(event)))
                .unwrap_or_else(panic_error)
                .map_err(|err| err.with_delivered(i).of_next_event())?;
        }
        Ok(())
    }
}

impl Handler for Arc<BatchFn> {
    fn handle(&self, batch: &Batch) -> SendResult {
        self(batch.events())
    }
}

thread_local! {
    /// The subscription whose handler this thread is running (0: none), so
    /// `off` from inside its own handler does not wait for itself.
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// True when called from inside a handler of subscription `id`.
pub(crate) fn in_handler_of(id: u64) -> bool {
    CURRENT.with(Cell::get) == id
}

/// The node registered for one subscription. It owns the user's handler
/// and dead-letter handler, and the engine's workers hold the only strong
/// references to it: both are dropped when the last worker is done with
/// the node, inside the `off`, unregister or close that ends it (SPEC 2.7).
/// The node's hook in the fiber reaches the dead-letter handler through a
/// weak reference only, since the fiber outlives that call (a close keeps
/// it for the final stats, an emitter's route snapshot for a moment).
/// Its drop unlists the subscription from its bus (see `Listing`).
pub(crate) struct Dispatch<H> {
    id: u64,
    handler: H,
    dead_letter: Option<DeadLetterHandler>,
    /// Last: fields drop in order, so the subscription leaves the bus's
    /// list only once its handlers are gone (a C host's `free_user_data`
    /// has run when `off` finds it ended).
    _listing: Listing<Listed>,
}

impl<H: Handler> Dispatch<H> {
    /// The node of subscription `id`, listed as `listing`.
    pub(crate) fn new(
        id: u64,
        handler: H,
        dead_letter: Option<DeadLetterHandler>,
        listing: Listing<Listed>,
    ) -> Self {
        Self { id, handler, dead_letter, _listing: listing }
    }

    /// The dead-letter hook to register with the node `this` (when the
    /// user gave a dead-letter handler). Dead letters are reported only by
    /// the worker that delivered the batch, which holds the node, so the
    /// weak reference always reaches it.
    pub(crate) fn hook(this: &Arc<Self>) -> Option<DeadLetterHook> {
        this.dead_letter.as_ref()?;
        let node = Arc::downgrade(this);
        Some(Arc::new(move |dl: &DeadLetter<'_>| {
            let Some(node) = node.upgrade() else { return };
            if let Some(user) = &node.dead_letter {
                for event in dl.batch.iter() {
                    user(event, dl.error);
                }
            }
        }))
    }

    /// The handler of node `ours`, handed back by a refused registration
    /// as `node` (the only strong reference, alive while we hold it); the
    /// dead-letter handler is dropped. The handler comes back as the only
    /// reference to it.
    pub(crate) fn handed_back(node: Arc<dyn Node>, ours: &Weak<Self>) -> H {
        let dispatch = ours.upgrade().expect("a refused node is handed back alive");
        drop(node);
        dispatch.handler.clone()
    }
}

impl<H: Handler> Node for Dispatch<H> {
    fn send(&self, batch: &Batch) -> SendResult {
        // Control events (the current-state pull, lag notices) are the
        // engine's business; bus handlers see application events only.
        if batch.is_empty() || batch.is_root() {
            return Ok(());
        }
        let _scope = Scope(CURRENT.with(|c| c.replace(self.id)));
        self.handler.handle(batch)
    }
}

/// Restores the thread's previous subscription id, also when a handler panics.
struct Scope(u64);

impl Drop for Scope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}
