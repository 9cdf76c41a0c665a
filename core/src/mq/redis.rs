//! The Redis Streams adapter (feature `redis`).
//!
//! A topic is a stream key (no wildcards). An entry holds the payload in
//! field `value`, the key in field `key`, and every header as a field of its
//! own; its id gives the timestamp. An entry from a foreign producer with no
//! `value` field is taken whole: its fields as a JSON object.
//!
//! A subscription is a member of the stream's consumer group `group`
//! (created at the stream's end, `$`, if missing): its own connection (a
//! blocking read stalls a multiplexed one) reads with `XREADGROUP ... >`,
//! and reclaims with `XAUTOCLAIM` the entries other members left pending
//! for over 30 s (a member that died; `?reclaim_idle_ms=N` in the URL sets
//! the 30 s), looking every 5 s or every half of that time if shorter. `ack` is `XACK`. On a broken
//! connection the reader reconnects with backoff and first re-reads its own
//! pending entries. Streams are capped near 1,000,000 entries.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::StreamAutoClaimReply;
use redis::{AsyncConnectionConfig, Client, Value};
use tokio::sync::mpsc;

use super::redis_entry::{read_reply, to_message, Entry, RedisAck};
use super::{BoxFuture, Message, MessageStream, MqAdapter, MqError, MqResult, CONNECT_TIMEOUT};

const BLOCK_MS: usize = 1_000;
const BATCH: usize = 512;
const RECLAIM_EVERY: Duration = Duration::from_secs(5);
/// How long an entry may stay pending with one member before another may
/// take it over, unless the URL says otherwise.
const RECLAIM_IDLE: Duration = Duration::from_secs(30);
const MAX_LEN: usize = 1_000_000;

static CONSUMERS: AtomicU64 = AtomicU64::new(0);

/// A Redis client: one shared connection for writes and acks, one per
/// subscription for its blocking reads.
#[derive(Debug)]
pub struct RedisAdapter {
    client: Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    closed: Arc<AtomicBool>,
    reclaim_idle: Duration,
}

fn broker(e: impl std::fmt::Display) -> MqError {
    MqError::Broker(e.to_string())
}

async fn open(client: &Client, response_timeout: Duration) -> MqResult<MultiplexedConnection> {
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .map_err(|e| MqError::Connect(e.to_string()))
}

impl RedisAdapter {
    /// Connects to `redis://HOST:PORT[/DB]` and checks it answers `PING`
    /// within [`CONNECT_TIMEOUT`].
    pub async fn connect(url: &str) -> MqResult<Self> {
        let (url, reclaim_idle) = reclaim_idle_of(url)?;
        let url = url.as_str();
        let client = Client::open(url).map_err(|e| MqError::Config(format!("redis URL {url:?}: {e}")))?;
        let mut conn = open(&client, CONNECT_TIMEOUT)
            .await
            .map_err(|e| MqError::Connect(format!("redis at {url}: {e}")))?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| MqError::Connect(format!("redis at {url}: {e}")))?;
        Ok(Self { client, conn: tokio::sync::Mutex::new(Some(conn)), closed: Arc::default(), reclaim_idle })
    }

    async fn conn(&self) -> MqResult<MultiplexedConnection> {
        if self.closed.load(Ordering::Acquire) {
            return Err(MqError::Closed);
        }
        let mut guard = self.conn.lock().await;
        if let Some(c) = &*guard {
            return Ok(c.clone());
        }
        let c = open(&self.client, Duration::from_secs(5)).await?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Runs `cmd` on the shared connection.
    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> MqResult<T> {
        let mut c = self.conn().await?;
        let r = cmd.query_async::<T>(&mut c).await;
        self.checked(r).await
    }

    /// Runs `pipe` on the shared connection.
    async fn run_pipe(&self, pipe: &redis::Pipeline) -> MqResult<()> {
        let mut c = self.conn().await?;
        let r = pipe.exec_async(&mut c).await;
        self.checked(r).await
    }

    /// Drops the shared connection when `r` says it broke, so the next call
    /// reconnects.
    async fn checked<T>(&self, r: redis::RedisResult<T>) -> MqResult<T> {
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    *self.conn.lock().await = None;
                }
                Err(broker(e))
            }
        }
    }
}

/// The `XADD` of `message` on stream `topic` (capped near [`MAX_LEN`]).
fn xadd(topic: &str, message: &Message) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(topic).arg("MAXLEN").arg("~").arg(MAX_LEN).arg("*").arg("value").arg(&message.value[..]);
    if let Some(k) = &message.key {
        cmd.arg("key").arg(&k[..]);
    }
    for (k, v) in &message.headers {
        if k != "value" && k != "key" {
            cmd.arg(&**k).arg(v);
        }
    }
    cmd
}

