//! The hub's listener: TCP connections whose HTTP-level refusals are JSON.
//!
//! hyper answers a request it cannot parse by itself, before any service
//! of ours runs: 400 for a malformed request line, method, target, version
//! or header (a `Content-Length` that is not a number included), 414 for a
//! target over its length limit, 431 for more headers than it parses.
//! Those answers carry no body (`content-length: 0`) and no content type,
//! hyper offers no hook to shape them, and the API's JSON middleware
//! (`api::error::json_errors`) never sees them. So every connection goes
//! through [`JsonRefusals`], which replaces such an answer with the same
//! status and headers and the documented `{"error": "..."}` body.
//!
//! What makes recognising them safe:
//!
//! * hyper writes such an answer whole, as the last bytes of its write
//!   buffer, and closes the connection after it. Its buffer is flat (one
//!   slice per write) because this IO is not vectored, so the answer ends
//!   the slice handed to one `poll_write`, possibly after the tail of
//!   earlier, pipelined answers, which pass untouched.
//! * Nothing the application writes looks the same: every error answer of
//!   the API is `application/json` with a body (the middleware sees to
//!   it), and a JSON or Prometheus body never holds a raw CR LF, so a head
//!   of status 400, 414 or 431 with `content-length: 0` and no
//!   `content-type` at the end of a write is hyper's.
//! * After a `101 Switching Protocols` the connection carries WebSocket
//!   frames: nothing after it is inspected.
//!
//! The bytes hyper hands over are reported written at once; the
//! replacement is queued and written before anything else, and flush and
//! shutdown complete only once it is out.
//!
//! The listener also caps how many connections are open at once
//! (`--max-connections`): each holds a slot for as long as its socket
//! lives, a WebSocket after its upgrade included, and one accepted while
//! none is free is closed at once. File descriptors thus stay available
//! for the hub's own webhooks and broker, and a client turned away gets
//! in as soon as a slot frees, instead of the hub answering nobody. With
//! `--max-connections-per-address`, one from an address already holding
//! that many is closed the same way (`addresses.rs`), before it takes a
//! slot of the global cap.
//!
//! A connection closed for want of a slot is counted
//! (`chronica_hub_connections_refused_total`); so is each refusal
//! rewritten, in the hub's metrics
//! ([`Metrics::observe_refusal`]): such a request never reaches the
//! router, whose middleware counts every other one, and `/metrics` used
//! to show nothing of them.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::addresses::{AddressSlot, PerAddress};
use crate::metrics::{Metrics, Refusal};

/// A TCP listener whose connections are [`JsonRefusals`], counting their
/// refusals in `metrics`, at most as many at once as `slots` has permits
/// and, with `per_address`, as many from one address as it allows.
#[derive(Debug)]
pub(crate) struct JsonListener {
    pub(crate) listener: TcpListener,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) per_address: Option<Arc<PerAddress>>,
}

impl JsonListener {
    /// The slots a connection from `ip` holds, or why it has none. Its
    /// address's slot is checked first: a client over its own limit is
    /// named as such, and takes nothing from the global cap.
    fn admit(&self, ip: IpAddr) -> Result<Slot, Refusal> {
        let address = match &self.per_address {
            Some(table) => Some(table.try_acquire(ip).ok_or(Refusal::PerAddress)?),
            None => None,
        };
        let global = self.slots.clone().try_acquire_owned().map_err(|_| Refusal::MaxConnections)?;
        Ok(Slot { _global: global, _address: address })
    }
}

/// What a connection holds for as long as its socket lives.
#[derive(Debug)]
struct Slot {
    _global: OwnedSemaphorePermit,
    _address: Option<AddressSlot>,
}

