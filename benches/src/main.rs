//! `rill-bench`: throughput and latency of a running Rill cluster, for producers (send → acknowledgement),
//! consumers, and both together (send → receipt), with presets for the standard runs of
//! docs/PERFORMANCE.md. The storage micro-benchmarks live in `benches/` (criterion).
//!
//! Data flow: `cli` parses, `settings` merges flags over a preset and defaults, `topic` prepares the topic,
//! `scenario` connects the clients and runs `produce` and `consume` workers that record into `stats`, and
//! `report` prints the table or JSON. `schedule` and `payload` hold the pure parts (send times, record
//! contents), so they are tested without a broker.

mod cli;
mod consume;
mod inflight;
mod payload;
mod produce;
mod progress;
mod report;
mod scenario;
mod schedule;
mod settings;
mod stats;
mod topic;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::settings::Settings;

fn main() -> ExitCode {
    // As the broker does (broker/src/main.rs, `keep_freed_memory`): reuse freed request buffers instead of
    // taking fresh pages from the kernel for each, so the load generator spends its core on load.
    // SAFETY: mallopt only sets allocator parameters; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
    let cli = Cli::parse();
    let settings = match Settings::resolve(cli.command, cli.options) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(scenario::run(&settings)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if settings.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    // Failed deliveries or lost records make the figures suspect: say so in the exit status too.
    if report.errors > 0 || report.missing > 0 {
        eprintln!(
            "error: {} failed deliveries or fetches, {} records never received{}",
            report.errors,
            report.missing,
            report.first_error.as_deref().map(|e| format!("; first failure: {e}")).unwrap_or_default()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
