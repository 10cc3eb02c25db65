#!/usr/bin/env bash
# make fuzz: run every fuzz target of the filter for a bounded time and report executions and
# crashes. FUZZ_SECONDS (default 30) is the time per target.
#
# The targets are proptest-driven (filter/tests/fuzz_*.rs, runner in filter/tests/fuzz_common):
# cargo-fuzz needs a nightly toolchain and a libFuzzer build, which this project's machines
# (stable rustup) do not have. A crash is a failing target: proptest shrinks it and prints the
# minimal input, which then goes into that target's `regressions` test.
set -euo pipefail
cd "$(dirname "$0")/.."

export FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
targets=(fuzz_config fuzz_matching fuzz_identity fuzz_overrides)

echo "fuzz: building the targets"
for t in "${targets[@]}"; do args+=(--test "$t"); done
cargo test -q -p stickycanary-filter --release --locked "${args[@]}" --no-run

failed=0
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for t in "${targets[@]}"; do
  echo "fuzz: $t (${FUZZ_SECONDS}s per fuzz function)"
  # One fuzz function at a time, so each gets the whole budget on a shared machine.
  if cargo test -q -p stickycanary-filter --release --locked --test "$t" -- \
      --test-threads=1 --nocapture >"$log" 2>&1; then
    # libtest's progress dots can share a line with the summary: match it anywhere.
    grep -oE 'fuzz [a-z_/]+: [0-9]+ executions.*' "$log" || true
  else
    failed=1
    grep -E 'fuzz [a-z_/]+: |CRASH|minimal failing input|panicked' "$log" || tail -n 30 "$log"
  fi
done

if [ "$failed" -ne 0 ]; then
  echo "fuzz: CRASHES FOUND (see above); add each minimal input to the target's regressions test"
  exit 1
fi
echo "fuzz: all targets ran ${FUZZ_SECONDS}s each, 0 crashes"
