//! Emit routes. A request carries one or many events; all are parsed and
//! checked (payloads, named nodes) before the first is emitted, so a bad
//! request changes nothing. The emits are tried on the request's own task
//! without waiting for room; from the first that finds a node full (under
//! the `block` policy) on, they run on a blocking thread, where the engine
//! may wait.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chronica::Message;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{ApiError, Body};
use crate::hub::Hub;
use crate::wire::{payload, present, EventIn};

/// Body of `POST /v1/emit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EmitIn {
    events: Vec<EventIn>,
}

/// Body of `POST /v1/emit_to`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EmitToIn {
    target: String,
    events: Vec<EventIn>,
}

/// Body of `POST /v1/emit_root` and `POST /v1/emit_root_to`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RootIn {
    target: Option<String>,
    action: String,
    /// As an event's: kept verbatim, `null` included.
    #[serde(default, deserialize_with = "present")]
    payload: Option<Box<RawValue>>,
    payload_b64: Option<String>,
}

/// The ids the events received, in request order.
#[derive(Debug, Serialize)]
pub(super) struct Emitted {
    ids: Vec<u64>,
}

fn messages(hub: &Hub, events: Vec<EventIn>) -> Result<Vec<Message<'static>>, ApiError> {
    if events.is_empty() {
        return Err(ApiError::bad_request("\"events\" must hold at least one event"));
    }
    let mut out = Vec::with_capacity(events.len());
    for (i, e) in events.into_iter().enumerate() {
        if let Some(src) = &e.source {
            if !hub.has(src) {
                return Err(
                    ApiError::from(chronica::Error::UnknownNode(src.clone())).with_emitted(Vec::new())
                );
            }
        }
        out.push(e.into_message().map_err(|why| ApiError::bad_request(format!("events[{i}]: {why}")))?);
    }
    Ok(out)
}

/// The most events of one request emitted on the request's own thread (an
/// async worker): a larger batch goes to a blocking thread, since one
/// request of 340,000 events held a worker for seconds, and two such
/// requests every worker of a 2-core machine, so that no other request was
/// answered meanwhile. Below it the thread hop costs more than the emits.
const INLINE_EMITS: usize = 1024;

/// Emits `msgs` in order (to `target` when set); stops at the first refusal
/// and reports the ids emitted before it.
///
/// The request's own task never waits for room: it tries each event
/// (`try_emit`), and hands the rest, from the first that finds a node
/// full, to a blocking thread that waits. No hub-wide "may an emit block?"
/// is asked first: a request that asked just before a `block` node
/// registered then waited on its async worker, for up to
/// `--block-timeout-ms`, holding up every request on that worker (session
/// 21 saw `/health` stall 20 s behind such emits). Trying each event costs
/// a clone of it (its topic and source); a thread hop per request would
/// cost more, and most emits find room.
async fn run(
    hub: &Arc<Hub>,
    target: Option<String>,
    msgs: Vec<Message<'static>>,
) -> Result<Json<Emitted>, ApiError> {
    let mut ids = Vec::with_capacity(msgs.len());
    let many = msgs.len() > INLINE_EMITS;
    let mut msgs = msgs.into_iter().peekable();
    if !many {
        while let Some(m) = msgs.peek() {
            match hub.try_emit(target.as_deref(), m.clone()) {
                Ok(Some(id)) => ids.push(id),
                Ok(None) => break,
                Err(e) => return Err(e.with_emitted(ids)),
            }
            msgs.next();
        }
        if msgs.peek().is_none() {
            return Ok(Json(Emitted { ids }));
        }
    }
    let hub = hub.clone();
    let work = move || {
        for m in msgs {
            let r = match &target {
                Some(t) => hub.emit_to(t, m),
                None => hub.emit(m),
            };
            match r {
                Ok(id) => ids.push(id),
                Err(e) => return Err(e.with_emitted(ids)),
            }
        }
        Ok(Json(Emitted { ids }))
    };
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::internal(format!("emit task: {e}")))?
}

