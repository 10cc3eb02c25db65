#!/usr/bin/env bash
# Builds the benchmark's no-op proxy-wasm peer (bench/noop-filter) to target/stickycanary-noop.wasm,
# with the same toolchain route, target, profile and wasm-opt pass as scripts/build-filter.sh
# uses for the filter, so the modules differ only in what they do.
# `bench-build-noop.sh probe` builds the hostcall probe (feature `probe`) to
# target/stickycanary-probe.wasm instead.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/stickycanary-noop.wasm
features=()
if [ "${1:-}" = probe ]; then
  out=target/stickycanary-probe.wasm
  features=(--features probe)
fi
package=stickycanary-bench-noop
artifact=stickycanary_bench_noop.wasm
target=wasm32-wasip1
profile=wasm-release

if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  echo "bench-build-noop: route=rustup"
  cargo build -p "$package" "${features[@]}" --target "$target" --profile "$profile" --target-dir target/wasm
elif [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library ] && command -v wasm-ld-22 >/dev/null 2>&1; then
  echo "bench-build-noop: route=debian (/usr/bin/cargo, -Zbuild-std, wasm-ld-22, wasi-libc)"
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_WASIP1_LINKER=wasm-ld-22 \
    RUSTFLAGS="-C link-self-contained=no -L /usr/lib/wasm32-wasi" \
    /usr/bin/cargo build -p "$package" "${features[@]}" --target "$target" --profile "$profile" \
      --target-dir target/wasm -Zbuild-std=std,panic_abort
else
  echo "bench-build-noop: no wasm toolchain found; run 'make deps'" >&2
  exit 1
fi
scripts/wasm-opt.sh "target/wasm/$target/$profile/$artifact" "$out.tmp"
mv "$out.tmp" "$out"
echo "bench-build-noop: wrote $out ($(stat -c %s "$out") bytes)"
