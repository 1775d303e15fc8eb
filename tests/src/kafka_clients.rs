//! Real Kafka clients for tests of the Kafka listener: Debian's `kcat` (librdkafka) and a Python virtual
//! environment with `confluent-kafka` and `kafka-python`, both installed by `bash .ci/kafka-clients.sh`
//! (the environment in `target/kafka-venv`, next to the test binaries). Python scripts live in
//! `tests/kafka/`. `RILL_KCAT` and `RILL_KAFKA_PYTHON` override where the clients are looked for.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::broker::{profile_dir, read_in_background};

/// How often a running client is checked for having exited.
const POLL_INTERVAL_MS: u64 = 10;
const INSTALL_HINT: &str = "run `bash .ci/kafka-clients.sh` from the workspace root to install the Kafka clients";

/// What a client run produced.
#[derive(Debug)]
pub struct ClientOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ClientOutput {
    /// Asserts the client exited successfully and returns itself, showing its output if it did not.
    #[track_caller]
    pub fn success(self) -> ClientOutput {
        assert!(
            self.status.success(),
            "client failed with {}:\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// The `kcat` binary.
///
/// # Panics
///
/// If it is not installed, saying how to install it.
pub fn kcat() -> PathBuf {
    if let Some(path) = std::env::var_os("RILL_KCAT") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("kcat")).find(|candidate| candidate.is_file()));
    found.flatten().unwrap_or_else(|| panic!("kcat is not on PATH: {INSTALL_HINT}"))
}

/// The Python interpreter of the Kafka clients' virtual environment.
///
/// # Panics
///
/// If the environment does not exist, saying how to create it.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("RILL_KAFKA_PYTHON") {
        return PathBuf::from(path);
    }
    let target_dir =
        profile_dir().parent().expect("the profile directory is inside the target directory").to_path_buf();
    let python = target_dir.join("kafka-venv").join("bin").join("python");
    assert!(python.is_file(), "no Python environment at {}: {INSTALL_HINT}", python.display());
    python
}

/// `tests/kafka/NAME`, a Python script of these tests.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kafka").join(name)
}

/// Runs `kcat ARGS`, killing it after `timeout_ms`.
pub fn run_kcat(args: &[&str], timeout_ms: u64) -> ClientOutput {
    let mut command = Command::new(kcat());
    command.args(args);
    run(command, timeout_ms)
}

/// Runs the Python script `tests/kafka/NAME ARGS` in the clients' environment, killing it after `timeout_ms`.
pub fn run_python(name: &str, args: &[&str], timeout_ms: u64) -> ClientOutput {
    let mut command = Command::new(python());
    command.arg(script(name)).args(args);
    run(command, timeout_ms)
}

/// Runs `command` to its end with its output collected, or kills it once `timeout_ms` pass and panics.
///
/// # Panics
///
/// If the command cannot start or outlives `timeout_ms`; the message includes its output so far.
pub fn run(command: Command, timeout_ms: u64) -> ClientOutput {
    let (described, mut child) = spawn(command);
    let stdout = read_in_background(child.stdout.take().expect("stdout piped"));
    let stderr = read_in_background(child.stderr.take().expect("stderr piped"));
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the client") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned();
            panic!("{described} ran longer than {timeout_ms} ms; stderr:\n{stderr}");
        }
        thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
    };
    ClientOutput {
        status,
        stdout: String::from_utf8_lossy(&stdout.join().expect("stdout reader")).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned(),
    }
}

/// Starts `command` with no input and its output piped; returns how it reads in messages, and the process.
///
/// # Panics
///
/// If it cannot start.
fn spawn(mut command: Command) -> (String, std::process::Child) {
    let described = format!("{command:?}");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
    (described, child)
}

/// A client process whose standard output is read line by line while it runs, so a test can act on what it
/// has printed so far (kill a broker once a producer has written some records, say). Killed when dropped.
pub struct StreamingClient {
    described: String,
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: thread::JoinHandle<Vec<u8>>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl StreamingClient {
    /// Starts the Python script `tests/kafka/NAME ARGS` in the clients' environment.
    pub fn python(name: &str, args: &[&str]) -> StreamingClient {
        let mut command = Command::new(python());
        command.arg(script(name)).args(args);
        let (described, mut child) = spawn(command);
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, lines) = std::sync::mpsc::channel();
        thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = read_in_background(child.stderr.take().expect("stderr piped"));
        StreamingClient { described, child, lines, stderr, seen: Vec::new() }
    }

    /// Reads lines until `done` holds for the lines seen so far.
    ///
    /// # Panics
    ///
    /// If `within` passes first, or the client ends first.
    pub fn read_until(&mut self, within: Duration, what: &str, mut done: impl FnMut(&[String]) -> bool) {
        let deadline = Instant::now() + within;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(e) => panic!("{}: waiting for {what}: {e:?}; {} lines read", self.described, self.seen.len()),
            }
        }
    }

    /// Takes whatever lines have arrived, without waiting.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.drain();
    }

    /// Asks the client to stop (SIGTERM).
    pub fn terminate(&self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
    }

    /// Waits for the client to exit (at most `within`), reads the rest of its output, and asserts it
    /// succeeded. Returns every line it printed.
    pub fn finish(mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll the client") {
                break status;
            }
            assert!(Instant::now() < deadline, "{} ran longer than {within:?}", self.described);
            thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        };
        // The reader thread ends at end of file, which the exit brings.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let stderr = std::mem::replace(&mut self.stderr, thread::spawn(Vec::new));
        let stderr = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned();
        assert!(status.success(), "{} failed with {status}:\nstderr:\n{stderr}", self.described);
        std::mem::take(&mut self.seen)
    }
}

impl Drop for StreamingClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
