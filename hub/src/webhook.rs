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

use crate::cutoff::CutWatch;
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

/// One allow-list entry (`--allow-host`): a host, kept as [`normal_host`]
/// makes it, and the one port it allows, or any port when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllowedHost {
    host: String,
    port: Option<u16>,
}

impl AllowedHost {
    /// Reads an entry: `host` or `host:port`, where host is a name or an
    /// IP address; an IPv6 address is bare (`::1`) or in brackets
    /// (`[::1]`), and in brackets when a port follows (`[::1]:8443`). The
    /// host is parsed as a URL's is (so `127.1` is `127.0.0.1`, as in a
    /// webhook URL); anything more (credentials, a path, a scheme) is
    /// refused, so that an entry cannot silently never match.
    pub(crate) fn parse(entry: &str) -> Result<Self, String> {
        const SHAPE: &str =
            "expected host or host:port (an IPv6 address in brackets when a port follows: [::1]:8443)";
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or(SHAPE)?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or(SHAPE)?),
            };
            (format!("[{inside}]"), port)
        } else if entry.matches(':').count() > 1 {
            (format!("[{entry}]"), None)
        } else {
            match entry.split_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (entry.to_owned(), None),
            }
        };
        let port = port.map(|p| p.parse::<u16>().map_err(|_| format!("port {p:?} is not a port number")));
        let url = Url::parse(&format!("http://{host}/")).map_err(|e| format!("{SHAPE}: {e}"))?;
        let plain = url.username().is_empty()
            && url.password().is_none()
            && url.port().is_none()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none();
        match url.host_str().map(normal_host) {
            Some(host) if plain && !host.is_empty() => Ok(AllowedHost { host, port: port.transpose()? }),
            _ => Err(SHAPE.into()),
        }
    }

    fn allows(&self, host: &str, port: Option<u16>) -> bool {
        self.host == host && self.port.is_none_or(|p| Some(p) == port)
    }
}

/// A URL's host as the allow-list compares it: lower case, an IPv6
/// address without its brackets, and one trailing dot dropped
/// (`example.com.` names `example.com`). The URL parser already gives IP
/// addresses one form (`[0:0::1]` is `[::1]`).
fn normal_host(host: &str) -> String {
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let host = host.to_ascii_lowercase();
    match host.strip_suffix('.') {
        Some(h) => h.to_owned(),
        None => host,
    }
}

/// Why a webhook URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UrlRefused {
    /// Not a URL at all (a bad request).
    Malformed(String),
    /// A URL the hub will not post to (forbidden).
    NotAllowed(String),
}

impl std::fmt::Display for UrlRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(why) | Self::NotAllowed(why) => f.write_str(why),
        }
    }
}

/// Checks a webhook URL: http or https, no credentials, and a host on the
/// allow-list (compared as [`normal_host`] gives it).
pub(crate) fn check_url(url: &str, allow: &[AllowedHost]) -> Result<Url, UrlRefused> {
    let parsed = Url::parse(url)
        .map_err(|e| UrlRefused::Malformed(format!("webhook {url:?} is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UrlRefused::NotAllowed(format!("webhook {url:?}: only http and https URLs are allowed")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlRefused::NotAllowed(format!(
            "webhook {url:?}: credentials in the URL are not allowed"
        )));
    }
    let host = normal_host(parsed.host_str().unwrap_or_default());
    if !host.is_empty() && allow.iter().any(|a| a.allows(&host, parsed.port_or_known_default())) {
        Ok(parsed)
    } else {
        Err(UrlRefused::NotAllowed(format!(
            "webhook host {host:?} is not on the hub's allow-list (--allow-host)"
        )))
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
    /// Ends a POST still waiting at the end of the shutdown's drain.
    pub(crate) cut: CutWatch,
}

impl Webhook {
    async fn post(&self, batch: &Batch) -> SendResult {
        let body = encode_batch(&self.uid, batch, None);
        let signature = self.secret.sign(&body);
        let timing = Timing { metrics: &self.metrics, started: Instant::now() };
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
        drop(timing);
        let resp = sent.map_err(|e| NodeError::new(format!("webhook {}: {}", self.url, error_chain(&e))))?;
        let status = resp.status();
        discard_answer(resp).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(NodeError::new(format!("webhook {} answered {status}", self.url)))
        }
    }
}

/// Times one POST, up to its answer's head, when dropped: after the
/// answer or the failure, or with the POST itself when the shutdown's cut
/// drops it in flight (`cutoff.rs`). A cut POST used to go untimed.
struct Timing<'a> {
    metrics: &'a Metrics,
    started: Instant,
}

impl Drop for Timing<'_> {
    fn drop(&mut self) {
        self.metrics.observe_webhook(self.started.elapsed());
    }
}

impl AsyncNode for Webhook {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, SendResult> {
        Box::pin(self.cut.race(self.post(batch)))
    }
}

/// The most of a webhook's answer the hub reads. Nothing in it is used.
const ANSWER_READ: usize = 64 * 1024;

