//! Bad input gets a clear error and changes nothing.

mod common;
use common::*;

use chronica::{
    Director, Error, Event, EventBus, Message, NodeOptions, Retry, RetryPolicy, SubscribeOptions,
};
use std::time::Duration;

#[test]
fn builder_refuses_zero_sizes_and_bad_retry() {
    assert!(matches!(Director::builder().queue_capacity(0).build(), Err(Error::InvalidArgument(_))));
    assert!(matches!(Director::builder().root_capacity(0).build(), Err(Error::InvalidArgument(_))));
    assert!(matches!(Director::builder().batch_size(0).build(), Err(Error::InvalidArgument(_))));
    // A lane's counts share one 64-bit word: at most 2^31 - 1 events.
    assert!(matches!(Director::builder().queue_capacity(1 << 31).build(), Err(Error::InvalidArgument(_))));
    assert!(Director::builder().queue_capacity(chronica::MAX_CAPACITY).build().is_ok());
    let bad = RetryPolicy { multiplier: 0.0, ..RetryPolicy::default() };
    assert!(matches!(Director::builder().retry(bad).build(), Err(Error::InvalidArgument(_))));
}

/// The root lane is held to the user lanes' bound: a larger value (a C
/// caller's `(size_t)-1`) is refused, at build or at registration, and
/// registers nothing.
#[test]
fn root_capacity_is_at_most_max_capacity() {
    let too_big = chronica::MAX_CAPACITY + 1;
    for n in [too_big, usize::MAX] {
        let e = Director::builder().root_capacity(n).build().unwrap_err();
        assert!(matches!(&e, Error::InvalidArgument(why) if why.contains("root_capacity")), "{e}");
    }
    let d = Director::builder().root_capacity(chronica::MAX_CAPACITY).build().unwrap();
    for n in [too_big, usize::MAX] {
        let refused = d.register_with("n", sink, NodeOptions::default().root_capacity(n));
        assert!(
            matches!(&refused, Err(Error::InvalidArgument(why)) if why.contains("root_capacity")),
            "{refused:?}"
        );
    }
    assert!(d.nodes().is_empty());
    d.register_with("n", sink, NodeOptions::default().root_capacity(chronica::MAX_CAPACITY)).unwrap();
}

/// An async runtime of `usize::MAX` threads was accepted at build and made
/// every `register_async` panic (tokio's allocation); the count is bounded
/// at build, where the mistake is made.
#[test]
fn worker_threads_is_at_most_the_bound() {
    for n in [0, chronica::MAX_WORKER_THREADS + 1, usize::MAX] {
        let e = Director::builder().worker_threads(n).build().unwrap_err();
        assert!(matches!(&e, Error::InvalidArgument(why) if why.contains("worker_threads")), "{n}: {e}");
    }
    let d = Director::builder().worker_threads(chronica::MAX_WORKER_THREADS).build().unwrap();
    d.close(Duration::from_secs(5)).unwrap();
}

/// SPEC 2.5, no busy loop: every backoff shape is a multiple of the first
/// delay, so a zero one would call a failing node in a busy loop. Every
/// place a policy is set refuses it, with a reason, and changes nothing.
#[test]
fn a_zero_first_retry_delay_is_refused_everywhere() {
    let zero =
        RetryPolicy { initial_delay: Duration::ZERO, max_delay: Duration::ZERO, ..RetryPolicy::default() };
    let e = Director::builder().retry(zero.clone()).build().unwrap_err();
    assert!(matches!(&e, Error::InvalidArgument(why) if why.contains("initial_delay")), "{e}");
    let d = Director::new().unwrap();
    let refused = d.register_with("n", sink, NodeOptions::default().retry(zero));
    assert!(matches!(refused, Err(Error::InvalidArgument(_))), "{refused:?}");
    let bus = EventBus::new(d.clone());
    for retry in
        [Retry::constant(Duration::ZERO, None), Retry { initial_delay: Duration::ZERO, ..Retry::default() }]
    {
        let on = bus.on("t", |_: &Event| Ok(()), SubscribeOptions::default().retry(retry));
        assert!(matches!(on, Err(Error::InvalidArgument(_))), "{on:?}");
    }
    assert!(d.nodes().is_empty() && bus.subscriptions().is_empty());
    // The smallest delay there is stays allowed.
    let tiny = RetryPolicy { initial_delay: Duration::from_nanos(1), ..RetryPolicy::default() };
    d.register_with("n", sink, NodeOptions::default().retry(tiny)).unwrap();
}

