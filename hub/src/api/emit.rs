//! Emit routes. A request carries one or many events; all are parsed and
//! checked (payloads, named nodes) before the first is emitted, so a bad
//! request changes nothing. Under the `block` overflow policy the emits are
//! tried without waiting on the request's own task, and only from the first
//! one that finds a node full on do they run on a blocking thread, where
//! the engine may wait for room.

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
async fn run(
    hub: &Arc<Hub>,
    target: Option<String>,
    msgs: Vec<Message<'static>>,
) -> Result<Json<Emitted>, ApiError> {
    let mut ids = Vec::with_capacity(msgs.len());
    let many = msgs.len() > INLINE_EMITS;
    let mut msgs = msgs.into_iter().peekable();
    if hub.emits_may_block() && !many {
        // A thread hop per request costs more than an emit; most emits
        // find room.
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
    let work = {
        let hub = hub.clone();
        move || {
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
        }
    };
    if hub.emits_may_block() || many {
        tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::internal(format!("emit task: {e}")))?
    } else {
        work()
    }
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
