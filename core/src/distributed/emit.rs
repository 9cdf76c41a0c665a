//! Emitting through the fabric: the checks every emit passes, the event
//! as it goes on the wire, and the broadcast, unicast and root calls of
//! [`Distributed`].

use std::borrow::Cow;
use std::time::Instant;

use bytes::Bytes;

use super::wire::{self, WireEvent};
use super::{Distributed, Entered};
use crate::director::emit::Wait;
use crate::director::remote::{Remote, Scope, WhenFull};
use crate::event::{EventKind, Message};
use crate::mq::{MqError, MqResult};

impl Distributed {
    /// `Closed` once closed; `UnknownNode` for a source not registered here.
    pub(super) fn check(&self, source: Option<&str>) -> MqResult<()> {
        self.shared.check_unforked()?;
        if self.shared.stopped() {
            return Err(MqError::Closed);
        }
        match source {
            Some(uid) if !self.shared.director.has_node(uid) => {
                Err(MqError::Engine(crate::Error::UnknownNode(uid.to_owned())))
            }
            _ => Ok(()),
        }
    }

    /// Enters an emit bound for the wire: `check`, and every string that
    /// travels as a header value passes `wire::check_header_text`.
    fn enter_wire_emit(&self, source: Option<&str>, texts: &[(&str, Option<&str>)]) -> MqResult<Entered<'_>> {
        let guard = self.shared.enter_emit()?;
        self.check(source)?;
        for (what, text) in texts {
            if let Some(t) = text {
                wire::check_header_text(what, t)
                    .map_err(|e| MqError::Engine(crate::Error::InvalidArgument(e)))?;
            }
        }
        Ok(guard)
    }

    fn wire(
        &self,
        kind: EventKind,
        topic: &str,
        msg_fields: (Option<&str>, Option<Bytes>, Bytes, Option<&str>),
    ) -> WireEvent<'static> {
        let (source, key, payload, content_type) = msg_fields;
        let owned = |s: &str| Cow::Owned(s.to_owned());
        WireEvent {
            id: self.shared.next_id(),
            origin: owned(&self.shared.cfg.instance_id),
            source: source.map(owned),
            target: None,
            kind,
            ts: crate::director::now_ms(),
            topic: owned(topic),
            key,
            payload,
            content_type: content_type.or(self.shared.cfg.content_type.as_deref()).map(owned),
            sig: None,
        }
    }

    /// Broadcasts to every matching subscriber of every instance but the
    /// source, one member per consumer group across all instances. Returns
    /// the event's id on the wire (unique per instance, increasing).
    pub fn emit(&self, msg: Message<'_>) -> MqResult<u64> {
        self.emit_with(msg, Wait::Yes, WhenFull::Push)
    }

    /// [`emit`](Self::emit) whose waits for room end at `deadline` rather
    /// than after the director's `block_timeout`; a local target still
    /// full then gets the event under its lane's rule, as from `emit`. A
    /// `deadline` already past waits for nothing.
    pub fn emit_until(&self, msg: Message<'_>, deadline: Instant) -> MqResult<u64> {
        self.emit_with(msg, Wait::Until(deadline), WhenFull::Push)
    }

    /// [`emit`](Self::emit) that never waits: where a local target under
    /// the `block` policy is full, it fails at once with `QueueFull`, and
    /// the event reaches no node and is not published (its wire id is not
    /// used again). See `Director::try_emit`.
    pub fn try_emit(&self, msg: Message<'_>) -> MqResult<u64> {
        self.emit_with(msg, Wait::No, WhenFull::Refuse)
    }

    /// [`try_emit`](Self::try_emit) that waits for room until `deadline`:
    /// where a local target under the `block` policy is still full then,
    /// it fails with `QueueFull`, and the event reaches no node and is not
    /// published. For a caller that waits in slices and does other work
    /// between them, changing nothing until one succeeds (see
    /// `Director::emit_until`).
    pub fn try_emit_until(&self, msg: Message<'_>, deadline: Instant) -> MqResult<u64> {
        self.emit_with(msg, Wait::Until(deadline), WhenFull::Refuse)
    }

    fn emit_with(&self, msg: Message<'_>, wait: Wait, when_full: WhenFull) -> MqResult<u64> {
        let _emitting = self.enter_wire_emit(msg.source.as_deref(), &message_texts(&msg))?;
        let w = self.wire(
            EventKind::User,
            &msg.topic,
            (msg.source.as_deref(), msg.key.clone(), msg.payload.clone(), msg.content_type.as_deref()),
        );
        // The host's extension reaches the local nodes; it never crosses
        // the broker.
        let remote = Remote { extension: msg.extension.clone(), ..w.as_remote() };
        self.shared.director.inject_with(remote, Scope::Ungrouped, wait, when_full)?;
        let id = w.id;
        self.shared.enqueue(w);
        Ok(id)
    }

    /// Sends to the node `target` of whichever instance owns it: at once
    /// when it is local, else through the broker (an instance that does not
    /// own it ignores it). Returns the local event id or the wire id.
    pub fn emit_to(&self, target: &str, msg: Message<'_>) -> MqResult<u64> {
        self.emit_to_with(target, msg, Wait::Yes)
    }

    /// [`emit_to`](Self::emit_to) that waits for room in a local target
    /// until `deadline` rather than for `block_timeout`, as
    /// `Director::emit_to_until`: still full then, it fails with
    /// `QueueFull` and the target does not get the event.
    pub fn emit_to_until(&self, target: &str, msg: Message<'_>, deadline: Instant) -> MqResult<u64> {
        self.emit_to_with(target, msg, Wait::Until(deadline))
    }

    /// [`emit_to`](Self::emit_to) that never waits, as
    /// [`try_emit`](Self::try_emit) (only a local target can be full).
    pub fn try_emit_to(&self, target: &str, msg: Message<'_>) -> MqResult<u64> {
        self.emit_to_with(target, msg, Wait::No)
    }

    fn emit_to_with(&self, target: &str, msg: Message<'_>, wait: Wait) -> MqResult<u64> {
        self.check(msg.source.as_deref())?;
        if self.shared.director.has_node(target) {
            let d = &self.shared.director;
            return Ok(match wait {
                Wait::Yes => d.emit_to(target, msg)?,
                Wait::No => d.try_emit_to(target, msg)?,
                Wait::Until(deadline) => d.emit_to_until(target, msg, deadline)?,
            });
        }
        check_uid(target)?;
        let mut texts = message_texts(&msg).to_vec();
        texts.push(("target", Some(target)));
        let _emitting = self.enter_wire_emit(msg.source.as_deref(), &texts)?;
        let mut w = self.wire(
            EventKind::User,
            &msg.topic,
            (msg.source.as_deref(), msg.key.clone(), msg.payload.clone(), msg.content_type.as_deref()),
        );
        w.target = Some(Cow::Owned(target.to_owned()));
        let id = w.id;
        self.shared.enqueue(w);
        Ok(id)
    }

    /// Sends a signed root event to every node of every instance.
    pub fn emit_root(&self, action: &str, payload: impl Into<Bytes>) -> MqResult<u64> {
        self.root(action, payload.into(), None)
    }

    /// Sends a signed root event to one node, wherever it lives.
    pub fn emit_root_to(&self, target: &str, action: &str, payload: impl Into<Bytes>) -> MqResult<u64> {
        self.root_to(target, action, payload.into(), None)
    }

    /// [`emit_root`](Self::emit_root) with the payload's content type
    /// (see [`Director::emit_root_typed`](crate::Director::emit_root_typed)),
    /// which crosses the broker with the event.
    pub fn emit_root_typed(
        &self,
        action: &str,
        payload: impl Into<Bytes>,
        content_type: &str,
    ) -> MqResult<u64> {
        self.root(action, payload.into(), Some(content_type))
    }

    /// [`emit_root_to`](Self::emit_root_to) with the payload's content
    /// type, as [`emit_root_typed`](Self::emit_root_typed).
    pub fn emit_root_to_typed(
        &self,
        target: &str,
        action: &str,
        payload: impl Into<Bytes>,
        content_type: &str,
    ) -> MqResult<u64> {
        self.root_to(target, action, payload.into(), Some(content_type))
    }

    fn root(&self, action: &str, payload: Bytes, content_type: Option<&str>) -> MqResult<u64> {
        let texts = [("action", Some(action)), ("content_type", content_type)];
        let _emitting = self.enter_wire_emit(None, &texts)?;
        let director = &self.shared.director;
        match content_type {
            Some(ct) => director.emit_root_typed(action, payload.clone(), ct)?,
            None => director.emit_root(action, payload.clone())?,
        };
        let mut w = self.wire(EventKind::Root, action, (None, None, payload, content_type));
        w.sign(&self.shared.token);
        let id = w.id;
        self.shared.enqueue(w);
        Ok(id)
    }

    fn root_to(
        &self,
        target: &str,
        action: &str,
        payload: Bytes,
        content_type: Option<&str>,
    ) -> MqResult<u64> {
        self.check(None)?;
        let director = &self.shared.director;
        if director.has_node(target) {
            return Ok(match content_type {
                Some(ct) => director.emit_root_to_typed(target, action, payload, ct)?,
                None => director.emit_root_to(target, action, payload)?,
            });
        }
        check_uid(target)?;
        let texts = [("action", Some(action)), ("target", Some(target)), ("content_type", content_type)];
        let _emitting = self.enter_wire_emit(None, &texts)?;
        let mut w = self.wire(EventKind::Root, action, (None, None, payload, content_type));
        w.target = Some(Cow::Owned(target.to_owned()));
        w.sign(&self.shared.token);
        let id = w.id;
        self.shared.enqueue(w);
        Ok(id)
    }
}

/// The strings of `msg` that travel as header values.
fn message_texts<'m>(msg: &'m Message<'_>) -> [(&'static str, Option<&'m str>); 4] {
    let key = msg.key.as_deref().and_then(|k| std::str::from_utf8(k).ok());
    [
        ("topic", Some(&*msg.topic)),
        ("source", msg.source.as_deref()),
        ("content_type", msg.content_type.as_deref()),
        ("key", key),
    ]
}

fn check_uid(uid: &str) -> MqResult<()> {
    if (1..=255).contains(&uid.len()) {
        Ok(())
    } else {
        Err(MqError::Engine(crate::Error::InvalidArgument(format!("uid {uid:?} must be 1 to 255 bytes"))))
    }
}
