//! Payload serializers for the [`EventBus`](crate::EventBus): how a value
//! becomes payload bytes and back, and the content type that labels them.
//!
//! A serializer is a stateless value shared by every thread of a bus. The
//! content type it reports travels with each event it encoded
//! ([`Event::content_type`](crate::Event::content_type)), so a consumer that
//! decodes with a different serializer gets a clear mismatch error instead
//! of garbage.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The error a serializer reports; its text is shown to the user.
pub type SerializerError = Box<dyn std::error::Error + Send + Sync>;

/// Turns values into payload bytes and back.
///
/// Implementations must be pure: the same value always encodes to bytes that
/// decode to an equal value with the same serializer.
pub trait Serializer: fmt::Debug + Send + Sync + 'static {
    /// The MIME type carried with every event this serializer encodes, for
    /// example `application/json`.
    fn content_type(&self) -> &str;

    /// Encodes `value`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, SerializerError>;

    /// Decodes `bytes` into a `T`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, SerializerError>;
}

/// JSON through `serde_json`, the default (`application/json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

/// The content type of [`Json`].
pub const JSON_CONTENT_TYPE: &str = "application/json";

impl Serializer for Json {
    fn content_type(&self) -> &str {
        JSON_CONTENT_TYPE
    }
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, SerializerError> {
        Ok(serde_json::to_vec(value)?)
    }
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, SerializerError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// MessagePack through `rmp-serde` (`application/msgpack`). Structs are
/// encoded as maps with field names, so other MessagePack libraries (the
/// Python `msgpack` package, for one) read them as dictionaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessagePack;

/// The content type of [`MessagePack`].
pub const MSGPACK_CONTENT_TYPE: &str = "application/msgpack";

impl Serializer for MessagePack {
    fn content_type(&self) -> &str {
        MSGPACK_CONTENT_TYPE
    }
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, SerializerError> {
        Ok(rmp_serde::to_vec_named(value)?)
    }
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, SerializerError> {
        Ok(rmp_serde::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_round_trip_a_map() {
        let v = serde_json::json!({"id": 7, "items": ["a", "b"], "paid": true});
        let back: serde_json::Value = Json.decode(&Json.encode(&v).unwrap()).unwrap();
        assert_eq!(back, v);
        let back: serde_json::Value = MessagePack.decode(&MessagePack.encode(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }
}
