//! Decoding event payloads into typed values, with errors that name the
//! topic, the expected type and the serializer involved.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::error::NodeError;
use crate::event::Event;
use crate::serializer::{Json, MessagePack, Serializer, JSON_CONTENT_TYPE, MSGPACK_CONTENT_TYPE};

/// Why a payload could not be decoded. Never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The event carries a content type other than the decoding serializer's:
    /// producer and consumer use different serializers.
    SerializerMismatch {
        /// The event's topic.
        topic: String,
        /// The content type of the serializer asked to decode.
        expected: String,
        /// The content type the event carries.
        found: String,
    },
    /// The payload is valid for its serializer but is not a valid value of
    /// the expected type (or is not valid at all).
    Type {
        /// The event's topic.
        topic: String,
        /// The Rust type asked for, as `std::any::type_name` spells it.
        expected_type: &'static str,
        /// The serializer's content type.
        content_type: String,
        /// The serializer's own explanation.
        detail: String,
    },
    /// [`EventExt::unmarshal`] knows no built-in serializer for this
    /// content type; use [`EventExt::unmarshal_with`].
    UnknownContentType {
        /// The event's topic.
        topic: String,
        /// The content type the event carries.
        content_type: String,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::SerializerMismatch { topic, expected, found } => write!(
                f,
                "event on topic {topic:?} was encoded as {found:?} but the consumer decodes {expected:?} \
                 (serializer mismatch between producer and consumer)"
            ),
            DecodeError::Type { topic, expected_type, content_type, detail } => write!(
                f,
                "event on topic {topic:?} does not decode as {expected_type} ({content_type}): {detail}"
            ),
            DecodeError::UnknownContentType { topic, content_type } => write!(
                f,
                "event on topic {topic:?} has content type {content_type:?}, which no built-in \
                 serializer reads; decode it with unmarshal_with"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for NodeError {
    fn from(e: DecodeError) -> Self {
        NodeError::new(e.to_string())
    }
}

/// Decodes `event`'s payload with `serializer`, first checking that the
/// event's content type (when it has one) is the serializer's.
pub fn decode<T: DeserializeOwned, S: Serializer>(event: &Event, serializer: &S) -> Result<T, DecodeError> {
    let expected = serializer.content_type();
    if let Some(found) = event.content_type() {
        if found != expected {
            return Err(DecodeError::SerializerMismatch {
                topic: event.topic().to_owned(),
                expected: expected.to_owned(),
                found: found.to_owned(),
            });
        }
    }
    serializer.decode(event.payload()).map_err(|e| DecodeError::Type {
        topic: event.topic().to_owned(),
        expected_type: std::any::type_name::<T>(),
        content_type: expected.to_owned(),
        detail: e.to_string(),
    })
}

/// Typed decoding on [`Event`].
pub trait EventExt {
    /// Decodes with the built-in serializer named by the event's content
    /// type: JSON when it has none or `application/json`, MessagePack for
    /// `application/msgpack`.
    fn unmarshal<T: DeserializeOwned>(&self) -> Result<T, DecodeError>;
    /// Decodes with `serializer`, refusing an event labelled with another
    /// content type.
    fn unmarshal_with<T: DeserializeOwned, S: Serializer>(&self, serializer: &S) -> Result<T, DecodeError>;
}

impl EventExt for Event {
    fn unmarshal<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        match self.content_type() {
            None | Some(JSON_CONTENT_TYPE) => decode(self, &Json),
            Some(MSGPACK_CONTENT_TYPE) => decode(self, &MessagePack),
            Some(other) => Err(DecodeError::UnknownContentType {
                topic: self.topic().to_owned(),
                content_type: other.to_owned(),
            }),
        }
    }
    fn unmarshal_with<T: DeserializeOwned, S: Serializer>(&self, serializer: &S) -> Result<T, DecodeError> {
        decode(self, serializer)
    }
}
