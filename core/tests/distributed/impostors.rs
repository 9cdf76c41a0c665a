//! Messages that claim this instance's own origin are not taken on trust:
//! an instance skips its own user broadcasts unread, but a root event is
//! verified and a malformed message counted whatever origin it claims
//! (one without `chronica-topic` included: skipped as our own broadcast, it
//! was neither delivered nor counted).

use std::time::Duration;

use chronica::mq::{self, memory::MemoryAdapter, MqAdapter};
use chronica::{Director, Distributed, DistributedConfig, NodeOptions};

use crate::common::{recorder, wait_for, with_headers};
use crate::suite::unique;

fn claiming(origin: &str, id: &str, kind: &str, sig: Option<&str>) -> mq::Message {
    let mut m = with_headers(
        "payload",
        &[
            ("chronica-id", id),
            ("chronica-origin", origin),
            ("chronica-kind", kind),
            ("chronica-ts", "1"),
            ("chronica-topic", "app.shutdown"),
        ],
    );
    if let Some(sig) = sig {
        m.headers.push(("chronica-sig".into(), sig.into()));
    }
    m
}

/// `m` without its `chronica-topic`: malformed (see `empty_topic`).
fn without_topic(mut m: mq::Message) -> mq::Message {
    m.headers.retain(|(k, _)| k != "chronica-topic");
    m
}

pub(crate) fn messages_claiming_our_origin_are_checked() {
    let hub = unique("hub");
    let d = Director::builder().trust_token("impostor-test").build().unwrap();
    let cfg = DistributedConfig { instance_id: "a".into(), ..DistributedConfig::default() };
    let a = Distributed::connect(&d, &format!("memory://{hub}"), cfg).unwrap();
    let (seen, node) = recorder();
    a.register_with("n", node, NodeOptions::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let raw = MemoryAdapter::named(&hub);
        let forged = "00".repeat(32);
        for m in [
            claiming("a", "2", "root", None),
            claiming("a", "3", "root", Some(&forged)),
            claiming("a", "seven", "user", None),
            without_topic(claiming("a", "4", "user", None)),
        ] {
            raw.publish("chronica", m).await.unwrap();
        }
        raw.close().await.unwrap();
    });
    let counted = || {
        let s = a.stats();
        (s.rejected_unsigned, s.rejected_forged, s.malformed, s.dead_lettered)
    };
    assert!(wait_for(Duration::from_secs(10), || counted() == (1, 1, 2, 2)), "{:?}", a.stats());
    assert!(seen.lock().is_empty(), "{:?}", seen.lock());
    a.close(Duration::from_secs(5)).unwrap();
}
