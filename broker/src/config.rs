//! Broker configuration: command-line flags, `RILL_*` environment variables and a TOML file (`--config`),
//! in that order of precedence, over built-in defaults that work out of the box.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

use crate::limits;

/// Flags and environment variables. Every setting is optional here so that a value absent from both can
/// come from the TOML file, then from the default.
#[derive(Debug, Default, Parser, Deserialize)]
#[command(name = "rill-broker", version, about = "Rill message broker")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// TOML file with any of the settings below (keys as the flags, with `_` for `-`).
    #[arg(long, env = "RILL_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This node's id, unique in the cluster [default: 1].
    #[arg(long, env = "RILL_NODE_ID")]
    pub node_id: Option<u32>,
    /// Directory for the metadata log and partition logs [default: ./data].
    #[arg(long, env = "RILL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the gRPC server listens on [default: 127.0.0.1:9400].
    #[arg(long, env = "RILL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address clients are told to reach this node at [default: the listen address].
    #[arg(long, env = "RILL_ADVERTISED_ADDRESS")]
    pub advertised_address: Option<String>,
    /// Log filter in `RUST_LOG` syntax, e.g. `info,rill_storage=debug` [default: $RUST_LOG or info,openraft=warn].
    #[arg(long, env = "RILL_LOG")]
    pub log: Option<String>,
    /// Largest record batch accepted, in bytes [default: 8 MiB].
    #[arg(long, env = "RILL_BATCH_BYTES_MAX")]
    pub batch_bytes_max: Option<u64>,
    /// Largest request accepted, in bytes [default: 64 MiB].
    #[arg(long, env = "RILL_REQUEST_BYTES_MAX")]
    pub request_bytes_max: Option<u64>,
    /// Largest fetch response, in bytes [default: 32 MiB].
    #[arg(long, env = "RILL_FETCH_BYTES_MAX")]
    pub fetch_bytes_max: Option<u64>,
    /// Largest part of one partition in a fetch response, in bytes [default: 8 MiB].
    #[arg(long, env = "RILL_PARTITION_FETCH_BYTES_MAX")]
    pub partition_fetch_bytes_max: Option<u64>,
    /// How long `acks=all` waits when the request gives no timeout, in ms [default: 30000].
    #[arg(long, env = "RILL_PRODUCE_TIMEOUT_MS")]
    pub produce_timeout_ms: Option<u64>,
    /// How often logs checkpoint their recovery point, in ms [default: 5000].
    #[arg(long, env = "RILL_CHECKPOINT_INTERVAL_MS")]
    pub checkpoint_interval_ms: Option<u64>,
    /// How often retention and roll-by-age are checked, in ms [default: 30000].
    #[arg(long, env = "RILL_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// How long shutdown waits for in-flight requests, in ms [default: 30000].
    #[arg(long, env = "RILL_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// The controller voters, `ID@HOST:PORT,...`; each listed node is both broker and voter
    /// [default: this node alone, at its advertised address].
    #[arg(long, env = "RILL_CONTROLLER_VOTERS")]
    pub controller_voters: Option<String>,
    /// How often the broker heartbeats to the active controller, in ms [default: 500].
    #[arg(long, env = "RILL_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// A broker silent this long (ms) is fenced, and stops leading on its own [default: 3000].
    #[arg(long, env = "RILL_SESSION_TIMEOUT_MS")]
    pub session_timeout_ms: Option<u64>,
    /// An in-sync follower this far behind (in ms) leaves the ISR [default: 10000].
    #[arg(long, env = "RILL_REPLICA_LAG_MS_MAX")]
    pub replica_lag_ms_max: Option<u64>,
    /// Replication factor of topics created without one [default: 1].
    #[arg(long, env = "RILL_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<u32>,
    /// Partitions of the internal `__consumer_offsets` topic, fixed when it is first created [default: 8].
    #[arg(long, env = "RILL_OFFSETS_TOPIC_PARTITIONS")]
    pub offsets_topic_partitions: Option<u32>,
    /// Replication factor of `__consumer_offsets`, lowered to the live brokers at creation [default: 3].
    #[arg(long, env = "RILL_OFFSETS_TOPIC_REPLICATION_FACTOR")]
    pub offsets_topic_replication_factor: Option<u32>,
    /// Default topic settings, overridable per topic with `--config key=value` at creation.
    /// Segment size in bytes [default: 1 GiB] (topic key `segment.bytes`).
    #[arg(long, env = "RILL_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Roll a segment after this many ms [default: 7 days] (topic key `segment.ms`).
    #[arg(long, env = "RILL_SEGMENT_MS")]
    pub segment_ms: Option<u64>,
    /// Delete segments older than this, in ms; -1 keeps them forever [default: 7 days] (`retention.ms`).
    #[arg(long, env = "RILL_RETENTION_MS", allow_hyphen_values = true)]
    pub retention_ms: Option<i64>,
    /// Keep at most this many bytes per partition; -1 for no limit [default: -1] (`retention.bytes`).
    #[arg(long, env = "RILL_RETENTION_BYTES", allow_hyphen_values = true)]
    pub retention_bytes: Option<i64>,
    /// Ask the OS to drop a partition's cached pages more than this many bytes behind a segment's end once
    /// they are on disk; -1 keeps everything cached [default: -1] (topic key `cache.window.bytes`).
    #[arg(long, env = "RILL_CACHE_WINDOW_BYTES", allow_hyphen_values = true)]
    pub cache_window_bytes: Option<i64>,
    /// `fsync`, `interval` or `os` [default: fsync] (topic key `durability`).
    #[arg(long, env = "RILL_DURABILITY")]
    pub durability: Option<String>,
    /// fsync period of the `interval` policy, in ms [default: 1000] (topic key `flush.ms`).
    #[arg(long, env = "RILL_FLUSH_MS")]
    pub flush_ms: Option<u64>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: u32,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertised_address: String,
    pub log_filter: Option<String>,
    pub batch_bytes_max: u64,
    pub request_bytes_max: u64,
    pub fetch_bytes_max: u64,
    pub partition_fetch_bytes_max: u64,
    pub produce_timeout_ms: u64,
    pub checkpoint_interval_ms: u64,
    pub retention_check_interval_ms: u64,
    pub shutdown_timeout_ms: u64,
    pub default_replication_factor: u32,
    pub replica_lag_ms_max: u64,
    /// Controller voters by node id, with the address each is reached at.
    pub controller_voters: std::collections::BTreeMap<u32, String>,
    pub heartbeat_interval_ms: u64,
    pub session_timeout_ms: u64,
    pub offsets_topic_partitions: u32,
    pub offsets_topic_replication_factor: u32,
    /// Topic settings that apply where a topic sets none, as `key=value` in topic-config syntax.
    pub topic_defaults: std::collections::BTreeMap<String, String>,
}

