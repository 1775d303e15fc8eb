//! The fuzz targets under stable Rust: every target body of `rill_broker::fuzzing::targets()` (the same
//! functions the cargo-fuzz binaries in `fuzz/` call) gets its seeds, random bytes, and mutations of its
//! seeds (bit flips, byte changes, truncations, insertions, removals, splices of two seeds, and 1-, 2-, 4- and
//! 8-byte fields set to extremes), then every regression input kept under `fuzz/regressions/<target>/`. A
//! target passes when nothing panics. The random cases come from a fixed seed, so a failure replays; the
//! shrunk input is printed, and belongs in the regression directory once fixed.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use rill_broker::fuzzing::{Target, target, targets};

/// Cases per target of each kind; `RILL_FUZZ_CASES` raises it for a longer soak.
fn cases() -> u32 {
    std::env::var("RILL_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// One edit of an input. Positions are `Index`es, mapped onto the input's length when applied.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Remove(Index, u8),
    /// A field of 1, 2, 4 or 8 bytes at a position set to 0, all ones, the largest or smallest signed value.
    Extreme(Index, u8, u8),
    /// This input's prefix up to the first index, then another seed's suffix from the second.
    Splice(Index, Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte(at, byte)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, b)| Mutation::Insert(at, b)),
        (any::<Index>(), 1..32u8).prop_map(|(at, n)| Mutation::Remove(at, n)),
        (any::<Index>(), 0..4u8, 0..4u8).prop_map(|(at, width, value)| Mutation::Extreme(at, width, value)),
        (any::<Index>(), any::<Index>(), any::<Index>()).prop_map(|(at, seed, from)| Mutation::Splice(at, seed, from)),
    ]
}

fn apply(mut input: Vec<u8>, mutations: &[Mutation], seeds: &[Vec<u8>]) -> Vec<u8> {
    for m in mutations {
        let len = input.len();
        match m {
            Mutation::FlipBit(at, bit) if len > 0 => input[at.index(len)] ^= 1 << bit,
            Mutation::SetByte(at, byte) if len > 0 => input[at.index(len)] = *byte,
            Mutation::Truncate(at) => input.truncate(at.index(len + 1)),
            Mutation::Insert(at, bytes) => {
                let at = at.index(len + 1);
                input.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove(at, n) if len > 0 => {
                let at = at.index(len);
                input.drain(at..(at + usize::from(*n)).min(len));
            }
            Mutation::Extreme(at, width, value) => {
                let width = 1usize << width;
                if len >= width {
                    let at = at.index(len - width + 1);
                    let mut field = match value {
                        0 => vec![0u8; width],
                        1 => vec![0xff; width],
                        2 => [&[0x7f][..], &vec![0xff; width - 1]].concat(),
                        _ => [&[0x80][..], &vec![0u8; width - 1]].concat(),
                    };
                    input[at..at + width].swap_with_slice(&mut field);
                }
            }
            Mutation::Splice(at, seed, from) => {
                let other = &seeds[seed.index(seeds.len())];
                input.truncate(at.index(len + 1));
                input.extend_from_slice(&other[from.index(other.len() + 1)..]);
            }
            _ => {}
        }
    }
    input
}

fn runner() -> TestRunner {
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// Runs `input` through `target`, turning a panic into a test failure that shows the input in hex (the
/// bytes to keep under `fuzz/regressions/<target>/` once the bug is fixed).
fn run_case(target: &Target, input: &[u8]) -> Result<(), TestCaseError> {
    std::panic::catch_unwind(|| (target.run)(input)).map(|_accepted| ()).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        TestCaseError::fail(format!("{message}\ninput ({} bytes): {hex}", input.len()))
    })
}

/// Seeds, then random inputs, then mutated seeds, through the target named `name`.
fn fuzz(name: &str) {
    let target: Target = target(name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    let seeds = (target.seeds)();
    assert!(!seeds.is_empty(), "{name} has seeds");
    for (i, seed) in seeds.iter().enumerate() {
        assert!(
            (target.run)(seed),
            "{name} refuses its seed {i}: {}",
            seed.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
    }
    let random = proptest::collection::vec(any::<u8>(), 0..600);
    runner().run(&random, |input| run_case(&target, &input)).unwrap_or_else(|e| panic!("{name}, random input: {e}"));
    let mutated = (0..seeds.len(), proptest::collection::vec(mutation(), 1..6));
    runner()
        .run(&mutated, |(seed, mutations)| run_case(&target, &apply(seeds[seed].clone(), &mutations, &seeds)))
        .unwrap_or_else(|e| panic!("{name}, mutated seed: {e}"));
}

macro_rules! fuzz_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                fuzz(stringify!($name));
            }
        )*
        const TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

fuzz_tests!(
    record_batch,
    decompress,
    segment_scan,
    index_files,
    checkpoints,
    log_dir,
    encrypted_segment,
    producer_snapshot,
    metadata_log,
    metadata_snapshot,
    group_records,
    kafka_request,
    grpc_request,
);

#[test]
fn every_target_has_a_test_and_a_cargo_fuzz_binary() {
    let names: Vec<&str> = targets().iter().map(|t| t.name).collect();
    assert_eq!(names, TESTED, "the tests above list every target, in order");
    for name in names {
        let binary = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let source = std::fs::read_to_string(&binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        assert!(source.contains(&format!("target(\"{name}\")")), "{} runs the target {name}", binary.display());
    }
}

/// `fuzz/seeds/<target>/seed-<n>` holds exactly the target's seeds, the starting corpus of `fuzz/run.sh`
/// (committed, so that running a fuzzer needs no build but the fuzz crate's). After a change to a format or
/// a seed, `UPDATE_SEEDS=1 cargo test -p rill-broker --test fuzz_targets seed_files` rewrites them (the way
/// rust-analyzer's `UPDATE_EXPECT=1` does).
#[test]
fn seed_files_are_the_targets_seeds() {
    let update = std::env::var_os("UPDATE_SEEDS").is_some();
    let mut stale = Vec::new();
    for target in targets() {
        let dir = fuzz_dir().join("seeds").join(target.name);
        let seeds = (target.seeds)();
        if update {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create a seed directory");
            for (i, seed) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), seed).expect("write a seed");
            }
            continue;
        }
        let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        let same = files == seeds.len()
            && seeds
                .iter()
                .enumerate()
                .all(|(i, seed)| std::fs::read(dir.join(format!("seed-{i}"))).ok().as_ref() == Some(seed));
        if !same {
            stale.push(target.name);
        }
    }
    assert!(
        stale.is_empty(),
        "fuzz/seeds is out of date for {stale:?}: run UPDATE_SEEDS=1 cargo test -p rill-broker --test fuzz_targets seed_files"
    );
}

/// Every input a fuzzer once crashed on, kept as `fuzz/regressions/<target>/<name>`, runs clean now.
#[test]
fn regression_inputs_run_clean() {
    let root = fuzz_dir().join("regressions");
    let mut ran = 0;
    let mut failed = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display())) {
        let dir = entry.expect("a directory entry").path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().and_then(|n| n.to_str()).expect("a target name").to_string();
        let target = target(&name).unwrap_or_else(|| panic!("{} names no fuzz target", dir.display()));
        for input in std::fs::read_dir(&dir).expect("a regression directory") {
            let path = input.expect("a directory entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if let Err(e) = run_case(&target, &bytes) {
                failed.push(format!("{}: {e}", path.display()));
            }
            ran += 1;
        }
    }
    assert!(ran > 0, "no regression inputs under {}", root.display());
    assert!(failed.is_empty(), "regression inputs that fail again:\n{}", failed.join("\n"));
}
