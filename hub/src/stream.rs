//! Delivery to a streaming node: batches over a WebSocket, each acknowledged.
//!
//! A streaming node is registered disconnected. When it opens
//! `GET /v1/nodes/{uid}/stream`, the socket task attaches itself to the
//! node's [`StreamSlot`] and marks the node connected, which flushes what
//! waited. The node's async callback hands each batch to the attached socket
//! task as a frame `{"type":"batch","seq":n,...}` and waits for
//! `{"type":"ack","seq":n}` (or `{"type":"nack","seq":n,"error":".."}`).
//! A nack, the ack timeout, or the socket closing fails the callback, so the
//! engine keeps the batch at the head of the lane; when the socket is gone
//! the node is marked disconnected and the batch is redelivered after the
//! next connection. Delivery is at least once: clients dedupe by event id.
//!
//! Invariants: the slot's mutex guards only the current connection handle
//! and is never held across an await or a director call. A newer socket
//! replaces an older one; only the socket that is still attached when it
//! ends marks the node disconnected. The socket task's [`Waiting`] table
//! holds only hand-overs whose callback still waits: one that timed out is
//! dropped at the next frame, so a client that never acks cannot grow it
//! past the node's concurrency, and its late ack finds nothing to settle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket};
use chronica::{AsyncNode, Batch, BoxFuture, Director, Error as EngineError, NodeError, SendResult};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::cutoff::CutWatch;
use crate::wire::encode_batch;

/// The channel an ack (or a nack's reason) goes back on.
type AckTx = oneshot::Sender<Result<(), String>>;

/// One frame for the socket task, with the channel its ack goes back on.
#[derive(Debug)]
struct Outbound {
    seq: u64,
    body: String,
    ack: AckTx,
}

/// The socket task's hand-overs awaiting an ack, by `seq`. Owned by that
/// task alone.
#[derive(Debug, Default)]
struct Waiting(HashMap<u64, AckTx>);

impl Waiting {
    /// Records hand-over `seq`, first forgetting those whose callback gave
    /// up (ack timeout): the engine retries such a batch under a new `seq`,
    /// so keeping them would add an entry per retry, forever, for a client
    /// that reads but never acks.
    fn insert(&mut self, seq: u64, ack: AckTx) {
        self.0.retain(|_, a| !a.is_closed());
        self.0.insert(seq, ack);
    }

