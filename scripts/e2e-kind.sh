#!/usr/bin/env bash
# End-to-end run on a throwaway kind cluster: Istio, the stickycanary chart, the filter from an
# OCI image, the demo app's workload Deployment (which Git would own), then the bootstrap and
# two releases through the release lifecycle: the controller generates checkout-primary from
# the workload (Initialized: every user on it, the workload scaled to 0); v2 is promoted (the
# generated stable gets v2's template, the weight goes back to 0, the workload is scaled to
# 0), then v3 fails and is rolled back (the workload is scaled to 0 again, stable still runs
# v2).
#
# NOT RUN on the project's build machines: they have no Docker, kind, Helm, Istio or
# Kubernetes. Run it on a workstation that has them (see "Needs" below). Everything the
# script checks without a cluster is in tests/tests/manifests.rs.
#
# Needs: docker, kind, kubectl, helm, skopeo, curl, jq, cargo, and an Istio release directory
# (ISTIO_DIR, with bin/istioctl and samples/addons/prometheus.yaml; `curl -L ... | sh` from
# Istio's docs gives one). Internet access for the base images and Istio's images.
#
# Environment:
#   ISTIO_DIR      Istio release directory                 (required)
#   CLUSTER        kind cluster name                        (default stickycanary-e2e)
#   KEEP_CLUSTER   1 keeps the cluster afterwards           (default: delete it)
#   TIMEOUT        seconds to wait for each phase           (default 900)
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-stickycanary-e2e}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
TIMEOUT=${TIMEOUT:-900}
REGISTRY_NAME=kind-registry
REGISTRY_HOST_PORT=5001
TAG=e2e
GATEWAY_PORT=18080
SYSTEM_NS=stickycanary-system
# Minimum versions (README, "Installing on Kubernetes"; the chart's NOTES): Kubernetes 1.25,
# Istio 1.20 (the WasmPlugin's type and failStrategy fields), KEDA 2.9, prometheus-operator 0.50.
MIN_KUBERNETES=1.25
MIN_ISTIO=1.20
MIN_KEDA=2.9
MIN_PROMETHEUS_OPERATOR=0.50

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "e2e-kind: FAILED: $*" >&2; exit 1; }

for tool in docker kind kubectl helm skopeo curl jq cargo; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done
[ -n "${ISTIO_DIR:-}" ] || fail "set ISTIO_DIR to an Istio release directory"
ISTIOCTL="$ISTIO_DIR/bin/istioctl"
[ -x "$ISTIOCTL" ] || fail "$ISTIOCTL not found"
version_at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }
istio_version=$("$ISTIOCTL" version --remote=false --short 2>/dev/null | grep -o '[0-9]*\.[0-9]*\.[0-9]*' | head -1)
version_at_least "${istio_version:-0}" "$MIN_ISTIO" || fail "Istio $MIN_ISTIO or newer needed (ISTIO_DIR has ${istio_version:-unknown})"

scratch=$(mktemp -d)
background_pids=()
cleanup() {
  for pid in "${background_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$scratch"
  if [ "$KEEP_CLUSTER" != 1 ]; then
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    docker rm -f "$REGISTRY_NAME" >/dev/null 2>&1 || true
  else
    echo "e2e-kind: kept cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
  fi
}
trap cleanup EXIT

# Polls `kubectl get ... -o jsonpath=EXPR` until it prints WANT, or fails after TIMEOUT.
wait_for_jsonpath() {
  local what=$1 want=$2; shift 2
  local deadline=$((SECONDS + TIMEOUT)) got=""
  while [ $SECONDS -lt $deadline ]; do
    got=$(kubectl "$@" 2>/dev/null || true)
    if [ "$got" = "$want" ]; then echo "    $what: $got"; return 0; fi
    sleep 5
  done
  fail "$what: wanted '$want', still '$got' after ${TIMEOUT}s"
}

plugin_weight() {
  kubectl -n istio-system get wasmplugin stickycanary \
    -o jsonpath='{.spec.pluginConfig.rollouts.checkout.weight}'
}

step "build the filter, its OCI image and the host tools"
scripts/build-filter.sh
OCI_TAG=$TAG scripts/oci.sh | tee "$scratch/oci.txt"
digest=$(sed -n 's/^manifest-digest: //p' "$scratch/oci.txt")
cargo build --release -p stickycanary-e2e --bin sc-load
SC_LOAD=$(pwd)/target/release/sc-load

