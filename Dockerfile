# syntax=docker/dockerfile:1
# The operator image: built with the pinned toolchain from Cargo.lock, run as
# a static-ish binary on distroless (glibc + libgcc, no shell, no package
# manager) as the unprivileged `nonroot` user.
#
#   docker build -t workerpool-operator .
#
# The builder is Debian bookworm, like the runtime, so the binary links
# against the same glibc it runs with.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The registry cache mount only speeds up rebuilds; the build never fetches
# anything not pinned in Cargo.lock.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked --bin workerpool-operator

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="workerpool-operator" \
      org.opencontainers.image.description="Kubernetes operator that autoscales background workers from Redis queue depth and Prometheus queries" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /src/target/release/workerpool-operator /workerpool-operator
# The distroless `nonroot` user, numeric so that the kubelet can verify
# runAsNonRoot; the chart also runs it with a read-only root filesystem.
USER 65532:65532
# /metrics, /healthz, /readyz
EXPOSE 8080
# mimalloc returns freed pages to the OS at once (see the chart's deployment).
ENV MIMALLOC_PURGE_DELAY=0 MIMALLOC_ARENA_EAGER_COMMIT=0
ENTRYPOINT ["/workerpool-operator"]
CMD ["run"]
