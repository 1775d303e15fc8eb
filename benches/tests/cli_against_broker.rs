//! `rill-bench` run as a process against a real `rill-broker` on a free loopback port: the JSON it prints
//! has the documented shape and plausible values, for produce and for e2e, and contradictory options fail
//! before any connection is made.
//!
//! The broker binary is `target/<profile>/rill-broker`, built with cargo on first use (a no-op when up to
//! date) because `CARGO_BIN_EXE_*` covers only this package's binaries; `RILL_BROKER_BIN` overrides it.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a broker may take to accept connections after spawning.
const BROKER_START_MS_MAX: u64 = 60_000;
/// Pause between connection attempts while the broker starts.
const PROBE_INTERVAL_MS: u64 = 50;

/// Serialises broker builds: two tests building at once would only wait on cargo's lock anyway.
static BUILD: Mutex<()> = Mutex::new(());

/// A broker process in a temporary data directory, killed when dropped.
struct Broker {
    child: Child,
    address: String,
    _data: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let binary = broker_binary();
        let data = tempfile::tempdir().expect("temporary data directory");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args(["--data-dir", data.path().to_str().expect("utf-8 path"), "--listen", &address, "--log", "warn"])
            // No Kafka listener: other tests' brokers may hold its default port.
            .args(["--kafka-listen", "none", "--http-listen", "none"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let broker = Broker { child, address, _data: data };
        let deadline = Instant::now() + Duration::from_millis(BROKER_START_MS_MAX);
        while TcpStream::connect(&broker.address).is_err() {
            assert!(Instant::now() < deadline, "broker did not listen on {} in time", broker.address);
            std::thread::sleep(Duration::from_millis(PROBE_INTERVAL_MS));
        }
        broker
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/<profile>/rill-broker`, next to this test's own `deps` directory, built if needed.
fn broker_binary() -> PathBuf {
    if let Ok(path) = std::env::var("RILL_BROKER_BIN") {
        return PathBuf::from(path);
    }
    let test_exe = std::env::current_exe().expect("test executable path");
    let profile_dir = test_exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.args(["build", "-p", "rill-broker"]);
    if profile_dir.file_name().is_some_and(|name| name == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p rill-broker failed");
    profile_dir.join("rill-broker")
}

fn rill_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rill-bench"))
        .args(args)
        .env_remove("RILL_BOOTSTRAP")
        .output()
        .expect("run rill-bench")
}

fn json_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "rill-bench failed\nstdout: {stdout}\nstderr: {stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout}"))
}

fn assert_latency_object(value: &Value) {
    let object = value.as_object().unwrap_or_else(|| panic!("latency is not an object: {value}"));
    let get = |key: &str| object.get(key).and_then(Value::as_f64).unwrap_or_else(|| panic!("missing {key}"));
    let (p50, p90, p99, p999, max) = (get("p50"), get("p90"), get("p99"), get("p999"), get("max"));
    assert!(p50 > 0.0 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max, "{value}");
}

#[test]
fn produce_json_reports_every_documented_field() {
    let broker = Broker::start();
    let output = rill_bench(&["produce", "--bootstrap", &broker.address, "--messages", "2000", "--json"]);
    let report = json_of(&output);
    assert_eq!(report["scenario"], "produce");
    assert_eq!(report["messages"], 2000);
    assert_eq!(report["bytes"], 2000 * 1024, "default 1 KiB values");
    assert!(report["seconds"].as_f64().unwrap() > 0.0);
    assert!(report["msgs_per_sec"].as_f64().unwrap() > 0.0);
    assert!(report["mb_per_sec"].as_f64().unwrap() > 0.0);
    assert_latency_object(&report["produce_latency_ms"]);
    assert!(report["e2e_latency_ms"].is_null(), "produce runs do not measure e2e latency");
}

#[test]
fn e2e_json_measures_latency_to_the_consumer() {
    let broker = Broker::start();
    let output = rill_bench(&[
        "e2e",
        "--bootstrap",
        &broker.address,
        "--messages",
        "1000",
        "--rate",
        "5000",
        "--message-size",
        "200",
        "--partitions",
        "2",
        "--key-distribution",
        "round-robin",
        "--json",
    ]);
    let report = json_of(&output);
    assert_eq!(report["scenario"], "e2e");
    assert_eq!(report["messages"], 1000, "every record sent was received");
    assert_eq!(report["bytes"], 1000 * 200);
    assert_latency_object(&report["produce_latency_ms"]);
    assert_latency_object(&report["e2e_latency_ms"]);
}

#[test]
fn idempotence_without_acks_all_is_refused_before_connecting() {
    // No broker listens on port 1; the refusal must come first, with a message naming the conflict.
    let output = rill_bench(&["produce", "--bootstrap", "127.0.0.1:1", "--idempotence", "on", "--acks", "leader"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--idempotence on needs --acks all"), "{stderr}");
}
