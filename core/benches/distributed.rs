//! Workload W1 across two processes through a real broker (issue 6): a
//! producer process emits EVENTS (default 1,000,000) events of 64 bytes; a
//! receiving process delivers each to 8 counting nodes. In the same run, the
//! broker's own client moves the same 64-byte messages between two processes
//! (rdkafka `BaseProducer` + `BaseConsumer`, async-nats JetStream publish +
//! pull consume, redis `XADD` + `XREADGROUP`), so the ratio compares like
//! with like on the same machine at the same moment.
//!
//! Each case is three processes of this executable: the orchestrator starts
//! the receiver, waits until it is subscribed ("READY"), then starts the
//! producer. Throughput is EVENTS over the time from the producer's first
//! send to the receiver's last delivery (wall clock of the one machine).
//!
//! Fairness: both sides acknowledge every message (Kafka: offsets stored,
//! by the raw consumer per message and by Chronica the last of each
//! partition per read, committed every 500 ms; NATS: explicit ack per
//! message; Redis: one XACK per read of up to 512 entries, as a
//! hand-written consumer would). Producers keep up to 4,096 publishes in
//! flight, Chronica's default `max_in_flight` (NATS, Redis), or let
//! librdkafka batch (Kafka, same producer settings as the adapter).
//! Chronica's messages also carry its metadata headers (about 150 bytes).
//!
//! A third case, `raw+hdr`, is the raw client again with each message
//! carrying headers of the same names and sizes as Chronica's (SPEC section
//! 4's wire format), which the raw receiver ignores. It is not a target
//! peer: it separates what the wire format costs the broker and its client
//! from what Chronica's own code costs, and is printed as extra lines.
//!
//!   scripts/bench-distributed.sh              (starts and stops the brokers)
//!   cargo bench -p chronica --features kafka,nats,redis --bench distributed [-- BROKER...]
//!
//! Environment: EVENTS (default 1000000), CHRONICA_{KAFKA,NATS,REDIS}_URL
//! (default: the ports of scripts/brokers.sh), CASE_TIMEOUT_S (default 900).

use std::future::IntoFuture;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chronica::{
    Batch, Bytes, Director, Distributed, DistributedConfig, Message, NodeError, NodeOptions, Overflow,
};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;

const PAYLOAD: usize = 64;
const NODES: u64 = 8;
/// Publishes in flight in the raw NATS and Redis producers (Chronica's
/// default `max_in_flight`).
const IN_FLIGHT: usize = 4_096;
const BROKERS: [&str; 3] = ["kafka", "nats", "redis"];

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos()
}

fn events() -> u64 {
    std::env::var("EVENTS")
        .ok()
        .map_or(1_000_000, |v| v.replace(['_', ','], "").parse().expect("EVENTS: a number"))
}

fn case_timeout() -> Duration {
    Duration::from_secs(
        std::env::var("CASE_TIMEOUT_S").ok().map_or(900, |v| v.parse().expect("CASE_TIMEOUT_S")),
    )
}

fn url(broker: &str) -> String {
    std::env::var(format!("CHRONICA_{}_URL", broker.to_uppercase())).unwrap_or_else(|_| match broker {
        "kafka" => "kafka://127.0.0.1:19092".into(),
        "nats" => "nats://127.0.0.1:14222".into(),
        _ => "redis://127.0.0.1:16379".into(),
    })
}

/// `host:port[,host:port]` of a kafka:// URL.
fn kafka_hosts(url: &str) -> &str {
    url.strip_prefix("kafka://").unwrap_or(url)
}

