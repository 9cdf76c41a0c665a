//! Thread-local knowledge of "am I inside one of this director's callbacks
//! or worker threads", used to refuse a re-entrant close and to avoid
//! joining the thread we run on.

use std::cell::Cell;
use std::thread::LocalKey;

thread_local! {
    /// The fiber (its address) and user lane whose callback runs here.
    static IN_LANE: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    static IN_CALLBACK: Cell<u64> = const { Cell::new(0) };
    static IN_HOOK: Cell<u64> = const { Cell::new(0) };
    static WORKER_OF: Cell<u64> = const { Cell::new(0) };
    /// The fiber (its address) whose sync worker this thread is, if any.
    static WORKER_FIBER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread, in one of the cells above, as inside
/// director `id` until dropped (restoring what was there before).
#[derive(Debug)]
pub(crate) struct Scope {
    cell: &'static LocalKey<Cell<u64>>,
    prev: u64,
}

impl Scope {
    fn enter(cell: &'static LocalKey<Cell<u64>>, director: u64) -> Self {
        Self { cell, prev: cell.with(|c| c.replace(director)) }
    }

    /// The thread runs a callback of `director`.
    pub(crate) fn callback(director: u64) -> Self {
        Self::enter(&IN_CALLBACK, director)
    }

    /// The thread runs a hook (drop, error, dead letter) of `director`.
    /// Hooks also run on emitting threads, where nothing else says the
    /// thread is inside the director: `close` there would close it under
    /// the emit that is still running.
    pub(crate) fn hook(director: u64) -> Self {
        Self::enter(&IN_HOOK, director)
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.cell.with(|c| c.set(self.prev));
    }
}

/// True while the current thread runs a hook of director `id`.
pub(crate) fn in_hook_of(director: u64) -> bool {
    IN_HOOK.with(|c| c.get() == director)
}

/// True while the current thread runs a callback of director `id`.
pub(crate) fn in_callback_of(director: u64) -> bool {
    IN_CALLBACK.with(|c| c.get() == director)
}

/// Marks the current thread, for its whole life, as a worker of `director`
/// serving the fiber at `fiber`.
pub(crate) fn mark_worker_thread<T>(director: u64, fiber: &T) {
    WORKER_OF.with(|c| c.set(director));
    WORKER_FIBER.with(|c| c.set(fiber as *const T as usize));
}

/// The fiber (its address) whose sync worker the current thread is, if
/// it is one (`waits` keys its edges by it).
pub(crate) fn worker_fiber() -> Option<usize> {
    Some(WORKER_FIBER.with(Cell::get)).filter(|f| *f != 0)
}

/// True on a worker thread of director `id`, inside a callback or not.
pub(crate) fn is_worker_of(director: u64) -> bool {
    WORKER_OF.with(|c| c.get() == director)
}

/// Marks the current thread as running the callback of user lane `lane` of
/// the fiber at `fiber` until dropped (restoring what was there before).
#[derive(Debug)]
pub(crate) struct LaneScope {
    prev: (usize, usize),
}

impl LaneScope {
    pub(crate) fn enter<T>(fiber: &T, lane: usize) -> Self {
        Self { prev: IN_LANE.with(|c| c.replace((fiber as *const T as usize, lane))) }
    }
}

impl Drop for LaneScope {
    fn drop(&mut self) {
        IN_LANE.with(|c| c.set(self.prev));
    }
}

/// True while the current thread runs a callback of `lane` of `fiber`:
/// only that callback's return can make room in the lane, so waiting for
/// room there from inside it would wait for itself.
pub(crate) fn in_lane<T>(fiber: &T, lane: usize) -> bool {
    IN_LANE.with(|c| c.get() == (fiber as *const T as usize, lane))
}
