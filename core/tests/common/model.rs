//! The shared vocabulary of the model tests (`routing_model.rs`,
//! `accounting_model.rs`): a few uids, topics, pattern sets and groups
//! small enough that random operations keep running into each other.

use chronica::{Director, Message, NodeOptions, Pattern};

/// Registrations go into this many uids.
pub const SLOTS: usize = 5;
pub const TOPICS: [&str; 5] = ["a.x", "a.y.z", "b", "c.x", "a"];
pub const PATTERNS: [&[&str]; 6] = [&[], &["a.*"], &["a.>"], &["b"], &["*.x"], &["a.*", "b"]];
pub const GROUPS: [Option<&str>; 3] = [None, Some("g1"), Some("g2")];

pub fn uid(slot: usize) -> String {
    format!("n{slot}")
}

/// A subscription of the model: pattern set `patterns` and group `group`
/// (indices into `PATTERNS` and `GROUPS`).
pub struct Subscription {
    pub patterns: Vec<Pattern>,
    pub group: Option<&'static str>,
}

impl Subscription {
    pub fn new(patterns: usize, group: usize) -> Self {
        let patterns = PATTERNS[patterns].iter().map(|p| Pattern::new(p).unwrap()).collect();
        Self { patterns, group: GROUPS[group] }
    }

    /// The node options that subscribe the same way.
    pub fn options(&self) -> NodeOptions {
        let mut opts = NodeOptions::default();
        for p in &self.patterns {
            opts = opts.topic(p.as_str());
        }
        if let Some(g) = self.group {
            opts = opts.group(g);
        }
        opts
    }

    /// No pattern takes every topic (SPEC 3).
    pub fn matches(&self, topic: &str) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(topic))
    }
}

/// Broadcasts `topic` (from `source`, with key `key`); `None` when the
/// source is not registered (`known` false), after checking the refusal.
pub fn emit(d: &Director, topic: &str, source: Option<&str>, key: Option<u8>, known: bool) -> Option<u64> {
    let mut msg = Message::new(topic, "");
    if let Some(s) = source {
        msg = msg.source(s);
    }
    if let Some(k) = key {
        msg = msg.key(vec![k]);
    }
    let got = d.emit(msg);
    if source.is_some() && !known {
        assert!(got.is_err(), "an unknown source is refused");
        return None;
    }
    Some(got.unwrap())
}
