//! The receive path: one task per subscription decodes, checks, de-dups
//! and injects broker messages, then acknowledges them.
//!
//! Each instance holds one *broadcast* subscription (a broker group of its
//! own, so it sees every message) and one *group* subscription per local
//! consumer group (the broker group of that name, shared with the other
//! instances, so each message reaches one of them). A message is handled
//! by each subscription it arrives on:
//!
//! * broadcast: user events to the local ungrouped subscribers (skipped when
//!   this instance emitted them: they were delivered locally at emit),
//!   unicast to the target if it lives here, root events to every node;
//!   malformed messages are counted and dead-lettered here only;
//! * group: user broadcasts (this instance's own included) to one local
//!   member; everything else is acknowledged and ignored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::dedup::Dedup;
use super::stats::bump;
use super::wire::{self, Decoded, Verdict};
use super::Shared;
use crate::director::remote::{Remote, Scope};
use crate::event::EventKind;
use crate::mq::{Message, MessageStream};
use crate::Error;

/// Which kind of subscription a consumer task serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sub {
    Broadcast,
    Group(String),
}

/// Runs one subscription until the layer stops; re-subscribes with backoff
/// when the adapter's stream ends.
pub(crate) async fn run(
    shared: Arc<Shared>,
    topic: String,
    group: String,
    sub: Sub,
    mut stream: MessageStream,
) {
    let mut dedup = Dedup::new(shared.cfg.dedup_window, shared.cfg.dedup_capacity);
    let mut backoff = Duration::from_millis(50);
    while !shared.stopped() {
        match stream.next().await {
            Some(Ok(msg)) => {
                backoff = Duration::from_millis(50);
                if handle(&shared, &sub, &mut dedup, msg).await.is_err() {
                    return; // the director closed
                }
            }
            Some(Err(_)) => {
                bump(&shared.counters.broker_errors);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            None => loop {
                if shared.stopped() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                if let Ok(s) = shared.adapter.subscribe(&topic, &group).await {
                    bump(&shared.counters.resubscribes);
                    stream = s;
                    break;
                }
                bump(&shared.counters.broker_errors);
            },
        }
    }
}

fn scope_for_user(s: &Sub) -> Scope<'_> {
    match s {
        Sub::Broadcast => Scope::Ungrouped,
        Sub::Group(g) => Scope::Group(g),
    }
}

async fn handle(shared: &Arc<Shared>, sub: &Sub, dedup: &mut Dedup, msg: Message) -> Result<(), Error> {
    let c = &shared.counters;
    bump(&c.received);
    let broadcast = *sub == Sub::Broadcast;
    let decoded = match wire::decode(&msg) {
        Ok(d) => d,
        Err(why) => {
            if broadcast {
                bump(&c.malformed);
                shared.dead_letter(&msg, &why).await;
            }
            shared.ack(msg).await;
            return Ok(());
        }
    };
    let w = match decoded {
        Decoded::Plain { topic, key, payload, ts, content_type } => {
            if broadcast {
                bump(&c.foreign);
            }
            let remote = Remote {
                kind: EventKind::User,
                topic: &topic,
                source: None,
                key,
                payload,
                content_type: content_type.as_deref(),
                timestamp_ms: ts,
            };
            let fibers = shared.director.inject(remote, scope_for_user(sub))?;
            return shared.settle(msg, fibers).await;
        }
        Decoded::Chronica(w) => w,
    };
    let own = w.origin == shared.cfg.instance_id;
    let skip = match sub {
        Sub::Broadcast => own && w.target.is_none(),
        Sub::Group(_) => w.kind == EventKind::Root || w.target.is_some(),
    };
    if skip {
        shared.ack(msg).await;
        return Ok(());
    }
    if w.kind == EventKind::Root {
        match w.verify(&shared.token) {
            Verdict::Valid => {}
            Verdict::Unsigned => {
                bump(&c.rejected_unsigned);
                shared.ack(msg).await;
                return Ok(());
            }
            Verdict::Forged => {
                bump(&c.rejected_forged);
                shared.ack(msg).await;
                return Ok(());
            }
        }
    }
    if !dedup.first_time(&w.origin, w.id, Instant::now()) {
        bump(&c.duplicates);
        shared.ack(msg).await;
        return Ok(());
    }
    let scope = match (&w.target, w.kind) {
        (Some(t), _) => Scope::Target(t),
        (None, EventKind::Root) => Scope::AllRoot,
        (None, EventKind::User) => scope_for_user(sub),
    };
    let remote = Remote {
        kind: w.kind,
        topic: &w.topic,
        source: w.source.as_deref(),
        key: w.key.clone(),
        payload: w.payload.clone(),
        content_type: w.content_type.as_deref(),
        timestamp_ms: Some(w.ts),
    };
    let fibers = shared.director.inject(remote, scope)?;
    shared.settle(msg, fibers).await
}
