#!/usr/bin/env bash
# End-to-end check of the compose cluster, as CI runs it: build the image, start three nodes, produce and
# consume through them, stop the leader of a partition, and check that writes continue and that every
# acknowledged record is still there.
set -euo pipefail
cd "$(dirname "$0")/.."

compose() { docker-compose -p rill-ci -f docker-compose.yaml "$@"; }
cleanup() {
    status=$?
    if [ "$status" -ne 0 ]; then compose logs --tail 40 || true; fi
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    rm -rf "$work"
    exit "$status"
}
work=$(mktemp -d)
trap cleanup EXIT

docker/build-image.sh
rill=target/release/rill
bootstrap=127.0.0.1:9401,127.0.0.1:9402,127.0.0.1:9403

compose down -v --remove-orphans >/dev/null 2>&1 || true
compose up -d

echo "waiting for three healthy nodes"
for _ in $(seq 1 90); do
    healthy=0
    for node in rill-1 rill-2 rill-3; do
        state=$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q "$node")" 2>/dev/null || echo none)
        [ "$state" = healthy ] && healthy=$((healthy + 1))
    done
    [ "$healthy" -eq 3 ] && break
    sleep 2
done
[ "$healthy" -eq 3 ] || { echo "error: the cluster did not become healthy"; exit 1; }
"$rill" --bootstrap "$bootstrap" cluster status

"$rill" --bootstrap "$bootstrap" topic create ci --partitions 3 --replication-factor 3 --config min.insync.replicas=2
seq 1 3000 | sed 's/^/before-/' > "$work/before.txt"
"$rill" --bootstrap "$bootstrap" produce ci < "$work/before.txt"
"$rill" --bootstrap "$bootstrap" consume ci --from-beginning --max-messages 3000 > "$work/read1.txt"
[ "$(sort "$work/read1.txt")" = "$(sort "$work/before.txt")" ] || { echo "error: first read differs"; exit 1; }
# Kafka clients reach the same records through each node's published Kafka port (kcat: .ci/kafka-clients.sh).
kcat -b 127.0.0.1:9093,127.0.0.1:9094,127.0.0.1:9095 -C -t ci -o beginning -e -q > "$work/kcat1.txt"
[ "$(sort "$work/kcat1.txt")" = "$(sort "$work/before.txt")" ] || { echo "error: kcat read differs"; exit 1; }

leader=$("$rill" --bootstrap "$bootstrap" topic describe ci --format json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitions"][0]["leader"])')
echo "stopping rill-$leader, the leader of partition 0"
compose kill -s SIGKILL "rill-$leader"

seq 1 3000 | sed 's/^/after-/' > "$work/after.txt"
"$rill" --bootstrap "$bootstrap" produce ci < "$work/after.txt"
"$rill" --bootstrap "$bootstrap" topic describe ci
cat "$work/before.txt" "$work/after.txt" | sort > "$work/all.txt"
"$rill" --bootstrap "$bootstrap" consume ci --from-beginning --max-messages 6000 | sort > "$work/read2.txt"
if ! diff -q "$work/all.txt" "$work/read2.txt" >/dev/null; then
    echo "error: records lost or duplicated after the failover:"
    diff "$work/all.txt" "$work/read2.txt" | head -20
    exit 1
fi
echo "compose cluster: 6000 acknowledged records intact after killing node $leader"
