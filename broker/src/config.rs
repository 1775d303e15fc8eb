//! Broker configuration: command-line flags, `RILL_*` environment variables and a TOML file (`--config`),
//! in that order of precedence, over built-in defaults that work out of the box.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use rill_storage::Keyring;
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
    /// Address the Kafka wire-protocol listener binds, or `none` for no Kafka listener [default: 127.0.0.1:9092].
    #[arg(long, env = "RILL_KAFKA_LISTEN")]
    pub kafka_listen: Option<String>,
    /// Address Kafka clients are told to reach this node at [default: the Kafka listen address].
    #[arg(long, env = "RILL_KAFKA_ADVERTISED_ADDRESS")]
    pub kafka_advertised_address: Option<String>,
    /// Address the HTTP listener binds (`/metrics`, `/health`, `/ready`, the `/ui` console), or `none`
    /// [default: 127.0.0.1:9480].
    #[arg(long, env = "RILL_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Log lines as `text` (human-readable) or `json` (one object per line) [default: text].
    #[arg(long, env = "RILL_LOG_FORMAT")]
    pub log_format: Option<String>,
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
    /// How long a stopping broker waits for the controller to move its leaderships to other in-sync replicas
    /// before it stops anyway, in ms; 0 stops without moving them [default: 30000].
    #[arg(long, env = "RILL_CONTROLLED_SHUTDOWN_TIMEOUT_MS")]
    pub controlled_shutdown_timeout_ms: Option<u64>,
    /// How often the active controller moves leaderships back to each partition's preferred (first) replica
    /// where it is in sync and may lead, so leaders stay spread after failures and restarts, in ms; 0 turns
    /// automatic leader balancing off [default: 300000].
    #[arg(long, env = "RILL_LEADER_BALANCE_INTERVAL_MS")]
    pub leader_balance_interval_ms: Option<u64>,
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
    /// `on` checks every request against the cluster's ACLs; `off` lets anyone do anything [default: off].
    #[arg(long, env = "RILL_AUTHORIZER")]
    pub authorizer: Option<String>,
    /// Principals allowed everything whatever the ACLs say, `User:NAME,...`; include the brokers' own
    /// certificate principal when brokers talk over mTLS [default: none].
    #[arg(long, env = "RILL_SUPER_USERS")]
    pub super_users: Option<String>,
    /// PEM certificate chain of this broker (leaf first). With `--tls-key`, every listener and every
    /// connection to peer brokers uses TLS; without both, everything stays plaintext [default: none].
    #[arg(long, env = "RILL_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "RILL_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle that client certificates and peer brokers' certificates are verified against; required
    /// with TLS when there is more than one controller voter.
    #[arg(long, env = "RILL_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificates: `none` (not asked for), `request` (verified when presented; clients without one
    /// still connect) or `require` (refused at the handshake without a valid one) [default: request with
    /// `--tls-ca`, else none].
    #[arg(long, env = "RILL_TLS_CLIENT_AUTH", value_name = "none|request|require")]
    pub tls_client_auth: Option<String>,
    /// Which name of a verified client certificate becomes its principal `User:NAME`: `cn` (the subject's
    /// common name), or the first `san-dns`, `san-email` or `san-uri` subject alternative name [default: cn].
    #[arg(long, env = "RILL_TLS_PRINCIPAL_FROM", value_name = "cn|san-dns|san-email|san-uri")]
    pub tls_principal_from: Option<String>,
    /// How often the certificate, key and CA files are checked for changes, in ms; 0 reloads them on SIGHUP
    /// only [default: 1000].
    #[arg(long, env = "RILL_TLS_RELOAD_POLL_MS", value_name = "MS")]
    pub tls_reload_poll_ms: Option<u64>,
    /// File of AES-256 keys for topics with `encryption=aes-256-gcm`, one `ID:HEX64` per line (`#` comments);
    /// keep every key whose segments still exist. The active key is `--encryption-key-id`, else the last
    /// line [default: none].
    #[arg(long, env = "RILL_ENCRYPTION_KEY_FILE", value_name = "PATH")]
    pub encryption_key_file: Option<PathBuf>,
    /// Id of the key new segments are encrypted with [default: the last key of the file, or the
    /// `RILL_ENCRYPTION_KEY` key].
    #[arg(long, env = "RILL_ENCRYPTION_KEY_ID", value_name = "ID")]
    pub encryption_key_id: Option<String>,
    /// One key, `ID:HEX64`, added to the file's keys (and active unless `--encryption-key-id` says
    /// otherwise). Set it through the environment: a flag's value is visible to every local user.
    #[arg(long, env = "RILL_ENCRYPTION_KEY", value_name = "ID:HEX64", hide_env_values = true)]
    pub encryption_key: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: u32,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertised_address: String,
    /// The Kafka listener's address and the address it advertises; `None` when `--kafka-listen none`.
    pub kafka: Option<KafkaListenerConfig>,
    /// The HTTP listener's address; `None` when `--http-listen none`.
    pub http_listen: Option<SocketAddr>,
    pub log_json: bool,
    pub log_filter: Option<String>,
    pub batch_bytes_max: u64,
    pub request_bytes_max: u64,
    pub fetch_bytes_max: u64,
    pub partition_fetch_bytes_max: u64,
    pub produce_timeout_ms: u64,
    pub checkpoint_interval_ms: u64,
    pub retention_check_interval_ms: u64,
    pub shutdown_timeout_ms: u64,
    pub controlled_shutdown_timeout_ms: u64,
    pub leader_balance_interval_ms: u64,
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
    /// Whether requests are checked against ACLs (`--authorizer on`).
    pub authorizer: bool,
    /// Names of the super users' principals (`User:NAME` without the `User:`).
    pub super_users: Vec<String>,
    /// TLS for every listener and peer connection; `None` keeps the broker plaintext.
    pub tls: Option<TlsConfig>,
    /// The keys for encryption at rest (`--encryption-key-file`, `RILL_ENCRYPTION_KEY`); `None` when none is
    /// given, and then no topic can be encrypted here.
    pub encryption_keys: Option<Arc<Keyring>>,
}

