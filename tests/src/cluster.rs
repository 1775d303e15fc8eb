//! A cluster of real `rill-broker` processes on loopback: node ids `1..=n`, each with its own data directory
//! and port, all of them controller voters, optionally each behind its own [`FaultProxy`].
//!
//! With a proxy in front of every node, node `i` advertises proxy `i`'s address and the voter list names the
//! proxies, so every other node and every client reaches node `i` only through proxy `i`. Blackholing proxy
//! `i` therefore cuts what reaches node `i`; what node `i` sends goes through the other nodes' proxies, which
//! recognise its connections by its data directory (see [`crate::origin`]); [`ClusterProcess::isolate`] cuts
//! both.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::{BrokerOptions, BrokerProcess, CliOutput, run_rill};
use crate::origin::ProcessMarkers;
use crate::proxy::{FaultProxy, OriginResolver};
use crate::rpc;

/// How long a cluster may take from spawning its nodes to having an active controller that knows every node.
const CLUSTER_READY_MS_MAX: u64 = 90_000;
/// Pause between polls of a condition that offers no event to await (another process's state).
const POLL_INTERVAL_MS: u64 = 50;
/// Lines of each node's log shown when a test fails with the cluster alive.
const LOG_TAIL_LINES: usize = 80;

/// How to start a cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Further flags for every node, e.g. `["--session-timeout-ms", "3000"]`.
    pub extra_args: Vec<String>,
    /// Put a [`FaultProxy`] in front of every node.
    pub through_proxy: bool,
}

struct Node {
    broker: BrokerProcess,
    proxy: Option<FaultProxy>,
    /// Where clients and other nodes reach the node: its proxy, or its own port.
    client_address: String,
}

/// A running cluster. Every process is killed and every proxy closed when it is dropped; if the thread is
/// panicking (a failed test), the tail of each node's log is printed first.
pub struct ClusterProcess {
    /// Declared before `_data_root` so the processes are killed before their directories are deleted.
    nodes: BTreeMap<u32, Node>,
    _data_root: tempfile::TempDir,
}

impl ClusterProcess {
    /// Starts `n` nodes (ids `1..=n`), all controller voters, and waits until the cluster is ready
    /// ([`ClusterProcess::wait_ready`]).
    ///
    /// Each node runs `rill-broker --node-id I --data-dir D --listen 127.0.0.1:P --advertised-address A
    /// --controller-voters 1@A1,2@A2,...` followed by `options.extra_args`, where `A` is proxy `I`'s address with
    /// `through_proxy` and `127.0.0.1:P` otherwise.
    ///
    /// # Panics
    ///
    /// If a node cannot start or the cluster is not ready in time; the message includes the logs.
    pub fn start(n: u32, options: ClusterOptions) -> ClusterProcess {
        assert!(n >= 1, "a cluster needs at least one node");
        // gRPC ports, then Kafka ports, then HTTP ports, all distinct: a port picked later could be one picked
        // and released here.
        let mut ports = distinct_free_ports(3 * n as usize);
        let http_ports = ports.split_off(2 * n as usize);
        let kafka_ports = ports.split_off(n as usize);
        let ids: Vec<u32> = (1..=n).collect();
        // Data directories are chosen up front: proxies recognise a node's connections by them.
        let data_root = tempfile::tempdir().expect("create the cluster's temporary directory");
        let data_dirs: BTreeMap<u32, std::path::PathBuf> =
            ids.iter().map(|id| (*id, data_root.path().join(format!("node-{id}")))).collect();
        let resolver: OriginResolver = {
            let markers =
                ProcessMarkers::new(data_dirs.iter().map(|(id, dir)| (*id, dir.to_string_lossy().into_owned())));
            Arc::new(move |peer, local| markers.origin_of(peer, local))
        };
        let mut proxies: BTreeMap<u32, FaultProxy> = BTreeMap::new();
        let mut client_addresses: BTreeMap<u32, String> = BTreeMap::new();
        for (id, port) in ids.iter().zip(&ports) {
            let upstream = SocketAddr::from(([127, 0, 0, 1], *port));
            let address = if options.through_proxy {
                let proxy = FaultProxy::start_with_origins(upstream, Some(resolver.clone()));
                let address = proxy.addr().to_string();
                proxies.insert(*id, proxy);
                address
            } else {
                upstream.to_string()
            };
            client_addresses.insert(*id, address);
        }
        let voters =
            client_addresses.iter().map(|(id, address)| format!("{id}@{address}")).collect::<Vec<_>>().join(",");
        let mut nodes = BTreeMap::new();
        for (((id, port), kafka_port), http_port) in ids.iter().zip(&ports).zip(kafka_ports).zip(http_ports) {
            let client_address = client_addresses[id].clone();
            let mut extra_args = vec![
                "--advertised-address".to_owned(),
                client_address.clone(),
                "--controller-voters".to_owned(),
                voters.clone(),
            ];
            extra_args.extend(options.extra_args.iter().cloned());
            let broker = BrokerProcess::spawn(BrokerOptions {
                node_id: *id,
                data_dir: Some(data_dirs[id].clone()),
                port: Some(*port),
                kafka_port: Some(kafka_port),
                http_port: Some(http_port),
                extra_args,
            });
            nodes.insert(*id, Node { broker, proxy: proxies.remove(id), client_address });
        }
        let mut cluster = ClusterProcess { nodes, _data_root: data_root };
        for node in cluster.nodes.values_mut() {
            node.broker.wait_ready();
        }
        cluster.wait_ready();
        cluster
    }

    /// Node ids, ascending.
    pub fn ids(&self) -> Vec<u32> {
        self.nodes.keys().copied().collect()
    }

