//! Routing against a model (SPEC 2.1, 2.7 and 3 together): random
//! sequences of registrations (topic patterns, consumer groups,
//! concurrency), unregistrations, broadcasts with and without a source or
//! key, and unicasts, checked at the end against what a plain model says
//! each node must have received.
//!
//! What the model decides exactly: which ungrouped nodes receive an event
//! (every matching node but the source) and in what order, each node's
//! first event (its `pull_current_state`, peers as registered then), and
//! refusals (unknown source or target: an error and no delivery). What it
//! leaves to the director and checks as a property: which member of a
//! group takes an event; it must be exactly one member that was in the
//! group and matched the topic when the event was emitted, and events of
//! one key go to one member while the group's matching members stay the
//! same. Nodes are left to settle before each unregistration, so no
//! pending event is handed on or dropped and every count is exact.

mod common;
use common::model::*;
use common::*;

use std::collections::{BTreeMap, HashMap};

use chronica::{Director, Message, PULL_CURRENT_STATE};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Register { slot: usize, patterns: usize, group: usize, concurrency: usize },
    Unregister(usize),
    Emit { topic: usize, source: Option<usize>, key: Option<u8> },
    EmitTo { target: usize, topic: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..SLOTS, 0..PATTERNS.len(), 0..GROUPS.len(), 1..3usize)
            .prop_map(|(slot, patterns, group, concurrency)| Op::Register { slot, patterns, group, concurrency }),
        1 => (0..SLOTS).prop_map(Op::Unregister),
        6 => (0..TOPICS.len(), prop::option::of(0..SLOTS), prop::option::of(0..3u8))
            .prop_map(|(topic, source, key)| Op::Emit { topic, source, key }),
        2 => (0..SLOTS, 0..TOPICS.len()).prop_map(|(target, topic)| Op::EmitTo { target, topic }),
    ]
}

/// One registration in the model.
struct Member {
    sub: Subscription,
    log: Log,
    concurrency: usize,
    /// The peers its pull must name.
    peers: Vec<String>,
    /// The ids it must receive, in order (ungrouped broadcasts and
    /// unicasts).
    expected: Vec<u64>,
}

/// A group event: the group's members that matched its topic (the source
/// included: the key hash runs over them so that who emits does not move
/// a key), its source, and its key.
struct Grouped {
    matching: Vec<String>,
    source: Option<String>,
    key: Option<u8>,
    /// The registrations in place when it was emitted (bumped by every
    /// register and unregister).
    epoch: u64,
}

#[derive(Default)]
struct Model {
    live: BTreeMap<String, Member>,
    /// Registrations that ended, with what they received.
    ended: Vec<(String, Member)>,
    /// Broadcasts that reached a group, by (id, group).
    grouped: HashMap<(u64, &'static str), Grouped>,
    /// The key of every event emitted.
    keys: HashMap<u64, Option<u8>>,
    epoch: u64,
}

impl Model {
    fn settle_all(&self, d: &Director) {
        for uid in self.live.keys() {
            settle(d, uid);
        }
    }

    fn apply(&mut self, d: &Director, op: &Op) {
        match *op {
            Op::Register { slot, patterns, group, concurrency } => {
                let u = uid(slot);
                let sub = Subscription::new(patterns, group);
                let log = Log::new();
                let got = d.register_with(&u, log.node(), sub.options().concurrency(concurrency));
                if self.live.contains_key(&u) {
                    assert!(got.is_err(), "a duplicate uid is refused");
                    return;
                }
                got.unwrap();
                let peers = self.live.keys().cloned().collect();
                let m = Member { sub, log, concurrency, peers, expected: Vec::new() };
                self.live.insert(u, m);
                self.epoch += 1;
            }
            Op::Unregister(slot) => {
                let u = uid(slot);
                self.settle_all(d);
                let got = d.unregister(&u);
                match self.live.remove(&u) {
                    Some(m) => {
                        got.unwrap();
                        self.ended.push((u, m));
                        self.epoch += 1;
                    }
                    None => assert!(got.is_err(), "unregistering an unknown uid is refused"),
                }
            }
            Op::Emit { topic, source, key } => {
                let topic = TOPICS[topic];
                let source = source.map(uid);
                let known = source.as_ref().is_some_and(|s| self.live.contains_key(s));
                let Some(id) = emit(d, topic, source.as_deref(), key, known) else { return };
                self.keys.insert(id, key);
                let mut groups: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
                for (u, m) in self.live.iter_mut() {
                    if !m.sub.matches(topic) {
                        continue;
                    }
                    match m.sub.group {
                        None if Some(u) != source.as_ref() => m.expected.push(id),
                        None => {}
                        Some(g) => groups.entry(g).or_default().push(u.clone()),
                    }
                }
                for (g, matching) in groups {
                    if matching.iter().all(|u| Some(u) == source.as_ref()) {
                        continue; // only the source matched: nobody takes it
                    }
                    let ev = Grouped { matching, source: source.clone(), key, epoch: self.epoch };
                    self.grouped.insert((id, g), ev);
                }
            }
            Op::EmitTo { target, topic } => {
                let u = uid(target);
                let got = d.emit_to(&u, Message::new(TOPICS[topic], ""));
                match self.live.get_mut(&u) {
                    Some(m) => {
                        let id = got.unwrap();
                        self.keys.insert(id, None);
                        m.expected.push(id);
                    }
                    None => assert!(got.is_err(), "an unknown target is refused"),
                }
            }
        }
    }

