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

use futures_util::{FutureExt, StreamExt};

use super::acks::{self, Pending};
use super::dedup::Dedup;
use super::groups::Joined;
use super::stats::bump;
use super::wire::{self, Decoded, Verdict};
use super::{AckMode, Shared};
use crate::director::remote::{Injected, Remote, Scope};
use crate::event::EventKind;
use crate::mq::{Message, MessageStream};
use crate::Error;

/// Which kind of subscription a consumer task serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sub {
    Broadcast,
    Group(String),
}

/// Most messages handled before their acknowledgements go out together.
const ACK_BATCH: usize = 512;

/// How one read of a subscription's stream ended, besides the messages it
/// gave: whether the stream reported an error or ended.
struct Read {
    failed: bool,
    ended: bool,
}

/// Waits for one item, then takes the ones already waiting, up to
/// [`ACK_BATCH`], without waiting again. The messages go to `into`, which
/// the caller reuses: a fresh vector per read grew and freed a large block
/// every time, and glibc then consolidated its free lists.
async fn read(stream: &mut MessageStream, into: &mut Vec<Message>) -> Read {
    let mut r = Read { failed: false, ended: false };
    let mut item = Some(stream.next().await);
    while let Some(next) = item {
        match next {
            Some(Ok(msg)) => into.push(msg),
            Some(Err(_)) => r.failed = true,
            None => r.ended = true,
        }
        if r.failed || r.ended || into.len() >= ACK_BATCH {
            break;
        }
        item = stream.next().now_or_never();
    }
    r
}

/// Runs one subscription until the layer stops; re-subscribes with backoff
/// when the adapter's stream ends. The messages of one read are handled in
/// order and then acknowledged with one `ack_batch` (`enqueue`), or handed
/// in order to the subscription's watcher (`delivery`, see `acks`). A
/// group subscription also returns, leaving its broker group, once it
/// finds the group with no member here: from a share no member took, or
/// when `told` so by the group watcher, between reads (see `groups`).
pub(crate) async fn run(
    shared: Arc<Shared>,
    topic: String,
    group: String,
    sub: Sub,
    mut stream: MessageStream,
    told: Option<Joined>,
) {
    let mut dedup = Seen::new(&shared);
    let mut backoff = Duration::from_millis(50);
    let mut acks: Vec<Pending> = Vec::with_capacity(ACK_BATCH);
    let mut now: Vec<Message> = Vec::with_capacity(ACK_BATCH);
    let mut messages: Vec<Message> = Vec::with_capacity(ACK_BATCH);
    let in_order = (shared.cfg.ack_mode == AckMode::Delivery).then(|| acks::spawn(shared.clone()));
    while !shared.stopped() {
        let reading = read(&mut stream, &mut messages);
        let Read { failed, ended } = match &told {
            None => reading.await,
            // Dropping `reading` loses nothing: it is still waiting for
            // the stream's first item, and a stream's `next` keeps an item
            // it has not returned. Biased: a read already waiting is
            // handled first (a share no member takes leaves as well).
            Some(membership) => tokio::select! {
                biased;
                r = reading => r,
                () = membership.memberless.notified() => {
                    if matches!(&sub, Sub::Group(g) if shared.leave_group(g, &topic)) {
                        return; // the stream drops: the broker group is left
                    }
                    continue;
                }
            },
        };
        if !messages.is_empty() {
            backoff = Duration::from_millis(50);
        }
        shared.counters.received.fetch_add(messages.len() as u64, std::sync::atomic::Ordering::Relaxed);
        // Messages not handled because the group had no member here: the
        // first such and every later one of the read.
        let mut orphans: Vec<Message> = Vec::new();
        let mut todo = std::mem::take(&mut messages);
        loop {
            for msg in todo.drain(..) {
                if !orphans.is_empty() {
                    orphans.push(msg);
                    continue;
                }
                match handle(&shared, &sub, &mut dedup, msg, &mut acks).await {
                    Ok(None) => {}
                    Ok(Some(orphan)) => orphans.push(orphan),
                    Err(_) => return, // the director closed
                }
            }
            match &in_order {
                None if !acks.is_empty() => {
                    now.extend(acks.drain(..).map(|p| p.msg));
                    shared.ack_batch(&now).await;
                    now.clear();
                }
                None => {}
                Some(watcher) => {
                    for p in acks.drain(..) {
                        if watcher.send(p).await.is_err() {
                            return; // the layer stopped
                        }
                    }
                }
            }
            let Sub::Group(g) = &sub else { break };
            if orphans.is_empty() {
                break;
            }
            if shared.leave_group(g, &topic) {
                // Hand the rest back, so the members elsewhere (or a
                // subscription made here since) get it; the broker group
                // is left as the stream drops on return.
                shared.release(&orphans).await;
                return;
            }
            // A member registered meanwhile, and its join found this
            // subscription in place: stay, and handle the orphans after
            // all, in order (the later messages of the read wait for them).
            std::mem::swap(&mut todo, &mut orphans);
        }
        messages = todo;
        if failed {
            bump(&shared.counters.broker_errors);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        if ended {
            loop {
                if shared.stopped() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                if let Ok(s) = shared.subscribe(&topic, &group).await {
                    bump(&shared.counters.resubscribes);
                    stream = s;
                    break;
                }
                bump(&shared.counters.broker_errors);
            }
        }
    }
}

/// One subscription's de-duplication state, root events apart from user
/// events: user events are unsigned and ids predictable, so a user message
/// forged with the (origin, id) of a coming root event would otherwise
/// have the genuine, signed one dropped as its duplicate.
struct Seen {
    user: Dedup,
    root: Dedup,
}

impl Seen {
    fn new(shared: &Shared) -> Self {
        let (window, capacity) = (shared.cfg.dedup_window, shared.cfg.dedup_capacity);
        Self { user: Dedup::new(window, capacity), root: Dedup::new(window, capacity) }
    }

    fn of(&mut self, kind: EventKind) -> &mut Dedup {
        match kind {
            EventKind::Root => &mut self.root,
            EventKind::User => &mut self.user,
        }
    }
}

fn scope_for_user(s: &Sub) -> Scope<'_> {
    match s {
        Sub::Broadcast => Scope::Ungrouped,
        Sub::Group(g) => Scope::Group(g),
    }
}

