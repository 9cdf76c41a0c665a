//! Chronica: an embeddable event-distribution engine.
//!
//! A [`Director`] routes every emitted [`Event`] into one fiber per
//! receiving node: a bounded, ordered, batching queue with a priority lane
//! for root (control) events, retries on a timer, and isolation between
//! nodes. See `docs/ARCHITECTURE.md` for the data path.
//!
//! ```
//! use chronica::{Director, Message, NodeError, Batch};
//! use std::time::Duration;
//!
//! let director = Director::new()?;
//! director.register("printer", |batch: &Batch| -> Result<(), NodeError> {
//!     for e in batch.iter() { let _ = e.payload(); }
//!     Ok(())
//! })?;
//! director.emit(Message::new("greetings", "hello"))?;
//! let undelivered = director.close(Duration::from_secs(1))?;
//! assert_eq!(undelivered, 0);
//! # Ok::<(), chronica::Error>(())
//! ```
// No unsafe code but one audited call, `pthread_atfork` in `fork.rs`.
#![deny(unsafe_code)]

mod bus;
mod copy;
mod director;
pub mod distributed;
mod error;
mod event;
mod fiber;
mod fork;
mod hooks;
pub mod mq;
mod node;
mod serializer;
mod stats;
mod time;
mod topic;

pub use bus::{
    decode, DeadLetterHandler, DecodeError, EventBus, EventExt, EventHandler, Retry, SubscribeOptions,
    Subscription, DEFAULT_DRAIN_TIMEOUT,
};
// The bus's subscription list, for the Python binding's bus: not a stable API.
#[doc(hidden)]
pub use bus::{ListEntry, Listing, SubscriptionList, Taken};
#[doc(hidden)]
pub use copy::copy_bytes;
#[doc(hidden)]
pub use director::Registration;
pub use director::{
    Director, DirectorBuilder, NodeOptions, NodeSettings, MAX_CONCURRENCY, MAX_WORKER_THREADS,
};
pub use distributed::{AckMode, Distributed, DistributedConfig, DistributedStats};
pub use error::{Error, NodeError, Result};
pub use event::{
    Batch, Event, EventKind, Extension, Message, RootEvent, LAGGED, NODE_JOINED, NODE_LEFT,
    PULL_CURRENT_STATE,
};
pub use fiber::drain_end::drain_deadline_passed;
pub use fiber::inbox::MAX_CAPACITY;
pub use fiber::lane::Overflow;
pub use fiber::retry::{Backoff, RetryPolicy};
pub use hooks::{DeadLetter, DeadLetterHook, DropReason, DropReport};
pub use node::{async_node, AsyncNode, BoxFuture, Node, Refused, SendResult};
pub use serializer::{
    Json, MessagePack, Serializer, SerializerError, JSON_CONTENT_TYPE, MSGPACK_CONTENT_TYPE,
};
pub use stats::NodeStats;
pub use topic::Pattern;

/// Re-exported so hosts can build payloads without naming the crate.
pub use bytes::Bytes;
