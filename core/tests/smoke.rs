use chronica::{Batch, Director, Message, NodeError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn smoke() {
    let d = Director::new().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    d.register("a", move |b: &Batch| -> Result<(), NodeError> {
        g.lock().unwrap().extend(b.iter().map(|e| e.topic().to_string()));
        Ok(())
    })
    .unwrap();
    d.register("b", |_b: &Batch| -> Result<(), NodeError> { Ok(()) }).unwrap();
    for i in 0..100 {
        d.emit(Message::new(format!("t{i}"), "x").source("b")).unwrap();
    }
    assert_eq!(d.close(Duration::from_secs(2)).unwrap(), 0);
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 101);
    assert_eq!(got[0], "chronica.pull_current_state");
    let s = d.stats("a").unwrap();
    assert!(s.balanced(), "{s:?}");
}
