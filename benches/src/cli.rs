//! Command-line surface of `rill-bench` (clap derive). Every tunable is an `Option` here, so that
//! `settings.rs` can tell a flag the user typed (which wins) from one a preset or the default supplies.

use clap::{Parser, Subcommand, ValueEnum};
use rill_client::{Compression, DEFAULT_BOOTSTRAP};

/// Load generator and latency meter for a running Rill cluster.
#[derive(Debug, Parser)]
#[command(
    name = "rill-bench",
    version,
    about = "Rill throughput and latency benchmark: produce, consume, or both at once (e2e)",
    after_help = "Presets (--preset NAME) reproduce the standard runs of docs/PERFORMANCE.md; explicit flags \
                  override a preset's values.\n  fsync-1k         produce, 1 producer, 1 partition, 1 KiB, acks=all, \
                  durability=fsync\n  os-1k            as fsync-1k with durability=os\n  small-100b       as \
                  fsync-1k with 100-byte records\n  consume-backlog  fill a 2 GiB backlog (untimed), then time \
                  1 consumer reading it\n  e2e-half         e2e latency of fsync-1k (linger 0) at a fixed rate, half of \
                  fsync-1k's peak measured on the reference machine"
)]
pub struct Cli {
    /// What to run; optional when --preset names the scenario.
    #[command(subcommand)]
    pub command: Option<ScenarioCommand>,

    #[command(flatten)]
    pub options: RunOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum ScenarioCommand {
    /// Producers only: throughput and send-to-acknowledgement latency.
    Produce,
    /// Consumers only, reading what the topic holds (or a backlog filled first with --backlog-bytes).
    Consume,
    /// Producers and consumers together: adds latency from send time to receipt by a consumer.
    E2e,
}

/// Options shared by every scenario. Defaults are applied in `settings.rs`, after the preset.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunOptions {
    /// Brokers to contact first [default: 127.0.0.1:9400].
    #[arg(long, global = true, env = "RILL_BOOTSTRAP", value_name = "HOST:PORT[,HOST:PORT...]")]
    pub bootstrap: Option<String>,

    /// PEM CA bundle to verify TLS brokers against; any `--tls-*` option turns TLS on.
    #[arg(long, global = true, env = "RILL_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// PEM client certificate, for brokers that ask for one.
    #[arg(long, global = true, env = "RILL_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, global = true, env = "RILL_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<std::path::PathBuf>,

    /// A standard run; see the list below. Flags given explicitly override its values.
    #[arg(long, global = true, value_enum)]
    pub preset: Option<PresetName>,

    /// Topic to use, created if missing [default: rill-bench, or the preset's own topic].
    #[arg(long, global = true)]
    pub topic: Option<String>,

    /// Partitions of a topic this run creates [default: 1].
    #[arg(long, global = true)]
    pub partitions: Option<u32>,

    /// Replication factor of a topic this run creates [default: the broker's].
    #[arg(long, global = true)]
    pub replication_factor: Option<u32>,

    /// Topic setting for a topic this run creates, e.g. durability=os; repeatable.
    #[arg(long = "topic-config", global = true, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub topic_config: Vec<(String, String)>,

    /// Measured messages to send (produce, e2e) or read (consume), after the warm-up.
    #[arg(long, global = true, conflicts_with = "duration")]
    pub messages: Option<u64>,

    /// Measured seconds to run, after the warm-up [default: 10 for produce and e2e; consume reads the backlog].
    #[arg(long, global = true, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Seconds of load before measuring starts, excluded from every figure [default: 0].
    #[arg(long, global = true, value_name = "SECS")]
    pub warmup: Option<f64>,

    /// Bytes of each record's value [default: 1024].
    #[arg(long, global = true, value_name = "BYTES")]
    pub message_size: Option<usize>,

    /// Concurrent producers, each with its own connection and buffer [default: 1].
    #[arg(long, global = true)]
    pub producers: Option<usize>,

    /// Concurrent consumers, sharing the partitions round-robin [default: 1].
    #[arg(long, global = true)]
    pub consumers: Option<usize>,

    /// Producer batch size limit in bytes [default: the client's, 1 MiB].
    #[arg(long, global = true, value_name = "BYTES")]
    pub batch_bytes: Option<usize>,

    /// How long a producer waits to fill a batch, in ms [default: the client's, 5].
    #[arg(long, global = true, value_name = "MS")]
    pub linger_ms: Option<u64>,

    /// Acknowledgement awaited per batch [default: all].
    #[arg(long, global = true, value_enum)]
    pub acks: Option<AcksArg>,

