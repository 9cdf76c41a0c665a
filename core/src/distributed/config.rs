//! Settings of the distributed layer.

use std::time::Duration;

use crate::mq::{MqError, MqResult};

/// When a received broker message is acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AckMode {
    /// Once the local fibers accepted the event (the default).
    #[default]
    Enqueue,
    /// Once every local target finished with it (delivered, or dropped /
    /// dead-lettered by its policy), and never before a message the same
    /// subscription received earlier.
    Delivery,
}

impl std::str::FromStr for AckMode {
    type Err = MqError;
    fn from_str(s: &str) -> MqResult<Self> {
        match s {
            "enqueue" => Ok(AckMode::Enqueue),
            "delivery" => Ok(AckMode::Delivery),
            other => {
                Err(MqError::Config(format!("ack_mode {other:?} is neither \"enqueue\" nor \"delivery\"")))
            }
        }
    }
}

/// How a director joins a fabric of instances through a broker.
#[derive(Debug, Clone)]
pub struct DistributedConfig {
    /// This process's name on the fabric, unique among the instances
    /// (default: `HOSTNAME-PID-RANDOM`, drawn by `default()`). It is also
    /// its broadcast group. A cloned config keeps it: give each instance
    /// its own, or each takes the others' events for its own echoes and
    /// drops them.
    pub instance_id: String,
    /// The broker topic the instances share; dead letters go to
    /// `PREFIX.dlq` (default `chronica`).
    pub topic_prefix: String,
    /// Content type stamped on emits that carry none (the serializer's,
    /// for example `application/json`); passed through untouched.
    pub content_type: Option<String>,
    /// When to acknowledge received messages (default [`AckMode::Enqueue`]).
    pub ack_mode: AckMode,
    /// How long an (origin, id) is remembered to drop duplicates (default 5 min).
    pub dedup_window: Duration,
    /// Most ids remembered per subscription (default 1,000,000), kept as
    /// bitmaps over chunks of 4,096 consecutive ids of one origin: the
    /// default costs at most about 128 KiB.
    pub dedup_capacity: usize,
    /// Emits waiting for the publisher while the broker is away; beyond it
    /// the oldest waiting are dropped and counted (default 65,536). The
    /// batch being published, up to `max_in_flight` more, is kept whole.
    pub outbox_capacity: usize,
    /// Events handed to the broker and not yet confirmed, at most (default
    /// 4,096): the largest batch the publisher hands the adapter (one
    /// batch at a time, so events reach the broker in emit order).
    pub max_in_flight: usize,
    /// Further broker topics whose messages (from foreign producers) are
    /// taken as plain events on the topic of that name: exact names (1 to
    /// 200 of `[A-Za-z0-9._-]`), each once, neither `topic_prefix` nor its
    /// dead-letter topic.
    pub foreign_topics: Vec<String>,
    /// Longest wait for the broker at construction, and for the adapter's
    /// answer to a `subscribe`, an acknowledgement or a release later on
    /// (default 10 s).
    pub connect_timeout: Duration,
    /// Replay protection for root events (default `None`: off). A root
    /// event whose signed `chronica-ts` is further than this from this
    /// instance's clock, in the past or the future, is rejected and counted
    /// (`rejected_stale`). Signatures stop forgeries but not a captured root
    /// event published again; de-duplication stops that only within
    /// `dedup_window` and only at instances that saw the original. Set it
    /// above the clock skew between hosts plus the longest time a root
    /// event may wait in the outbox or the broker: an instance that reads a
    /// backlog older than it (after being down that long) rejects the
    /// backlog's root events.
    pub root_max_age: Option<Duration>,
    /// How often the instance looks again at the consumer groups of the
    /// nodes registered on the director directly, joining theirs and
    /// leaving those with no member here (default 250 ms). A registration
    /// or unregistration is acted on at once; the period retries a join
    /// that failed.
    pub group_watch_interval: Duration,
}

impl Default for DistributedConfig {
    fn default() -> Self {
        Self {
            instance_id: default_instance_id(),
            topic_prefix: "chronica".into(),
            content_type: None,
            ack_mode: AckMode::Enqueue,
            dedup_window: Duration::from_secs(300),
            dedup_capacity: 1_000_000,
            outbox_capacity: 65_536,
            max_in_flight: 4_096,
            foreign_topics: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            root_max_age: None,
            group_watch_interval: Duration::from_millis(250),
        }
    }
}

fn default_instance_id() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "host".into());
    // `RandomState` is keyed from the OS once per thread and steps on each
    // `new`: two defaults drawn in the same nanosecond differ too.
    let random =
        std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8) as u32;
    format!("{host}-{}-{random:08x}", std::process::id())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl DistributedConfig {
    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> MqResult<()> {
        if !valid_name(&self.instance_id) {
            return Err(MqError::Config(format!(
                "instance_id {:?} must be 1 to 200 of [A-Za-z0-9._-]",
                self.instance_id
            )));
        }
        if !valid_name(&self.topic_prefix)
            || self.topic_prefix.starts_with('.')
            || self.topic_prefix.ends_with('.')
        {
            return Err(MqError::Config(format!(
                "topic_prefix {:?} must be 1 to 200 of [A-Za-z0-9._-], not starting or ending with '.'",
                self.topic_prefix
            )));
        }
        for (name, v) in [
            ("dedup_capacity", self.dedup_capacity),
            ("outbox_capacity", self.outbox_capacity),
            ("max_in_flight", self.max_in_flight),
        ] {
            if v == 0 {
                return Err(MqError::Config(format!("{name} must be at least 1")));
            }
        }
        if self.connect_timeout.is_zero() {
            return Err(MqError::Config("connect_timeout must be positive".into()));
        }
        if self.group_watch_interval.is_zero() {
            // Zero would look again in a busy loop.
            return Err(MqError::Config("group_watch_interval must be positive".into()));
        }
        if self.dedup_window.is_zero() {
            // Zero would forget every id at once: de-duplication silently off.
            return Err(MqError::Config("dedup_window must be positive".into()));
        }
        if self.root_max_age.is_some_and(|a| a.is_zero()) {
            // Zero would refuse every root event: no clocks agree that well.
            return Err(MqError::Config("root_max_age must be positive (or unset)".into()));
        }
        self.check_foreign_topics()?;
        if let Some(ct) = &self.content_type {
            super::wire::check_header_text("content_type", ct).map_err(MqError::Config)?;
        }
        Ok(())
    }

    /// Foreign topics are exact broker topic names, each read once, and
    /// never the fabric's own: the fabric topic would deliver every event
    /// twice (two subscriptions, two de-duplication states), and the
    /// dead-letter topic would dead-letter each malformed message again,
    /// forever. Wildcards are refused for the same reason (`>` matches
    /// both), and because Redis streams have exact names only.
    fn check_foreign_topics(&self) -> MqResult<()> {
        let dlq = self.dead_letter_topic();
        for (i, t) in self.foreign_topics.iter().enumerate() {
            let bad = if !valid_name(t) || t.starts_with('.') || t.ends_with('.') {
                "must be 1 to 200 of [A-Za-z0-9._-], not starting or ending with '.'"
            } else if *t == self.topic_prefix || *t == dlq {
                "is one of the fabric's own topics"
            } else if self.foreign_topics[..i].contains(t) {
                "is listed twice"
            } else {
                continue;
            };
            return Err(MqError::Config(format!("foreign topic {t:?} {bad}")));
        }
        Ok(())
    }

    /// The broker topic of dead letters.
    pub fn dead_letter_topic(&self) -> String {
        format!("{}.dlq", self.topic_prefix)
    }
}
