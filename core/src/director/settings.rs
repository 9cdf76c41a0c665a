//! The settings a registered node runs with.

use crate::fiber::lane::Overflow;
use crate::fiber::retry::RetryPolicy;

/// The effective settings of a registered node, as its fiber was built:
/// each is the node's own ([`NodeOptions`](crate::NodeOptions)) or, where
/// it gave none, the director's. Read from the fiber itself, so it is what
/// the engine applies, not a record that could disagree with it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NodeSettings {
    /// Capacity of the node's user lanes together, in events.
    pub queue_capacity: usize,
    /// Capacity of the node's root (control) lane, in events.
    pub root_capacity: usize,
    /// What a full user lane does.
    pub overflow: Overflow,
    /// How a failed batch is retried.
    pub retry: RetryPolicy,
    /// Parallel callback calls.
    pub concurrency: usize,
}
