//! Command-line arguments of `rill` (clap derive) and dispatch to the subcommands.

mod cluster;
mod consume;
mod dev_certs;
mod group;
mod output;
mod produce;
mod security;
mod top;
mod topic;
mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rill_client::{Acks, ClientConfig, Compression, DEFAULT_BOOTSTRAP, TlsConfig};

/// Rill command-line client.
#[derive(Debug, Parser)]
#[command(name = "rill", version, about = "Rill command-line client: topics, cluster status, produce and consume")]
pub struct Cli {
    /// Brokers to contact first; any reachable one is enough.
    #[arg(
        long,
        global = true,
        env = "RILL_BOOTSTRAP",
        default_value = DEFAULT_BOOTSTRAP,
        value_name = "HOST:PORT[,HOST:PORT...]",
        value_parser = parse_bootstrap
    )]
    pub bootstrap: Bootstrap,
    /// PEM CA bundle to verify brokers' certificates against. Any of the `--tls-*` options turns TLS on.
    #[arg(long, global = true, env = "RILL_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate, for brokers started with `--tls-client-auth request|require`.
    #[arg(long, global = true, env = "RILL_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, global = true, env = "RILL_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Log in as this SCRAM user (with `--password`); requests then act as `User:NAME`.
    #[arg(long, global = true, env = "RILL_USER", value_name = "NAME")]
    pub user: Option<String>,
    /// The password of `--user`.
    #[arg(long, global = true, env = "RILL_PASSWORD", hide_env_values = true, requires = "user")]
    pub password: Option<String>,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, global = true, env = "RILL_SASL_MECHANISM", default_value = "SCRAM-SHA-256")]
    pub sasl_mechanism: String,
    /// Name this client to the brokers, for client-id quotas.
    #[arg(long, global = true, env = "RILL_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The TLS settings, if any `--tls-*` option is given.
    pub fn tls(&self) -> Option<TlsConfig> {
        let tls = TlsConfig { ca: self.tls_ca.clone(), cert: self.tls_cert.clone(), key: self.tls_key.clone() };
        (tls != TlsConfig::default()).then_some(tls)
    }
}

/// A validated bootstrap list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap(pub Vec<String>);

