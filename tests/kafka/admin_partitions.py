"""Grows a topic through confluent-kafka's AdminClient (librdkafka's CreatePartitions) and prints, as JSON,
what each step answered: a validate-only request, the real one, a request for fewer partitions than the
topic has, and the partition count the client's metadata then shows. Then asks for a preferred-leader
election (ElectLeaders) of partition 0 and of a partition the topic does not have, and prints each
partition's answer (null when elected, else the error's name).

Usage: python admin_partitions.py BOOTSTRAP TOPIC NEW_TOTAL
"""

import json
import sys

from confluent_kafka import ElectionType, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions

TIMEOUT_S = 30


def outcome(futures, topic):
    try:
        futures[topic].result(timeout=TIMEOUT_S)
        return {"ok": True}
    except Exception as e:  # a KafkaException carrying the broker's error
        error = e.args[0] if e.args else None
        return {"ok": False, "code": error.name() if hasattr(error, "name") else str(e), "message": str(e)}


def main(bootstrap, topic, total):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    report = {
        "validate_only": outcome(
            admin.create_partitions([NewPartitions(topic, total)], validate_only=True), topic
        ),
    }
    report["count_after_validation"] = len(admin.list_topics(topic, timeout=TIMEOUT_S).topics[topic].partitions)
    report["grow"] = outcome(admin.create_partitions([NewPartitions(topic, total)]), topic)
    report["shrink"] = outcome(admin.create_partitions([NewPartitions(topic, 1)]), topic)
    report["count"] = len(admin.list_topics(topic, timeout=TIMEOUT_S).topics[topic].partitions)
    wanted = [TopicPartition(topic, 0), TopicPartition(topic, 99)]
    elected = admin.elect_leaders(ElectionType.PREFERRED, wanted).result(timeout=TIMEOUT_S)
    report["elect"] = {str(tp.partition): (None if e is None else e.name()) for tp, e in elected.items()}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
