//! Nothing is silently lost (SPEC 2.4), under everything that moves
//! events at once: random registrations (patterns, groups, drop policies,
//! registered disconnected), unregistrations with events still pending
//! (handed to another member of the group, else dropped), disconnections,
//! nodes that fail until they are dead-lettered, small lanes that
//! overflow, broadcasts and unicasts. At the end every node is connected
//! and healthy and the director settles and closes. Then, for every
//! accepted event, the deliveries the model expects (each ungrouped
//! subscriber but the source, one member per group, or the unicast's
//! target) equal what the nodes received plus what the hooks reported as
//! dropped or dead-lettered; no registration received an event twice,
//! and a group event only reached members of its group.

mod common;
use common::model::*;
use common::*;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chronica::{Director, Message, Overflow, RetryPolicy};
use parking_lot::Mutex;
use proptest::prelude::*;

const POLICIES: [Overflow; 2] = [Overflow::DropOldest, Overflow::DropNewest];

#[derive(Debug, Clone)]
enum Op {
    Register { slot: usize, patterns: usize, group: usize, policy: usize, connected: bool },
    Unregister(usize),
    Connected(usize, bool),
    Failing(usize, bool),
    Emit { topic: usize, source: Option<usize>, key: Option<u8> },
    EmitTo { target: usize, topic: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..SLOTS, 0..PATTERNS.len(), 0..GROUPS.len(), 0..POLICIES.len(), any::<bool>())
            .prop_map(|(slot, patterns, group, policy, connected)| {
                Op::Register { slot, patterns, group, policy, connected }
            }),
        2 => (0..SLOTS).prop_map(Op::Unregister),
        2 => (0..SLOTS, any::<bool>()).prop_map(|(s, on)| Op::Connected(s, on)),
        1 => (0..SLOTS, any::<bool>()).prop_map(|(s, on)| Op::Failing(s, on)),
        10 => (0..TOPICS.len(), prop::option::of(0..SLOTS), prop::option::of(0..3u8))
            .prop_map(|(topic, source, key)| Op::Emit { topic, source, key }),
        2 => (0..SLOTS, 0..TOPICS.len()).prop_map(|(target, topic)| Op::EmitTo { target, topic }),
    ]
}

/// Event ids counted per id.
type Tally = Arc<Mutex<HashMap<u64, usize>>>;

struct Member {
    sub: Subscription,
    log: Log,
}

#[derive(Default)]
struct Model {
    live: BTreeMap<String, Member>,
    ended: Vec<(String, Member)>,
    /// Deliveries each accepted event is owed.
    owed: HashMap<u64, usize>,
    /// The groups each broadcast is owed to (a group event may change
    /// member on the way, never group).
    group_of: HashMap<u64, Vec<&'static str>>,
}