/// Whether a root event signed at `ts` (ms since the epoch) is further
/// than `max_age` from this instance's clock, either way. The timestamp is
/// covered by the signature, so a replay cannot freshen it.
fn stale(ts: i64, max_age: Option<Duration>) -> bool {
    let Some(max_age) = max_age else { return false };
    let max_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    crate::director::now_ms().saturating_sub(ts).saturating_abs() > max_ms
}

/// Whether the group of a group subscription has a member here; `true`
/// for the broadcast subscription. Read before injecting (see `orphaned`).
fn had_member(shared: &Shared, sub: &Sub) -> bool {
    match sub {
        Sub::Group(g) => shared.director.has_group(g),
        Sub::Broadcast => true,
    }
}

/// Whether a group message reached no fiber because the group had no
/// member on this instance: none before the inject (`had`), or none after
/// it. Looking only after it took a member registered between the two for
/// the one the message missed, and acknowledged the message undelivered.
/// (A member whose topics do not match still takes the instance's share:
/// a documented limit.)
fn orphaned(shared: &Shared, sub: &Sub, had: bool, injected: &Injected) -> bool {
    matches!(sub, Sub::Group(g) if injected.reached == 0 && (!had || !shared.director.has_group(g)))
}

/// Whether a group share reached no fiber because the group's one member
/// here that matched is the event's source (sender exclusion). Counted:
/// unlike a member whose topics do not match (most of a group's traffic),
/// this one was meant for the group, and is lost to it.
fn sender_only(shared: &Shared, sub: &Sub, injected: &Injected, w: &wire::WireEvent<'_>) -> bool {
    match (sub, w.source.as_deref()) {
        (Sub::Group(g), Some(source)) if injected.reached == 0 => {
            shared.director.is_matching_member(g.as_str(), &w.topic, source)
        }
        _ => false,
    }
}

/// Whether a unicast reached no fiber because its target is not registered
/// here. Counted, as the one trace of a unicast whose target no instance
/// has: the instance that has it delivers it, and all the others count it.
/// (Only the broadcast subscription gets this far with a unicast.)
fn unicast_not_here(shared: &Shared, injected: &Injected, w: &wire::WireEvent<'_>) -> bool {
    match w.target.as_deref() {
        Some(target) if injected.reached == 0 => !shared.director.has_node(target),
        _ => false,
    }
}

/// Injects `remote`, waiting for room in a full `block` target without
/// holding one of the layer's two runtime workers: a wait there (up to
/// `block_timeout`) on both would stall this instance's publishing and
/// acknowledgements with it. Only a full target pays the hand-off.
fn inject(shared: &Shared, remote: Remote<'_>, scope: Scope<'_>) -> Result<Injected, Error> {
    match shared.director.try_inject(remote.clone(), scope) {
        Err(Error::QueueFull(_)) => tokio::task::block_in_place(|| shared.director.inject(remote, scope)),
        other => other,
    }
}

