//! Replay protection for root events (`root_max_age`): a genuine root
//! event captured from the broker and published again once older than the
//! limit is rejected and counted, whatever the de-duplication remembers.

use std::time::Duration;

use chronica::mq::{self, memory::MemoryAdapter, MqAdapter, MqError};
use chronica::{Director, Distributed, DistributedConfig, NodeOptions};
use futures_util::StreamExt;

use crate::common::{recorder, wait_for};
use crate::suite::unique;

const WAIT: Duration = Duration::from_secs(10);

fn instance(id: &str, root_max_age: Option<Duration>) -> DistributedConfig {
    DistributedConfig { instance_id: id.into(), root_max_age, ..DistributedConfig::default() }
}

/// The first root event on the fabric topic that a raw subscriber reads,
/// as a fresh message (no ack token) to publish again.
async fn capture_root(stream: &mut mq::MessageStream) -> mq::Message {
    loop {
        let m = stream.next().await.expect("stream open").expect("message");
        if m.header("chronica-kind") == Some("root") {
            return mq::Message { ack: None, ..m };
        }
    }
}

pub(crate) fn a_replayed_root_event_past_root_max_age_is_rejected() {
    let hub = unique("hub");
    let url = format!("memory://{hub}");
    let max_age = Duration::from_millis(300);
    let da = Director::builder().trust_token("replay-test").build().unwrap();
    let a = Distributed::connect(&da, &url, instance("a", Some(max_age))).unwrap();
    let (seen, node) = recorder();
    a.register_with("n", node, NodeOptions::default()).unwrap();
    let db = Director::builder().trust_token("replay-test").build().unwrap();
    let b = Distributed::connect(&db, &url, instance("b", None)).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let raw = MemoryAdapter::named(&hub);
    let mut stream = rt.block_on(raw.subscribe("chronica", "capture")).unwrap();
    b.emit_root("app.reset", "first").unwrap();
    let captured = rt.block_on(capture_root(&mut stream));
    let roots = || seen.lock().iter().filter(|e| e.root && e.topic == "app.reset").count();
    assert!(wait_for(WAIT, || roots() == 1), "fresh root event delivered: {:?}", a.stats());

    std::thread::sleep(max_age + Duration::from_millis(200));
    rt.block_on(raw.publish("chronica", captured)).unwrap();
    assert!(wait_for(WAIT, || a.stats().rejected_stale == 1), "{:?}", a.stats());
    let s = a.stats();
    assert_eq!((s.duplicates, s.rejected_forged, s.rejected_unsigned), (0, 0, 0), "{s:?}");

    // A fresh one still passes: the limit judges age, not the sender.
    b.emit_root("app.reset", "second").unwrap();
    assert!(wait_for(WAIT, || roots() == 2), "{:?}", a.stats());
    assert_eq!(a.stats().rejected_stale, 1);
    rt.block_on(raw.close()).unwrap();
    a.close(Duration::from_secs(5)).unwrap();
    b.close(Duration::from_secs(5)).unwrap();
}

/// Without a limit (the default), the same replay is only a duplicate.
pub(crate) fn without_root_max_age_a_replay_is_a_duplicate() {
    let hub = unique("hub");
    let url = format!("memory://{hub}");
    let da = Director::builder().trust_token("replay-test").build().unwrap();
    let a = Distributed::connect(&da, &url, instance("a", None)).unwrap();
    let (seen, node) = recorder();
    a.register_with("n", node, NodeOptions::default()).unwrap();
    let db = Director::builder().trust_token("replay-test").build().unwrap();
    let b = Distributed::connect(&db, &url, instance("b", None)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let raw = MemoryAdapter::named(&hub);
    let mut stream = rt.block_on(raw.subscribe("chronica", "capture")).unwrap();
    b.emit_root("app.reset", "first").unwrap();
    let captured = rt.block_on(capture_root(&mut stream));
    assert!(wait_for(WAIT, || seen.lock().iter().any(|e| e.root && e.topic == "app.reset")));
    rt.block_on(raw.publish("chronica", captured)).unwrap();
    assert!(wait_for(WAIT, || a.stats().duplicates == 1), "{:?}", a.stats());
    assert_eq!(a.stats().rejected_stale, 0);
    rt.block_on(raw.close()).unwrap();
    a.close(Duration::from_secs(5)).unwrap();
    b.close(Duration::from_secs(5)).unwrap();
}

/// A zero limit would refuse every root event; it is refused itself.
pub(crate) fn a_zero_root_max_age_is_refused() {
    let d = Director::builder().trust_token("replay-test").build().unwrap();
    let url = format!("memory://{}", unique("hub"));
    match Distributed::connect(&d, &url, instance("a", Some(Duration::ZERO))) {
        Err(MqError::Config(why)) => assert!(why.contains("root_max_age"), "{why}"),
        other => panic!("a zero root_max_age was not refused: {other:?}"),
    }
    d.close(Duration::from_secs(1)).unwrap();
}
