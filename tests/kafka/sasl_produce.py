"""Logs in to a TLS Kafka listener with SASL (confluent-kafka, so librdkafka's own SCRAM and PLAIN code) and
produces one record to each topic named, printing one JSON line per topic: the topic and "ok" or the Kafka
error name its delivery reported. A failed login prints {"login_error": ...} and exits 3.

Usage: python sasl_produce.py HOST:PORT CA_PEM MECHANISM USER PASSWORD TOPIC...
"""

import json
import sys
import time

from confluent_kafka import KafkaError, Producer

TIMEOUT_S = 20


def main(address, ca, mechanism, user, password, topics):
    login_errors = []

    def on_error(error):
        if error.code() == KafkaError._AUTHENTICATION or "SASL authentication error" in error.str():
            login_errors.append(error.str())

    producer = Producer(
        {
            "bootstrap.servers": address,
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": ca,
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": password,
            "enable.idempotence": True,
            "message.timeout.ms": TIMEOUT_S * 1000,
            "error_cb": on_error,
        }
    )
    results = {}

    def delivered(error, message):
        results[message.topic()] = "ok" if error is None else error.name()

    for topic in topics:
        producer.produce(topic, f"from {user}".encode(), callback=delivered)
    # Polls rather than one long flush, so a refused login ends the run at once.
    deadline = time.monotonic() + TIMEOUT_S
    while len(results) < len(topics) and not login_errors and time.monotonic() < deadline:
        producer.poll(0.1)
    remaining = len(producer)
    if login_errors and not results:
        print(json.dumps({"login_error": login_errors[0]}))
        sys.exit(3)
    for topic in topics:
        print(json.dumps({"topic": topic, "result": results.get(topic, "not delivered")}))
    sys.exit(0 if remaining == 0 else 2)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
