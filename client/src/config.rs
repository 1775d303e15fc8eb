//! Client, producer and consumer settings, with their defaults and the reason for each.

use std::time::Duration;

use rill_proto::Compression;

use crate::error::{Error, Result};
use crate::tls::TlsConfig;

/// The address the CLI and [`ClientConfig::default`] use when none is given.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9400";

/// How to reach the cluster and how patient to be with it. Shared by [`Admin`](crate::Admin),
/// [`Producer`](crate::Producer) and [`Consumer`](crate::Consumer).
///
/// # Examples
///
/// ```
/// use rill_client::ClientConfig;
///
/// let config = ClientConfig::new("10.0.0.1:9400,10.0.0.2:9400").unwrap();
/// assert_eq!(config.bootstrap.len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` addresses to ask for metadata first; any one reachable broker is enough.
    pub bootstrap: Vec<String>,
    /// Giving up on a TCP + HTTP/2 connection attempt. Short, so a dead bootstrap address is skipped quickly.
    pub connect_timeout_ms: u64,
    /// Deadline of every RPC, on top of any server-side wait the request asks for (long-poll fetch).
    pub request_timeout_ms: u64,
    /// HTTP/2 ping interval; detects a silently dead peer (half-open TCP after a host crash).
    pub keepalive_interval_ms: u64,
    /// How long to wait for a ping answer before the connection is declared dead.
    pub keepalive_timeout_ms: u64,
    /// Pause between retries of a retriable failure, so a restarting broker is not hammered.
    pub retry_backoff_ms: u64,
    /// Cached metadata older than this is fetched again even without an error, to notice new leaders.
    pub metadata_max_age_ms: u64,
    /// TLS towards every broker; `None` for plaintext (a broker started without `--tls-cert`).
    pub tls: Option<TlsConfig>,
    /// A SCRAM login made when connecting; every request then carries its session token. `None` acts as
    /// the TLS client certificate's principal, or anonymously.
    pub sasl: Option<SaslConfig>,
    /// Names this client to the brokers (the `rill-client-id` request metadata), for client-id quotas;
    /// `None` sends none.
    pub client_id: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap: vec![DEFAULT_BOOTSTRAP.to_owned()],
            connect_timeout_ms: 3_000,
            request_timeout_ms: 30_000,
            keepalive_interval_ms: 10_000,
            keepalive_timeout_ms: 5_000,
            retry_backoff_ms: 100,
            metadata_max_age_ms: 300_000,
            tls: None,
            sasl: None,
            client_id: None,
        }
    }
}

impl ClientConfig {
    /// A default configuration with the bootstrap list `host:port[,host:port...]`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the list is empty or an entry is not `host:port`.
    pub fn new(bootstrap: &str) -> Result<ClientConfig> {
        Ok(ClientConfig { bootstrap: parse_bootstrap(bootstrap)?, ..ClientConfig::default() })
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub(crate) fn retry_backoff(&self) -> Duration {
        Duration::from_millis(self.retry_backoff_ms)
    }
}

/// Splits `host:port[,host:port...]`, rejecting entries without a numeric port.
pub fn parse_bootstrap(list: &str) -> Result<Vec<String>> {
    let addresses: Vec<String> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if addresses.is_empty() {
        return Err(Error::Config("the bootstrap list is empty".into()));
    }
    for address in &addresses {
        let valid = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
        if !valid {
            return Err(Error::Config(format!("bootstrap address '{address}' is not host:port")));
        }
    }
    Ok(addresses)
}

/// When the broker acknowledges a produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Once every in-sync replica holds the records durably. Nothing acknowledged is lost while one
    /// in-sync replica survives.
    #[default]
    All,
    /// Once the leader appended the records; lost if the leader fails before followers copy them.
    Leader,
    /// The broker answers without waiting for the append; offsets in the result are not meaningful.
    None,
}

impl Acks {
    pub(crate) fn to_proto(self) -> rill_proto::v1::Acks {
        match self {
            Acks::All => rill_proto::v1::Acks::All,
            Acks::Leader => rill_proto::v1::Acks::Leader,
            Acks::None => rill_proto::v1::Acks::None,
        }
    }
}