impl axum::serve::Listener for JsonListener {
    type Io = JsonRefusals<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // axum's own accept, which logs and retries failures.
            let (io, addr) = axum::serve::Listener::accept(&mut self.listener).await;
            match self.admit(addr.ip()) {
                Ok(slot) => return (JsonRefusals::new(io, self.metrics.clone()).holding(slot), addr),
                // Accepting and closing, rather than leaving it in the
                // backlog, tells the client at once to come back later.
                Err(why) => {
                    self.metrics.observe_refused(why);
                    tracing::debug!("connection from {addr} closed: {why}");
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection that rewrites hyper's own refusals into JSON (see the
/// module documentation). Reads pass through untouched.
#[derive(Debug)]
pub(crate) struct JsonRefusals<T> {
    inner: T,
    /// Bytes owed to the peer before anything else: a rewritten refusal.
    owed: Vec<u8>,
    /// How many of `owed` are written.
    sent: usize,
    /// Set after a `101 Switching Protocols`: the rest is not HTTP.
    upgraded: bool,
    /// Where each refusal rewritten is counted.
    metrics: Arc<Metrics>,
    /// The connection's slots under `--max-connections` and
    /// `--max-connections-per-address`, given back when the socket is
    /// dropped.
    _slot: Option<Slot>,
}

impl<T> JsonRefusals<T> {
    pub(crate) fn new(inner: T, metrics: Arc<Metrics>) -> Self {
        Self { inner, owed: Vec::new(), sent: 0, upgraded: false, metrics, _slot: None }
    }

    /// The connection, holding `slot` for as long as it lives.
    fn holding(self, slot: Slot) -> Self {
        Self { _slot: Some(slot), ..self }
    }
}

impl<T: AsyncWrite + Unpin> JsonRefusals<T> {
    /// Writes what is owed; ready once nothing is.
    fn poll_owed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.owed.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.owed[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.owed = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonRefusals<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_owed(cx))?;
        if !this.upgraded {
            match last_head(buf) {
                Some((_, Head::Upgrade)) => this.upgraded = true,
                Some((at, Head::Refusal { status, answer })) => {
                    this.metrics.observe_refusal(status);
                    this.owed = [&buf[..at], &answer].concat();
                    // Pending here is fine: flush and shutdown finish it,
                    // and the inner write has registered the waker.
                    if let Poll::Ready(Err(e)) = this.poll_owed(cx) {
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Ready(Ok(buf.len()));
                }
                Some((_, Head::Other)) | None => {}
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_owed(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_owed(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the response head ending a write is.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// `101 Switching Protocols`.
    Upgrade,
    /// hyper's own refusal, of `status`, rewritten: `answer` is the whole
    /// replacement.
    Refusal { status: u16, answer: Vec<u8> },
    /// Anything else.
    Other,
}

/// The response head that ends `buf` (a write ending in CR LF CR LF: a
/// response without a body), where it starts, and what it is.
fn last_head(buf: &[u8]) -> Option<(usize, Head)> {
    let body_less = buf.strip_suffix(b"\r\n\r\n")?;
    // The head is the last status line on, after whatever part of earlier
    // answers (a whole answer, or only the end of its body) the write
    // still holds; a head holds no blank line.
    let start = find_last(body_less, b"HTTP/1.")?;
    if find_last(&body_less[start..], b"\r\n\r\n").is_some() {
        return None;
    }
    let head = std::str::from_utf8(&body_less[start..]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let code = status_line.strip_prefix("HTTP/1.1 ").or_else(|| status_line.strip_prefix("HTTP/1.0 "))?;
    let status = StatusCode::from_bytes(code.get(..3)?.as_bytes()).ok()?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Some((start, Head::Upgrade));
    }
    let Some(message) = refusal_message(status) else { return Some((start, Head::Other)) };
    let headers: Vec<(&str, &str)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n, v.trim())).collect();
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let empty = headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("content-length") && *v == "0");
    if has("content-type") || !empty {
        return Some((start, Head::Other));
    }
    let body = serde_json::json!({ "error": message }).to_string();
    let mut out =
        format!("{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("content-length")) {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some((start, Head::Refusal { status: status.as_u16(), answer: out.into_bytes() }))
}

/// The `{"error"}` text for each status hyper answers by itself.
fn refusal_message(status: StatusCode) -> Option<&'static str> {
    match status {
        StatusCode::BAD_REQUEST => {
            Some("malformed HTTP request: the request line (method, target, version) or a header could not be parsed")
        }
        StatusCode::URI_TOO_LONG => Some("the request target is too long"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Some("the request's header fields are too many or too large"),
        _ => None,
    }
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HYPER_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 23 Nov 2026 23:18:17 GMT\r\n\r\n";

    fn split(answer: &[u8]) -> (String, serde_json::Value) {
        let text = std::str::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize =
            head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().parse().unwrap();
        assert_eq!(len, body.len(), "content-length of {text:?}");
        (head.to_owned(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn hypers_refusals_become_json_with_their_status_and_headers() {
        for (status, reason) in
            [(400, "Bad Request"), (414, "URI Too Long"), (431, "Request Header Fields Too Large")]
        {
            let raw = format!(
                "HTTP/1.1 {status} {reason}\r\nconnection: close\r\ncontent-length: 0\r\ndate: D\r\n\r\n"
            );
            let Some((0, Head::Refusal { status: got, answer: out })) = last_head(raw.as_bytes()) else {
                panic!("{raw:?} not rewritten")
            };
            assert_eq!(got, status);
            let (head, body) = split(&out);
            assert!(head.starts_with(&format!("HTTP/1.1 {status} {reason}\r\n")), "{head}");
            assert!(
                head.contains("content-type: application/json") && head.contains("connection: close"),
                "{head}"
            );
            assert!(head.contains("date: D") && !head.contains("content-length: 0"), "{head}");
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
        }
    }

    #[test]
    fn the_applications_answers_pass_untouched() {
        let json_error =
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let no_content = b"HTTP/1.1 204 No Content\r\ndate: D\r\n\r\n";
        let head_of_json =
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n";
        assert_eq!(last_head(json_error), None);
        assert_eq!(last_head(no_content), Some((0, Head::Other)));
        assert_eq!(last_head(head_of_json), Some((0, Head::Other)));
        assert_eq!(last_head(b"\x81\x05hello"), None);
    }

    #[tokio::test]
    async fn a_pipelined_refusal_keeps_the_answers_before_it() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let (client, server) = tokio::io::duplex(64); // small: writes come back partial
        let mut io = JsonRefusals::new(server, Arc::default());
        let writer = tokio::spawn(async move {
            // The first answer's head went out in an earlier write; its
            // body and the refusal share this one.
            let (first, rest) = ok.split_at(ok.len() - 2);
            io.write_all(first).await.unwrap();
            io.write_all(&[rest, HYPER_400].concat()).await.unwrap();
            io.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        let mut client = client;
        client.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert!(got.starts_with(ok), "{}", String::from_utf8_lossy(&got));
        let (head, body) = split(&got[ok.len()..]);
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(body["error"].as_str().unwrap().contains("malformed HTTP request"), "{body}");
    }

    /// Sends `writes` through a connection counting in `metrics`, and
    /// returns what the peer read.
    async fn through(metrics: &Arc<Metrics>, writes: &[&[u8]]) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut io = JsonRefusals::new(server, metrics.clone());
        for w in writes {
            io.write_all(w).await.unwrap();
        }
        io.shutdown().await.unwrap();
        drop(io);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        got
    }

    /// Each refusal rewritten is counted once, by its status, with the
    /// requests the router counts (route `unparsed`); nothing else the
    /// connection writes is. These requests never reach the router, and
    /// `/metrics` used to show nothing of them.
    #[tokio::test]
    async fn each_refusal_is_counted_in_the_metrics() {
        let metrics = Arc::new(Metrics::default());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        through(&metrics, &[ok, HYPER_400]).await;
        through(&metrics, &[HYPER_400]).await;
        let too_long = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        through(&metrics, &[too_long]).await;
        let upgrade = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n";
        through(&metrics, &[upgrade, HYPER_400]).await;
        let text = metrics.render(&[]);
        let counted: Vec<&str> =
            text.lines().filter(|l| l.starts_with("chronica_hub_requests_total{")).collect();
        assert_eq!(
            counted,
            [
                r#"chronica_hub_requests_total{method="other",route="unparsed",status="400"} 2"#,
                r#"chronica_hub_requests_total{method="other",route="unparsed",status="414"} 1"#,
            ],
            "{text}"
        );
    }

    #[tokio::test]
    async fn nothing_after_an_upgrade_is_inspected() {
        let (client, server) = tokio::io::duplex(4096);
        let mut io = JsonRefusals::new(server, Arc::default());
        io.write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n").await.unwrap();
        io.write_all(HYPER_400).await.unwrap(); // as a frame's bytes, say
        io.shutdown().await.unwrap();
        drop(io);
        let mut got = Vec::new();
        let mut client = client;
        client.read_to_end(&mut got).await.unwrap();
        assert!(got.ends_with(HYPER_400));
    }
}
