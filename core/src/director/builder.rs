//! Director settings and the builder that validates them.

use std::sync::Arc;
use std::time::Duration;

use crate::director::Director;
use crate::error::NodeError;
use crate::fiber::inbox::MAX_CAPACITY;
use crate::fiber::lane::Overflow;
use crate::fiber::retry::RetryPolicy;
use crate::hooks::{DeadLetter, DeadLetterHook, DropReport, Hooks};
use crate::{Error, Result};

/// Validated director-wide settings.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) queue_capacity: usize,
    pub(crate) root_capacity: usize,
    pub(crate) batch_size: usize,
    pub(crate) overflow: Overflow,
    pub(crate) block_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) trust_token: Arc<str>,
    pub(crate) membership_events: bool,
    pub(crate) worker_threads: usize,
    pub(crate) runtime: Option<tokio::runtime::Handle>,
    pub(crate) hooks: Hooks,
}

/// Builds a [`Director`]. Every setting has the SPEC's default.
#[derive(Debug, Clone)]
pub struct DirectorBuilder {
    cfg: Config,
}

impl Default for DirectorBuilder {
    fn default() -> Self {
        Self {
            cfg: Config {
                queue_capacity: 65_536,
                root_capacity: 1_024,
                batch_size: 64,
                overflow: Overflow::DropOldest,
                block_timeout: Duration::from_secs(1),
                retry: RetryPolicy::default(),
                trust_token: "".into(),
                membership_events: false,
                worker_threads: 2,
                runtime: None,
                hooks: Hooks::default(),
            },
        }
    }
}