    /// Answers hand-over `seq`; an unknown or abandoned one is ignored.
    fn settle(&mut self, seq: u64, answer: Result<(), String>) {
        if let Some(ack) = self.0.remove(&seq) {
            // The callback may have timed out since; then nobody listens.
            let _ = ack.send(answer);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

#[derive(Debug)]
struct Attached {
    id: u64,
    tx: mpsc::Sender<Outbound>,
}

/// The meeting point of a streaming node's callback and its current socket.
#[derive(Debug, Default)]
pub(crate) struct StreamSlot {
    current: Mutex<Option<Attached>>,
    next_seq: AtomicU64,
    next_conn: AtomicU64,
}

impl StreamSlot {
    fn attach(&self, tx: mpsc::Sender<Outbound>) -> u64 {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
        *self.current.lock() = Some(Attached { id, tx });
        id
    }

    /// Detaches connection `id` if it is still the current one.
    fn detach(&self, id: u64) -> bool {
        let mut cur = self.current.lock();
        if cur.as_ref().is_some_and(|a| a.id == id) {
            *cur = None;
            true
        } else {
            false
        }
    }

    /// Drops the current connection (at unregister): its socket task ends.
    pub(crate) fn close(&self) {
        self.current.lock().take();
    }

    /// True while a socket is attached.
    pub(crate) fn is_attached(&self) -> bool {
        self.current.lock().is_some()
    }
}

/// The async node that sends batches to a streaming node's socket.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) uid: Arc<str>,
    pub(crate) slot: Arc<StreamSlot>,
    pub(crate) ack_timeout: Duration,
    /// Ends a send still waiting for its ack at the end of the shutdown's
    /// drain.
    pub(crate) cut: CutWatch,
}

impl Stream {
    async fn deliver(&self, batch: &Batch) -> SendResult {
        let tx = self.slot.current.lock().as_ref().map(|a| a.tx.clone());
        let tx = tx.ok_or_else(|| NodeError::new("stream not connected"))?;
        let seq = self.slot.next_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let body = String::from_utf8(encode_batch(&self.uid, batch, Some(seq)))
            .map_err(|e| NodeError::new(format!("batch encoding: {e}")))?;
        hand_over(tx, seq, body, self.ack_timeout).await
    }
}

/// Hands frame `seq` to the socket task and waits for its ack, all within
/// `ack_timeout`: a client that stops reading fills the channel, and the
/// callback must not wait for room forever.
async fn hand_over(tx: mpsc::Sender<Outbound>, seq: u64, body: String, ack_timeout: Duration) -> SendResult {
    let exchange = async move {
        let (ack, answer) = oneshot::channel();
        if tx.send(Outbound { seq, body, ack }).await.is_err() {
            return Err(NodeError::new("stream closed before the batch was sent"));
        }
        // The socket task ends when the slot lets go of its sender (an
        // unregister) and no callback holds one: a sender kept while the
        // ack is awaited kept the channel, and so the socket and this
        // wait, open until the ack timeout.
        drop(tx);
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(NodeError::new(format!("stream nack: {why}"))),
            Err(_) => Err(NodeError::new("stream closed before the batch was acknowledged")),
        }
    };
    // `timeout` saturates a huge `--ack-timeout-ms` itself.
    tokio::time::timeout(ack_timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(NodeError::new(format!("no ack within {ack_timeout:?}"))))
}

impl AsyncNode for Stream {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, SendResult> {
        Box::pin(self.cut.race(self.deliver(batch)))
    }
}

/// What a streaming client sends back.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Reply {
    Ack { seq: u64 },
    Nack { seq: u64, error: Option<String> },
}

