//! The hub benchmark (`make bench-hub` runs it through scripts/bench-hub.sh
//! against a running chronica-hub).
//!
//! Eight minimal webhook receivers run in this process. Each event carries a
//! 64-byte JSON payload holding its emit time, so a receiver measures
//! emit-to-receipt latency per event. Three phases, all to the same
//! receivers:
//!
//! 1. direct: a plain pooled HTTP client posts every event to every
//!    receiver, one POST per event and receiver (64 in flight);
//! 2. hub burst: the same events emitted through the hub, 1,000 per
//!    request, and delivered by it as batched webhooks;
//! 3. hub steady: 10,000 events/s for a few seconds, for the latency figures.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use futures_util::stream::{self, StreamExt};
use parking_lot::Mutex;
use serde::Deserialize;

#[derive(Debug)]
struct Args {
    hub: String,
    token: String,
    events: usize,
    nodes: usize,
    rate: usize,
    steady_secs: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        hub: "http://127.0.0.1:7700".into(),
        token: String::new(),
        events: 100_000,
        nodes: 8,
        rate: 10_000,
        steady_secs: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--hub" => a.hub = v,
            "--token" => a.token = v,
            "--events" => a.events = num(&v)?,
            "--nodes" => a.nodes = num(&v)?,
            "--rate" => a.rate = num(&v)?,
            "--steady-secs" => a.steady_secs = num(&v)? as u64,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// A 64-byte JSON string carrying the emit time: `"t=<16 digits>,xxx…"`.
fn payload() -> String {
    let mut s = format!("\"t={:016},", now_us());
    while s.len() < 63 {
        s.push('x');
    }
    s.push('"');
    s
}

#[derive(Default)]
struct Receiver {
    count: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

#[derive(Deserialize)]
struct BatchIn<'a> {
    #[serde(borrow)]
    events: Vec<EventIn<'a>>,
}

#[derive(Deserialize)]
struct EventIn<'a> {
    kind: &'a str,
    #[serde(borrow)]
    payload: Option<&'a serde_json::value::RawValue>,
}

async fn receive(State(r): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    let Ok(batch) = serde_json::from_slice::<BatchIn<'_>>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let now = now_us();
    let mut lat = Vec::with_capacity(batch.events.len());
    for e in batch.events.iter().filter(|e| e.kind == "user") {
        if let Some(t) = e.payload.and_then(|p| p.get().get(3..19)).and_then(|t| t.parse::<u64>().ok()) {
            lat.push(now.saturating_sub(t).min(u32::MAX as u64) as u32);
        }
    }
    r.count.fetch_add(lat.len() as u64, Ordering::Relaxed);
    r.latencies_us.lock().extend(lat);
    StatusCode::OK
}

async fn start_receiver() -> Result<(SocketAddr, Arc<Receiver>), String> {
    let r = Arc::new(Receiver::default());
    let app = Router::new().route("/events", post(receive)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("receiver {addr}: {e}");
        }
    });
    Ok((addr, r))
}

fn reset(rs: &[Arc<Receiver>]) {
    for r in rs {
        r.count.store(0, Ordering::Relaxed);
        r.latencies_us.lock().clear();
    }
}

