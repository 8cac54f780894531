# syntax=docker/dockerfile:1
# The operator's image for those with a Docker engine (docker buildx build .). It is the
# image `make image` assembles without one (hack/image.sh): the same statically linked
# release binary (glibc, crt-static; rustls + ring, no OpenSSL) on an empty base, the same
# passwd naming the non-root user 65532, entrypoint, port and OCI labels. Multi-arch builds
# (--platform linux/amd64,linux/arm64) compile natively per platform.

FROM docker.io/library/rust:1.89-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    triple="$(uname -m)-unknown-linux-gnu" \
 && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --profile dist --locked -p shoal --bin shoal --target "$triple" \
 && install -D -m 0755 "target/$triple/dist/shoal" /out/usr/local/bin/shoal \
 && mkdir -p /out/etc /out/tmp && chmod 1777 /out/tmp \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /out/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /out/etc/group

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
COPY --from=builder /out/ /
LABEL org.opencontainers.image.title="shoal" \
      org.opencontainers.image.description="Kubernetes operator and horizontal autoscaler for Microservices" \
      org.opencontainers.image.source="https://github.com/shoal-dev/shoal" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
WORKDIR /
# /metrics, /healthz and /readyz.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/shoal"]
CMD ["run"]