fn parse_bootstrap(list: &str) -> Result<Bootstrap, String> {
    rill_client::parse_bootstrap(list).map(Bootstrap).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, describe and delete topics.
    Topic {
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// Drain a broker: move its leaderships to other in-sync replicas.
    Broker {
        #[command(subcommand)]
        command: BrokerCommand,
    },
    /// Show the brokers and the controller quorum.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Live produce and fetch rates per topic and broker, latency, leaderships, disk use and group lag,
    /// refreshed like `top`.
    Top(watch::Repeat),
    /// Write one record per stdin line.
    Produce(ProduceArgs),
    /// Print records, one per line.
    Consume(ConsumeArgs),
    /// List, describe and reset consumer groups.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Write a local development CA, a broker certificate and client certificates into DIR.
    DevCerts(DevCertsArgs),
    /// Create, delete and list SCRAM users.
    User {
        #[command(subcommand)]
        command: security::UserCommand,
    },
    /// Add, remove and list ACLs (checked by brokers started with --authorizer on).
    Acl {
        #[command(subcommand)]
        command: security::AclCommand,
    },
    /// Set and list client quotas (produce and fetch byte rates, request rates), enforced by every broker.
    Quota {
        #[command(subcommand)]
        command: security::QuotaCommand,
    },
}

#[derive(Debug, Args)]
pub struct DevCertsArgs {
    /// Directory to write ca.pem, ca-key.pem, broker.pem, broker-key.pem and NAME.pem, NAME-key.pem into.
    pub dir: PathBuf,
    /// Another name (or IP address) the broker certificate is valid for, besides localhost, 127.0.0.1 and ::1;
    /// repeatable (Docker container names, say).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// A client certificate with common name NAME (principal `User:NAME`); repeatable [default: admin].
    #[arg(long = "client", value_name = "NAME")]
    pub clients: Vec<String>,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List the cluster's consumer groups.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show a group's members, their partitions, and per partition the committed offset and lag.
    Describe {
        group: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Move a group's committed offsets for every partition of a topic (only while the group has no members).
    ResetOffsets(ResetOffsetsArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset"])))]
pub struct ResetOffsetsArgs {
    pub group: String,
    #[arg(long)]
    pub topic: String,
    /// To the oldest retained record.
    #[arg(long)]
    pub to_earliest: bool,
    /// To the end: only records written later are read.
    #[arg(long)]
    pub to_latest: bool,
    /// To this offset in every partition (held within each partition's retained range).
    #[arg(long, value_name = "N")]
    pub to_offset: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topics.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show a topic's partitions, replicas, offsets and configuration.
    Describe {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Delete a topic and all its records.
    Delete { name: String },
    /// Change a topic's config at runtime (retention, segment size, min ISR, durability, ...); every broker
    /// applies it without a restart.
    AlterConfig(AlterConfigArgs<String>),
    /// Add partitions to a topic (never fewer). Keyed records map to partitions by the new count from then
    /// on, so a key's later records may go to another partition than its earlier ones.
    AddPartitions {
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        partitions: u32,
        /// Only check that the change would be accepted.
        #[arg(long)]
        validate_only: bool,
    },
    /// Preferred-leader election: each partition's first replica leads again where it is in sync.
    ElectLeaders {
        /// Topics to elect in (default: every topic).
        topics: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// Number of partitions.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: u32,
    /// Copies of each partition; the broker's default when omitted.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub replication_factor: Option<u32>,
    /// Topic configuration, repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub configs: Vec<(String, String)>,
}

impl CreateArgs {
    /// The configuration as a map; a key given twice is an error rather than a silent override.
    pub fn config_map(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut map = BTreeMap::new();
        for (key, value) in &self.configs {
            if map.insert(key.clone(), value.clone()).is_some() {
                anyhow::bail!("config key '{key}' given more than once");
            }
        }
        Ok(map)
    }
}

fn parse_key_value(pair: &str) -> Result<(String, String), String> {
    let (key, value) = pair.split_once('=').ok_or_else(|| format!("'{pair}' is not KEY=VALUE"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("'{pair}' has an empty key"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// `NAME|ID KEY=VALUE... [--delete KEY]...`.
#[derive(Debug, Args)]
pub struct AlterConfigArgs<T: Clone + Send + Sync + std::str::FromStr + 'static>
where
    <T as std::str::FromStr>::Err: std::error::Error + Send + Sync + 'static,
{
    /// The topic name or broker id.
    pub name: T,
    /// Keys to set.
    #[arg(value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,
    /// A key to put back to its default, repeatable.
    #[arg(long = "delete", value_name = "KEY")]
    pub delete: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

impl<T: Clone + Send + Sync + std::str::FromStr + 'static> AlterConfigArgs<T>
where
    <T as std::str::FromStr>::Err: std::error::Error + Send + Sync + 'static,
{
    /// The keys to set as a map; a key given twice is an error.
    pub fn set_map(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut map = BTreeMap::new();
        for (key, value) in &self.set {
            if map.insert(key.clone(), value.clone()).is_some() {
                anyhow::bail!("config key '{key}' given more than once");
            }
        }
        if map.is_empty() && self.delete.is_empty() {
            anyhow::bail!("give at least one KEY=VALUE to set or --delete KEY");
        }
        Ok(map)
    }
}

#[derive(Debug, Subcommand)]
pub enum BrokerCommand {
    /// Change a broker's topic defaults at runtime (for topics without their own value), without a restart.
    AlterConfig(AlterConfigArgs<u32>),
    /// Move the broker's leaderships to other in-sync replicas and keep it from leading while another
    /// replica can (it keeps replicating); what stays is listed. A stopping broker does this itself.
    Drain {
        id: u32,
        /// Let the broker lead again (then `rill topic elect-leaders` moves leaderships back).
        #[arg(long)]
        cancel: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Brokers (id, address, alive or fenced, epoch) and the controller quorum.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Show the status again every --interval-ms until interrupted (or --iterations times).
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        repeat: watch::Repeat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    All,
    Leader,
    None,
}

impl From<AcksArg> for Acks {
    fn from(acks: AcksArg) -> Acks {
        match acks {
            AcksArg::All => Acks::All,
            AcksArg::Leader => Acks::Leader,
            AcksArg::None => Acks::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Key of every record.
    #[arg(long, conflicts_with = "key_separator")]
    pub key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP", value_parser = non_empty)]
    pub key_separator: Option<String>,
    /// A header of every record (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = header_arg)]
    pub headers: Vec<(String, String)>,
    /// Write every record to this partition instead of partitioning by key.
    #[arg(long)]
    pub partition: Option<u32>,
    /// Acknowledgement to wait for.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    pub acks: AcksArg,
    /// Exactly-once appends across retries (needs --acks all). Default: on with --acks all, else off.
    #[arg(long, value_enum)]
    pub idempotence: Option<OnOff>,
    /// How long a batch waits for more records.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Largest batch in bytes.
    #[arg(long, default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    pub batch_bytes: u64,
    /// Codec each batch is compressed with: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value_t = Compression::None)]
    pub compression: Compression,
}

/// `KEY=VALUE`, split at the first `=`; the key must not be empty.
fn header_arg(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() { Err("must not be empty".into()) } else { Ok(s.to_owned()) }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecordFormat {
    /// The value only, as raw bytes.
    Value,
    /// `{"partition","offset","timestamp","key","value","headers"}` per line; headers as `[key, value]` pairs.
    Json,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Start at the oldest retained record (default: the end).
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start at this offset, in every partition read.
    #[arg(long)]
    pub offset: Option<u64>,
    /// Stop after this many records.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end seen at start.
    #[arg(long)]
    pub follow: bool,
    #[arg(long, value_enum, default_value_t = RecordFormat::Value)]
    pub format: RecordFormat,
    /// Read as a member of this consumer group: the group's partitions are shared among its members, each
    /// starts at the group's committed offset (else the end, or the beginning with --from-beginning), offsets
    /// are committed after records are printed, and the consumer runs until --max-messages or interrupted.
    #[arg(long, conflicts_with_all = ["partition", "offset"])]
    pub group: Option<String>,
    /// With --group: the member is removed if silent this long.
    #[arg(long, requires = "group", value_parser = clap::value_parser!(u64).range(1000..=300_000))]
    pub session_timeout_ms: Option<u64>,
    /// With --group: how often printed records' offsets are committed.
    #[arg(long, requires = "group", value_parser = clap::value_parser!(u64).range(1..))]
    pub commit_interval_ms: Option<u64>,
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let sasl = match (&cli.user, &cli.password) {
        (Some(user), Some(password)) => {
            let mechanism = rill_client::SaslMechanism::parse(&cli.sasl_mechanism).ok_or_else(|| {
                anyhow::anyhow!("--sasl-mechanism '{}' is not SCRAM-SHA-256 or SCRAM-SHA-512", cli.sasl_mechanism)
            })?;
            Some(rill_client::SaslConfig { user: user.clone(), password: password.clone(), mechanism })
        }
        (Some(user), None) => anyhow::bail!("--user {user} needs --password (or RILL_PASSWORD)"),
        _ => None,
    };
    let client = ClientConfig {
        tls: cli.tls(),
        sasl,
        client_id: cli.client_id.clone(),
        bootstrap: cli.bootstrap.0,
        ..ClientConfig::default()
    };
    match cli.command {
        Command::DevCerts(args) => dev_certs::run(args),
        Command::Topic { command } => topic::run(client, command).await,
        Command::Cluster { command: ClusterCommand::Status { format, watch, repeat } } => {
            cluster::status(client, format, watch.then_some(repeat)).await
        }
        Command::Broker { command } => cluster::broker(client, command).await,
        Command::Top(repeat) => top::run(client, repeat).await,
        Command::Produce(args) => produce::run(client, args).await,
        Command::Consume(args) => consume::run(client, args).await,
        Command::Group { command } => group::run(client, command).await,
        Command::User { command } => security::users(client, command).await,
        Command::Acl { command } => security::acls(client, command).await,
        Command::Quota { command } => security::quotas(client, command).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("rill").chain(args.iter().copied()))
    }

    #[test]
    fn config_pairs_are_parsed() {
        let cli = parse(&[
            "topic",
            "create",
            "demo",
            "--partitions",
            "3",
            "--config",
            "retention.ms=1000",
            "--config",
            "cleanup=a=b",
        ])
        .unwrap();
        let Command::Topic { command: TopicCommand::Create(args) } = cli.command else { panic!("wrong command") };
        assert_eq!(args.partitions, 3);
        assert_eq!(args.replication_factor, None);
        let map = args.config_map().unwrap();
        assert_eq!(map["retention.ms"], "1000");
        assert_eq!(map["cleanup"], "a=b", "only the first '=' separates key from value");
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["topic", "create", "demo", "--partitions", "0"][..],
            &["topic", "create", "demo", "--partitions", "x"],
            &["topic", "create", "demo"],
            &["topic", "create", "demo", "--partitions", "1", "--config", "novalue"],
            &["topic", "create", "demo", "--partitions", "1", "--config", "=v"],
            &["produce", "demo", "--acks", "some"],
            &["produce", "demo", "--key", "k", "--key-separator", ":"],
            &["consume", "demo", "--from-beginning", "--offset", "3"],
            &["consume", "demo", "--format", "xml"],
            &["--bootstrap", "nohost", "topic", "list"],
            &["consume", "demo", "--group", "g", "--partition", "1"],
            &["consume", "demo", "--session-timeout-ms", "5000"],
            &["group", "reset-offsets", "g", "--topic", "t"],
            &["group", "reset-offsets", "g", "--topic", "t", "--to-earliest", "--to-latest"],
            &["group", "reset-offsets", "g", "--to-earliest"],
        ] {
            let error = parse(args).expect_err(&format!("{args:?} must be rejected"));
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn duplicate_config_keys_are_refused() {
        let cli =
            parse(&["topic", "create", "demo", "--partitions", "1", "--config", "a=1", "--config", "a=2"]).unwrap();
        let Command::Topic { command: TopicCommand::Create(args) } = cli.command else { panic!("wrong command") };
        assert!(args.config_map().is_err());
    }

    #[test]
    fn bootstrap_defaults_and_accepts_a_list() {
        let cli = parse(&["topic", "list"]).unwrap();
        assert_eq!(cli.bootstrap.0, vec![DEFAULT_BOOTSTRAP.to_owned()]);
        let cli = parse(&["topic", "list", "--bootstrap", "a:1,b:2"]).unwrap();
        assert_eq!(cli.bootstrap.0, vec!["a:1".to_owned(), "b:2".to_owned()]);
    }

    #[test]
    fn tls_is_on_when_any_tls_option_is_given() {
        assert_eq!(parse(&["topic", "list"]).unwrap().tls(), None);
        let cli = parse(&["topic", "list", "--tls-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        let tls = cli.tls().unwrap();
        assert_eq!(tls.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!((tls.cert, tls.key), (Some(PathBuf::from("c.pem")), Some(PathBuf::from("k.pem"))));
        let cli = parse(&["--tls-cert", "c.pem", "cluster", "status"]).unwrap();
        assert_eq!(cli.tls().unwrap().ca, None, "the client says it needs --tls-ca when it connects");
        let cli = parse(&["dev-certs", "certs", "--host", "rill-1", "--client", "alice", "--client", "bob"]).unwrap();
        let Command::DevCerts(args) = cli.command else { panic!("wrong command") };
        assert_eq!((args.hosts.len(), args.clients.len(), args.force), (1, 2, false));
    }

    #[test]
    fn produce_defaults_match_the_producer() {
        let cli = parse(&["produce", "demo"]).unwrap();
        let Command::Produce(args) = cli.command else { panic!("wrong command") };
        assert_eq!(args.acks, AcksArg::All);
        assert_eq!(args.linger_ms, 5);
        assert_eq!(args.batch_bytes, 1024 * 1024);
        assert_eq!(args.compression, Compression::None);
    }

    #[test]
    fn produce_takes_every_compression_codec_by_name() {
        for codec in Compression::ALL {
            let cli = parse(&["produce", "demo", "--compression", codec.name()]).unwrap();
            let Command::Produce(args) = cli.command else { panic!("wrong command") };
            assert_eq!(args.compression, codec);
        }
        assert!(parse(&["produce", "demo", "--compression", "brotli"]).is_err());
    }

    #[test]
    fn group_commands_parse() {
        let cli = parse(&["group", "reset-offsets", "g", "--topic", "t", "--to-offset", "5"]).unwrap();
        let Command::Group { command: GroupCommand::ResetOffsets(args) } = cli.command else { panic!("wrong command") };
        assert_eq!((args.group.as_str(), args.topic.as_str(), args.to_offset), ("g", "t", Some(5)));
        let cli = parse(&["group", "describe", "g", "--format", "json"]).unwrap();
        assert!(matches!(cli.command, Command::Group { command: GroupCommand::Describe { format: Format::Json, .. } }));
        let cli =
            parse(&["consume", "demo", "--group", "g", "--from-beginning", "--commit-interval-ms", "100"]).unwrap();
        let Command::Consume(args) = cli.command else { panic!("wrong command") };
        assert_eq!((args.group.as_deref(), args.commit_interval_ms), (Some("g"), Some(100)));
    }

    #[test]
    fn consume_flags_parse() {
        let cli = parse(&[
            "consume",
            "demo",
            "--partition",
            "2",
            "--offset",
            "7",
            "--max-messages",
            "10",
            "--follow",
            "--format",
            "json",
        ])
        .unwrap();
        let Command::Consume(args) = cli.command else { panic!("wrong command") };
        assert_eq!((args.partition, args.offset, args.max_messages), (Some(2), Some(7), Some(10)));
        assert!(args.follow);
        assert_eq!(args.format, RecordFormat::Json);
    }
}
