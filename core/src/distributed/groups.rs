//! This instance's memberships of broker consumer groups: joining the
//! broker group of a local consumer group (by `join_group`, a grouped
//! registration or the watcher), and the decision to leave one.
//!
//! A group subscription leaves its broker group when it finds the group
//! with no member here: when it reads a share of the group's traffic
//! that no member here takes (handing it back, see `receive::run`), and
//! when the watcher (`watch_groups`) tells it the group has no member
//! here. The watcher's look is for a subscription made with no
//! member (a `join_group` for a group with no node here, or a join that
//! the group's last member left during): it used to stay in the broker
//! group until its first share, however long that took, counted a member
//! by the broker (a Kafka consumer holding partitions), and then hand
//! that share back.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OnceCell};

use super::receive::{self, Sub};
use super::stats::bump;
use super::Shared;
use crate::mq::MqResult;

/// One (group, topic) subscription of this instance, in place or being
/// made (see `Shared::groups`).
#[derive(Debug, Default)]
pub(crate) struct Membership {
    /// Set once the subscription is in place; a join waits on it.
    joined: OnceCell<()>,
    /// Told by the watcher that the group has no member here: the
    /// subscription then decides whether to leave (`leave_group`).
    pub(crate) memberless: Notify,
}

/// A group subscription's entry in `Shared::groups`, shared with its task.
pub(crate) type Joined = Arc<Membership>;

impl Shared {
    /// Joins consumer group `group` on `topic` unless this instance holds
    /// that subscription already; returns once it is in place. A join of
    /// the same group in progress elsewhere is waited for (and tried again
    /// here if it failed).
    pub(crate) async fn join(self: &Arc<Self>, group: &str, topic: &str) -> MqResult<()> {
        let key = (group.to_owned(), topic.to_owned());
        let membership = self.groups.lock().entry(key).or_default().clone();
        let subscribe = || async {
            let broker_group = format!("{}.g-{group}", self.cfg.topic_prefix);
            let stream = self.subscribe(topic, &broker_group).await?;
            let sub = Sub::Group(group.to_owned());
            let told = Some(membership.clone());
            tokio::spawn(receive::run(self.clone(), topic.to_owned(), broker_group, sub, stream, told));
            Ok(())
        };
        membership.joined.get_or_try_init(subscribe).await.map(|_| ())
    }

    /// Decides whether the subscription of `group` on `topic`, which read a
    /// message the group had no member here for (or was told by the
    /// watcher that it has none), leaves the group: it does (forgotten
    /// here, and `true`) unless a member is registered now.
    ///
    /// The check and the removal hold the lock under which `join` looks
    /// for the subscription, and a member is registered on the director
    /// before its join looks (`register_with`, the watcher), so a join
    /// either looked before the check, and its member keeps the
    /// subscription, or after the removal, and makes a new one. Before, the
    /// subscription was forgotten without a look: a join that found it just
    /// before returned `Ok` with the instance about to leave the group,
    /// which stayed left, member or not, until the watcher joined it again
    /// up to 250 ms later (`join::a_member_registered_as_the_group_is_left`).
    pub(crate) fn leave_group(&self, group: &str, topic: &str) -> bool {
        let mut groups = self.groups.lock();
        if self.director.has_group(group) {
            return false;
        }
        groups.remove(&(group.to_owned(), topic.to_owned()));
        true
    }

    /// Tells each group subscription in place whose group has no member
    /// here (see the module documentation).
    fn tell_memberless(&self) {
        let groups = self.groups.lock();
        for ((group, _), membership) in groups.iter() {
            if membership.joined.initialized() && !self.director.has_group(group) {
                membership.memberless.notify_one();
            }
        }
    }
}

/// Joins the broker groups of grouped nodes registered on the director
/// directly (a failed join is counted and tried again next time), and
/// tells the subscriptions of groups with no member here to leave: at
/// once when the director's routes change (a node registered or
/// unregistered there), else every `group_watch_interval`. On the timer
/// alone, a group's last member unregistered left this instance in the
/// broker group for up to that long. `changed` is taken before the task
/// starts, or a registration made before its first run would go unseen.
pub(crate) async fn watch_groups(
    shared: Arc<Shared>,
    every: Duration,
    mut changed: tokio::sync::watch::Receiver<u64>,
) {
    // `shared` holds the director, so `changed` does not fail while this
    // runs; were it to, it would fail at once on every turn, and the loop
    // falls back to the timer alone.
    let mut director_alive = true;
    while !shared.stopped() {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            told = changed.changed(), if director_alive => director_alive = told.is_ok(),
        }
        for g in shared.director.local_groups() {
            for topic in shared.topics() {
                if shared.join(&g, &topic).await.is_err() {
                    bump(&shared.counters.broker_errors);
                }
            }
        }
        shared.tell_memberless();
    }
}
