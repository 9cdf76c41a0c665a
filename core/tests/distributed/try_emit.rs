//! `Distributed::try_emit` / `try_emit_to`: where a local target under the
//! `block` policy is full they fail at once, and the event neither reaches
//! a local node nor goes out to the broker.

use std::time::Duration;

use chronica::mq::MqError;
use chronica::{Director, Distributed, Error, Message, NodeOptions, Overflow};

use crate::common::{config, recorder, wait_for, Log};
use crate::suite::unique;

const WAIT: Duration = Duration::from_secs(30);

/// Whether `r` is the refusal of a full "slow".
pub(crate) fn full(r: &chronica::mq::MqResult<u64>) -> bool {
    matches!(r, Err(MqError::Engine(Error::QueueFull(uid))) if uid == "slow")
}

/// Two instances on one memory broker: `a`, whose director `da` is under
/// `block` with lanes of one and serves "slow" (registered disconnected,
/// so its lane fills), and `b`, serving "far".
pub(crate) struct Blocked {
    pub(crate) da: Director,
    pub(crate) db: Director,
    pub(crate) a: Distributed,
    pub(crate) b: Distributed,
    pub(crate) slow: Log,
    pub(crate) far: Log,
}

impl Blocked {
    /// `block_timeout` far beyond a test's own waits: waiting for it would
    /// hang or fail the test rather than pass it.
    pub(crate) fn new(block_timeout: Duration) -> Self {
        let (url, prefix) = (format!("memory://{}", unique("hub")), unique("t"));
        let da = Director::builder()
            .trust_token("fabric-test")
            .overflow(Overflow::Block)
            .queue_capacity(1)
            .block_timeout(block_timeout)
            .build()
            .unwrap();
        let db = crate::common::director();
        let a = Distributed::connect(&da, &url, config("inst-a", &prefix)).unwrap();
        let b = Distributed::connect(&db, &url, config("inst-b", &prefix)).unwrap();
        let (slow, slow_node) = recorder();
        let (far, far_node) = recorder();
        a.register_with("slow", slow_node, NodeOptions::default().connected(false)).unwrap();
        b.register_with("far", far_node, NodeOptions::default()).unwrap();
        Self { da, db, a, b, slow, far }
    }

    pub(crate) fn close(self) {
        self.a.close(WAIT).unwrap();
        self.b.close(WAIT).unwrap();
        self.da.close(WAIT).unwrap();
        self.db.close(WAIT).unwrap();
    }
}

#[test]
fn a_full_block_target_fails_try_emit_at_once_and_nothing_is_published() {
    let t = Blocked::new(Duration::from_secs(600));
    let Blocked { da, a, slow, far, .. } = &t;

    a.try_emit(Message::new("first", "1")).unwrap();
    assert!(full(&a.try_emit(Message::new("refused", "2"))));
    assert!(full(&a.try_emit_to("slow", Message::new("refused", "3"))));
    // A target elsewhere is not this instance's to be full.
    a.try_emit_to("far", Message::new("direct", "4")).unwrap();
    assert!(wait_for(WAIT, || far.lock().len() == 2), "far got {:?}", far.lock());
    let s = da.stats("slow").unwrap();
    assert_eq!((s.accepted, s.dropped), (2, 0), "pull_current_state and the first event only");

    da.node_connected("slow").unwrap();
    assert!(wait_for(WAIT, || da.stats("slow").unwrap().pending == 0));
    a.try_emit(Message::new("last", "5")).unwrap();
    assert!(wait_for(WAIT, || far.lock().len() == 3 && slow.lock().len() == 2));
    assert!(a.flush(WAIT));
    let topics = |log: &crate::common::Log| log.lock().iter().map(|e| e.topic.clone()).collect::<Vec<_>>();
    assert_eq!(topics(slow), ["first", "last"]);
    assert_eq!(topics(far), ["first", "direct", "last"]);
    assert!(da.stats("slow").unwrap().balanced());
    t.close();
}
