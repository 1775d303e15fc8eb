//! cargo-fuzz binary for the `producer_snapshot` target; its body is `rill_broker::fuzzing::target("producer_snapshot")`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static RUN: OnceLock<fn(&[u8]) -> bool> = OnceLock::new();
    let run = RUN.get_or_init(|| rill_broker::fuzzing::target("producer_snapshot").expect("a fuzz target").run);
    run(data);
});
