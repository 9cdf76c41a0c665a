//! The topic index against the linear scan it replaced, as the model: the
//! same targets for any sequence of registrations, unregistrations and
//! subscriptions, any topic, source and key, groups and their picks
//! included (the round-robin cursors set back between the two).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use proptest::prelude::*;

use super::{Route, Routes};
use crate::director::membership::Registration;
use crate::fiber::lane::Overflow;
use crate::fiber::state::{FiberConfig, State};
use crate::fiber::Fiber;
use crate::topic::{Pattern, Subscription};

const PATTERNS: [&str; 12] = ["a", "b", "a.b", "a.*", "*.b", "a.>", ">", "*", "*.*", "a.*.c", "*.>", "a..b"];
const TOPICS: [&str; 12] = ["", "a", "b", "a.b", "a.c", "a.b.c", "x.b", "a..b", "*", "a.*", "a.>", "a.b.c.d"];
const GROUPS: [Option<&str>; 3] = [None, Some("g1"), Some("g2")];
const SLOTS: usize = 10;

fn fiber(uid: &str, group: Option<&str>, overflow: Overflow, connected: bool) -> Arc<Fiber> {
    let cfg = FiberConfig {
        batch_size: 1,
        queue_capacity: 4,
        root_capacity: 4,
        overflow,
        retry: Default::default(),
        trust_token: "t".into(),
        concurrency: 1,
    };
    let state = State::new(cfg, connected, 0);
    Arc::new(Fiber::new(uid.into(), Registration::default(), group.map(Arc::from), overflow, state, 1, false))
}

fn subscription(patterns: &[usize]) -> Subscription {
    Subscription::new(patterns.iter().map(|&p| Pattern::new(PATTERNS[p]).unwrap()).collect())
}

#[derive(Debug, Clone)]
enum Op {
    Add { slot: usize, patterns: Vec<usize>, group: usize, block: bool, connected: bool },
    Remove(usize),
    Subscribe(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SLOTS, prop::collection::vec(0..PATTERNS.len(), 0..4), 0..GROUPS.len(), any::<bool>(), any::<bool>())
            .prop_map(|(slot, patterns, group, block, connected)| Op::Add { slot, patterns, group, block, connected }),
        1 => (0..SLOTS).prop_map(Op::Remove),
        2 => (0..SLOTS, 0..PATTERNS.len()).prop_map(|(slot, p)| Op::Subscribe(slot, p)),
    ]
}

fn apply(routes: &Routes, op: &Op) -> Routes {
    match op {
        Op::Add { slot, patterns, group, block, connected } => {
            let uid = format!("n{slot}");
            if routes.find(&uid).is_some() {
                return routes.clone();
            }
            let overflow = if *block { Overflow::Block } else { Overflow::DropOldest };
            let fiber = fiber(&uid, GROUPS[*group], overflow, *connected);
            routes.with_added(Route { fiber, subscription: subscription(patterns) })
        }
        Op::Remove(slot) => routes.without(&format!("n{slot}")),
        Op::Subscribe(slot, p) => {
            let uid = format!("n{slot}");
            let Some(r) = routes.find(&uid) else { return routes.clone() };
            let sub = r.subscription.with(Pattern::new(PATTERNS[*p]).unwrap());
            routes.with_subscription(&uid, sub)
        }
    }
}

/// The uids each routing reaches, sorted, the cursors as they were
/// before each.
fn both(
    routes: &Routes,
    topic: &str,
    key: Option<&[u8]>,
    source: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    let cursors: Vec<usize> = routes.groups.iter().map(|g| g.cursor.load(Ordering::Relaxed)).collect();
    let mut indexed = Vec::new();
    routes.for_each_target(topic, key, source, |f| indexed.push(f.uid.to_string()));
    for (g, c) in routes.groups.iter().zip(&cursors) {
        g.cursor.store(*c, Ordering::Relaxed);
    }
    let mut scanned = Vec::new();
    routes.for_each_target_scanning(topic, key, source, |f| scanned.push(f.uid.to_string()));
    indexed.sort();
    scanned.sort();
    (indexed, scanned)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_index_routes_as_the_scan(
        ops in prop::collection::vec(op(), 1..40),
        emits in prop::collection::vec((0..TOPICS.len(), prop::option::of(0..SLOTS), prop::option::of(any::<u8>())), 1..8),
    ) {
        let mut routes = Routes::default();
        let mut snapshots = Vec::new();
        for op in &ops {
            routes = apply(&routes, op);
            snapshots.push(routes.clone());
        }
        // Every snapshot, old ones included: a change must not alter the
        // snapshots emitters may still hold.
        for routes in &snapshots {
            let blocking = routes.nodes.iter().filter(|r| r.fiber.overflow == Overflow::Block).count();
            prop_assert_eq!(routes.any_block, blocking > 0);
            for &(topic, source, key) in &emits {
                let source = source.map(|s| format!("n{s}"));
                let key = key.map(|k| [k]);
                let (indexed, scanned) = both(routes, TOPICS[topic], key.as_ref().map(|k| &k[..]), source.as_deref());
                prop_assert_eq!(indexed, scanned, "topic {:?} from {:?}", TOPICS[topic], source);
                let mut ungrouped = Vec::new();
                routes.for_each_ungrouped(TOPICS[topic], source.as_deref(), |f| ungrouped.push(f.uid.to_string()));
                ungrouped.sort();
                let want: Vec<String> = routes
                    .nodes
                    .iter()
                    .filter(|r| r.fiber.group.is_none() && Some(&*r.fiber.uid) != source.as_deref())
                    .filter(|r| r.subscription.matches(TOPICS[topic]))
                    .map(|r| r.fiber.uid.to_string())
                    .collect();
                prop_assert_eq!(ungrouped, want);
            }
        }
    }
}
