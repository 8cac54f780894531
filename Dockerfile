# syntax=docker/dockerfile:1
# The operator's image: `make image` (docker build -t ghcr.io/shoal-dev/shoal:<appVersion> .).
# Stage 1 builds the static-enough `shoal` binary (rustls + ring: no OpenSSL); stage 2 is
# distroless (glibc and libgcc only, no shell) and runs as the non-root user 65532, as the
# chart's Pod Security "restricted" settings expect.

FROM docker.io/library/rust:1.89-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p shoal --bin shoal \
 && install -D -m 0755 target/release/shoal /out/shoal

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/shoal /usr/local/bin/shoal
USER 65532:65532
# /metrics, /healthz and /readyz.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/shoal"]
CMD ["run"]
