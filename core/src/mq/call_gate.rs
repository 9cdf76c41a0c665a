//! The gate in front of an adapter written in a host language (the C
//! vtable, a Python object): counts the calls running into it, so that its
//! close can refuse new ones and wait for those already inside.
//!
//! No lock is held while host code runs: a call counts itself in and out,
//! and a close waits on a condition variable until none runs.

use parking_lot::{Condvar, Mutex};

use super::host_call::HostCall;
use super::{MqError, MqResult};

#[derive(Debug, Default)]
struct State {
    running: usize,
    closing: bool,
    closed: bool,
}

/// Counts calls into a host adapter and sequences its close.
#[derive(Debug, Default)]
pub struct CallGate {
    state: Mutex<State>,
    changed: Condvar,
}

/// One call into the host adapter, counted until dropped. It also marks
/// the thread as inside a host call ([`HostCall`]), so that a close
/// attempted from inside it is refused rather than waiting for itself.
#[derive(Debug)]
pub struct GateCall<'a> {
    gate: &'a CallGate,
    _host: HostCall,
}

impl Drop for GateCall<'_> {
    fn drop(&mut self) {
        self.gate.state.lock().running -= 1;
        self.gate.changed.notify_all();
    }
}

impl CallGate {
    /// Counts a call in; [`MqError::Closed`] once a close has begun.
    pub fn enter(&self) -> MqResult<GateCall<'_>> {
        let mut s = self.state.lock();
        if s.closing {
            return Err(MqError::Closed);
        }
        s.running += 1;
        Ok(GateCall { gate: self, _host: HostCall::enter() })
    }

    /// Begins the close: refuses later calls and waits until none runs.
    /// False, at once, when a close had already begun: its caller then
    /// leaves the rest of the close to whoever began it.
    pub fn begin_close(&self) -> bool {
        let mut s = self.state.lock();
        if s.closing {
            return false;
        }
        s.closing = true;
        while s.running > 0 {
            self.changed.wait(&mut s);
        }
        true
    }

    /// Marks the close begun by [`begin_close`](Self::begin_close) as
    /// finished (the host's own close has returned).
    pub fn finish_close(&self) {
        self.state.lock().closed = true;
        self.changed.notify_all();
    }

    /// Waits until a close, whoever began it, has finished.
    pub fn wait_closed(&self) {
        let mut s = self.state.lock();
        while !s.closed || s.running > 0 {
            self.changed.wait(&mut s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mq::in_host_call;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_call_marks_its_thread_and_a_begun_close_refuses_calls() {
        let gate = CallGate::default();
        {
            let _call = gate.enter().unwrap();
            assert!(in_host_call());
        }
        assert!(!in_host_call());
        assert!(gate.begin_close());
        assert!(matches!(gate.enter(), Err(MqError::Closed)));
        assert!(!gate.begin_close(), "a second close leaves the work to the first");
    }

    #[test]
    fn close_waits_for_the_running_call_and_wait_closed_for_the_finish() {
        let gate = Arc::new(CallGate::default());
        let call = gate.enter().unwrap();
        let begun = Arc::new(AtomicBool::new(false));
        let closer = {
            let (gate, begun) = (gate.clone(), begun.clone());
            std::thread::spawn(move || {
                assert!(gate.begin_close());
                begun.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
                gate.finish_close();
            })
        };
        // Time for the close to go on, were it not waiting for the call.
        std::thread::sleep(Duration::from_millis(50));
        assert!(!begun.load(Ordering::SeqCst), "close went on while a call ran");
        drop(call);
        gate.wait_closed();
        assert!(begun.load(Ordering::SeqCst));
        closer.join().unwrap();
    }
}
