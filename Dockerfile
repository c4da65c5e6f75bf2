# syntax=docker/dockerfile:1
# Tributary's one image: the binaries of every service in services/ (users, unsubscribes,
# blocklists, subscriptions, mailings, sink, the `tributary` CLI, and ingest once it exists)
# in /usr/local/bin. Kubernetes picks one with `command:` (k8s/); Airflow's pod tasks run
# `tributary ...` from the same image. From the repository root:
#   docker build -t tributary:<tag> .
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# rdkafka-sys builds librdkafka from source (cmake-build) with TLS: cmake, the OpenSSL
# headers, and libcurl's (librdkafka's OIDC code needs them whenever TLS is on).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and target/ are cache mounts (kept between builds, not in the layer), so the
# binaries are copied out in the same step: each services/<name>'s [[bin]], debug info
# stripped (symbols stay, so backtraces keep function names).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
 && mkdir -p /out \
 && for manifest in services/*/Cargo.toml; do \
      for bin in $(sed -n '/^\[\[bin\]\]/,/^name/ s/^name *= *"\(.*\)"/\1/p' "$manifest"); do \
        cp "target/release/$bin" /out/ && strip --strip-debug "/out/$bin"; \
      done; \
    done \
 && ls -l /out

FROM debian:${DEBIAN_RELEASE}-slim
# What the binaries link at run time: OpenSSL 3 (librdkafka's TLS), zlib and glibc (in the
# base image), CA certificates for TLS to Kafka, the registry and HDFS. libcurl4 is for
# librdkafka's OIDC token refresh when it is built with curl (WITH_CURL); today's build
# does not link it, but it is small and keeps the image valid if that changes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 libcurl4 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tributary \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin tributary
COPY --from=build /out/ /usr/local/bin/
# Numeric, so that Kubernetes' runAsNonRoot can verify it (k8s/ runs as 10001 too).
USER 10001:10001
# Documentation only (Kubernetes takes the ports from k8s/). Metrics and health: each chain's
# port (`tributary chains --json`, from schemas/chains.txt), sink 9106, serve 9107; the
# gateway's (ingest) 8080, serve's API 8090.
EXPOSE 9106 9107 8080 8090
CMD ["tributary", "--help"]
