#!/usr/bin/env bash
# Installs the release tools from the Go module proxy into $SHOAL_TOOLS (default
# ~/.cache/shoal/tools, outside the work tree): crane (OCI images without a Docker engine)
# and actionlint (checks .github/workflows). Idempotent: a tool already at its pinned
# version is not rebuilt. Prints nothing but progress; fails when Go is missing.
set -euo pipefail
CRANE=v0.22.1 ACTIONLINT=v1.7.12
OUT=${SHOAL_TOOLS:-$HOME/.cache/shoal/tools}
mkdir -p "$OUT"
command -v go >/dev/null || { echo "hack/tools.sh: go is missing (needed to build crane and actionlint)" >&2; exit 1; }
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
