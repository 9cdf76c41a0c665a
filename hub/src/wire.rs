//! The JSON shapes that cross the network: events coming in through the
//! emit API and batches going out to webhooks and streams.
//!
//! Payloads are bytes inside the engine. An emitter gives either `payload`
//! (any JSON value, kept as its exact text, labelled `application/json`) or
//! `payload_b64` (raw bytes, labelled `application/octet-stream`). On the way
//! out a payload is written as `payload` when it is JSON (the hub's own JSON
//! events and the engine's control events), else as `payload_b64`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use chronica::{Batch, Event, EventKind, Message};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

const JSON: &str = "application/json";
const OCTETS: &str = "application/octet-stream";

/// One event as a client emits it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventIn {
    /// Dot-separated topic; may be empty.
    #[serde(default)]
    pub(crate) topic: String,
    /// A JSON payload, kept verbatim (`null` included: absent is `None`).
    #[serde(default, deserialize_with = "present")]
    pub(crate) payload: Option<Box<RawValue>>,
    /// A binary payload, base64 (standard alphabet, padded).
    pub(crate) payload_b64: Option<String>,
    /// Emit on behalf of this registered node (it does not receive its own event).
    pub(crate) source: Option<String>,
    /// Ordering / partition key.
    pub(crate) key: Option<String>,
}

/// A field that is present, whatever its JSON value: serde reads a plain
/// `Option` as `None` for `null`, which would drop a `null` payload. With
/// `#[serde(default)]`, so that an absent field is `None`.
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// A payload as given by a client: JSON text or base64 bytes, not both.
pub(crate) fn payload(json: Option<&RawValue>, b64: Option<&str>) -> Result<(Bytes, &'static str), String> {
    match (json, b64) {
        (Some(_), Some(_)) => Err("give either payload or payload_b64, not both".into()),
        (Some(raw), None) => Ok((Bytes::copy_from_slice(raw.get().as_bytes()), JSON)),
        (None, Some(text)) => {
            let bytes = B64.decode(text).map_err(|e| format!("payload_b64 is not valid base64: {e}"))?;
            Ok((Bytes::from(bytes), OCTETS))
        }
        (None, None) => Ok((Bytes::new(), OCTETS)),
    }
}

impl EventIn {
    /// The engine message for this event; refuses a malformed payload.
    pub(crate) fn into_message(self) -> Result<Message<'static>, String> {
        let (bytes, content_type) = payload(self.payload.as_deref(), self.payload_b64.as_deref())?;
        let mut msg = Message::new(self.topic, bytes).content_type(content_type);
        if let Some(source) = self.source {
            msg = msg.source(source);
        }
        if let Some(key) = self.key {
            msg = msg.key(Bytes::from(key));
        }
        Ok(msg)
    }
}

/// One event as a node receives it.
#[derive(Debug, Serialize)]
struct EventOut<'a> {
    id: u64,
    kind: &'static str,
    topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_b64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trust_token: Option<&'a str>,
    timestamp_ms: i64,
}

impl<'a> EventOut<'a> {
    fn new(e: &'a Event) -> Self {
        let bytes: &'a [u8] = e.payload();
        let json = match e.content_type() {
            Some(OCTETS) => None,
            _ if bytes.is_empty() => None,
            _ => std::str::from_utf8(bytes).ok().and_then(|s| serde_json::from_str::<&RawValue>(s).ok()),
        };
        let b64 = match (&json, bytes.is_empty()) {
            (None, false) => Some(B64.encode(bytes)),
            _ => None,
        };
        EventOut {
            id: e.id(),
            kind: match e.kind() {
                EventKind::User => "user",
                EventKind::Root => "root",
            },
            topic: e.topic(),
            source: e.source(),
            key: e.key().map(String::from_utf8_lossy),
            payload: json,
            payload_b64: b64,
            trust_token: e.trust_token(),
            timestamp_ms: e.timestamp_ms(),
        }
    }
}

/// The body of one delivery: a webhook POST, or a stream frame when `seq`
/// is set.
#[derive(Debug, Serialize)]
struct BatchOut<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    frame: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    node: &'a str,
    lane: &'static str,
    events: Vec<EventOut<'a>>,
}

/// Encodes a batch for node `uid`; `seq` numbers a stream frame.
pub(crate) fn encode_batch(uid: &str, batch: &Batch, seq: Option<u64>) -> Vec<u8> {
    let out = BatchOut {
        frame: seq.map(|_| "batch"),
        seq,
        node: uid,
        lane: if batch.is_root() { "root" } else { "user" },
        events: batch.iter().map(|e| EventOut::new(e)).collect(),
    };
    // Serializing borrowed strings and raw JSON into a Vec cannot fail.
    serde_json::to_vec(&out).unwrap_or_default()
}

/// The ids of a batch, comma-separated, for the `X-Chronica-Event-Ids` header.
pub(crate) fn event_ids(batch: &Batch) -> String {
    let mut s = String::with_capacity(batch.len() * 8);
    for (i, e) in batch.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&e.id().to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_forms() {
        let raw = RawValue::from_string("{\"a\": 1}".into()).unwrap();
        assert_eq!(payload(Some(&raw), None).unwrap(), (Bytes::from_static(b"{\"a\": 1}"), JSON));
        assert_eq!(payload(None, Some("AAE=")).unwrap(), (Bytes::from_static(&[0, 1]), OCTETS));
        assert!(payload(Some(&raw), Some("AA==")).unwrap_err().contains("not both"));
        assert!(payload(None, Some("@@")).unwrap_err().contains("base64"));
    }

    #[test]
    fn a_null_payload_is_kept_and_an_absent_one_is_none() {
        let null: EventIn = serde_json::from_str(r#"{"topic": "a", "payload": null}"#).unwrap();
        assert_eq!(null.payload.as_deref().map(RawValue::get), Some("null"));
        let none: EventIn = serde_json::from_str(r#"{"topic": "a"}"#).unwrap();
        assert!(none.payload.is_none());
    }
}
