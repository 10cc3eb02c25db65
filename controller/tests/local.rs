//! `stickycanary local` end to end, as a process: a scripted Prometheus API on loopback (the
//! real Prometheus is exercised in `tests/tests/prometheus_source.rs`), a real ECDS file,
//! a real status file. Stage durations are in seconds so each test takes a few seconds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use support::webhook::{receiver, serve_on_loopback, Received};

/// What the scripted Prometheus reports for rollout `checkout` (per window).
#[derive(Clone, Copy, Debug)]
struct Traffic {
    canary_ok: f64,
    canary_5xx: f64,
    stable_ok: f64,
    p99_ms: f64,
    down: bool,
}

const HEALTHY: Traffic = Traffic {
    canary_ok: 500.0,
    canary_5xx: 0.0,
    stable_ok: 4500.0,
    p99_ms: 40.0,
    down: false,
};

type Shared = Arc<Mutex<Traffic>>;

fn sample(labels: Value, value: f64) -> Value {
    json!({"metric": labels, "value": [1_800_000_000.0, value.to_string()]})
}

type Reply = (StatusCode, [(header::HeaderName, &'static str); 1], String);

fn reply(status: StatusCode, body: Value) -> Reply {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

/// GET with the query in the URL, or POST with it as a form body (as the controller sends it).
async fn query(State(traffic): State<Shared>, RawQuery(raw): RawQuery, form: String) -> Reply {
    let t = *traffic.lock().unwrap();
    if t.down {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "error", "errorType": "unavailable", "error": "scripted outage"}),
        );
    }
    let raw = raw.unwrap_or_default() + &form;
    let result = if raw.contains("histogram_quantile") {
        vec![
            sample(
                json!({"rollout": "checkout", "version": "canary"}),
                t.p99_ms,
            ),
            sample(json!({"rollout": "checkout", "version": "stable"}), 20.0),
        ]
    } else if raw.contains("stickycanary_requests_total") {
        vec![
            sample(
                json!({"rollout": "checkout", "version": "canary", "code_class": "2xx"}),
                t.canary_ok,
            ),
            sample(
                json!({"rollout": "checkout", "version": "canary", "code_class": "5xx"}),
                t.canary_5xx,
            ),
            sample(
                json!({"rollout": "checkout", "version": "stable", "code_class": "2xx"}),
                t.stable_ok,
            ),
            // Other rollouts share the batch and must not leak into this one.
            sample(
                json!({"rollout": "search", "version": "canary", "code_class": "5xx"}),
                9999.0,
            ),
        ]
    } else {
        vec![]
    };
    reply(
        StatusCode::OK,
        json!({"status": "success", "data": {"resultType": "vector", "result": result}}),
    )
}

struct FakePrometheus {
    url: String,
    traffic: Shared,
    _server: tokio::task::JoinHandle<()>,
}

async fn fake_prometheus(initial: Traffic) -> FakePrometheus {
    let traffic: Shared = Arc::new(Mutex::new(initial));
    let app = Router::new()
        .route("/api/v1/query", get(query).post(query))
        .with_state(traffic.clone());
    let (url, server) = serve_on_loopback(app).await;
    FakePrometheus {
        url,
        traffic,
        _server: server,
    }
}

impl Drop for FakePrometheus {
    fn drop(&mut self) {
        self._server.abort();
    }
}

/// A scratch dir with an ECDS file and a rollout file.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new(stage_seconds: u32) -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let config = json!({"rollouts": {
            "checkout": {"hosts": ["checkout"], "weight": 0},
            "search": {"hosts": ["search"], "weight": 30}
        }});
        let ecds = json!({"resources": [{"name": "stickycanary", "typed_config": {"config": {
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                              "value": config.to_string()}}}}]});
        fs::write(dir.path().join("filter.ecds.json"), ecds.to_string()).unwrap();
        let rollout = format!(
            "apiVersion: stickycanary.dev/v1alpha1
kind: CanaryRollout
metadata: {{name: checkout}}
spec:
  wasmPlugin: {{name: stickycanary}}
  canary: {{deployment: checkout-canary}}
  stages:
    - {{weight: 10, duration: {stage_seconds}s}}
    - {{weight: 50, duration: {stage_seconds}s}}
    - {{weight: 100}}
  analysis:
    interval: 300ms
    window: 10s
    minRequests: 50
    errorRate: {{maxPercent: 5, for: 600ms}}
    latencyP99: {{maxMs: 500, for: 600ms}}
    unavailableGrace: 1h
  prometheus: {{address: http://127.0.0.1:9}}
"
        );
        fs::write(dir.path().join("rollout.yaml"), rollout).unwrap();
        Scene { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn weight(&self) -> f64 {
        let doc: Value =
            serde_json::from_slice(&fs::read(self.path("filter.ecds.json")).unwrap()).unwrap();
        let config: Value = serde_json::from_str(
            doc["resources"][0]["typed_config"]["config"]["configuration"]["value"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            config["rollouts"]["search"]["weight"],
            json!(30),
            "the other rollout was touched"
        );
        config["rollouts"]["checkout"]["weight"].as_f64().unwrap()
    }

    fn status(&self) -> Value {
        serde_json::from_slice(&fs::read(self.path("status.json")).unwrap()).unwrap()
    }

    fn command(&self, prometheus: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stickycanary"));
        cmd.arg("local")
            .arg("--rollout")
            .arg(self.path("rollout.yaml"))
            .arg("--envoy-ecds")
            .arg(self.path("filter.ecds.json"))
            .arg("--prometheus")
            .arg(prometheus)
            .arg("--status-file")
            .arg(self.path("status.json"))
            .args(extra);
        cmd
    }
}

/// Kills and reaps the local loop even when the test fails.
struct Running {
    child: Child,
    lines: Received<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Running { child, lines }
    }

    async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "local loop did not finish; output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn poll_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn run_to_end(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_walks_every_stage_to_promoted() {
    let prometheus = fake_prometheus(HEALTHY).await;
    let scene = Scene::new(1);
    let mut run = Running::start(scene.command(&prometheus.url, &[]));
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while run.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        let w = scene.weight();
        if seen.last() != Some(&w) {
            seen.push(w);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = run.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success(), "{}", run.output());
    let w = scene.weight();
    if seen.last() != Some(&w) {
        seen.push(w);
    }
    assert_eq!(
        seen,
        vec![0.0, 10.0, 50.0, 100.0],
        "weights in order, none skipped or repeated"
    );
    assert_eq!(scene.status()["status"]["phase"], "Promoted");
    let output = run.output();
    assert!(
        output.contains("canary 50.0 req/s err 0.00% p99 40ms"),
        "{output}"
    );
    assert!(output.contains("finished: Promoted"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erroring_canary_is_rolled_back_with_reason_error_rate() {
    let prometheus = fake_prometheus(HEALTHY).await;
    let scene = Scene::new(30);
    let mut run = Running::start(scene.command(&prometheus.url, &[]));
    poll_until("stage 1 weight", Duration::from_secs(10), || {
        scene.weight() == 10.0
    })
    .await;
    prometheus.traffic.lock().unwrap().canary_5xx = 100.0; // 100 of 600: 16.7%
    let status = run.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{}", run.output());
    assert_eq!(scene.weight(), 0.0);
    let saved = scene.status();
    assert_eq!(saved["status"]["phase"], "RolledBack");
    assert_eq!(saved["status"]["rollbackReason"], "error-rate");
    assert!(run.output().contains("err 16.67%"), "{}", run.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_canary_is_rolled_back_with_reason_latency() {
    let prometheus = fake_prometheus(HEALTHY).await;
    let scene = Scene::new(30);
    let mut run = Running::start(scene.command(&prometheus.url, &[]));
    poll_until("stage 1 weight", Duration::from_secs(10), || {
        scene.weight() == 10.0
    })
    .await;
    prometheus.traffic.lock().unwrap().p99_ms = 800.0;
    run.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(scene.weight(), 0.0);
    assert_eq!(scene.status()["status"]["rollbackReason"], "latency");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thin_traffic_holds_the_first_stage() {
    let prometheus = fake_prometheus(Traffic {
        canary_ok: 10.0,
        ..HEALTHY
    })
    .await;
    let scene = Scene::new(1);
    let run = Running::start(scene.command(&prometheus.url, &[]));
    // Three stage durations pass without a promotion.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(scene.weight(), 10.0, "{}", run.output());
    assert_eq!(scene.status()["status"]["stageIndex"], 0);
    assert!(
        run.output().contains("inconclusive") || run.output().contains("Inconclusive"),
        "{}",
        run.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_holds_and_is_not_a_breach() {
    let prometheus = fake_prometheus(HEALTHY).await;
    let scene = Scene::new(30);
    let run = Running::start(scene.command(&prometheus.url, &[]));
    poll_until("stage 1 weight", Duration::from_secs(10), || {
        scene.weight() == 10.0
    })
    .await;
    prometheus.traffic.lock().unwrap().down = true;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        scene.weight(),
        10.0,
        "held, not rolled back: {}",
        run.output()
    );
    let saved = scene.status();
    assert_eq!(saved["status"]["phase"], "Progressing");
    assert!(saved["status"]["prometheusUnavailableSince"].is_string());
    assert!(
        run.output().contains("metrics unavailable"),
        "{}",
        run.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_the_same_stage_with_its_elapsed_time() {
    let prometheus = fake_prometheus(HEALTHY).await;
    let scene = Scene::new(30);
    let first = run_to_end(&mut scene.command(&prometheus.url, &["--once"]));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let started = scene.status()["status"]["stageStartedAt"].clone();
    assert!(started.is_string());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = run_to_end(&mut scene.command(&prometheus.url, &["--once"]));
    assert!(second.status.success());
    let text = String::from_utf8_lossy(&second.stdout);
    assert!(text.contains("resuming from Progressing stage 1"), "{text}");
    assert!(
        text.contains("(1s/30s)") || text.contains("(2s/30s)"),
        "elapsed time kept: {text}"
    );
    assert_eq!(
        scene.status()["status"]["stageStartedAt"],
        started,
        "stage timer not reset"
    );
    assert_eq!(scene.weight(), 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_status_file_stops_with_one_line_and_no_reset() {
    let prometheus = fake_prometheus(HEALTHY).await;
    let scene = Scene::new(30);
    fs::write(
        scene.path("status.json"),
        "{\"rollout\":\"checkout\",\"status\":{\"phase\":\"Progr",
    )
    .unwrap();
    let out = run_to_end(&mut scene.command(&prometheus.url, &["--once"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("corrupt"), "{err}");
    assert_eq!(scene.weight(), 0.0, "nothing was applied");
    assert!(
        fs::read_to_string(scene.path("status.json"))
            .unwrap()
            .ends_with("Progr"),
        "file left as is"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_reaches_a_running_loop_and_promote_applies_without_one() {
    let prometheus = fake_prometheus(HEALTHY).await;
    let scene = Scene::new(30);
    let mut run = Running::start(scene.command(&prometheus.url, &[]));
    poll_until("stage 1 weight", Duration::from_secs(10), || {
        scene.weight() == 10.0
    })
    .await;
    let status_file = scene.path("status.json");
    let abort = Command::new(env!("CARGO_BIN_EXE_stickycanary"))
        .args(["abort", "checkout", "--status-file"])
        .arg(&status_file)
        .output()
        .unwrap();
    assert!(
        abort.status.success(),
        "{}",
        String::from_utf8_lossy(&abort.stderr)
    );
    assert!(String::from_utf8_lossy(&abort.stdout).contains("queued"));
    run.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(scene.weight(), 0.0);
    assert_eq!(scene.status()["status"]["rollbackReason"], "aborted");

    // A fresh rollout with no loop running: promote is applied directly.
    let scene = Scene::new(30);
    let first = run_to_end(&mut scene.command(&prometheus.url, &["--once"]));
    assert!(first.status.success());
    let promote = Command::new(env!("CARGO_BIN_EXE_stickycanary"))
        .args(["promote", "checkout", "--status-file"])
        .arg(scene.path("status.json"))
        .output()
        .unwrap();
    assert!(
        promote.status.success(),
        "{}",
        String::from_utf8_lossy(&promote.stderr)
    );
    assert_eq!(scene.weight(), 100.0);
    assert_eq!(scene.status()["status"]["phase"], "Promoted");
}

#[test]
fn status_file_and_lock_live_next_to_each_other() {
    let base = Path::new("/tmp/x/status.json");
    assert_eq!(
        stickycanary::local::state::lock_path(base),
        PathBuf::from("/tmp/x/status.json.lock")
    );
    assert_eq!(
        stickycanary::local::state::request_path(base),
        PathBuf::from("/tmp/x/status.json.request")
    );
}

/// The address `local --metrics-addr 127.0.0.1:0` printed it serves on.
async fn served_addr(run: &Running) -> String {
    let mut addr = None;
    poll_until("the metrics address line", Duration::from_secs(10), || {
        addr = run.output().lines().find_map(|l| {
            l.strip_prefix("serving /metrics, /healthz, /readyz on ")
                .map(str::to_string)
        });
        addr.is_some()
    })
    .await;
    addr.unwrap()
}

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_addr_serves_the_rollout_series_and_lingers_after_a_rollback() {
    let prometheus = fake_prometheus(HEALTHY).await;
    let scene = Scene::new(30);
    let mut run = Running::start(scene.command(
        &prometheus.url,
        &["--metrics-addr", "127.0.0.1:0", "--metrics-linger", "60s"],
    ));
    let base = served_addr(&run).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let metrics = format!("{base}/metrics");
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text
        .contains(r#"stickycanary_rollout_weight{namespace="default",rollout="checkout"} 10.0"#)
    {
        assert!(Instant::now() < deadline, "no weight 10 in:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = scrape(&http, &metrics).await;
    }
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "ready after the first interval"
    );
    for line in [
        r#"stickycanary_rollout_phase{namespace="default",rollout="checkout",phase="Progressing"} 1"#,
        r#"stickycanary_rollbacks_total{namespace="default",rollout="checkout",reason="error-rate"} 0"#,
        r#"stickycanary_weight_patch_total{outcome="success"} 1"#,
        r#"stickycanary_analysis_total{result="#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }

    prometheus.traffic.lock().unwrap().canary_5xx = 100.0;
    poll_until("the rollback", Duration::from_secs(15), || {
        run.output().contains("finished: RolledBack")
    })
    .await;
    // The loop is done but the endpoint stays up for the linger time.
    let text = scrape(&http, &metrics).await;
    for line in [
        r#"stickycanary_rollout_weight{namespace="default",rollout="checkout"} 0.0"#,
        r#"stickycanary_rollout_phase{namespace="default",rollout="checkout",phase="RolledBack"} 1"#,
        r#"stickycanary_rollbacks_total{namespace="default",rollout="checkout",reason="error-rate"} 1"#,
        r#"stickycanary_rollbacks_total{namespace="default",rollout="checkout",reason="latency"} 0"#,
        r#"stickycanary_analysis_total{result="fail"}"#,
        r#"stickycanary_weight_patch_total{outcome="success"} 2"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    let queries: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("stickycanary_prometheus_queries_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(queries >= 3.0, "{queries} queries counted");
    assert!(run.child.try_wait().unwrap().is_none(), "lingering");

    // SIGTERM ends the linger at once, with success.
    let pid = run.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = run.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{}", run.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_addr_in_use_is_one_line_and_changes_nothing() {
    let prometheus = fake_prometheus(HEALTHY).await;
    let scene = Scene::new(30);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_to_end(&mut scene.command(&prometheus.url, &["--metrics-addr", &addr, "--once"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--metrics-addr"), "{err}");
    assert_eq!(scene.weight(), 0.0, "nothing was applied");
    assert!(!scene.path("status.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_status_file_is_next_to_the_rollout_not_in_envoys_watched_directory() {
    let prometheus = fake_prometheus(HEALTHY).await;
    let scene = Scene::new(30);
    let envoy_dir = scene.path("envoy");
    fs::create_dir(&envoy_dir).unwrap();
    let ecds = envoy_dir.join("filter.ecds.json");
    fs::rename(scene.path("filter.ecds.json"), &ecds).unwrap();
    let local = |rollout: &Path| {
        Command::new(env!("CARGO_BIN_EXE_stickycanary"))
            .arg("local")
            .arg("--rollout")
            .arg(rollout)
            .arg("--envoy-ecds")
            .arg(&ecds)
            .args(["--prometheus", &prometheus.url, "--once"])
            .output()
            .unwrap()
    };
    let out = local(&scene.path("rollout.yaml"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved: Value =
        serde_json::from_slice(&fs::read(scene.path("checkout.status.json")).unwrap()).unwrap();
    assert_eq!(saved["status"]["weight"], json!(10.0));
    let in_watched: Vec<String> = fs::read_dir(&envoy_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(in_watched, vec!["filter.ecds.json".to_string()]);

    // A rollout file inside the watched directory has no safe default: one-line error.
    let inside = envoy_dir.join("rollout.yaml");
    fs::copy(scene.path("rollout.yaml"), &inside).unwrap();
    let out = local(&inside);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--status-file"), "{err}");
    assert!(!envoy_dir.join("checkout.status.json").exists());
}

/// `stickycanary <verb> checkout --status-file ...` with no loop running.
fn manual_action(scene: &Scene, verb: &str) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_stickycanary"))
        .args([verb, "checkout", "--status-file"])
        .arg(scene.path("status.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{verb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no local loop running"),
        "applied directly"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_pause_or_resume_keeps_the_last_analysis_and_the_outage_clock() {
    let prometheus = fake_prometheus(HEALTHY).await;
    let scene = Scene::new(30);
    let once = |scene: &Scene| {
        let out = run_to_end(&mut scene.command(&prometheus.url, &["--once"]));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    once(&scene); // Pending -> stage 1 at 10%
    once(&scene); // a real window: 500 canary requests
    prometheus.traffic.lock().unwrap().down = true;
    once(&scene); // the outage starts
    let before = scene.status()["status"].clone();
    assert_eq!(before["lastAnalysis"]["canary"]["requests"], json!(500.0));
    assert!(before["prometheusUnavailableSince"].is_string(), "{before}");
    let degraded = |status: &Value| {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Degraded")
            .cloned()
            .unwrap()
    };
    assert_eq!(degraded(&before)["reason"], "PrometheusUnavailable");

    manual_action(&scene, "pause");
    let paused = scene.status()["status"].clone();
    assert_eq!(paused["phase"], "Paused");
    for field in [
        "lastAnalysis",
        "prometheusUnavailableSince",
        "breachStartedAt",
        "inconclusiveSince",
    ] {
        assert_eq!(paused[field], before[field], "{field} changed by a pause");
    }
    assert_eq!(degraded(&paused), degraded(&before));
    assert_eq!(scene.weight(), 10.0);

    manual_action(&scene, "resume");
    let resumed = scene.status()["status"].clone();
    assert_eq!(resumed["phase"], "Progressing");
    assert_eq!(resumed["lastAnalysis"], before["lastAnalysis"]);
    assert_eq!(
        resumed["prometheusUnavailableSince"], before["prometheusUnavailableSince"],
        "the grace timer was not restarted"
    );
    assert_eq!(scene.weight(), 10.0);

    // The action's own effect still lands: abort rolls back from here.
    manual_action(&scene, "abort");
    assert_eq!(scene.status()["status"]["phase"], "RolledBack");
    assert_eq!(scene.weight(), 0.0);
}

/// A webhook receiver that keeps every posted `text`.
async fn webhook() -> (String, Received<String>, tokio::task::JoinHandle<()>) {
    receiver(|body| body["text"].as_str().unwrap_or_default().to_string()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_weight_write_notifies_nobody_and_the_write_that_works_notifies_once() {
    let prometheus = fake_prometheus(HEALTHY).await;
    let (url, texts, server) = webhook().await;
    let scene = Scene::new(1);
    let rollout = fs::read_to_string(scene.path("rollout.yaml")).unwrap();
    fs::write(
        scene.path("rollout.yaml"),
        format!("{rollout}  notification: {{webhook: \"{url}\"}}\n"),
    )
    .unwrap();
    let run = Running::start(scene.command(&prometheus.url, &[]));
    poll_until("stage 1 weight", Duration::from_secs(10), || {
        scene.weight() == 10.0
    })
    .await;
    // Break the ECDS file: every weight write fails until it is back.
    let good = fs::read(scene.path("filter.ecds.json")).unwrap();
    fs::write(scene.path("filter.ecds.json"), b"{\"resources\": []}").unwrap();
    poll_until("failed weight writes", Duration::from_secs(10), || {
        run.output().matches("weight NOT applied").count() >= 3
    })
    .await;
    let advanced = |texts: &Received<String>| {
        texts
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.contains("weight set to 50%"))
            .count()
    };
    assert_eq!(
        advanced(&texts),
        0,
        "no notification for a weight Envoy never got"
    );
    fs::write(scene.path("filter.ecds.json"), good).unwrap();
    poll_until("stage 2 weight", Duration::from_secs(10), || {
        scene.weight() == 50.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(advanced(&texts), 1, "{:?}", texts.lock().unwrap());
    drop(run);
    server.abort();
}

/// A notification receiver that keeps each body with the status file's phase at the moment
/// it arrived.
async fn status_reading_webhook(
    status_file: PathBuf,
) -> (
    String,
    Received<(Value, Value)>,
    tokio::task::JoinHandle<()>,
) {
    receiver(move |body| {
        let saved_phase = fs::read(&status_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .map(|saved| saved["status"]["phase"].clone())
            .unwrap_or(Value::Null);
        (body, saved_phase)
    })
    .await
}

/// Drift fixes (issue 25): local mode announced before it saved the status, and its payload
/// named the key where the controller's names the namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_goes_out_after_the_status_is_saved_with_the_controllers_payload() {
    let scene = Scene::new(30);
    let (url, seen, server) = status_reading_webhook(scene.path("status.json")).await;
    let rollout = fs::read_to_string(scene.path("rollout.yaml")).unwrap();
    fs::write(
        scene.path("rollout.yaml"),
        format!("{rollout}  notification: {{webhook: \"{url}\"}}\n"),
    )
    .unwrap();
    let output = run_to_end(&mut scene.command("http://127.0.0.1:9", &["--once"]));
    assert!(output.status.success(), "{output:?}");
    let seen = seen.lock().unwrap().clone();
    server.abort();
    assert_eq!(
        seen,
        vec![(
            json!({"rollout": "checkout", "namespace": "default", "key": "checkout",
                   "text": "StageAdvanced: stage 1/3 (10%): weight set to 10% for 30s"}),
            json!("Progressing"),
        )],
        "one notification, sent once the status file says what it announces"
    );
}

/// Drift fix (issue 25): local mode ticked every 100ms at most, the controller every second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_second_interval_ticks_at_most_once_a_second_as_in_the_cluster() {
    let scene = Scene::new(30);
    let run = Running::start(scene.command("http://127.0.0.1:9", &[]));
    let progress = |run: &Running| {
        run.output()
            .lines()
            .filter(|line| line.starts_with(|c: char| c.is_ascii_digit()))
            .count()
    };
    poll_until("the first interval", Duration::from_secs(10), || {
        progress(&run) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let ticks = progress(&run);
    // At 1s: the first interval and at most 3 more (at 300ms there were 8 or 9). A loaded
    // machine may run fewer; only more would break the floor.
    assert!(ticks <= 4, "{ticks} intervals in 2.5s:\n{}", run.output());
}

/// A scene in the release lifecycle: `spec.canary.revision` set, hooks that log their calls.
fn lifecycle_scene(revision: &str) -> Scene {
    let scene = Scene::new(1);
    let rollout = fs::read_to_string(scene.path("rollout.yaml")).unwrap().replace(
        "canary: {deployment: checkout-canary}",
        &format!("canary: {{deployment: checkout-canary, revision: {revision}}}\n  scaleDownDelay: 300ms"),
    );
    fs::write(scene.path("rollout.yaml"), rollout).unwrap();
    scene
}

fn hook_args(scene: &Scene, scale_up: &str) -> Vec<String> {
    let log = scene.path("hooks.log");
    let record = |what: &str| {
        format!(
            "echo \"$STICKYCANARY_ROLLOUT $STICKYCANARY_REVISION $STICKYCANARY_ACTION\" >> {} && echo {what}",
            log.display()
        )
    };
    vec![
        "--on-scale-up".into(),
        format!("{} && {scale_up}", record("up")),
        "--on-promote".into(),
        record("promoted"),
        "--on-scale-down".into(),
        record("down"),
        "--hook-timeout".into(),
        "5s".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_runs_the_hooks_in_order_and_waits_for_the_next_revision() {
    let prometheus = fake_prometheus(HEALTHY).await;
    let scene = lifecycle_scene("r2");
    let args = hook_args(&scene, "true");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = Running::start(scene.command(&prometheus.url, &args));
    poll_until("Succeeded", Duration::from_secs(20), || {
        scene.path("status.json").exists() && scene.status()["status"]["phase"] == "Succeeded"
    })
    .await;
    let status = scene.status()["status"].clone();
    assert_eq!(status["stableRevision"], "r2");
    assert_eq!(status["salt"], "checkout-r2");
    assert_eq!(scene.weight(), 0.0, "users back on stable");
    let calls = fs::read_to_string(scene.path("hooks.log")).unwrap();
    assert_eq!(
        calls,
        "checkout r2 scale-up\ncheckout r2 promote\ncheckout r2 scale-down\n"
    );
    let output = run.output();
    assert!(
        output.contains("hook --on-promote (revision r2): ok"),
        "{output}"
    );
    assert!(
        output.contains("      | promoted"),
        "the hook's output is logged: {output}"
    );
    // The salt of the run, as `assign` reads it from the status file.
    let out = Command::new(env!("CARGO_BIN_EXE_stickycanary"))
        .args(["assign", "--user", "u42", "--weight", "10", "--status-file"])
        .arg(scene.path("status.json"))
        .output()
        .unwrap();
    let explicit = Command::new(env!("CARGO_BIN_EXE_stickycanary"))
        .args([
            "assign",
            "--user",
            "u42",
            "--weight",
            "10",
            "--salt",
            "checkout-r2",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, explicit.stdout);
    // Still running: waiting for a release.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut run = run;
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "the loop waits for the next revision"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_scale_up_hook_fails_the_run_before_any_user_reaches_the_canary() {
    let prometheus = fake_prometheus(HEALTHY).await;
    let scene = lifecycle_scene("r2");
    let args = hook_args(&scene, "echo no capacity >&2 && exit 3");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = Running::start(scene.command(&prometheus.url, &args));
    poll_until("RolledBack", Duration::from_secs(20), || {
        scene.path("status.json").exists() && scene.status()["status"]["phase"] == "RolledBack"
    })
    .await;
    let status = scene.status()["status"].clone();
    assert_eq!(status["rollbackReason"], "scale-up-failed");
    assert_eq!(status["failedRevision"], "r2");
    assert!(
        status["failureReason"]
            .as_str()
            .unwrap()
            .contains("exit status: 3"),
        "{status}"
    );
    assert_eq!(scene.weight(), 0.0);
    poll_until("scale-down", Duration::from_secs(5), || {
        run.output()
            .contains("hook --on-scale-down (revision r2): ok")
    })
    .await;
    let output = run.output();
    assert!(output.contains("      | no capacity"), "{output}");
    assert!(
        !output.contains("weight 10%"),
        "no user ever reached r2: {output}"
    );
}

/// Two loops started at the same instant on one status file: the OS lock lets exactly one
/// drive the rollout, and the other stops with one line naming it (a check-then-write lock
/// file let both run when they raced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_local_loops_on_one_status_file_never_both_run() {
    let prometheus = fake_prometheus(HEALTHY).await;
    for _ in 0..3 {
        let scene = Scene::new(30);
        let mut runs = [
            Running::start(scene.command(&prometheus.url, &[])),
            Running::start(scene.command(&prometheus.url, &[])),
        ];
        // The loser exits at once; give the winner time to show it keeps running.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut exited = Vec::new();
        while exited.is_empty() && Instant::now() < deadline {
            for (i, run) in runs.iter_mut().enumerate() {
                if let Some(status) = run.child.try_wait().unwrap() {
                    exited.push((i, status));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let still: Vec<bool> = runs
            .iter_mut()
            .map(|r| r.child.try_wait().unwrap().is_none())
            .collect();
        assert_eq!(exited.len(), 1, "exactly one loop stops: {exited:?}");
        let (loser, status) = exited[0];
        assert!(!status.success());
        assert_eq!(still, [loser != 0, loser != 1], "the winner keeps running");
        let mut stderr = String::new();
        use std::io::Read;
        runs[loser]
            .child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            stderr.contains("another stickycanary local (pid ")
                && stderr.trim().lines().count() == 1,
            "{stderr}"
        );
        poll_until("the winner's stage 1", Duration::from_secs(10), || {
            scene.weight() == 10.0
        })
        .await;
    }
}
