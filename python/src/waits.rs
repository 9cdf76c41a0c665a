//! Waits for callbacks that Ctrl-C can end, and the threads of our own
//! that such waits (and the finalizers' closes) run work on.
//!
//! CPython runs signal handlers on the main thread only, between bytecodes
//! or when C code asks (`PyErr_CheckSignals`). A wait in Rust with the GIL
//! released does neither, so Ctrl-C did nothing while `close` or
//! `unregister` waited for a callback that never returned. On the main
//! thread those calls now run their work on a thread of their own
//! ([`interruptible`]) and wait for it in slices of [`SLICE`], running the
//! signal handlers between slices with the GIL held. When one raises
//! (`KeyboardInterrupt`), the call raises it and the work goes on on its
//! thread, to its end, as it would have: the director still closes, the
//! node still leaves. The slices start only once the work has begun (the
//! director is closed to new calls, the node out of the routes), so what
//! the exception leaves behind is known. Elsewhere the work runs on the
//! calling thread, as before: no other thread runs signal handlers. A
//! work left running counts in [`LEFT_RUNNING`] until it has ended and let
//! go of what it held, and the `atexit` hook waits for it: an interrupted
//! unregister's thread may still drop the node's callable, which takes the
//! GIL, and a thread taking the GIL while the interpreter finalises is
//! ended mid-call, which aborts the process.
//!
//! A blocking `emit` (under the `block` policy) is not made interruptible
//! so: an emit left running after its call raised could still be
//! accepted, and a call that raised must change nothing. It waits in
//! slices of its own instead, each refused whole (`room.rs`).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::prelude::*;

use crate::closes::Closes;

/// How long the main thread waits between two runs of the signal handlers.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// The works [`interruptible`] runs on threads of their own, counted until
/// they end (see the module documentation).
static LEFT_RUNNING: LazyLock<Arc<Closes>> = LazyLock::new(Arc::default);

/// Waits until every work [`interruptible`] started has ended, those that
/// Ctrl-C left running included; for the `atexit` hook, GIL released.
pub(crate) fn wait_left_running() {
    LEFT_RUNNING.wait();
}

/// Runs `work` on a thread named `name`; gives it back when no thread
/// could be started.
pub(crate) fn spawn<F: FnOnce() + Send + 'static>(name: &str, work: F) -> Result<JoinHandle<()>, F> {
    let slot = Arc::new(Mutex::new(Some(work)));
    let theirs = slot.clone();
    let spawned = std::thread::Builder::new().name(name.into()).spawn(move || {
        let work = theirs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(work) = work {
            work();
        }
    });
    match spawned {
        Ok(handle) => Ok(handle),
        // The thread's closure, dropped unrun, left `work` in the slot.
        Err(_) => match slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(work) => Err(work),
            None => unreachable!("a thread that never started ran its closure"),
        },
    }
}

/// `work()`, a wait for callbacks, run with the GIL released. On the main
/// thread it runs on a thread of its own and the signal handlers run every
/// [`SLICE`] once `begun()` holds (the work's effect has started); an
/// exception they raise is returned at once, `work` going on to its end
/// and its result (whatever it holds) dropped on its thread. Elsewhere,
/// or when no thread can be started, `work` runs here.
pub(crate) fn interruptible<T, W, B>(py: Python<'_>, begun: B, work: W) -> PyResult<T>
where
    T: Send + 'static,
    W: FnOnce() -> T + Send + 'static,
    B: Fn() -> bool,
{
    if !on_main_thread(py) {
        return Ok(py.detach(work));
    }
    let (done, result) = mpsc::sync_channel(1);
    let running = LEFT_RUNNING.begin();
    let handle = match spawn("chronica-wait", move || {
        // What the work returns, if nobody takes it, goes first.
        let _ = done.send(work());
        drop(running);
    }) {
        Ok(handle) => handle,
        Err(run) => {
            // No thread: run it here, which sends to `result`.
            py.detach(run);
            return Ok(result.try_recv().expect("the work sent its result"));
        }
    };
    let mut result = result;
    loop {
        let (got, back) = py.detach(move || (result.recv_timeout(SLICE), result));
        result = back;
        match got {
            Ok(value) => return Ok(value),
            Err(RecvTimeoutError::Timeout) if begun() => py.check_signals()?,
            Err(RecvTimeoutError::Timeout) => {}
            // The work panicked: panic here as it would have.
            Err(RecvTimeoutError::Disconnected) => match handle.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => unreachable!("the work ended without sending its result"),
            },
        }
    }
}

/// Whether this is the thread CPython runs signal handlers on.
pub(crate) fn on_main_thread(py: Python<'_>) -> bool {
    let check = || -> PyResult<bool> {
        let threading = py.import("threading")?;
        // `main_thread` and `Thread.ident` are Python code.
        let main = crate::exiting::call1(&threading.getattr("main_thread")?, ())?;
        let main = crate::exiting::getattr(&main, "ident")?;
        main.eq(threading.getattr("get_ident")?.call0()?)
    };
    check().unwrap_or(false)
}
