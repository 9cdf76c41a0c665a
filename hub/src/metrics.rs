//! Hub-level metrics (requests, latencies, webhook calls, connections
//! refused or timed out), the delivery-rate history behind the status
//! page, and the Prometheus text rendering.
//!
//! Every lock here guards a few counters and is held only to bump or copy
//! them; none is held across I/O or a director call.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::Mutex;
use serde::Serialize;

use crate::hub::{Hub, NodeView};

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
/// Samples of the rate history: one a second, five minutes.
const HISTORY: usize = 300;
/// The `route` label of requests that were never parsed, so never routed.
const UNPARSED: &str = "unparsed";

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += s;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in BUCKETS.iter().zip(self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// One point of the rate history: totals over all nodes at a second.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Sample {
    /// Milliseconds since the Unix epoch.
    pub(crate) t_ms: u64,
    /// Sum of `accepted` over the nodes then registered.
    pub(crate) accepted: u64,
    /// Sum of `delivered`.
    pub(crate) delivered: u64,
    /// Sum of `failures`.
    pub(crate) failures: u64,
}

/// Why a connection was closed as soon as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Every slot of `--max-connections` was taken.
    MaxConnections,
    /// The peer's address held `--max-connections-per-address` already.
    PerAddress,
}

impl Refusal {
    const ALL: [Refusal; 2] = [Refusal::MaxConnections, Refusal::PerAddress];

    fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::PerAddress => "max_connections_per_address",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::MaxConnections => "every connection slot is taken",
            Refusal::PerAddress => "its address holds as many connections as it may",
        })
    }
}

/// Which of a request's timeouts ended its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `--header-timeout-ms`: the request's headers, or the next request
    /// on an idle keep-alive connection, did not come in time.
    Header,
    /// `--body-timeout-ms`: the body did not arrive whole in time (408).
    Body,
}

impl Phase {
    const ALL: [Phase; 2] = [Phase::Header, Phase::Body];

    fn label(self) -> &'static str {
        match self {
            Phase::Header => "header",
            Phase::Body => "body",
        }
    }
}

/// The hub's own counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// (method, route, status) -> count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route -> latency histogram.
    latency: Mutex<BTreeMap<String, Histogram>>,
    webhook: Mutex<Histogram>,
    history: Mutex<VecDeque<Sample>>,
    /// By [`Refusal`], in the order of `Refusal::ALL`.
    refused: [AtomicU64; Refusal::ALL.len()],
    /// By [`Phase`], in the order of `Phase::ALL`.
    timeouts: [AtomicU64; Phase::ALL.len()],
}

impl Metrics {
    /// Records one webhook POST's duration.
    pub(crate) fn observe_webhook(&self, d: Duration) {
        self.webhook.lock().observe(d);
    }

    fn observe_request(&self, method: &str, route: &str, status: u16, d: Duration) {
        self.count_request(method, route, status);
        self.latency.lock().entry(route.to_owned()).or_default().observe(d);
    }

    fn count_request(&self, method: &str, route: &str, status: u16) {
        *self.requests.lock().entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
    }

    /// Counts a request that hyper refused itself (400, 414, 431) before
    /// any route ran (`listener.rs`), with the other requests: method
    /// `other`, as it was never parsed, and route `unparsed`. Not timed:
    /// what would be timed is hyper's parsing, not the hub's answer.
    pub(crate) fn observe_refusal(&self, status: u16) {
        self.count_request("other", UNPARSED, status);
    }

