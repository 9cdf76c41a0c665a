//! The routing table: an immutable snapshot swapped on every membership or
//! subscription change (copy-on-write), so emitters route without holding
//! any lock while they push into fibers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use smallvec::SmallVec;

use super::key_hash::KeyHash;
use crate::fiber::Fiber;
use crate::topic::Subscription;

/// FNV-1a: stable across runs and platforms, so a key keeps its member.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    #[cfg(test)]
    HASHED.set(HASHED.get() + 1);
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
thread_local! {
    /// Calls of [`stable_hash`] on this thread, for tests that count them.
    pub(crate) static HASHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// True when `uid` is the event's source. The source is usually the very
/// string of the node's route, so comparing addresses first skips a
/// string comparison per node per emit.
fn is_source(source: Option<&str>, uid: &str) -> bool {
    source.is_some_and(|s| std::ptr::eq(s, uid) || s == uid)
}

#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) fiber: Arc<Fiber>,
    pub(crate) subscription: Subscription,
}

#[derive(Debug, Clone)]
struct Group {
    name: Arc<str>,
    /// Indices into `Routes::nodes`, in uid order.
    members: Vec<usize>,
    /// Round-robin position, carried over when the table is rebuilt.
    cursor: Arc<AtomicUsize>,
}

/// Nodes sorted by uid, and the consumer groups among them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routes {
    pub(crate) nodes: Vec<Route>,
    groups: Vec<Group>,
    /// Some node has the `block` policy (emits must then reserve room).
    pub(crate) any_block: bool,
}

impl Routes {
    fn rebuild(nodes: Vec<Route>, old: &Routes) -> Routes {
        // By name, both: a linear search per node made a registration
        // cost nodes x groups (6,000 single-member groups took minutes).
        let cursors: HashMap<&str, &Arc<AtomicUsize>> =
            old.groups.iter().map(|g| (&*g.name, &g.cursor)).collect();
        let mut at: HashMap<&str, usize> = HashMap::new();
        let mut groups: Vec<Group> = Vec::new();
        for (i, r) in nodes.iter().enumerate() {
            let Some(name) = &r.fiber.group else { continue };
            match at.get(&**name) {
                Some(&g) => groups[g].members.push(i),
                None => {
                    let cursor = cursors.get(&**name).map_or_else(Default::default, |c| Arc::clone(c));
                    at.insert(name, groups.len());
                    groups.push(Group { name: name.clone(), members: vec![i], cursor });
                }
            }
        }
        let any_block = nodes.iter().any(|r| r.fiber.overflow == crate::fiber::lane::Overflow::Block);
        Routes { nodes, groups, any_block }
    }

    pub(crate) fn find(&self, uid: &str) -> Option<&Route> {
        self.nodes.binary_search_by(|r| (*r.fiber.uid).cmp(uid)).ok().map(|i| &self.nodes[i])
    }

    pub(crate) fn with_added(&self, route: Route) -> Routes {
        let mut nodes = self.nodes.clone();
        let at = nodes.partition_point(|r| *r.fiber.uid < *route.fiber.uid);
        nodes.insert(at, route);
        Routes::rebuild(nodes, self)
    }

    pub(crate) fn without(&self, uid: &str) -> Routes {
        let nodes = self.nodes.iter().filter(|r| &*r.fiber.uid != uid).cloned().collect();
        Routes::rebuild(nodes, self)
    }

    pub(crate) fn with_subscription(&self, uid: &str, subscription: Subscription) -> Routes {
        let mut nodes = self.nodes.clone();
        if let Some(r) = nodes.iter_mut().find(|r| &*r.fiber.uid == uid) {
            r.subscription = subscription;
        }
        Routes::rebuild(nodes, self)
    }

    /// Calls `f` for every fiber a broadcast of `topic` reaches: each
    /// ungrouped subscriber but `source`, and one member of each group.
    pub(crate) fn for_each_target<'a>(
        &'a self,
        topic: &str,
        key: Option<&[u8]>,
        source: Option<&str>,
        mut f: impl FnMut(&'a Arc<Fiber>),
    ) {
        for r in &self.nodes {
            if r.fiber.group.is_none() && !is_source(source, &r.fiber.uid) && r.subscription.matches(topic) {
                f(&r.fiber);
            }
        }
        let key = KeyHash::new(key);
        for g in &self.groups {
            if let Some(fiber) = self.pick(g, topic, &key, source) {
                f(fiber);
            }
        }
    }

    /// One member of `g` for an event other than `source`: by key hash
    /// over the matching members, else round-robin over the connected
    /// ones (or all of them when none is connected, so the events wait in
    /// a fiber, counted). The hash runs over every matching member, the
    /// source included, so that who emits does not move a key; when it
    /// lands on the source, the next member in uid order takes the event.
    /// Each member's `connected` flag is read once: a member that
    /// disconnects while the pick runs cannot leave it with nobody.
    fn pick<'a>(
        &'a self,
        g: &Group,
        topic: &str,
        key: &KeyHash<'_>,
        source: Option<&str>,
    ) -> Option<&'a Arc<Fiber>> {
        let matching: SmallVec<[&'a Arc<Fiber>; 8]> = g
            .members
            .iter()
            .map(|&i| &self.nodes[i])
            .filter(|r| r.subscription.matches(topic))
            .map(|r| &r.fiber)
            .collect();
        // Not hashed for a group with no member to pick: that ends below.
        let hash = if matching.is_empty() { None } else { key.get() };
        if let Some(hash) = hash {
            let at = (hash % matching.len() as u64) as usize;
            return matching
                .iter()
                .cycle()
                .skip(at)
                .take(matching.len())
                .copied()
                .find(|f| !is_source(source, &f.uid));
        }
        let eligible: SmallVec<[&'a Arc<Fiber>; 8]> =
            matching.into_iter().filter(|f| !is_source(source, &f.uid)).collect();
        if eligible.is_empty() {
            return None;
        }
        let turn = g.cursor.fetch_add(1, Ordering::Relaxed);
        let connected: SmallVec<[&'a Arc<Fiber>; 8]> =
            eligible.iter().copied().filter(|f| f.connected.load(Ordering::Relaxed)).collect();
        let among = if connected.is_empty() { &eligible } else { &connected };
        Some(among[turn % among.len()])
    }

    /// A member of `group` to take an event a member could not (it left):
    /// the same rule as a broadcast pick, on the event's own topic, never
    /// the event's `source` ("" for none).
    pub(crate) fn heir(
        &self,
        group: &str,
        topic: &str,
        key: Option<&[u8]>,
        source: &str,
    ) -> Option<&Arc<Fiber>> {
        let g = self.groups.iter().find(|g| &*g.name == group)?;
        self.pick(g, topic, &KeyHash::new(key), Some(source))
    }
}