/// `url` without its `reclaim_idle_ms` query parameter, and that idle time
/// (default [`RECLAIM_IDLE`]).
fn reclaim_idle_of(url: &str) -> MqResult<(String, Duration)> {
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_owned(), RECLAIM_IDLE)) };
    let mut idle = RECLAIM_IDLE;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("reclaim_idle_ms", v)) => {
                let ms = v.parse::<u64>().ok().filter(|ms| *ms > 0).ok_or_else(|| {
                    MqError::Config(format!("redis URL: reclaim_idle_ms={v:?} is not a positive integer"))
                })?;
                idle = Duration::from_millis(ms);
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    Ok((url, idle))
}

fn is_busygroup(e: &MqError) -> bool {
    matches!(e, MqError::Broker(s) if s.contains("BUSYGROUP"))
}

/// The reader task of one subscription.
async fn read_loop(
    client: Client,
    key: String,
    group: String,
    tx: mpsc::Sender<Vec<MqResult<Message>>>,
    closed: Arc<AtomicBool>,
    reclaim_idle: Duration,
) {
    let reclaim_every = RECLAIM_EVERY.min(reclaim_idle / 2).max(Duration::from_millis(10));
    let consumer = format!("c-{}-{}", std::process::id(), CONSUMERS.fetch_add(1, Ordering::Relaxed));
    // Shared by every received message's ack token.
    let (shared_key, shared_group): (Arc<str>, Arc<str>) = (key.as_str().into(), group.as_str().into());
    let response_timeout = Duration::from_millis(BLOCK_MS as u64) + Duration::from_secs(5);
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = Duration::from_millis(50);
    // "0": our own pending entries first (after a reconnect); then ">".
    let mut cursor = "0".to_owned();
    let mut last_reclaim = Instant::now();
    while !closed.load(Ordering::Acquire) && !tx.is_closed() {
        let c = match &mut conn {
            Some(c) => c,
            None => match open(&client, response_timeout).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    if tx.send(vec![Err(e)]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            },
        };
        let mut entries: Vec<Entry> = Vec::new();
        let mut result: redis::RedisResult<()> = Ok(());
        if last_reclaim.elapsed() >= reclaim_every {
            last_reclaim = Instant::now();
            let claim = redis::cmd("XAUTOCLAIM")
                .arg(&key)
                .arg(&group)
                .arg(&consumer)
                .arg(reclaim_idle.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(BATCH)
                .query_async::<StreamAutoClaimReply>(c)
                .await;
            match claim {
                Ok(r) => entries.extend(r.claimed.into_iter().map(Entry::from)),
                Err(e) => result = Err(e),
            }
        }
        if result.is_ok() && entries.is_empty() {
            let block = if cursor == ">" { BLOCK_MS } else { 0 };
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP").arg(&group).arg(&consumer).arg("COUNT").arg(BATCH);
            if block > 0 {
                cmd.arg("BLOCK").arg(block);
            }
            cmd.arg("STREAMS").arg(&key).arg(&cursor);
            match cmd.query_async::<Value>(c).await {
                Ok(reply) => {
                    read_reply(reply, &mut entries);
                    if cursor != ">" && entries.is_empty() {
                        cursor = ">".to_owned();
                    } else if cursor != ">" {
                        cursor = entries.last().map(|e| e.id.clone()).unwrap_or_else(|| ">".to_owned());
                    }
                }
                Err(e) => result = Err(e),
            }
        }
        if let Err(e) = result {
            if e.to_string().contains("NOGROUP") {
                let _ = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&key)
                    .arg(&group)
                    .arg("$")
                    .arg("MKSTREAM")
                    .query_async::<Value>(c)
                    .await;
            } else {
                conn = None;
                cursor = "0".to_owned();
            }
            if tx.send(vec![Err(broker(e))]).await.is_err() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        }
        backoff = Duration::from_millis(50);
        // A pending entry the stream trimmed (MAXLEN) before it was
        // acknowledged comes back with no fields: nothing is left to
        // deliver. It is acknowledged, so that it stops coming back, and
        // reported, rather than read as a foreign event `{}`.
        let (gone, entries): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(Entry::is_gone);
        let mut read: Vec<MqResult<Message>> = Vec::with_capacity(entries.len() + 1);
        if !gone.is_empty() {
            if let Some(c) = conn.as_mut() {
                let mut xack = redis::cmd("XACK");
                xack.arg(&key).arg(&group);
                for e in &gone {
                    xack.arg(&e.id);
                }
                let _ = xack.query_async::<Value>(c).await;
            }
            read.push(Err(MqError::Broker(format!(
                "redis: {} pending entries of {key} were trimmed before they were acknowledged",
                gone.len()
            ))));
        }
        // One item per read: one wake-up of the layer's reader, not one
        // per entry.
        read.extend(entries.into_iter().map(|e| Ok(to_message(&shared_key, &shared_group, e))));
        if !read.is_empty() && tx.send(read).await.is_err() {
            return;
        }
    }
}

