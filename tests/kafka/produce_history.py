"""Produces COUNT records "p<PRODUCER>-<seq>" to TOPIC with confluent-kafka (librdkafka) as an idempotent
producer (enable.idempotence, acks=all) compressing with CODEC, and prints one JSON line per delivery report:
{"seq", "partition", "offset"} when acknowledged, {"seq", "error"} when it failed for good. Records are sent at
a steady pace, so that a broker killed during the run is killed mid-stream; the script ends once every record
has a delivery report.

Usage: python produce_history.py BOOTSTRAP TOPIC CODEC COUNT PRODUCER
"""

import json
import sys
import time

from confluent_kafka import Producer

RECORDS_PER_SECOND = 1000


def main(bootstrap, topic, codec, count, producer_id):
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": codec,
            "linger.ms": 5,
            # Long enough to ride out a leader's failover (session timeout plus election).
            "message.timeout.ms": 120000,
        }
    )

    def report(err, msg, seq):
        if err is not None:
            line = {"seq": seq, "error": str(err)}
        else:
            line = {"seq": seq, "partition": msg.partition(), "offset": msg.offset()}
        print(json.dumps(line), flush=True)

    started = time.monotonic()
    for seq in range(count):
        value = f"p{producer_id}-{seq}".encode()
        while True:
            try:
                producer.produce(topic, value=value, on_delivery=lambda e, m, s=seq: report(e, m, s))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        ahead = seq / RECORDS_PER_SECOND - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    left = producer.flush(180)
    if left:
        sys.exit(f"{left} records had no delivery report")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
