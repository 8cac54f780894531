#!/usr/bin/env bash
# Builds the operator's OCI image without a Docker engine (`make image`):
#   1. a statically linked release binary of `shoal` (glibc with crt-static; the build
#      scripts stay dynamic because the target is named explicitly),
#   2. one layer on an empty base: /usr/local/bin/shoal and a passwd/group naming the
#      non-root user 65532, as the Dockerfile's image has,
#   3. the config (entrypoint, cmd, user, port, OCI labels) set with crane against a
#      throw-away registry on 127.0.0.1, then pulled into an OCI image layout, written as
#      one tarball: $IMAGE_DIR/shoal-oci.tar (default target/image/).
# The tarball loads with `podman load` or `docker load`; `skopeo copy oci-archive:...`
# pushes it to a registry.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-ghcr.io/shoal-dev/shoal}
VERSION=${VERSION:-$(sed -n 's/^appVersion: *"\(.*\)"/\1/p' charts/shoal/Chart.yaml)}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
IMAGE_DIR=${IMAGE_DIR:-target/image}
TRIPLE=x86_64-unknown-linux-gnu
SOURCE=https://github.com/shoal-dev/shoal
LICENSE=$(sed -n 's/^license *= *"\(.*\)"/\1/p' Cargo.toml)
step() { echo "[image.sh $(date +%T)] $*"; }

bash hack/tools.sh
CRANE=${SHOAL_TOOLS:-$HOME/.cache/shoal/tools}/crane

step "static release build of shoal (profile dist: LTO, optimized for size) ($TRIPLE, crt-static)"
started=$(date +%s)
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --profile dist --locked -p shoal --bin shoal --target "$TRIPLE"
step "release build took $(( $(date +%s) - started )) s"
BIN=$TARGET_DIR/$TRIPLE/dist/shoal
if ! ldd "$BIN" 2>&1 | grep -Eq 'statically linked|not a dynamic executable'; then
  echo "image.sh: $BIN is not statically linked:" >&2; ldd "$BIN" >&2; exit 1
fi
built=$("$BIN" --version)
[ "$built" = "shoal $VERSION" ] || { echo "image.sh: binary says '$built', chart appVersion is $VERSION" >&2; exit 1; }

work=$(mktemp -d)
registry_pid=""
cleanup() { [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/root/usr/local/bin" "$work/root/etc" "$work/root/tmp"
install -m 0755 "$BIN" "$work/root/usr/local/bin/shoal"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$work/root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$work/root/etc/group"
chmod 1777 "$work/root/tmp"
# Reproducible layer: sorted names, root owner, fixed times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
  -C "$work/root" -cf "$work/layer.tar" usr etc tmp

"$CRANE" registry serve --address 127.0.0.1:0 > "$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do
  port=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$work/registry.log")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "${port:-}" ] || { echo "image.sh: crane registry did not start:" >&2; cat "$work/registry.log" >&2; exit 1; }
ref=127.0.0.1:$port/shoal:$VERSION
step "assembling $IMAGE:$VERSION"
"$CRANE" append --oci-empty-base -f "$work/layer.tar" -t "$ref" >/dev/null 2>&1
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
"$CRANE" mutate "$ref" -t "$ref" \
  --set-platform linux/amd64 \
  --entrypoint /usr/local/bin/shoal --cmd run \
  --user 65532:65532 --workdir / --exposed-ports 8080/tcp \
  -l org.opencontainers.image.title=shoal \
  -l "org.opencontainers.image.description=Kubernetes operator and horizontal autoscaler for Microservices" \
  -l "org.opencontainers.image.source=$SOURCE" \
  -l "org.opencontainers.image.version=$VERSION" \
  -l "org.opencontainers.image.revision=$revision" \
  -l "org.opencontainers.image.licenses=$LICENSE" >/dev/null 2>&1
"$CRANE" pull --format oci "$ref" "$work/layout" 2>/dev/null
# The layout's index names the image the way podman/skopeo (ref.name) and docker
# (io.containerd.image.name) read it.
digest=$("$CRANE" digest "$ref")
size=$("$CRANE" manifest "$ref" | wc -c)
[ -f "$work/layout/blobs/sha256/${digest#sha256:}" ] || { echo "image.sh: manifest $digest missing from the layout" >&2; exit 1; }
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":%s,"digest":"%s","annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}\n' \
  "$size" "$digest" "$IMAGE:$VERSION" "$VERSION" > "$work/layout/index.json"
mkdir -p "$IMAGE_DIR"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
  -C "$work/layout" -cf "$IMAGE_DIR/shoal-oci.tar.tmp" .
mv "$IMAGE_DIR/shoal-oci.tar.tmp" "$IMAGE_DIR/shoal-oci.tar"
echo "$IMAGE:$VERSION" > "$IMAGE_DIR/name"
step "wrote $IMAGE_DIR/shoal-oci.tar ($IMAGE:$VERSION, $(du -h "$IMAGE_DIR/shoal-oci.tar" | cut -f1))"
