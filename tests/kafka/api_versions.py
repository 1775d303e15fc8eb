"""Connects to a Kafka listener with kafka-python's own connection code and prints, as JSON, what the client
learned from the ApiVersions exchange: the API versions the broker announced and the ApiVersions version the
client settled on. kafka-python starts at the highest ApiVersions version it knows and follows the broker's
KIP-511 downgrade answer, so a broker serving fewer versions exercises that path too.

Usage: python api_versions.py HOST:PORT
"""

import json
import sys

from kafka.net.manager import KafkaConnectionManager
from kafka.net.selector import NetworkSelector
from kafka.protocol.metadata import ApiVersionsRequest

TIMEOUT_MS = 10_000


def main(address):
    net = NetworkSelector()
    manager = KafkaConnectionManager(net, bootstrap_servers=[address], request_timeout_ms=TIMEOUT_MS)
    node_id = manager.cluster.bootstrap_brokers()[0].node_id

    async def handshake():
        conn = manager.get_connection(
            node_id, timeout_ms=TIMEOUT_MS, pop_on_close=False, refresh_metadata_on_err=False
        )
        await conn  # runs the ApiVersions exchange; raises if it failed
        return conn

    conn = manager.run(handshake)
    learned = conn.broker_version_data.api_versions
    print(json.dumps({
        "client_api_versions_max": ApiVersionsRequest.max_version,
        "api_versions_used": conn._api_versions_idx,
        "api_versions": {str(key): list(versions) for key, versions in sorted(learned.items())},
    }))
    manager.close()


if __name__ == "__main__":
    main(sys.argv[1])
