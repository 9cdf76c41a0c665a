//! The topic index: which routes a topic reaches, found without testing
//! every node's patterns (SPEC 3: `*` one segment, `>` the rest, no
//! pattern every topic).
//!
//! Patterns are filed by their [`Shape`], then by their text. A topic
//! matches a pattern of a given shape exactly when the topic's segments,
//! with `*` put in at the shape's stars and the segments past its `>`
//! replaced by `>`, spell the pattern's text (segments never hold a `.`,
//! and a literal segment is never `*` nor, as a segment that matches,
//! `>`). So a lookup costs one text and one search per shape present,
//! plus the routes found: O(shapes x segments + matches), whatever the
//! number of nodes. Distinct shapes are few in practice (`a.b`, `a.*`,
//! `a.>`...).
//!
//! Like the rest of the routes it is persistent: a change copies the
//! chunks it touches (see `chunked.rs`), never the whole index.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::director::chunked::{Chunked, Keyed};
use crate::director::routing::Route;
use crate::topic::{Pattern, Shape};

/// The routes subscribed with one pattern, by uid.
#[derive(Debug, Clone)]
struct Entry {
    text: Arc<str>,
    routes: Chunked<Arc<Route>>,
}

impl Keyed for Arc<Entry> {
    fn key(&self) -> &str {
        &self.text
    }
}

/// The patterns of one shape, by text.
#[derive(Debug, Clone)]
struct ShapeSet {
    shape: Shape,
    patterns: Chunked<Arc<Entry>>,
}

/// Routes by the topics they match (see the module's doc).
#[derive(Debug, Clone, Default)]
pub(crate) struct TopicIndex {
    /// Routes with no pattern, which every topic reaches.
    all: Chunked<Arc<Route>>,
    shapes: Vec<Arc<ShapeSet>>,
}

impl TopicIndex {
    /// Files `route` under each of its patterns.
    pub(crate) fn add(&mut self, route: &Arc<Route>) {
        let patterns = route.subscription.patterns();
        if patterns.is_empty() {
            self.all.insert(route.clone());
        }
        for p in patterns {
            let shape = p.shape();
            let s = match self.shapes.iter().position(|s| s.shape == shape) {
                Some(s) => s,
                None => {
                    self.shapes.push(Arc::new(ShapeSet { shape, patterns: Chunked::default() }));
                    self.shapes.len() - 1
                }
            };
            let set = Arc::make_mut(&mut self.shapes[s]);
            let mut entry = match set.patterns.get(p.as_str()) {
                Some(e) => Entry::clone(e),
                None => Entry { text: p.as_str().into(), routes: Chunked::default() },
            };
            entry.routes.insert(route.clone());
            set.patterns.insert(Arc::new(entry));
        }
    }

    /// Takes `route` out from under each of its patterns.
    pub(crate) fn remove(&mut self, route: &Route) {
        let uid = &*route.fiber.uid;
        let patterns = route.subscription.patterns();
        if patterns.is_empty() {
            self.all.remove(uid);
        }
        for p in patterns {
            self.remove_pattern(p, uid);
        }
    }

    fn remove_pattern(&mut self, p: &Pattern, uid: &str) {
        let shape = p.shape();
        let Some(s) = self.shapes.iter().position(|s| s.shape == shape) else { return };
        let set = Arc::make_mut(&mut self.shapes[s]);
        if let Some(e) = set.patterns.get(p.as_str()) {
            let mut entry = Entry::clone(e);
            entry.routes.remove(uid);
            if entry.routes.is_empty() {
                set.patterns.remove(p.as_str());
            } else {
                set.patterns.insert(Arc::new(entry));
            }
        }
        if set.patterns.is_empty() {
            self.shapes.remove(s);
        }
    }

    /// The routes with no pattern, which every topic reaches.
    pub(crate) fn all(&self) -> &Chunked<Arc<Route>> {
        &self.all
    }

    /// Calls `f` for every route with a pattern that matches `topic`,
    /// once per such pattern (a route with several may come more than
    /// once); the routes with none are left to [`all`](Self::all).
    pub(crate) fn for_each_match<'a>(&'a self, topic: &str, mut f: impl FnMut(&'a Arc<Route>)) {
        // Split and spelled only when some pattern has a wildcard.
        let mut segments: Option<SmallVec<[&str; 8]>> = None;
        let mut text = String::new();
        for set in &self.shapes {
            let key = match &set.shape {
                Shape::Exact => topic,
                Shape::Wild { len, stars, rest } => {
                    let segments = segments.get_or_insert_with(|| topic.split('.').collect());
                    let fits = if *rest { segments.len() > *len } else { segments.len() == *len };
                    if !fits {
                        continue;
                    }
                    spell(&mut text, &segments[..*len], stars, *rest);
                    &text
                }
            };
            if let Some(entry) = set.patterns.get(key) {
                entry.routes.for_each(&mut f);
            }
        }
    }
}

/// The text of the pattern of shape (`stars`, `rest`) that `segments`
/// (the topic's first ones) match, into `out`.
fn spell(out: &mut String, segments: &[&str], stars: &[usize], rest: bool) {
    out.clear();
    let mut stars = stars.iter().peekable();
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if stars.next_if_eq(&&i).is_some() {
            out.push('*');
        } else {
            out.push_str(seg);
        }
    }
    if rest {
        if !segments.is_empty() {
            out.push('.');
        }
        out.push('>');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spelled(pattern: &str, topic: &str) -> Option<String> {
        let Shape::Wild { len, stars, rest } = Pattern::new(pattern).unwrap().shape() else {
            return Some(topic.to_owned());
        };
        let segments: Vec<&str> = topic.split('.').collect();
        let fits = if rest { segments.len() > len } else { segments.len() == len };
        fits.then(|| {
            let mut out = String::new();
            spell(&mut out, &segments[..len], &stars, rest);
            out
        })
    }

    /// What a topic spells for a shape is the pattern's own text exactly
    /// when the pattern matches it.
    #[test]
    fn a_topic_spells_the_patterns_it_matches() {
        for (pattern, topic) in [
            ("a.*", "a.b"),
            ("*.x", "a.x"),
            ("a.>", "a.b.c"),
            (">", ""),
            ("*", ""),
            ("*.*.>", "a..c.d"),
            ("a.*", "a.*"),
        ] {
            assert_eq!(spelled(pattern, topic).as_deref(), Some(pattern), "{pattern} on {topic:?}");
        }
        assert_eq!(spelled("a.>", "a"), None);
        assert_eq!(spelled("a.*", "a.b.c"), None);
        assert_eq!(spelled("a.*", "b.c").as_deref(), Some("b.*"));
    }
}