async fn wait_for(rs: &[Arc<Receiver>], each: u64, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while rs.iter().any(|r| r.count.load(Ordering::Relaxed) < each) {
        if Instant::now() > deadline {
            let got: Vec<u64> = rs.iter().map(|r| r.count.load(Ordering::Relaxed)).collect();
            return Err(format!("timed out waiting for {each} events per receiver, got {got:?}"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn percentiles(rs: &[Arc<Receiver>]) -> (f64, f64, f64) {
    let mut all: Vec<u32> = rs.iter().flat_map(|r| r.latencies_us.lock().clone()).collect();
    if all.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    all.sort_unstable();
    let p = |q: f64| all[((all.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    (p(0.50), p(0.99), *all.last().unwrap_or(&0) as f64 / 1000.0)
}

async fn emit(client: &reqwest::Client, a: &Args, n: usize) -> Result<(), String> {
    let mut body = String::with_capacity(n * 100 + 16);
    body.push_str("{\"events\":[");
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        body.push_str("{\"topic\":\"bench\",\"payload\":");
        body.push_str(&payload());
        body.push('}');
    }
    body.push_str("]}");
    let resp = client
        .post(format!("{}/v1/emit", a.hub))
        .bearer_auth(&a.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("emit: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("emit answered {}: {}", resp.status(), resp.text().await.unwrap_or_default()));
    }
    Ok(())
}

async fn run(a: Args) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())?;
    let mut addrs = Vec::new();
    let mut rs = Vec::new();
    for _ in 0..a.nodes {
        let (addr, r) = start_receiver().await?;
        addrs.push(addr);
        rs.push(r);
    }
    let deliveries = (a.events * a.nodes) as f64;

    // 1. Direct: one POST per event and receiver.
    let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}/events")).collect();
    let started = Instant::now();
    let jobs = (0..a.events).flat_map(|_| urls.iter());
    let failed = AtomicU64::new(0);
    stream::iter(jobs)
        .for_each_concurrent(64, |url| {
            let (client, failed) = (&client, &failed);
            async move {
                let body = format!("{{\"events\":[{{\"kind\":\"user\",\"payload\":{}}}]}}", payload());
                match client.post(url).header("content-type", "application/json").body(body).send().await {
                    Ok(r) if r.status().is_success() => {}
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
        .await;
    let direct_wall = started.elapsed().as_secs_f64();
    wait_for(&rs, a.events as u64, Duration::from_secs(5)).await?;
    let direct = percentiles(&rs);
    let direct_rate = a.events as f64 / direct_wall;
    println!(
        "direct   : {} events x {} receivers in {direct_wall:.2} s = {direct_rate:.0} events/s \
         ({:.0} POSTs/s, {} failed), p50 {:.2} ms, p99 {:.2} ms",
        a.events,
        a.nodes,
        deliveries / direct_wall,
        failed.load(Ordering::Relaxed),
        direct.0,
        direct.1
    );

    // Register the receivers as webhook nodes of the hub.
    for (i, addr) in addrs.iter().enumerate() {
        let resp = client
            .post(format!("{}/v1/nodes", a.hub))
            .bearer_auth(&a.token)
            .header("content-type", "application/json")
            .body(
                serde_json::json!({"uid": format!("bench-{i}"), "webhook": format!("http://{addr}/events")})
                    .to_string(),
            )
            .send()
            .await
            .map_err(|e| format!("register: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("register answered {}", resp.status()));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 2. Hub burst: 1,000 events per emit request.
    reset(&rs);
    let started = Instant::now();
    let per = 1000.min(a.events);
    let mut sent = 0;
    while sent < a.events {
        let n = per.min(a.events - sent);
        emit(&client, &a, n).await?;
        sent += n;
    }
    let emitted = started.elapsed().as_secs_f64();
    wait_for(&rs, a.events as u64, Duration::from_secs(120)).await?;
    let hub_wall = started.elapsed().as_secs_f64();
    let burst = percentiles(&rs);
    let hub_rate = a.events as f64 / hub_wall;
    println!(
        "hub      : {} events x {} nodes in {hub_wall:.2} s (emitted in {emitted:.2} s) = {hub_rate:.0} events/s \
         ({:.0} deliveries/s), burst latency p50 {:.1} ms, p99 {:.1} ms",
        a.events,
        a.nodes,
        deliveries / hub_wall,
        burst.0,
        burst.1
    );

    // 3. Hub steady: `rate` events/s in 10 ms ticks.
    reset(&rs);
    let per_tick = (a.rate / 100).max(1);
    let ticks = a.steady_secs * 100;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for _ in 0..ticks {
        tick.tick().await;
        emit(&client, &a, per_tick).await?;
    }
    let total = per_tick as u64 * ticks;
    wait_for(&rs, total, Duration::from_secs(30)).await?;
    let steady_rate = total as f64 / started.elapsed().as_secs_f64();
    let steady = percentiles(&rs);
    println!(
        "steady   : {total} events at {} events/s target ({steady_rate:.0} achieved) x {} nodes: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        a.rate, a.nodes, steady.0, steady.1, steady.2
    );
    let ratio = hub_rate / direct_rate;
    println!(
        "summary  : hub/direct = {ratio:.1}x (target >= 5x): {}; steady p99 {:.2} ms (target < 50 ms): {}",
        if ratio >= 5.0 { "met" } else { "NOT met" },
        steady.1,
        if steady.1 < 50.0 { "met" } else { "NOT met" }
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hub_bench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hub_bench: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(a)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hub_bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