    /// Node `id`'s process.
    ///
    /// # Panics
    ///
    /// If there is no such node.
    pub fn node(&self, id: u32) -> &BrokerProcess {
        &self.node_entry(id).broker
    }

    /// Node `id`'s process, to kill, stop, pause or restart it. A restart reuses the node's flags, port and
    /// data directory.
    ///
    /// # Panics
    ///
    /// If there is no such node.
    pub fn node_mut(&mut self, id: u32) -> &mut BrokerProcess {
        &mut self.nodes.get_mut(&id).unwrap_or_else(|| panic!("no node {id}")).broker
    }

    /// The proxy in front of node `id`.
    ///
    /// # Panics
    ///
    /// If the cluster was started without proxies or there is no such node.
    pub fn proxy(&self, id: u32) -> &FaultProxy {
        self.node_entry(id).proxy.as_ref().expect("the cluster was started without proxies")
    }

    /// Where clients and other nodes reach node `id` (its proxy when there is one).
    pub fn client_address(&self, id: u32) -> String {
        self.node_entry(id).client_address.clone()
    }

    /// The client addresses of every node, comma-separated, for `RILL_BOOTSTRAP` or [`ClientConfig::new`].
    ///
    /// [`ClientConfig::new`]: rill_client::ClientConfig::new
    pub fn bootstrap(&self) -> String {
        self.nodes.values().map(|n| n.client_address.as_str()).collect::<Vec<_>>().join(",")
    }

    /// A client configuration for the whole cluster, tuned to notice failures within a few seconds: short
    /// connect and keepalive timeouts (a blackholed connection is otherwise silent for minutes) and metadata
    /// that is refreshed every second.
    pub fn client_config(&self) -> rill_client::ClientConfig {
        rill_client::ClientConfig {
            connect_timeout_ms: 1_000,
            request_timeout_ms: 10_000,
            keepalive_interval_ms: 1_000,
            keepalive_timeout_ms: 1_000,
            retry_backoff_ms: 100,
            metadata_max_age_ms: 1_000,
            ..rill_client::ClientConfig::new(&self.bootstrap()).expect("cluster addresses are host:port")
        }
    }

    /// Runs the `rill` CLI with the cluster's bootstrap list.
    pub fn rill(&self, args: &[&str], stdin: &[u8]) -> CliOutput {
        run_rill(&self.bootstrap(), args, stdin)
    }

    /// Cuts node `id` off from everyone, in both directions, keeping every socket open: its proxy drops all
    /// traffic, and every other proxy drops the connections node `id` opened.
    ///
    /// # Panics
    ///
    /// If the cluster was started without proxies.
    pub fn isolate(&self, id: u32) {
        self.proxy(id).blackhole();
        for other in self.ids().into_iter().filter(|other| *other != id) {
            self.proxy(other).isolate_origin(id);
        }
    }

    /// Removes every fault from every proxy.
    pub fn heal_all(&self) {
        for node in self.nodes.values() {
            if let Some(proxy) = &node.proxy {
                proxy.heal();
            }
        }
    }

    /// Waits until every running node answers Metadata and DescribeCluster through its client address, and
    /// DescribeCluster reports an active controller and lists every running node unfenced. Call it only when
    /// every running node is reachable (not paused, not isolated).
    ///
    /// # Panics
    ///
    /// If that does not happen in time; the message says what was last seen and includes the logs.
    pub fn wait_ready(&self) {
        let running: Vec<u32> = self.nodes.iter().filter(|(_, n)| n.broker.is_running()).map(|(id, _)| *id).collect();
        let deadline = Instant::now() + Duration::from_millis(CLUSTER_READY_MS_MAX);
        loop {
            let problems: Vec<String> = running
                .iter()
                .filter_map(|id| rpc::block_on(node_readiness(&self.nodes[id].client_address, &running)).err())
                .map(|e| format!("{e:#}"))
                .collect();
            if problems.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "cluster not ready within {CLUSTER_READY_MS_MAX} ms: {}\n{}",
                    problems.join("; "),
                    self.logs_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
    }

    /// The last lines of every node's log, each under a heading.
    pub fn logs_tail(&self) -> String {
        let mut out = String::new();
        for (id, node) in &self.nodes {
            let log = node.broker.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            out.push_str(&format!("----- node {id} ({}) log tail -----\n{}\n", node.client_address, tail.join("\n")));
        }
        out
    }

    fn node_entry(&self, id: u32) -> &Node {
        self.nodes.get(&id).unwrap_or_else(|| panic!("no node {id}"))
    }
}

impl Drop for ClusterProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs_tail());
        }
    }
}

/// Whether the node at `address` is ready: it answers Metadata, and its DescribeCluster names an active
/// controller and lists each of `running` unfenced.
async fn node_readiness(address: &str, running: &[u32]) -> anyhow::Result<()> {
    rpc::metadata(address, &[]).await?;
    let cluster = rpc::describe_cluster(address).await?;
    anyhow::ensure!(cluster.active_controller != 0, "{address} knows no active controller");
    for id in running {
        let registered = cluster.brokers.iter().find(|b| b.id == *id);
        anyhow::ensure!(registered.is_some_and(|b| !b.fenced), "{address} does not list node {id} as unfenced");
    }
    Ok(())
}

/// `n` loopback ports, free a moment ago and distinct: every listener is held until all are chosen.
fn distinct_free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local address").port()).collect()
}

/// Polls `condition` until it holds, panicking with `what` if it does not within `within`. For conditions
/// on other processes' state, which offer no event to await.
///
/// # Panics
///
/// If the condition does not hold in time.
pub fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
    }
}

/// Polls the async `probe` until it returns `Some`, and returns that value; panics with `what` and the last
/// thing `probe` reported if it does not within `within`.
///
/// # Panics
///
/// If the probe does not succeed in time.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}
