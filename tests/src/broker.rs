//! Real `rill-broker` processes on loopback ports, each with its own data directory, and a runner for the
//! `rill` CLI binary.
//!
//! Binaries are found next to the running test executable (`target/<profile>/`) and built once per test
//! process with `cargo build` (a no-op when up to date), because cargo's `CARGO_BIN_EXE_*` only covers the
//! test's own package. `RILL_BROKER_BIN` and `RILL_CLI_BIN` override the paths and skip the build.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How long a broker may take from spawn to being ready (see `BrokerProcess::wait_ready`).
const BROKER_START_MS_MAX: u64 = 60_000;
/// How long SIGTERM may take to stop a broker before the test fails.
const BROKER_STOP_MS_MAX: u64 = 60_000;
/// How long one CLI invocation may run before the test fails (100,000 records in debug builds included).
const CLI_RUN_MS_MAX: u64 = 180_000;
/// Pause between readiness probes.
const PROBE_INTERVAL_MS: u64 = 50;

/// How to start a broker.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub node_id: u32,
    /// Reuse this data directory instead of a fresh temporary one.
    pub data_dir: Option<PathBuf>,
    /// Listen on this loopback port instead of a free one picked at start. A cluster needs every port before
    /// any node starts, because each node's flags name the others' addresses.
    pub port: Option<u16>,
    /// Serve Kafka clients on this loopback port instead of a free one picked at start.
    pub kafka_port: Option<u16>,
    /// Serve HTTP (`/metrics`, the console) on this loopback port instead of a free one picked at start.
    pub http_port: Option<u16>,
    /// Further flags for `rill-broker`, e.g. `["--durability", "os"]`.
    pub extra_args: Vec<String>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            node_id: 1,
            data_dir: None,
            port: None,
            kafka_port: None,
            http_port: None,
            extra_args: Vec::new(),
        }
    }
}

/// Signals for pausing and resuming a broker, to simulate a stalled process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Stop,
    Cont,
}

/// A running (or stopped) `rill-broker` process. Killed when dropped.
pub struct BrokerProcess {
    options: BrokerOptions,
    port: u16,
    kafka_port: u16,
    http_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    /// Owns the temporary directories; deleted after the process is gone.
    _temp: tempfile::TempDir,
}

impl BrokerProcess {
    /// Starts a broker on a free loopback port and waits until it is ready ([`BrokerProcess::wait_ready`]).
    ///
    /// # Panics
    ///
    /// If the binary cannot be built or started, or the broker does not become ready in time; the panic
    /// message includes the broker's log.
    pub fn start(options: BrokerOptions) -> BrokerProcess {
        let mut broker = BrokerProcess::spawn(options);
        broker.wait_ready();
        broker
    }

    /// Starts a broker without waiting for it to answer; see [`BrokerProcess::wait_ready`]. Nodes of a
    /// cluster are spawned together because a node may not answer until its controller quorum has formed.
    ///
    /// # Panics
    ///
    /// If the binary cannot be built or started.
    pub fn spawn(options: BrokerOptions) -> BrokerProcess {
        let temp = tempfile::tempdir().expect("create temporary directory");
        let data_dir = options.data_dir.clone().unwrap_or_else(|| temp.path().join("data"));
        std::fs::create_dir_all(&data_dir).expect("create data directory");
        let log_path = temp.path().join("broker.log");
        let port = options.port.unwrap_or_else(free_port);
        // Every broker gets its own Kafka port: the default, 9092, would collide between parallel tests.
        let kafka_port = options.kafka_port.unwrap_or_else(|| free_port_other_than(&[port]));
        let http_port = options.http_port.unwrap_or_else(|| free_port_other_than(&[port, kafka_port]));
        let mut broker =
            BrokerProcess { options, port, kafka_port, http_port, data_dir, log_path, child: None, _temp: temp };
        broker.spawn_process();
        broker
    }

    /// `127.0.0.1:PORT`, the broker's client address.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port the broker listens on, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, where the broker serves Kafka clients, the same across restarts.
    pub fn kafka_addr(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// `127.0.0.1:PORT`, the broker's HTTP listener (`/metrics`, `/ready`, `/ui`), the same across restarts.
    pub fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    pub fn node_id(&self) -> u32 {
        self.options.node_id
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether the process was started and has not been killed or stopped by this handle. A process that
    /// exited on its own still counts until [`BrokerProcess::has_exited`] notices.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process has exited (or was never running), reaping it if so.
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(child) => child.try_wait().expect("poll broker").is_some(),
        }
    }

