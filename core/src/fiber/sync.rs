//! The atomics and queue of the fiber's lock-free protocol (`inbox.rs`,
//! `wake.rs`), taken from loom when the crate is tested with
//! `--cfg chronica_loom`, so that the model tests in `loom_tests.rs` run
//! the engine's own code under every interleaving loom explores. A custom
//! cfg, not `loom`: tokio and crossbeam read `loom` themselves.

#[cfg(not(all(test, chronica_loom)))]
pub(crate) use std::{
    sync::atomic::{fence, AtomicU64, AtomicU8, Ordering},
    thread::yield_now,
};

#[cfg(all(test, chronica_loom))]
pub(crate) use loom::{
    sync::atomic::{fence, AtomicU64, AtomicU8, Ordering},
    thread::yield_now,
};

/// The lanes' unbounded lock-free FIFO.
#[cfg(not(all(test, chronica_loom)))]
pub(crate) type Queue<T> = crossbeam_queue::SegQueue<T>;

#[cfg(all(test, chronica_loom))]
pub(crate) use model::Queue;

/// A stand-in for `SegQueue` that loom can see into. It promises no more
/// than `SegQueue` does: a push is published by one atomic write that an
/// emptiness check reads without any lock, so the wake-up protocol still
/// depends on its fences alone (a queue behind a mutex would order the
/// emitter and the worker by itself and hide a missing fence).
#[cfg(all(test, chronica_loom))]
mod model {
    use std::collections::VecDeque;

    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Mutex;

    #[derive(Debug, Default)]
    pub(crate) struct Queue<T> {
        items: Mutex<VecDeque<T>>,
        pushed: AtomicUsize,
        popped: AtomicUsize,
    }

    impl<T> Queue<T> {
        pub(crate) fn new() -> Self {
            Self {
                items: Mutex::new(VecDeque::new()),
                pushed: AtomicUsize::new(0),
                popped: AtomicUsize::new(0),
            }
        }

        pub(crate) fn push(&self, item: T) {
            let mut items = self.items.lock().unwrap();
            items.push_back(item);
            // SegQueue's push is a read-modify-write of its tail index.
            self.pushed.fetch_add(1, Ordering::AcqRel);
        }

        pub(crate) fn pop(&self) -> Option<T> {
            let mut items = self.items.lock().unwrap();
            let item = items.pop_front()?;
            self.popped.fetch_add(1, Ordering::AcqRel);
            Some(item)
        }

        /// Reads the two counts as SegQueue reads its head and tail.
        pub(crate) fn is_empty(&self) -> bool {
            let popped = self.popped.load(Ordering::Acquire);
            self.pushed.load(Ordering::Acquire) <= popped
        }
    }
}
