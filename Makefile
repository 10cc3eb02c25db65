# stickycanary: every entry point a user or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
WASM := target/stickycanary.wasm

.PHONY: help deps filter test test-unit test-e2e lint demo bench bench-filter fuzz oci crd e2e-kind clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

deps: ## Install the toolchains and tools (apt, pip); idempotent
	@scripts/install-deps.sh

filter: deps ## Build the filter to target/stickycanary.wasm (picks rustup or Debian route)
	@scripts/build-filter.sh

test: deps filter ## Run every test: unit, property, mocked-API, real Envoy and Prometheus
	cargo test --workspace --locked

lint: ## rustfmt and clippy (data-plane panics are denied)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

clean: ## Remove build output and the scratch folder
	rm -rf target .scratch
