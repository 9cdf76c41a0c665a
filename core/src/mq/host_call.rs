//! Which threads are inside a callback of an adapter written in a host
//! language (the C vtable, a Python object).
//!
//! Closing a distributed instance from such a callback would wait for the
//! very callback it is called from, so the C and Python layers mark their
//! adapter calls with [`HostCall`] and refuse a close where
//! [`in_host_call`] is true.

use std::cell::Cell;

thread_local! {
    /// How many host adapter calls this thread is inside (nested calls).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// True while the current thread runs a host adapter's callback.
pub fn in_host_call() -> bool {
    DEPTH.with(Cell::get) > 0
}

/// Marks the current thread as inside a host adapter's callback until
/// dropped.
#[derive(Debug)]
pub struct HostCall(());

impl HostCall {
    /// Starts the mark; it ends when the value is dropped.
    pub fn enter() -> Self {
        DEPTH.with(|c| c.set(c.get() + 1));
        HostCall(())
    }
}

impl Drop for HostCall {
    fn drop(&mut self) {
        DEPTH.with(|c| c.set(c.get() - 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_nests_and_stays_on_its_thread() {
        assert!(!in_host_call());
        let outer = HostCall::enter();
        {
            let _inner = HostCall::enter();
            assert!(in_host_call());
            assert!(!std::thread::spawn(in_host_call).join().unwrap());
        }
        assert!(in_host_call());
        drop(outer);
        assert!(!in_host_call());
    }
}
