//! The wire format (SPEC section 4): the payload is the broker message's
//! value, untouched; Chronica's metadata travels in headers.
//!
//! | header | meaning |
//! |---|---|
//! | `chronica-id` | the event id at its origin (decimal u64) |
//! | `chronica-origin` | the instance id of the emitting process |
//! | `chronica-source` | the emitting node's uid (absent: no source) |
//! | `chronica-target` | unicast target uid (absent: broadcast) |
//! | `chronica-kind` | `user` or `root` |
//! | `chronica-ts` | emit time, ms since the Unix epoch |
//! | `chronica-sig` | root events: hex HMAC-SHA256, keyed by the trust token |
//! | `chronica-topic` | the event topic (the broker topic is the fabric's) |
//! | `chronica-content-type` | the payload's content type, if labelled |
//!
//! A message without `chronica-id` comes from a producer that does not know
//! Chronica: it is a plain user event with no source, its topic taken from
//! `chronica-topic` if present, else the broker topic. A message with
//! `chronica-id` whose other fields do not parse is malformed, as is one
//! an adapter marked `chronica-unreadable` (it could not read the message
//! whole, e.g. a Kafka header name that is not UTF-8; the value says why).
//! `chronica-topic` is one of the fields a Chronica message must carry:
//! [`WireEvent::encode`] always writes it, the empty topic as an empty
//! value, which Kafka, NATS and Redis all keep; reading a missing one as
//! the empty topic would hand a mangled message to every node with no
//! pattern.
//!
//! The signature covers every metadata field and the payload, each
//! length-prefixed so no two different events hash the same input.

use std::borrow::Cow;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::director::remote::Remote;
use crate::event::EventKind;
use crate::mq::Message;

/// Refuses a string that would travel as a header value (a topic, uid,
/// content type or UTF-8 key) but could not cross every broker intact:
/// NATS forbids CR and LF in a header (its client panics on them) and
/// trims surrounding whitespace, which would change a signed field. The
/// rule holds on every broker, so that the fabric behaves the same on all.
pub(crate) fn check_header_text(what: &str, s: &str) -> Result<(), String> {
    if s.contains(['\r', '\n']) || s.trim() != s {
        return Err(format!("{what} {s:?} must not contain CR or LF nor begin or end with whitespace"));
    }
    Ok(())
}

pub(crate) const ID: &str = "chronica-id";
pub(crate) const ORIGIN: &str = "chronica-origin";
pub(crate) const SOURCE: &str = "chronica-source";
pub(crate) const TARGET: &str = "chronica-target";
pub(crate) const KIND: &str = "chronica-kind";
pub(crate) const TS: &str = "chronica-ts";
pub(crate) const SIG: &str = "chronica-sig";
pub(crate) const TOPIC: &str = "chronica-topic";
pub(crate) const CONTENT_TYPE: &str = "chronica-content-type";
/// Added to a dead-lettered message: why it was refused.
pub(crate) const ERROR: &str = "chronica-error";
/// Added to a dead-lettered message: the broker topic it came from.
pub(crate) const DLQ_TOPIC: &str = "chronica-dlq-topic";
/// Put by an adapter on a received message it could not read whole.
pub(crate) const UNREADABLE: &str = "chronica-unreadable";
/// Every header name Chronica writes (see [`crate::mq::header_name`]).
pub(crate) const NAMES: [&str; 12] =
    [ID, ORIGIN, SOURCE, TARGET, KIND, TS, SIG, TOPIC, CONTENT_TYPE, ERROR, DLQ_TOPIC, UNREADABLE];

/// An event as it travels between instances: owned when this instance
/// sends it (`WireEvent<'static>`), borrowed from the broker message when
/// one is received, so decoding copies no string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireEvent<'a> {
    pub(crate) id: u64,
    pub(crate) origin: Cow<'a, str>,
    pub(crate) source: Option<Cow<'a, str>>,
    pub(crate) target: Option<Cow<'a, str>>,
    pub(crate) kind: EventKind,
    pub(crate) ts: i64,
    pub(crate) topic: Cow<'a, str>,
    pub(crate) key: Option<Bytes>,
    pub(crate) payload: Bytes,
    pub(crate) content_type: Option<Cow<'a, str>>,
    /// Hex signature (root events).
    pub(crate) sig: Option<Cow<'a, str>>,
}

