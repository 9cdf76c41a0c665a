//! Delivery to a webhook node: one signed HTTP POST per batch.
//!
//! Each webhook node is an async node of the director, run as its own task
//! on the hub's runtime; all share one pooled HTTP client, so a slow or dead
//! webhook occupies only its own task (and at most `concurrency` pooled
//! connections), never another node's delivery. A 2xx answer means
//! delivered; any other status, a connection error or the per-request
//! timeout is a failure that keeps the batch at the head of the node's lane
//! for the retry policy. Delivery is at least once: if a 2xx is lost on the
//! way back, the batch is sent again, and receivers dedupe by event id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronica::{AsyncNode, Batch, BoxFuture, NodeError, SendResult};
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::Url;

use crate::metrics::Metrics;
use crate::secret::SecretCell;
use crate::wire::{encode_batch, event_ids};

/// Header carrying the HMAC-SHA256 of the body keyed by the node's
/// webhook secret, hex.
pub(crate) const SIGNATURE: &str = "X-Chronica-Signature";
/// Header carrying the batch's event ids, comma-separated.
pub(crate) const EVENT_IDS: &str = "X-Chronica-Event-Ids";
/// Header naming the receiving node.
pub(crate) const NODE: &str = "X-Chronica-Node";

/// Checks a webhook URL: http or https, and a host on the allow-list
/// (entries are `host` or `host:port`, compared case-insensitively).
pub(crate) fn check_url(url: &str, allow: &[String]) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("webhook {url:?} is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("webhook {url:?}: only http and https URLs are allowed"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("webhook {url:?}: credentials in the URL are not allowed"));
    }
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    let port = parsed.port_or_known_default().unwrap_or(0);
    let with_port = format!("{host}:{port}");
    if allow.iter().any(|a| *a == host || *a == with_port) {
        Ok(parsed)
    } else {
        Err(format!("webhook host {host:?} is not on the hub's allow-list (--allow-host)"))
    }
}

/// The async node that posts batches to one webhook.
#[derive(Debug)]
pub(crate) struct Webhook {
    pub(crate) uid: Arc<str>,
    pub(crate) url: Url,
    pub(crate) client: reqwest::Client,
    /// This node's own signing key (never the trust token, which every
    /// node receives); each attempt signs with the key current then, so a
    /// rotation applies to retries of earlier batches too.
    pub(crate) secret: Arc<SecretCell>,
    pub(crate) timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
}

impl Webhook {
    async fn post(&self, batch: &Batch) -> SendResult {
        let body = encode_batch(&self.uid, batch, None);
        let signature = self.secret.sign(&body);
        let started = Instant::now();
        let sent = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(SIGNATURE, signature)
            .header(EVENT_IDS, event_ids(batch))
            .header(NODE, &*self.uid)
            .body(body)
            .send()
            .await;
        self.metrics.observe_webhook(started.elapsed());
        let resp = sent.map_err(|e| NodeError::new(format!("webhook {}: {}", self.url, error_chain(&e))))?;
        let status = resp.status();
        // Read the (small) answer so the pooled connection can be reused.
        let _ = resp.bytes().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(NodeError::new(format!("webhook {} answered {status}", self.url)))
        }
    }
}

impl AsyncNode for Webhook {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, SendResult> {
        Box::pin(self.post(batch))
    }
}

/// An error with its causes, e.g. "error sending request: connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// The shared pooled client: no redirects (a redirect could leave the
/// allow-list), keep-alive pooling per host.
pub(crate) fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(32)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let allow = vec!["127.0.0.1".to_string(), "hooks.example:8443".to_string()];
        assert!(check_url("http://127.0.0.1:9000/x", &allow).is_ok());
        assert!(check_url("https://HOOKS.example:8443/", &allow).is_ok());
        assert!(check_url("https://hooks.example/", &allow).unwrap_err().contains("allow-list"));
        assert!(check_url("http://10.0.0.1/", &allow).unwrap_err().contains("allow-list"));
        assert!(check_url("ftp://127.0.0.1/", &allow).unwrap_err().contains("http"));
        assert!(check_url("http://u:p@127.0.0.1/", &allow).unwrap_err().contains("credentials"));
        assert!(check_url("nope", &allow).unwrap_err().contains("valid URL"));
    }
}
