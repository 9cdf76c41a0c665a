//! Foreign topics: broker topics of producers that know nothing of
//! Chronica, read as plain events on the topic of that name.

use std::time::Duration;

use chronica::mq::{self, memory::MemoryAdapter, MqAdapter, MqError};
use chronica::{Director, Distributed, DistributedConfig, NodeOptions};

use crate::common::{recorder, wait_for};
use crate::suite::unique;

fn with_foreign(topics: &[&str]) -> DistributedConfig {
    DistributedConfig {
        instance_id: "reader".into(),
        foreign_topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        ..DistributedConfig::default()
    }
}

/// A plain message on a listed foreign topic arrives as a user event on
/// that topic, to the nodes that subscribe to it.
pub(crate) fn a_foreign_topic_is_read_as_events() {
    let hub = unique("hub");
    let d = Director::builder().trust_token("foreign-test").build().unwrap();
    let reader = Distributed::connect(&d, &format!("memory://{hub}"), with_foreign(&["orders-in"])).unwrap();
    let (seen, node) = recorder();
    reader.register_with("orders", node, NodeOptions::default().topic("orders-in")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let raw = MemoryAdapter::named(&hub);
        raw.publish("orders-in", mq::Message::new("order 1")).await.unwrap();
        raw.close().await.unwrap();
    });
    assert!(wait_for(Duration::from_secs(10), || seen.lock().len() == 1), "{:?}", reader.stats());
    let got = seen.lock()[0].clone();
    assert_eq!((got.topic.as_str(), got.payload.as_slice(), got.root), ("orders-in", &b"order 1"[..], false));
    assert_eq!(reader.stats().foreign, 1);
    reader.close(Duration::from_secs(5)).unwrap();
}

/// The fabric's own topics, wildcards, bad names and repeats are refused
/// at construction: each would deliver events twice or loop dead letters.
pub(crate) fn bad_foreign_topics_are_refused() {
    let d = Director::builder().trust_token("foreign-test").build().unwrap();
    let url = format!("memory://{}", unique("hub"));
    for bad in
        [&["chronica"][..], &["chronica.dlq"], &[">"], &["orders.*"], &[""], &["a b"], &[".x"], &["x", "x"]]
    {
        match Distributed::connect(&d, &url, with_foreign(bad)) {
            Err(MqError::Config(why)) => assert!(why.contains("foreign topic"), "{bad:?}: {why}"),
            other => panic!("{bad:?} was not refused: {other:?}"),
        }
    }
    let zero = DistributedConfig { dedup_window: Duration::ZERO, ..DistributedConfig::default() };
    assert!(matches!(Distributed::connect(&d, &url, zero), Err(MqError::Config(_))));
    d.close(Duration::from_secs(1)).unwrap();
}