/// What a received message turned out to be (borrowing from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// Sent by a Chronica instance.
    Chronica(WireEvent<'a>),
    /// From a foreign producer: a user event with no source.
    Plain {
        topic: &'a str,
        key: Option<Bytes>,
        payload: Bytes,
        ts: Option<i64>,
        content_type: Option<&'a str>,
    },
}

fn kind_str(kind: EventKind) -> &'static str {
    match kind {
        EventKind::User => "user",
        EventKind::Root => "root",
    }
}

impl WireEvent<'_> {
    /// This event as the director injects it into its local nodes.
    pub(crate) fn as_remote(&self) -> Remote<'_> {
        Remote {
            kind: self.kind,
            topic: &self.topic,
            source: self.source.as_deref(),
            key: self.key.clone(),
            payload: self.payload.clone(),
            content_type: self.content_type.as_deref(),
            timestamp_ms: Some(self.ts),
            extension: None,
        }
    }

    /// The broker message for this event.
    pub(crate) fn encode(&self) -> Message {
        let mut headers = Vec::with_capacity(9);
        headers.extend([
            (ID.into(), self.id.to_string()),
            (ORIGIN.into(), self.origin.to_string()),
            (KIND.into(), kind_str(self.kind).to_owned()),
            (TS.into(), self.ts.to_string()),
            (TOPIC.into(), self.topic.to_string()),
        ]);
        let optional = [
            (SOURCE, &self.source),
            (TARGET, &self.target),
            (CONTENT_TYPE, &self.content_type),
            (SIG, &self.sig),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                headers.push((name.into(), v.to_string()));
            }
        }
        Message {
            topic: String::new(),
            key: self.key.clone(),
            value: self.payload.clone(),
            timestamp_ms: Some(self.ts),
            headers,
            ack: None,
        }
    }

    fn mac(&self, token: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
        let id = self.id.to_string();
        let ts = self.ts.to_string();
        // Every field the receiver copies onto the event, content type
        // included (it tells the receiver how to read the payload).
        let fields: [&[u8]; 10] = [
            id.as_bytes(),
            self.origin.as_bytes(),
            self.source.as_deref().unwrap_or("").as_bytes(),
            self.target.as_deref().unwrap_or("").as_bytes(),
            kind_str(self.kind).as_bytes(),
            ts.as_bytes(),
            self.topic.as_bytes(),
            self.key.as_deref().unwrap_or(b""),
            self.content_type.as_deref().unwrap_or("").as_bytes(),
            &self.payload,
        ];
        for f in fields {
            mac.update(&(f.len() as u64).to_be_bytes());
            mac.update(f);
        }
        mac
    }

    /// Sets `sig` to the HMAC-SHA256 of the event keyed by `token`.
    pub(crate) fn sign(&mut self, token: &str) {
        let bytes = self.mac(token).finalize().into_bytes();
        self.sig = Some(Cow::Owned(hex(&bytes)));
    }

    /// Whether `sig` is present and matches (constant-time comparison).
    pub(crate) fn verify(&self, token: &str) -> Verdict {
        let Some(sig) = &self.sig else { return Verdict::Unsigned };
        match unhex(sig) {
            Some(bytes) if self.mac(token).verify_slice(&bytes).is_ok() => Verdict::Valid,
            _ => Verdict::Forged,
        }
    }
}

/// The outcome of a signature check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid,
    Unsigned,
    Forged,
}

/// `bytes` as lower-case hex (what [`unhex`] reads back).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string (either case); `None` when it is not hex.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Whether `msg` is a user broadcast this instance emitted: this origin
/// (the first one, as `decode` reads it), no target, and every field
/// `decode` requires well formed (a numeric id and timestamp, a topic, a
/// valid source uid if any, no `chronica-unreadable`). Root events and
/// anything malformed go on to be decoded and verified, so a message that
/// only claims this origin is still counted as forged, unsigned or
/// malformed: one skipped here would be neither delivered nor counted.
/// (The checks repeat `decode`'s, without building the event: every
/// instance reads back all it publishes, so this runs on half the traffic
/// of a two-instance fabric; `own_broadcasts_decode` keeps them in step.)
pub(crate) fn is_own_broadcast(msg: &Message, instance_id: &str) -> bool {
    msg.header(KIND) == Some("user")
        && msg.header(ORIGIN) == Some(instance_id)
        && msg.header(TARGET).is_none()
        && msg.header(ID).is_some_and(|id| id.parse::<u64>().is_ok())
        && msg.header(TS).is_some_and(|ts| ts.parse::<i64>().is_ok())
        && msg.header(TOPIC).is_some()
        && msg.header(SOURCE).is_none_or(|u| (1..=255).contains(&u.len()))
        && msg.header(UNREADABLE).is_none()
}

