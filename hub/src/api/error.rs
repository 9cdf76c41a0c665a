//! The API's error type: a status and a message, rendered as JSON.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// An API failure: `{"error": message}` (plus the ids already emitted when a
/// multi-event emit stopped midway).
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    emitted: Option<Vec<u64>>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    emitted: Option<&'a [u64]>,
}

impl ApiError {
    /// An error with this status and message.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), emitted: None }
    }
    /// 400.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 403.
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    /// 409.
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    /// 500.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// Adds the ids emitted before the failure.
    pub(crate) fn with_emitted(mut self, ids: Vec<u64>) -> Self {
        self.emitted = Some(ids);
        self
    }
}

impl From<chronica::Error> for ApiError {
    fn from(e: chronica::Error) -> Self {
        use chronica::Error as E;
        let status = match &e {
            E::UnknownNode(_) => StatusCode::NOT_FOUND,
            E::DuplicateNode(_) => StatusCode::CONFLICT,
            E::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            E::QueueFull(_) | E::Closed => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl From<chronica::mq::MqError> for ApiError {
    fn from(e: chronica::mq::MqError) -> Self {
        use chronica::mq::MqError as M;
        match e {
            M::Engine(e) => e.into(),
            M::Config(_) => Self::new(StatusCode::BAD_REQUEST, e.to_string()),
            _ => Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: &self.message, emitted: self.emitted.as_deref() };
        (self.status, Json(body)).into_response()
    }
}