impl DirectorBuilder {
    /// Capacity of each node's user lane, in events: 1 to
    /// [`MAX_CAPACITY`](crate::MAX_CAPACITY) (default 65,536).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.cfg.queue_capacity = n;
        self
    }
    /// Capacity of each node's root (control) lane, in events: 1 to
    /// [`MAX_CAPACITY`](crate::MAX_CAPACITY) (default 1,024).
    pub fn root_capacity(mut self, n: usize) -> Self {
        self.cfg.root_capacity = n;
        self
    }
    /// Most events handed to one callback call (default 64).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.cfg.batch_size = n;
        self
    }
    /// What a full user lane does (default [`Overflow::DropOldest`]).
    pub fn overflow(mut self, policy: Overflow) -> Self {
        self.cfg.overflow = policy;
        self
    }
    /// How long an emitter waits under [`Overflow::Block`] (default 1 s).
    pub fn block_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.block_timeout = timeout;
        self
    }
    /// The default retry policy of every node.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.cfg.retry = policy;
        self
    }
    /// The token carried by every root event (default empty).
    pub fn trust_token(mut self, token: impl Into<String>) -> Self {
        self.cfg.trust_token = token.into().into();
        self
    }
    /// Send `chronica.node_joined` / `chronica.node_left` to the other
    /// nodes (default off); each node receives them in the order of the
    /// membership changes.
    pub fn membership_events(mut self, on: bool) -> Self {
        self.cfg.membership_events = on;
        self
    }
    /// Threads of the runtime the director creates for async nodes (default
    /// 2, at most [`MAX_WORKER_THREADS`]). The runtime is created on the
    /// first async registration.
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.cfg.worker_threads = n;
        self
    }
    /// Runs async nodes on the caller's runtime instead of an owned one.
    ///
    /// The director then lives with that runtime's lifetime:
    /// * A runtime that shuts down (or is dropped, as at the end of a
    ///   `#[tokio::test]`) while the director is open drops the async
    ///   nodes' tasks, and so their workers: each node value is dropped,
    ///   its events stay pending (the batch of a call cut short included),
    ///   [`close`](crate::Director::close) reports them as undelivered and
    ///   [`unregister`](crate::Director::unregister) hands them to the
    ///   group or drops and reports them. A later `register_async` is
    ///   refused with [`Error::Resource`](crate::Error::Resource).
    /// * A current-thread runtime runs the nodes' tasks only on the thread
    ///   inside its `block_on` (a `#[tokio::test]` body and its tasks), so
    ///   there nothing may wait for them: `close` is refused with
    ///   [`Error::Reentrant`](crate::Error::Reentrant) while an async node
    ///   is running (call it through `tokio::task::spawn_blocking`, or drop
    ///   the director: it then closes on a thread of its own), and
    ///   `unregister` returns without waiting, the node stopping once the
    ///   runtime next runs its tasks.
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.cfg.runtime = Some(handle);
        self
    }
    /// Called for every dropped event, on the thread that dropped it.
    pub fn on_drop(mut self, hook: impl Fn(&DropReport<'_>) + Send + Sync + 'static) -> Self {
        self.cfg.hooks.on_drop = Some(Arc::new(hook));
        self
    }
    /// Called for every batch given up after `max_retries`.
    pub fn on_dead_letter(mut self, hook: impl Fn(&DeadLetter<'_>) + Send + Sync + 'static) -> Self {
        self.cfg.hooks.on_dead_letter = Some(Arc::new(hook));
        self
    }
    /// Called for every failed callback call, with the node's uid.
    pub fn on_error(mut self, hook: impl Fn(&str, &NodeError) + Send + Sync + 'static) -> Self {
        self.cfg.hooks.on_error = Some(Arc::new(hook));
        self
    }

    /// Validates the settings and starts the director.
    pub fn build(self) -> Result<Director> {
        let c = &self.cfg;
        for (name, v) in [
            ("queue_capacity", c.queue_capacity),
            ("root_capacity", c.root_capacity),
            ("batch_size", c.batch_size),
            ("worker_threads", c.worker_threads),
        ] {
            if v == 0 {
                return Err(Error::InvalidArgument(format!("{name} must be at least 1")));
            }
        }
        for (name, v, max) in [
            ("queue_capacity", c.queue_capacity, MAX_CAPACITY),
            ("root_capacity", c.root_capacity, MAX_CAPACITY),
            ("worker_threads", c.worker_threads, MAX_WORKER_THREADS),
        ] {
            if v > max {
                return Err(Error::InvalidArgument(format!("{name} must be at most {max}")));
            }
        }
        c.retry.validate()?;
        Ok(Director::start(self.cfg))
    }
}

/// The most threads [`DirectorBuilder::worker_threads`] takes: the runtime
/// starts them all at the first async registration, and tokio failed that
/// registration with a panic for `usize::MAX` (a larger count is a
/// mistake to refuse at `build`, not a runtime to attempt).
pub const MAX_WORKER_THREADS: usize = 1024;

/// The most parallel callback calls one node (or bus subscription) may ask
/// for.
pub const MAX_CONCURRENCY: usize = 64;

/// Per-node registration settings; unset fields take the director's.
#[derive(Clone)]
pub struct NodeOptions {
    /// Topic patterns; empty means every topic.
    pub topics: Vec<String>,
    /// Consumer group: members share each matching event.
    pub group: Option<String>,
    /// Parallel callback calls (default 1); order then holds per key.
    pub concurrency: usize,
    /// Start connected (default true); a disconnected node holds events.
    pub connected: bool,
    /// Retry policy of this node.
    pub retry: Option<RetryPolicy>,
    /// User lane capacity of this node (1 to [`MAX_CAPACITY`](crate::MAX_CAPACITY)).
    pub queue_capacity: Option<usize>,
    /// Root lane capacity of this node (1 to [`MAX_CAPACITY`](crate::MAX_CAPACITY)).
    pub root_capacity: Option<usize>,
    /// Overflow policy of this node.
    pub overflow: Option<Overflow>,
    /// Dead-letter hook of this node, called instead of the director's.
    pub on_dead_letter: Option<DeadLetterHook>,
}

impl std::fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("topics", &self.topics)
            .field("group", &self.group)
            .field("concurrency", &self.concurrency)
            .field("connected", &self.connected)
            .field("retry", &self.retry)
            .field("queue_capacity", &self.queue_capacity)
            .field("root_capacity", &self.root_capacity)
            .field("overflow", &self.overflow)
            .field("on_dead_letter", &self.on_dead_letter.is_some())
            .finish()
    }
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            topics: Vec::new(),
            group: None,
            concurrency: 1,
            connected: true,
            retry: None,
            queue_capacity: None,
            root_capacity: None,
            overflow: None,
            on_dead_letter: None,
        }
    }
}

impl NodeOptions {
    /// Adds a topic pattern.
    pub fn topic(mut self, pattern: impl Into<String>) -> Self {
        self.topics.push(pattern.into());
        self
    }
    /// Sets the consumer group.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
    /// Sets the number of parallel callback calls.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// Starts the node connected or not.
    pub fn connected(mut self, on: bool) -> Self {
        self.connected = on;
        self
    }
    /// Sets this node's retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }
    /// Sets this node's user lane capacity.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = Some(n);
        self
    }
    /// Sets this node's root lane capacity.
    pub fn root_capacity(mut self, n: usize) -> Self {
        self.root_capacity = Some(n);
        self
    }
    /// Sends this node's dead letters to `hook` instead of the director's.
    pub fn on_dead_letter(mut self, hook: impl Fn(&DeadLetter<'_>) + Send + Sync + 'static) -> Self {
        self.on_dead_letter = Some(Arc::new(hook));
        self
    }
    /// Sets this node's overflow policy.
    pub fn overflow(mut self, policy: Overflow) -> Self {
        self.overflow = Some(policy);
        self
    }
}
