//! Read-only routes: stats, rate history, Prometheus metrics, health, and
//! the status page (a static file compiled into the binary).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::Json;
use serde::Serialize;

use crate::hub::{Hub, NodeView, TotalsOut};
use crate::metrics::Sample;

/// Body of `GET /v1/stats`.
#[derive(Debug, Serialize)]
pub(super) struct StatsBody {
    nodes: Vec<NodeView>,
    totals: TotalsOut,
}

/// `GET /v1/stats`: every node's counters and their sum.
pub(super) async fn stats(State(hub): State<Arc<Hub>>) -> Json<StatsBody> {
    let nodes = hub.nodes();
    let totals = Hub::totals(&nodes);
    Json(StatsBody { nodes, totals })
}

/// `GET /v1/stats/history`: totals sampled once a second, last 5 minutes.
pub(super) async fn history(State(hub): State<Arc<Hub>>) -> Json<Vec<Sample>> {
    Json(hub.metrics.history())
}

/// `GET /metrics`: Prometheus text format 0.0.4.
pub(super) async fn metrics(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    let body = hub.metrics.render(&hub.nodes());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

/// Body of `GET /health`.
#[derive(Debug, Serialize)]
pub(super) struct Health {
    status: &'static str,
    nodes: usize,
    version: &'static str,
}

/// `GET /health` (no token needed): 200 while the director is open.
pub(super) async fn health(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    let closed = hub.director.is_closed();
    let status =
        if closed { axum::http::StatusCode::SERVICE_UNAVAILABLE } else { axum::http::StatusCode::OK };
    let body = Health {
        status: if closed { "closing" } else { "ok" },
        nodes: hub.director.nodes().len(),
        version: env!("CARGO_PKG_VERSION"),
    };
    (status, Json(body))
}

/// `GET /`: the status page. It holds no data itself; its script reads the
/// token from the URL fragment (`/#token=...`, never sent to the server)
/// and polls `/v1/stats` and `/v1/stats/history` with it.
pub(super) async fn status_page() -> Html<&'static str> {
    Html(include_str!("../../static/status.html"))
}
