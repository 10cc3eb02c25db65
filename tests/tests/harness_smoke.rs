//! The harness itself works: the backend's behaviour and control plane, a real Envoy routing on
//! `x-canary-version`, the load generator's accounting. (The filter is proven in `filter_envoy.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use stickycanary_e2e::backend::Backend;
use stickycanary_e2e::backend_server::{Behaviour, BehaviourPatch};
use stickycanary_e2e::envoy::{Envoy, EnvoyOptions, FilterChain};
use stickycanary_e2e::{http1, load};

const BACKEND: &str = env!("CARGO_BIN_EXE_sc-backend");

fn backend(name: &str, dir: &Path) -> Backend {
    Backend::start_with_bin(Path::new(BACKEND), name, Behaviour::default(), dir).unwrap()
}

#[test]
fn backend_echoes_and_injects_exact_error_counts_on_command() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend("canary", dir.path());
    let r = http1::get(
        b.addr,
        "/x",
        &[("x-canary-version", "canary"), ("x-user-id", "u7")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-served-by"), Some("canary"));
    assert_eq!(r.header("x-seen-canary-version"), Some("canary"));
    assert_eq!(r.header("x-seen-user-id"), Some("u7"));
    assert_eq!(r.body_text(), "canary\n");

    b.control(&BehaviourPatch {
        error_ratio: Some(0.2),
        error_status: Some(503),
        delay_ms: None,
    })
    .unwrap();
    let mut client = http1::Client::new(b.addr, Duration::from_secs(5));
    let statuses: Vec<u16> = (0..20)
        .map(|_| client.get("/", &[]).unwrap().status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(statuses[4], 503, "every 5th request fails");
    assert_eq!(b.counts().unwrap(), (20, 4));

    let bad = http1::request(
        b.addr,
        "POST",
        "/__control",
        &[],
        br#"{"errorRatio":2}"#,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(bad.status, 400);
}

#[test]
fn envoy_routes_on_the_canary_header_and_load_counts_versions() {
    let dir = tempfile::tempdir().unwrap();
    let stable = backend("stable", dir.path());
    let canary = backend("canary", dir.path());
    let mut opts = EnvoyOptions::new(stable.addr, canary.addr);
    opts.filter_chain = FilterChain::RouterOnly;
    opts.concurrency = 1;
    let envoy = Envoy::start(&opts, "{}").unwrap();

    let to_canary = envoy
        .get("any", "/", &[("x-canary-version", "canary")])
        .unwrap();
    assert_eq!(to_canary.header("x-served-by"), Some("canary"));
    let to_stable = envoy
        .get("any", "/", &[("x-canary-version", "stable")])
        .unwrap();
    assert_eq!(to_stable.header("x-served-by"), Some("stable"));

    let mut lo = load::LoadOptions::new(envoy.listener, "any");
    lo.requests = Some(600);
    lo.users = 300;
    lo.connections = 3;
    let s = load::run(lo);
    assert_eq!(
        (s.requests, s.ok, s.transport_errors),
        (600, 600, 0),
        "{}",
        s.to_json()
    );
    assert_eq!(s.by_version.get("stable"), Some(&600));
    assert_eq!(s.distinct_users, 300);
    assert_eq!(s.users_switched, 0);
    assert!(envoy
        .stats_prometheus()
        .unwrap()
        .contains("envoy_cluster_upstream_rq"));
}

#[test]
fn prometheus_scrapes_envoy_and_survives_a_restart_on_the_same_port() {
    use stickycanary_e2e::prometheus::{Prometheus, PrometheusOptions, ScrapeTarget};
    let dir = tempfile::tempdir().unwrap();
    let stable = backend("stable", dir.path());
    let mut opts = EnvoyOptions::new(stable.addr, stable.addr);
    opts.filter_chain = FilterChain::RouterOnly;
    opts.concurrency = 1;
    let envoy = Envoy::start(&opts, "{}").unwrap();
    let mut prom = Prometheus::start(&PrometheusOptions::new(vec![ScrapeTarget::envoy(
        envoy.admin,
    )]))
    .unwrap();
    prom.wait_targets_up(Duration::from_secs(30)).unwrap();
    assert_eq!(prom.query_value("envoy_server_live").unwrap(), Some(1.0));
    let addr = prom.addr;
    prom.stop();
    assert!(!stickycanary_e2e::ports::is_listening(addr));
    assert!(prom.query("up").is_err());
    prom.restart().unwrap();
    assert_eq!(prom.addr, addr);
    prom.wait_targets_up(Duration::from_secs(30)).unwrap();
    // The series from before the restart is still in the same TSDB.
    let before = prom
        .query("count_over_time(envoy_server_live[10m])")
        .unwrap();
    assert!(!before.is_empty());
}

#[test]
fn load_paces_to_a_target_rate_and_sc_load_prints_one_json_summary() {
    let dir = tempfile::tempdir().unwrap();
    let stable = backend("stable", dir.path());
    let mut opts = EnvoyOptions::new(stable.addr, stable.addr);
    opts.filter_chain = FilterChain::RouterOnly;
    opts.concurrency = 1;
    let envoy = Envoy::start(&opts, "{}").unwrap();

    let mut lo = load::LoadOptions::new(envoy.listener, "any");
    lo.rate = Some(200.0);
    lo.duration = Some(Duration::from_secs(2));
    lo.connections = 2;
    let s = load::run(lo);
    assert!(
        (300..=420).contains(&s.requests),
        "about 400 requests at 200/s for 2 s: {}",
        s.to_json()
    );
    assert_eq!(s.failures(), 0);
    let (first, last) = (
        s.first_seconds_by_version["stable"],
        s.last_seconds_by_version["stable"],
    );
    assert!(
        first < 0.5 && last > 1.5 && last <= s.elapsed_seconds,
        "{first} {last}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sc-load"))
        .args([
            "--target",
            &envoy.listener.to_string(),
            "--host",
            "any",
            "--requests",
            "300",
            "--users",
            "100",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["requests"], 300);
    assert_eq!(summary["ok"], 300);
    assert_eq!(summary["by_version"]["stable"], 300);
    assert_eq!(summary["distinct_users"], 100);

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_sc-load"))
        .args(["--target", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr).lines().count(),
        1,
        "one-line error"
    );
}

/// Issue 22: "ready" means our backend answers on its port, and a stack re-checks it before
/// traffic. A port someone else listens on used to pass the readiness check (a TCP connect)
/// while the backend exited with "address in use"; Envoy then had no canary to reach and
/// every canary request became a 503 of Envoy's own.
#[test]
fn a_backend_is_ready_only_when_it_answers_itself_and_a_dead_one_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    // Something else (not an sc-backend) already listens on the port.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap();
    let err = Backend::start_at(
        Path::new(BACKEND),
        "canary",
        Behaviour::default(),
        dir.path(),
        taken,
    )
    .err()
    .expect("a backend that could not bind its port must not be reported ready");
    assert!(
        err.to_string()
            .to_ascii_lowercase()
            .contains("address already in use")
            || format!("{err:?}")
                .to_ascii_lowercase()
                .contains("address already in use"),
        "{err:?}"
    );
    drop(squatter);

    let mut b = backend("canary", dir.path());
    b.check_serving().unwrap();
    assert!(b.health().ends_with(": serving"), "{}", b.health());
    b.child_mut().kill();
    assert!(b.check_serving().is_err());
    assert!(b.health().contains("NOT serving"), "{}", b.health());
}