    /// The broker's stdout and stderr so far, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    ///
    /// # Panics
    ///
    /// If the broker is not running or does not exit within the stop limit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker is not running");
        send_signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_millis(BROKER_STOP_MS_MAX);
        loop {
            if let Some(status) = child.try_wait().expect("wait for broker") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("broker did not stop within {BROKER_STOP_MS_MAX} ms of SIGTERM; log:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(PROBE_INTERVAL_MS));
        }
    }

    /// Starts the broker again on the same port with the same data directory, stopping it first (SIGTERM)
    /// if it still runs, and waits until it is ready.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
        self.spawn_process();
        self.wait_ready();
    }

    /// Pauses (`Stop`) or resumes (`Cont`) the process.
    pub fn stop_signal(&self, signal: Signal) {
        let child = self.child.as_ref().expect("broker is not running");
        send_signal(child.id(), if signal == Signal::Stop { "STOP" } else { "CONT" });
    }

    /// Pauses the process (SIGSTOP): it keeps its sockets but answers nothing, like a long GC pause or a
    /// frozen VM.
    pub fn sigstop(&self) {
        self.stop_signal(Signal::Stop);
    }

    /// Resumes a process paused by [`BrokerProcess::sigstop`].
    pub fn sigcont(&self) {
        self.stop_signal(Signal::Cont);
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGHUP (the broker reloads its TLS files).
    pub fn sighup(&self) {
        let child = self.child.as_ref().expect("broker is not running");
        send_signal(child.id(), "HUP");
    }

    /// Runs the `rill` CLI against this broker.
    pub fn rill(&self, args: &[&str], stdin: &[u8]) -> CliOutput {
        run_rill(&self.addr(), args, stdin)
    }

    fn spawn_process(&mut self) {
        let log = OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open broker log");
        let mut command = Command::new(broker_binary());
        command
            .arg("--node-id")
            .arg(self.options.node_id.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr())
            .arg("--kafka-listen")
            .arg(self.kafka_addr())
            .arg("--http-listen")
            .arg(self.http_addr())
            .args(&self.options.extra_args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", broker_binary().display()));
        self.child = Some(child);
    }

    /// Waits until the broker, asked on its own port, answers Metadata, knows an active controller and lists
    /// itself as registered and unfenced.
    ///
    /// # Panics
    ///
    /// If the process exits first or does not answer within the start limit; the message includes its log.
    pub fn wait_ready(&mut self) {
        let node_id = self.options.node_id;
        self.wait_ready_by(|address| is_ready(address, node_id));
    }

    /// Waits until `ready(address)` says the broker is ready (a probe that speaks TLS, say).
    ///
    /// # Panics
    ///
    /// As [`BrokerProcess::wait_ready`].
    pub fn wait_ready_by(&mut self, mut ready: impl FnMut(&str) -> bool) {
        assert!(self.child.is_some(), "broker {} is not running", self.options.node_id);
        let deadline = Instant::now() + Duration::from_millis(BROKER_START_MS_MAX);
        let address = self.addr();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("poll broker")) {
                self.child = None;
                panic!("broker exited during startup with {status}; log:\n{}", self.log());
            }
            if ready(&address) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("broker not ready within {BROKER_START_MS_MAX} ms; log:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(PROBE_INTERVAL_MS));
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused process cannot die from SIGKILL until resumed on some systems' process accounting;
            // resume it first so `wait` returns promptly.
            send_signal(child.id(), "CONT");
        }
        self.kill9();
    }
}

/// Whether the broker at `address` is ready for a test: it answers Metadata, knows an active controller, and
/// lists itself as a registered, unfenced broker (registration may finish after the port opens, and a topic
/// created before it would find no live broker to place replicas on).
fn is_ready(address: &str, node_id: u32) -> bool {
    crate::rpc::block_on(async {
        let Ok(_) = crate::rpc::metadata(address, &[]).await else { return false };
        let Ok(cluster) = crate::rpc::describe_cluster(address).await else { return false };
        cluster.active_controller != 0 && cluster.brokers.iter().any(|b| b.id == node_id && !b.fenced)
    })
}

