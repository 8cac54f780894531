#!/usr/bin/env bash
# Installs the release tools from the Go module proxy into $SHOAL_TOOLS (default
# ~/.cache/shoal/tools, outside the work tree): crane (OCI images without a Docker engine),
# actionlint (checks .github/workflows), kube-score and kubectl-validate (check the rendered
# children and the chart: operator/tests/validators.rs, docs/validators.md). Idempotent: a
# tool already at its pinned version is not rebuilt. Prints nothing but progress; fails when
# Go is missing.
#
# It also lays out, from the Go module cache (`go mod download`, no network beyond the
# module proxy), what kubectl-validate needs offline: the OpenAPI v3 schemas of the test
# bed's Kubernetes (k8s.io/kubernetes, the version tests/cluster/build.sh builds; the
# built-in schemas of kubectl-validate stop at 1.30) in $OUT/kube-openapi-<version>/, and the
# Prometheus Operator's CRDs (PodMonitor, ServiceMonitor, PrometheusRule; the version the
# end-to-end tests install) in $OUT/prometheus-operator-crds-<version>/, and the Gateway
# API's standard-channel CRDs (HTTPRoute and the kinds it refers to; the version the
# traffic-router tests install) in $OUT/gateway-api-crds-<version>/.
set -euo pipefail
cd "$(dirname "$0")/.."
CRANE=v0.22.1 ACTIONLINT=v1.7.12 KUBE_SCORE=v1.20.0 KUBECTL_VALIDATE=v0.0.4
OUT=${SHOAL_TOOLS:-$HOME/.cache/shoal/tools}
mkdir -p "$OUT"
command -v go >/dev/null || { echo "hack/tools.sh: go is missing (needed to build crane, actionlint, kube-score and kubectl-validate)" >&2; exit 1; }
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath
install_tool() { # name module version
  local stamp="$OUT/.$1.version"
  if [ -x "$OUT/$1" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$3" ]; then return; fi
  echo "[tools.sh $(date +%T)] $1 $3"
  GOBIN=$OUT go install -p 2 -ldflags "-s -w" "$2@$3"
  echo "$3" > "$stamp"
}
install_tool crane github.com/google/go-containerregistry/cmd/crane "$CRANE"
install_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT"
install_tool kube-score github.com/zegl/kube-score/cmd/kube-score "$KUBE_SCORE"
install_tool kubectl-validate sigs.k8s.io/kubectl-validate "$KUBECTL_VALIDATE"

# Directory of a module version in Go's module cache (downloaded when missing).
module_dir() {
  (cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod go mod download -json "$1") |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}
K8S=$(sed -n 's/^K8S=\(v[0-9.]*\) .*/\1/p' tests/cluster/build.sh)
PROM_OP=$(sed -n 's/^pub const PROMETHEUS_OPERATOR_VERSION: &str = "\(v[0-9.]*\)";/\1/p' tests/e2e/src/lib.rs)
GATEWAY_API=$(sed -n 's/^pub const GATEWAY_API_VERSION: &str = "\(v[0-9.]*\)";/\1/p' tests/e2e/src/lib.rs)
[ -n "$K8S" ] && [ -n "$PROM_OP" ] && [ -n "$GATEWAY_API" ] || { echo "hack/tools.sh: cannot read the Kubernetes, Prometheus Operator or Gateway API version" >&2; exit 1; }
SCHEMAS=$OUT/kube-openapi-$K8S
if [ ! -f "$SCHEMAS/.done" ]; then
  echo "[tools.sh $(date +%T)] OpenAPI v3 schemas of Kubernetes $K8S"
  dir=$(module_dir "k8s.io/kubernetes@$K8S")
  [ -d "$dir/api/openapi-spec/v3" ] || { echo "hack/tools.sh: no api/openapi-spec/v3 in k8s.io/kubernetes@$K8S" >&2; exit 1; }
  rm -rf "$SCHEMAS" && mkdir -p "$SCHEMAS/api" "$SCHEMAS/apis"
  # api__v1_openapi.json -> api/v1.json; apis__<group>__<version>_openapi.json -> apis/<group>/<version>.json
  cp "$dir/api/openapi-spec/v3/api__v1_openapi.json" "$SCHEMAS/api/v1.json"
  for f in "$dir"/api/openapi-spec/v3/apis__*__*_openapi.json; do
    gv=$(basename "$f" _openapi.json); gv=${gv#apis__}
    mkdir -p "$SCHEMAS/apis/${gv%%__*}"
    cp "$f" "$SCHEMAS/apis/${gv%%__*}/${gv#*__}.json"
  done
  chmod -R u+w "$SCHEMAS"
  touch "$SCHEMAS/.done"
fi
CRDS=$OUT/prometheus-operator-crds-$PROM_OP
if [ ! -f "$CRDS/.done" ]; then
  echo "[tools.sh $(date +%T)] Prometheus Operator CRDs $PROM_OP"
  dir=$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROM_OP")
  rm -rf "$CRDS" && mkdir -p "$CRDS"
  for kind in podmonitors servicemonitors prometheusrules; do
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$CRDS/"
  done
  chmod -R u+w "$CRDS"
  touch "$CRDS/.done"
fi
GATEWAY_CRDS=$OUT/gateway-api-crds-$GATEWAY_API
if [ ! -f "$GATEWAY_CRDS/.done" ]; then
  echo "[tools.sh $(date +%T)] Gateway API CRDs $GATEWAY_API"
  dir=$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API")
  rm -rf "$GATEWAY_CRDS" && mkdir -p "$GATEWAY_CRDS"
  for kind in gatewayclasses gateways httproutes referencegrants; do
    cp "$dir/config/crd/standard/gateway.networking.k8s.io_$kind.yaml" "$GATEWAY_CRDS/"
  done
  chmod -R u+w "$GATEWAY_CRDS"
  touch "$GATEWAY_CRDS/.done"
fi
