//! `chronica-hub`: the Chronica director as a network service.
//!
//! Remote nodes register over HTTP and receive their batches as signed
//! webhooks or over a WebSocket with acknowledgements; clients emit over
//! HTTP with bearer tokens; `/metrics` speaks Prometheus and `/` is a live
//! status page. See `docs/HUB.md` and `docs/hub-openapi.yaml`.
#![forbid(unsafe_code)]

mod addresses;
mod api;
mod auth;
mod config;
mod cutoff;
mod hub;
mod listener;
mod metrics;
mod policy;
mod secret;
mod serve;
mod slots;
mod stream;
mod webhook;
mod wire;

use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::config::{Options, Settings};
use crate::hub::Hub;

/// How long open connections may finish after the signal, and then how
/// long `close` may drain the fibers before the deliveries in flight are
/// cut (`cutoff`).
const DRAIN: Duration = Duration::from_secs(5);

/// How long, after the close, the connections still open may take to
/// answer the requests that waited for it.
const ANSWER_GRACE: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHRONICA_HUB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let settings = match Settings::resolve(Options::parse()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chronica-hub: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chronica-hub: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chronica-hub: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<(), String> {
    let (listen, header_timeout) = (settings.listen, settings.header_timeout);
    let slots = Arc::new(tokio::sync::Semaphore::new(slots::max_connections(settings.max_connections)));
    let per_address = settings.max_connections_per_address.map(addresses::PerAddress::new);
    let hub = Hub::new(settings)?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("listener address: {e}"))?;
    tracing::info!("chronica-hub {} listening on http://{local}", env!("CARGO_PKG_VERSION"));
    let sampler = tokio::spawn(hub.clone().sample_forever());
    let app = api::router(hub.clone());
    // After the signal, open connections get `DRAIN` to finish; one that
    // never completes its request must not keep the hub alive.
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let signalled_at = Arc::new(OnceLock::new());
    let mark = signalled_at.clone();
    // hyper's own refusals (unparsable requests) are rewritten to JSON
    // on the way out, like the application's (listener.rs).
    let listener = listener::JsonListener { listener, metrics: hub.metrics.clone(), slots, per_address };
    let server = serve::serve(listener, app, header_timeout, async move {
        shutdown_signal().await;
        let _ = mark.set(Instant::now());
        let _ = signalled.send(());
    });
    let deadline = async move {
        if on_signal.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(DRAIN).await;
    };
    tokio::pin!(server);
    let served = tokio::select! {
        () = &mut server => true,
        () = deadline => {
            tracing::warn!("connections still open {DRAIN:?} after the signal; closing anyway");
            false
        }
    };
    sampler.abort();
    if let Some(d) = &hub.distributed {
        // Publish what is still buffered for the other hubs before the local drain.
        if let Err(e) = d.close(DRAIN) {
            tracing::error!("leaving the broker: {e}");
        }
    }
    // The close waits for the callbacks in flight, each bounded only by its
    // own timeout (webhook, ack): at the drain's end they are cut.
    let cutter = tokio::spawn({
        let hub = hub.clone();
        async move {
            tokio::time::sleep(DRAIN).await;
            hub.cutoff.cut();
        }
    });
    let director = hub.director.clone();
    let closed = tokio::task::spawn_blocking(move || director.close(DRAIN))
        .await
        .map_err(|e| format!("close task: {e}"))?;
    cutter.abort();
    let elapsed = signalled_at.get().map_or(Duration::ZERO, Instant::elapsed);
    match closed {
        Ok(0) => tracing::info!("closed {elapsed:.1?} after the signal; every event delivered"),
        Ok(n) => tracing::warn!("closed {elapsed:.1?} after the signal; {n} events left undelivered"),
        Err(e) => tracing::error!("close: {e}"),
    }
    if !served {
        // A request that waited for the close (a draining DELETE) answers
        // now; the rest of the connections are not waited for again.
        let _ = tokio::time::timeout(ANSWER_GRACE, server).await;
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
