//! Settings: command-line flags over an optional TOML file over defaults.
//!
//! [`Options`] is both the clap parser and the TOML schema, so a flag and a
//! file key always share one name (`--batch-size` / `batch_size`). A flag
//! given on the command line wins over the file. [`Settings::resolve`]
//! validates the result once at start; nothing reads the options after that.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chronica::{Overflow, RetryPolicy};
use clap::Parser;
use serde::Deserialize;

use crate::policy::{self, RetryIn};
use crate::webhook::AllowedHost;

/// Flags of `chronica-hub`; every one may also be a key of the TOML file.
#[derive(Debug, Default, Clone, Parser, Deserialize)]
#[command(name = "chronica-hub", version, about = "The Chronica director as a network service")]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    /// TOML file with any of these settings (flags override it).
    #[arg(long, env = "CHRONICA_HUB_CONFIG")]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:7700).
    #[arg(long)]
    pub(crate) listen: Option<SocketAddr>,
    /// Capacity of each node's user lane, in events (default 65536).
    #[arg(long)]
    pub(crate) queue_capacity: Option<usize>,
    /// Capacity of each node's root lane (default 1024).
    #[arg(long)]
    pub(crate) root_capacity: Option<usize>,
    /// Most events per delivered batch (default 64).
    #[arg(long)]
    pub(crate) batch_size: Option<usize>,
    /// Overflow policy: drop_oldest (default), drop_newest or block.
    #[arg(long)]
    pub(crate) overflow: Option<String>,
    /// How long an emit waits under the block policy, in ms (default 1000).
    #[arg(long)]
    pub(crate) block_timeout_ms: Option<u64>,
    /// Delay before the first retry of a failed batch, in ms (default 100).
    #[arg(long)]
    pub(crate) retry_initial_ms: Option<u64>,
    /// Upper bound of the retry delay, in ms (default 5000).
    #[arg(long)]
    pub(crate) retry_max_ms: Option<u64>,
    /// Factor applied to the retry delay after each failure (default 2.0).
    #[arg(long)]
    pub(crate) retry_multiplier: Option<f64>,
    /// Relative random spread of each retry delay, 0 to 1 (default 0.1).
    #[arg(long)]
    pub(crate) retry_jitter: Option<f64>,
    /// Re-attempts before a batch is dead-lettered; 0 = retry forever (default).
    #[arg(long)]
    pub(crate) retry_max_retries: Option<u32>,
    /// Shape of the retry delays: exponential (default), linear or constant.
    #[arg(long)]
    pub(crate) retry_backoff: Option<String>,
    /// `false`: no re-attempt, a failed batch is dead-lettered at once
    /// (default true: retry by the policy above).
    #[arg(long, value_name = "BOOL")]
    pub(crate) retry: Option<bool>,
    /// Token carried by root events; in distributed mode it also signs the
    /// root events crossing the broker, so every hub there needs the same.
    #[arg(long, env = "CHRONICA_HUB_TRUST_TOKEN", hide_env_values = true)]
    pub(crate) trust_token: Option<String>,
    /// A bearer token accepted from clients (repeat for several).
    #[arg(long = "token", env = "CHRONICA_HUB_TOKENS", value_delimiter = ',', hide_env_values = true)]
    #[serde(default)]
    pub(crate) tokens: Vec<String>,
    /// A host webhook URLs may point to, as `host` or `host:port` (repeat);
    /// an IPv6 address bare or in brackets (`::1`, `[::1]:8443`).
    #[arg(long = "allow-host", value_delimiter = ',')]
    #[serde(default)]
    pub(crate) allow_hosts: Vec<String>,
    /// Largest accepted request body, in bytes (default 1048576).
    #[arg(long)]
    pub(crate) body_limit: Option<usize>,
    /// Timeout of one webhook POST, in ms (default 10000).
    #[arg(long)]
    pub(crate) webhook_timeout_ms: Option<u64>,
    /// How long a streaming node may take to acknowledge a batch, in ms (default 30000).
    #[arg(long)]
    pub(crate) ack_timeout_ms: Option<u64>,
    /// How long a connection may take to send a request's headers, in ms;
    /// an idle keep-alive connection gets as long for the next (default 10000).
    #[arg(long)]
    pub(crate) header_timeout_ms: Option<u64>,
    /// How long a request may take to send its whole body, in ms (default 30000).
    #[arg(long)]
    pub(crate) body_timeout_ms: Option<u64>,
    /// Most connections open at once; more are accepted and closed (default
    /// 1024, or less to stay 64 below the open-file limit).
    #[arg(long)]
    pub(crate) max_connections: Option<usize>,
    /// Most connections open at once from one remote IP address; more are
    /// accepted and closed. 0 = no limit (default 0: every client of a hub
    /// on loopback or behind a proxy shares one address).
    #[arg(long)]
    pub(crate) max_connections_per_address: Option<usize>,
    /// Announce joins and departures to the other nodes (default false). A
    /// switch: bare it means true; `--membership-events=false` (or a
    /// separate `true` / `false`) states it.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub(crate) membership_events: Option<bool>,
    /// Distributed mode: the broker URL several hubs share
    /// (`nats://HOST:PORT`, `redis://HOST:PORT`, `kafka://HOST:PORT` with the
    /// `kafka` feature, `memory://NAME` for tests in one process).
    #[arg(long)]
    pub(crate) adapter: Option<String>,
    /// This hub's name among the hubs sharing a broker (default: host, pid
    /// and a random suffix).
    #[arg(long)]
    pub(crate) instance_id: Option<String>,
    /// The broker topic the hubs share (default `chronica`).
    #[arg(long)]
    pub(crate) topic_prefix: Option<String>,
}

