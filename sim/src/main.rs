//! `rill-sim`: runs simulations of Rill's replication protocol.
//!
//! - `rill-sim --seed N [--trace]`: one run; `--trace` prints its whole trace (the same bytes every time).
//! - `rill-sim --seeds A..B`: a soak over seeds A (inclusive) to B (exclusive); stops at the first failure.
//! - `--varied` (with either): the run's shape (brokers, partitions, clients, length) comes from the seed too.
//! - `--harsh` (with either): varied shapes under far more faults.
//!
//! A failing run prints its anomalies, the command that replays it and the end of its trace.

use std::process::ExitCode;

use rill_sim::{Options, run};

const TRIMMED_TRACE_LINES: usize = 80;
/// A soak reports its progress every this many seeds, so a long one shows how far it got.
const SOAK_PROGRESS_SEEDS: u64 = 1_000;

fn usage() -> ExitCode {
    eprintln!("usage: rill-sim [--varied | --harsh] --seed N [--trace] | [--varied | --harsh] --seeds A..B");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let trace = args.iter().any(|a| a == "--trace");
    let options = if args.iter().any(|a| a == "--harsh") {
        Options::harsh
    } else if args.iter().any(|a| a == "--varied") {
        Options::varied
    } else {
        Options::new
    };
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    if let Some(seed) = value("--seed") {
        let Ok(seed) = seed.parse::<u64>() else { return usage() };
        let mut options = options(seed);
        options.trace = true;
        let outcome = run(options);
        if trace {
            for line in &outcome.trace {
                println!("{line}");
            }
        }
        print!("{}", outcome.describe(if trace { 0 } else { TRIMMED_TRACE_LINES }));
        return if outcome.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    if let Some(range) = value("--seeds") {
        let Some((start, end)) = range.split_once("..") else { return usage() };
        let (Ok(start), Ok(end)) = (start.parse::<u64>(), end.parse::<u64>()) else { return usage() };
        let started = std::time::Instant::now();
        for seed in start..end {
            let outcome = run(options(seed));
            if !outcome.passed() {
                // Run again with the trace on: the same seed gives the same run.
                let mut options = options(seed);
                options.trace = true;
                print!("{}", run(options).describe(TRIMMED_TRACE_LINES));
                return ExitCode::FAILURE;
            }
            if (seed + 1 - start) % SOAK_PROGRESS_SEEDS == 0 {
                println!("seeds {start}..{} passed ({:.0} s)", seed + 1, started.elapsed().as_secs_f64());
            }
        }
        println!("seeds {start}..{end} passed in {:.1} s", started.elapsed().as_secs_f64());
        return ExitCode::SUCCESS;
    }
    usage()
}