    /// Counts a connection closed at accept, unserved. These were only
    /// logged at debug level: an operator could not see clients turned
    /// away.
    pub(crate) fn observe_refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection ended by one of the request timeouts.
    pub(crate) fn observe_timeout(&self, phase: Phase) {
        self.timeouts[phase as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Appends a history sample, keeping the last five minutes.
    pub(crate) fn record(&self, s: Sample) {
        let mut h = self.history.lock();
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(s);
    }

    /// The rate history, oldest first.
    pub(crate) fn history(&self) -> Vec<Sample> {
        self.history.lock().iter().copied().collect()
    }

    /// The Prometheus text exposition of the hub and of `nodes`.
    pub(crate) fn render(&self, nodes: &[NodeView]) -> String {
        let mut out = String::with_capacity(4096);
        type Field = fn(&NodeView) -> u64;
        let fields: [(&str, &str, Field); 7] = [
            ("accepted", "Events placed in the node's lanes.", |n| n.stats.accepted),
            ("delivered", "Events delivered (2xx or ack).", |n| n.stats.delivered),
            ("dropped", "Events dropped by the overflow policy or at unregister.", |n| n.stats.dropped),
            ("dead_lettered", "Events given up after max_retries.", |n| n.stats.dead_lettered),
            ("pending", "Events waiting or in flight.", |n| n.stats.pending),
            ("retries", "Re-attempts of failed batches.", |n| n.stats.retries),
            ("failures", "Failed delivery attempts.", |n| n.stats.failures),
        ];
        for (name, help, get) in fields {
            let kind = if name == "pending" { "gauge" } else { "counter" };
            let metric = if kind == "counter" {
                format!("chronica_node_{name}_total")
            } else {
                format!("chronica_node_{name}")
            };
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
            for n in nodes {
                let _ = writeln!(out, "{metric}{{node=\"{}\"}} {}", escape(&n.uid), get(n));
            }
        }
        let _ = writeln!(out, "# HELP chronica_node_connected 1 when the node is marked connected.");
        let _ = writeln!(out, "# TYPE chronica_node_connected gauge");
        for n in nodes {
            let _ = writeln!(
                out,
                "chronica_node_connected{{node=\"{}\"}} {}",
                escape(&n.uid),
                n.stats.connected as u8
            );
        }
        let _ = writeln!(out, "# HELP chronica_hub_requests_total HTTP requests by route and status.");
        let _ = writeln!(out, "# TYPE chronica_hub_requests_total counter");
        for ((method, route, status), c) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "chronica_hub_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {c}",
                escape(route)
            );
        }
        let _ = writeln!(out, "# HELP chronica_hub_request_duration_seconds HTTP request latency by route.");
        let _ = writeln!(out, "# TYPE chronica_hub_request_duration_seconds histogram");
        let latency = self.latency.lock().clone();
        for (route, h) in &latency {
            h.render(
                &mut out,
                "chronica_hub_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
            );
        }
        self.render_connections(&mut out);
        let _ = writeln!(out, "# HELP chronica_hub_webhook_duration_seconds Webhook POST latency.");
        let _ = writeln!(out, "# TYPE chronica_hub_webhook_duration_seconds histogram");
        let webhook = self.webhook.lock().clone();
        webhook.render(&mut out, "chronica_hub_webhook_duration_seconds", "");
        out
    }

    /// The connection counters, every label value present from the start
    /// so that a rate over them needs no first occurrence.
    fn render_connections(&self, out: &mut String) {
        let refused = "chronica_hub_connections_refused_total";
        let _ = writeln!(out, "# HELP {refused} Connections closed at accept, unserved, by reason.");
        let _ = writeln!(out, "# TYPE {refused} counter");
        for why in Refusal::ALL {
            let n = self.refused[why as usize].load(Ordering::Relaxed);
            let _ = writeln!(out, "{refused}{{reason=\"{}\"}} {n}", why.label());
        }
        let timeouts = "chronica_hub_connection_timeouts_total";
        let _ = writeln!(out, "# HELP {timeouts} Connections ended by the header or the body timeout.");
        let _ = writeln!(out, "# TYPE {timeouts} counter");
        for phase in Phase::ALL {
            let n = self.timeouts[phase as usize].load(Ordering::Relaxed);
            let _ = writeln!(out, "{timeouts}{{phase=\"{}\"}} {n}", phase.label());
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The `method` label of a request: one of the standard methods, else
/// `other`. Requests are counted before auth, so the label set must not
/// grow with whatever method a client sends.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts every request by route template and status, and
/// times it. Unmatched paths count under the route `unmatched`.
pub(crate) async fn track(State(hub): State<Arc<Hub>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = method_label(req.method());
    let started = Instant::now();
    let resp = next.run(req).await;
    hub.metrics.observe_request(method, &route, resp.status().as_u16(), started.elapsed());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_a_fixed_set() {
        for m in ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
            assert_eq!(method_label(&Method::from_bytes(m.as_bytes()).unwrap()), m);
        }
        for m in ["FOO1", "FOO2", "get", "TRACE", "CONNECT"] {
            assert_eq!(method_label(&Method::from_bytes(m.as_bytes()).unwrap()), "other");
        }
    }

    #[test]
    fn histogram_is_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"0.0025\"} 0"));
        assert!(out.contains("x_bucket{le=\"0.005\"} 1"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 2"));
        assert!(out.contains("x_count 2"));
    }
}
