//! A fabric emit's host extension (`Message::extension`) reaches the local
//! nodes, as a director's emit's does; it never crosses the broker.

use std::sync::Arc;
use std::time::Duration;

use chronica::{Batch, Distributed, DistributedConfig, Message, NodeError, NodeOptions};
use parking_lot::Mutex;

use crate::common::wait_for;
use crate::suite::unique;

/// Per user event, the `u32` its extension held.
type Seen = Arc<Mutex<Vec<Option<u32>>>>;

/// A node recording what `Seen` holds.
fn extensions() -> (Seen, impl Fn(&Batch) -> Result<(), NodeError> + Send + Sync) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let node = move |batch: &Batch| {
        for e in batch.iter().filter(|e| !e.is_root()) {
            s.lock().push(e.extension().and_then(|x| x.downcast_ref::<u32>().copied()));
        }
        Ok(())
    };
    (seen, node)
}

pub(crate) fn a_fabric_emit_keeps_its_extension_for_local_nodes() {
    let url = format!("memory://{}", unique("hub"));
    let cfg = |id: &str| DistributedConfig { instance_id: id.into(), ..DistributedConfig::default() };
    let (da, db) = (crate::common::director(), crate::common::director());
    let a = Distributed::connect(&da, &url, cfg("a")).unwrap();
    let b = Distributed::connect(&db, &url, cfg("b")).unwrap();
    let (here, node) = extensions();
    a.register_with("here", node, NodeOptions::default()).unwrap();
    let (there, node) = extensions();
    b.register_with("there", node, NodeOptions::default()).unwrap();

    a.emit(Message::new("t", "x").extension(Arc::new(7u32))).unwrap();
    a.try_emit(Message::new("t", "y").extension(Arc::new(8u32))).unwrap();
    let wait = Duration::from_secs(10);
    assert!(wait_for(wait, || here.lock().len() == 2 && there.lock().len() == 2));
    assert_eq!(*here.lock(), [Some(7), Some(8)]);
    assert_eq!(*there.lock(), [None, None], "an extension never crosses the broker");
    a.close(Duration::from_secs(5)).unwrap();
    b.close(Duration::from_secs(5)).unwrap();
}