/// This process's CPU time (user + system) in seconds, from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of those (14 and 15 overall), in clock ticks of 1/100 s.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if args.first().map(String::as_str) == Some("child") {
        // child ROLE SYSTEM BROKER URL TOPIC EVENTS
        let [_, role, system, broker, url, topic, n] = &args[..] else {
            panic!("bad child arguments {args:?}")
        };
        let n: u64 = n.parse().expect("events");
        if let Err(e) = child(role, system, broker, url, topic, n) {
            eprintln!("{role} {system} {broker}: {e}");
            std::process::exit(1);
        }
        return;
    }
    let chosen: Vec<&str> = if args.is_empty() {
        BROKERS.to_vec()
    } else {
        args.iter()
            .map(|a| BROKERS.into_iter().find(|b| b == a).unwrap_or_else(|| panic!("unknown broker {a}")))
            .collect()
    };
    orchestrate(&chosen);
}

// ------------------------------------------------------------ orchestrator

#[derive(Debug)]
struct Outcome {
    broker: &'static str,
    system: &'static str,
    events: u64,
    seconds: f64,
    publish_seconds: f64,
    recv_cpu: f64,
    send_cpu: f64,
    recv_rss: f64,
}

/// A child process whose stdout lines arrive on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        let exe = std::env::current_exe().expect("bench executable");
        let mut child = Command::new(exe)
            .arg("child")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a bench process");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Proc { child, lines }
    }

    /// The next line starting with `tag`, as `key=value` pairs.
    fn expect(&mut self, tag: &str, timeout: Duration) -> Vec<(String, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(tag) => {
                    return line
                        .split_whitespace()
                        .skip(1)
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect();
                }
                Ok(other) => println!("  | {other}"),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no {tag} line within {timeout:?} (or the process died)");
                }
            }
        }
    }

    fn finish(mut self) {
        let status = self.child.wait().expect("wait for a bench process");
        assert!(status.success(), "a bench process failed: {status}");
    }
}

fn field<T: std::str::FromStr>(kv: &[(String, String)], key: &str) -> T {
    kv.iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("field {key} missing in {kv:?}"))
}

fn run_case(broker: &'static str, system: &'static str, n: u64) -> Outcome {
    let url = url(broker);
    // Kafka topic names allow [a-zA-Z0-9._-] only.
    let topic = format!(
        "w1-{}-{broker}-{}-{}",
        system.replace('+', "-"),
        std::process::id(),
        now_ns() % 1_000_000_000
    );
    let ns = n.to_string();
    let mut recv = Proc::start(&["recv", system, broker, &url, &topic, &ns]);
    recv.expect("READY", Duration::from_secs(120));
    let mut send = Proc::start(&["send", system, broker, &url, &topic, &ns]);
    let sent = send.expect("SENT", case_timeout());
    let done = recv.expect("DONE", case_timeout());
    send.finish();
    recv.finish();
    cleanup(broker, &url, &topic);
    let start: u128 = field(&sent, "start");
    let published: u128 = field(&sent, "published");
    let finished: u128 = field(&done, "done");
    let got: u64 = field(&done, "got");
    assert_eq!(got, n, "{system} on {broker}: received {got} of {n}");
    Outcome {
        broker,
        system,
        events: n,
        seconds: (finished - start) as f64 / 1e9,
        publish_seconds: (published - start) as f64 / 1e9,
        recv_cpu: field(&done, "cpu"),
        send_cpu: field(&sent, "cpu"),
        recv_rss: field(&done, "rss_mib"),
    }
}