fn send_signal(pid: u32, signal: &str) {
    // `kill(1)` avoids an FFI dependency for three signals.
    let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A loopback port that was free a moment ago. The broker binds it right after; a collision is possible but
/// rare.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// A free loopback port other than `taken` (which was free a moment ago too, so may be handed out again).
fn free_port_other_than(taken: &[u16]) -> u16 {
    loop {
        let port = free_port();
        if !taken.contains(&port) {
            return port;
        }
    }
}

/// What a CLI run produced.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Asserts the command succeeded and returns itself, showing stderr if it did not.
    #[track_caller]
    pub fn success(self) -> CliOutput {
        assert!(self.status.success(), "rill failed with {}: {}", self.status, self.stderr);
        self
    }

    /// The exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `rill ARGS` with `RILL_BOOTSTRAP` set to `bootstrap`, feeding `stdin`, and collects its output.
///
/// # Panics
///
/// If the binary cannot be started or runs longer than the CLI limit.
pub fn run_rill(bootstrap: &str, args: &[&str], stdin: &[u8]) -> CliOutput {
    let mut child = Command::new(cli_binary())
        .args(args)
        .env("RILL_BOOTSTRAP", bootstrap)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", cli_binary().display()));
    let mut input = child.stdin.take().expect("stdin piped");
    let stdin = stdin.to_vec();
    // Writers and readers on their own threads: a full pipe in either direction must not deadlock.
    let writer = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let stdout = read_in_background(child.stdout.take().expect("stdout piped"));
    let stderr = read_in_background(child.stderr.take().expect("stderr piped"));
    let deadline = Instant::now() + Duration::from_millis(CLI_RUN_MS_MAX);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll rill") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rill {args:?} ran longer than {CLI_RUN_MS_MAX} ms");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    CliOutput {
        status,
        stdout: String::from_utf8_lossy(&stdout.join().expect("stdout reader")).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned(),
    }
}

pub(crate) fn read_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Starts `rill-broker ARGS` on a fresh data directory and a free port, without a Kafka listener, asserts
/// that it refuses to start, and returns what it printed to stderr.
///
/// # Panics
///
/// If the broker cannot be run or starts.
pub fn broker_start_refusal<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let data = tempfile::tempdir().expect("create temporary directory");
    let out = Command::new(broker_binary())
        .arg("--data-dir")
        .arg(data.path())
        .args(["--listen", &format!("127.0.0.1:{}", free_port()), "--kafka-listen", "none", "--http-listen", "none"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", broker_binary().display()));
    assert!(!out.status.success(), "the broker must refuse to start with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `rill-broker` binary, built on first use.
pub fn broker_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| built_binary("RILL_BROKER_BIN", "rill-broker", "rill-broker")).clone()
}

/// The `rill` CLI binary, built on first use.
pub fn cli_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| built_binary("RILL_CLI_BIN", "rill-client", "rill")).clone()
}

fn built_binary(override_var: &str, package: &str, bin: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(override_var) {
        return PathBuf::from(path);
    }
    let profile_dir = profile_dir();
    let target_dir = profile_dir.parent().expect("profile directory has a parent").to_path_buf();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .arg("--target-dir")
        .arg(&target_dir);
    if profile_dir.file_name().is_some_and(|name| name == "release") {
        command.arg("--release");
    }
    let status = command.status().unwrap_or_else(|e| panic!("cannot run cargo to build {bin}: {e}"));
    assert!(status.success(), "cargo build -p {package} --bin {bin} failed");
    let path = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} missing after the build", path.display());
    path
}

/// `target/<profile>`: the test executable lives in its `deps/` directory.
pub(crate) fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let deps = exe.parent().expect("executable has a directory");
    let dir = if deps.file_name().is_some_and(|name| name == "deps") {
        deps.parent().expect("deps has a parent")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// Writes `lines` joined by newlines (with a trailing one), the way a shell pipe would deliver them.
pub fn lines_input<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> Vec<u8> {
    let mut input = Vec::new();
    for line in lines {
        input.extend_from_slice(line.as_ref().as_bytes());
        input.push(b'\n');
    }
    input
}
