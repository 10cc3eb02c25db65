//! The controller's Prometheus source against a real Prometheus (started by the harness on
//! 127.0.0.1) scraping a small exporter this test controls. The exporter's counters grow at
//! fixed per-second rates, so the expected per-version rates, error rate and p99 are known.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stickycanary::k8s::batch::MetricsBatcher;
use stickycanary::metrics::Metrics;
use stickycanary::observation::{MetricsObservation, VersionWindow};
use stickycanary::prometheus::{MetricsSource, PrometheusSource, RolloutSeries};
use stickycanary_e2e::prometheus::{Prometheus, PrometheusOptions, ScrapeTarget};

/// One series family member: labels, requests per second, and the latency all of them take.
#[derive(Clone)]
struct Flow {
    rollout: &'static str,
    version: &'static str,
    source: &'static str,
    ok_per_second: f64,
    errors_per_second: f64,
    latency_ms: f64,
}

const BUCKETS: [f64; 15] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 250.0, 300.0, 400.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0,
    10000.0,
];

/// The per-user-shard counter (contract 4, `stickycanary_shard_requests_total`) per second:
/// `(rollout, version, shard, outcome, rate)`. checkout's canary has one heavy error-prone
/// user in shard 3 and one slow user in shard 7; `idle` exports its shard series at zero (a
/// filter with shards, but no traffic); `search` has none (an older filter).
fn shard_rates() -> Vec<(&'static str, &'static str, u32, &'static str, f64)> {
    let mut rates = Vec::new();
    for shard in 0..16 {
        for (version, ok, error, slow) in [
            (
                "canary",
                0.5,
                if shard == 3 { 2.0 } else { 0.0 },
                if shard == 7 { 0.25 } else { 0.0 },
            ),
            ("stable", 5.625, 0.0, 0.0),
        ] {
            rates.push(("checkout", version, shard, "ok", ok));
            rates.push(("checkout", version, shard, "error", error));
            rates.push(("checkout", version, shard, "slow", slow));
        }
        for version in ["canary", "stable"] {
            for outcome in ["ok", "error", "slow"] {
                rates.push(("idle", version, shard, outcome, 0.0));
            }
        }
    }
    rates
}

/// The Prometheus text for `flows` after `elapsed` seconds of steady traffic.
fn exposition(flows: &[Flow], elapsed: f64) -> String {
    let mut out = String::from("# TYPE stickycanary_shard_requests_total counter\n");
    for (rollout, version, shard, outcome, rate) in shard_rates() {
        out.push_str(&format!(
            "stickycanary_shard_requests_total{{rollout=\"{rollout}\",version=\"{version}\",shard=\"{shard}\",outcome=\"{outcome}\"}} {}\n",
            rate * elapsed
        ));
    }
    out.push_str("# TYPE stickycanary_requests_total counter\n");
    for f in flows {
        for (class, rate) in [("2xx", f.ok_per_second), ("5xx", f.errors_per_second)] {
            out.push_str(&format!(
                "stickycanary_requests_total{{rollout=\"{}\",version=\"{}\",code_class=\"{class}\",source=\"{}\"}} {}\n",
                f.rollout,
                f.version,
                f.source,
                rate * elapsed
            ));
        }
    }
    out.push_str("# TYPE stickycanary_request_duration_ms histogram\n");
    for f in flows {
        let count = (f.ok_per_second + f.errors_per_second) * elapsed;
        for le in BUCKETS {
            let in_bucket = if f.latency_ms <= le { count } else { 0.0 };
            out.push_str(&format!(
                "stickycanary_request_duration_ms_bucket{{rollout=\"{}\",version=\"{}\",source=\"{}\",le=\"{le}\"}} {in_bucket}\n",
                f.rollout, f.version, f.source
            ));
        }
        out.push_str(&format!(
            "stickycanary_request_duration_ms_bucket{{rollout=\"{}\",version=\"{}\",source=\"{}\",le=\"+Inf\"}} {count}\n",
            f.rollout, f.version, f.source
        ));
        out.push_str(&format!(
            "stickycanary_request_duration_ms_count{{rollout=\"{}\",version=\"{}\",source=\"{}\"}} {count}\n",
            f.rollout, f.version, f.source
        ));
        out.push_str(&format!(
            "stickycanary_request_duration_ms_sum{{rollout=\"{}\",version=\"{}\",source=\"{}\"}} {}\n",
            f.rollout,
            f.version,
            f.source,
            count * f.latency_ms
        ));
    }
    out
}