/// Reads a webhook's answer, so that its pooled connection can be reused,
/// but no more than [`ANSWER_READ`]: a larger one is left unread and its
/// connection closed. Reading it whole let one receiver's answer grow the
/// hub by its size (a 1.5 GB answer peaked the hub at 3 GB).
async fn discard_answer(mut resp: reqwest::Response) {
    let mut read = 0;
    while read <= ANSWER_READ {
        match resp.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) | Err(_) => return,
        }
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
    use crate::cutoff::Cutoff;
    use crate::secret::WebhookSecret;

    fn webhook(url: Url, metrics: &Arc<Metrics>, cutoff: &Cutoff) -> Webhook {
        Webhook {
            uid: "w".into(),
            url,
            client: client().unwrap(),
            secret: Arc::new(SecretCell::new(WebhookSecret::generate().unwrap())),
            timeout: Duration::from_secs(60),
            metrics: metrics.clone(),
            cut: cutoff.watch(),
        }
    }

    fn timed_posts(metrics: &Metrics) -> String {
        let text = metrics.render(&[]);
        text.lines()
            .find(|l| l.starts_with("chronica_hub_webhook_duration_seconds_count"))
            .unwrap()
            .to_owned()
    }

    /// A POST the shutdown cuts is timed with the others: dropped before
    /// its answer, it used to leave no trace in the histogram.
    #[tokio::test]
    async fn a_post_cut_by_the_shutdown_is_timed_once() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", silent.local_addr().unwrap())).unwrap();
        let (metrics, cutoff) = (Arc::new(Metrics::default()), Cutoff::default());
        let hook = webhook(url, &metrics, &cutoff);
        let batch = Batch::default();
        // The outer bound only turns a hang into a failure.
        let (sent, _held) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(hook.send(&batch), async {
                // Connected, and never answered: the POST waits for the cut.
                let conn = silent.accept().await.unwrap();
                cutoff.cut();
                conn
            })
        })
        .await
        .expect("the cut did not end the POST");
        assert!(sent.unwrap_err().to_string().contains("shutdown"));
        assert_eq!(timed_posts(&metrics), "chronica_hub_webhook_duration_seconds_count 1");
    }

    /// A POST that fails on its own is timed once too.
    #[tokio::test]
    async fn a_failed_post_is_timed_once() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", closed.local_addr().unwrap())).unwrap();
        drop(closed);
        let (metrics, cutoff) = (Arc::new(Metrics::default()), Cutoff::default());
        let hook = webhook(url, &metrics, &cutoff);
        assert!(hook.send(&Batch::default()).await.is_err());
        assert_eq!(timed_posts(&metrics), "chronica_hub_webhook_duration_seconds_count 1");
    }

    fn allow(entries: &[&str]) -> Vec<AllowedHost> {
        entries.iter().map(|e| AllowedHost::parse(e).unwrap()).collect()
    }

    #[test]
    fn allow_list() {
        let allow = allow(&["127.0.0.1", "hooks.example:8443"]);
        assert!(check_url("http://127.0.0.1:9000/x", &allow).is_ok());
        assert!(check_url("http://127.1/x", &allow).is_ok(), "the same address");
        assert!(check_url("https://HOOKS.example:8443/", &allow).is_ok());
        assert!(check_url("https://hooks.example/", &allow).unwrap_err().to_string().contains("allow-list"));
        assert!(check_url("http://10.0.0.1/", &allow).unwrap_err().to_string().contains("allow-list"));
        assert!(check_url("ftp://127.0.0.1/", &allow).unwrap_err().to_string().contains("http"));
        assert!(check_url("http://u:p@127.0.0.1/", &allow).unwrap_err().to_string().contains("credentials"));
        assert!(
            matches!(check_url("nope", &allow), Err(UrlRefused::Malformed(why)) if why.contains("valid URL"))
        );
    }

    #[test]
    fn ipv6_case_and_a_trailing_dot_are_normalised_on_both_sides() {
        let allow = allow(&["::1", "[::2]", "[0:0::3]:8443", "Example.COM.", "other.example"]);
        for ok in [
            "http://[::1]/",
            "http://[0:0:0:0:0:0:0:1]:9/",
            "http://[::2]/",
            "https://[::3]:8443/",
            "http://example.com/",
            "http://EXAMPLE.com./",
            "http://other.example./",
        ] {
            assert!(check_url(ok, &allow).is_ok(), "{ok}");
        }
        for refused in ["http://[::3]/", "http://[::4]/", "http://example.com../", "http://u@[::1]/"] {
            assert!(check_url(refused, &allow).is_err(), "{refused}");
        }
    }

    #[test]
    fn an_entry_is_a_host_and_maybe_a_port_and_nothing_else() {
        let parsed = AllowedHost::parse("[::1]:8443").unwrap();
        assert_eq!(parsed, AllowedHost { host: "::1".into(), port: Some(8443) });
        assert_eq!(
            AllowedHost::parse("A.b.:80").unwrap(),
            AllowedHost { host: "a.b".into(), port: Some(80) }
        );
        for bad in [
            "",
            ".",
            "u@h",
            "u@h:80",
            "h/p",
            "h?q",
            "h#f",
            "http://h",
            "h:http",
            "h:",
            "h:70000",
            "[::1",
            "[::1]x",
            "[::1]:",
            "::1:99999:",
            "[fe80::1%eth0]",
            "h h",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad:?}");
        }
    }
}
