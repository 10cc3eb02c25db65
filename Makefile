# stickycanary: every entry point a user or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help deps filter build test lint demo bench bench-filter fuzz soak oci crd e2e-kind clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

deps: ## Install the toolchains and tools (apt, pip); idempotent
	@scripts/install-deps.sh

filter: deps ## Build the filter to target/stickycanary.wasm (picks rustup or Debian route)
	@scripts/build-filter.sh

build: deps filter ## Build the filter and every binary (stickycanary, sc-backend, sc-load, sc-demo)
	cargo build --workspace --bins --locked

test: deps filter ## Run every test: unit, property, mocked-API, real Envoy and Prometheus
	cargo test --workspace --locked --no-fail-fast

demo: build ## The main job, locally: two releases in a row (v2 promoted, v3 rolled back), ~1 min
	target/debug/sc-demo

bench: deps ## Benchmarks in one run: data plane vs peers (~13 min), rollout timing, analysis simulation, controller footprint
	scripts/bench.sh
	cargo build --workspace --bins --locked
	target/debug/sc-rollout-timing --runs 5
	cargo run --release --locked -p stickycanary --bin stickycanary -- simulate
	cargo run --release --locked -p stickycanary-controller-bench -- --markdown target/bench-controller.md

# The filter's hostcalls for a hash-routed request with a user id (bench/noop-filter/src/probe.rs);
# the twin, paired with the probe itself, shows the comparison's own spread (1.00 ideally).
SAME_HOSTCALLS = rawpairs,set,split,clock,code,counter,histogram,shard
# `spread`: the same hostcalls, each stat update on the object the filter's labels pick (per
# version and user shard) rather than on one object: what the distinct stats cost Envoy.
SAME_HOSTCALLS_PROBES = --probe same=$(SAME_HOSTCALLS) --probe same-twin=$(SAME_HOSTCALLS) --probe spread=$(SAME_HOSTCALLS),spread
# The bench's one-rollout config (bench/src/peers.rs), for the module's own cost in Node.
BENCH_FILTER_CONFIG = {"rollouts":{"checkout":{"hosts":["checkout"],"weight":10}}}
# Three runs, each with freshly started Envoys: the filter-to-probe ratio differs more between
# two Envoy processes than between the rounds of one (BENCHMARKS.md), so each run counts once.
# Then bench/module-cost.mjs: each module's own time per request in V8 (Node), hostcalls stubbed.
bench-filter: deps ## The filter against no filter, a no-op Wasm filter, and paired with a probe making its exact hostcalls (~14 min)
	scripts/bench.sh --cases noop-wasm,sc-1 $(SAME_HOSTCALLS_PROBES) --pair sc-1/probe:same --pair probe:same-twin/probe:same --pair probe:spread/probe:same --runs 3 --rounds 2 --duration 6
	node bench/module-cost.mjs 'stickycanary=target/stickycanary.wasm=$(BENCH_FILTER_CONFIG)' "noop=target/stickycanary-noop.wasm=" "probe=target/stickycanary-probe.wasm=$(SAME_HOSTCALLS)"

fuzz: ## Fuzz the filter's config, matching, cookie/identity and override code for FUZZ_SECONDS (default 30) each
	scripts/fuzz.sh

soak: build ## 1M requests through Envoy with the weight changed every second; prints failures and Envoy RSS
	cargo test -p stickycanary-e2e --test faults --locked -- --ignored --nocapture soak

oci: filter ## Pack the filter as an OCI image (target/oci/stickycanary) and pin its digest in manifests/istio
	scripts/oci.sh
	scripts/pin-digest.sh

crd: ## Regenerate the CanaryRollout and AlertProvider CRDs in the Helm chart from the Rust types
	# Written to a temporary file first: a build that fails must not leave an empty CRD behind.
	cargo run -q -p stickycanary --locked -- crd > manifests/helm/stickycanary/crds/canaryrollouts.yaml.tmp
	mv manifests/helm/stickycanary/crds/canaryrollouts.yaml.tmp manifests/helm/stickycanary/crds/canaryrollouts.yaml
	cargo run -q -p stickycanary --locked -- crd alertprovider > manifests/helm/stickycanary/crds/alertproviders.yaml.tmp
	mv manifests/helm/stickycanary/crds/alertproviders.yaml.tmp manifests/helm/stickycanary/crds/alertproviders.yaml

e2e-kind: ## On a machine with kind, helm and istioctl: install everything and run a promotion and a rollback
	scripts/e2e-kind.sh

lint: deps ## rustfmt and clippy, native and on the wasm32 filter build (data-plane panics are denied)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	scripts/build-filter.sh --clippy

clean: ## Remove build output and the scratch folder
	rm -rf target .scratch
