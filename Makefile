# Shoal's commands. `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
CLUSTER_BIN ?= $(HOME)/.cache/shoal/cluster-bin
export CLUSTER_BIN

.PHONY: demo test unit e2e deps cluster-bin generate fmt lint

## demo: build what is missing, start the local control plane and show Shoal at work.
demo: deps cluster-bin
	cargo build --release --workspace --bins
	bash tests/demo.sh

## test: unit tests, golden and drift tests, then the end-to-end suite on the local control plane.
test: deps cluster-bin
	cargo test --workspace --no-fail-fast -- --test-threads=4

## unit: only the tests that need no cluster.
unit:
	cargo test -p shoal

## deps: Debian packages the test bed needs (Prometheus).
deps:
	@command -v prometheus >/dev/null || { echo "installing prometheus (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  pkill -x prometheus || true; }

## cluster-bin: the Go-built control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK, metrics-server), kubectl and helm.
cluster-bin:
	bash tests/cluster/build.sh

## generate: regenerate every generated file (CRD YAML, golden files).
generate:
	cargo run -q -p shoal -- crd > crds/microservice.yaml
	UPDATE_GOLDEN=1 cargo test -q -p shoal --test golden

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
