#!/usr/bin/env bash
# Installs the real Kafka clients the tests run against the broker's Kafka listener (docs/KAFKA.md):
# Debian's kcat, and a Python virtual environment with confluent-kafka (librdkafka inside its wheel) and
# kafka-python. The environment lives in the build directory, so it never lands in git. Idempotent: a second
# run only checks what is there. `.ci/run` calls it before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFLUENT_KAFKA_VERSION=2.16.1
KAFKA_PYTHON_VERSION=3.0.12
target_dir="${CARGO_TARGET_DIR:-target}"
venv="$target_dir/kafka-venv"

if ! command -v kcat >/dev/null; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y kcat
fi
kcat -V | head -n 1

wanted="confluent-kafka==$CONFLUENT_KAFKA_VERSION kafka-python==$KAFKA_PYTHON_VERSION"
installed() {
    "$venv/bin/python" - "$CONFLUENT_KAFKA_VERSION" "$KAFKA_PYTHON_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if [version("confluent-kafka"), version("kafka-python")] == sys.argv[1:] else 1)
PY
}
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$target_dir"
    python3 -m venv "$venv"
fi
if ! installed; then
    # shellcheck disable=SC2086 # one argument per requirement
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $wanted
fi
installed
echo "kafka clients ready: kcat, $venv/bin/python with $wanted"
