//! Fork detection. A director's threads do not survive `fork()`: in the
//! child, a director made before the fork would accept events that no
//! worker ever delivers, and its `close` would wait forever for threads
//! that are not there. Worse, a lock one of those threads held at the fork
//! stays held in the child's copy. So the child's copy refuses every call
//! with [`Error::Forked`](crate::Error::Forked), and its `close` and drop
//! return at once without touching its state (which the child then never
//! frees). A director made in the child after the fork works as usual.
//!
//! The count below is raised by a `pthread_atfork` child handler (an atomic
//! add, which is async-signal-safe) and read with one relaxed load per
//! call: whatever happened before the fork is the child's own past, so no
//! ordering is needed.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many forks this process's line of ancestors made since the handler
/// was installed: different in a child from its value in the parent.
static FORKS: AtomicU64 = AtomicU64::new(0);

#[cfg(unix)]
extern "C" fn in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// The process's fork count now, installing the handler on first use
/// (called when a director or fabric is made, before any of its threads).
pub(crate) fn generation() -> u64 {
    #[cfg(unix)]
    {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        // SAFETY: the handler only does an atomic add, which is safe in a
        // forked child of a threaded process. The call can fail only for
        // lack of memory; a child is then not detected, as before.
        #[allow(unsafe_code)]
        INSTALL.call_once(|| {
            let _ = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        });
    }
    FORKS.load(Ordering::Relaxed)
}

/// `Forked` in a process forked after `generation` was read (by the
/// thing made then, a director or a fabric): nothing of it may be touched
/// there, a lock included.
pub(crate) fn check(generation: u64) -> crate::Result<()> {
    if FORKS.load(Ordering::Relaxed) == generation {
        Ok(())
    } else {
        Err(crate::Error::Forked)
    }
}
