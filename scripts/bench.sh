#!/usr/bin/env bash
# make bench: build the filter, the no-op wasm peer, the hostcall probe and the release harness, then run every
# data-plane case side by side (bench/src/main.rs). Arguments go to `bench` (try --help, --quick).
# Prints the table; writes target/bench/benchmarks-data-plane.md and target/bench/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-filter.sh
scripts/bench-build-noop.sh
scripts/bench-build-noop.sh probe
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --locked -p stickycanary-bench -p stickycanary-e2e --bin bench --bin sc-backend
SC_BIN_DIR="$target_dir/release" exec "$target_dir/release/bench" "$@"
