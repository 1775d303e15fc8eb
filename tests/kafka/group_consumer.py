"""A member of consumer group GROUP reading TOPIC with CLIENT ("confluent": confluent-kafka/librdkafka, or
"kafka-python") and assignor STRATEGY. Prints one JSON line per record ({"p", "o", "v"}) and per assignment
change ({"assigned": [partitions]}), and commits each poll's offsets synchronously once they are printed
(at-least-once). Exits cleanly (closing, which leaves the group) on SIGTERM or once it has seen no record for
IDLE_S seconds after its first one.

Usage: python group_consumer.py BOOTSTRAP GROUP TOPIC CLIENT STRATEGY IDLE_S
"""

import json
import signal
import sys
import time

stopping = False


def stop(*_):
    global stopping
    stopping = True


def out(line):
    print(json.dumps(line), flush=True)


def confluent(bootstrap, group, topic, strategy, idle_s):
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "partition.assignment.strategy": strategy,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )

    # Under cooperative-sticky the callbacks name only the partitions added or taken away (under eager ones,
    # all of them), and run before the consumer's own assignment changes.
    held = set()

    def assigned(c, partitions):
        held.update(p.partition for p in partitions)
        out({"assigned": sorted(held)})

    def revoked(c, partitions):
        held.difference_update(p.partition for p in partitions)
        out({"assigned": sorted(held)})

    consumer.subscribe([topic], on_assign=assigned, on_revoke=revoked, on_lost=revoked)
    last = None
    while not stopping and (last is None or time.monotonic() - last < idle_s):
        messages = consumer.consume(500, 0.5)
        for m in messages:
            if m.error():
                continue
            out({"p": m.partition(), "o": m.offset(), "v": m.value().decode()})
            last = time.monotonic()
        if messages:
            consumer.commit(asynchronous=False)
    consumer.close()


def kafka_python(bootstrap, group, topic, strategy, idle_s):
    from kafka import KafkaConsumer
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    assignor = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}[strategy]
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        partition_assignment_strategy=[assignor],
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    consumer.subscribe([topic])
    last = None
    shown = None
    while not stopping and (last is None or time.monotonic() - last < idle_s):
        batches = consumer.poll(timeout_ms=500)
        now = sorted(p.partition for p in consumer.assignment())
        if now != shown:
            out({"assigned": now})
            shown = now
        for records in batches.values():
            for r in records:
                out({"p": r.partition, "o": r.offset, "v": r.value.decode()})
                last = time.monotonic()
        if batches:
            consumer.commit()
    consumer.close()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop)
    bootstrap, group, topic, client, strategy, idle_s = sys.argv[1:7]
    run = {"confluent": confluent, "kafka-python": kafka_python}[client]
    run(bootstrap, group, topic, strategy, float(idle_s))
