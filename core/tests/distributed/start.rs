//! Where a subscription starts (the `MqAdapter::subscribe` contract): a
//! group the broker has not seen starts at new messages, whatever history
//! the topic holds, so a new instance is not flooded with the retained
//! past; a group that acknowledged messages resumes after them.

use std::time::Duration;

use chronica::mq::Message;
use futures_util::StreamExt;

use crate::common::next_message;
use crate::suite::unique;

/// A topic with 200 messages of history; a new group's first message is
/// the one published after it subscribed.
pub(crate) fn new_group_starts_at_new_messages(url: &str) {
    const HISTORY: usize = 200;
    let topic = unique("start");
    let rt = crate::common::runtime();
    rt.block_on(async {
        let adapter = chronica::mq::connect(url).await.expect("connect");
        // The first group makes the topic (or stream) and reads the history.
        let mut early = adapter.subscribe(&topic, &unique("early")).await.expect("subscribe");
        let history: Vec<Message> = (0..HISTORY).map(|n| Message::new(format!("old{n}"))).collect();
        let results = adapter.publish_batch(&topic, history).await;
        assert!(results.iter().all(Result::is_ok), "{:?}", results.iter().find(|r| r.is_err()));
        for _ in 0..HISTORY {
            let m = next_message(&mut early).await;
            adapter.ack(&m).await.unwrap();
        }
        let mut late = adapter.subscribe(&topic, &unique("late")).await.expect("subscribe");
        adapter.publish(&topic, Message::new("new")).await.unwrap();
        let first = next_message(&mut late).await;
        assert_eq!(
            String::from_utf8_lossy(&first.value),
            "new",
            "{url}: a new group was handed the topic's history"
        );
        adapter.close().await.unwrap();
    });
}

/// A wildcard subscription of a new group: a matching topic with history
/// starts at its end; a matching topic made after the subscription began
/// is read from its first message. Not for Redis, which subscribes by
/// exact stream name only.
#[cfg(any(feature = "kafka", feature = "nats"))]
pub(crate) fn wildcard_group_starts_at_new_messages(url: &str) {
    let url = url.to_owned();
    let root = unique("wild");
    let (old, later) = (format!("{root}.old"), format!("{root}.later"));
    let rt = crate::common::runtime();
    rt.block_on(async {
        let adapter = chronica::mq::connect(&url).await.expect("connect");
        let mut early = adapter.subscribe(&old, &unique("early")).await.expect("subscribe");
        let history: Vec<Message> = (0..50).map(|n| Message::new(format!("old{n}"))).collect();
        assert!(adapter.publish_batch(&old, history).await.iter().all(Result::is_ok));
        for _ in 0..50 {
            next_message(&mut early).await;
        }
        let mut wild = adapter.subscribe(&format!("{root}.*"), &unique("wild")).await.expect("subscribe");
        adapter.publish(&later, Message::new("first-of-later")).await.unwrap();
        adapter.publish(&old, Message::new("new-on-old")).await.unwrap();
        // Kafka rebalances when the wildcard finds the new topic, and may
        // then hand an unacknowledged message again (at-least-once).
        let mut got = std::collections::BTreeSet::new();
        while got.len() < 2 {
            let m = next_message(&mut wild).await;
            let value = String::from_utf8_lossy(&m.value).into_owned();
            assert!(!value.starts_with("old"), "{url}: history replayed: {value}");
            adapter.ack(&m).await.unwrap();
            got.insert(value);
        }
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["first-of-later", "new-on-old"], "{url}");
        adapter.close().await.unwrap();
    });
}

/// More members in one group than the topic has partitions (Kafka topics
/// here have 4): every member's `subscribe` succeeds, the idle ones just
/// receive nothing, and together they receive every message.
pub(crate) fn more_members_than_partitions(url: &str) {
    const MEMBERS: usize = 6;
    const N: usize = 100;
    let url = url.to_owned();
    let (topic, group) = (unique("crowd"), unique("g"));
    let rt = crate::common::runtime();
    rt.block_on(async {
        let mut members = Vec::new();
        for _ in 0..MEMBERS {
            let adapter = chronica::mq::connect(&url).await.expect("connect");
            let stream = adapter.subscribe(&topic, &group).await.expect("every member may subscribe");
            members.push((adapter, stream));
        }
        let batch: Vec<Message> = (0..N).map(|n| Message::new(format!("m{n}"))).collect();
        assert!(members[0].0.publish_batch(&topic, batch).await.iter().all(Result::is_ok));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (adapter, mut stream) in members {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(Ok(m)) = stream.next().await {
                    adapter.ack(&m).await.unwrap();
                    if tx.send(String::from_utf8_lossy(&m.value).into_owned()).is_err() {
                        return;
                    }
                }
            });
        }
        let mut got = std::collections::BTreeSet::new();
        while got.len() < N {
            let v = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
            got.insert(v.expect("every message within 60 s").expect("a member"));
        }
    });
}
