//! `Director::node_settings`: what a node runs with, its own settings or
//! the director's where it gave none.

mod common;
use common::*;

use chronica::{Backoff, Director, Error, NodeOptions, Overflow, RetryPolicy};
use std::time::Duration;

#[test]
fn a_node_shows_its_own_settings_and_inherits_the_rest() {
    let hub_retry = RetryPolicy { max_retries: Some(7), ..RetryPolicy::default() };
    let d = Director::builder()
        .queue_capacity(100)
        .root_capacity(10)
        .overflow(Overflow::DropNewest)
        .retry(hub_retry.clone())
        .build()
        .unwrap();
    let own = RetryPolicy {
        backoff: Backoff::Linear,
        initial_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    };
    let opts = NodeOptions::default()
        .queue_capacity(8)
        .root_capacity(3)
        .overflow(Overflow::Block)
        .retry(own.clone())
        .concurrency(2);
    d.register_with("own", sink, opts).unwrap();
    d.register("inherits", sink).unwrap();

    let s = d.node_settings("own").unwrap();
    assert_eq!((s.queue_capacity, s.root_capacity, s.overflow, s.concurrency), (8, 3, Overflow::Block, 2));
    assert_eq!(s.retry, own);
    let s = d.node_settings("inherits").unwrap();
    assert_eq!(
        (s.queue_capacity, s.root_capacity, s.overflow, s.concurrency),
        (100, 10, Overflow::DropNewest, 1)
    );
    assert_eq!(s.retry, hub_retry);

    assert_eq!(d.node_settings("nobody"), Err(Error::UnknownNode("nobody".into())));
    d.unregister("own").unwrap();
    assert_eq!(d.node_settings("own"), Err(Error::UnknownNode("own".into())));
}
