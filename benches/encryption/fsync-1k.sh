#!/usr/bin/env bash
# fsync-1k on a plaintext topic and on an `encryption=aes-256-gcm` topic side by side: for each of RUNS
# rounds, a fresh release broker (the same key file for both, so only the topic differs) measured with
# `rill-bench --preset fsync-1k`, the encrypted run adding `--topic-config encryption=aes-256-gcm`;
# alternating so both see the same machine load. Prints one JSON report per run (docs/PERFORMANCE.md,
# "Encryption at rest").
#
#   benches/encryption/fsync-1k.sh [RUNS] [PORT]     (MODES="encrypted plain" reverses the order)
#
# Needs `cargo build --release -p rill-broker -p rill-client -p rill-bench` (binaries under
# ${CARGO_TARGET_DIR:-target}/release). Writes the key file and data into a temporary directory, removed at
# the end.
set -euo pipefail
cd "$(dirname "$0")/../.."

runs=${1:-3}
port=${2:-9610}
address=127.0.0.1:$port
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A fixed benchmark key: the data is thrown away with the directory.
echo "bench:$(printf 'ab%.0s' $(seq 1 32))" > "$work/keys"

for run in $(seq 1 "$runs"); do
  for mode in ${MODES:-plain encrypted}; do
    topic_config=()
    if [ "$mode" = encrypted ]; then
      topic_config=(--topic-config encryption=aes-256-gcm)
    fi
    rm -rf "$work/data"
    "$bin/rill-broker" --data-dir "$work/data" --listen "$address" --kafka-listen none --http-listen none --log warn \
      --encryption-key-file "$work/keys" &
    broker=$!
    for _ in $(seq 1 100); do
      "$bin/rill" --bootstrap "$address" cluster status > /dev/null 2>&1 && break
      sleep 0.1
    done
    printf '%s run %s: ' "$mode" "$run"
    "$bin/rill-bench" --bootstrap "$address" --preset fsync-1k "${topic_config[@]}" --json | tr -d '\n'
    echo
    kill -TERM "$broker"
    wait "$broker" || true
  done
done
