//! Subscription options: consumer group, concurrency, buffer, retry with a
//! backoff shape, and a per-event dead-letter handler. Every option is
//! checked when `on` is called; a refused subscription registers nothing.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::NodeError;
use crate::event::Event;
use crate::fiber::retry::{Backoff, RetryPolicy};
use crate::topic::Pattern;
use crate::{Error, NodeOptions, Result, MAX_CONCURRENCY};

/// A subscription's retry settings. Converted to the engine's
/// [`RetryPolicy`]; jitter spreads each delay by `±jitter` (relative).
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// Re-attempts before an event goes to the dead-letter handler; `None`
    /// retries forever.
    pub max_retries: Option<u32>,
    /// Shape of the delays.
    pub backoff: Backoff,
    /// Delay before the first re-attempt (default 100 ms); above zero, as
    /// [`RetryPolicy`] requires (zero would retry in a busy loop).
    pub initial_delay: Duration,
    /// Largest delay (default 5 s).
    pub max_delay: Duration,
    /// Growth factor of exponential backoff, at least 1 (default 2).
    pub multiplier: f64,
    /// Relative random spread, 0 to 1 (default 0.1).
    pub jitter: f64,
}

impl Default for Retry {
    fn default() -> Self {
        let p = RetryPolicy::default();
        Self {
            max_retries: p.max_retries,
            backoff: Backoff::Exponential,
            initial_delay: p.initial_delay,
            max_delay: p.max_delay,
            multiplier: p.multiplier,
            jitter: p.jitter,
        }
    }
}

impl Retry {
    /// Constant backoff: every re-attempt waits `delay` (above zero, else
    /// `on` refuses the subscription); at most `max_retries`.
    pub fn constant(delay: Duration, max_retries: Option<u32>) -> Self {
        Self {
            backoff: Backoff::Constant,
            initial_delay: delay,
            max_delay: delay,
            max_retries,
            ..Self::default()
        }
    }

    /// The engine policy for these settings, or why they are refused.
    pub fn to_policy(&self) -> Result<RetryPolicy> {
        let policy = RetryPolicy {
            backoff: self.backoff,
            initial_delay: self.initial_delay,
            multiplier: self.multiplier,
            max_delay: self.max_delay,
            jitter: self.jitter,
            max_retries: self.max_retries,
        };
        policy.validate()?;
        Ok(policy)
    }
}

/// Called once per event given up on after `max_retries`, with the last
/// failure, on the subscription's delivery thread.
pub type DeadLetterHandler = Arc<dyn Fn(&Event, &NodeError) + Send + Sync>;

/// Options of one subscription. `SubscribeOptions::default()` is: no group,
/// concurrency 1, the director's lane capacity and retry policy, no
/// dead-letter handler (dead letters then go to the director's hook).
#[derive(Clone)]
pub struct SubscribeOptions {
    /// Consumer group: subscriptions sharing it receive each event once
    /// between them (by key hash when the event has a key).
    pub group: Option<String>,
    /// Parallel handler calls, 1 to 64; above 1, order holds per key.
    pub concurrency: usize,
    /// Lane capacity in events (the subscription's buffer).
    pub buffer: Option<usize>,
    /// Retry settings; `None` takes the director's policy.
    pub retry: Option<Retry>,
    /// Receives each event given up on after `max_retries`.
    pub dead_letter: Option<DeadLetterHandler>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self { group: None, concurrency: 1, buffer: None, retry: None, dead_letter: None }
    }
}

impl fmt::Debug for SubscribeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscribeOptions")
            .field("group", &self.group)
            .field("concurrency", &self.concurrency)
            .field("buffer", &self.buffer)
            .field("retry", &self.retry)
            .field("dead_letter", &self.dead_letter.is_some())
            .finish()
    }
}

impl SubscribeOptions {
    /// Sets the consumer group.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
    /// Sets the number of parallel handler calls.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// Sets the lane capacity.
    pub fn buffer(mut self, n: usize) -> Self {
        self.buffer = Some(n);
        self
    }
    /// Sets the retry settings.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = Some(retry);
        self
    }
    /// Sets the dead-letter handler.
    pub fn dead_letter(mut self, handler: impl Fn(&Event, &NodeError) + Send + Sync + 'static) -> Self {
        self.dead_letter = Some(Arc::new(handler));
        self
    }

    /// Checks every option and builds the node options (without the
    /// dead-letter hook, which the bus wraps).
    pub(crate) fn node_options(&self, topic: &str) -> Result<NodeOptions> {
        Pattern::new(topic)?;
        let bad = |why: String| Err(Error::InvalidArgument(why));
        if self.group.as_deref() == Some("") {
            return bad("group must not be empty".into());
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return bad(format!("concurrency must be 1 to {MAX_CONCURRENCY}, got {}", self.concurrency));
        }
        if let Some(buffer) = self.buffer {
            if buffer < self.concurrency {
                return bad(format!(
                    "buffer must be at least the concurrency ({}), got {buffer}",
                    self.concurrency
                ));
            }
            // Checked here too so the refusal names this option, not the
            // engine's `queue_capacity`.
            if buffer > crate::MAX_CAPACITY {
                return bad(format!("buffer must be at most {}, got {buffer}", crate::MAX_CAPACITY));
            }
        }
        let mut opts = NodeOptions::default().topic(topic).concurrency(self.concurrency);
        opts.group = self.group.clone();
        opts.queue_capacity = self.buffer;
        opts.retry = self.retry.as_ref().map(Retry::to_policy).transpose()?;
        Ok(opts)
    }
}
