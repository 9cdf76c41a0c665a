//! The HTTP API: routes, the JSON body extractor, and the error shape.
//!
//! Every error is `{"error": "<what went wrong>"}` with a fitting status,
//! axum's own refusals included (see [`error::json_errors`]).
//! A request is parsed and checked completely before it touches the
//! director, so a malformed one (400) changes nothing.

mod deadline;
mod emit;
mod error;
mod nodes;
mod stats;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde::de::DeserializeOwned;

pub(crate) use self::error::ApiError;
use crate::hub::Hub;

/// A JSON body: read as bytes under the body limit (413 beyond it), then
/// parsed (400 with serde's message, which names line and column).
#[derive(Debug)]
pub(crate) struct Body<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes =
            Bytes::from_request(req, state).await.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        parse(&bytes).map(Body)
    }
}

/// A JSON body that may be left out: an empty body is `T::default()`.
#[derive(Debug)]
pub(crate) struct OptionalBody<T>(pub(crate) T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes =
            Bytes::from_request(req, state).await.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        if bytes.is_empty() {
            return Ok(OptionalBody(T::default()));
        }
        parse(&bytes).map(OptionalBody)
    }
}

/// Parses a JSON body (400 with serde's message, which names line and
/// column).
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
}

/// The whole application: public routes, authenticated routes, metrics.
pub(crate) fn router(hub: Arc<Hub>) -> Router {
    let private = Router::new()
        .route("/v1/nodes", post(nodes::register).get(nodes::list))
        .route("/v1/nodes/{uid}", get(nodes::get_one).delete(nodes::unregister))
        .route("/v1/nodes/{uid}/connected", post(nodes::connected))
        .route("/v1/nodes/{uid}/disconnected", post(nodes::disconnected))
        .route("/v1/nodes/{uid}/subscribe", post(nodes::subscribe))
        .route("/v1/nodes/{uid}/secret", post(nodes::rotate_secret))
        .route("/v1/nodes/{uid}/stream", get(nodes::stream))
        .route("/v1/emit", post(emit::emit))
        .route("/v1/emit_to", post(emit::emit_to))
        .route("/v1/emit_root", post(emit::emit_root))
        .route("/v1/emit_root_to", post(emit::emit_root_to))
        .route("/v1/stats", get(stats::stats))
        .route("/v1/stats/history", get(stats::history))
        .route("/metrics", get(stats::metrics))
        .route_layer(from_fn_with_state(hub.clone(), crate::auth::require_bearer));
    let public = Router::new().route("/", get(stats::status_page)).route("/health", get(stats::health));
    Router::new()
        .merge(private)
        .merge(public)
        .fallback(not_found)
        .layer(from_fn_with_state(hub.clone(), deadline::body_deadline))
        .layer(from_fn(error::json_errors))
        .layer(from_fn_with_state(hub.clone(), crate::metrics::track))
        .layer(DefaultBodyLimit::max(hub.settings.body_limit))
        .with_state(hub)
}

async fn not_found() -> ApiError {
    ApiError::new(axum::http::StatusCode::NOT_FOUND, "no such route")
}
