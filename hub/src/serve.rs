//! Serving the accepted connections: HTTP/1.1 with upgrades (the
//! WebSocket streams), a bound on how long a request's headers may take,
//! and a graceful drain at shutdown.
//!
//! `axum::serve` builds hyper's connections without a timer, and hyper
//! applies its header-read timeout only with one: a client could open a
//! connection, send a byte, and hold it forever. Here every connection
//! gets the timer and `--header-timeout-ms`, which also bounds how long an
//! idle keep-alive connection waits for its next request. Each connection
//! it ends is counted (`chronica_hub_connection_timeouts_total`).
//!
//! Only HTTP/1.1 is served. `axum::serve` sniffed for HTTP/2 with prior
//! knowledge too (hyper's HTTP/2 is compiled in for reqwest), but neither
//! the sniffing nor hyper's HTTP/2 server has a read timeout, so a peer
//! sending nothing, or half the HTTP/2 preface, would hold its connection
//! forever again.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::serve::Listener;
use axum::Router;
use futures_util::FutureExt;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;

use crate::listener::JsonListener;
use crate::metrics::Phase;

/// Serves `app` on every connection `listener` accepts until `signal`
/// resolves; then stops accepting, asks each open connection to finish
/// its request in flight and close, and returns once all have.
pub(crate) async fn serve(
    mut listener: JsonListener,
    app: Router,
    header_timeout: Duration,
    signal: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    // Connections wait for `stop`'s receivers to be gone; `serve` waits
    // for `done`'s, one held by each connection task.
    let (stop, stop_rx) = watch::channel(());
    let (done, done_rx) = watch::channel(());
    let mut signal = pin!(signal);
    loop {
        let (io, addr) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut signal => break,
        };
        let conn =
            http.serve_connection(TokioIo::new(io), TowerToHyperService::new(app.clone())).with_upgrades();
        let stop = stop.clone();
        let done = done_rx.clone();
        let metrics = listener.metrics.clone();
        tokio::spawn(async move {
            let mut conn = pin!(conn);
            let mut stopping = pin!(stop.closed().fuse());
            loop {
                tokio::select! {
                    served = conn.as_mut() => {
                        // A header timeout ends here too: hyper closes the
                        // connection without an answer.
                        if let Err(e) = served {
                            if e.is_timeout() {
                                metrics.observe_timeout(Phase::Header);
                            }
                            tracing::debug!("connection from {addr}: {e}");
                        }
                        break;
                    }
                    () = &mut stopping => conn.as_mut().graceful_shutdown(),
                }
            }
            drop(done);
        });
    }
    drop(listener);
    drop(stop_rx);
    drop(done_rx);
    done.closed().await;
}
