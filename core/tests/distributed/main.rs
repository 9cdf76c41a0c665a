//! Distributed mode (SPEC section 4): two instances exchanging events
//! through each adapter. The in-memory adapter's tests always run; the
//! Kafka, NATS and Redis ones run with their cargo feature against the
//! brokers `scripts/brokers.sh up` starts (`scripts/test-distributed.sh`),
//! and FAIL when their broker cannot be reached. Run them one at a time
//! (`--test-threads=1`): the fault tests kill and restart the broker.

// Some helpers serve only the broker tests, built with their features.
mod ack_stall;
mod acks;
mod batches;
mod blocking;
mod close;
#[cfg_attr(not(any(feature = "kafka", feature = "nats", feature = "redis")), allow(dead_code))]
mod common;
mod emit_until;
mod empty_topic;
mod extension;
mod foreign;
mod groups;
mod impostors;
mod join;
mod keys;
mod leave;
mod pass_through;
#[cfg(feature = "redis")]
mod reclaim;
mod refused;
mod replay;
mod resubscribe;
#[cfg_attr(not(any(feature = "kafka", feature = "nats", feature = "redis")), allow(dead_code))]
mod start;
#[cfg_attr(not(any(feature = "kafka", feature = "nats", feature = "redis")), allow(dead_code))]
mod suite;
mod try_emit;
mod unicast;
mod unpublished;

mod memory {
    use super::suite;

    #[test]
    fn scenario() {
        suite::scenario(&format!("memory://{}", suite::unique("hub")));
    }

    #[test]
    fn emit_order_kept() {
        suite::emit_order_kept(&format!("memory://{}", suite::unique("hub")), None);
    }

    #[test]
    fn many_events_exactly_once() {
        suite::stream_exactly_once(&format!("memory://{}", suite::unique("hub")), 20_000, None);
    }

    #[test]
    fn group_left_by_one_instance() {
        super::groups::group_left_by_one_instance(&format!("memory://{}", suite::unique("hub")));
    }

    #[test]
    fn a_share_only_the_sender_could_take_is_counted() {
        super::groups::a_share_only_the_sender_could_take_is_counted(&format!(
            "memory://{}",
            suite::unique("hub")
        ));
    }

    #[test]
    fn new_group_starts_at_new_messages() {
        super::start::new_group_starts_at_new_messages(&format!("memory://{}", suite::unique("hub")));
    }

    #[test]
    fn a_full_block_node_does_not_stall_the_instance() {
        super::blocking::a_full_block_node_does_not_stall_the_instance(&format!(
            "memory://{}",
            suite::unique("hub")
        ));
    }

    /// The constructors document that they work from async code: a
    /// refusal there is an error, not a panic dropping the layer's runtime.
    #[test]
    fn construction_errors_from_async_code_are_errors() {
        use chronica::mq::{memory::MemoryAdapter, MqError};
        use chronica::{Distributed, DistributedConfig};
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        rt.block_on(async {
            let d = crate::common::director();
            let e = Distributed::connect(&d, "carrier-pigeon://x", DistributedConfig::default()).unwrap_err();
            assert!(matches!(e, MqError::Config(_)), "{e}");
            d.close(std::time::Duration::from_secs(1)).unwrap();
            let adapter = std::sync::Arc::new(MemoryAdapter::named(&suite::unique("hub")));
            let e = Distributed::with_adapter(&d, adapter, DistributedConfig::default()).unwrap_err();
            assert!(matches!(e, MqError::Engine(chronica::Error::Closed)), "{e}");
        });
    }

    #[test]
    fn a_foreign_topic_is_read_as_events() {
        super::foreign::a_foreign_topic_is_read_as_events();
    }

    #[test]
    fn bad_foreign_topics_are_refused() {
        super::foreign::bad_foreign_topics_are_refused();
    }

    #[test]
    fn a_replayed_root_event_past_root_max_age_is_rejected() {
        super::replay::a_replayed_root_event_past_root_max_age_is_rejected();
    }

