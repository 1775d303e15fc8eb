//! cargo-fuzz binary for the `checkpoints` target; its body is `rill_broker::fuzzing::target("checkpoints")`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static RUN: OnceLock<fn(&[u8]) -> bool> = OnceLock::new();
    let run = RUN.get_or_init(|| rill_broker::fuzzing::target("checkpoints").expect("a fuzz target").run);
    run(data);
});
