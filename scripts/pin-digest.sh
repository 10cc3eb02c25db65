#!/usr/bin/env bash
# Pins the WasmPlugin samples to the OCI image that scripts/oci.sh builds from the current
# target/stickycanary.wasm.
#
# The .wasm changes with every filter change, so the digest in the samples is a generated
# value, like the CRD in the chart: this script regenerates it, and tests/tests/manifests.rs
# fails when the committed samples pin something else than the current build produces.
#
# It rewrites, in every manifests/istio/wasmplugin-*.yaml:
#   url: oci://<repo>@sha256:<manifest digest>           (what Istio verifies on pull)
#   stickycanary.dev/wasm-layer-digest: sha256:<layer>     (the plugin.wasm layer, for humans and skopeo)
#   stickycanary.dev/wasm-sha256: <sha256 of the .wasm>     (which build the pins were made from)
#
# Usage: scripts/pin-digest.sh [--check]
#   --check  change nothing; exit 1 and name the stale files if any pin differs.
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: scripts/pin-digest.sh [--check]" >&2; exit 2 ;;
esac

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# Build into a scratch layout so --check never touches target/oci.
report=$(OCI_OUT="$scratch/layout" scripts/oci.sh)
manifest_digest=$(sed -n 's/^manifest-digest: sha256:\([0-9a-f]\{64\}\)$/\1/p' <<<"$report")
layer_digest=$(sed -n 's/^layer-digest: sha256:\([0-9a-f]\{64\}\)$/\1/p' <<<"$report")
wasm_sha256=$(sed -n 's/^wasm-sha256: \([0-9a-f]\{64\}\)$/\1/p' <<<"$report")
if [ -z "$manifest_digest" ] || [ -z "$layer_digest" ] || [ -z "$wasm_sha256" ]; then
  echo "pin-digest: could not read the digests from scripts/oci.sh output" >&2
  exit 1
fi

stale=()
for file in manifests/istio/wasmplugin-*.yaml; do
  sed -e "s/\(url: oci:\/\/[^@[:space:]]*@sha256:\)[0-9a-f]\{64\}/\1$manifest_digest/" \
      -e "s/\(stickycanary.dev\/wasm-layer-digest: \"\{0,1\}sha256:\)[0-9a-f]\{64\}/\1$layer_digest/" \
      -e "s/\(stickycanary.dev\/wasm-sha256: \"\{0,1\}\)[0-9a-f]\{64\}/\1$wasm_sha256/" \
      "$file" >"$scratch/pinned.yaml"
  if ! cmp -s "$file" "$scratch/pinned.yaml"; then
    stale+=("$file")
    if ! $check; then cp "$scratch/pinned.yaml" "$file"; fi
  fi
done

if $check; then
  if [ "${#stale[@]}" -gt 0 ]; then
    echo "pin-digest: stale pin in ${stale[*]}: run scripts/pin-digest.sh (or make oci) and commit" >&2
    exit 1
  fi
  echo "pin-digest: samples pin sha256:$manifest_digest (current build)"
else
  echo "pin-digest: pinned sha256:$manifest_digest (layer sha256:$layer_digest) in ${#stale[@]} changed file(s)"
fi
