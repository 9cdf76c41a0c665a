//! SPEC 2.1: broadcast except sender, unicast, root broadcast and unicast,
//! unknown uids refused without delivering anything.

mod common;
use common::*;

use chronica::{Director, Error, Message};
use std::time::Duration;

fn three() -> (Director, Log, Log, Log) {
    let d = Director::new().unwrap();
    let (a, b, c) = (Log::new(), Log::new(), Log::new());
    d.register("a", a.node()).unwrap();
    d.register("b", b.node()).unwrap();
    d.register("c", c.node()).unwrap();
    (d, a, b, c)
}

#[test]
fn broadcast_skips_the_source() {
    let (d, a, b, c) = three();
    d.emit(Message::new("t", "x").source("a")).unwrap();
    for uid in ["a", "b", "c"] {
        settle(&d, uid);
    }
    assert_eq!(a.count_user(), 0);
    assert_eq!(b.user_topics(), ["t"]);
    assert_eq!(c.user_topics(), ["t"]);
    assert_eq!(b.events.lock().last().unwrap().source(), Some("a"));
}

#[test]
fn broadcast_without_source_reaches_everyone() {
    let (d, a, b, c) = three();
    d.emit(Message::new("t", "x")).unwrap();
    for uid in ["a", "b", "c"] {
        settle(&d, uid);
    }
    assert_eq!((a.count_user(), b.count_user(), c.count_user()), (1, 1, 1));
}

#[test]
fn unicast_reaches_only_the_target() {
    let (d, a, b, c) = three();
    d.emit_to("b", Message::new("t", "x").source("a")).unwrap();
    for uid in ["a", "b", "c"] {
        settle(&d, uid);
    }
    assert_eq!((a.count_user(), b.count_user(), c.count_user()), (0, 1, 0));
}

#[test]
fn root_broadcast_and_unicast_carry_the_trust_token() {
    let d = Director::builder().trust_token("s3cret").build().unwrap();
    let (a, b) = (Log::new(), Log::new());
    d.register("a", a.node()).unwrap();
    d.register("b", b.node()).unwrap();
    d.emit_root("resync", "all").unwrap();
    d.emit_root_to("b", "kick", "one").unwrap();
    settle(&d, "a");
    settle(&d, "b");
    let actions = |l: &Log| l.roots().iter().map(|e| e.topic().to_owned()).collect::<Vec<_>>();
    assert_eq!(actions(&a), ["chronica.pull_current_state", "resync"]);
    assert_eq!(actions(&b), ["chronica.pull_current_state", "resync", "kick"]);
    assert!(b.roots().iter().all(|e| e.trust_token() == Some("s3cret")));
    assert_eq!(b.roots()[2].as_root().unwrap().action(), "kick");
}

#[test]
fn a_root_event_carries_the_content_type_it_was_given() {
    let (d, a, b, _c) = three();
    d.emit_root("plain", "{}").unwrap();
    d.emit_root_typed("typed", "{}", "application/octet-stream").unwrap();
    d.emit_root_to_typed("b", "typed-to", "[]", "application/json").unwrap();
    assert!(matches!(d.emit_root_to_typed("ghost", "x", "", "a/b"), Err(Error::UnknownNode(_))));
    settle(&d, "a");
    settle(&d, "b");
    let types = |l: &Log| {
        l.roots()
            .iter()
            .skip(1) // chronica.pull_current_state
            .map(|e| (e.topic().to_owned(), e.content_type().map(str::to_owned)))
            .collect::<Vec<_>>()
    };
    let (plain, typed) =
        (("plain".to_owned(), None), ("typed".to_owned(), Some("application/octet-stream".into())));
    assert_eq!(types(&a), [plain.clone(), typed.clone()]);
    assert_eq!(types(&b), [plain, typed, ("typed-to".to_owned(), Some("application/json".into()))]);
}

#[test]
fn unknown_source_or_target_is_refused_and_delivers_nothing() {
    let (d, a, b, _c) = three();
    assert_eq!(d.emit(Message::new("t", "x").source("ghost")), Err(Error::UnknownNode("ghost".into())));
    assert_eq!(d.emit_to("ghost", Message::new("t", "x")), Err(Error::UnknownNode("ghost".into())));
    assert!(matches!(d.emit_to("a", Message::new("t", "x").source("ghost")), Err(Error::UnknownNode(_))));
    assert!(matches!(d.emit_root_to("ghost", "x", ""), Err(Error::UnknownNode(_))));
    std::thread::sleep(Duration::from_millis(50));
    for uid in ["a", "b", "c"] {
        let s = settle(&d, uid);
        assert_eq!(s.accepted, 1, "only the pull_current_state event: {s:?}");
    }
    assert_eq!(a.count_user() + b.count_user(), 0);
}

#[test]
fn event_ids_increase_and_fields_arrive_intact() {
    let (d, _a, b, _c) = three();
    let first = d.emit(Message::new("x.y", vec![1u8, 2, 3]).key("k1").source("a")).unwrap();
    let second = d.emit(Message::new("", "").source("a")).unwrap();
    assert!(second > first);
    settle(&d, "b");
    let evs: Vec<_> = b.events.lock().iter().filter(|e| !e.is_root()).cloned().collect();
    assert_eq!(evs[0].id(), first);
    assert_eq!(evs[0].topic(), "x.y");
    assert_eq!(evs[0].key(), Some(&b"k1"[..]));
    assert_eq!(&evs[0].payload()[..], &[1, 2, 3]);
    assert!(evs[0].timestamp_ms() > 1_600_000_000_000);
    assert_eq!(evs[1].topic(), "");
}

#[test]
fn payload_is_shared_not_copied_per_node() {
    let (d, a, b, c) = three();
    d.emit(Message::new("t", vec![9u8; 1024])).unwrap();
    for uid in ["a", "b", "c"] {
        settle(&d, uid);
    }
    let ptr = |l: &Log| l.events.lock().iter().find(|e| !e.is_root()).unwrap().payload().as_ptr();
    assert_eq!(ptr(&a), ptr(&b));
    assert_eq!(ptr(&b), ptr(&c));
}

#[test]
fn the_content_type_travels_with_the_event() {
    let (d, _a, b, _c) = three();
    d.emit(Message::new("t", "{}").content_type("application/json").source("a")).unwrap();
    d.emit(Message::new("t", "raw").source("a")).unwrap();
    settle(&d, "b");
    let types: Vec<Option<String>> = b
        .events
        .lock()
        .iter()
        .filter(|e| !e.is_root())
        .map(|e| e.content_type().map(str::to_owned))
        .collect();
    assert_eq!(types, [Some("application/json".to_owned()), None]);
}

#[test]
fn every_node_sees_the_same_extension() {
    let (d, a, b, _c) = three();
    let host: chronica::Extension = std::sync::Arc::new(String::from("host object"));
    d.emit(Message::new("t", "x").extension(host.clone()).source("c")).unwrap();
    settle(&d, "a");
    settle(&d, "b");
    let ext = |l: &Log| l.events.lock().iter().find(|e| !e.is_root()).unwrap().extension().unwrap().clone();
    assert!(std::sync::Arc::ptr_eq(&ext(&a), &host));
    assert!(std::sync::Arc::ptr_eq(&ext(&b), &host));
    assert_eq!(ext(&a).downcast_ref::<String>().unwrap(), "host object");
}
