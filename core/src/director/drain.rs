//! A deadline that draining unregisters share and their owner can bring
//! forward at any time: the bus's close bounds the drain of an `off` in
//! progress at its own deadline with it.
//!
//! A fiber's drain deadline is kept by its workers (`State::drain_until`),
//! set when the unregister starts the drain. Bringing it forward from
//! outside needs to reach the fiber, whose uid may already be someone
//! else's, and must not miss a drain that is just starting: a cut that
//! comes between the caller's decision to drain and the start of the
//! drain must still bound it. So the drains are started through the
//! [`DrainCut`] itself, under its lock: either the cut comes first and the
//! start reads it, or the drain comes first and the cut finds its fiber.
//! It reaches only fibers whose drains were started with it, never a node
//! that took their uid since.

use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;

use crate::fiber::Fiber;

/// A bound on the drains started with it (see the module documentation).
/// Lock order: its lock, then a fiber's.
#[derive(Debug, Default)]
pub(crate) struct DrainCut {
    inner: Mutex<Cut>,
}

#[derive(Debug, Default)]
struct Cut {
    /// No drain started with this goes past it, once set.
    at: Option<Instant>,
    /// The fibers whose drains were started with this; weak, so that a
    /// fiber that has left is not kept for it.
    draining: Vec<Weak<Fiber>>,
}

impl DrainCut {
    /// Ends every drain started with this by `at`, and every one started
    /// from now on. Only ever earlier: an earlier cut, or a drain's own
    /// earlier deadline, stands.
    pub(crate) fn cut(&self, at: Instant) {
        let fibers: Vec<Arc<Fiber>> = {
            let mut cut = self.inner.lock();
            let at = cut.at.map_or(at, |t| t.min(at));
            cut.at = Some(at);
            let fibers: Vec<Arc<Fiber>> = cut.draining.iter().filter_map(Weak::upgrade).collect();
            for f in &fibers {
                f.drain_until(at);
            }
            fibers
        };
        // Dropped with the lock released: the last reference to a fiber
        // takes its hooks with it, which may be user code.
        drop(fibers);
    }

    /// The cut, once there is one.
    pub(crate) fn at(&self) -> Option<Instant> {
        self.inner.lock().at
    }

    /// Starts `fiber`'s drain until `until`, or until the cut if that is
    /// earlier, and lets later cuts reach it.
    pub(crate) fn start(&self, fiber: &Arc<Fiber>, until: Instant) {
        let mut cut = self.inner.lock();
        cut.draining.retain(|f| f.strong_count() > 0);
        cut.draining.push(Arc::downgrade(fiber));
        fiber.drain_until(cut.at.map_or(until, |at| at.min(until)));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::DrainCut;
    use crate::director::Registration;
    use crate::{Batch, Director, Error, Message, Node, NodeError, NodeOptions, RetryPolicy, SendResult};

    /// Longer than any test here should take: a drain that lasts this long
    /// was not cut.
    const LONG: Duration = Duration::from_secs(60);

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Registers `uid` with a node that fails every event, retried every
    /// 5 ms forever, so that its drain lasts until its deadline, and gives
    /// it one event; returns its registration.
    fn never_settles(d: &Director, uid: &str) -> Registration {
        let registration = Cell::new(Registration::default());
        let admit = |r| {
            registration.set(r);
            Ok(())
        };
        let node: Arc<dyn Node> = Arc::new(|_: &Batch| -> SendResult { Err(NodeError::new("not yet")) });
        let retry = RetryPolicy {
            initial_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(5),
            ..Default::default()
        };
        d.register_admitted(uid, node, NodeOptions::default().retry(retry), Some(&admit)).unwrap();
        d.emit(Message::new("t", "x")).unwrap();
        registration.get()
    }

    /// Drains `uid` (`registration`) with `cut` for at most `timeout` on
    /// another thread; the handle gives its result and how long it took.
    fn drain(
        d: &Director,
        uid: &'static str,
        registration: Registration,
        timeout: Duration,
        cut: &Arc<DrainCut>,
    ) -> std::thread::JoinHandle<(crate::Result<crate::NodeStats>, Duration)> {
        let (d, cut) = (d.clone(), cut.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            (d.unregister_registration_draining(uid, registration, timeout, &cut), started.elapsed())
        })
    }