/// Producer batching, pipelining and delivery settings.
///
/// # Examples
///
/// ```
/// use rill_client::{Acks, ProducerConfig};
///
/// // Acknowledged by the leader alone, so without idempotence (which needs acks=all).
/// let config = ProducerConfig { linger_ms: 20, acks: Acks::Leader, idempotence: false, ..ProducerConfig::default() };
/// assert!(config.validate().is_ok());
/// assert_eq!(config.batch_bytes_max, 1024 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How long a non-full batch waits for more records. A few ms of latency buys much larger batches.
    pub linger_ms: u64,
    /// A batch is sent once it reaches this size; a record larger than this is rejected.
    pub batch_bytes_max: usize,
    /// Durability awaited before a record's delivery future resolves.
    pub acks: Acks,
    /// Deadline of one produce request, also passed to the broker as its replication wait.
    pub request_timeout_ms: u64,
    /// A record fails if not acknowledged this long after `send`, retries included.
    pub delivery_timeout_ms: u64,
    /// Pause before a failed batch is sent again.
    pub retry_backoff_ms: u64,
    /// Produce requests in flight to one broker at once. A partition has at most 5 batches in flight with
    /// idempotence (the broker orders them by sequence) and 1 without (which keeps its order); this bounds
    /// the pipelining across partitions.
    pub inflight_requests_max: usize,
    /// Bytes of records buffered before `send` waits; bounds memory when the broker is slower than the caller.
    pub buffer_bytes_max: usize,
    /// Upper bound on one produce request; kept below tonic's default 4 MiB message limit.
    pub request_bytes_max: usize,
    /// Exactly-once appends: the producer takes a cluster-unique id, numbers each batch once, and the broker
    /// drops a retried batch it already holds and refuses one out of order. Needs `acks = All`. On by default.
    pub idempotence: bool,
    /// The codec each batch's records are compressed with when it is sealed (none by default). A batch is
    /// still filled up to `batch_bytes_max` of uncompressed records, so compression shrinks what is sent and
    /// stored but not how many records a batch holds; records that do not shrink are sent uncompressed.
    pub compression: Compression,
    /// Take over an existing producer id, given with its current epoch: the cluster grants the next epoch and
    /// every producer still writing with the older one is fenced (`Error::ProducerFenced`). `None` asks for a
    /// new id. Only with `idempotence`.
    pub take_over_producer: Option<(i64, i16)>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger_ms: 5,
            batch_bytes_max: 1024 * 1024,
            acks: Acks::All,
            request_timeout_ms: 30_000,
            delivery_timeout_ms: 120_000,
            retry_backoff_ms: 100,
            inflight_requests_max: 5,
            buffer_bytes_max: 32 * 1024 * 1024,
            request_bytes_max: 3 * 1024 * 1024,
            idempotence: true,
            compression: Compression::None,
            take_over_producer: None,
        }
    }
}

impl ProducerConfig {
    /// Checks the relations between the limits.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first inconsistent setting.
    pub fn validate(&self) -> Result<()> {
        if self.batch_bytes_max < rill_proto::batch::BATCH_HEADER_BYTES + 64 {
            return Err(Error::Config(format!("batch_bytes_max {} is too small", self.batch_bytes_max)));
        }
        if self.buffer_bytes_max < self.batch_bytes_max {
            return Err(Error::Config("buffer_bytes_max must be at least batch_bytes_max".into()));
        }
        if self.request_bytes_max < self.batch_bytes_max {
            return Err(Error::Config("request_bytes_max must be at least batch_bytes_max".into()));
        }
        if self.inflight_requests_max == 0 {
            return Err(Error::Config("inflight_requests_max must be at least 1".into()));
        }
        if self.idempotence && self.acks != Acks::All {
            return Err(Error::Config(
                "idempotence needs acks=all (a batch acknowledged by fewer replicas can be lost and its sequence \
                 with it); set acks to All or turn idempotence off"
                    .into(),
            ));
        }
        if self.take_over_producer.is_some() && !self.idempotence {
            return Err(Error::Config("take_over_producer needs idempotence".into()));
        }
        if self.request_timeout_ms == 0 || self.delivery_timeout_ms < self.request_timeout_ms {
            return Err(Error::Config("delivery_timeout_ms must be at least request_timeout_ms (> 0)".into()));
        }
        Ok(())
    }
}

