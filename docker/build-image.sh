#!/usr/bin/env bash
# Builds the `rill:local` image on a machine whose Docker engine has no images and reaches no registry.
#
# 1. Builds the release binaries.
# 2. Unless `rill-base:local` exists, makes a minimal root filesystem from the host's own dynamic loader and
#    the libraries the binaries link (as `ldd` lists them), plus the few files glibc reads (passwd, group,
#    nsswitch.conf so container names resolve through DNS), and imports it with `docker import`.
# 3. Builds the Dockerfile on that base. Elsewhere, `docker build .` works on debian:bookworm-slim as is.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p rill-broker -p rill-client --bin rill-broker --bin rill

if ! docker image inspect rill-base:local >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    mkdir -p "$rootfs"/{etc,tmp,var/lib/rill,usr/local/bin}
    chmod 1777 "$rootfs/tmp"
    for binary in target/release/rill-broker target/release/rill; do
        ldd "$binary" | grep -o '/[^ ]*' | while read -r lib; do
            mkdir -p "$rootfs$(dirname "$lib")"
            cp -L "$lib" "$rootfs$lib"
        done
    done
    echo 'root:x:0:0:root:/root:/nonexistent' > "$rootfs/etc/passwd"
    echo 'root:x:0:' > "$rootfs/etc/group"
    echo 'hosts: files dns' > "$rootfs/etc/nsswitch.conf"
    tar -C "$rootfs" -c . | docker import - rill-base:local >/dev/null
    echo "imported rill-base:local"
fi

docker build --build-arg BASE_IMAGE=rill-base:local -t rill:local .
