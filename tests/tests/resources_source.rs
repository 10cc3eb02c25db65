//! The resource checks' source against a real Prometheus (started on 127.0.0.1) scraping an
//! exporter that serves cAdvisor-shaped series for stable and canary pods, plus the series a
//! correct query must leave out: the pod-level cgroup (`container=""`), the pause container,
//! another Deployment whose name starts the same, and the same pod name in another
//! namespace. Counters grow at fixed rates, so every per-version figure is known.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use stickycanary::crd::CanaryRolloutSpec;
use stickycanary::k8s::batch::MetricsBatcher;
use stickycanary::metrics::Metrics;
use stickycanary::resources::{PodUsage, ResourceObservation, ResourceSelectors};
use stickycanary_e2e::cadvisor::{self, limited, ContainerUsage, Exporter};
use stickycanary_e2e::prometheus::{Prometheus, PrometheusOptions};

const MIB: f64 = 1024.0 * 1024.0;

fn unlimited(container: &'static str, cpu_cores: f64, memory_mib: f64) -> ContainerUsage {
    ContainerUsage {
        periods_per_second: 0.0,
        throttled_per_second: 0.0,
        ..limited(container, cpu_cores, memory_mib, 0.0)
    }
}

fn pod(
    namespace: &'static str,
    pod: &'static str,
    containers: Vec<ContainerUsage>,
) -> cadvisor::PodUsage {
    cadvisor::PodUsage {
        namespace,
        pod,
        containers,
    }
}

fn pods() -> Vec<cadvisor::PodUsage> {
    let proxy = || limited("istio-proxy", 0.05, 40.0, 0.0);
    vec![
        // checkout stable: 2 pods of 0.25 cores and 140 MiB, throttled in 0.4 of 20 periods/s.
        pod(
            "shop",
            "checkout-stable-5d8f7c9b4d-x2x7q",
            vec![limited("checkout", 0.2, 100.0, 0.2), proxy()],
        ),
        pod(
            "shop",
            "checkout-stable-5d8f7c9b4d-q9w8e",
            vec![limited("checkout", 0.2, 100.0, 0.2), proxy()],
        ),
        // checkout canary: 1 pod of 0.5 cores and 260 MiB, throttled in 6 of 20 periods/s.
        pod(
            "shop",
            "checkout-canary-6c9f8d7b5f-k8p2m",
            vec![limited("checkout", 0.45, 220.0, 6.0), proxy()],
        ),
        // Not checkout-canary's: Deployment `checkout`, and another namespace.
        pod(
            "shop",
            "checkout-7c6b5a4d3e-abcde",
            vec![limited("checkout", 5.0, 5000.0, 9.0)],
        ),
        pod(
            "other",
            "checkout-canary-6c9f8d7b5f-zzzzz",
            vec![limited("checkout", 5.0, 5000.0, 9.0)],
        ),
        // search: no CPU limits, so no CFS series at all.
        pod(
            "search",
            "search-canary-55d4c3b2a1-aaaaa",
            vec![unlimited("search", 0.1, 64.0)],
        ),
        pod(
            "search",
            "search-stable-66e5d4c3b2-bbbbb",
            vec![unlimited("search", 0.1, 32.0)],
        ),
    ]
}

/// The selectors the controller derives from a rollout in `namespace`, as its reconcile does.
fn selectors(namespace: &str, canary: &str, stable: Option<&str>) -> ResourceSelectors {
    let stable = stable.map_or(String::new(), |stable| {
        format!("stable: {{deployment: {stable}}}, memory: {{}}, ")
    });
    let spec: CanaryRolloutSpec = serde_yaml::from_str(&format!(
        "wasmPlugin: {{name: p}}\ncanary: {{deployment: {canary}}}\nanalysis: {{resources: {{{stable}cpuThrottling: {{}}}}}}\n"
    ))
    .unwrap();
    let selectors = ResourceSelectors::for_spec(&spec, namespace).unwrap();
    assert_eq!(selectors.canary.namespace, namespace);
    selectors
}

fn figures(observation: &ResourceObservation) -> (&PodUsage, &PodUsage) {
    match observation {
        ResourceObservation::Window { canary, stable } => (canary, stable),
        other => panic!("expected figures, got {other:?}"),
    }
}