/// The TLS settings as given: paths to the PEM files, which `security::tls` reads (and reads again on
/// reload), whether client certificates are asked for, and how a client certificate names its principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub principal_from: PrincipalFrom,
    /// How often the files are checked for changes; 0 for SIGHUP only.
    pub reload_poll_ms: u64,
}

/// Whether the listeners ask TLS clients for a certificate (`--tls-client-auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Not asked for: every client is anonymous at the TLS layer.
    None,
    /// Asked for and verified against the CA when presented; a client without one still connects.
    Request,
    /// A client without a certificate the CA verifies is refused at the handshake.
    Require,
}

/// Which name of a verified client certificate is its principal (`--tls-principal-from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalFrom {
    /// The subject's common name (CN), as Kafka's default `ssl.principal.mapping.rules` reads it.
    CommonName,
    /// The first DNS subject alternative name.
    SanDns,
    /// The first email (rfc822Name) subject alternative name.
    SanEmail,
    /// The first URI subject alternative name (a SPIFFE id, say).
    SanUri,
}

impl ClientAuth {
    fn parse(text: &str) -> anyhow::Result<ClientAuth> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(ClientAuth::None),
            "request" => Ok(ClientAuth::Request),
            "require" => Ok(ClientAuth::Require),
            _ => anyhow::bail!("tls-client-auth '{text}' is not none, request or require"),
        }
    }
}

impl PrincipalFrom {
    fn parse(text: &str) -> anyhow::Result<PrincipalFrom> {
        match text.trim().to_ascii_lowercase().as_str() {
            "cn" => Ok(PrincipalFrom::CommonName),
            "san-dns" => Ok(PrincipalFrom::SanDns),
            "san-email" => Ok(PrincipalFrom::SanEmail),
            "san-uri" => Ok(PrincipalFrom::SanUri),
            _ => anyhow::bail!("tls-principal-from '{text}' is not cn, san-dns, san-email or san-uri"),
        }
    }
}

/// Where the Kafka wire-protocol listener binds, and the `host:port` Kafka clients are given for this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaListenerConfig {
    pub listen: SocketAddr,
    pub advertised_address: String,
}

/// The `--http-listen` default: loopback, so the unauthenticated monitoring view is not exposed by default.
const HTTP_LISTEN_DEFAULT: &str = "127.0.0.1:9480";

/// Resolves `--http-listen`: an address, or `none`.
fn http_listener(listen: Option<&str>) -> anyhow::Result<Option<SocketAddr>> {
    let listen = listen.unwrap_or(HTTP_LISTEN_DEFAULT).trim();
    if listen.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let address = listen
        .parse()
        .map_err(|e| anyhow::anyhow!("http-listen '{listen}' is neither an IP:PORT address nor 'none': {e}"))?;
    Ok(Some(address))
}

