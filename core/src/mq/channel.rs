//! A subscription stream fed through a channel, for adapters whose client
//! delivers from its own callbacks or threads (the C and Python adapters).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;

use super::{Message, MqResult};

/// Messages one subscription of an adapter written in a host language (C,
/// Python) holds delivered but not yet read by the distributed layer; its
/// `deliver` refuses more (taking nothing) until the layer reads some, so a
/// client delivering faster than the layer can take cannot fill memory.
pub const SUBSCRIPTION_CAPACITY: usize = 65_536;

/// What is left unread when the stream is dropped, handed to the adapter.
type Unread = Box<dyn FnOnce(Vec<Message>) + Send>;

/// The messages a channel delivers, in order. When the layer drops the
/// stream (leaving the subscription's group, or closing), the channel
/// closes, so senders learn the subscription ended, and the messages still
/// unread go to `unread`, which hands them back to the broker (never
/// acknowledged, so never lost to the group). `unread` runs on a blocking
/// thread of the current tokio runtime (inline outside one), since it
/// calls into the adapter's client, which may block.
pub struct ChannelStream {
    rx: mpsc::Receiver<Message>,
    unread: Option<Unread>,
}

impl ChannelStream {
    /// Reads a bounded channel (of [`SUBSCRIPTION_CAPACITY`] for a host
    /// adapter's subscription).
    pub fn bounded(rx: mpsc::Receiver<Message>, unread: impl FnOnce(Vec<Message>) + Send + 'static) -> Self {
        Self { rx, unread: Some(Box::new(unread)) }
    }
}

impl std::fmt::Debug for ChannelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelStream").finish_non_exhaustive()
    }
}

impl Stream for ChannelStream {
    type Item = MqResult<Message>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl Drop for ChannelStream {
    fn drop(&mut self) {
        self.rx.close();
        let left: Vec<Message> = std::iter::from_fn(|| self.rx.try_recv().ok()).collect();
        let (Some(unread), false) = (self.unread.take(), left.is_empty()) else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || unread(left))),
            Err(_) => unread(left),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::{Arc, Mutex};

    #[test]
    fn unread_messages_are_handed_back_once_the_stream_is_dropped() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (tx, rx) = mpsc::channel(8);
        let back = Arc::new(Mutex::new(Vec::new()));
        let b = back.clone();
        let mut s = ChannelStream::bounded(rx, move |m| b.lock().unwrap().extend(m));
        for v in ["a", "b", "c"] {
            tx.try_send(Message::new(v)).unwrap();
        }
        let first = rt.block_on(s.next()).unwrap().unwrap();
        assert_eq!(&first.value[..], b"a");
        drop(s);
        let left: Vec<_> = back.lock().unwrap().iter().map(|m| m.value.clone()).collect();
        assert_eq!(left, vec![&b"b"[..], &b"c"[..]]);
        assert!(tx.try_send(Message::new("d")).is_err(), "the channel closed with the stream");
    }
}
