#!/usr/bin/env bash
# Post-optimises a .wasm that cargo built with the wasm-release profile (opt-level 3): binaryen's
# `wasm-opt -O3`. Used by scripts/build-filter.sh for the filter and by
# scripts/bench-build-noop.sh for the no-op peer and the hostcall probe, so every module the
# benchmark compares goes through the same pipeline.
#
# Why (BENCHMARKS.md, "Against a probe making the same hostcalls"): opt-level 3 makes the
# filter's own request path measurably cheaper than opt-level "s" inside Envoy's V8, but grows
# the module past the 300 KB goal; wasm-opt -O3 brings it back under without losing the speed.
# Deterministic: the same input and wasm-opt version give the same bytes (the OCI digest
# pinned in manifests/istio depends on it).
#
# Usage: scripts/wasm-opt.sh IN.wasm OUT.wasm
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: scripts/wasm-opt.sh IN.wasm OUT.wasm" >&2
  exit 2
fi
if ! command -v wasm-opt >/dev/null 2>&1; then
  echo "wasm-opt: not found; run 'make deps' (installs binaryen)" >&2
  exit 1
fi
# Exactly the features rustc's wasm32-wasip1 target emits by default (LLVM's generic CPU), so
# wasm-opt accepts the module and uses nothing the module did not already need.
features=(--enable-bulk-memory --enable-sign-ext --enable-mutable-globals
  --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types)
wasm-opt "${features[@]}" -O3 "$1" -o "$2"
