//! The node each subscription registers: it hands the engine's batches to
//! the user's handler one event at a time.
//!
//! The engine retries a failed *batch*; a handler sees *events*. So the
//! dispatcher remembers, per failed batch (keyed by its first event id,
//! unique per director), how many of its events the handler already took.
//! The retry resumes at the failed event: no event is handed twice, and
//! the dead-letter handler receives the failed event and those after it
//! in the batch (never attempted), not the ones already handled.
//!
//! The progress map is touched only after a failure (an atomic count lets
//! the success path skip its lock). It is guarded by its own mutex, never
//! held while user code runs.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::bus::options::DeadLetterHandler;
use crate::event::{Batch, Event};
use crate::hooks::DeadLetter;
use crate::node::{Node, SendResult};

/// A handler of one event.
pub(crate) type EachFn = dyn Fn(&Event) -> SendResult + Send + Sync;
/// A handler of a whole batch.
pub(crate) type BatchFn = dyn Fn(&[Arc<Event>]) -> SendResult + Send + Sync;

/// What the user gave `on` or `on_batch`.
#[derive(Clone)]
pub(crate) enum Handler {
    Each(Arc<EachFn>),
    Batch(Arc<BatchFn>),
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

#[derive(Debug, Default)]
struct Progress {
    /// Entries in `map`, read without the lock on the success path.
    len: AtomicUsize,
    /// First event id of a failed batch -> (events already handled, failures).
    map: Mutex<HashMap<u64, (usize, u32)>>,
}

impl Progress {
    fn resume_at(&self, first: u64) -> usize {
        if self.len.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.map.lock().get(&first).map_or(0, |p| p.0)
    }
    /// Records a failure at `index`; returns the failures so far.
    fn failed(&self, first: u64, index: usize) -> u32 {
        let mut map = self.map.lock();
        let entry = map.entry(first).or_insert((0, 0));
        entry.0 = index;
        entry.1 += 1;
        let failures = entry.1;
        self.len.store(map.len(), Ordering::Release);
        failures
    }
    fn take(&self, first: u64) -> usize {
        if self.len.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let mut map = self.map.lock();
        let at = map.remove(&first).map_or(0, |p| p.0);
        self.len.store(map.len(), Ordering::Release);
        at
    }
}

/// The node registered for one subscription.
pub(crate) struct Dispatch {
    id: u64,
    handler: Handler,
    progress: Arc<Progress>,
    /// Failures after which the engine gives a batch up, if it ever does.
    max_retries: Option<u32>,
    /// Whether a dead-letter hook will consume the progress entry.
    hooked: bool,
}

impl Dispatch {
    /// The node, and the dead-letter hook to register with it (when the
    /// user gave a handler).
    pub(crate) fn new(
        id: u64,
        handler: Handler,
        max_retries: Option<u32>,
        dead_letter: Option<DeadLetterHandler>,
    ) -> (Self, Option<impl Fn(&DeadLetter<'_>) + Send + Sync + 'static>) {
        let progress = Arc::new(Progress::default());
        let hook = dead_letter.map(|user| {
            let progress = progress.clone();
            move |dl: &DeadLetter<'_>| {
                let Some(first) = dl.batch.first() else { return };
                let start = progress.take(first.id());
                for event in dl.batch.iter().skip(start) {
                    user(event, dl.error);
                }
            }
        });
        let hooked = hook.is_some();
        (Self { id, handler, progress, max_retries, hooked }, hook)
    }

    fn each(&self, f: &EachFn, batch: &Batch) -> SendResult {
        let first = batch[0].id();
        let start = self.progress.resume_at(first);
        for (i, event) in batch.iter().enumerate().skip(start) {
            if let Err(err) = f(event) {
                let failures = self.progress.failed(first, i);
                let exhausted = self.max_retries.is_some_and(|max| failures > max);
                if exhausted && !self.hooked {
                    self.progress.take(first);
                }
                return Err(err);
            }
        }
        if start > 0 {
            self.progress.take(first);
        }
        Ok(())
    }
}

impl Node for Dispatch {
    fn send(&self, batch: &Batch) -> SendResult {
        // Control events (the current-state pull, lag notices) are the
        // engine's business; bus handlers see application events only.
        if batch.is_empty() || batch.is_root() {
            return Ok(());
        }
        let _scope = Scope(CURRENT.with(|c| c.replace(self.id)));
        match &self.handler {
            Handler::Each(f) => self.each(f.as_ref(), batch),
            Handler::Batch(f) => f(batch.events()),
        }
    }
}

/// Restores the thread's previous subscription id, also when a handler panics.
struct Scope(u64);

impl Drop for Scope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}