impl MqAdapter for RedisAdapter {
    fn name(&self) -> &str {
        "redis"
    }

    fn publish<'a>(&'a self, topic: &'a str, message: Message) -> BoxFuture<'a, MqResult<()>> {
        Box::pin(async move { self.run::<Value>(&xadd(topic, &message)).await.map(|_| ()) })
    }

    /// One pipeline of `XADD`s: one round trip for the whole batch. A
    /// failure fails every message of the batch, though Redis may have
    /// added some of them: their retries arrive twice, and the receivers'
    /// de-duplication drops the repeats.
    fn publish_batch<'a>(
        &'a self,
        topic: &'a str,
        messages: Vec<Message>,
    ) -> BoxFuture<'a, Vec<MqResult<()>>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            for m in &messages {
                pipe.add_command(xadd(topic, m)).ignore();
            }
            let outcome = self.run_pipe(&pipe).await;
            messages.iter().map(|_| outcome.clone()).collect()
        })
    }

    fn subscribe<'a>(&'a self, pattern: &'a str, group: &'a str) -> BoxFuture<'a, MqResult<MessageStream>> {
        Box::pin(async move {
            if pattern.split('.').any(|s| s == "*" || s == ">") {
                return Err(MqError::Unsupported(format!(
                    "redis: stream keys have no wildcards ({pattern:?})"
                )));
            }
            let create =
                redis::cmd("XGROUP").arg("CREATE").arg(pattern).arg(group).arg("$").arg("MKSTREAM").clone();
            match self.run::<Value>(&create).await {
                Ok(_) => {}
                Err(e) if is_busygroup(&e) => {}
                Err(e) => return Err(e),
            }
            let (tx, rx) = mpsc::channel(2);
            tokio::spawn(read_loop(
                self.client.clone(),
                pattern.to_owned(),
                group.to_owned(),
                tx,
                self.closed.clone(),
                self.reclaim_idle,
            ));
            Ok(super::stream_of_reads(rx))
        })
    }

    fn ack<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, MqResult<()>> {
        Box::pin(async move {
            let Some(a) = message.ack.as_ref().and_then(|t| t.get::<RedisAck>()) else {
                return Err(MqError::Config("message was not received from this redis adapter".into()));
            };
            self.run::<Value>(redis::cmd("XACK").arg(&*a.key).arg(&*a.group).arg(&a.id)).await.map(|_| ())
        })
    }

    /// One `XACK` per stream and group, naming every id.
    fn ack_batch<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, MqResult<()>> {
        Box::pin(async move {
            let mut acks: Vec<&RedisAck> = Vec::with_capacity(messages.len());
            for m in messages {
                match m.ack.as_ref().and_then(|t| t.get::<RedisAck>()) {
                    Some(a) => acks.push(a),
                    None => {
                        return Err(MqError::Config(
                            "message was not received from this redis adapter".into(),
                        ))
                    }
                }
            }
            let mut first = Ok(());
            while let Some(head) = acks.first().copied() {
                let (same, rest): (Vec<&RedisAck>, Vec<&RedisAck>) =
                    acks.into_iter().partition(|a| a.key == head.key && a.group == head.group);
                acks = rest;
                let ids: Vec<&str> = same.iter().map(|a| a.id.as_str()).collect();
                let cmd = redis::cmd("XACK").arg(&*head.key).arg(&*head.group).arg(&ids).clone();
                if let Err(e) = self.run::<Value>(&cmd).await {
                    first = first.and(Err(e));
                }
            }
            first
        })
    }

    fn close(&self) -> BoxFuture<'_, MqResult<()>> {
        Box::pin(async move {
            self.closed.store(true, Ordering::Release);
            *self.conn.lock().await = None;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reclaim_idle_from_url() {
        let (url, idle) = reclaim_idle_of("redis://h:1/2").unwrap();
        assert_eq!((url.as_str(), idle), ("redis://h:1/2", RECLAIM_IDLE));
        let (url, idle) = reclaim_idle_of("redis://h:1?protocol=resp3&reclaim_idle_ms=250").unwrap();
        assert_eq!((url.as_str(), idle), ("redis://h:1?protocol=resp3", Duration::from_millis(250)));
        let (url, _) = reclaim_idle_of("redis://h:1?reclaim_idle_ms=9").unwrap();
        assert_eq!(url, "redis://h:1");
        for bad in ["redis://h:1?reclaim_idle_ms=0", "redis://h:1?reclaim_idle_ms=x"] {
            assert!(matches!(reclaim_idle_of(bad), Err(MqError::Config(_))), "{bad}");
        }
    }
}
