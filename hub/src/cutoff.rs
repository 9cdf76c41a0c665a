//! The shutdown's cut of deliveries in flight.
//!
//! The director's close waits for the callbacks in flight, and a webhook
//! POST or a stream send waiting for its ack is bounded only by its own
//! timeout (`--webhook-timeout-ms`, `--ack-timeout-ms`, a minute or more
//! when so configured): one such delivery held the hub's exit that long.
//! At the end of the shutdown's drain window the hub cuts them all at
//! once; a cut delivery fails as a failed send does, so the close counts
//! its events as undelivered. The cut is sticky: a delivery that starts
//! after it fails at once.

use std::future::Future;

use chronica::{NodeError, SendResult};
use tokio::sync::watch;

/// Where the cut is made (held by the hub).
#[derive(Debug)]
pub(crate) struct Cutoff(watch::Sender<bool>);

impl Default for Cutoff {
    fn default() -> Self {
        Self(watch::Sender::new(false))
    }
}

impl Cutoff {
    /// Cuts every delivery in flight, and every later one.
    pub(crate) fn cut(&self) {
        self.0.send_replace(true);
    }

    /// A handle for one node's deliveries.
    pub(crate) fn watch(&self) -> CutWatch {
        CutWatch(self.0.subscribe())
    }
}

/// A node's view of the [`Cutoff`].
#[derive(Debug, Clone)]
pub(crate) struct CutWatch(watch::Receiver<bool>);

impl CutWatch {
    /// Runs `delivery` unless the cut comes first: then it is dropped
    /// (a POST's connection closes, a stream's pending ack is forgotten)
    /// and the send fails.
    pub(crate) async fn race(&self, delivery: impl Future<Output = SendResult>) -> SendResult {
        let mut rx = self.0.clone();
        let cut = async move {
            // The hub owns the sender for its whole life; without it there
            // is nothing to wait for.
            if rx.wait_for(|cut| *cut).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            done = delivery => done,
            () = cut => Err(NodeError::new("cut short by the hub's shutdown")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_cut_ends_a_delivery_in_flight_and_every_later_one() {
        let cutoff = Cutoff::default();
        let watch = cutoff.watch();
        assert!(watch.race(async { Ok(()) }).await.is_ok(), "no cut yet");
        let stuck = tokio::spawn({
            let watch = watch.clone();
            async move { watch.race(std::future::pending()).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!stuck.is_finished(), "a delivery in flight runs until the cut");
        cutoff.cut();
        // The outer bound only turns a hang into a failure.
        let r = tokio::time::timeout(Duration::from_secs(5), stuck).await.expect("not cut").unwrap();
        assert!(r.unwrap_err().to_string().contains("shutdown"));
        let later = tokio::time::timeout(Duration::from_secs(5), watch.race(std::future::pending()))
            .await
            .expect("a delivery after the cut waited");
        assert!(later.is_err());
    }
}