step "build the controller + demo image (stickycanary, sc-backend) from the work tree"
mkdir -p "$scratch/context"
git ls-files -z | tar --null -T - -cf - | tar -x -C "$scratch/context"
cat >"$scratch/context/Dockerfile.e2e" <<'DOCKERFILE'
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p stickycanary --bin stickycanary \
 && cargo build --release --locked -p stickycanary-e2e --bin sc-backend
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/stickycanary /src/target/release/sc-backend /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["stickycanary"]
DOCKERFILE
docker build -t "stickycanary:$TAG" -f "$scratch/context/Dockerfile.e2e" "$scratch/context"

step "create kind cluster $CLUSTER and a local registry for the filter image"
kind create cluster --name "$CLUSTER" --wait 120s
kube_version=$(kubectl version -o json | jq -r '.serverVersion.gitVersion' | grep -o '[0-9]*\.[0-9]*\.[0-9]*')
version_at_least "${kube_version:-0}" "$MIN_KUBERNETES" || fail "Kubernetes $MIN_KUBERNETES or newer needed (kind gave ${kube_version:-unknown})"
if ! docker inspect "$REGISTRY_NAME" >/dev/null 2>&1; then
  docker run -d --restart=always -p "127.0.0.1:$REGISTRY_HOST_PORT:5000" --name "$REGISTRY_NAME" registry:2 >/dev/null
fi
docker network connect kind "$REGISTRY_NAME" 2>/dev/null || true
# Istio's agent pulls Wasm images from inside the pod network; the registry's address on
# the kind network is reachable from there (plain HTTP, hence WASM_INSECURE_REGISTRIES).
registry_ip=$(docker inspect -f '{{.NetworkSettings.Networks.kind.IPAddress}}' "$REGISTRY_NAME")
[ -n "$registry_ip" ] || fail "no address for $REGISTRY_NAME on the kind network"
skopeo copy --dest-tls-verify=false "oci:target/oci/stickycanary:$TAG" \
  "docker://127.0.0.1:$REGISTRY_HOST_PORT/stickycanary/filter:$TAG"
kind load docker-image "stickycanary:$TAG" --name "$CLUSTER"

step "install Istio with the stickycanary stats tags, and Prometheus"
"$ISTIOCTL" install -y --set profile=demo -f manifests/istio/mesh-config.yaml \
  --set "meshConfig.defaultConfig.proxyMetadata.WASM_INSECURE_REGISTRIES=$registry_ip:5000"
kubectl -n istio-system patch deployment istio-ingressgateway --patch-file manifests/istio/pod-annotations.yaml
kubectl -n istio-system rollout status deployment/istio-ingressgateway --timeout=300s
kubectl apply -f "$ISTIO_DIR/samples/addons/prometheus.yaml"
kubectl -n istio-system rollout status deployment/prometheus --timeout=300s

step "install the stickycanary chart"
helm upgrade --install stickycanary manifests/helm/stickycanary \
  --namespace "$SYSTEM_NS" --create-namespace \
  --set image.repository=stickycanary --set image.tag="$TAG" --set image.pullPolicy=Never \
  --set replicaCount=1 --set log.level=debug --wait --timeout 300s
kubectl get crd canaryrollouts.stickycanary.dev >/dev/null

step "deploy the demo app, its routing and the filter (pinned to $digest)"
kubectl apply -f manifests/examples/checkout-demo-app.yaml
kubectl -n shop rollout status deployment/checkout --timeout=300s
kubectl apply -f manifests/istio/routing-checkout.yaml
sed -E "s#url: oci://[^[:space:]]+#url: oci://$registry_ip:5000/stickycanary/filter@$digest#" \
  manifests/istio/wasmplugin-gateway.yaml | kubectl apply -f -

step "send steady traffic from many users through the gateway"
kubectl -n istio-system port-forward svc/istio-ingressgateway "$GATEWAY_PORT:80" >"$scratch/port-forward.log" 2>&1 &
background_pids+=($!)
deadline=$((SECONDS + 60))
until curl -s -o /dev/null -H 'host: checkout.shop.example.com' "http://127.0.0.1:$GATEWAY_PORT/"; do
  [ $SECONDS -lt $deadline ] || fail "gateway port-forward did not come up"
  sleep 2
done
"$SC_LOAD" --target "127.0.0.1:$GATEWAY_PORT" --host checkout.shop.example.com --users 5000 \
  --rate 40 --duration $((4 * TIMEOUT)) --progress 30 >"$scratch/load.jsonl" 2>&1 &
background_pids+=($!)

