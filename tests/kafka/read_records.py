"""Reads COUNT records of TOPIC from the beginning of every partition with kafka-python and prints each as
JSON: {"p", "o", "ts", "key", "value", "headers": [[key, value], ...]}, keys and values as UTF-8 (null when
absent).

Usage: python read_records.py BOOTSTRAP TOPIC COUNT
"""

import json
import sys

from kafka import KafkaConsumer, TopicPartition


def text(b):
    return None if b is None else b.decode()


def main(bootstrap, topic, count):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=20000)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    read = 0
    for r in consumer:
        headers = [[k, text(v)] for k, v in r.headers]
        line = {"p": r.partition, "o": r.offset, "ts": r.timestamp, "key": text(r.key), "value": text(r.value)}
        line["headers"] = headers
        print(json.dumps(line), flush=True)
        read += 1
        if read == count:
            break
    consumer.close()
    if read < count:
        sys.exit(f"read {read} records of {count}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
