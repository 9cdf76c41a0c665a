//! Topic patterns, NATS style: segments separated by `.`, `*` matches exactly
//! one segment, `>` (last only) matches one or more trailing segments.
//! A segment may be empty (`a..b` has three segments), and the empty topic
//! is a single empty segment.

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    One,
    Rest,
}

/// A compiled subscription pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: Box<str>,
    segments: Box<[Segment]>,
    /// No wildcard: the pattern matches its own text only, which one
    /// comparison decides (the common subscription; routing runs it for
    /// every node on every emit).
    exact: bool,
}

impl Pattern {
    /// Compiles `text`; refuses an empty pattern and `>` anywhere but last.
    pub fn new(text: &str) -> Result<Self> {
        if text.is_empty() {
            return Err(Error::InvalidArgument("topic pattern must not be empty".into()));
        }
        let parts: Vec<&str> = text.split('.').collect();
        let last = parts.len() - 1;
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.into_iter().enumerate() {
            segments.push(match part {
                "*" => Segment::One,
                ">" if i == last => Segment::Rest,
                ">" => {
                    return Err(Error::InvalidArgument(format!(
                        "topic pattern {text:?}: '>' may only be the last segment"
                    )))
                }
                lit => Segment::Literal(lit.into()),
            });
        }
        let exact = segments.iter().all(|s| matches!(s, Segment::Literal(_)));
        Ok(Self { text: text.into(), segments: segments.into(), exact })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Where the wildcards stand: what the topic index files it under.
    pub(crate) fn shape(&self) -> Shape {
        if self.exact {
            return Shape::Exact;
        }
        let rest = matches!(self.segments.last(), Some(Segment::Rest));
        let len = self.segments.len() - usize::from(rest);
        let stars = (0..len).filter(|&i| self.segments[i] == Segment::One).collect();
        Shape::Wild { len, stars, rest }
    }

    /// True when `topic` matches this pattern.
    pub fn matches(&self, topic: &str) -> bool {
        if self.exact {
            return topic == &*self.text;
        }
        let mut parts = topic.split('.');
        for seg in self.segments.iter() {
            match seg {
                Segment::Rest => return parts.next().is_some(),
                Segment::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(lit) => {
                    if parts.next() != Some(lit) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

/// The wildcards of a pattern, its literals aside: the patterns of one
/// shape that a topic can match all read, with the topic's segments put
/// in for their literals, as one text, so one lookup finds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// No wildcard: the pattern's text is the one topic it matches.
    Exact,
    /// `len` segments before any `>`, those at `stars` (ascending) being
    /// `*`, then `>` when `rest`.
    Wild { len: usize, stars: Box<[usize]>, rest: bool },
}

/// A node's subscription: no pattern means every topic.
#[derive(Debug, Clone, Default)]
pub(crate) struct Subscription {
    patterns: Vec<Pattern>,
}

impl Subscription {
    pub(crate) fn new(patterns: Vec<Pattern>) -> Self {
        Self { patterns }
    }
    /// The patterns, none meaning every topic.
    pub(crate) fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }
    pub(crate) fn matches(&self, topic: &str) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(topic))
    }
    pub(crate) fn with(&self, pattern: Pattern) -> Self {
        let mut patterns = self.patterns.clone();
        if !patterns.contains(&pattern) {
            patterns.push(pattern);
        }
        Self { patterns }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, t: &str) -> bool {
        Pattern::new(p).unwrap().matches(t)
    }

    #[test]
    fn literal_star_and_rest() {
        assert!(m("orders.created", "orders.created"));
        assert!(!m("orders.created", "orders.created.eu"));
        assert!(m("orders.*", "orders.created"));
        assert!(!m("orders.*", "orders"));
        assert!(!m("orders.*", "orders.created.eu"));
        assert!(m("orders.>", "orders.created.eu"));
        assert!(m("orders.>", "orders.created"));
        assert!(!m("orders.>", "orders"));
        assert!(m("*.created", "orders.created"));
        assert!(m(">", "anything.at.all"));
        assert!(m("*", ""));
        assert!(!m("orders", ""));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(Pattern::new("").is_err());
        assert!(Pattern::new("a.>.b").is_err());
        assert!(Pattern::new(">.a").is_err());
    }

    #[test]
    fn empty_subscription_takes_everything() {
        let s = Subscription::default();
        assert!(s.matches(""));
        assert!(s.matches("x.y"));
    }

    /// A reference matcher written the slow, obvious way.
    fn model(pattern: &[&str], topic: &[&str]) -> bool {
        match (pattern.split_first(), topic.split_first()) {
            (None, None) => true,
            (Some((&">", _)), Some(_)) => true,
            (Some((&"*", p)), Some((_, t))) => model(p, t),
            (Some((lit, p)), Some((seg, t))) => lit == seg && model(p, t),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn matches_agrees_with_model(
            pat in prop::collection::vec(prop_oneof!["a", "b", "", "\\*"], 1..5),
            rest in any::<bool>(),
            topic in prop::collection::vec(prop_oneof!["a", "b", "", "c"], 1..6),
        ) {
            let mut pat: Vec<&str> = pat.iter().map(String::as_str).collect();
            if rest { pat.push(">"); }
            prop_assume!(!pat.join(".").is_empty());
            let topic: Vec<&str> = topic.iter().map(String::as_str).collect();
            let compiled = Pattern::new(&pat.join(".")).unwrap();
            prop_assert_eq!(compiled.matches(&topic.join(".")), model(&pat, &topic));
        }
    }
}
