#!/usr/bin/env bash
# Builds the local control plane of the test bed from Go modules, plus helm, into
# $CLUSTER_BIN (default ~/.cache/shoal/cluster-bin, outside the work tree so a fresh
# clone on the same machine reuses it). Idempotent: a stamp of the versions and go.sum
# files decides whether anything needs rebuilding; Go's build cache makes rebuilds cheap.
set -euo pipefail
cd "$(dirname "$0")/../.."
K8S=v1.36.3 ETCD=v3.6.14 KWOK=v0.8.0 MS=v0.9.0 HELM=v3.21.4
OUT=${CLUSTER_BIN:-$HOME/.cache/shoal/cluster-bin}
mkdir -p "$OUT"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath
step() { echo "[build.sh $(date +%T)] $*"; }
# A Prometheus with Kubernetes service discovery, for the test of scraping pods through
# their prometheus.io annotations (Debian's prometheus, the test bed's, is built without
# it). Only that discovery is compiled in (build tags), which keeps the build to minutes.
# Go module v0.316.0 is Prometheus 3.16.0. Its own stamp: the control plane is not rebuilt.
PROM=v0.316.0
if [ "$(cat "$OUT/.stamp-prometheus" 2>/dev/null)" != "$PROM" ]; then
  step "prometheus-k8s-sd $PROM"
  rm -rf "$OUT/.prometheus-build"
  GOBIN=$OUT/.prometheus-build go install -p 2 -tags remove_all_sd,enable_kubernetes_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=3.16.0" \
    github.com/prometheus/prometheus/cmd/prometheus@$PROM
  mv "$OUT/.prometheus-build/prometheus" "$OUT/prometheus-k8s-sd"
  rm -rf "$OUT/.prometheus-build"
  echo "$PROM" > "$OUT/.stamp-prometheus"
fi
STAMP="$K8S $ETCD $KWOK $MS $HELM $(cat tests/cluster/go.sum tests/cluster/etcd/go.sum tests/cluster/*.go tests/cluster/etcd/*.go | sha256sum)"
if [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$STAMP" ]; then
  echo "cluster binaries up to date in $OUT"
  exit 0
fi
V=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  V="$V -X $p.gitVersion=$K8S -X $p.gitMajor=1 -X $p.gitMinor=36 -X $p.gitTreeState=clean -X $p.buildDate=2026-01-01T00:00:00Z"
done
step "kube (apiserver, controller-manager, scheduler, kubectl, up) $K8S"
go -C tests/cluster build -p 2 -tags=selinux,notest,grpcnotrace -ldflags "-s -w $V" -o "$OUT/kube" .
for n in kube-apiserver kube-controller-manager kube-scheduler kubectl; do ln -sf kube "$OUT/$n"; done
step "etcd $ETCD"
go -C tests/cluster/etcd build -p 2 -ldflags "-s -w" -o "$OUT/etcd" .
step "kwok $KWOK"
GOBIN=$OUT go install -p 2 -ldflags "-s -w" sigs.k8s.io/kwok/cmd/kwok@$KWOK
step "metrics-server $MS"
GOBIN=$OUT go install -p 2 -ldflags "-s -w" sigs.k8s.io/metrics-server/cmd/metrics-server@$MS
step "helm $HELM"
GOBIN=$OUT go install -p 2 -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM" helm.sh/helm/v3/cmd/helm@$HELM
KD=$(go mod download -json sigs.k8s.io/kwok@$KWOK | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
{
  for f in stage/node/fast/node-initialize stage/node/heartbeat-with-lease/node-heartbeat-with-lease \
           stage/pod/fast/pod-ready stage/pod/fast/pod-complete stage/pod/fast/pod-delete \
           metrics/resource/metrics-resource metrics/usage/usage-from-annotation; do
    echo '---'; cat "$KD/kustomize/$f.yaml"
  done
} > "$OUT/kwok-stages.yaml"
echo "$STAMP" > "$OUT/.stamp"
step "done: $OUT"
