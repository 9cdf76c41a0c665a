//! Telling whoever waits for delivered events that some were let go.
//!
//! The distributed layer's `delivery` acknowledgements hold weak references
//! to the events they injected and acknowledge a message once no fiber
//! holds its event any more. Workers signal here after they drop a
//! delivered batch (and after the hooks of a dead-lettered one), so such a
//! watcher looks again at once instead of polling every millisecond. While
//! nobody watches, a signal costs one relaxed load. A watcher still looks
//! on a slow timer too: events are also let go outside workers (an
//! overflow eviction, a close, a node that kept a clone).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// The director's release signal.
#[derive(Debug, Default)]
pub(crate) struct Released {
    notify: Notify,
    watchers: AtomicUsize,
}

impl Released {
    /// Called by a worker after it dropped what it delivered.
    pub(crate) fn signal(&self) {
        if self.watchers.load(Ordering::Relaxed) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Makes [`signal`](Self::signal) notify for as long as the guard lives.
    pub(crate) fn watch(&self) -> Watching<'_> {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        Watching(self)
    }
}

/// A registered watcher; see [`Released::watch`].
#[derive(Debug)]
pub(crate) struct Watching<'a>(&'a Released);

impl Watching<'_> {
    /// Resolves at the next signal after this call (take it before looking
    /// at the events, so a release in between is not missed).
    pub(crate) fn next(&self) -> Notified<'_> {
        self.0.notify.notified()
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watcher_hears_a_signal_given_after_it_asked() {
        let r = Released::default();
        let w = r.watch();
        let next = w.next();
        r.signal();
        tokio::time::timeout(std::time::Duration::from_secs(5), next).await.expect("signalled");
        drop(w);
        assert_eq!(r.watchers.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_worker_signals_once_it_let_a_delivered_batch_go() {
        let d = crate::Director::new().unwrap();
        d.register("n", |_: &crate::Batch| -> crate::SendResult { Ok(()) }).unwrap();
        let w = d.released().watch();
        let next = w.next();
        d.emit(crate::Message::new("t", "x")).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), next).await.expect("the worker signalled");
        drop(w);
        let d2 = d.clone();
        tokio::task::spawn_blocking(move || d2.close(std::time::Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap();
    }
}
