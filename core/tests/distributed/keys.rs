//! Keys cross every broker byte for byte: a group hashes them to pick a
//! member and orders per key, so a key lost or changed on one broker would
//! move events on that broker only.

use std::sync::Arc;
use std::time::Duration;

use chronica::{Batch, Distributed, Message, NodeError, NodeOptions};
use parking_lot::Mutex;

use crate::common::wait_for;
use crate::suite::unique;

pub(crate) fn keys_cross_intact(url: &str) {
    let prefix = unique("keys");
    let cfg = |id: &str| crate::common::config(id, &prefix);
    let (da, db) = (crate::common::director(), crate::common::director());
    let a = Distributed::connect(&da, url, cfg("inst-a")).expect("instance a");
    let b = Distributed::connect(&db, url, cfg("inst-b")).expect("instance b");
    let keys: Arc<Mutex<Vec<Option<Vec<u8>>>>> = Arc::default();
    let k = keys.clone();
    let node = move |batch: &Batch| -> Result<(), NodeError> {
        k.lock().extend(batch.iter().filter(|e| !e.is_root()).map(|e| e.key().map(<[u8]>::to_vec)));
        Ok(())
    };
    b.register_with("keyed", node, NodeOptions::default().topic("k")).unwrap();
    let sent: [Option<&[u8]>; 4] = [Some(b"order-7"), Some(&[0xff, 0x00, 0x80, 0x0a]), Some(b""), None];
    for key in sent {
        let msg = Message::new("k", "x");
        a.emit(match key {
            Some(key) => msg.key(key.to_vec()),
            None => msg,
        })
        .unwrap();
    }
    assert!(
        wait_for(Duration::from_secs(30), || keys.lock().len() == sent.len()),
        "{url}: {:?}",
        keys.lock()
    );
    // Kafka spreads different keys over partitions: compare as sets.
    let mut got = keys.lock().clone();
    let mut want: Vec<Option<Vec<u8>>> = sent.iter().map(|k| k.map(<[u8]>::to_vec)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{url}");
    for (d, x) in [(&da, a), (&db, b)] {
        x.close(Duration::from_secs(10)).unwrap();
        d.close(Duration::from_secs(10)).unwrap();
    }
}