/// Decodes a received message; `Err` says why it is malformed.
pub(crate) fn decode(msg: &Message) -> Result<Decoded<'_>, String> {
    if let Some(why) = msg.header(UNREADABLE) {
        return Err(format!("unreadable: {why}"));
    }
    let Some(id) = msg.header(ID) else {
        return Ok(Decoded::Plain {
            topic: msg.header(TOPIC).unwrap_or(&msg.topic),
            key: msg.key.clone(),
            payload: msg.value.clone(),
            ts: msg.timestamp_ms,
            content_type: msg.header(CONTENT_TYPE),
        });
    };
    let id = id.parse::<u64>().map_err(|_| format!("{ID} {id:?} is not an unsigned integer"))?;
    let origin = msg.header(ORIGIN).filter(|o| !o.is_empty()).ok_or_else(|| format!("{ORIGIN} missing"))?;
    let kind = match msg.header(KIND) {
        Some("user") => EventKind::User,
        Some("root") => EventKind::Root,
        other => return Err(format!("{KIND} {other:?} is neither \"user\" nor \"root\"")),
    };
    let ts = msg.header(TS).ok_or_else(|| format!("{TS} missing"))?;
    let ts = ts.parse::<i64>().map_err(|_| format!("{TS} {ts:?} is not an integer"))?;
    let topic = msg.header(TOPIC).ok_or_else(|| format!("{TOPIC} missing"))?;
    let uid = |name: &str| -> Result<Option<Cow<'_, str>>, String> {
        match msg.header(name) {
            None => Ok(None),
            Some(u) if (1..=255).contains(&u.len()) => Ok(Some(Cow::Borrowed(u))),
            Some(u) => Err(format!("{name} {u:?} is not a valid uid (1 to 255 bytes)")),
        }
    };
    Ok(Decoded::Chronica(WireEvent {
        id,
        origin: Cow::Borrowed(origin),
        source: uid(SOURCE)?,
        target: uid(TARGET)?,
        kind,
        ts,
        topic: Cow::Borrowed(topic),
        key: msg.key.clone(),
        payload: msg.value.clone(),
        content_type: msg.header(CONTENT_TYPE).map(Cow::Borrowed),
        sig: msg.header(SIG).map(Cow::Borrowed),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> WireEvent<'static> {
        WireEvent {
            id: 7,
            origin: "a".into(),
            source: None,
            target: Some("n1".into()),
            kind: EventKind::Root,
            ts: 1,
            topic: "chronica.sync".into(),
            key: None,
            payload: Bytes::from_static(b"{}"),
            content_type: None,
            sig: None,
        }
    }

    #[test]
    fn round_trip_and_signature() {
        let mut e = root();
        assert_eq!(e.verify("t"), Verdict::Unsigned);
        e.sign("t");
        let encoded = e.encode();
        let back = match decode(&encoded).unwrap() {
            Decoded::Chronica(w) => w,
            other => panic!("{other:?}"),
        };
        assert_eq!(back, e);
        assert_eq!(back.verify("t"), Verdict::Valid);
        assert_eq!(back.verify("other"), Verdict::Forged);
        let mut tampered = back.clone();
        tampered.payload = Bytes::from_static(b"{\"x\":1}");
        assert_eq!(tampered.verify("t"), Verdict::Forged);
        let mut relabelled = back.clone();
        relabelled.content_type = Some("application/msgpack".into());
        assert_eq!(relabelled.verify("t"), Verdict::Forged, "the content type is signed too");
    }

    #[test]
    fn own_broadcasts() {
        let mut e = root();
        e.kind = EventKind::User;
        assert!(!is_own_broadcast(&e.encode(), "a"), "unicast");
        e.target = None;
        assert!(is_own_broadcast(&e.encode(), "a"));
        assert!(!is_own_broadcast(&e.encode(), "b"), "another origin");
        assert!(!is_own_broadcast(&Message::new("x"), "a"), "foreign");
        let mut bad_id = e.encode();
        bad_id.headers[0].1 = "seven".into();
        assert!(!is_own_broadcast(&bad_id, "a"), "malformed: decoded, counted");
        e.kind = EventKind::Root;
        assert!(!is_own_broadcast(&e.encode(), "a"), "root: verified first");
    }

    /// Every message the own-broadcast shortcut skips would decode: one
    /// that would not is malformed, and must reach the malformed count.
    #[test]
    fn own_broadcasts_decode() {
        let mut e = root();
        e.kind = EventKind::User;
        e.target = None;
        e.source = Some("n1".into());
        let good = e.encode();
        assert!(is_own_broadcast(&good, "a") && decode(&good).is_ok());
        let without = |name: &str| {
            let mut m = good.clone();
            m.headers.retain(|(k, _)| k != name);
            m
        };
        let with = |name: &str, value: &str| {
            let mut m = without(name);
            m.headers.push((name.to_owned().into(), value.into()));
            m
        };
        let unreadable = {
            let mut m = good.clone();
            m.headers.push(crate::mq::unreadable("a bad header"));
            m
        };
        for (why, m) in [
            ("no topic", without(TOPIC)),
            ("no ts", without(TS)),
            ("bad ts", with(TS, "soon")),
            ("empty source", with(SOURCE, "")),
            ("long source", with(SOURCE, &"s".repeat(256))),
            ("unreadable", unreadable),
        ] {
            assert!(decode(&m).is_err(), "{why}: decodes");
            assert!(!is_own_broadcast(&m, "a"), "{why}: skipped as our own, so never counted");
        }
    }

    #[test]
    fn plain_and_malformed() {
        let mut m = Message::new("hi");
        m.topic = "orders".into();
        assert!(matches!(decode(&m).unwrap(), Decoded::Plain { topic, .. } if topic == "orders"));
        m.headers.push((ID.into(), "x".into()));
        assert!(decode(&m).is_err());
        m.headers[0].1 = "1".into();
        assert!(decode(&m).unwrap_err().contains(ORIGIN));
        let mut empty = root();
        empty.topic = "".into();
        let encoded = empty.encode();
        assert_eq!(encoded.header(TOPIC), Some(""), "the empty topic is written, empty");
        assert!(matches!(decode(&encoded).unwrap(), Decoded::Chronica(w) if w.topic.is_empty()));
        let mut topicless = encoded.clone();
        topicless.headers.retain(|(k, _)| k != TOPIC);
        assert!(decode(&topicless).unwrap_err().contains(TOPIC), "a Chronica message names its topic");
        let mut unreadable = Message::new("hi");
        unreadable.headers.push(crate::mq::unreadable("a bad header"));
        assert!(decode(&unreadable).unwrap_err().contains("a bad header"), "never a plain event");
    }
    mod model {
        //! The wire format against random events and random header sets.

        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![Just(String::new()), "[a-z.>*]{1,12}", any::<String>()]
        }

        fn uid() -> impl Strategy<Value = String> {
            prop_oneof!["[a-z0-9]{1,8}", Just("u".repeat(255)), "\\PC{1,40}"]
                .prop_filter("1 to 255 bytes", |u| (1..=255).contains(&u.len()))
        }

        fn bytes() -> impl Strategy<Value = Bytes> {
            prop::collection::vec(any::<u8>(), 0..48).prop_map(Bytes::from)
        }

        prop_compose! {
            fn event()(
                id in any::<u64>(),
                origin in uid(),
                source in prop::option::of(uid()),
                target in prop::option::of(uid()),
                root in any::<bool>(),
                ts in any::<i64>(),
                topic in text(),
                key in prop::option::of(bytes()),
                payload in bytes(),
                content_type in prop::option::of(text()),
            ) -> WireEvent<'static> {
                WireEvent {
                    id,
                    origin: origin.into(),
                    source: source.map(Cow::Owned),
                    target: target.map(Cow::Owned),
                    kind: if root { EventKind::Root } else { EventKind::User },
                    ts,
                    topic: topic.into(),
                    key,
                    payload,
                    content_type: content_type.map(Cow::Owned),
                    sig: None,
                }
            }
        }

        /// `e` with field `which` (0 to 9, each signed field once) changed.
        fn changed(e: &WireEvent<'static>, which: usize) -> WireEvent<'static> {
            let mut c = e.clone();
            let other = |s: &str| Cow::Owned(format!("{s}x"));
            match which {
                0 => c.id = e.id.wrapping_add(1),
                1 => c.origin = other(&e.origin),
                2 => c.source = Some(other(e.source.as_deref().unwrap_or(""))),
                3 => c.target = Some(other(e.target.as_deref().unwrap_or(""))),
                4 => c.kind = if e.kind == EventKind::Root { EventKind::User } else { EventKind::Root },
                5 => c.ts = e.ts.wrapping_add(1),
                6 => c.topic = other(&e.topic),
                7 => c.key = Some(Bytes::from([e.key.as_deref().unwrap_or(b""), b"x"].concat())),
                8 => c.content_type = Some(other(e.content_type.as_deref().unwrap_or(""))),
                _ => c.payload = Bytes::from([&e.payload[..], b"x"].concat()),
            }
            c
        }

        /// A header as a sender might write it: each of Chronica's names,
        /// with a value that parses or one that does not.
        fn header() -> impl Strategy<Value = (Cow<'static, str>, String)> {
            let values: Vec<(&'static str, &'static [&'static str])> = vec![
                (ID, &["7", "18446744073709551615", "+7", "18446744073709551616", "-1", "seven", ""]),
                (ORIGIN, &["me", "other", ""]),
                (SOURCE, &["n1", ""]),
                (TARGET, &["n2", ""]),
                (KIND, &["user", "root", "User", ""]),
                (TS, &["1", "-5", "soon", ""]),
                (TOPIC, &["t", ""]),
                (CONTENT_TYPE, &["application/json"]),
                (SIG, &["00", "zz"]),
                (UNREADABLE, &["a bad header"]),
            ];
            let long = "s".repeat(256);
            prop_oneof![
                prop::sample::select(values).prop_flat_map(|(name, vs)| {
                    prop::sample::select(vs).prop_map(move |v| (Cow::Borrowed(name), v.to_owned()))
                }),
                prop::sample::select(vec![SOURCE, TARGET])
                    .prop_map(move |n| (Cow::Borrowed(n), long.clone())),
                Just((Cow::Owned("x-foreign".to_owned()), "1".to_owned())),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// What is encoded decodes to the same event.
            #[test]
            fn encode_then_decode(e in event()) {
                let m = e.encode();
                prop_assert_eq!(decode(&m), Ok(Decoded::Chronica(e.clone())));
            }

            /// A signature holds for its token only, and for the event it
            /// was made for only: a change to any one field breaks it.
            #[test]
            fn a_signature_covers_every_field(e in event(), which in 0..10usize) {
                let mut signed = e.clone();
                signed.sign("token");
                prop_assert_eq!(signed.verify("token"), Verdict::Valid);
                prop_assert_eq!(signed.verify("another token"), Verdict::Forged);
                prop_assert_eq!(e.verify("token"), Verdict::Unsigned);
                let mut forged = changed(&e, which);
                forged.sig = signed.sig.clone();
                prop_assert_eq!(forged.verify("token"), Verdict::Forged);
            }

            /// A byte moved from one field to the next (the topic's last to
            /// the key's first) breaks the signature too: each field is
            /// signed with its length.
            #[test]
            fn fields_do_not_run_into_each_other(e in event()) {
                let key = e.key.clone().unwrap_or_default();
                let mut signed = e.clone();
                signed.key = Some(Bytes::from([&b"k"[..], &key].concat()));
                signed.sign("token");
                let mut forged = e.clone();
                forged.topic = format!("{}k", e.topic).into();
                forged.key = Some(key);
                forged.sig = signed.sig.clone();
                prop_assert_eq!(forged.verify("token"), Verdict::Forged);
            }

            /// The shortcut for this instance's own broadcasts skips
            /// exactly the messages that decode as one: a message it
            /// skipped that would not decode would be neither delivered
            /// nor counted as malformed.
            #[test]
            fn own_broadcasts_are_what_decodes_as_one(
                from_own in any::<bool>(),
                removed in prop::collection::vec(prop::sample::select(NAMES.to_vec()), 0..3),
                before in prop::collection::vec(header(), 0..4),
                after in prop::collection::vec(header(), 0..4),
            ) {
                // Near the boundary: one of this instance's broadcasts with
                // headers taken out, and others put before (where they are
                // the ones read) or after it.
                let mut m = Message::new("v");
                m.topic = "fabric".into();
                if from_own {
                    let mut e = root();
                    (e.kind, e.origin, e.target) = (EventKind::User, "me".into(), None);
                    m = e.encode();
                }
                m.headers.retain(|(k, _)| !removed.contains(&k.as_ref()));
                m.headers.splice(0..0, before);
                m.headers.extend(after);
                let own = matches!(
                    decode(&m),
                    Ok(Decoded::Chronica(w))
                        if w.kind == EventKind::User && w.origin == "me" && w.target.is_none()
                );
                prop_assert_eq!(is_own_broadcast(&m, "me"), own);
            }
        }
    }
}
