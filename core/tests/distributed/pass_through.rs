//! The calls a fault-injecting test adapter does not break, handed to the
//! adapter it wraps (its field `inner`), so that each test's adapter
//! spells out only its fault.
//!
//! A macro, not a wrapper type with overridable defaults: the adapters
//! keep `MqAdapter`'s own defaults for the calls not listed (the batch
//! calls go through their `publish` and `ack`, the fault included), as
//! they did when each wrote its delegation out.

/// Expands, inside an `impl MqAdapter`, to the listed calls of
/// `publish`, `subscribe`, `ack`, `release` and `close`, each one
/// `self.inner`'s.
macro_rules! pass_through {
    (publish) => {
        fn publish<'a>(
            &'a self,
            topic: &'a str,
            message: ::chronica::mq::Message,
        ) -> ::chronica::mq::BoxFuture<'a, ::chronica::mq::MqResult<()>> {
            self.inner.publish(topic, message)
        }
    };
    (subscribe) => {
        fn subscribe<'a>(
            &'a self,
            pattern: &'a str,
            group: &'a str,
        ) -> ::chronica::mq::BoxFuture<'a, ::chronica::mq::MqResult<::chronica::mq::MessageStream>> {
            self.inner.subscribe(pattern, group)
        }
    };
    (ack) => {
        fn ack<'a>(
            &'a self,
            message: &'a ::chronica::mq::Message,
        ) -> ::chronica::mq::BoxFuture<'a, ::chronica::mq::MqResult<()>> {
            self.inner.ack(message)
        }
    };
    (release) => {
        fn release<'a>(
            &'a self,
            messages: &'a [::chronica::mq::Message],
        ) -> ::chronica::mq::BoxFuture<'a, ::chronica::mq::MqResult<()>> {
            self.inner.release(messages)
        }
    };
    (close) => {
        fn close(&self) -> ::chronica::mq::BoxFuture<'_, ::chronica::mq::MqResult<()>> {
            self.inner.close()
        }
    };
    ($($call:ident),+ $(,)?) => {
        $(pass_through!($call);)+
    };
}

pub(crate) use pass_through;
