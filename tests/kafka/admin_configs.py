"""Changes a topic's settings with both Kafka config APIs and prints, as JSON, what each step answered and the
settings confluent-kafka's DescribeConfigs then shows (name -> [value, source]):

1. confluent-kafka (librdkafka) IncrementalAlterConfigs: SET retention.ms, validate-only first.
2. confluent-kafka IncrementalAlterConfigs with an unknown key (refused).
3. kafka-python legacy AlterConfigs (incremental=False) setting segment.bytes; the request replaces the
   topic's settings whole, so kafka-python sends the other overrides it describes along with it.

Usage: python admin_configs.py BOOTSTRAP TOPIC
"""

import json
import sys

from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from kafka.admin import ConfigResource as LegacyResource
from kafka.admin import ConfigResourceType, KafkaAdminClient

TIMEOUT_S = 30


def incremental(admin, topic, name, value, validate_only=False):
    entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    futures = admin.incremental_alter_configs([resource], validate_only=validate_only)
    try:
        for future in futures.values():
            future.result(timeout=TIMEOUT_S)
        return {"ok": True}
    except Exception as e:
        error = e.args[0] if e.args else None
        return {"ok": False, "code": error.name() if hasattr(error, "name") else str(e), "message": str(e)}


def described(admin, topic):
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    entries = list(futures.values())[0].result(timeout=TIMEOUT_S)
    overrides = {name: e.value for name, e in entries.items() if e.source == 1}  # TOPIC_CONFIG
    return {name: e.value for name, e in entries.items()}, overrides


def main(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    report = {"validate_only": incremental(admin, topic, "retention.ms", "3600000", validate_only=True)}
    report["after_validation"] = described(admin, topic)[1]
    report["set"] = incremental(admin, topic, "retention.ms", "3600000")
    report["after_set"] = described(admin, topic)[1]
    report["unknown_key"] = incremental(admin, topic, "no.such.key", "1")

    legacy = KafkaAdminClient(bootstrap_servers=bootstrap)
    resource = LegacyResource(ConfigResourceType.TOPIC, topic, configs={"segment.bytes": "1048576"})
    answer = legacy.alter_configs([resource], incremental=False, raise_on_unknown=False)
    report["legacy"] = str(answer)
    legacy.close()
    report["after_legacy"] = described(admin, topic)[1]
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
