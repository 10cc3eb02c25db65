#!/usr/bin/env bash
# Packs target/stickycanary.wasm as an OCI image layout that Istio's WasmPlugin can pull,
# without a Docker daemon.
#
# Format: the "compat" variant of the Wasm image spec, which Istio's image fetcher accepts:
# a standard OCI image manifest with exactly one layer of media type
# application/vnd.oci.image.layer.v1.tar+gzip whose tar holds a single file `plugin.wasm`,
# and the manifest annotation module.wasm.image/variant=compat. Standard media types mean
# any registry and any OCI tool (skopeo, crane, oras) handle it.
#
# Deterministic: the tar entry has mtime 0, owner 0:0, mode 0644; gzip runs with -n (no
# name, no timestamp); the JSON documents are written byte-for-byte by printf. The same
# .wasm therefore always gives the same layer, config and manifest digests, which is what
# lets the WasmPlugin samples pin `@sha256:<manifest digest>` (see scripts/pin-digest.sh).
#
# Environment (all optional):
#   OCI_WASM  input module            (default target/stickycanary.wasm)
#   OCI_OUT   output layout directory (default target/oci/stickycanary)
#   OCI_TAG   tag in the layout index (default: the workspace version from Cargo.toml)
set -euo pipefail
cd "$(dirname "$0")/.."

wasm=${OCI_WASM:-target/stickycanary.wasm}
out=${OCI_OUT:-target/oci/stickycanary}
tag=${OCI_TAG:-$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)}

if [ ! -f "$wasm" ]; then
  echo "oci: $wasm not found; build it first with 'make filter' (scripts/build-filter.sh)" >&2
  exit 1
fi
if [ -z "$tag" ]; then
  echo "oci: no tag: set OCI_TAG or give Cargo.toml a workspace version" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs" "$work/layout/blobs/sha256"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }
# Stores a file as a content-addressed blob and prints its hex digest.
add_blob() {
  local digest
  digest=$(sha256_of "$1")
  cp "$1" "$work/layout/blobs/sha256/$digest"
  echo "$digest"
}

# The layer: one tar entry, plugin.wasm, with every varying attribute pinned.
cp "$wasm" "$work/rootfs/plugin.wasm"
chmod 0644 "$work/rootfs/plugin.wasm"
tar --format=ustar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
  --mode=0644 -C "$work/rootfs" -cf "$work/layer.tar" plugin.wasm
gzip -n -9 -c "$work/layer.tar" >"$work/layer.tar.gz"
diff_id=$(sha256_of "$work/layer.tar")
layer_digest=$(add_blob "$work/layer.tar.gz")
layer_size=$(size_of "$work/layer.tar.gz")

# The image config. architecture/os use Go's names for WebAssembly; Istio ignores them,
# and skopeo shows them. No `created` field: a timestamp would break reproducibility.
printf '{"architecture":"wasm","os":"wasip1","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$diff_id" >"$work/config.json"
config_digest=$(add_blob "$work/config.json")
config_size=$(size_of "$work/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.title":"plugin.wasm"}}],"annotations":{"module.wasm.image/variant":"compat"}}' \
  "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest.json"
manifest_digest=$(add_blob "$work/manifest.json")
manifest_size=$(size_of "$work/manifest.json")

printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest_digest" "$manifest_size" "$tag" >"$work/layout/index.json"

# Replace the previous layout as a whole so a reader never sees a half-written one.
mkdir -p "$(dirname "$out")"
rm -rf "$out.old"
if [ -d "$out" ]; then mv "$out" "$out.old"; fi
mv "$work/layout" "$out"
rm -rf "$out.old"

echo "oci: wrote $out (tag $tag) from $wasm ($(size_of "$wasm") bytes, sha256 $(sha256_of "$wasm"))"
echo "wasm-sha256: $(sha256_of "$wasm")"
echo "manifest-digest: sha256:$manifest_digest"
echo "layer-digest: sha256:$layer_digest"
echo "push: skopeo copy oci:$out:$tag docker://REGISTRY/stickycanary:$tag"
echo "pin:  scripts/pin-digest.sh   (writes the manifest digest into manifests/istio/wasmplugin-*.yaml)"
