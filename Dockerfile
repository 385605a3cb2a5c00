# ferrodns container image: one static-enough binary on a slim Debian base,
# run as an unprivileged user. Build from the repository root:
#
#   docker build -t ferrodns:0.1.0 .
#
# The Helm chart (deploy/helm/ferrodns) runs this image; its pods listen on
# 5353 (DNS), 8053 (API and /metrics) and 9153 (a secondary's /metrics and
# probes), ports a non-root user may bind. Put a Service on port 53 in front.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ferrodns \
    && install -m 0755 target/release/ferrodns /ferrodns

FROM debian:bookworm-slim
# CA roots for forwarders over TLS; nothing else is needed at run time. The
# package follows the base image's point release rather than a pinned version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 65532 --user-group --home-dir /var/lib/ferrodns --create-home --shell /usr/sbin/nologin ferrodns
COPY --from=build /ferrodns /usr/local/bin/ferrodns
USER 65532:65532
WORKDIR /var/lib/ferrodns
VOLUME ["/var/lib/ferrodns"]
EXPOSE 5353/udp 5353/tcp 8053/tcp 9153/tcp
ENV FERRODNS_DATA_DIR=/var/lib/ferrodns \
    FERRODNS_DNS_LISTEN=0.0.0.0:5353 \
    FERRODNS_API_LISTEN=0.0.0.0:8053
ENTRYPOINT ["/usr/local/bin/ferrodns"]
CMD ["serve"]