/// Where a consumer starts in a partition it has no position for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// At the high watermark: only records written from now on (Kafka's default).
    #[default]
    Latest,
    /// At the log start offset: everything still retained.
    Earliest,
}

/// Consumer fetch settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Long-poll: how long the broker may hold a fetch waiting for `fetch_min_bytes`.
    pub fetch_max_wait_ms: u32,
    /// The broker answers as soon as this many bytes are available.
    pub fetch_min_bytes: u32,
    /// Bytes per partition per fetch; the broker still returns one whole batch if it is larger, and caps this
    /// at its own `--partition-fetch-bytes-max` (8 MiB by default). A catching-up consumer reads about this
    /// much per round trip: 4 MiB read a 2 GiB backlog about twice as fast as 1 MiB (docs/PERFORMANCE.md).
    pub partition_fetch_bytes_max: u32,
    /// Bytes per fetch response, across partitions (at most the client's 64 MiB response limit).
    pub fetch_bytes_max: u32,
    /// Start position of a partition assigned without a `seek`, or, in a group, without a committed offset.
    pub offset_reset: OffsetReset,
    /// The consumer group [`Consumer::subscribe`](crate::Consumer::subscribe) joins; `None` for a consumer of
    /// explicitly assigned partitions.
    pub group_id: Option<String>,
    /// Names this consumer in `rill group describe`.
    pub client_id: String,
    /// The coordinator removes a member it has not heard from for this long, and moves its partitions.
    pub session_timeout_ms: u64,
    /// How long the consumer may keep partitions taken from it (until its next poll) before it is removed.
    pub rebalance_timeout_ms: u64,
    /// How often the member heartbeats; well below `session_timeout_ms`.
    pub heartbeat_interval_ms: u64,
    /// Commit the offsets of records handed out every `auto_commit_interval_ms`, and before partitions are
    /// given up (at-least-once). Without it, offsets are committed only by [`Consumer::commit`](crate::Consumer::commit).
    pub enable_auto_commit: bool,
    pub auto_commit_interval_ms: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            fetch_max_wait_ms: 500,
            fetch_min_bytes: 1,
            partition_fetch_bytes_max: 4 * 1024 * 1024,
            fetch_bytes_max: 16 * 1024 * 1024,
            offset_reset: OffsetReset::Latest,
            group_id: None,
            client_id: "rill-consumer".to_owned(),
            // Kafka's defaults are 45 s and 3 s; a Rill member heartbeats from its own task, so a shorter session
            // moves a crashed consumer's partitions sooner without risking removal during a slow poll loop.
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            heartbeat_interval_ms: 1_000,
            enable_auto_commit: true,
            auto_commit_interval_ms: 5_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_list_is_split_and_checked() {
        assert_eq!(parse_bootstrap("a:1, b:2").unwrap(), vec!["a:1", "b:2"]);
        assert_eq!(parse_bootstrap("[::1]:9400").unwrap(), vec!["[::1]:9400"]);
        assert!(parse_bootstrap("").is_err());
        assert!(parse_bootstrap("localhost").is_err());
        assert!(parse_bootstrap("localhost:http").is_err());
        assert!(parse_bootstrap(":9400").is_err());
    }

    #[test]
    fn default_producer_config_is_consistent() {
        ProducerConfig::default().validate().unwrap();
        let bad = ProducerConfig { buffer_bytes_max: 10, ..ProducerConfig::default() };
        assert!(bad.validate().is_err());
        let leader_acks = ProducerConfig { acks: Acks::Leader, ..ProducerConfig::default() };
        assert!(leader_acks.validate().unwrap_err().to_string().contains("idempotence needs acks=all"));
        assert!(ProducerConfig { idempotence: false, ..leader_acks }.validate().is_ok());
    }
}

/// A user name and password for a SCRAM login (RFC 5802); the password never crosses the wire, only proofs.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslConfig {
    pub user: String,
    pub password: String,
    pub mechanism: rill_proto::scram::Mechanism,
}

impl std::fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, not even in a debug print of the configuration.
        f.debug_struct("SaslConfig").field("user", &self.user).field("mechanism", &self.mechanism).finish()
    }
}
