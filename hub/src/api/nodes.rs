//! Node routes: register, unregister, connection state, subscriptions,
//! views, and the WebSocket of streaming nodes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{ApiError, Body, OptionalBody};
use crate::hub::{Hub, NodeView, RegisterIn, Registered, Rotated, StatsOut};
use crate::secret::WebhookSecret;

/// `POST /v1/nodes`: 201 with the node's view (and a webhook node's secret).
pub(super) async fn register(
    State(hub): State<Arc<Hub>>,
    Body(req): Body<RegisterIn>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    let done = hub.register(req)?;
    tracing::info!(node = %done.view.uid, kind = done.view.kind, "registered");
    Ok((StatusCode::CREATED, Json(done)))
}

/// `GET /v1/nodes`.
pub(super) async fn list(State(hub): State<Arc<Hub>>) -> Json<Vec<NodeView>> {
    Json(hub.nodes())
}

/// `GET /v1/nodes/{uid}`.
pub(super) async fn get_one(
    State(hub): State<Arc<Hub>>,
    Path(uid): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    Ok(Json(hub.node(&uid)?))
}

/// The query of `DELETE /v1/nodes/{uid}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UnregisterQuery {
    /// Let the node deliver what it holds for up to this long first.
    drain_ms: Option<u64>,
}

/// `DELETE /v1/nodes/{uid}`: 204 once the node's last callback finished;
/// with `?drain_ms=N`, after it delivered what it held (at most N ms),
/// 200 with its final counters.
pub(super) async fn unregister(
    State(hub): State<Arc<Hub>>,
    Path(uid): Path<String>,
    Query(q): Query<UnregisterQuery>,
) -> Result<Response, ApiError> {
    let last = hub.unregister(&uid, q.drain_ms.map(Duration::from_millis)).await?;
    tracing::info!(node = %uid, drain_ms = q.drain_ms, "unregistered");
    Ok(match last {
        Some(stats) => Json(StatsOut::from(stats)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// 409 for a streaming node: it is connected exactly while its socket is
/// open. Marking it connected without one would only fail deliveries, and
/// disconnected with one would hold its events while a connected call
/// could not undo it.
fn not_stream(hub: &Hub, uid: &str) -> Result<(), ApiError> {
    known(hub, uid)?;
    if hub.is_stream(uid) {
        return Err(ApiError::conflict(format!(
            "node {uid:?} is a streaming node: it is connected while its socket is open"
        )));
    }
    Ok(())
}

/// `POST /v1/nodes/{uid}/connected`: resume delivery now, reset backoff
/// (409 for a streaming node).
pub(super) async fn connected(
    State(hub): State<Arc<Hub>>,
    Path(uid): Path<String>,
) -> Result<StatusCode, ApiError> {
    not_stream(&hub, &uid)?;
    hub.director.node_connected(&uid)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/nodes/{uid}/disconnected`: pause delivery (events are held;
/// 409 for a streaming node).
pub(super) async fn disconnected(
    State(hub): State<Arc<Hub>>,
    Path(uid): Path<String>,
) -> Result<StatusCode, ApiError> {
    not_stream(&hub, &uid)?;
    hub.director.node_disconnected(&uid)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/nodes/{uid}/subscribe`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubscribeIn {
    pattern: String,
}

/// `POST /v1/nodes/{uid}/subscribe`: add a topic pattern.
pub(super) async fn subscribe(
    State(hub): State<Arc<Hub>>,
    Path(uid): Path<String>,
    Body(req): Body<SubscribeIn>,
) -> Result<StatusCode, ApiError> {
    known(&hub, &uid)?;
    hub.director.subscribe(&uid, &req.pattern)?;
    hub.note_subscription(&uid, &req.pattern);
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/nodes/{uid}/secret`: empty, `{}`, or a chosen key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateIn {
    secret: Option<WebhookSecret>,
}

/// `POST /v1/nodes/{uid}/secret`: 200 with the webhook node's new signing
/// key (409 for a streaming node).
pub(super) async fn rotate_secret(
    State(hub): State<Arc<Hub>>,
    Path(uid): Path<String>,
    OptionalBody(req): OptionalBody<RotateIn>,
) -> Result<Json<Rotated>, ApiError> {
    let done = hub.rotate_secret(&uid, req.secret)?;
    tracing::info!(node = %uid, "webhook secret rotated");
    Ok(Json(done))
}

/// `GET /v1/nodes/{uid}/stream`: the WebSocket of a streaming node.
pub(super) async fn stream(
    State(hub): State<Arc<Hub>>,
    Path(uid): Path<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Axum refuses a HEAD here with a 405 that has no `Allow` header; a
    // HEAD is a GET without a body, so it gets the GET's answer to a
    // request that is not an upgrade.
    let ws = ws.map_err(|e| match e {
        WebSocketUpgradeRejection::MethodNotGet(_) => ApiError::bad_request(
            "not a WebSocket upgrade request: the stream route takes GET with Upgrade: websocket",
        ),
        e => ApiError::new(e.status(), e.body_text()),
    })?;
    let slot = hub.stream_slot(&uid)?;
    let director = hub.director.clone();
    let uid: Arc<str> = Arc::from(uid);
    let write_timeout = hub.settings.ack_timeout;
    Ok(ws
        .max_message_size(hub.settings.body_limit)
        .on_upgrade(move |socket| crate::stream::run_socket(socket, uid, slot, director, write_timeout))
        .into_response())
}

/// Only nodes registered through the hub may be named by clients.
fn known(hub: &Hub, uid: &str) -> Result<(), ApiError> {
    if hub.has(uid) {
        Ok(())
    } else {
        Err(chronica::Error::UnknownNode(uid.to_owned()).into())
    }
}
