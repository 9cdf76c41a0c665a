//! Stream entries of the Redis adapter: read out of a reply by moving its
//! strings, and turned into [`Message`]s.
//!
//! `redis::streams::StreamReadReply` builds a hash map per entry and copies
//! every field value out of the reply; for Chronica's entries (seven fields)
//! that was most of a receiver's CPU time, so the reply is walked here
//! instead.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use redis::streams::StreamId;
use redis::Value;

use super::{AckToken, Message};

/// One entry: its id and its fields in the entry's order.
pub(super) struct Entry {
    pub(super) id: String,
    fields: Vec<(String, Value)>,
}

impl Entry {
    /// True for an entry read back with no fields: a pending entry the
    /// stream trimmed before it was acknowledged.
    pub(super) fn is_gone(&self) -> bool {
        self.fields.is_empty()
    }
}

impl From<StreamId> for Entry {
    fn from(e: StreamId) -> Self {
        Entry { id: e.id, fields: e.map.into_iter().collect() }
    }
}

/// What the broker acknowledges: the entry `id` of stream `key` in `group`.
pub(super) struct RedisAck {
    pub(super) key: Arc<str>,
    pub(super) group: Arc<str>,
    pub(super) id: String,
}

/// Appends the entries of an `XREADGROUP` reply (RESP2 arrays or a RESP3
/// map of stream to entries) to `out`. An entry whose fields were deleted
/// (a pending entry re-read after `XDEL`) comes with none.
pub(super) fn read_reply(reply: Value, out: &mut Vec<Entry>) {
    let streams: Vec<Value> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut key_entries) if key_entries.len() == 2 => key_entries.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    for entries in streams {
        let Value::Array(entries) = entries else { continue };
        for entry in entries {
            let Value::Array(mut id_fields) = entry else { continue };
            if id_fields.len() != 2 {
                continue;
            }
            let fields = id_fields.pop().map(fields_of).unwrap_or_default();
            if let Some(id) = id_fields.pop().and_then(text) {
                out.push(Entry { id, fields });
            }
        }
    }
}

fn fields_of(v: Value) -> Vec<(String, Value)> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Array(flat) => {
            let mut it = flat.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        Value::Map(pairs) => pairs,
        _ => Vec::new(),
    };
    pairs.into_iter().filter_map(|(k, v)| Some((text(k)?, v))).collect()
}

/// A string reply's text, moved out when it is valid UTF-8.
fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => {
            Some(String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
        }
        Value::SimpleString(s) => Some(s),
        other => bytes_of(other).map(|b| String::from_utf8_lossy(&b).into_owned()),
    }
}

/// The bytes of a string reply, moved out of it.
fn bytes_of(v: Value) -> Option<Bytes> {
    match v {
        Value::BulkString(b) => Some(Bytes::from(b)),
        Value::SimpleString(s) => Some(Bytes::from(s)),
        other => redis::from_redis_value_ref::<Vec<u8>>(&other).ok().map(Bytes::from),
    }
}

/// The message of `entry` read from stream `key` by `group`: field `value`
/// is the value, `key` the key, every other field a header (sorted by
/// name); the id's milliseconds are the timestamp. A foreign entry without
/// `value` is taken whole: its fields as a JSON object.
pub(super) fn to_message(key: &Arc<str>, group: &Arc<str>, entry: Entry) -> Message {
    let ms = entry.id.split('-').next().and_then(|t| t.parse::<i64>().ok());
    let (mut value, mut msg_key) = (None, None);
    let mut headers: Vec<(Cow<'static, str>, String)> = Vec::with_capacity(entry.fields.len());
    for (k, v) in entry.fields {
        match k.as_str() {
            "value" => value = bytes_of(v),
            "key" => msg_key = bytes_of(v),
            _ => headers.push((Cow::Owned(k), text(v).unwrap_or_default())),
        }
    }
    headers.sort_unstable();
    let value = value.unwrap_or_else(|| {
        let obj: serde_json::Map<String, serde_json::Value> =
            headers.drain(..).map(|(k, v)| (k.into_owned(), serde_json::Value::String(v))).collect();
        Bytes::from(serde_json::Value::Object(obj).to_string())
    });
    Message {
        topic: key.to_string(),
        key: msg_key,
        value,
        timestamp_ms: ms,
        headers,
        ack: Some(AckToken::new(RedisAck { key: key.clone(), group: group.clone(), id: entry.id })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_resp2_and_resp3_replies() {
        let entry = |id: &str, fields: Vec<Value>| Value::Array(vec![bulk(id), Value::Array(fields)]);
        let entries = Value::Array(vec![
            entry(
                "5-0",
                vec![bulk("value"), bulk("v"), bulk("chronica-id"), bulk("7"), bulk("key"), bulk("k")],
            ),
            Value::Array(vec![bulk("6-0"), Value::Nil]),
        ]);
        let mut out = Vec::new();
        read_reply(Value::Array(vec![Value::Array(vec![bulk("s"), entries.clone()])]), &mut out);
        read_reply(Value::Map(vec![(bulk("s"), entries)]), &mut out);
        read_reply(Value::Nil, &mut out);
        assert_eq!(out.len(), 4);
        let (k, g): (Arc<str>, Arc<str>) = ("s".into(), "g".into());
        let mut msgs = out.into_iter().map(|e| to_message(&k, &g, e));
        let m = msgs.next().unwrap();
        assert_eq!((&m.value[..], m.key.as_deref(), m.timestamp_ms), (&b"v"[..], Some(&b"k"[..]), Some(5)));
        assert_eq!(m.headers, vec![("chronica-id".into(), "7".to_owned())]);
        let deleted = msgs.next().unwrap();
        assert_eq!((&deleted.value[..], deleted.headers.len()), (&b"{}"[..], 0));
    }
}