/// Resolves `--log-format`: `text` or `json`; true for json.
fn log_json(format: Option<&str>) -> anyhow::Result<bool> {
    match format.map(|f| f.trim().to_ascii_lowercase()).as_deref() {
        None | Some("text") => Ok(false),
        Some("json") => Ok(true),
        Some(other) => anyhow::bail!("log-format must be 'text' or 'json', not '{other}'"),
    }
}

/// The `--kafka-listen` default: Kafka's well-known port on loopback, as `--listen` defaults to loopback.
const KAFKA_LISTEN_DEFAULT: &str = "127.0.0.1:9092";

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
            kafka_listen,
            kafka_advertised_address,
            http_listen,
            log_format,
            log,
            batch_bytes_max,
            request_bytes_max,
            fetch_bytes_max,
            partition_fetch_bytes_max,
            produce_timeout_ms,
            checkpoint_interval_ms,
            retention_check_interval_ms,
            shutdown_timeout_ms,
            controlled_shutdown_timeout_ms,
            leader_balance_interval_ms,
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
            flush_ms,
            authorizer,
            super_users,
            tls_cert,
            tls_key,
            tls_ca,
            tls_client_auth,
            tls_principal_from,
            tls_reload_poll_ms,
            encryption_key_file,
            encryption_key_id,
            encryption_key
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

/// Resolves `--kafka-listen` (an address, or `none`) and `--kafka-advertised-address`, whose default follows
/// the same rule as `--advertised-address`.
fn kafka_listener(listen: Option<&str>, advertised: Option<String>) -> anyhow::Result<Option<KafkaListenerConfig>> {
    let listen = listen.unwrap_or(KAFKA_LISTEN_DEFAULT).trim();
    if listen.eq_ignore_ascii_case("none") {
        anyhow::ensure!(advertised.is_none(), "kafka-advertised-address is set but kafka-listen is none");
        return Ok(None);
    }
    let listen: SocketAddr = listen
        .parse()
        .map_err(|e| anyhow::anyhow!("kafka-listen '{listen}' is neither an IP:PORT address nor 'none': {e}"))?;
    let advertised_address = advertised.unwrap_or_else(|| default_advertised_address(listen));
    Ok(Some(KafkaListenerConfig { listen, advertised_address }))
}

/// `on`/`off` (also `true`/`false`), or `default` when unset.
fn parse_switch(name: &str, value: Option<&str>, default: bool) -> anyhow::Result<bool> {
    match value.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "on" || v == "true" => Ok(true),
        Some(v) if v == "off" || v == "false" => Ok(false),
        Some(v) => anyhow::bail!("{name} must be 'on' or 'off', not '{v}'"),
    }
}

/// Parses `User:NAME,User:NAME,...` (or bare names) into the names.
fn parse_principals(list: &str) -> anyhow::Result<Vec<String>> {
    let items = list.split(',').map(str::trim).filter(|s| !s.is_empty());
    items
        .map(|item| match item.strip_prefix("User:").unwrap_or(item) {
            "" => Err(anyhow::anyhow!("super-users: '{item}' names no principal")),
            name => Ok(name.to_string()),
        })
        .collect()
}

/// Resolves the `--tls-*` settings: TLS needs both a certificate and a key; client certificates can only be
/// asked for with a CA to verify them; and brokers verify each other against the CA, so a cluster of several
/// voters needs one. Files are read (and their errors reported) by `security::tls` at start-up.
fn tls_config(args: &Args, voters: Option<&str>) -> anyhow::Result<Option<TlsConfig>> {
    let voters = match voters {
        Some(list) => parse_voters(list)?.len(),
        None => 1,
    };
    let (cert, key) = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        (None, None) => {
            let stray = [
                ("tls-ca", args.tls_ca.is_some()),
                ("tls-client-auth", args.tls_client_auth.is_some()),
                ("tls-principal-from", args.tls_principal_from.is_some()),
                ("tls-reload-poll-ms", args.tls_reload_poll_ms.is_some()),
            ];
            if let Some((name, _)) = stray.iter().find(|(_, set)| *set) {
                anyhow::bail!("{name} is set but TLS is off: pass --tls-cert and --tls-key too");
            }
            return Ok(None);
        }
        (Some(_), None) => anyhow::bail!("tls-cert is set without tls-key"),
        (None, Some(_)) => anyhow::bail!("tls-key is set without tls-cert"),
    };
    let ca = args.tls_ca.clone();
    let client_auth = match &args.tls_client_auth {
        Some(text) => ClientAuth::parse(text)?,
        None if ca.is_some() => ClientAuth::Request,
        None => ClientAuth::None,
    };
    anyhow::ensure!(
        client_auth == ClientAuth::None || ca.is_some(),
        "tls-client-auth {client_auth:?} needs --tls-ca to verify client certificates against",
    );
    anyhow::ensure!(
        ca.is_some() || voters <= 1,
        "--tls-ca is required with TLS in a cluster of {voters} voters: brokers verify each other's certificates \
         against it"
    );
    let principal_from = match &args.tls_principal_from {
        Some(text) => PrincipalFrom::parse(text)?,
        None => PrincipalFrom::CommonName,
    };
    let reload_poll_ms = args.tls_reload_poll_ms.unwrap_or(limits::TLS_RELOAD_POLL_MS_DEFAULT);
    Ok(Some(TlsConfig { cert, key, ca, client_auth, principal_from, reload_poll_ms }))
}

