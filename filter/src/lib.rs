//! stickycanary filter: pure config, matching and assignment, plus the proxy-wasm glue.