    #[test]
    fn without_root_max_age_a_replay_is_a_duplicate() {
        super::replay::without_root_max_age_a_replay_is_a_duplicate();
    }

    #[test]
    fn a_zero_root_max_age_is_refused() {
        super::replay::a_zero_root_max_age_is_refused();
    }

    #[test]
    fn a_user_event_published_twice_is_delivered_once() {
        super::replay::a_user_event_published_twice_is_delivered_once();
    }

    #[test]
    fn an_unsigned_user_message_cannot_shadow_a_root_event() {
        super::replay::an_unsigned_user_message_cannot_shadow_a_root_event();
    }

    #[test]
    fn keys_cross_intact() {
        super::keys::keys_cross_intact(&format!("memory://{}", suite::unique("hub")));
    }

    #[test]
    fn empty_topic_crosses_and_a_missing_topic_is_malformed() {
        super::empty_topic::empty_topic_crosses_and_a_missing_topic_is_malformed(&format!(
            "memory://{}",
            suite::unique("hub")
        ));
    }

    #[test]
    fn a_unicast_to_nobody_is_counted_everywhere() {
        super::unicast::a_unicast_to_nobody_is_counted_everywhere(&format!(
            "memory://{}",
            suite::unique("hub")
        ));
    }

    #[test]
    fn a_fabric_emit_keeps_its_extension_for_local_nodes() {
        super::extension::a_fabric_emit_keeps_its_extension_for_local_nodes();
    }

    #[test]
    fn a_resubscribe_that_never_answers_is_retried() {
        super::resubscribe::a_resubscribe_that_never_answers_is_retried();
    }

    #[test]
    fn an_ack_that_never_answers_does_not_stop_the_subscription() {
        super::ack_stall::an_ack_that_never_answers_does_not_stop_the_subscription(
            chronica::AckMode::Enqueue,
        );
    }

    #[test]
    fn an_ack_that_never_answers_does_not_stop_the_watcher() {
        super::ack_stall::an_ack_that_never_answers_does_not_stop_the_subscription(
            chronica::AckMode::Delivery,
        );
    }

    #[test]
    fn messages_claiming_our_origin_are_checked() {
        super::impostors::messages_claiming_our_origin_are_checked();
    }

    #[test]
    fn bad_configuration_is_refused_at_construction() {
        use chronica::mq::MqError;
        let d = crate::common::director();
        let cfg = chronica::DistributedConfig::default;
        let e = chronica::Distributed::connect(&d, "no-scheme", cfg()).unwrap_err();
        assert!(matches!(e, MqError::Config(_)), "{e}");
        let e = chronica::Distributed::connect(&d, "carrier-pigeon://x", cfg()).unwrap_err();
        assert!(matches!(e, MqError::Config(_)), "{e}");
        let no_token = chronica::Director::new().unwrap();
        let e = chronica::Distributed::connect(&no_token, "memory://x", cfg()).unwrap_err();
        assert!(matches!(&e, MqError::Config(why) if why.contains("trust token")), "{e}");
        let adapter = std::sync::Arc::new(chronica::mq::memory::MemoryAdapter::named("x"));
        let e = chronica::Distributed::with_adapter(&no_token, adapter, cfg()).unwrap_err();
        assert!(matches!(&e, MqError::Config(why) if why.contains("trust token")), "{e}");
        no_token.close(std::time::Duration::from_secs(1)).unwrap();
        let bad = chronica::DistributedConfig { topic_prefix: "a b".into(), ..cfg() };
        assert!(matches!(chronica::Distributed::connect(&d, "memory://x", bad), Err(MqError::Config(_))));
        for (scheme, on) in [
            ("kafka", cfg!(feature = "kafka")),
            ("nats", cfg!(feature = "nats")),
            ("redis", cfg!(feature = "redis")),
        ] {
            if !on {
                let e = chronica::Distributed::connect(&d, &format!("{scheme}://127.0.0.1:1"), cfg())
                    .unwrap_err();
                assert!(matches!(e, MqError::Unsupported(_)), "{e}");
                assert!(e.to_string().contains(&format!("feature `{scheme}`")), "{e}");
            }
        }
        d.close(std::time::Duration::from_secs(1)).unwrap();
    }
}