fn orchestrate(brokers: &[&'static str]) {
    let n = events();
    println!("W1 across processes: {n} events of {PAYLOAD} bytes, {NODES} nodes in the receiving process");
    let mut all = Vec::new();
    for &broker in brokers {
        for system in ["raw", "raw+hdr", "chronica"] {
            let o = run_case(broker, system, n);
            println!(
                "{broker:<6} {system:<9} {:>10.0} events/s  ({:.2} s; publishing {:.2} s; cpu recv {:.1} s, send {:.1} s; recv peak {:.0} MiB)",
                o.events as f64 / o.seconds,
                o.seconds,
                o.publish_seconds,
                o.recv_cpu,
                o.send_cpu,
                o.recv_rss
            );
            all.push(o);
        }
    }
    println!();
    println!("| broker | raw client, events/s | chronica, events/s | chronica / raw | chronica publish only, s | cpu s recv+send raw / chronica | raw+hdr, events/s (cpu s) | chronica / raw+hdr |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for &broker in brokers {
        let get = |s: &str| all.iter().find(|o| o.broker == broker && o.system == s).expect("case ran");
        let (raw, hdr, chr) = (get("raw"), get("raw+hdr"), get("chronica"));
        let rate = |o: &Outcome| o.events as f64 / o.seconds;
        let (r, h, c) = (rate(raw), rate(hdr), rate(chr));
        println!(
            "| {broker} | {r:.0} | {c:.0} | {:.2} | {:.2} | {:.1} / {:.1} | {h:.0} ({:.1}) | {:.2} |",
            c / r,
            chr.publish_seconds,
            raw.recv_cpu + raw.send_cpu,
            chr.recv_cpu + chr.send_cpu,
            hdr.recv_cpu + hdr.send_cpu,
            c / h
        );
    }
    for &broker in brokers {
        let get = |s: &str| all.iter().find(|o| o.broker == broker && o.system == s).expect("case ran");
        let ratio = (get("chronica").events as f64 / get("chronica").seconds)
            / (get("raw").events as f64 / get("raw").seconds);
        println!(
            "ratio chronica/raw {broker} = {ratio:.2} (target >= 0.80: {})",
            if ratio >= 0.8 { "met" } else { "NOT met" }
        );
    }
    for &broker in brokers {
        let get = |s: &str| all.iter().find(|o| o.broker == broker && o.system == s).expect("case ran");
        let rate = |o: &Outcome| o.events as f64 / o.seconds;
        println!(
            "(not a target) raw+hdr/raw {broker} = {:.2}: the wire format's headers alone; chronica/raw+hdr = {:.2}",
            rate(get("raw+hdr")) / rate(get("raw")),
            rate(get("chronica")) / rate(get("raw+hdr"))
        );
    }
}

/// Deletes what a case left on the broker (a million messages each).
fn cleanup(broker: &str, url: &str, topic: &str) {
    let rt = runtime();
    let r: Res<()> = rt.block_on(async {
        match broker {
            "kafka" => {
                use rdkafka::admin::{AdminClient, AdminOptions};
                use rdkafka::client::DefaultClientContext;
                let admin: AdminClient<DefaultClientContext> =
                    rdkafka::ClientConfig::new().set("bootstrap.servers", kafka_hosts(url)).create()?;
                admin.delete_topics(&[topic], &AdminOptions::new()).await?;
            }
            "nats" => {
                let js = async_nats::jetstream::new(async_nats::connect(url).await?);
                js.delete_stream(topic).await?;
            }
            _ => {
                let mut c = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
                redis::cmd("DEL").arg(topic).exec_async(&mut c).await?;
            }
        }
        Ok(())
    });
    if let Err(e) = r {
        eprintln!("cleanup of {topic} on {broker}: {e}");
    }
}

// ------------------------------------------------------------------ children

fn child(role: &str, system: &str, broker: &str, url: &str, topic: &str, n: u64) -> Res<()> {
    match (role, system) {
        ("recv", "chronica") => chronica_recv(url, topic, n),
        ("send", "chronica") => chronica_send(url, topic, n),
        ("recv", "raw" | "raw+hdr") => match broker {
            "kafka" => kafka_recv(url, topic, n),
            "nats" => runtime().block_on(nats_recv(url, topic, n)),
            _ => runtime().block_on(redis_recv(url, topic, n)),
        },
        ("send", "raw" | "raw+hdr") => {
            let headers = system == "raw+hdr";
            match broker {
                "kafka" => kafka_send(url, topic, n, headers),
                "nats" => runtime().block_on(nats_send(url, topic, n, headers)),
                _ => runtime().block_on(redis_send(url, topic, n, headers)),
            }
        }
        other => Err(format!("unknown case {other:?}").into()),
    }
}

fn ready() {
    println!("READY");
}

/// The headers Chronica's sender puts on W1 event `i` (names and value
/// sizes as on its wire), for the `raw+hdr` case.
fn wire_headers(i: u64) -> [(&'static str, String); 6] {
    let ts = (now_ns() / 1_000_000).to_string();
    [
        ("chronica-id", (i + 1).to_string()),
        ("chronica-origin", "w1-send".to_owned()),
        ("chronica-kind", "user".to_owned()),
        ("chronica-ts", ts),
        ("chronica-topic", "w1".to_owned()),
        ("chronica-source", "producer".to_owned()),
    ]
}

fn report_sent(start: u128) {
    println!("SENT start={start} published={} cpu={:.2}", now_ns(), cpu_seconds());
}

fn report_done(done: u128, got: u64, extra: &str) {
    println!("DONE done={done} got={got} cpu={:.2} rss_mib={:.1} {extra}", cpu_seconds(), peak_rss_mib());
}

/// The defaults, but for MAX_IN_FLIGHT when set (to study the publish window).
fn fabric_config(instance: &str, topic: &str) -> DistributedConfig {
    let mut cfg = DistributedConfig {
        instance_id: instance.into(),
        topic_prefix: topic.into(),
        connect_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    if let Some(n) = std::env::var("MAX_IN_FLIGHT").ok().and_then(|v| v.parse().ok()) {
        cfg.max_in_flight = n;
    }
    cfg
}

/// The fabric's trust token (distributed mode refuses an empty one).
const TOKEN: &str = "bench-fabric";

/// 8 counting nodes (block policy, capacity 65,536, as the in-process W1)
/// on a director joined to the fabric.
fn chronica_recv(url: &str, topic: &str, n: u64) -> Res<()> {
    let d = Director::builder()
        .trust_token(TOKEN)
        .overflow(Overflow::Block)
        .queue_capacity(65_536)
        .block_timeout(Duration::from_secs(60))
        .build()?;
    let total = Arc::new(AtomicU64::new(0));
    let done_at: Arc<OnceLock<u128>> = Arc::default();
    let want = n * NODES;
    for i in 0..NODES {
        let (total, done_at) = (total.clone(), done_at.clone());
        d.register_with(
            &format!("node-{i}"),
            move |b: &Batch| -> Result<(), NodeError> {
                let users = b.iter().filter(|e| !e.is_root()).count() as u64;
                if total.fetch_add(users, Ordering::Relaxed) + users >= want {
                    done_at.get_or_init(now_ns);
                }
                Ok(())
            },
            NodeOptions::default(),
        )?;
    }
    let fabric = Distributed::connect(&d, url, fabric_config("w1-recv", topic))?;
    ready();
    let deadline = Instant::now() + case_timeout();
    while done_at.get().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let done = done_at.get().copied().unwrap_or_else(now_ns);
    let got = total.load(Ordering::Relaxed) / NODES;
    let s = fabric.stats();
    let dropped: u64 = (0..NODES).map(|i| d.stats(&format!("node-{i}")).map_or(0, |s| s.dropped)).sum();
    report_done(done, got, &format!("received={} duplicates={} dropped={dropped}", s.received, s.duplicates));
    fabric.close(Duration::from_secs(5))?;
    d.close(Duration::from_secs(5))?;
    if dropped > 0 {
        return Err(format!("{dropped} deliveries dropped").into());
    }
    Ok(())
}

/// One producer node (the source, as in W1) emitting through the fabric.
/// The outbox holds 65,536 events and drops the oldest when full, so the
/// loop waits while more than half of it is waiting for the broker.
fn chronica_send(url: &str, topic: &str, n: u64) -> Res<()> {
    let d = Director::builder().trust_token(TOKEN).build()?;
    d.register("producer", |_: &Batch| -> Result<(), NodeError> { Ok(()) })?;
    let fabric = Distributed::connect(&d, url, fabric_config("w1-send", topic))?;
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    let start = now_ns();
    for i in 0..n {
        fabric.emit(Message::new("w1", payload.clone()).source("producer"))?;
        if i % 256 == 255 {
            while fabric.stats().buffered > 32_768 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    if !fabric.flush(case_timeout()) {
        return Err("the outbox did not drain".into());
    }
    report_sent(start);
    let s = fabric.stats();
    fabric.close(Duration::from_secs(5))?;
    d.close(Duration::from_secs(5))?;
    if s.buffer_dropped > 0 || s.published < n {
        return Err(format!("published {} of {n}, {} dropped", s.published, s.buffer_dropped).into());
    }
    Ok(())
}

// ---------------------------------------------------------------- raw kafka

fn kafka_recv(url: &str, topic: &str, n: u64) -> Res<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message as _;
    let hosts = kafka_hosts(url);
    // The topic as the adapter makes it: 4 partitions.
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", hosts).create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    runtime().block_on(admin.create_topics([&NewTopic::new(topic, 4, TopicReplication::Fixed(1))], &opts))?;
    // The adapter's consumer settings.
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", hosts)
        .set("group.id", format!("{topic}.raw"))
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .create()?;
    consumer.subscribe(&[topic])?;
    let (mut got, mut bytes) = (0u64, 0usize);
    // As the adapter acknowledges: the offset stored per message.
    let take = |m: rdkafka::message::BorrowedMessage<'_>, got: &mut u64, bytes: &mut usize| -> Res<()> {
        *bytes += m.payload().map_or(0, <[u8]>::len);
        consumer.store_offset(m.topic(), m.partition(), m.offset())?;
        *got += 1;
        Ok(())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumer.assignment()?.count() == 0 {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            take(m?, &mut got, &mut bytes)?;
        }
        if Instant::now() > deadline {
            return Err("no partitions assigned".into());
        }
    }
    ready();
    let deadline = Instant::now() + case_timeout();
    while got < n && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            take(m?, &mut got, &mut bytes)?;
        }
    }
    report_done(now_ns(), got, &format!("bytes={bytes}"));
    Ok(())
}

fn kafka_send(url: &str, topic: &str, n: u64, headers: bool) -> Res<()> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::util::Timeout;
    // The adapter's producer settings.
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_hosts(url))
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "20000")
        .create()?;
    producer.client().fetch_metadata(Some(topic), Timeout::After(Duration::from_secs(10)))?;
    let payload = [7u8; PAYLOAD];
    let start = now_ns();
    for i in 0..n {
        loop {
            let mut record = BaseRecord::<(), [u8]>::to(topic).payload(&payload[..]);
            if headers {
                let mut h = rdkafka::message::OwnedHeaders::new_with_capacity(6);
                for (k, v) in wire_headers(i) {
                    h = h.insert(rdkafka::message::Header { key: k, value: Some(v.as_bytes()) });
                }
                record = record.headers(h);
            }
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Timeout::After(case_timeout()))?;
    report_sent(start);
    Ok(())
}

