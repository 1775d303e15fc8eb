#!/usr/bin/env bash
# fsync-1k in plaintext and over TLS side by side: for each of RUNS rounds, a fresh release broker without TLS
# and one with `--tls-client-auth require`, each measured with `rill-bench --preset fsync-1k` (the TLS run
# presenting a client certificate), alternating so both see the same machine load. Prints one JSON report
# per run (docs/PERFORMANCE.md, "TLS").
#
#   benches/tls/fsync-1k.sh [RUNS] [PORT]
#
# Needs `cargo build --release -p rill-broker -p rill-client -p rill-bench`. Writes certificates with
# `rill dev-certs` and data into temporary directories, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."

runs=${1:-3}
port=${2:-9600}
address=127.0.0.1:$port
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
certs=$work/certs
target/release/rill dev-certs "$certs" > /dev/null

for run in $(seq 1 "$runs"); do
  for mode in plain tls; do
    broker_tls=()
    client_tls=()
    if [ "$mode" = tls ]; then
      broker_tls=(--tls-cert "$certs/broker.pem" --tls-key "$certs/broker-key.pem" --tls-ca "$certs/ca.pem"
        --tls-client-auth require)
      client_tls=(--tls-ca "$certs/ca.pem" --tls-cert "$certs/admin.pem" --tls-key "$certs/admin-key.pem")
    fi
    rm -rf "$work/data"
    target/release/rill-broker --data-dir "$work/data" --listen "$address" --kafka-listen none --http-listen none --log warn \
      "${broker_tls[@]}" &
    broker=$!
    for _ in $(seq 1 100); do
      target/release/rill --bootstrap "$address" "${client_tls[@]}" cluster status > /dev/null 2>&1 && break
      sleep 0.1
    done
    printf '%s run %s: ' "$mode" "$run"
    target/release/rill-bench --bootstrap "$address" "${client_tls[@]}" --preset fsync-1k --json | tr -d '\n'
    echo
    kill -TERM "$broker"
    wait "$broker" || true
  done
done