#[test]
fn uids_are_one_to_255_bytes_and_unique() {
    let d = Director::new().unwrap();
    assert!(matches!(d.register("", sink), Err(Error::InvalidArgument(_))));
    assert!(matches!(d.register(&"x".repeat(256), sink), Err(Error::InvalidArgument(_))));
    d.register(&"x".repeat(255), sink).unwrap();
    d.register("é", sink).unwrap();
    assert_eq!(d.register("é", sink), Err(Error::DuplicateNode("é".into())));
    assert_eq!(d.nodes().len(), 2);
    // A NUL panicked the worker's spawn and left the node routed with no
    // worker: close then waited forever.
    assert!(matches!(d.register("a\0b", sink), Err(Error::InvalidArgument(_))));
    assert_eq!(d.nodes().len(), 2);
    assert_eq!(d.close(std::time::Duration::from_secs(5)), Ok(0));
}

#[test]
fn the_largest_batch_size_does_not_overflow() {
    let d = Director::builder().batch_size(usize::MAX).build().unwrap();
    let log = Log::new();
    d.register_with("n", log.node(), NodeOptions::default().connected(false)).unwrap();
    for t in ["a", "b", "c"] {
        d.emit(Message::new(t, "")).unwrap();
    }
    d.node_connected("n").unwrap();
    wait_for("the events", || log.user_topics() == ["a", "b", "c"]);
    assert_eq!(d.close(std::time::Duration::from_secs(5)), Ok(0));
}

#[test]
fn refused_registrations_change_nothing() {
    let d = Director::new().unwrap();
    let log = Log::new();
    d.register("a", log.node()).unwrap();
    let bad = [
        NodeOptions::default().topic("a.>.b"),
        NodeOptions::default().topic(""),
        NodeOptions::default().concurrency(0),
        NodeOptions::default().queue_capacity(0),
        NodeOptions::default().queue_capacity(1 << 31),
        NodeOptions::default().queue_capacity(2).concurrency(3),
        NodeOptions::default().group(""),
        NodeOptions::default().retry(RetryPolicy { jitter: 2.0, ..RetryPolicy::default() }),
    ];
    for opts in bad {
        assert!(matches!(d.register_with("b", sink, opts), Err(Error::InvalidArgument(_))));
    }
    assert_eq!(d.nodes(), ["a"]);
    d.emit(Message::new("t", "")).unwrap();
    settle(&d, "a");
    assert_eq!(log.count_user(), 1);
    assert_eq!(d.close(Duration::from_secs(1)), Ok(0));
}

#[test]
fn errors_say_what_is_wrong() {
    let d = Director::new().unwrap();
    assert_eq!(
        d.emit_to("nobody", Message::new("t", "")).unwrap_err().to_string(),
        "unknown node \"nobody\""
    );
    let e = d.register("", sink).unwrap_err().to_string();
    assert!(e.contains("1 to 255 bytes"), "{e}");
}

/// `Duration::MAX` means "forever" wherever a duration is taken: a close,
/// a `block` wait and a retry delay saturate instead of panicking on
/// `Instant` overflow (which killed the worker thread or the caller).
#[test]
fn the_longest_durations_mean_forever_not_a_panic() {
    let forever = RetryPolicy {
        initial_delay: Duration::MAX,
        max_delay: Duration::MAX,
        max_retries: Some(3),
        ..RetryPolicy::default()
    };
    let d = Director::builder()
        .queue_capacity(1)
        .overflow(chronica::Overflow::Block)
        .block_timeout(Duration::MAX)
        .retry(forever)
        .build()
        .unwrap();
    let fails = Log::new();
    fails.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    d.register("fails", fails.node()).unwrap();
    // The pull fails once and then waits "forever" for its retry.
    wait_for("the first failure", || d.stats("fails").unwrap().failures == 1);
    let s = d.stats("fails").unwrap();
    assert_eq!((s.pending, s.retries), (1, 0));
    // A block emit with an endless timeout into a lane with room.
    d.emit(Message::new("t", "")).unwrap();
    assert_eq!(d.stats("fails").unwrap().accepted, 2);
    assert_eq!(d.close(Duration::from_millis(50)), Ok(2), "the held pull and the event are left");
    // Nothing to drain: an endless close returns at once.
    let idle = Director::new().unwrap();
    idle.register("n", sink).unwrap();
    settle(&idle, "n");
    assert_eq!(idle.close(Duration::MAX), Ok(0));
}
