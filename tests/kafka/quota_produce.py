"""Produces BYTES bytes to TOPIC in 16 KiB records with confluent-kafka (librdkafka) under client id CLIENT_ID,
waits for every acknowledgement, and prints one JSON line: the seconds it took, the bytes acknowledged, and
the throttle times the broker reported (librdkafka's throttle_cb, one event per throttled response).

Usage: python quota_produce.py BOOTSTRAP TOPIC CLIENT_ID BYTES
"""

import json
import sys
import time

from confluent_kafka import Producer

RECORD_BYTES = 16 * 1024


def main(bootstrap, topic, client_id, total):
    throttles = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "acks": "all",
            "linger.ms": 5,
            # Small batches, so that the last answer (sent at once, its hold not waited out) is a small part
            # of the run.
            "batch.size": 65536,
            "throttle_cb": lambda event: throttles.append(event.throttle_time * 1000.0),
        }
    )
    acknowledged = []

    def delivered(error, message):
        if error is None:
            acknowledged.append(len(message.value()))

    value = b"q" * RECORD_BYTES
    started = time.monotonic()
    for _ in range(total // RECORD_BYTES):
        while True:
            try:
                producer.produce(topic, value, callback=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(120)
    seconds = time.monotonic() - started
    print(json.dumps({"seconds": seconds, "bytes": sum(acknowledged), "throttle_ms": throttles, "left": left}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