/// Handles one message (counted `received` by the caller, once however
/// often it is handled); the ones to acknowledge now go to `acks`. A group
/// message the group has no member here for is handed back, unhandled.
async fn handle(
    shared: &Arc<Shared>,
    sub: &Sub,
    seen: &mut Seen,
    msg: Message,
    acks: &mut Vec<Pending>,
) -> Result<Option<Message>, Error> {
    let c = &shared.counters;
    let broadcast = *sub == Sub::Broadcast;
    if broadcast && wire::is_own_broadcast(&msg, &shared.cfg.instance_id) {
        // Delivered locally at emit: skipped before any decoding, since
        // every instance reads back all it publishes.
        acks.push(Pending::now(msg));
        return Ok(None);
    }
    let decoded = match wire::decode(&msg) {
        Ok(d) => d,
        Err(why) => {
            if broadcast {
                bump(&c.malformed);
                shared.dead_letter(&msg, &why).await;
            }
            acks.push(Pending::now(msg));
            return Ok(None);
        }
    };
    let w = match decoded {
        Decoded::Plain { topic, key, payload, ts, content_type } => {
            if broadcast {
                bump(&c.foreign);
            }
            let remote = Remote {
                kind: EventKind::User,
                topic,
                source: None,
                key,
                payload,
                content_type,
                timestamp_ms: ts,
                extension: None,
            };
            let had = had_member(shared, sub);
            let injected = inject(shared, remote, scope_for_user(sub))?;
            if orphaned(shared, sub, had, &injected) {
                return Ok(Some(msg));
            }
            acks.push(shared.settle(msg, injected));
            return Ok(None);
        }
        Decoded::Chronica(w) => w,
    };
    let own = w.origin == shared.cfg.instance_id;
    let skip = match sub {
        Sub::Broadcast => own && w.target.is_none(),
        Sub::Group(_) => w.kind == EventKind::Root || w.target.is_some(),
    };
    // Roots are verified (and a bad one counted) on the broadcast
    // subscription even when they claim to be this instance's own.
    if skip && !(broadcast && w.kind == EventKind::Root) {
        acks.push(Pending::now(msg));
        return Ok(None);
    }
    if w.kind == EventKind::Root {
        match w.verify(&shared.token) {
            Verdict::Valid => {}
            Verdict::Unsigned => {
                bump(&c.rejected_unsigned);
                acks.push(Pending::now(msg));
                return Ok(None);
            }
            Verdict::Forged => {
                bump(&c.rejected_forged);
                acks.push(Pending::now(msg));
                return Ok(None);
            }
        }
        if !skip && stale(w.ts, shared.cfg.root_max_age) {
            // Checked before the dedup, which would take a replay within
            // its window for a duplicate, uncounted as one.
            bump(&c.rejected_stale);
            acks.push(Pending::now(msg));
            return Ok(None);
        }
    }
    if skip {
        // This instance's own root broadcast, genuine: delivered at emit.
        acks.push(Pending::now(msg));
        return Ok(None);
    }
    let dedup = seen.of(w.kind);
    if !dedup.first_time(&w.origin, w.id, Instant::now()) {
        bump(&c.duplicates);
        acks.push(Pending::now(msg));
        return Ok(None);
    }
    let scope = match (&w.target, w.kind) {
        (Some(t), _) => Scope::Target(t),
        (None, EventKind::Root) => Scope::AllRoot,
        (None, EventKind::User) => scope_for_user(sub),
    };
    let remote = w.as_remote();
    let had = had_member(shared, sub);
    let injected = inject(shared, remote, scope)?;
    if orphaned(shared, sub, had, &injected) {
        // Not handled: if it is handled here after all (see `run`), it
        // must not be taken for a duplicate of itself.
        dedup.forget(&w.origin, w.id);
        return Ok(Some(msg));
    }
    if sender_only(shared, sub, &injected, &w) {
        bump(&shared.counters.group_sender_only);
    }
    if unicast_not_here(shared, &injected, &w) {
        bump(&shared.counters.unicast_not_here);
    }
    acks.push(shared.settle(msg, injected));
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::stale;
    use std::time::Duration;

    #[test]
    fn staleness_is_distance_from_now_either_way() {
        let now = crate::director::now_ms();
        let limit = Some(Duration::from_secs(60));
        assert!(!stale(now, limit));
        assert!(!stale(now - 59_000, limit) && !stale(now + 59_000, limit));
        assert!(stale(now - 61_000, limit), "too old");
        assert!(stale(now + 61_000, limit), "too far ahead");
        assert!(stale(i64::MIN, limit) && stale(i64::MAX, limit), "no overflow");
        assert!(!stale(i64::MIN, None), "no limit, no check");
        assert!(!stale(0, Some(Duration::MAX)));
    }
}
