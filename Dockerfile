# The Rill image: the broker and the CLI, built on the host (`cargo build --release`) and copied in.
#
# With a registry: `docker build -t rill:local .` uses debian:bookworm-slim.
# Without one (no base image can be pulled): `docker/build-image.sh` first imports a minimal root filesystem
# made from this machine's own C runtime as `rill-base:local`, then builds with BASE_IMAGE=rill-base:local.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
COPY target/release/rill-broker target/release/rill /usr/local/bin/
ENV RILL_DATA_DIR=/var/lib/rill \
    RILL_LISTEN=0.0.0.0:9400 \
    RILL_KAFKA_LISTEN=0.0.0.0:9092
VOLUME ["/var/lib/rill"]
EXPOSE 9400 9092
HEALTHCHECK --interval=2s --timeout=2s --start-period=5s --retries=15 \
    CMD ["/usr/local/bin/rill", "--bootstrap", "127.0.0.1:9400", "cluster", "status"]
ENTRYPOINT ["/usr/local/bin/rill-broker"]
