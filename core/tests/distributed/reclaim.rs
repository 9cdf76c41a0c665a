//! Redis Streams: entries a member read and never acknowledged (it died)
//! are taken over by another member of the group once they have been
//! idle for the reclaim time (`XAUTOCLAIM`), and acknowledged there.

use std::collections::BTreeSet;

use chronica::mq::Message;

use crate::common::next_message;
use crate::suite::unique;

/// A member of a new `group` on `stream` that reads `n` entries it
/// published and acknowledges none.
async fn member_with_unacked(
    url: &str,
    stream: &str,
    group: &str,
    n: usize,
) -> (std::sync::Arc<dyn chronica::mq::MqAdapter>, chronica::mq::MessageStream) {
    let member = chronica::mq::connect(url).await.expect("connect");
    let mut read = member.subscribe(stream, group).await.expect("subscribe");
    let batch: Vec<Message> = (0..n).map(|i| Message::new(format!("m{i}"))).collect();
    assert!(member.publish_batch(stream, batch).await.iter().all(Result::is_ok));
    for _ in 0..n {
        next_message(&mut read).await; // read, never acknowledged
    }
    (member, read)
}

/// A fresh connection of the test's own.
async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// Entries of `group` read and not yet acknowledged.
async fn pending(url: &str, stream: &str, group: &str) -> u64 {
    let reply: redis::Value =
        redis::cmd("XPENDING").arg(stream).arg(group).query_async(&mut redis_conn(url).await).await.unwrap();
    match &reply {
        redis::Value::Array(v) => redis::from_redis_value_ref::<u64>(&v[0]).unwrap(),
        other => panic!("XPENDING gave {other:?}"),
    }
}

pub(crate) fn dead_members_entries_are_reclaimed() {
    const N: usize = 20;
    let url = crate::common::url("redis");
    let (stream, group) = (unique("reclaim"), unique("g"));
    let rt = crate::common::runtime();
    rt.block_on(async {
        let (dying, read) = member_with_unacked(&url, &stream, &group, N).await;
        dying.close().await.unwrap();
        drop(read);

        let heir = chronica::mq::connect(&format!("{url}?reclaim_idle_ms=300")).await.expect("connect");
        let mut taken = heir.subscribe(&stream, &group).await.expect("subscribe");
        let mut got = BTreeSet::new();
        while got.len() < N {
            let m = next_message(&mut taken).await;
            heir.ack(&m).await.unwrap();
            got.insert(String::from_utf8_lossy(&m.value).into_owned());
        }
        assert_eq!(got, (0..N).map(|n| format!("m{n}")).collect::<BTreeSet<_>>());

        assert_eq!(pending(&url, &stream, &group).await, 0);
        heir.close().await.unwrap();
    });
}

/// Entries a member read and did not acknowledge, trimmed from the stream
/// before it reads its pending entries again (after a reconnect), come
/// back with no fields. They are acknowledged and reported as one broker
/// error, never handed on as events.
pub(crate) fn trimmed_pending_entries_are_reported_not_delivered() {
    use futures_util::StreamExt;
    const N: usize = 10;
    let url = crate::common::url("redis");
    let (stream, group) = (unique("trimmed"), unique("g"));
    let rt = crate::common::runtime();
    rt.block_on(async {
        let (member, mut read) = member_with_unacked(&url, &stream, &group, N).await;
        let mut c = redis_conn(&url).await;
        let _: redis::Value =
            redis::cmd("XTRIM").arg(&stream).arg("MAXLEN").arg(0).query_async(&mut c).await.unwrap();
        // Drop every client's connection: the member reconnects and reads
        // its pending entries from the start.
        let _: redis::RedisResult<redis::Value> =
            redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query_async(&mut c).await;
        let mut reported = false;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while !reported {
            let item = tokio::time::timeout_at(deadline, read.next())
                .await
                .expect("no report of the trimmed entries");
            match item.expect("stream ended") {
                Err(e) => reported = e.to_string().contains("trimmed"),
                Ok(m) => panic!("a trimmed entry was handed on as {:?}", String::from_utf8_lossy(&m.value)),
            }
        }
        assert_eq!(pending(&url, &stream, &group).await, 0);
        member.close().await.unwrap();
    });
}
