#!/usr/bin/env bash
# Builds the filter to target/stickycanary.wasm (production: exports only the proxy-wasm ABI),
# then the golden-test build target/stickycanary-golden.wasm (feature golden-export: the same
# code plus the `stickycanary_bucket` export that filter/tests/wasm_golden.rs calls).
# Both are post-optimised by scripts/wasm-opt.sh (binaryen's wasm-opt -O3).
# `build-filter.sh --production-only` skips the second build.
# `build-filter.sh --clippy` instead runs clippy (-D warnings) on the wasm32 build of both, so
# the data plane's deny-unwrap/expect/panic lints also cover `filter/src/wasm.rs`, which only
# compiles for wasm32 (`make lint` runs it; the Debian route needs rust-web-clippy).
#
# Two routes, chosen automatically:
#  - rustup: where `rustup target list --installed` has wasm32-wasip1, a plain cargo build.
#  - debian: rustup cannot add targets on these machines, so use Debian's rustc-web
#    toolchain (/usr/bin/cargo), rebuilding std from rust-web-src with -Zbuild-std
#    and linking with wasm-ld-22 against wasi-libc.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/stickycanary.wasm
target=wasm32-wasip1
profile=wasm-release
# Reproducible output: the same source gives the same .wasm wherever it is checked out,
# so the OCI digest pinned in manifests/istio stays valid on every clone.
remap="--remap-path-prefix=$PWD=/stickycanary --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"

# $1: cargo subcommand (build or clippy), $2: extra cargo args (features), $3: extra args for
# rustc/clippy after `--`.
cargo_wasm() {
  local command=$1 features=$2 tail=$3
  if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "build-filter: route=rustup (cargo $command with the installed $target target) ${features:-production}"
    # shellcheck disable=SC2086
    RUSTFLAGS="$remap" cargo "$command" -p stickycanary-filter $features --target "$target" --profile "$profile" --target-dir target/wasm ${tail:+-- $tail}
  elif [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library ] && command -v wasm-ld-22 >/dev/null 2>&1; then
    echo "build-filter: route=debian (/usr/bin/cargo $command $(/usr/bin/rustc --version | cut -d' ' -f2), -Zbuild-std, wasm-ld-22, wasi-libc) ${features:-production}"
    local subcommand=build wrapper=
    if [ "$command" = clippy ]; then
      # `cargo clippy` on PATH is rustup's, for the other toolchain: run Debian's clippy-driver
      # the way cargo-clippy does, as the workspace wrapper of a check.
      [ -x /usr/bin/clippy-driver ] || { echo "build-filter: no /usr/bin/clippy-driver; run 'make deps' (installs rust-web-clippy)" >&2; exit 1; }
      subcommand=check wrapper=/usr/bin/clippy-driver
      export CLIPPY_ARGS="${tail// /__CLIPPY_HACKERY__}__CLIPPY_HACKERY__"
    fi
    # shellcheck disable=SC2086
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTC_WORKSPACE_WRAPPER=$wrapper \
      CARGO_TARGET_WASM32_WASIP1_LINKER=wasm-ld-22 \
      RUSTFLAGS="-C link-self-contained=no -L /usr/lib/wasm32-wasi $remap" \
      /usr/bin/cargo "$subcommand" -p stickycanary-filter $features --target "$target" --profile "$profile" \
        --target-dir target/wasm -Zbuild-std=std,panic_abort
  else
    echo "build-filter: no wasm toolchain found; run 'make deps' (installs rustc-web, cargo-web, rust-web-src, lld-22, wasi-libc)" >&2
    exit 1
  fi
}

build() { # $1: extra cargo args (features), $2: output file
  local features=$1 dest=$2
  cargo_wasm build "$features" ""
  scripts/wasm-opt.sh "target/wasm/$target/$profile/stickycanary_filter.wasm" "$dest.tmp"
  mv "$dest.tmp" "$dest"
  echo "build-filter: wrote $dest ($(stat -c %s "$dest") bytes)"
}

if [ "${1:-}" = --clippy ]; then
  cargo_wasm clippy "" "-D warnings"
  cargo_wasm clippy "--features golden-export" "-D warnings"
  exit 0
fi
build "" "$out"
if [ "${1:-}" != --production-only ]; then
  build "--features golden-export" target/stickycanary-golden.wasm
fi
