#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while, starting from its seeds and the regression inputs kept for it.
#
#   fuzz/run.sh TARGET [SECONDS] [libFuzzer flags...]      e.g. fuzz/run.sh record_batch 300
#   fuzz/run.sh --list                                     the targets
#
# cargo-fuzz needs nightly's -Z flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them (the only
# toolchain on the build machines). Builds go to $CARGO_TARGET_DIR/fuzz (default target/fuzz), with debug
# assertions and overflow checks on (-a) and AddressSanitizer (cargo-fuzz's default). A crash is written to
# fuzz/artifacts/TARGET/; once fixed, copy it to fuzz/regressions/TARGET/ (docs/FUZZING.md).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export RUSTC_BOOTSTRAP=1

if [[ "${1:-}" == "--list" ]]; then
    cd "$root/fuzz" && exec cargo fuzz list
fi
target="${1:?usage: fuzz/run.sh TARGET [SECONDS] [libFuzzer flags...]}"
seconds="${2:-300}"
shift $(( $# >= 2 ? 2 : 1 ))

# New inputs go to corpus/TARGET (not committed); seeds/TARGET (valid inputs made by the real encoders, kept
# in step by broker/tests/fuzz_targets.rs) and regressions/TARGET are read too.
corpora=("corpus/$target" "seeds/$target")
if [[ -d "$root/fuzz/regressions/$target" ]]; then
    corpora+=("regressions/$target")
fi
mkdir -p "$root/fuzz/corpus/$target"

cd "$root/fuzz"
# -timeout: an input running 10 s is a hang; -rss_limit_mb: a decoder that needs 2 GiB is a finding
# (decompression is bounded at 64 MiB); -print_final_stats: the exec count docs/FUZZING.md reports.
exec cargo fuzz run -a --target-dir "$CARGO_TARGET_DIR/fuzz" "$target" "${corpora[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@"
