//! The API's error type: a status and a message, rendered as JSON, and the
//! middleware that gives axum's own refusals (405, path and WebSocket
//! rejections) the same shape.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Largest framework error text kept; such texts are one short line.
const TEXT_LIMIT: usize = 4096;

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

/// Middleware: turns every error answer not already JSON into
/// `{"error": ...}`. Axum's extractors and method router answer in plain
/// text (or, for 405, with no body); catching them here keeps the shape the
/// API documents for every route, present and future. Headers such as
/// `Allow` and `WWW-Authenticate` are kept; successes (the Prometheus text,
/// the status page, a WebSocket upgrade) pass untouched.
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(resp.status().is_client_error() || resp.status().is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, TEXT_LIMIT).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match (parts.status, text.trim()) {
        // The method router adds `Allow` outside this layer, so the
        // message points to it rather than repeating it.
        (StatusCode::METHOD_NOT_ALLOWED, _) => {
            format!("method {method} is not allowed on {path}; the Allow header lists the methods that are")
        }
        (status, "") => status.canonical_reason().unwrap_or("error").to_owned(),
        (_, text) => text.to_owned(),
    };
    let json = serde_json::to_vec(&ErrorBody { error: &message, emitted: None }).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(json))
}
