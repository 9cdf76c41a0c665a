//! The overflow and retry settings, as the hub-wide flags and a node's
//! registration body (`overflow`, `retry`) spell them.
//!
//! Both go through these functions, so a value means one thing and is
//! refused with one message wherever it is written; a node's view shows
//! the settings it runs with in the same spelling ([`SettingsOut`]). `max_retries` 0 means
//! unlimited everywhere in the hub, as `--retry-max-retries 0` always has
//! (and as in C); no re-attempt at all is `retry = false` (flag, TOML) or
//! `"retry": false` (JSON). docs/DECISIONS.md says why.

use std::fmt;
use std::time::Duration;

use chronica::{Backoff, NodeSettings, Overflow, RetryPolicy};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Reads an overflow policy name (`--overflow`, a node's `overflow`).
pub(crate) fn overflow(name: &str) -> Result<Overflow, String> {
    match name {
        "drop_oldest" => Ok(Overflow::DropOldest),
        "drop_newest" => Ok(Overflow::DropNewest),
        "block" => Ok(Overflow::Block),
        other => Err(format!("overflow {other:?}: expected drop_oldest, drop_newest or block")),
    }
}

/// The name [`overflow`] reads as `policy`.
pub(crate) fn overflow_name(policy: Overflow) -> &'static str {
    match policy {
        Overflow::DropOldest => "drop_oldest",
        Overflow::DropNewest => "drop_newest",
        Overflow::Block => "block",
    }
}

/// The name [`backoff`] reads as `shape`.
pub(crate) fn backoff_name(shape: Backoff) -> &'static str {
    match shape {
        Backoff::Exponential => "exponential",
        Backoff::Linear => "linear",
        Backoff::Constant => "constant",
    }
}

/// Reads a backoff shape name (`--retry-backoff`, a node's `retry.backoff`).
pub(crate) fn backoff(name: &str) -> Result<Backoff, String> {
    match name {
        "exponential" => Ok(Backoff::Exponential),
        "linear" => Ok(Backoff::Linear),
        "constant" => Ok(Backoff::Constant),
        other => Err(format!("retry backoff {other:?}: expected exponential, linear or constant")),
    }
}

/// Retry settings, each optional: the `--retry-*` flags, or the fields of
/// a node's `retry` object (the flag names without `retry_`, same units).
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryIn {
    /// `exponential`, `linear` or `constant`.
    pub(crate) backoff: Option<String>,
    /// Delay before the first re-attempt, ms.
    pub(crate) initial_ms: Option<u64>,
    /// Upper bound of the delay, ms.
    pub(crate) max_ms: Option<u64>,
    /// Factor applied to the delay after each failure (exponential).
    pub(crate) multiplier: Option<f64>,
    /// Relative random spread of each delay, 0 to 1.
    pub(crate) jitter: Option<f64>,
    /// Re-attempts before a batch is dead-lettered; 0 = unlimited.
    pub(crate) max_retries: Option<u32>,
}

impl RetryIn {
    /// `base` with the settings given here in place of its own, checked
    /// as the engine checks a policy (the message names the policy).
    pub(crate) fn over(&self, base: &RetryPolicy) -> Result<RetryPolicy, String> {
        let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
        let policy = RetryPolicy {
            backoff: self.backoff.as_deref().map_or(Ok(base.backoff), backoff)?,
            initial_delay: ms(self.initial_ms, base.initial_delay),
            max_delay: ms(self.max_ms, base.max_delay),
            multiplier: self.multiplier.unwrap_or(base.multiplier),
            jitter: self.jitter.unwrap_or(base.jitter),
            // 0 is unlimited, as the flag has always read it.
            max_retries: match self.max_retries {
                Some(0) => None,
                Some(n) => Some(n),
                None => base.max_retries,
            },
        };
        policy.validate().map_err(|e| format!("retry policy: {e}"))?;
        Ok(policy)
    }
}

/// A node's `retry` in its registration: left out (or `null`, or `true`)
/// it is the hub's policy; an object changes the fields it names;
/// `false` means no re-attempt, a failed batch dead-lettered at once.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) enum NodeRetry {
    /// The hub's policy.
    #[default]
    Hub,
    /// The hub's policy with these settings in place of its own.
    Own(RetryIn),
    /// No re-attempt.
    Never,
}

impl NodeRetry {
    /// The node's policy, or `None` for the hub's.
    pub(crate) fn policy(&self, hub: &RetryPolicy) -> Result<Option<RetryPolicy>, String> {
        match self {
            NodeRetry::Hub => Ok(None),
            NodeRetry::Own(fields) => fields.over(hub).map(Some),
            NodeRetry::Never => Ok(Some(never(hub))),
        }
    }
}

/// `policy` without re-attempts: the first failure dead-letters the batch.
pub(crate) fn never(policy: &RetryPolicy) -> RetryPolicy {
    RetryPolicy { max_retries: Some(0), ..policy.clone() }
}

impl<'de> Deserialize<'de> for NodeRetry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Shape;
        impl<'de> Visitor<'de> for Shape {
            type Value = NodeRetry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of retry settings, or false for no re-attempt")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeRetry, E> {
                Ok(if v { NodeRetry::Hub } else { NodeRetry::Never })
            }

            fn visit_unit<E: de::Error>(self) -> Result<NodeRetry, E> {
                Ok(NodeRetry::Hub)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NodeRetry, A::Error> {
                RetryIn::deserialize(de::value::MapAccessDeserializer::new(map)).map(NodeRetry::Own)
            }
        }
        d.deserialize_any(Shape)
    }
}