/// The validated settings the hub runs with.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) queue_capacity: usize,
    pub(crate) root_capacity: usize,
    pub(crate) batch_size: usize,
    pub(crate) overflow: Overflow,
    pub(crate) block_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) trust_token: String,
    pub(crate) tokens: Vec<String>,
    pub(crate) allow_hosts: Vec<AllowedHost>,
    pub(crate) body_limit: usize,
    pub(crate) webhook_timeout: Duration,
    pub(crate) ack_timeout: Duration,
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    /// As set; `slots::max_connections` fits the default to the open-file limit.
    pub(crate) max_connections: Option<usize>,
    /// `None`: no limit per address.
    pub(crate) max_connections_per_address: Option<usize>,
    pub(crate) membership_events: bool,
    /// Distributed mode: broker URL and fabric settings, when set.
    pub(crate) distributed: Option<(String, chronica::DistributedConfig)>,
}

impl Options {
    /// Fills every field not given as a flag from `file`.
    fn or(self, file: Options) -> Options {
        fn vec(a: Vec<String>, b: Vec<String>) -> Vec<String> {
            if a.is_empty() {
                b
            } else {
                a
            }
        }
        Options {
            config: self.config,
            listen: self.listen.or(file.listen),
            queue_capacity: self.queue_capacity.or(file.queue_capacity),
            root_capacity: self.root_capacity.or(file.root_capacity),
            batch_size: self.batch_size.or(file.batch_size),
            overflow: self.overflow.or(file.overflow),
            block_timeout_ms: self.block_timeout_ms.or(file.block_timeout_ms),
            retry_initial_ms: self.retry_initial_ms.or(file.retry_initial_ms),
            retry_max_ms: self.retry_max_ms.or(file.retry_max_ms),
            retry_multiplier: self.retry_multiplier.or(file.retry_multiplier),
            retry_jitter: self.retry_jitter.or(file.retry_jitter),
            retry_max_retries: self.retry_max_retries.or(file.retry_max_retries),
            retry_backoff: self.retry_backoff.or(file.retry_backoff),
            retry: self.retry.or(file.retry),
            trust_token: self.trust_token.or(file.trust_token),
            tokens: vec(self.tokens, file.tokens),
            allow_hosts: vec(self.allow_hosts, file.allow_hosts),
            body_limit: self.body_limit.or(file.body_limit),
            webhook_timeout_ms: self.webhook_timeout_ms.or(file.webhook_timeout_ms),
            ack_timeout_ms: self.ack_timeout_ms.or(file.ack_timeout_ms),
            header_timeout_ms: self.header_timeout_ms.or(file.header_timeout_ms),
            body_timeout_ms: self.body_timeout_ms.or(file.body_timeout_ms),
            max_connections: self.max_connections.or(file.max_connections),
            max_connections_per_address: self
                .max_connections_per_address
                .or(file.max_connections_per_address),
            membership_events: self.membership_events.or(file.membership_events),
            adapter: self.adapter.or(file.adapter),
            instance_id: self.instance_id.or(file.instance_id),
            topic_prefix: self.topic_prefix.or(file.topic_prefix),
        }
    }
}