fn close(actual: Option<f64>, expected: f64, relative: f64) -> bool {
    actual.is_some_and(|actual| (actual - expected).abs() <= expected.abs() * relative)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_version_resource_figures_come_from_one_batch_for_every_rollout() {
    let exporter = Exporter::start(pods()).unwrap();
    let prometheus =
        Prometheus::start(&PrometheusOptions::new(vec![exporter.scrape_target()])).unwrap();
    prometheus.wait_targets_up(Duration::from_secs(60)).unwrap();

    // The controller's own entry point, counting its queries on its /metrics counter.
    let metrics = Metrics::new();
    let batcher = MetricsBatcher::new(Duration::from_secs(10), metrics.prometheus_queries.clone());
    let address = batcher.plain(&prometheus.url());
    let window = Duration::from_secs(10);
    // A batch older than this is fetched again.
    let max_age = Duration::from_millis(500);
    let checkout = selectors("shop", "checkout-canary", Some("checkout-stable"));
    let search = selectors("search", "search-canary", Some("search-stable"));
    let ghost = selectors("shop", "ghost-canary", None);

    // Wait until Prometheus holds more than one full window of scrapes.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let observation = batcher
            .resources(&address, window, &checkout, max_age)
            .await;
        if let ResourceObservation::Window { canary, .. } = &observation {
            if canary.cpu_cores_per_pod.is_some() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no data: {observation:?}\n{}",
            prometheus.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(window + Duration::from_secs(2)).await;

    // Every rollout registers its pods once; from then on one batch serves them all.
    for rollout in [&checkout, &search, &ghost] {
        batcher.resources(&address, window, rollout, max_age).await;
    }
    tokio::time::sleep(max_age).await;
    let before = metrics.prometheus_queries.get();
    let checkout_figures = batcher
        .resources(&address, window, &checkout, max_age)
        .await;
    let search_figures = batcher.resources(&address, window, &search, max_age).await;
    let ghost_figures = batcher.resources(&address, window, &ghost, max_age).await;
    assert_eq!(
        metrics.prometheus_queries.get() - before,
        4,
        "one batch of four queries for three rollouts"
    );

    let (canary, stable) = figures(&checkout_figures);
    assert_eq!((canary.pods, stable.pods), (1, 2));
    // Rates of steady counters: within 3% (scrape timing); gauges and ratios exact-ish.
    assert!(close(canary.cpu_cores_per_pod, 0.5, 0.03), "{canary:?}");
    assert!(close(stable.cpu_cores_per_pod, 0.25, 0.03), "{stable:?}");
    assert!(
        close(canary.memory_bytes_per_pod, 260.0 * MIB, 0.001),
        "{canary:?}"
    );
    assert!(
        close(stable.memory_bytes_per_pod, 140.0 * MIB, 0.001),
        "{stable:?}"
    );
    assert!(close(canary.throttled_percent, 30.0, 0.01), "{canary:?}");
    assert!(close(stable.throttled_percent, 1.0, 0.01), "{stable:?}");

    let (search_canary, search_stable) = figures(&search_figures);
    assert!(close(search_canary.memory_bytes_per_pod, 64.0 * MIB, 0.001));
    assert!(close(search_stable.memory_bytes_per_pod, 32.0 * MIB, 0.001));
    assert!(close(search_canary.cpu_cores_per_pod, 0.1, 0.03));
    assert_eq!(
        search_canary.throttled_percent, None,
        "no CPU limit: no CFS series, so no data (not 0%)"
    );

    // A Deployment without series: no data, never zero.
    let (ghost_canary, ghost_stable) = figures(&ghost_figures);
    assert_eq!(ghost_canary, &PodUsage::default());
    assert_eq!(ghost_stable, &PodUsage::default());

    // A stopped Prometheus is unavailable, not no data.
    drop(prometheus);
    tokio::time::sleep(max_age).await;
    let lost = batcher
        .resources(&address, window, &checkout, max_age)
        .await;
    assert!(
        matches!(&lost, ResourceObservation::Unavailable { reason } if reason.starts_with("prometheus http://127.0.0.1:")),
        "{lost:?}"
    );
}
