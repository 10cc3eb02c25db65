#!/usr/bin/env bash
# Where a filter's CPU goes, measured in a way this machine's noise cannot blur.
#
# Runs scripts/bench.sh with the given arguments, attaches `perf record -g` to every Envoy
# it starts, and reports per case the share of the Envoy worker's CPU samples spent inside
# Wasm (stacks with a JIT frame): the module's own code ("self") and the host code it calls
# ("hostcalls"). A share is a ratio taken inside one process over the same seconds, so a
# slower or faster machine moves numerator and denominator alike; wall-clock req/s on a
# shared VM does not have that property. Needs perf (linux-perf) and root.
#
#   scripts/bench-attribute.sh --cases noop-wasm,sc-1 --rounds 3 --duration 8 --soak-max-seconds 0
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "bench-attribute: perf is not installed" >&2; exit 1; }
out=target/bench-attribute
rm -rf "$out" && mkdir -p "$out"
recorders=()
cleanup() {
  for pid in "${recorders[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
scripts/bench.sh --out "$out" "$@" > >(tee "$out/bench.log") 2>&1 &
bench=$!
seen=" "
while kill -0 "$bench" 2>/dev/null; do
  # "bench: started NAME (pid N, ADDR)" once per Envoy, before any load is sent.
  while read -r name pid; do
    case "$seen" in *" $pid "*) continue ;; esac
    seen="$seen$pid "
    perf record -q -F 1000 -g -p "$pid" -o "$out/${name//:/_}.perf" >/dev/null 2>&1 &
    recorders+=($!)
  done < <(sed -nE 's/^bench: started ([^ ]+) \(pid ([0-9]+).*/\1 \2/p' "$out/bench.log" 2>/dev/null)
  sleep 0.5
done
wait "$bench"
cleanup
recorders=()
python3 scripts/bench-attribute.py "$out"/*.perf | tee "$out/attribution.txt"