/// Builds the keyring from `--encryption-key-file` and `RILL_ENCRYPTION_KEY`: the file's keys in order, then
/// the single key; the active one is `--encryption-key-id`, else the single key, else the file's last.
fn encryption_keys(args: &Args) -> anyhow::Result<Option<Arc<Keyring>>> {
    let mut keys = Vec::new();
    if let Some(path) = &args.encryption_key_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read encryption-key-file {}: {e}", path.display()))?;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = rill_storage::parse_key(line)
                .map_err(|e| anyhow::anyhow!("encryption-key-file {} line {}: {e}", path.display(), number + 1))?;
            keys.push(key);
        }
        anyhow::ensure!(!keys.is_empty(), "encryption-key-file {} holds no key", path.display());
    }
    if let Some(text) = &args.encryption_key {
        // Never echo the value: it is the key.
        let key = rill_storage::parse_key(text).map_err(|e| anyhow::anyhow!("RILL_ENCRYPTION_KEY: {e}"))?;
        keys.push(key);
    }
    if keys.is_empty() {
        anyhow::ensure!(
            args.encryption_key_id.is_none(),
            "encryption-key-id is set but no key is given (--encryption-key-file or RILL_ENCRYPTION_KEY)"
        );
        return Ok(None);
    }
    let keyring =
        Keyring::new(keys, args.encryption_key_id.as_deref()).map_err(|e| anyhow::anyhow!("encryption keys: {e}"))?;
    Ok(Some(Arc::new(keyring)))
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
        let tls = tls_config(&args, args.controller_voters.as_deref())?;
        let encryption_keys = encryption_keys(&args)?;
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
        let kafka = kafka_listener(args.kafka_listen.as_deref(), args.kafka_advertised_address)?;
        let controller_voters = match &args.controller_voters {
            Some(list) => parse_voters(list)?,
            None => [(node_id, advertised_address.clone())].into(),
        };
        let config = BrokerConfig {
            node_id,
            data_dir: args.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
            listen,
            advertised_address,
            kafka,
            http_listen: http_listener(args.http_listen.as_deref())?,
            log_json: log_json(args.log_format.as_deref())?,
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
            controlled_shutdown_timeout_ms: args
                .controlled_shutdown_timeout_ms
                .unwrap_or(limits::CONTROLLED_SHUTDOWN_TIMEOUT_MS_DEFAULT),
            leader_balance_interval_ms: args
                .leader_balance_interval_ms
                .unwrap_or(limits::LEADER_BALANCE_INTERVAL_MS_DEFAULT),
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
            authorizer: parse_switch("authorizer", args.authorizer.as_deref(), false)?,
            super_users: parse_principals(args.super_users.as_deref().unwrap_or(""))?,
            tls,
            encryption_keys,
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
        anyhow::ensure!(
            !self.authorizer || self.controller_voters.len() <= 1 || self.tls.as_ref().is_some_and(|t| t.ca.is_some()),
            "--authorizer on in a cluster of several voters needs TLS with --tls-ca: brokers prove who they are to \
             each other with their certificates (add their principal to --super-users)"
        );
        if let Some(kafka) = &self.kafka {
            anyhow::ensure!(kafka.listen != self.listen, "kafka-listen and listen are both {}", self.listen);
        }
        if let Some(http) = self.http_listen {
            anyhow::ensure!(http != self.listen, "http-listen and listen are both {http}");
            anyhow::ensure!(
                self.kafka.as_ref().is_none_or(|k| k.listen != http),
                "http-listen and kafka-listen are both {http}"
            );
        }
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
    fn the_kafka_listener_defaults_to_loopback_9092_and_can_be_turned_off() {
        let c = BrokerConfig::resolve(Args::default()).unwrap();
        let kafka = c.kafka.expect("on by default");
        assert_eq!(kafka.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(kafka.advertised_address, "127.0.0.1:9092");
        let c = BrokerConfig::resolve(Args::parse_from(["rill-broker", "--kafka-listen", "none"])).unwrap();
        assert_eq!(c.kafka, None);
        let args = Args::parse_from(["rill-broker", "--kafka-listen", "0.0.0.0:19092"]);
        let kafka = BrokerConfig::resolve(args).unwrap().kafka.unwrap();
        assert!(!kafka.advertised_address.starts_with("0.0.0.0"), "{}", kafka.advertised_address);
        assert!(kafka.advertised_address.ends_with(":19092"));
        let args = Args::parse_from(["rill-broker", "--kafka-advertised-address", "kafka-1:9092"]);
        assert_eq!(BrokerConfig::resolve(args).unwrap().kafka.unwrap().advertised_address, "kafka-1:9092");
    }

    #[test]
    fn the_http_listener_defaults_to_loopback_9480_and_can_be_turned_off() {
        let c = BrokerConfig::resolve(Args::parse_from(["rill-broker"])).unwrap();
        assert_eq!(c.http_listen, Some("127.0.0.1:9480".parse().unwrap()));
        assert!(!c.log_json);
        let c =
            BrokerConfig::resolve(Args::parse_from(["rill-broker", "--http-listen", "none", "--log-format", "json"]))
                .unwrap();
        assert_eq!(c.http_listen, None);
        assert!(c.log_json);
        for bad in [["--http-listen", "localhost"], ["--http-listen", "127.0.0.1:9400"], ["--log-format", "xml"]] {
            let args = Args::parse_from(["rill-broker", bad[0], bad[1]]);
            let err = BrokerConfig::resolve(args).unwrap_err().to_string();
            assert!(err.contains(&bad[0][2..]), "{err}");
        }
    }

    #[test]
    fn bad_kafka_listener_settings_are_errors() {
        let err = BrokerConfig::resolve(Args::parse_from(["rill-broker", "--kafka-listen", "localhost"])).unwrap_err();
        assert!(err.to_string().contains("kafka-listen"), "{err}");
        let args = Args::parse_from(["rill-broker", "--kafka-listen", "none", "--kafka-advertised-address", "a:1"]);
        assert!(BrokerConfig::resolve(args).unwrap_err().to_string().contains("kafka-advertised-address"));
    }

    #[test]
    fn kafka_settings_come_from_the_file_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rill.toml");
        std::fs::write(&path, "kafka_listen = \"127.0.0.1:19093\"\nkafka_advertised_address = \"k:19093\"\n").unwrap();
        let c = BrokerConfig::resolve(Args::parse_from(["rill-broker", "--config", path.to_str().unwrap()])).unwrap();
        let kafka = c.kafka.unwrap();
        assert_eq!(
            (kafka.listen.to_string().as_str(), kafka.advertised_address.as_str()),
            ("127.0.0.1:19093", "k:19093")
        );
        std::fs::write(&path, "kafka_listen = \"none\"\n").unwrap();
        let c = BrokerConfig::resolve(Args::parse_from(["rill-broker", "--config", path.to_str().unwrap()])).unwrap();
        assert_eq!(c.kafka, None);
    }

    #[test]
    fn the_authorizer_is_off_by_default_and_super_users_parse() {
        let c = BrokerConfig::resolve(Args::default()).unwrap();
        assert!(!c.authorizer && c.super_users.is_empty());
        let args = Args::parse_from(["rill-broker", "--authorizer", "on", "--super-users", "User:admin, broker"]);
        let c = BrokerConfig::resolve(args).unwrap();
        assert!(c.authorizer);
        assert_eq!(c.super_users, ["admin", "broker"]);
        assert!(BrokerConfig::resolve(Args::parse_from(["rill-broker", "--authorizer", "maybe"])).is_err());
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
    fn without_a_certificate_and_key_the_broker_is_plaintext() {
        assert_eq!(BrokerConfig::resolve(Args::default()).unwrap().tls, None);
        let err = BrokerConfig::resolve(Args::parse_from(["rill-broker", "--tls-cert", "c.pem"])).unwrap_err();
        assert!(err.to_string().contains("tls-key"), "{err}");
        let err = BrokerConfig::resolve(Args::parse_from(["rill-broker", "--tls-ca", "ca.pem"])).unwrap_err();
        assert!(err.to_string().contains("TLS is off"), "{err}");
    }

    #[test]
    fn client_auth_defaults_to_request_with_a_ca_and_none_without() {
        let tls = |extra: &[&str]| {
            let args = ["rill-broker", "--tls-cert", "c.pem", "--tls-key", "k.pem"].iter().chain(extra);
            BrokerConfig::resolve(Args::parse_from(args)).map(|c| c.tls.expect("TLS on"))
        };
        let plain = tls(&[]).unwrap();
        assert_eq!((plain.client_auth, plain.principal_from), (ClientAuth::None, PrincipalFrom::CommonName));
        assert_eq!(tls(&["--tls-ca", "ca.pem"]).unwrap().client_auth, ClientAuth::Request);
        let strict = tls(&["--tls-ca", "ca.pem", "--tls-client-auth", "require", "--tls-principal-from", "san-uri"]);
        let strict = strict.unwrap();
        assert_eq!((strict.client_auth, strict.principal_from), (ClientAuth::Require, PrincipalFrom::SanUri));
        assert!(tls(&["--tls-client-auth", "require"]).unwrap_err().to_string().contains("needs --tls-ca"));
        assert!(tls(&["--tls-client-auth", "maybe"]).is_err());
        assert!(tls(&["--tls-principal-from", "ou"]).is_err());
        let cluster = tls(&["--controller-voters", "1@a:1,2@b:2"]).unwrap_err();
        assert!(cluster.to_string().contains("--tls-ca is required"), "{cluster}");
    }

    #[test]
    fn tls_settings_come_from_the_file_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rill.toml");
        let text = "tls_cert = \"b.pem\"\ntls_key = \"k.pem\"\ntls_ca = \"ca.pem\"\ntls_client_auth = \"require\"\n";
        std::fs::write(&path, text).unwrap();
        let c = BrokerConfig::resolve(Args::parse_from(["rill-broker", "--config", path.to_str().unwrap()])).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!((tls.cert, tls.ca), (PathBuf::from("b.pem"), Some(PathBuf::from("ca.pem"))));
        assert_eq!(tls.client_auth, ClientAuth::Require);
    }

    #[test]
    fn encryption_keys_come_from_a_file_and_the_environment_variable() {
        assert!(BrokerConfig::resolve(Args::default()).unwrap().encryption_keys.is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("# rotated 2026-12\nold:{}\nnew:{}\n", "11".repeat(32), "22".repeat(32)))
            .unwrap();
        let file = path.to_str().unwrap();
        let keys = |extra: &[&str]| {
            let base = ["rill-broker", "--encryption-key-file", file];
            BrokerConfig::resolve(Args::parse_from(base.iter().chain(extra)))
                .map(|c| c.encryption_keys.expect("keys loaded"))
        };
        let ring = keys(&[]).unwrap();
        assert_eq!((ring.active().id(), ring.ids()), ("new", vec!["new", "old"]));
        assert_eq!(keys(&["--encryption-key-id", "old"]).unwrap().active().id(), "old");
        let single = format!("env:{}", "33".repeat(32));
        let ring = keys(&["--encryption-key", &single]).unwrap();
        assert_eq!(ring.active().id(), "env", "the single key is active unless an id is named");
        let err = keys(&["--encryption-key-id", "gone"]).unwrap_err().to_string();
        assert!(err.contains("gone"), "{err}");
        let bad = format!("x:{}", "zz".repeat(32));
        let err = keys(&["--encryption-key", &bad]).unwrap_err().to_string();
        assert!(err.contains("RILL_ENCRYPTION_KEY") && !err.contains("zzzz"), "{err}");
        std::fs::write(&path, "k1:1234\n").unwrap();
        let err = keys(&[]).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("64 hex digits"), "{err}");
        let err = BrokerConfig::resolve(Args::parse_from(["rill-broker", "--encryption-key-id", "a"])).unwrap_err();
        assert!(err.to_string().contains("no key is given"), "{err}");
        std::fs::write(&path, format!("encryption_key = \"toml:{}\"\n", "44".repeat(32))).unwrap();
        let c = BrokerConfig::resolve(Args::parse_from(["rill-broker", "--config", file])).unwrap();
        assert_eq!(c.encryption_keys.unwrap().active().id(), "toml");
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