impl Args {
    /// Fills every setting unset by flags or environment from `file`.
    fn or_file(self, file: Args) -> Args {
        macro_rules! pick {
            ($($field:ident),*) => { Args { config: self.config, $($field: self.$field.or(file.$field)),* } };
        }
        pick!(
            node_id,
            data_dir,
            listen,
            advertised_address,
            log,
            batch_bytes_max,
            request_bytes_max,
            fetch_bytes_max,
            partition_fetch_bytes_max,
            produce_timeout_ms,
            checkpoint_interval_ms,
            retention_check_interval_ms,
            shutdown_timeout_ms,
            default_replication_factor,
            replica_lag_ms_max,
            controller_voters,
            heartbeat_interval_ms,
            session_timeout_ms,
            offsets_topic_partitions,
            offsets_topic_replication_factor,
            segment_bytes,
            segment_ms,
            retention_ms,
            retention_bytes,
            cache_window_bytes,
            durability,
            flush_ms
        )
    }
}

/// Parses `ID@HOST:PORT,ID@HOST:PORT,...`.
fn parse_voters(list: &str) -> anyhow::Result<std::collections::BTreeMap<u32, String>> {
    let mut voters = std::collections::BTreeMap::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, address) =
            item.split_once('@').ok_or_else(|| anyhow::anyhow!("controller voter '{item}' is not ID@HOST:PORT"))?;
        let id: u32 = id.parse().map_err(|_| anyhow::anyhow!("controller voter '{item}': '{id}' is not a node id"))?;
        anyhow::ensure!(id >= 1, "controller voter '{item}': node ids start at 1");
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("controller voter '{item}': '{address}' has no port"))?;
        anyhow::ensure!(!host.is_empty() && port.parse::<u16>().is_ok(), "controller voter '{item}': bad address");
        anyhow::ensure!(voters.insert(id, address.to_string()).is_none(), "controller voter {id} listed twice");
    }
    anyhow::ensure!(!voters.is_empty(), "--controller-voters names no voter");
    Ok(voters)
}

/// The listen address, unless it is a wildcard (0.0.0.0 or ::), which no client can connect to: then this
/// machine's host name with the listen port, as Kafka advertises its canonical host name.
fn default_advertised_address(listen: SocketAddr) -> String {
    if !listen.ip().is_unspecified() {
        return listen.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}:{}", listen.port())
}

