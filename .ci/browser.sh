#!/usr/bin/env bash
# Installs Debian's chromium, which tests/tests/observability.rs runs headless against the brokers' web
# console (screenshots and the rendered DOM). Idempotent. `.ci/run` calls it before the tests.
set -euo pipefail

if ! command -v chromium >/dev/null; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
chromium --version 2>/dev/null | head -n 1