# Short stages so the run takes minutes; the thresholds are the ADR's. spec.stable turns the
# release lifecycle on: the controller generates checkout-primary, and each new pod template
# of the workload is a release.
fast_rollout() {
  cat <<YAML
apiVersion: stickycanary.dev/v1alpha1
kind: CanaryRollout
metadata:
  name: checkout
  namespace: shop
spec:
  wasmPlugin: {name: stickycanary, namespace: istio-system}
  canary: {deployment: checkout}
  stable: {}
  progressDeadline: 5m
  scaleDownDelay: 20s
  stages:
    - {weight: 10, duration: 1m}
    - {weight: 50, duration: 1m}
    - {weight: 100}
  analysis:
    interval: 15s
    window: 1m
    minRequests: 20
    errorRate: {maxPercent: 5, for: 30s}
    latencyP99: {maxMs: 500, for: 1m}
  prometheus: {address: "http://prometheus.istio-system:9090"}
YAML
}

rollout_field() {
  kubectl -n shop get canaryrollout checkout -o jsonpath="{.status.$1}"
}

deployment_env() {
  kubectl -n shop get deployment "$1" \
    -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="RELEASE")].value}'
}

step "bootstrap: the controller generates checkout-primary and hands every user to it"
fast_rollout | kubectl apply -f -
wait_for_jsonpath "phase" Initialized -n shop get canaryrollout checkout -o jsonpath='{.status.phase}'
[ "$(plugin_weight)" = 0 ] || fail "initialized but the WasmPlugin weight is $(plugin_weight)"
owner=$(kubectl -n shop get deployment checkout-primary -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')
[ "$owner" = CanaryRollout/checkout ] || fail "checkout-primary is owned by '$owner'"
[ "$(kubectl -n shop get deployment checkout-primary -o jsonpath='{.spec.template.metadata.labels.version}')" = stable ] \
  || fail "checkout-primary's pods are not in the stable subset"
wait_for_jsonpath "workload replicas" 0 -n shop get deployment checkout -o jsonpath='{.spec.replicas}'

step "release v2: a new workload template; the controller scales it up, walks the stages, promotes"
kubectl -n shop set env deployment/checkout RELEASE=v2
wait_for_jsonpath "phase" Succeeded -n shop get canaryrollout checkout -o jsonpath='{.status.phase}'
[ "$(plugin_weight)" = 0 ] || fail "v2 succeeded but the WasmPlugin weight is $(plugin_weight)"
[ "$(deployment_env checkout-primary)" = v2 ] || fail "the generated stable does not run v2's template"
[ "$(rollout_field stableRevision)" = "$(rollout_field canaryRevision)" ] || fail "stableRevision is not v2's revision"
wait_for_jsonpath "workload replicas" 0 -n shop get deployment checkout -o jsonpath='{.spec.replicas}'
salt_v2=$(rollout_field salt)
echo "    stable runs RELEASE=$(deployment_env checkout-primary), revision $(rollout_field stableRevision), v2's salt $salt_v2"
echo "    last load summary: $(tail -n 1 "$scratch/load.jsonl")"

step "release v3: a canary that fails half its requests is rolled back"
# One write, so one revision: env merges by name, args are replaced whole.
kubectl -n shop patch deployment checkout -p '{"spec":{"template":{"spec":{"containers":[{"name":"checkout",
  "args":["--listen=0.0.0.0:8080","--in-cluster","--name=$(TRACK)","--error-ratio=0.5"],
  "env":[{"name":"RELEASE","value":"v3"}]}]}}}}'
wait_for_jsonpath "phase" RolledBack -n shop get canaryrollout checkout -o jsonpath='{.status.phase}'
[ "$(plugin_weight)" = 0 ] || fail "rolled back but the WasmPlugin weight is $(plugin_weight)"
reason=$(rollout_field rollbackReason)
[ "$reason" = error-rate ] || fail "rollback reason is '$reason', expected error-rate"
[ "$(rollout_field salt)" != "$salt_v2" ] || fail "v3 reused v2's cohort salt"
[ "$(deployment_env checkout-primary)" = v2 ] || fail "stable no longer runs v2"
wait_for_jsonpath "workload replicas" 0 -n shop get deployment checkout -o jsonpath='{.spec.replicas}'
echo "    WasmPlugin weight: $(plugin_weight), reason: $reason, failedRevision $(rollout_field failedRevision)"
kubectl -n shop get canaryrollout checkout
kubectl -n shop get events --field-selector involvedObject.kind=CanaryRollout \
  -o custom-columns=REASON:.reason,MESSAGE:.message | tail -n 25

step "PASSED: bootstrap and two releases on kind (v2 promoted, v3 rolled back)"
