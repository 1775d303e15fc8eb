//! The `rill-broker` binary: parses configuration, sets up logging, and runs the broker until SIGINT/SIGTERM.

use clap::Parser;
use rill_broker::{Args, BrokerConfig};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    let config = match BrokerConfig::resolve(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = match &config.log_filter {
        Some(f) => EnvFilter::try_new(f),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info,openraft=warn")),
    };
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: invalid log filter: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_json {
        // One JSON object per line: timestamp, level, target, message and every field, flattened.
        logs.json().flatten_event(true).with_current_span(false).init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(rill_broker::run(config, stop_signal())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Makes glibc's allocator reuse freed memory instead of handing it back to the kernel. By default every
/// allocation above a dynamic threshold (a produce request's buffer, a fetch response) gets fresh pages from
/// `mmap` and returns them with `munmap` when freed, so each request pays page faults and zeroing of its whole
/// buffer; on virtual machines where untouched guest memory is slow to fault in, that cost grows several times
/// (docs/PERFORMANCE.md). Serving those from the heap up to 32 MiB (glibc's ceiling) and trimming the heap
/// only above 64 MiB free keeps a few hot megabytes in reuse. Resident memory at rest is unaffected: an idle
/// broker never grew its heap.
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// Resolves on the first SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
