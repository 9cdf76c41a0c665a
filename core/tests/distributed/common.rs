//! Helpers: broker URLs, recording nodes, bounded waits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronica::{Batch, NodeError};
use parking_lot::Mutex;

/// What a recording node saw (the joining `pull_current_state` left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) topic: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) source: Option<String>,
    pub(crate) root: bool,
}

/// What a recorder saw, shared with the test.
pub(crate) type Log = Arc<Mutex<Vec<Seen>>>;

/// A node that records every event into a shared list.
pub(crate) fn recorder() -> (Log, impl Fn(&Batch) -> Result<(), NodeError> + Send + Sync + 'static) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let node = move |batch: &Batch| {
        let mut s = s.lock();
        for e in batch.iter().filter(|e| e.topic() != chronica::PULL_CURRENT_STATE) {
            s.push(Seen {
                topic: e.topic().to_owned(),
                payload: e.payload().to_vec(),
                source: e.source().map(str::to_owned),
                root: e.is_root(),
            });
        }
        Ok(())
    };
    (seen, node)
}

/// An instance's configuration: its id, the topic prefix its fabric
/// shares, and time enough for a broker starting up.
pub(crate) fn config(instance: &str, prefix: &str) -> chronica::DistributedConfig {
    chronica::DistributedConfig {
        instance_id: instance.into(),
        topic_prefix: prefix.into(),
        connect_timeout: Duration::from_secs(30),
        ..chronica::DistributedConfig::default()
    }
}

/// A director for the fabric tests: distributed mode needs a trust token.
pub(crate) fn director() -> chronica::Director {
    chronica::Director::builder().trust_token("fabric-test").build().unwrap()
}

/// A broker message carrying `payload` and `headers`, in order: Chronica
/// metadata made by hand, for messages no instance would send (forged,
/// malformed, or staged for a test).
pub(crate) fn with_headers(payload: &str, headers: &[(&str, &str)]) -> chronica::mq::Message {
    let mut m = chronica::mq::Message::new(payload.to_owned());
    m.headers.extend(headers.iter().map(|(k, v)| ((*k).to_owned().into(), (*v).to_owned())));
    m
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub(crate) fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The URL of a broker started by `scripts/brokers.sh` (same ports), or
/// the one in `CHRONICA_<BROKER>_URL`.
pub(crate) fn url(broker: &str) -> String {
    let var = format!("CHRONICA_{}_URL", broker.to_uppercase());
    std::env::var(&var).unwrap_or_else(|_| match broker {
        "kafka" => "kafka://127.0.0.1:19092".into(),
        "nats" => "nats://127.0.0.1:14222".into(),
        _ => "redis://127.0.0.1:16379".into(),
    })
}

/// Runs `scripts/brokers.sh ARGS...`, panicking on failure.
pub(crate) fn brokers(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/brokers.sh");
    let status = std::process::Command::new("bash").arg(script).args(args).status().expect("run brokers.sh");
    assert!(status.success(), "brokers.sh {args:?} failed");
}

/// A runtime for a test that drives an adapter directly.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The next message of an adapter's `stream`, waiting up to 60 s; transient
/// errors are printed and skipped.
pub(crate) async fn next_message(stream: &mut chronica::mq::MessageStream) -> chronica::mq::Message {
    use futures_util::StreamExt;
    loop {
        match tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("a message within 60 s")
        {
            Some(Ok(m)) => return m,
            Some(Err(e)) => eprintln!("transient {e}"),
            None => panic!("stream ended"),
        }
    }
}
