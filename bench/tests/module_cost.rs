//! `bench/module-cost.mjs` (run by `make bench-filter`) drives the real filter through whole
//! requests: with the bench's config every request is routed, so it sets the routing header
//! once and updates three stats (request counter, latency histogram, shard counter); a
//! config the filter rejects stops the harness with one line instead of timing a filter
//! that does nothing. Needs `target/stickycanary.wasm` (`make filter`) and Node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn module_cost(config: &str) -> Option<Output> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join("target/stickycanary.wasm");
    if !wasm.exists() {
        println!(
            "SKIPPED: {} is missing; build it with `make filter`",
            wasm.display()
        );
        return None;
    }
    let module = format!("stickycanary={}={config}", wasm.display());
    let output = Command::new("node")
        .arg(root.join("bench/module-cost.mjs"))
        .args(["--requests", "2000", "--rounds", "1", &module])
        .output()
        .expect("node must be installed (make deps)");
    Some(output)
}

#[test]
fn the_harness_routes_every_request_through_the_filter() {
    let config = r#"{"rollouts":{"checkout":{"hosts":["checkout"],"weight":10}}}"#;
    let Some(out) = module_cost(config) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ns/request") && stdout.contains("1.0 header writes, 3.0 stat updates"),
        "{stdout}"
    );
}

#[test]
fn a_rollout_for_another_host_leaves_requests_untouched() {
    // The harness sends `:authority: checkout`: a filter that owns another host passes every
    // request through, so no header is written and no stat updated.
    let config = r#"{"rollouts":{"payments":{"hosts":["payments"],"weight":10}}}"#;
    let Some(out) = module_cost(config) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("0.0 header writes, 0.0 stat updates"),
        "{stdout}"
    );
}

#[test]
fn a_config_the_filter_rejects_stops_the_harness() {
    let Some(out) = module_cost(r#"{"rollouts":{"checkout":{"hosts":["checkout"]}}}"#) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("rejected its config"), "{stderr}");
}