/// The tests of one real broker.
macro_rules! broker_tests {
    ($feature:literal, $name:ident) => {
        #[cfg(feature = $feature)]
        mod $name {
            use super::{common, suite};

            #[test]
            fn scenario() {
                suite::scenario(&common::url($feature));
            }

            #[test]
            fn keys_cross_intact() {
                super::keys::keys_cross_intact(&common::url($feature));
            }

            #[test]
            fn empty_topic_crosses_and_a_missing_topic_is_malformed() {
                super::empty_topic::empty_topic_crosses_and_a_missing_topic_is_malformed(&common::url(
                    $feature,
                ));
            }

            #[test]
            fn unreachable_or_malformed_url_fails_fast() {
                suite::unreachable($feature);
            }

            #[test]
            fn publish_and_ack_batches() {
                super::batches::publish_and_ack_batches($feature);
            }

            #[test]
            fn new_group_starts_at_new_messages() {
                super::start::new_group_starts_at_new_messages(&common::url($feature));
            }

            #[test]
            fn group_left_by_one_instance() {
                // Redis hands a member's unacknowledged entries to another
                // once they have been idle this long.
                let hurry = if $feature == "redis" { "?reclaim_idle_ms=1000" } else { "" };
                super::groups::group_left_by_one_instance(&format!("{}{hurry}", common::url($feature)));
            }

            #[test]
            fn a_unicast_to_nobody_is_counted_everywhere() {
                super::unicast::a_unicast_to_nobody_is_counted_everywhere(&common::url($feature));
            }

            #[test]
            fn a_share_only_the_sender_could_take_is_counted() {
                super::groups::a_share_only_the_sender_could_take_is_counted(&common::url($feature));
            }

            #[test]
            fn more_members_than_partitions() {
                super::start::more_members_than_partitions(&common::url($feature));
            }

            #[test]
            fn emit_order_kept() {
                // Kafka spreads key-less records over partitions.
                let key = ($feature == "kafka").then_some("k");
                suite::emit_order_kept(&common::url($feature), key);
            }

            #[test]
            fn fault_broker_killed_mid_stream() {
                suite::stream_exactly_once(&common::url($feature), 100_000, Some($feature));
            }
        }
    };
}

/// Redis streams are subscribed by exact name only.
#[cfg(feature = "kafka")]
#[test]
fn kafka_wildcard_group_starts_at_new_messages() {
    start::wildcard_group_starts_at_new_messages(&common::url("kafka"));
}

#[cfg(feature = "kafka")]
#[test]
fn kafka_dropped_subscriptions_free_their_consumers() {
    close::kafka_dropped_subscriptions_free_their_consumers(&common::url("kafka"));
}

#[cfg(feature = "kafka")]
#[test]
fn kafka_oversized_event_does_not_block_later_ones() {
    refused::kafka_oversized_event_does_not_block_later_ones(&common::url("kafka"));
}

#[cfg(feature = "kafka")]
#[test]
fn kafka_unreadable_header_is_dead_lettered() {
    refused::kafka_unreadable_header_is_dead_lettered(&common::url("kafka"));
}

#[cfg(feature = "kafka")]
#[test]
fn kafka_close_with_broker_gone() {
    close::kafka_close_with_broker_gone(&common::url("kafka"));
}

#[cfg(feature = "nats")]
#[test]
fn nats_wildcard_group_starts_at_new_messages() {
    start::wildcard_group_starts_at_new_messages(&common::url("nats"));
}

#[cfg(feature = "redis")]
#[test]
fn redis_dead_members_entries_are_reclaimed() {
    reclaim::dead_members_entries_are_reclaimed();
}

#[cfg(feature = "redis")]
#[test]
fn redis_trimmed_pending_entries_are_reported_not_delivered() {
    reclaim::trimmed_pending_entries_are_reported_not_delivered();
}

broker_tests!("kafka", kafka);
broker_tests!("nats", nats);
broker_tests!("redis", redis);