    /// Idempotent producers: exactly-once appends, up to 5 batches in flight per partition [default: on with
    /// --acks all, else off].
    #[arg(long, global = true, value_enum)]
    pub idempotence: Option<OnOff>,

    /// Codec producers compress batches with: none, gzip, snappy, lz4 or zstd [default: none]. Every record
    /// of a run carries the same value, so the ratio is far better than real data gives.
    #[arg(long, global = true)]
    pub compression: Option<Compression>,

    /// Total send rate across producers in messages/s, open loop (latency counts from the scheduled send
    /// time); 0 sends as fast as acknowledgements and buffers allow [default: 0].
    #[arg(long, global = true, value_name = "MSGS_PER_SEC")]
    pub rate: Option<u64>,

    /// How records are keyed: none (the client's sticky partitioning), round-robin (keys cycling over every
    /// partition in turn), random (uniform random 8-byte keys) [default: none].
    #[arg(long, global = true, value_enum)]
    pub key_distribution: Option<KeyDistribution>,

    /// consume: first fill the topic (untimed) until it holds this many bytes of values [default: 0].
    #[arg(long, global = true, value_name = "BYTES")]
    pub backlog_bytes: Option<u64>,

    /// Keep a topic this run created; by default it is deleted at the end to free the disk.
    #[arg(long, global = true)]
    pub keep_topic: bool,

    /// Print one JSON object instead of the table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresetName {
    #[value(name = "fsync-1k")]
    Fsync1k,
    #[value(name = "os-1k")]
    Os1k,
    #[value(name = "small-100b")]
    Small100b,
    #[value(name = "consume-backlog")]
    ConsumeBacklog,
    #[value(name = "e2e-half")]
    E2eHalf,
}

impl PresetName {
    pub fn as_str(self) -> &'static str {
        match self {
            PresetName::Fsync1k => "fsync-1k",
            PresetName::Os1k => "os-1k",
            PresetName::Small100b => "small-100b",
            PresetName::ConsumeBacklog => "consume-backlog",
            PresetName::E2eHalf => "e2e-half",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    None,
    Leader,
    All,
}

impl From<AcksArg> for rill_client::Acks {
    fn from(acks: AcksArg) -> Self {
        match acks {
            AcksArg::None => rill_client::Acks::None,
            AcksArg::Leader => rill_client::Acks::Leader,
            AcksArg::All => rill_client::Acks::All,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyDistribution {
    None,
    RoundRobin,
    Random,
}

/// The default bootstrap list, re-exported so settings and help agree.
pub const BOOTSTRAP_DEFAULT: &str = DEFAULT_BOOTSTRAP;

/// Parses `key=value`; both sides must be non-empty.
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() && !value.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_pairs_need_both_sides() {
        assert_eq!(parse_key_value("durability=os").unwrap(), ("durability".into(), "os".into()));
        assert_eq!(parse_key_value(" a = b=c ").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_key_value("durability").is_err());
        assert!(parse_key_value("=os").is_err());
        assert!(parse_key_value("durability=").is_err());
    }

    #[test]
    fn options_go_before_or_after_the_scenario() {
        let cli =
            Cli::try_parse_from(["rill-bench", "--json", "produce", "--messages", "5", "--acks", "leader"]).unwrap();
        assert_eq!(cli.command, Some(ScenarioCommand::Produce));
        assert!(cli.options.json);
        assert_eq!(cli.options.messages, Some(5));
        assert_eq!(cli.options.acks, Some(AcksArg::Leader));
    }

    #[test]
    fn a_preset_alone_is_a_complete_command() {
        let cli = Cli::try_parse_from(["rill-bench", "--preset", "fsync-1k"]).unwrap();
        assert_eq!(cli.command, None);
        assert_eq!(cli.options.preset, Some(PresetName::Fsync1k));
    }

    #[test]
    fn messages_and_duration_exclude_each_other() {
        assert!(Cli::try_parse_from(["rill-bench", "produce", "--messages", "5", "--duration", "2"]).is_err());
    }

    #[test]
    fn enumerated_values_are_checked() {
        assert!(Cli::try_parse_from(["rill-bench", "produce", "--acks", "some"]).is_err());
        assert!(Cli::try_parse_from(["rill-bench", "produce", "--key-distribution", "zipf"]).is_err());
        let cli = Cli::try_parse_from(["rill-bench", "e2e", "--key-distribution", "round-robin"]).unwrap();
        assert_eq!(cli.options.key_distribution, Some(KeyDistribution::RoundRobin));
    }
}