/// Runs one socket of streaming node `uid` until it closes or is replaced,
/// or until one write takes longer than `write_timeout` (a client that
/// stopped reading): then the socket is dropped and the node disconnected.
pub(crate) async fn run_socket(
    socket: WebSocket,
    uid: Arc<str>,
    slot: Arc<StreamSlot>,
    director: Director,
    write_timeout: Duration,
) {
    let (tx, mut rx) = mpsc::channel::<Outbound>(16);
    let conn = slot.attach(tx);
    report(&uid, "connect", director.node_connected(&uid));
    tracing::info!(node = %uid, conn, "stream connected");
    let (mut sink, mut source) = socket.split();
    let mut waiting = Waiting::default();
    let why = loop {
        tokio::select! {
            out = rx.recv() => match out {
                // Its callback timed out while the frame queued: the engine
                // retries the batch under a new seq, so do not send it twice.
                Some(o) if o.ack.is_closed() => {}
                Some(o) => {
                    waiting.insert(o.seq, o.ack);
                    match tokio::time::timeout(write_timeout, sink.send(WsMessage::Text(o.body.into()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break format!("send failed: {e}"),
                        Err(_) => break format!("send took longer than {write_timeout:?}"),
                    }
                }
                None => break "replaced or unregistered".to_string(),
            },
            msg = source.next() => match msg {
                Some(Ok(WsMessage::Text(text))) => match serde_json::from_str::<Reply>(&text) {
                    Ok(Reply::Ack { seq }) => waiting.settle(seq, Ok(())),
                    Ok(Reply::Nack { seq, error }) => {
                        waiting.settle(seq, Err(error.unwrap_or_else(|| "refused".into())));
                    }
                    Err(e) => tracing::warn!(node = %uid, "ignored stream reply: {e}"),
                },
                Some(Ok(WsMessage::Close(_))) | None => break "closed by the client".to_string(),
                Some(Ok(_)) => {}
                Some(Err(e)) => break format!("receive failed: {e}"),
            },
        }
    };
    // Dropping `waiting` fails every callback still waiting for an ack.
    drop(waiting);
    // The close frame may not fit either when the client stopped reading.
    let _ = tokio::time::timeout(write_timeout, sink.close()).await;
    drop(sink);
    drop(source);
    tracing::info!(node = %uid, conn, "stream ended: {why}");
    if slot.detach(conn) {
        report(&uid, "disconnect", director.node_disconnected(&uid));
        // A socket that attached in between already marked the node
        // connected; say so again so our disconnect does not win.
        if slot.is_attached() {
            report(&uid, "connect", director.node_connected(&uid));
        }
    }
}

fn report(uid: &str, what: &str, r: chronica::Result<()>) {
    match r {
        Ok(()) | Err(EngineError::UnknownNode(_)) | Err(EngineError::Closed) => {}
        Err(e) => tracing::error!(node = %uid, "stream {what}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hand_over_gives_up_on_a_full_channel_within_the_ack_timeout() {
        // A socket task stuck writing to a client that stopped reading:
        // nobody drains the channel.
        let (tx, mut rx) = mpsc::channel::<Outbound>(1);
        let (ack, _answer) = oneshot::channel();
        tx.send(Outbound { seq: 1, body: String::new(), ack }).await.unwrap();
        // The outer bound only turns a hang into a failure.
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            hand_over(tx.clone(), 2, String::new(), Duration::from_millis(100)),
        )
        .await
        .expect("hand_over waited past the ack timeout");
        assert!(r.unwrap_err().to_string().contains("no ack within"));
        // Acked in time: Ok.
        drop(rx.recv().await);
        let waiter = tokio::spawn(async move {
            let o = rx.recv().await.unwrap();
            let _ = o.ack.send(Ok(()));
        });
        hand_over(tx.clone(), 3, String::new(), Duration::from_secs(5)).await.unwrap();
        waiter.await.unwrap();
    }

    #[tokio::test]
    async fn a_client_that_never_acks_does_not_grow_the_waiting_table() {
        // The socket task's side of a client that reads every frame but
        // never acks: each hand-over times out, and the engine retries the
        // batch under a new seq.
        let (tx, mut rx) = mpsc::channel::<Outbound>(16);
        let mut waiting = Waiting::default();
        for seq in 1..=20 {
            let (r, ()) =
                tokio::join!(hand_over(tx.clone(), seq, String::new(), Duration::from_millis(10)), async {
                    let o = rx.recv().await.unwrap();
                    waiting.insert(o.seq, o.ack);
                });
            assert!(r.unwrap_err().to_string().contains("no ack within"));
            // Only the latest hand-over may linger, until the next frame.
            assert_eq!(waiting.len(), 1, "after hand-over {seq}");
        }
        // Late acks of abandoned batches are harmless.
        waiting.settle(3, Ok(()));
        waiting.settle(20, Ok(()));
        assert_eq!(waiting.len(), 0);
        // A hand-over that is still waiting gets its ack.
        let (r, ()) =
            tokio::join!(hand_over(tx.clone(), 21, String::new(), Duration::from_secs(30)), async {
                let o = rx.recv().await.unwrap();
                waiting.insert(o.seq, o.ack);
                waiting.settle(21, Ok(()));
            });
        r.unwrap();
    }

    #[tokio::test]
    async fn a_frame_whose_callback_gave_up_while_queued_is_recognised() {
        let (tx, mut rx) = mpsc::channel::<Outbound>(1);
        let r = hand_over(tx.clone(), 1, String::new(), Duration::from_millis(10)).await;
        assert!(r.is_err());
        // The socket task skips such a frame instead of sending it.
        assert!(rx.recv().await.unwrap().ack.is_closed());
    }
}