fn read_file(path: &Path) -> anyhow::Result<Args> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
}

impl BrokerConfig {
    /// Resolves flags and environment, then the TOML file they name, then defaults; checks every value.
    pub fn resolve(args: Args) -> anyhow::Result<BrokerConfig> {
        let args = match &args.config {
            Some(path) => {
                let file = read_file(path)?;
                args.or_file(file)
            }
            None => args,
        };
        let listen = args.listen.unwrap_or_else(|| "127.0.0.1:9400".parse().expect("valid default"));
        let mut topic_defaults = std::collections::BTreeMap::new();
        let mut set = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                topic_defaults.insert(key.to_string(), v);
            }
        };
        set("segment.bytes", args.segment_bytes.map(|v| v.to_string()));
        set("segment.ms", args.segment_ms.map(|v| v.to_string()));
        set("retention.ms", args.retention_ms.map(|v| v.to_string()));
        set("retention.bytes", args.retention_bytes.map(|v| v.to_string()));
        set("cache.window.bytes", args.cache_window_bytes.map(|v| v.to_string()));
        set("durability", args.durability.clone());
        set("flush.ms", args.flush_ms.map(|v| v.to_string()));
        let node_id = args.node_id.unwrap_or(1);
        let advertised_address = args.advertised_address.unwrap_or_else(|| default_advertised_address(listen));
        let controller_voters = match &args.controller_voters {
            Some(list) => parse_voters(list)?,
            None => [(node_id, advertised_address.clone())].into(),
        };
        let config = BrokerConfig {
            node_id,
            data_dir: args.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
            listen,
            advertised_address,
            log_filter: args.log,
            batch_bytes_max: args.batch_bytes_max.unwrap_or(limits::BATCH_BYTES_MAX_DEFAULT),
            request_bytes_max: args.request_bytes_max.unwrap_or(limits::REQUEST_BYTES_MAX_DEFAULT),
            fetch_bytes_max: args.fetch_bytes_max.unwrap_or(limits::FETCH_BYTES_MAX_DEFAULT),
            partition_fetch_bytes_max: args
                .partition_fetch_bytes_max
                .unwrap_or(limits::PARTITION_FETCH_BYTES_MAX_DEFAULT),
            produce_timeout_ms: args.produce_timeout_ms.unwrap_or(limits::PRODUCE_TIMEOUT_MS_DEFAULT),
            checkpoint_interval_ms: args.checkpoint_interval_ms.unwrap_or(limits::CHECKPOINT_INTERVAL_MS_DEFAULT),
            retention_check_interval_ms: args
                .retention_check_interval_ms
                .unwrap_or(limits::RETENTION_CHECK_INTERVAL_MS_DEFAULT),
            shutdown_timeout_ms: args.shutdown_timeout_ms.unwrap_or(limits::SHUTDOWN_TIMEOUT_MS_DEFAULT),
            default_replication_factor: args.default_replication_factor.unwrap_or(1),
            replica_lag_ms_max: args.replica_lag_ms_max.unwrap_or(limits::REPLICA_LAG_MS_MAX_DEFAULT),
            controller_voters,
            heartbeat_interval_ms: args.heartbeat_interval_ms.unwrap_or(limits::HEARTBEAT_INTERVAL_MS_DEFAULT),
            session_timeout_ms: args.session_timeout_ms.unwrap_or(limits::SESSION_TIMEOUT_MS_DEFAULT),
            offsets_topic_partitions: args.offsets_topic_partitions.unwrap_or(limits::OFFSETS_TOPIC_PARTITIONS_DEFAULT),
            offsets_topic_replication_factor: args
                .offsets_topic_replication_factor
                .unwrap_or(limits::OFFSETS_TOPIC_REPLICATION_FACTOR_DEFAULT),
            topic_defaults,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.batch_bytes_max >= 1024, "batch-bytes-max must be at least 1024");
        anyhow::ensure!(
            self.request_bytes_max >= self.batch_bytes_max,
            "request-bytes-max ({}) must be at least batch-bytes-max ({})",
            self.request_bytes_max,
            self.batch_bytes_max
        );
        anyhow::ensure!(
            self.partition_fetch_bytes_max >= self.batch_bytes_max,
            "partition-fetch-bytes-max ({}) must be at least batch-bytes-max ({}) so every stored batch can be fetched",
            self.partition_fetch_bytes_max,
            self.batch_bytes_max
        );
        anyhow::ensure!(
            self.fetch_bytes_max >= self.partition_fetch_bytes_max,
            "fetch-bytes-max must be at least partition-fetch-bytes-max"
        );
        anyhow::ensure!(self.default_replication_factor >= 1, "default-replication-factor must be at least 1");
        anyhow::ensure!(
            (1..=limits::TOPIC_PARTITIONS_MAX).contains(&self.offsets_topic_partitions),
            "offsets-topic-partitions must be between 1 and {}",
            limits::TOPIC_PARTITIONS_MAX
        );
        anyhow::ensure!(
            self.offsets_topic_replication_factor >= 1,
            "offsets-topic-replication-factor must be at least 1"
        );
        anyhow::ensure!(self.replica_lag_ms_max > 0, "replica-lag-ms-max must be positive");
        anyhow::ensure!(self.node_id >= 1, "node-id must be at least 1 (0 means \"no leader\" in metadata)");
        anyhow::ensure!(
            self.controller_voters.contains_key(&self.node_id),
            "node {} is not among the controller voters {:?}: every broker is a controller voter for now",
            self.node_id,
            self.controller_voters
        );
        anyhow::ensure!(self.heartbeat_interval_ms > 0, "heartbeat-interval-ms must be positive");
        anyhow::ensure!(
            self.session_timeout_ms >= 2 * self.heartbeat_interval_ms,
            "session-timeout-ms ({}) must be at least twice heartbeat-interval-ms ({})",
            self.session_timeout_ms,
            self.heartbeat_interval_ms
        );
        anyhow::ensure!(self.checkpoint_interval_ms > 0, "checkpoint-interval-ms must be positive");
        anyhow::ensure!(self.retention_check_interval_ms > 0, "retention-check-interval-ms must be positive");
        // The defaults must themselves be a valid topic configuration.
        crate::topic_config::TopicConfig::parse(&self.topic_defaults, &Default::default(), self.batch_bytes_max)
            .map_err(|e| anyhow::anyhow!("invalid topic default: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_out_of_the_box() {
        let c = BrokerConfig::resolve(Args::default()).unwrap();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:9400");
        assert_eq!(c.advertised_address, "127.0.0.1:9400");
    }

    #[test]
    fn a_wildcard_listen_address_is_not_advertised() {
        let args = Args::parse_from(["rill-broker", "--listen", "0.0.0.0:9401"]);
        let c = BrokerConfig::resolve(args).unwrap();
        assert!(!c.advertised_address.starts_with("0.0.0.0"), "{}", c.advertised_address);
        assert!(c.advertised_address.ends_with(":9401"));
    }

    #[test]
    fn controller_voters_parse_and_default_to_this_node() {
        let c = BrokerConfig::resolve(Args::parse_from(["rill-broker", "--node-id", "2"])).unwrap();
        assert_eq!(c.controller_voters, [(2, "127.0.0.1:9400".to_string())].into());
        let args = Args::parse_from(["rill-broker", "--node-id", "2", "--controller-voters", "1@a:1,2@b:2,3@c:3"]);
        let c = BrokerConfig::resolve(args).unwrap();
        assert_eq!(c.controller_voters.len(), 3);
        for bad in ["1@a:1,1@b:2", "x@a:1", "2@nohost", "1@a:1"] {
            let args = Args::parse_from(["rill-broker", "--node-id", "2", "--controller-voters", bad]);
            assert!(BrokerConfig::resolve(args).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rill.toml");
        std::fs::write(&path, "node_id = 7\nlisten = \"127.0.0.1:9999\"\ndurability = \"os\"\n").unwrap();
        let args = Args::parse_from(["rill-broker", "--config", path.to_str().unwrap(), "--node-id", "3"]);
        let c = BrokerConfig::resolve(args).unwrap();
        assert_eq!(c.node_id, 3, "flag wins over file");
        assert_eq!(c.listen.to_string(), "127.0.0.1:9999", "file wins over default");
        assert_eq!(c.topic_defaults.get("durability").map(String::as_str), Some("os"));
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rill.toml");
        std::fs::write(&path, "node_idd = 7\n").unwrap();
        let args = Args::parse_from(["rill-broker", "--config", path.to_str().unwrap()]);
        let err = BrokerConfig::resolve(args).unwrap_err().to_string();
        assert!(err.contains("node_idd"), "{err}");
        let args = Args::parse_from(["rill-broker", "--durability", "sometimes"]);
        assert!(BrokerConfig::resolve(args).unwrap_err().to_string().contains("durability"));
    }
}