    fn started(cut: &DrainCut) -> bool {
        !cut.inner.lock().draining.is_empty()
    }

    /// A cut during a drain brings its end forward to the cut, and the
    /// unregister returns the final counters: what was left, dropped.
    #[test]
    fn a_cut_during_a_drain_brings_its_end_forward() {
        let d = Director::new().unwrap();
        let cut = Arc::new(DrainCut::default());
        let n = never_settles(&d, "n");
        let drain = drain(&d, "n", n, LONG, &cut);
        wait_for("the drain to start", || started(&cut));
        cut.cut(Instant::now());
        let (last, took) = drain.join().unwrap();
        assert!(took < LONG / 2, "the drain lasted {took:?}, past the cut");
        let last = last.unwrap();
        assert_eq!((last.accepted, last.dropped, last.pending), (2, 2, 0), "{last:?}");
        assert!(last.balanced());
        assert_eq!(d.close(Duration::from_secs(5)), Ok(0));
    }

    /// A cut that comes before a drain starts bounds it as it starts.
    #[test]
    fn a_cut_before_a_drain_bounds_it() {
        let d = Director::new().unwrap();
        let cut = Arc::new(DrainCut::default());
        let n = never_settles(&d, "n");
        cut.cut(Instant::now());
        let (last, took) = drain(&d, "n", n, LONG, &cut).join().unwrap();
        assert!(took < LONG / 2, "the drain lasted {took:?}, past the cut");
        assert_eq!(last.map(|s| s.pending), Ok(0));
        assert!(d.nodes().is_empty());
    }

    /// A cut only ever brings a drain's end forward: a later one leaves
    /// both the drain's own deadline and an earlier cut as they were.
    #[test]
    fn a_cut_never_moves_an_end_later() {
        let d = Director::new().unwrap();
        let cut = Arc::new(DrainCut::default());
        let n = never_settles(&d, "n");
        let drain = drain(&d, "n", n, Duration::from_millis(100), &cut);
        wait_for("the drain to start", || started(&cut));
        cut.cut(Instant::now() + LONG * 2);
        let (last, took) = drain.join().unwrap();
        assert!(took < LONG / 2, "the drain lasted {took:?}: the cut moved its end later");
        assert_eq!(last.map(|s| s.pending), Ok(0));
        let early = Instant::now();
        cut.cut(early);
        cut.cut(early + LONG);
        assert_eq!(cut.at(), Some(early));
    }

    /// A cut reaches only the drains started with it: a node that took the
    /// uid of one since is left alone, and an unregister of the old
    /// registration does not touch it either.
    #[test]
    fn a_cut_reaches_no_node_that_took_the_uid() {
        let d = Director::new().unwrap();
        let cut = Arc::new(DrainCut::default());
        let old = never_settles(&d, "n");
        let drain = drain(&d, "n", old, LONG, &cut);
        wait_for("the drain to start", || started(&cut));
        let delivered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = delivered.clone();
        d.register("n", move |b: &Batch| -> SendResult {
            seen.fetch_add(b.len(), std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        cut.cut(Instant::now());
        let (last, _) = drain.join().unwrap();
        assert_eq!(last.map(|s| s.pending), Ok(0));
        let again = d.unregister_registration_draining("n", old, LONG, &cut);
        assert_eq!(again, Err(Error::UnknownNode("n".into())));
        d.emit(Message::new("t", "y")).unwrap();
        // Its pull and the event: still running, not draining.
        wait_for("the newcomer to deliver", || delivered.load(std::sync::atomic::Ordering::SeqCst) == 2);
        assert_eq!(d.nodes(), ["n"]);
        assert_eq!(d.close(Duration::from_secs(5)), Ok(0));
    }
}
