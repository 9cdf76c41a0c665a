//! The hub's shared state: the director and the table of remote nodes.
//!
//! The director owns routing, fibers, retry and the counters; the hub keeps
//! only what the engine does not know about a remote node (its webhook URL
//! or its stream slot, and its registration as given). A webhook secret is
//! held by the node's delivery task; the table keeps only a write-only
//! handle to it, for rotation, that nothing can read it back through. `remotes` is locked
//! only to read or change that table, never across a director call that
//! waits (unregister) nor across network I/O.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chronica::{Director, Distributed, Message, NodeOptions, NodeStats};

use parking_lot::Mutex;
use reqwest::header::HeaderValue;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::auth::Tokens;
use crate::config::Settings;
use crate::cutoff::Cutoff;
use crate::metrics::{Metrics, Sample};
use crate::policy::{self, NodeRetry, SettingsOut};
use crate::secret::{SecretCell, WebhookSecret};
use crate::stream::{Stream, StreamSlot};
use crate::webhook::{check_url, UrlRefused, Webhook};

/// How a remote node receives its batches.
#[derive(Debug, Clone)]
pub(crate) enum Delivery {
    /// Signed POSTs to this URL, with the node's key (replaceable, not
    /// readable).
    Webhook(Url, Arc<SecretCell>),
    /// Frames over the node's WebSocket.
    Stream(Arc<StreamSlot>),
}

#[derive(Debug, Clone)]
struct Remote {
    delivery: Delivery,
    topics: Vec<String>,
    group: Option<String>,
    concurrency: usize,
}

/// A registration request (`POST /v1/nodes`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterIn {
    uid: String,
    webhook: Option<String>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    topics: Vec<String>,
    group: Option<String>,
    concurrency: Option<usize>,
    connected: Option<bool>,
    queue_capacity: Option<usize>,
    root_capacity: Option<usize>,
    /// A name as `--overflow` takes it.
    overflow: Option<String>,
    #[serde(default)]
    retry: NodeRetry,
    /// A webhook node's own signing key; the hub generates one when absent.
    secret: Option<WebhookSecret>,
}

/// A node's counters as JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct StatsOut {
    pub(crate) accepted: u64,
    pub(crate) delivered: u64,
    pub(crate) dropped: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) pending: u64,
    pub(crate) retries: u64,
    pub(crate) failures: u64,
    pub(crate) connected: bool,
    pub(crate) last_error: Option<String>,
}

impl From<NodeStats> for StatsOut {
    fn from(s: NodeStats) -> Self {
        StatsOut {
            accepted: s.accepted,
            delivered: s.delivered,
            dropped: s.dropped,
            dead_lettered: s.dead_lettered,
            pending: s.pending,
            retries: s.retries,
            failures: s.failures,
            connected: s.connected,
            last_error: s.last_error,
        }
    }
}

/// The sum of every node's counters, with how many nodes there are and
/// how many of them are connected (a node's `connected` and `last_error`
/// mean nothing summed).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct TotalsOut {
    pub(crate) accepted: u64,
    pub(crate) delivered: u64,
    pub(crate) dropped: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) pending: u64,
    pub(crate) retries: u64,
    pub(crate) failures: u64,
    pub(crate) nodes: u64,
    pub(crate) connected: u64,
}

impl TotalsOut {
    fn add(&mut self, s: &StatsOut) {
        self.nodes += 1;
        self.connected += u64::from(s.connected);
        self.accepted += s.accepted;
        self.delivered += s.delivered;
        self.dropped += s.dropped;
        self.dead_lettered += s.dead_lettered;
        self.pending += s.pending;
        self.retries += s.retries;
        self.failures += s.failures;
    }
}

/// A node as the API and the status page show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NodeView {
    pub(crate) uid: String,
    pub(crate) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) webhook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stream_attached: Option<bool>,
    pub(crate) topics: Vec<String>,
    pub(crate) group: Option<String>,
    pub(crate) concurrency: usize,
    /// `queue_capacity`, `root_capacity`, `overflow` and `retry` as the
    /// node runs with them; absent only for a node unregistered while its
    /// view was made.
    #[serde(flatten)]
    pub(crate) settings: Option<SettingsOut>,
    pub(crate) stats: StatsOut,
}