    /// Emit order, per node with one worker, per key with more (SPEC 3:
    /// keyless events then spread over the workers).
    fn check_order(&self, u: &str, m: &Member, ids: &[u64]) {
        let mut seen: HashMap<Option<u8>, u64> = HashMap::new();
        for &id in ids {
            let lane = if m.concurrency == 1 { None } else { self.keys[&id] };
            if m.concurrency > 1 && lane.is_none() {
                continue;
            }
            let last = seen.insert(lane, id);
            assert!(last.is_none_or(|l| l < id), "{u}: {id} after {last:?}, out of order: {ids:?}");
        }
        let mut unique = ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{u}: an event delivered twice: {ids:?}");
    }

    /// Checks every registration, ended or live, against the model.
    fn check(mut self) {
        let live = std::mem::take(&mut self.live);
        let ended = std::mem::take(&mut self.ended);
        let all: Vec<(String, Member)> = live.into_iter().chain(ended).collect();
        // Which registrations (indices into `all`) took each group event.
        let mut takers: HashMap<(u64, &'static str), Vec<usize>> = HashMap::new();
        for (i, (u, m)) in all.iter().enumerate() {
            let first = m.log.events.lock().first().cloned().expect("every node gets its pull first");
            assert_eq!(first.topic(), PULL_CURRENT_STATE);
            let peers: serde_json::Value = first.json().unwrap();
            assert_eq!(peers, serde_json::json!({ "peers": m.peers }), "{u}: the peers of its pull");
            let ids = m.log.user_ids();
            self.check_order(u, m, &ids);
            let mut own = Vec::new();
            for id in ids {
                match m.sub.group.filter(|g| self.grouped.contains_key(&(id, *g))) {
                    Some(g) => takers.entry((id, g)).or_default().push(i),
                    None => own.push(id),
                }
            }
            if m.concurrency > 1 {
                own.sort_unstable();
            }
            assert_eq!(own, m.expected, "{u}: exactly the broadcasts and unicasts for it");
        }
        // The member a key hashes to, per group, registrations and matching
        // members: the taker of any event with no source...
        type Stick<'a> = (&'a str, u8, u64, &'a [String]);
        let mut hashed: HashMap<Stick<'_>, &String> = HashMap::new();
        let mut sourced = Vec::new();
        for (&(id, g), ev) in &self.grouped {
            let took = takers.get(&(id, g)).map(Vec::as_slice).unwrap_or_default();
            assert_eq!(took.len(), 1, "event {id} taken exactly once in {g}, by {took:?}");
            let (who, _) = &all[took[0]];
            assert!(ev.matching.contains(who), "{who} took {id} but did not match in {g}");
            assert_ne!(Some(who), ev.source.as_ref(), "{who} took its own event {id}");
            let Some(k) = ev.key else { continue };
            let stick = (g, k, ev.epoch, ev.matching.as_slice());
            match &ev.source {
                None => assert_eq!(*hashed.entry(stick).or_insert(who), who, "key {k} of {g} moved"),
                Some(source) => sourced.push((stick, source, who)),
            }
        }
        // ...which takes the events other members emit too; its own go to
        // the next matching member in uid order.
        for (stick, source, who) in sourced {
            let Some(&h) = hashed.get(&stick) else { continue };
            let matching = stick.3;
            let want = if h == source {
                let at = matching.iter().position(|u| u == h).unwrap();
                &matching[(at + 1) % matching.len()]
            } else {
                h
            };
            assert_eq!(who, want, "key {} of {} from {source}", stick.1, stick.0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn routing_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let d = Director::new().unwrap();
        let mut model = Model::default();
        for op in &ops {
            model.apply(&d, op);
        }
        model.settle_all(&d);
        model.check();
        d.close(std::time::Duration::from_secs(5)).unwrap();
    }
}
