"""Produces records given as JSON lines in a file ({"key", "value", "ts", "headers": [[k, v], ...]}) to TOPIC
partition 0 with confluent-kafka, in order, and fails unless every one is acknowledged.

Usage: python produce_records.py BOOTSTRAP TOPIC RECORDS.jsonl
"""

import json
import sys

from confluent_kafka import Producer


def main(bootstrap, topic, path):
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    failures = []

    def report(err, msg):
        if err is not None:
            failures.append(str(err))

    for line in open(path):
        r = json.loads(line)
        headers = [(k, None if v is None else v.encode()) for k, v in r["headers"]]
        producer.produce(
            topic,
            partition=0,
            key=r["key"].encode(),
            value=r["value"].encode(),
            timestamp=r["ts"],
            headers=headers,
            on_delivery=report,
        )
    left = producer.flush(60)
    if failures or left:
        sys.exit(f"not acknowledged: {failures}, {left} without a report")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
