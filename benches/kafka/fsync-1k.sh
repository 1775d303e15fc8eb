#!/usr/bin/env bash
# The fsync-1k scenario over the Kafka protocol: one librdkafka producer (kcat), one partition, 1 KiB values,
# acks=all, idempotent, durability=fsync, librdkafka batching like rill-bench's (1 MiB batches, 5 ms linger).
# Prints MB/s (values only, as rill-bench reports) for RECORDS records, to set beside
# `rill-bench --preset fsync-1k` (docs/PERFORMANCE.md, "Kafka protocol").
#
#   benches/kafka/fsync-1k.sh [KAFKA_ADDR] [GRPC_ADDR] [RECORDS]
#
# Needs a running broker (`cargo run --release --bin rill-broker`), `target/release/rill` and kcat
# (`bash .ci/kafka-clients.sh`); RILL_CLI names another `rill` binary.
set -euo pipefail
cd "$(dirname "$0")/../.."

kafka=${1:-127.0.0.1:9092}
grpc=${2:-127.0.0.1:9400}
records=${3:-1000000}
topic=bench-kafka-fsync-1k-$$
value_bytes=1024
rill=${RILL_CLI:-target/release/rill}
input=$(mktemp)
trap 'rm -f "$input"' EXIT

# Lines of 1023 bytes plus the newline kcat strips: 1 KiB values, each distinct.
python3 - "$records" "$value_bytes" > "$input" <<'PY'
import sys
n, size = int(sys.argv[1]), int(sys.argv[2])
pad = "x" * size
out = sys.stdout
for i in range(n):
    head = f"{i:012d}"
    out.write(head + pad[: size - len(head)] + "\n")
PY

"$rill" --bootstrap "$grpc" topic create "$topic" --partitions 1 --config durability=fsync >/dev/null
start=$(date +%s.%N)
kcat -b "$kafka" -P -t "$topic" -l "$input" \
    -X enable.idempotence=true -X acks=all -X linger.ms=5 -X batch.size=1048576 \
    -X queue.buffering.max.kbytes=1048576
end=$(date +%s.%N)
"$rill" --bootstrap "$grpc" topic describe "$topic" | tail -1
python3 -c "
records, size, start, end = $records, $value_bytes, $start, $end
secs = end - start
print(f'kafka fsync-1k: {records} records in {secs:.2f} s: {records * size / secs / 1e6:.0f} MB/s, {records / secs:.0f} msgs/s')
"
"$rill" --bootstrap "$grpc" topic delete "$topic" >/dev/null
