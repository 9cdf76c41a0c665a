//! A unicast whose target no instance has is not lost without a trace:
//! every instance that reads a unicast and lacks its target counts it in
//! `unicast_not_here`, so one counted by every instance reached nobody.
//! Before, such a unicast was acknowledged by every instance, uncounted.

use std::time::Duration;

use chronica::{Distributed, Message, NodeOptions};

use crate::common::{config, director, recorder, wait_for};
use crate::suite::unique;

const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn a_unicast_to_nobody_is_counted_everywhere(url: &str) {
    let prefix = unique("unicast");
    let (da, db) = (director(), director());
    let a = Distributed::connect(&da, url, config("inst-a", &prefix)).expect("instance a");
    let b = Distributed::connect(&db, url, config("inst-b", &prefix)).expect("instance b");
    let (b1, b1_node) = recorder();
    a.register_with("a1", |_: &chronica::Batch| Ok(()), NodeOptions::default()).unwrap();
    b.register_with("b1", b1_node, NodeOptions::default()).unwrap();
    let counts = || (a.stats().unicast_not_here, b.stats().unicast_not_here);

    // To b1, on b: a (which reads its own back) counts it, b delivers it.
    a.emit_to("b1", Message::new("direct", "to-b1").source("a1")).unwrap();
    assert!(wait_for(WAIT, || b1.lock().iter().any(|s| s.payload == b"to-b1")), "{:?}", b.stats());
    assert!(wait_for(WAIT, || counts() == (1, 0)), "{url}: {:?}", counts());
    // To nobody, a user event and a root event: both instances count each.
    a.emit_to("nobody", Message::new("direct", "lost").source("a1")).unwrap();
    a.emit_root_to("nobody-either", "app.poke", "lost too").unwrap();
    assert!(
        wait_for(WAIT, || counts() == (3, 2)),
        "{url}: {:?}; a {:?}; b {:?}",
        counts(),
        a.stats(),
        b.stats()
    );
    // A later unicast to b1 shows the counts settled where they were.
    a.emit_to("b1", Message::new("direct", "marker").source("a1")).unwrap();
    assert!(wait_for(WAIT, || b1.lock().iter().any(|s| s.payload == b"marker")));
    assert!(wait_for(WAIT, || counts().0 == 4), "{url}: {:?}", counts());
    assert_eq!(counts(), (4, 2), "{url}");
    assert_eq!(b1.lock().len(), 2, "{url}: {:?}", b1.lock());

    for (d, x) in [(&da, a), (&db, b)] {
        x.close(Duration::from_secs(10)).unwrap();
        d.close(Duration::from_secs(10)).unwrap();
    }
}