impl Settings {
    /// Reads the TOML file named by `--config` (if any), merges the flags
    /// over it, and validates the result. The error text names the setting.
    pub(crate) fn resolve(flags: Options) -> Result<Settings, String> {
        let o = match &flags.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| format!("config {}: {e}", path.display()))?;
                let file: Options =
                    toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
                flags.or(file)
            }
            None => flags,
        };
        let distributed = match o.adapter {
            None => None,
            Some(url) => {
                let mut cfg = chronica::DistributedConfig::default();
                if let Some(id) = o.instance_id {
                    cfg.instance_id = id;
                }
                if let Some(prefix) = o.topic_prefix {
                    cfg.topic_prefix = prefix;
                }
                Some((url, cfg))
            }
        };
        let overflow = policy::overflow(o.overflow.as_deref().unwrap_or("drop_oldest"))?;
        let flags = RetryIn {
            backoff: o.retry_backoff,
            initial_ms: o.retry_initial_ms,
            max_ms: o.retry_max_ms,
            multiplier: o.retry_multiplier,
            jitter: o.retry_jitter,
            max_retries: o.retry_max_retries,
        };
        let mut retry = flags.over(&RetryPolicy::default())?;
        if o.retry == Some(false) {
            if let Some(n) = o.retry_max_retries {
                return Err(format!(
                    "retry = false (no re-attempt) contradicts retry_max_retries {n}: give one of them"
                ));
            }
            retry = policy::never(&retry);
        }
        let trust_token = o.trust_token.filter(|t| !t.is_empty()).ok_or(
            "trust_token is required (--trust-token or CHRONICA_HUB_TRUST_TOKEN): \
             root events carry it, and in distributed mode it signs them on the broker",
        )?;
        let tokens: Vec<String> = o.tokens.into_iter().filter(|t| !t.is_empty()).collect();
        if tokens.is_empty() {
            return Err(
                "at least one client bearer token is required (--token or CHRONICA_HUB_TOKENS)".into()
            );
        }
        let allow_hosts = o
            .allow_hosts
            .iter()
            .map(|e| AllowedHost::parse(e).map_err(|why| format!("allow_hosts entry {e:?}: {why}")))
            .collect::<Result<Vec<_>, _>>()?;
        let s = Settings {
            listen: o.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7700))),
            queue_capacity: o.queue_capacity.unwrap_or(65_536),
            root_capacity: o.root_capacity.unwrap_or(1_024),
            batch_size: o.batch_size.unwrap_or(64),
            overflow,
            block_timeout: Duration::from_millis(o.block_timeout_ms.unwrap_or(1_000)),
            retry,
            trust_token,
            tokens,
            allow_hosts,
            body_limit: o.body_limit.unwrap_or(1 << 20),
            webhook_timeout: Duration::from_millis(o.webhook_timeout_ms.unwrap_or(10_000)),
            ack_timeout: Duration::from_millis(o.ack_timeout_ms.unwrap_or(30_000)),
            header_timeout: Duration::from_millis(o.header_timeout_ms.unwrap_or(10_000)),
            body_timeout: Duration::from_millis(o.body_timeout_ms.unwrap_or(30_000)),
            max_connections: o.max_connections,
            max_connections_per_address: o.max_connections_per_address.filter(|&n| n > 0),
            membership_events: o.membership_events.unwrap_or(false),
            distributed,
        };
        for (name, v) in [
            ("queue_capacity", s.queue_capacity),
            ("root_capacity", s.root_capacity),
            ("batch_size", s.batch_size),
            ("body_limit", s.body_limit),
            ("max_connections", s.max_connections.unwrap_or(1)),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        // The engine's bound, refused here so that it stops the hub as a
        // bad setting (exit 2), not as a director that failed to start.
        for (name, v) in [("queue_capacity", s.queue_capacity), ("root_capacity", s.root_capacity)] {
            if v > chronica::MAX_CAPACITY {
                return Err(format!("{name} must be at most {}", chronica::MAX_CAPACITY));
            }
        }
        if let (Some(cap), Some(per)) = (s.max_connections, s.max_connections_per_address) {
            if per > cap {
                return Err(format!(
                    "max_connections_per_address {per} is more than max_connections {cap}, \
                     so it would never apply"
                ));
            }
        }
        for (name, d) in [
            ("webhook_timeout_ms", s.webhook_timeout),
            ("ack_timeout_ms", s.ack_timeout),
            ("header_timeout_ms", s.header_timeout),
            ("body_timeout_ms", s.body_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be at least 1"));
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Options {
        Options { trust_token: Some("t".into()), tokens: vec!["c".into()], ..Options::default() }
    }

    #[test]
    fn defaults_apply() {
        let s = Settings::resolve(base()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:7700");
        assert_eq!(s.batch_size, 64);
        assert_eq!(s.retry.max_retries, None);
        assert_eq!((s.header_timeout, s.max_connections), (Duration::from_secs(10), None));
        assert_eq!(s.max_connections_per_address, None);
        let off = Options { max_connections_per_address: Some(0), ..base() };
        assert_eq!(Settings::resolve(off).unwrap().max_connections_per_address, None, "0 is no limit");
    }

    #[test]
    fn flags_override_file() {
        let file: Options =
            toml::from_str("batch_size = 8\nqueue_capacity = 10\nallow_hosts = [\"A\"]").unwrap();
        let flags = Options { batch_size: Some(16), ..base() };
        let s = Settings::resolve(flags.or(file)).unwrap();
        assert_eq!((s.batch_size, s.queue_capacity), (16, 10));
        assert_eq!(s.allow_hosts, vec![AllowedHost::parse("a").unwrap()]);
        let bad = Options { allow_hosts: vec!["user@host".into()], ..base() };
        assert!(Settings::resolve(bad).unwrap_err().contains("allow_hosts entry \"user@host\""));
    }

    #[test]
    fn membership_events_is_a_switch_that_takes_an_optional_value() {
        let parse = |args: &[&str]| {
            let argv = ["chronica-hub"].iter().chain(args).copied();
            Options::try_parse_from(argv).map(|o| o.membership_events)
        };
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&["--membership-events"]).unwrap(), Some(true));
        assert_eq!(parse(&["--membership-events", "--batch-size", "2"]).unwrap(), Some(true));
        assert_eq!(parse(&["--membership-events=true"]).unwrap(), Some(true));
        assert_eq!(parse(&["--membership-events=false"]).unwrap(), Some(false));
        assert_eq!(parse(&["--membership-events", "false"]).unwrap(), Some(false));
        assert!(parse(&["--membership-events=maybe"]).is_err());
        let file: Options = toml::from_str("membership_events = true").unwrap();
        assert_eq!(file.membership_events, Some(true));
    }

    #[test]
    fn retry_backoff_and_retry_false_set_the_hubs_policy() {
        use chronica::Backoff;
        let file: Options = toml::from_str("retry_backoff = \"linear\"\nretry = false").unwrap();
        let s = Settings::resolve(base().or(file)).unwrap();
        assert_eq!((s.retry.backoff, s.retry.max_retries), (Backoff::Linear, Some(0)));
        let flags = Options { retry_backoff: Some("constant".into()), retry: Some(true), ..base() };
        let s = Settings::resolve(flags).unwrap();
        assert_eq!((s.retry.backoff, s.retry.max_retries), (Backoff::Constant, None));
        let zero = Options { retry_max_retries: Some(0), ..base() };
        assert_eq!(Settings::resolve(zero).unwrap().retry.max_retries, None, "0 is unlimited");
        let bad = Options { retry_backoff: Some("spiral".into()), ..base() };
        assert!(Settings::resolve(bad).unwrap_err().contains("retry backoff \"spiral\""));
        let both = Options { retry: Some(false), retry_max_retries: Some(3), ..base() };
        assert!(Settings::resolve(both).unwrap_err().contains("retry_max_retries 3"));
        // Constant backoff ignores the cap, as the engine does.
        let constant =
            Options { retry_backoff: Some("constant".into()), retry_initial_ms: Some(9_000), ..base() };
        assert!(Settings::resolve(constant).is_ok());
        let exponential = Options { retry_initial_ms: Some(9_000), ..base() };
        assert!(Settings::resolve(exponential).unwrap_err().contains("max_delay"));
        let parse = |args: &[&str]| {
            let argv = ["chronica-hub"].iter().chain(args).copied();
            Options::try_parse_from(argv).map(|o| o.retry)
        };
        assert_eq!(parse(&["--retry", "false"]).unwrap(), Some(false));
        assert!(parse(&["--retry", "maybe"]).is_err());
    }

    #[test]
    fn refusals_name_the_setting() {
        let no_token = Options { trust_token: None, ..base() };
        assert!(Settings::resolve(no_token).unwrap_err().contains("trust_token"));
        let adapter = Options { adapter: Some("nats://x".into()), instance_id: Some("h1".into()), ..base() };
        let (url, cfg) = Settings::resolve(adapter).unwrap().distributed.unwrap();
        assert_eq!((url.as_str(), cfg.instance_id.as_str()), ("nats://x", "h1"));
        let zero = Options { batch_size: Some(0), ..base() };
        assert!(Settings::resolve(zero).unwrap_err().contains("batch_size"));
        let never = Options { header_timeout_ms: Some(0), ..base() };
        assert!(Settings::resolve(never).unwrap_err().contains("header_timeout_ms"));
        let file: Options = toml::from_str("max_connections = 0").unwrap();
        assert!(Settings::resolve(base().or(file)).unwrap_err().contains("max_connections"));
        let over = Options { max_connections: Some(4), max_connections_per_address: Some(5), ..base() };
        assert!(Settings::resolve(over).unwrap_err().contains("max_connections_per_address 5"));
        let busy = Options { retry_initial_ms: Some(0), ..base() };
        assert!(Settings::resolve(busy).unwrap_err().contains("initial_delay"));
        assert!(toml::from_str::<Options>("bogus = 1").is_err());
    }
}