impl Model {
    fn apply(&mut self, d: &Director, op: &Op) {
        match *op {
            Op::Register { slot, patterns, group, policy, connected } => {
                let u = uid(slot);
                let sub = Subscription::new(patterns, group);
                let log = Log::new();
                let opts = sub.options().queue_capacity(3).overflow(POLICIES[policy]).connected(connected);
                let got = d.register_with(&u, log.node(), opts);
                match self.live.entry(u) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        assert!(got.is_err(), "a duplicate uid is refused")
                    }
                    std::collections::btree_map::Entry::Vacant(v) => {
                        got.unwrap();
                        v.insert(Member { sub, log });
                    }
                }
            }
            Op::Unregister(slot) => {
                let u = uid(slot);
                let got = d.unregister(&u);
                match self.live.remove(&u) {
                    Some(m) => {
                        got.unwrap();
                        self.ended.push((u, m));
                    }
                    None => assert!(got.is_err()),
                }
            }
            Op::Connected(slot, on) => {
                let u = uid(slot);
                let got = if on { d.node_connected(&u) } else { d.node_disconnected(&u) };
                assert_eq!(got.is_ok(), self.live.contains_key(&u));
            }
            Op::Failing(slot, on) => {
                if let Some(m) = self.live.get(&uid(slot)) {
                    m.log.fail.store(on, std::sync::atomic::Ordering::SeqCst);
                }
            }
            Op::Emit { topic, source, key } => {
                let topic = TOPICS[topic];
                let source = source.map(uid);
                let known = source.as_ref().is_some_and(|s| self.live.contains_key(s));
                let Some(id) = emit(d, topic, source.as_deref(), key, known) else { return };
                let mut owed = 0;
                let mut groups = Vec::new();
                for (u, m) in &self.live {
                    if Some(u) == source.as_ref() || !m.sub.matches(topic) {
                        continue;
                    }
                    match m.sub.group {
                        None => owed += 1,
                        Some(g) if !groups.contains(&g) => groups.push(g),
                        Some(_) => {}
                    }
                }
                self.owed.insert(id, owed + groups.len());
                self.group_of.insert(id, groups);
            }
            Op::EmitTo { target, topic } => {
                let u = uid(target);
                let got = d.emit_to(&u, Message::new(TOPICS[topic], ""));
                match self.live.get(&u) {
                    Some(_) => {
                        self.owed.insert(got.unwrap(), 1);
                    }
                    None => assert!(got.is_err(), "an unknown target is refused"),
                }
            }
        }
    }

    /// Connects and heals every live node and waits until none has
    /// anything pending (each settle also checks its accounting equation).
    fn settle_all(&self, d: &Director) {
        for (u, m) in &self.live {
            m.log.fail.store(false, std::sync::atomic::Ordering::SeqCst);
            d.node_connected(u).unwrap();
        }
        for u in self.live.keys() {
            settle(d, u);
        }
    }

    fn check(self, dropped: &Tally, dead: &Tally) {
        let all: Vec<(String, Member)> = self.live.into_iter().chain(self.ended).collect();
        let mut delivered: HashMap<u64, usize> = HashMap::new();
        for (u, m) in &all {
            let mut ids = m.log.user_ids();
            for &id in &ids {
                *delivered.entry(id).or_default() += 1;
                // A member gets a broadcast only through its group (and a
                // unicast to any member of its group, handed on).
                if let (Some(g), Some(groups)) = (m.sub.group, self.group_of.get(&id)) {
                    assert!(groups.contains(&g), "{u} of {g} got {id}, owed to {groups:?}");
                }
            }
            let n = ids.len();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), n, "{u} received an event twice");
        }
        let (dropped, dead) = (dropped.lock(), dead.lock());
        for (&id, &owed) in &self.owed {
            let got = |t: &HashMap<u64, usize>| t.get(&id).copied().unwrap_or(0);
            let (d, x, l) = (got(&delivered), got(&dropped), got(&dead));
            assert_eq!(
                d + x + l,
                owed,
                "event {id}: owed {owed}, delivered {d}, dropped {x}, dead-lettered {l}"
            );
        }
        for id in delivered.keys().chain(dropped.keys()).chain(dead.keys()) {
            assert!(self.owed.contains_key(id), "event {id} reported but never accepted");
        }
    }
}

fn count_into(tally: &Tally, ids: impl Iterator<Item = u64>) {
    let mut t = tally.lock();
    for id in ids {
        *t.entry(id).or_default() += 1;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_accepted_event_is_delivered_or_reported(ops in prop::collection::vec(op(), 1..80)) {
        let (dropped, dead) = (Tally::default(), Tally::default());
        let (on_drop, on_dead) = (dropped.clone(), dead.clone());
        let retry = RetryPolicy {
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            max_retries: Some(2),
            ..RetryPolicy::default()
        };
        let d = Director::builder()
            .retry(retry)
            .on_drop(move |r| count_into(&on_drop, std::iter::once(r.event).filter(|e| !e.is_root()).map(|e| e.id())))
            .on_dead_letter(move |l| count_into(&on_dead, l.batch.iter().filter(|e| !e.is_root()).map(|e| e.id())))
            .build()
            .unwrap();
        let mut model = Model::default();
        for op in &ops {
            model.apply(&d, op);
        }
        model.settle_all(&d);
        assert_eq!(d.close(Duration::from_secs(5)).unwrap(), 0, "nothing left at close");
        model.check(&dropped, &dead);
    }
}
