//! `chronica-hub`: the Chronica director as a network service.
//!
//! Remote nodes register over HTTP and receive their batches as signed
//! webhooks or over a WebSocket with acknowledgements; clients emit over
//! HTTP with bearer tokens; `/metrics` speaks Prometheus and `/` is a live
//! status page. See `docs/HUB.md` and `docs/hub-openapi.yaml`.
#![forbid(unsafe_code)]

mod api;
mod auth;
mod config;
mod hub;
mod listener;
mod metrics;
mod secret;
mod serve;
mod slots;
mod stream;
mod webhook;
mod wire;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::config::{Options, Settings};
use crate::hub::Hub;

/// How long `close` may drain the fibers at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

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
    // hyper's own refusals (unparsable requests) are rewritten to JSON
    // on the way out, like the application's (listener.rs).
    let listener = listener::JsonListener { listener, metrics: hub.metrics.clone(), slots };
    let server = serve::serve(listener, app, header_timeout, async move {
        shutdown_signal().await;
        let _ = signalled.send(());
    });
    let deadline = async move {
        if on_signal.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        () = server => {},
        () = deadline => {
            tracing::warn!("connections still open {DRAIN:?} after the signal; closing anyway");
        }
    }
    sampler.abort();
    if let Some(d) = &hub.distributed {
        // Publish what is still buffered for the other hubs before the local drain.
        if let Err(e) = d.close(DRAIN) {
            tracing::error!("leaving the broker: {e}");
        }
    }
    let director = hub.director.clone();
    let closed = tokio::task::spawn_blocking(move || director.close(DRAIN))
        .await
        .map_err(|e| format!("close task: {e}"))?;
    match closed {
        Ok(0) => tracing::info!("closed; every event delivered"),
        Ok(n) => tracing::warn!("closed; {n} events left undelivered after {DRAIN:?}"),
        Err(e) => tracing::error!("close: {e}"),
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