/// A loopback HTTP exporter serving [`exposition`] of the current flows. Stopped on drop.
struct Exporter {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    fn start(flows: Vec<Flow>) -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flows = Arc::new(Mutex::new(flows));
        let started = Instant::now();
        let stop_flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let body = exposition(&flows.lock().unwrap(), started.elapsed().as_secs_f64());
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Exporter {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn flows() -> Vec<Flow> {
    vec![
        // checkout: canary 10 req/s with 20% 5xx and p99 in (400, 500]; stable 90 req/s, fast.
        Flow {
            rollout: "checkout",
            version: "canary",
            source: "hash",
            ok_per_second: 8.0,
            errors_per_second: 2.0,
            latency_ms: 450.0,
        },
        Flow {
            rollout: "checkout",
            version: "stable",
            source: "hash",
            ok_per_second: 90.0,
            errors_per_second: 0.0,
            latency_ms: 20.0,
        },
        // Testers' override traffic: all errors, very slow. Must not count.
        Flow {
            rollout: "checkout",
            version: "canary",
            source: "override",
            ok_per_second: 0.0,
            errors_per_second: 50.0,
            latency_ms: 9000.0,
        },
        // Another rollout in the same batch.
        Flow {
            rollout: "search",
            version: "canary",
            source: "hash",
            ok_per_second: 5.0,
            errors_per_second: 0.0,
            latency_ms: 60.0,
        },
    ]
}

fn window(obs: &MetricsObservation) -> (&VersionWindow, &VersionWindow) {
    match obs {
        MetricsObservation::Window { canary, stable } => (canary, stable),
        other => panic!("expected a window, got {other:?}"),
    }
}

fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= tolerance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_version_rates_error_rate_and_p99_come_from_one_batch_and_outage_is_unavailable() {
    let exporter = Exporter::start(flows());
    let mut prometheus = Prometheus::start(&PrometheusOptions::new(vec![ScrapeTarget {
        job: "exporter".into(),
        addr: exporter.addr,
        metrics_path: "/metrics".into(),
    }]))
    .unwrap();
    prometheus.wait_targets_up(Duration::from_secs(60)).unwrap();

    let source = PrometheusSource::new(&prometheus.url(), Duration::from_secs(10)).unwrap();
    let rollouts = vec![
        RolloutSeries::with_default_versions("checkout"),
        RolloutSeries::with_default_versions("search"),
        RolloutSeries::with_default_versions("quiet"),
        RolloutSeries::with_default_versions("idle"),
    ];
    let range = Duration::from_secs(5);

    // Wait until Prometheus holds more than one full window of scrapes.
    let deadline = Instant::now() + Duration::from_secs(90);
    let observed = loop {
        let result = source.windows(&rollouts, range).await;
        let settled = match &result["checkout"] {
            MetricsObservation::Window { canary, .. } => {
                canary.p99_ms.is_some() && close(canary.requests, 50.0, 7.5)
            }
            MetricsObservation::Unavailable { .. } => false,
        };
        if settled {
            // One more window so the whole range is covered by steady data.
            tokio::time::sleep(Duration::from_secs(2)).await;
            break source.windows(&rollouts, range).await;
        }
        assert!(
            Instant::now() < deadline,
            "no settled data: {result:?}\n{}",
            prometheus.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let (canary, stable) = window(&observed["checkout"]);
    // 10 req/s over 5 s; Prometheus extrapolates increase(), so allow 15%.
    assert!(
        close(canary.requests, 50.0, 7.5),
        "canary requests {}",
        canary.requests
    );
    assert!(
        close(stable.requests, 450.0, 67.5),
        "stable requests {}",
        stable.requests
    );
    // The error share does not depend on extrapolation: 2 of every 10.
    let canary_error_rate = canary.error_rate_percent().unwrap();
    assert!(
        close(canary_error_rate, 20.0, 0.5),
        "canary error rate {canary_error_rate}"
    );
    assert_eq!(stable.errors, 0.0);
    // p99 interpolated inside the (400, 500] bucket: 400 + 0.99 * 100.
    let canary_p99 = canary.p99_ms.unwrap();
    assert!(close(canary_p99, 499.0, 1.0), "canary p99 {canary_p99}");
    let stable_p99 = stable.p99_ms.unwrap();
    assert!(close(stable_p99, 24.85, 0.5), "stable p99 {stable_p99}");
    // Override traffic (all 5xx, 9 s) was excluded: otherwise errors and p99 would explode.
    assert!(canary.errors < canary.requests * 0.3);
    let inf = canary.latency_buckets.last().unwrap();
    assert!(inf.0.is_infinite() && close(inf.1, canary.requests, 0.01));
    let le_400 = canary
        .latency_buckets
        .iter()
        .find(|(le, _)| *le == 400.0)
        .unwrap();
    assert_eq!(le_400.1, 0.0);

    let (search_canary, search_stable) = window(&observed["search"]);
    assert!(
        close(search_canary.requests, 25.0, 3.75),
        "search canary {}",
        search_canary.requests
    );
    assert_eq!(search_stable.requests, 0.0);
    let (quiet_canary, _) = window(&observed["quiet"]);
    assert_eq!(
        quiet_canary.requests, 0.0,
        "a rollout without series is no data"
    );

    // Per user shard, from the same batch: 16 shards per version, the heavy user's errors
    // in shard 3 only, the slow user's slow requests in shard 7 only.
    assert_eq!(canary.shards.len(), 16, "{:?}", canary.shards);
    assert_eq!(stable.shards.len(), 16);
    let heavy = canary.shards[3];
    assert!(close(heavy.errors, 10.0, 1.5), "shard 3 {heavy:?}");
    assert!(close(heavy.requests, 12.5, 1.9), "shard 3 {heavy:?}");
    assert_eq!(heavy.slow, 0.0);
    let slow = canary.shards[7];
    assert!(close(slow.slow, 1.25, 0.2), "shard 7 {slow:?}");
    assert!(close(slow.requests, 3.75, 0.6), "shard 7 {slow:?}");
    for (index, shard) in canary.shards.iter().enumerate() {
        if index != 3 {
            assert_eq!(shard.errors, 0.0, "shard {index} {shard:?}");
        }
    }
    for shard in &stable.shards {
        assert!(close(shard.requests, 28.1, 4.3), "{shard:?}");
    }
    // An older filter (no shard series): no shards, so request-level statistics.
    assert!(search_canary.shards.is_empty());
    assert!(quiet_canary.shards.is_empty());
    // Shard series at zero: no data, but shard-aware.
    let (idle_canary, idle_stable) = window(&observed["idle"]);
    assert_eq!(idle_canary.shards.len(), 16);
    assert_eq!(idle_stable.shards.len(), 16);
    assert!(idle_canary.shards.iter().all(|shard| shard.requests == 0.0));

    // Four queries per batch (requests, p99, buckets, shards), however many rollouts it
    // serves.
    let before = source.queries_issued();
    let many: Vec<RolloutSeries> = (0..200)
        .map(|i| RolloutSeries::with_default_versions(&format!("r{i}")))
        .collect();
    source.windows(&many, range).await;
    assert_eq!(source.queries_issued() - before, 4);

    // Stable's shard series before a run: one query over the lookback for every rollout.
    let before = source.queries_issued();
    let history = source
        .stable_before_run(&rollouts, Duration::from_secs(3600))
        .await;
    assert_eq!(source.queries_issued() - before, 1);
    let checkout = &history["checkout"];
    assert_eq!(checkout.len(), 16, "{checkout:?}");
    // Stable's 90 req/s since the exporter started, more than one 5 s window's worth.
    let stable_requests: f64 = checkout.iter().map(|shard| shard.requests).sum();
    assert!(stable_requests > 450.0, "{checkout:?}");
    assert!(
        checkout.iter().all(|shard| shard.errors == 0.0),
        "{checkout:?}"
    );
    // No shard series (an older filter): read, and empty.
    assert_eq!(history["search"], Vec::new());

    // In the cluster the read goes through the controller's batcher: rollouts that start a
    // run in the same interval share one query, apart from the analysis windows' batch.
    let metrics = Metrics::new();
    let batcher = MetricsBatcher::new(Duration::from_secs(10), metrics.prometheus_queries.clone());
    let endpoint = batcher.plain(&prometheus.url());
    let (lookback, max_age) = (Duration::from_secs(3600), Duration::from_secs(60));
    let checkout_before = batcher
        .stable_before_run(&endpoint, lookback, &rollouts[0], max_age)
        .await
        .expect("read");
    let idle_before = batcher
        .stable_before_run(&endpoint, lookback, &rollouts[3], max_age)
        .await
        .expect("read");
    assert_eq!(metrics.prometheus_queries.get(), 1);
    assert_eq!(checkout_before.len(), 16);
    assert!(idle_before.iter().all(|shard| shard.requests == 0.0));
    // A window of the same length is the four-query batch, not this one.
    batcher
        .observation(&endpoint, lookback, &rollouts[0], max_age)
        .await;
    assert_eq!(metrics.prometheus_queries.get(), 5);

    // Custom checks: a value, and no data for an empty result.
    let value = source
        .scalar("sum(rate(stickycanary_requests_total{rollout=\"checkout\",version=\"canary\",source=\"hash\"}[5s]))")
        .await
        .unwrap()
        .unwrap();
    assert!(close(value, 10.0, 1.5), "custom value {value}");
    assert_eq!(
        source.scalar("sum(no_such_metric_anywhere)").await.unwrap(),
        None
    );
    assert!(
        source.scalar("sum(rate(").await.is_err(),
        "a bad query is unavailable"
    );

    // Prometheus stops: unavailable for every rollout, never a window with a breach.
    prometheus.stop();
    // Not read, so asked again at the next tick.
    assert!(source
        .stable_before_run(&rollouts, Duration::from_secs(3600))
        .await
        .is_empty());
    let result = source.windows(&rollouts, range).await;
    for (rollout, obs) in &result {
        match obs {
            MetricsObservation::Unavailable { reason } => {
                assert!(reason.contains(&prometheus.url()), "{rollout}: {reason}");
                assert!(
                    !reason.contains("query="),
                    "reason keeps the URL query out: {reason}"
                );
            }
            other => panic!("{rollout}: expected unavailable, got {other:?}"),
        }
    }
    assert!(source.scalar("up").await.is_err());
    drop(exporter);
}