/// `POST /v1/emit`: broadcast to subscribers, except each event's source.
pub(super) async fn emit(
    State(hub): State<Arc<Hub>>,
    Body(req): Body<EmitIn>,
) -> Result<Json<Emitted>, ApiError> {
    let msgs = messages(&hub, req.events)?;
    run(&hub, None, msgs).await
}

/// `POST /v1/emit_to`: every event to exactly `target`.
pub(super) async fn emit_to(
    State(hub): State<Arc<Hub>>,
    Body(req): Body<EmitToIn>,
) -> Result<Json<Emitted>, ApiError> {
    // In distributed mode the target may live on another hub.
    if hub.distributed.is_none() && !hub.has(&req.target) {
        return Err(ApiError::from(chronica::Error::UnknownNode(req.target)).with_emitted(Vec::new()));
    }
    let msgs = messages(&hub, req.events)?;
    run(&hub, Some(req.target), msgs).await
}

async fn root(hub: &Hub, req: RootIn, want_target: bool) -> Result<Json<Emitted>, ApiError> {
    // The content type goes with the payload, as for user events: it is
    // what tells raw bytes (`payload_b64`) from JSON on the way out.
    let (bytes, content_type) =
        payload(req.payload.as_deref(), req.payload_b64.as_deref()).map_err(ApiError::bad_request)?;
    let id = match (req.target, want_target) {
        (Some(t), true) => {
            // In distributed mode the target may live on another hub.
            if hub.distributed.is_none() && !hub.has(&t) {
                return Err(chronica::Error::UnknownNode(t).into());
            }
            hub.emit_root(Some(&t), &req.action, bytes, content_type)?
        }
        (None, false) => hub.emit_root(None, &req.action, bytes, content_type)?,
        (None, true) => return Err(ApiError::bad_request("emit_root_to needs \"target\"")),
        (Some(_), false) => {
            return Err(ApiError::bad_request("emit_root takes no \"target\"; use emit_root_to"))
        }
    };
    Ok(Json(Emitted { ids: vec![id] }))
}

/// `POST /v1/emit_root`: a control event to every node.
pub(super) async fn emit_root(
    State(hub): State<Arc<Hub>>,
    Body(req): Body<RootIn>,
) -> Result<Json<Emitted>, ApiError> {
    root(&hub, req, false).await
}

/// `POST /v1/emit_root_to`: a control event to one node.
pub(super) async fn emit_root_to(
    State(hub): State<Arc<Hub>>,
    Body(req): Body<RootIn>,
) -> Result<Json<Emitted>, ApiError> {
    root(&hub, req, true).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Options, Settings};
    use chronica::{Batch, NodeError, NodeOptions, Overflow};
    use std::time::Duration;

    /// A `block` node the hub's emit path never saw registered: the
    /// request's view of the world from just before a registration. The
    /// test runtime has one thread, so an emit that waited on it would
    /// keep the node from ever being connected.
    #[tokio::test]
    async fn an_emit_that_finds_a_block_node_full_waits_off_the_async_worker() {
        let options = Options {
            trust_token: Some("t".into()),
            tokens: vec!["c".into()],
            block_timeout_ms: Some(10_000),
            ..Options::default()
        };
        let hub = Hub::new(Settings::resolve(options).unwrap()).unwrap();
        let full =
            NodeOptions { queue_capacity: Some(1), overflow: Some(Overflow::Block), ..Default::default() };
        let sink = |_: &Batch| Ok::<(), NodeError>(());
        hub.director.register_with("full", sink, full.connected(false)).unwrap();
        hub.director.emit(Message::new("t", "first")).unwrap();
        // Runs only while the emit below waits elsewhere: it makes the
        // room the emit waits for.
        let connect = tokio::spawn({
            let hub = hub.clone();
            async move { hub.director.node_connected("full").unwrap() }
        });
        let emitted = run(&hub, None, vec![Message::new("t", "second")]).await;
        assert!(emitted.is_ok(), "the emit waited on the async worker until it timed out");
        connect.await.unwrap();
        let director = hub.director.clone();
        tokio::task::spawn_blocking(move || director.close(Duration::from_secs(5))).await.unwrap().unwrap();
    }
}
