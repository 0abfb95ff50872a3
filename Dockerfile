# syntax=docker/dockerfile:1
# The signpost controller image.
#
#   docker build -t ghcr.io/signpost-dev/signpost:0.1.0 .
#
# Stage 1 builds the release binary; stage 2 is distroless (no shell, no package manager),
# running as the unprivileged uid/gid 65532 that the Helm chart's securityContext expects.
# The binary uses rustls (no OpenSSL) and links only glibc and libgcc, which the distroless
# "cc" base provides; nothing else is in the image.
#
# The binary carries NET_ADMIN and NET_BIND_SERVICE as *permitted* file capabilities (not
# effective): a container that adds both (the chart's proxy DaemonSet) starts `signpost proxy`
# as uid 65532 with them permitted, and the proxy raises them itself; a container that drops
# ALL (the controller, dns) gets nothing from them. BuildKit keeps the xattr through COPY.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
# setcap, for the binary's file capabilities below.
RUN apt-get update && apt-get install -y --no-install-recommends libcap2-bin \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the workspace needs to resolve and build: the manifests and lock file, the crates'
# sources. The e2e and bench crates are workspace members (e2e also a dev-dependency), so their
# manifests and sources are needed for resolution; nothing else in the repository is copied.
COPY Cargo.toml Cargo.lock ./
COPY core/ core/
COPY index/ index/
COPY runtime/ runtime/
COPY dns/ dns/
COPY proxy/ proxy/
COPY crds/ crds/
COPY client/ client/
COPY controllers/ controllers/
COPY e2e/Cargo.toml e2e/Cargo.toml
COPY e2e/src/ e2e/src/
COPY bench/Cargo.toml bench/Cargo.toml
COPY bench/src/ bench/src/
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --locked --release -p signpost-controllers --bin signpost \
    && install -D -m 0755 target/release/signpost /out/signpost \
    && setcap cap_net_admin,cap_net_bind_service=p /out/signpost

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="signpost" \
      org.opencontainers.image.description="Signpost: ClusterIP IPAM, Endpoints/EndpointSlices and DNSRecords for Kubernetes Services" \
      org.opencontainers.image.source="https://github.com/signpost-dev/signpost" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/signpost /usr/local/bin/signpost
# 65532 is distroless' "nonroot"; numeric so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/signpost"]
CMD ["--help"]