/// The settings a node runs with, in a node's view: the engine's own
/// record of them (`Director::node_settings`), spelled as a registration
/// gives them, so that posting them back would register the same node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SettingsOut {
    queue_capacity: usize,
    root_capacity: usize,
    overflow: &'static str,
    retry: RetryOut,
}

/// A policy as a registration's `retry` spells it: `false` for no
/// re-attempt, else every field, `max_retries` 0 for unlimited.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
enum RetryOut {
    /// Always `false`.
    Never(bool),
    Policy {
        backoff: &'static str,
        initial_ms: u64,
        max_ms: u64,
        multiplier: f64,
        jitter: f64,
        max_retries: u32,
    },
}

impl From<NodeSettings> for SettingsOut {
    fn from(s: NodeSettings) -> Self {
        // Whole milliseconds: every delay the hub sets is given in them.
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let r = &s.retry;
        let retry = match r.max_retries {
            Some(0) => RetryOut::Never(false),
            n => RetryOut::Policy {
                backoff: backoff_name(r.backoff),
                initial_ms: ms(r.initial_delay),
                max_ms: ms(r.max_delay),
                multiplier: r.multiplier,
                jitter: r.jitter,
                max_retries: n.unwrap_or(0),
            },
        };
        SettingsOut {
            queue_capacity: s.queue_capacity,
            root_capacity: s.root_capacity,
            overflow: overflow_name(s.overflow),
            retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(json: &str) -> Result<NodeRetry, serde_json::Error> {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            retry: NodeRetry,
        }
        serde_json::from_str::<Body>(json).map(|b| b.retry)
    }

    #[test]
    fn names_read_as_the_flags_take_them() {
        assert_eq!(overflow("drop_newest"), Ok(Overflow::DropNewest));
        assert_eq!(overflow("block"), Ok(Overflow::Block));
        assert_eq!(
            overflow("Block").unwrap_err(),
            "overflow \"Block\": expected drop_oldest, drop_newest or block"
        );
        assert_eq!(backoff("linear"), Ok(Backoff::Linear));
        assert_eq!(backoff("constant"), Ok(Backoff::Constant));
        assert!(backoff("fibonacci").unwrap_err().contains("expected exponential, linear or constant"));
        for p in [Overflow::DropOldest, Overflow::DropNewest, Overflow::Block] {
            assert_eq!(overflow(overflow_name(p)), Ok(p));
        }
        for b in [Backoff::Exponential, Backoff::Linear, Backoff::Constant] {
            assert_eq!(backoff(backoff_name(b)), Ok(b));
        }
    }

    #[test]
    fn a_retry_object_changes_only_what_it_names() {
        let hub = RetryPolicy { max_retries: Some(7), ..RetryPolicy::default() };
        let own = node(r#"{"retry": {"initial_ms": 20, "backoff": "constant"}}"#).unwrap();
        let p = own.policy(&hub).unwrap().unwrap();
        assert_eq!((p.initial_delay, p.backoff), (Duration::from_millis(20), Backoff::Constant));
        assert_eq!((p.max_delay, p.max_retries), (hub.max_delay, Some(7)));
        assert_eq!(node("{}").unwrap().policy(&hub).unwrap(), None);
        assert_eq!(node(r#"{"retry": null}"#).unwrap(), NodeRetry::Hub);
        assert_eq!(node(r#"{"retry": true}"#).unwrap(), NodeRetry::Hub);
    }

    #[test]
    fn max_retries_zero_is_unlimited_and_false_is_no_re_attempt() {
        let hub = RetryPolicy { max_retries: Some(7), ..RetryPolicy::default() };
        let zero = node(r#"{"retry": {"max_retries": 0}}"#).unwrap().policy(&hub).unwrap().unwrap();
        assert_eq!(zero.max_retries, None);
        let three = node(r#"{"retry": {"max_retries": 3}}"#).unwrap().policy(&hub).unwrap().unwrap();
        assert_eq!(three.max_retries, Some(3));
        let none = node(r#"{"retry": false}"#).unwrap().policy(&hub).unwrap().unwrap();
        assert_eq!(none, RetryPolicy { max_retries: Some(0), ..hub });
    }

    #[test]
    fn bad_retry_values_are_refused_with_the_flags_messages() {
        let hub = RetryPolicy::default();
        let refused = |json: &str| node(json).unwrap().policy(&hub).unwrap_err();
        assert!(refused(r#"{"retry": {"initial_ms": 0}}"#).contains("initial_delay"));
        assert!(refused(r#"{"retry": {"jitter": 1.5}}"#).contains("jitter"));
        assert!(refused(r#"{"retry": {"multiplier": 0.5}}"#).contains("multiplier"));
        assert!(
            refused(r#"{"retry": {"initial_ms": 9000}}"#).contains("max_delay"),
            "over the hub's 5 s cap"
        );
        assert!(refused(r#"{"retry": {"backoff": "random"}}"#).contains("retry backoff \"random\""));
        // What the shape ignores is not checked, as in the engine.
        let constant = node(r#"{"retry": {"backoff": "constant", "multiplier": 0.5}}"#).unwrap();
        assert!(constant.policy(&hub).is_ok());
        for bad in [
            r#"{"retry": {"initial": 5}}"#,
            r#"{"retry": {"max_retries": -1}}"#,
            r#"{"retry": {"initial_ms": "5"}}"#,
            r#"{"retry": 3}"#,
            r#"{"retry": "none"}"#,
        ] {
            assert!(node(bad).is_err(), "{bad}");
        }
    }
}