/// The answer to a registration: the node's view and, for a webhook node,
/// its signing secret. This is the only answer that carries the secret.
#[derive(Debug, Serialize)]
pub(crate) struct Registered {
    #[serde(flatten)]
    pub(crate) view: NodeView,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose")]
    secret: Option<WebhookSecret>,
}

/// The answer to a secret rotation (`POST /v1/nodes/{uid}/secret`): the
/// node's new signing key, shown this once.
#[derive(Debug, Serialize)]
pub(crate) struct Rotated {
    uid: String,
    #[serde(serialize_with = "expose_one")]
    secret: WebhookSecret,
}

/// Serializes the secret's text: `WebhookSecret` has no `Serialize` of its
/// own, so no other shape can carry it out by accident.
fn expose_one<S: serde::Serializer>(secret: &WebhookSecret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

/// [`expose_one`] of a secret that may be absent.
fn expose<S: serde::Serializer>(secret: &Option<WebhookSecret>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(k) => expose_one(k, s),
        None => s.serialize_none(),
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) director: Director,
    /// Set in distributed mode: emits go through the broker to every hub.
    pub(crate) distributed: Option<Distributed>,
    pub(crate) settings: Settings,
    pub(crate) tokens: Tokens,
    pub(crate) metrics: Arc<Metrics>,
    client: reqwest::Client,
    remotes: Mutex<BTreeMap<String, Remote>>,
    /// Cuts the deliveries in flight at the end of the shutdown's drain.
    pub(crate) cutoff: Cutoff,
}

impl Hub {
    /// Starts the director on the current tokio runtime.
    pub(crate) fn new(settings: Settings) -> Result<Arc<Hub>, String> {
        let director = Director::builder()
            .queue_capacity(settings.queue_capacity)
            .root_capacity(settings.root_capacity)
            .batch_size(settings.batch_size)
            .overflow(settings.overflow)
            .block_timeout(settings.block_timeout)
            .retry(settings.retry.clone())
            .trust_token(settings.trust_token.clone())
            .membership_events(settings.membership_events)
            .runtime(tokio::runtime::Handle::current())
            .on_error(|uid, e| tracing::debug!(node = %uid, "delivery failed: {e}"))
            .on_dead_letter(|dl| tracing::warn!("dead letter: {dl:?}"))
            .build()
            .map_err(|e| format!("director: {e}"))?;
        let distributed = match &settings.distributed {
            None => None,
            Some((url, cfg)) => Some(
                Distributed::connect(&director, url, cfg.clone())
                    .map_err(|e| format!("adapter {url:?}: {e}"))?,
            ),
        };
        Ok(Arc::new(Hub {
            distributed,
            tokens: Tokens::new(&settings.tokens),
            client: crate::webhook::client()?,
            metrics: Arc::default(),
            remotes: Mutex::default(),
            cutoff: Cutoff::default(),
            director,
            settings,
        }))
    }

    /// Broadcasts `msg`: through the broker to every hub in distributed
    /// mode, else on this hub's director.
    pub(crate) fn emit(&self, msg: Message<'_>) -> Result<u64, ApiError> {
        match &self.distributed {
            Some(d) => Ok(d.emit(msg)?),
            None => Ok(self.director.emit(msg)?),
        }
    }

    /// Unicast; in distributed mode the hub that owns `target` delivers it.
    pub(crate) fn emit_to(&self, target: &str, msg: Message<'_>) -> Result<u64, ApiError> {
        match &self.distributed {
            Some(d) => Ok(d.emit_to(target, msg)?),
            None => Ok(self.director.emit_to(target, msg)?),
        }
    }

