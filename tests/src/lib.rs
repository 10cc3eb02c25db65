//! Test harness: free ports, process guards, Envoy and Prometheus launchers.