// ----------------------------------------------------------------- raw nats

async fn nats_recv(url: &str, topic: &str, n: u64) -> Res<()> {
    use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, consumer::DeliverPolicy, stream};
    let js = jetstream::new(async_nats::connect(url).await?);
    // The stream and consumer as the adapter makes them.
    let s = js
        .get_or_create_stream(stream::Config {
            name: topic.to_owned(),
            subjects: vec![topic.to_owned(), format!("{topic}.>")],
            max_age: Duration::from_secs(24 * 3600),
            ..Default::default()
        })
        .await?;
    let consumer: jetstream::consumer::PullConsumer = s
        .get_or_create_consumer(
            "raw",
            pull::Config {
                durable_name: Some("raw".into()),
                filter_subject: topic.to_owned(),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::New,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 20_000,
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.messages().await?;
    ready();
    let (mut got, mut bytes) = (0u64, 0usize);
    let deadline = tokio::time::Instant::now() + case_timeout();
    while got < n {
        match tokio::time::timeout_at(deadline, messages.next()).await {
            Ok(Some(Ok(m))) => {
                bytes += m.payload.len();
                m.ack().await?;
                got += 1;
            }
            Ok(Some(Err(e))) => eprintln!("nats: {e}"),
            Ok(None) | Err(_) => break,
        }
    }
    report_done(now_ns(), got, &format!("bytes={bytes}"));
    Ok(())
}

async fn nats_send(url: &str, topic: &str, n: u64, headers: bool) -> Res<()> {
    let js = async_nats::jetstream::new(async_nats::connect(url).await?);
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    let subject = async_nats::Subject::from(topic);
    let mut pending = FuturesUnordered::new();
    let start = now_ns();
    for i in 0..n {
        let ack = if headers {
            let mut h = async_nats::HeaderMap::new();
            for (k, v) in wire_headers(i) {
                h.append(async_nats::HeaderName::from_static(k), v);
            }
            js.publish_with_headers(subject.clone(), h, payload.clone()).await?
        } else {
            js.publish(subject.clone(), payload.clone()).await?
        };
        pending.push(ack.into_future());
        while pending.len() >= IN_FLIGHT {
            pending.next().await.expect("a pending ack")?;
        }
    }
    while let Some(ack) = pending.next().await {
        ack?;
    }
    report_sent(start);
    Ok(())
}

// ---------------------------------------------------------------- raw redis

async fn redis_conn(url: &str) -> Res<redis::aio::MultiplexedConnection> {
    let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    Ok(redis::Client::open(url)?.get_multiplexed_async_connection_with_config(&cfg).await?)
}

async fn redis_recv(url: &str, topic: &str, n: u64) -> Res<()> {
    use redis::streams::StreamReadReply;
    let mut conn = redis_conn(url).await?;
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(topic)
        .arg("raw")
        .arg("$")
        .arg("MKSTREAM")
        .exec_async(&mut conn)
        .await?;
    ready();
    let (mut got, mut bytes) = (0u64, 0usize);
    let deadline = Instant::now() + case_timeout();
    while got < n && Instant::now() < deadline {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("raw")
            .arg("c1")
            .arg("COUNT")
            .arg(512)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(topic)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        let entries: Vec<redis::streams::StreamId> =
            reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).collect();
        if entries.is_empty() {
            continue;
        }
        for e in &entries {
            if let Some(redis::Value::BulkString(v)) = e.map.get("value") {
                bytes += v.len();
            }
        }
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        redis::cmd("XACK").arg(topic).arg("raw").arg(&ids).exec_async(&mut conn).await?;
        got += ids.len() as u64;
    }
    report_done(now_ns(), got, &format!("bytes={bytes}"));
    Ok(())
}

async fn redis_send(url: &str, topic: &str, n: u64, headers: bool) -> Res<()> {
    let mut conn = redis_conn(url).await?;
    let payload = [7u8; PAYLOAD];
    let start = now_ns();
    let mut sent = 0u64;
    while sent < n {
        let k = (n - sent).min(IN_FLIGHT as u64);
        let mut p = redis::pipe();
        for i in sent..sent + k {
            // As the adapter writes them: capped stream, payload in `value`.
            let cmd = p.cmd("XADD").arg(topic).arg("MAXLEN").arg("~").arg(1_000_000).arg("*");
            cmd.arg("value").arg(&payload[..]);
            if headers {
                for (name, v) in wire_headers(i) {
                    cmd.arg(name).arg(v);
                }
            }
            cmd.ignore();
        }
        p.exec_async(&mut conn).await?;
        sent += k;
    }
    report_sent(start);
    Ok(())
}