    /// `emit_to(target)`, or `emit` without a target, that never waits for
    /// room: `Ok(None)` when a node under the `block` policy is full (the
    /// event was then accepted nowhere).
    pub(crate) fn try_emit(&self, target: Option<&str>, msg: Message<'_>) -> Result<Option<u64>, ApiError> {
        use chronica::mq::MqError;
        let sent = match (&self.distributed, target) {
            (Some(d), Some(t)) => d.try_emit_to(t, msg),
            (Some(d), None) => d.try_emit(msg),
            (None, Some(t)) => self.director.try_emit_to(t, msg).map_err(MqError::Engine),
            (None, None) => self.director.try_emit(msg).map_err(MqError::Engine),
        };
        match sent {
            Ok(id) => Ok(Some(id)),
            Err(MqError::Engine(chronica::Error::QueueFull(_))) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A root event to every node (of every hub), or to `target`, its
    /// payload labelled `content_type` as a user event's is.
    pub(crate) fn emit_root(
        &self,
        target: Option<&str>,
        action: &str,
        payload: Bytes,
        content_type: &str,
    ) -> Result<u64, ApiError> {
        let ct = content_type;
        match (&self.distributed, target) {
            (Some(d), Some(t)) => Ok(d.emit_root_to_typed(t, action, payload, ct)?),
            (Some(d), None) => Ok(d.emit_root_typed(action, payload, ct)?),
            (None, Some(t)) => Ok(self.director.emit_root_to_typed(t, action, payload, ct)?),
            (None, None) => Ok(self.director.emit_root_typed(action, payload, ct)?),
        }
    }

    /// The engine's options of a registration, or 400 for a value the
    /// flag of the same name would refuse (with the flag's message).
    fn node_options(&self, req: &RegisterIn) -> Result<NodeOptions, ApiError> {
        for (name, v) in [("queue_capacity", req.queue_capacity), ("root_capacity", req.root_capacity)] {
            if v == Some(0) {
                return Err(ApiError::bad_request(format!("{name} must be at least 1")));
            }
        }
        let overflow = req.overflow.as_deref().map(policy::overflow).transpose();
        Ok(NodeOptions {
            topics: req.topics.clone(),
            group: req.group.clone(),
            concurrency: req.concurrency.unwrap_or(1),
            queue_capacity: req.queue_capacity,
            root_capacity: req.root_capacity,
            overflow: overflow.map_err(ApiError::bad_request)?,
            retry: req.retry.policy(&self.settings.retry).map_err(ApiError::bad_request)?,
            ..Default::default()
        })
    }

    /// Registers a webhook or streaming node.
    pub(crate) fn register(&self, req: RegisterIn) -> Result<Registered, ApiError> {
        let opts = self.node_options(&req)?;
        let (delivery, secret) = self.start(&req, opts)?;
        let remote = Remote {
            delivery,
            topics: req.topics,
            group: req.group,
            concurrency: req.concurrency.unwrap_or(1),
        };
        self.remotes.lock().insert(req.uid.clone(), remote.clone());
        Ok(Registered { view: self.view(&req.uid, &remote), secret })
    }

    /// Registers the node with the engine: its delivery task and how the
    /// hub reaches it, and a webhook node's secret.
    fn start(
        &self,
        req: &RegisterIn,
        mut opts: NodeOptions,
    ) -> Result<(Delivery, Option<WebhookSecret>), ApiError> {
        let uid: Arc<str> = Arc::from(req.uid.as_str());
        Ok(match (req.webhook.as_deref(), req.stream) {
            (Some(url), false) => {
                let url = check_url(url, &self.settings.allow_hosts).map_err(|refused| match refused {
                    UrlRefused::Malformed(why) => ApiError::bad_request(why),
                    UrlRefused::NotAllowed(why) => ApiError::forbidden(why),
                })?;
                // The uid goes out in the `X-Chronica-Node` header of every
                // POST: one a header cannot carry would fail each for good.
                if HeaderValue::from_str(&uid).is_err() {
                    return Err(ApiError::bad_request(format!(
                        "webhook node {uid:?}: a uid with control characters cannot be sent in the \
                         X-Chronica-Node header"
                    )));
                }
                let secret =
                    WebhookSecret::chosen_or_generated(req.secret.clone()).map_err(ApiError::internal)?;
                opts.connected = req.connected.unwrap_or(true);
                let cell = Arc::new(SecretCell::new(secret.clone()));
                let node = Webhook {
                    uid: uid.clone(),
                    url: url.clone(),
                    client: self.client.clone(),
                    secret: cell.clone(),
                    timeout: self.settings.webhook_timeout,
                    metrics: self.metrics.clone(),
                    cut: self.cutoff.watch(),
                };
                self.director.register_async(&uid, node, opts)?;
                (Delivery::Webhook(url, cell), Some(secret))
            }
            (None, true) if req.secret.is_some() => {
                return Err(ApiError::bad_request(
                    "\"secret\" is for webhook nodes; a streaming node authenticates with the bearer token",
                ))
            }
            (None, true) => {
                // A streaming node is connected while its socket is open.
                opts.connected = false;
                let slot = Arc::new(StreamSlot::default());
                let node = Stream {
                    uid: uid.clone(),
                    slot: slot.clone(),
                    ack_timeout: self.settings.ack_timeout,
                    cut: self.cutoff.watch(),
                };
                self.director.register_async(&uid, node, opts)?;
                (Delivery::Stream(slot), None)
            }
            _ => {
                return Err(ApiError::bad_request("give exactly one of \"webhook\": URL or \"stream\": true"))
            }
        })
    }

    /// Unregisters a node: closes its stream (so a callback waiting for an
    /// ack ends), then waits for the engine on a blocking thread. With
    /// `drain`, the node first delivers what it holds for at most that
    /// long (`Director::unregister_draining`): a streaming node keeps its
    /// socket meanwhile, closed at the deadline so that a call waiting for
    /// an ack then ends; its final counters come back.
    pub(crate) async fn unregister(
        self: &Arc<Self>,
        uid: &str,
        drain: Option<Duration>,
    ) -> Result<Option<NodeStats>, ApiError> {
        let remote = self.remotes.lock().remove(uid);
        let Some(remote) = remote else {
            return Err(chronica::Error::UnknownNode(uid.to_owned()).into());
        };
        let slot = match &remote.delivery {
            Delivery::Stream(slot) => Some(slot.clone()),
            Delivery::Webhook(..) => None,
        };
        let closer = match (&slot, drain) {
            (Some(slot), Some(limit)) => {
                let slot = slot.clone();
                Some(tokio::spawn(async move {
                    tokio::time::sleep(limit).await;
                    slot.close();
                }))
            }
            (Some(slot), None) => {
                slot.close();
                None
            }
            (None, _) => None,
        };
        let (hub, owned) = (self.clone(), uid.to_owned());
        let done = tokio::task::spawn_blocking(move || match drain {
            Some(limit) => hub.director.unregister_draining(&owned, limit).map(Some),
            None => hub.director.unregister(&owned).map(|()| None),
        })
        .await
        .map_err(|e| ApiError::internal(format!("unregister task: {e}")));
        if let Some(closer) = closer {
            closer.abort();
        }
        if let Some(slot) = slot {
            slot.close();
        }
        let mut last = done??;
        // A shutdown's close cut the drain short: the engine leaves the
        // rest pending here (the close counts it as undelivered). The hub
        // is exiting, so the final counters say what they promise
        // (docs/HUB.md): nothing pending, the rest dropped.
        if let Some(stats) = last.as_mut().filter(|_| self.director.is_closed()) {
            stats.dropped += std::mem::take(&mut stats.pending);
        }
        Ok(last)
    }

    /// Gives webhook node `uid` a new signing key (`chosen`, or 32 fresh
    /// random bytes) and answers it. Every POST signed after this call,
    /// retries of earlier batches included, uses the new key; one already
    /// on the wire carries the old one. 409 for a streaming node, which has
    /// no secret.
    pub(crate) fn rotate_secret(
        &self,
        uid: &str,
        chosen: Option<WebhookSecret>,
    ) -> Result<Rotated, ApiError> {
        let cell = match self.remotes.lock().get(uid).map(|r| r.delivery.clone()) {
            Some(Delivery::Webhook(_, cell)) => cell,
            Some(Delivery::Stream(_)) => {
                return Err(ApiError::conflict(format!(
                    "node {uid:?} is a streaming node: it has no webhook secret"
                )))
            }
            None => return Err(chronica::Error::UnknownNode(uid.to_owned()).into()),
        };
        let secret = WebhookSecret::chosen_or_generated(chosen).map_err(ApiError::internal)?;
        cell.replace(secret.clone());
        Ok(Rotated { uid: uid.to_owned(), secret })
    }

    /// The stream slot of a streaming node.
    pub(crate) fn stream_slot(&self, uid: &str) -> Result<Arc<StreamSlot>, ApiError> {
        match self.remotes.lock().get(uid).map(|r| r.delivery.clone()) {
            Some(Delivery::Stream(slot)) => Ok(slot),
            Some(Delivery::Webhook(..)) => Err(ApiError::conflict(format!("node {uid:?} is a webhook node"))),
            None => Err(chronica::Error::UnknownNode(uid.to_owned()).into()),
        }
    }

    /// True when `uid` is a registered streaming node.
    pub(crate) fn is_stream(&self, uid: &str) -> bool {
        matches!(self.remotes.lock().get(uid).map(|r| &r.delivery), Some(Delivery::Stream(_)))
    }

    /// True when `uid` is a registered remote node.
    pub(crate) fn has(&self, uid: &str) -> bool {
        self.remotes.lock().contains_key(uid)
    }

    /// Records a subscription change in the table shown by the API.
    pub(crate) fn note_subscription(&self, uid: &str, pattern: &str) {
        if let Some(r) = self.remotes.lock().get_mut(uid) {
            // The engine keeps a pattern once however often it is asked.
            if !r.topics.iter().any(|t| t == pattern) {
                r.topics.push(pattern.to_owned());
            }
        }
    }

    fn view(&self, uid: &str, r: &Remote) -> NodeView {
        let stats = self.director.stats(uid).map(StatsOut::from).unwrap_or_default();
        let settings = self.director.node_settings(uid).ok().map(SettingsOut::from);
        let (kind, webhook, stream_attached) = match &r.delivery {
            Delivery::Webhook(url, _) => ("webhook", Some(url.to_string()), None),
            Delivery::Stream(slot) => ("stream", None, Some(slot.is_attached())),
        };
        NodeView {
            uid: uid.to_owned(),
            kind,
            webhook,
            stream_attached,
            topics: r.topics.clone(),
            group: r.group.clone(),
            concurrency: r.concurrency,
            settings,
            stats,
        }
    }

    /// One node's view.
    pub(crate) fn node(&self, uid: &str) -> Result<NodeView, ApiError> {
        let remote = self.remotes.lock().get(uid).cloned();
        let remote = remote.ok_or_else(|| chronica::Error::UnknownNode(uid.to_owned()))?;
        Ok(self.view(uid, &remote))
    }

    /// Every node's view, sorted by uid.
    pub(crate) fn nodes(&self) -> Vec<NodeView> {
        let table: Vec<(String, Remote)> =
            self.remotes.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        table.iter().map(|(uid, r)| self.view(uid, r)).collect()
    }

    /// The sum of every node's counters.
    pub(crate) fn totals(nodes: &[NodeView]) -> TotalsOut {
        let mut t = TotalsOut::default();
        for n in nodes {
            t.add(&n.stats);
        }
        t
    }

    /// Samples the totals once a second for the status page's chart.
    pub(crate) async fn sample_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let t = Hub::totals(&self.nodes());
            let t_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            self.metrics.record(Sample {
                t_ms,
                accepted: t.accepted,
                delivered: t.delivered,
                failures: t.failures,
            });
        }
    }
}
