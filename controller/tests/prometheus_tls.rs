//! The controller's Prometheus source (`PrometheusSource` on the one outbound client) against
//! a real `prometheus` binary on 127.0.0.1, behind a loopback TLS proxy that wants a bearer
//! token: with the token and the proxy's CA it gets real answers (a scalar and a batch);
//! with a wrong token, no token or an untrusted certificate it gets one line that says why
//! and never holds the token. The same through `stickycanary local --once` and its
//! `--prometheus-*` flags.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod loopback;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use loopback::{serve, Received, Server, TestCa};
use stickycanary::http::source::{SourceOutbound, SourceValues};
use stickycanary::observation::MetricsObservation;
use stickycanary::prometheus::{MetricsSource, PrometheusSource, RolloutSeries};

const TOKEN: &str = "prom-t0ken-8472";
const WRONG: &str = "wrong-t0ken-1234";

/// A real Prometheus with no scrape targets (PromQL like `vector(42)` needs none).
struct RealPrometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for RealPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 exchange with Prometheus (plain http on loopback): status, body.
fn exchange(addr: SocketAddr, method: &str, target: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let head = format!(
        "{method} {target} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status_line = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, answer[split + 4..].to_vec()))
}

fn start_prometheus() -> RealPrometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        "global: {scrape_interval: 15s}\nscrape_configs: []\n",
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the prometheus binary (prometheus --version)");
    let prometheus = RealPrometheus {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while exchange(addr, "GET", "/-/ready", b"").map(|(status, _)| status) != Some(200) {
        assert!(Instant::now() < deadline, "prometheus not ready on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
    prometheus
}

/// A TLS proxy in front of `upstream` that forwards only requests bearing `TOKEN`.
async fn token_proxy(ca: &TestCa, upstream: SocketAddr) -> Server {
    serve(Some(ca.server_identity()), move |request: &Received| {
        if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return (401, vec![], "Unauthorized\n".to_string());
        }
        match exchange(upstream, &request.method, &request.target, &request.body) {
            Some((status, body)) => (
                status,
                vec![("content-type".into(), "application/json".into())],
                String::from_utf8_lossy(&body).into_owned(),
            ),
            None => (502, vec![], "upstream failed".to_string()),
        }
    })
    .await
}

fn source(base: &str, ca_pem: Option<&str>, token: Option<&str>) -> PrometheusSource {
    let outbound: SourceOutbound = serde_yaml::from_str("timeout: 5s\n").unwrap();
    let config = outbound.client_config(SourceValues {
        ca_pem: ca_pem.map(|pem| pem.as_bytes().to_vec()),
        bearer_token: token.map(str::to_string),
        ..SourceValues::default()
    });
    PrometheusSource::with_config(base, &config).unwrap()
}

/// One line, naming why, without either token.
fn assert_clean_line(line: &str, expected: &str) {
    assert!(line.contains(expected), "{line}");
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(!line.contains(TOKEN) && !line.contains(WRONG), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_protected_https_prometheus_answers_the_right_token_only() {
    let prometheus = start_prometheus();
    let ca = TestCa::new("stickycanary prometheus test CA");
    let proxy = token_proxy(&ca, prometheus.addr).await;
    assert!(proxy.base.starts_with("https://127.0.0.1:"));

    // The right token and the proxy's CA: Prometheus's own answers.
    let good = source(&proxy.base, Some(&ca.pem()), Some(TOKEN));
    assert_eq!(good.scalar("vector(42)").await, Ok(Some(42.0)));
    assert_eq!(good.scalar("scalar(vector(2.5))").await, Ok(Some(2.5)));
    let refused = good.scalar("sum(").await.unwrap_err();
    assert_clean_line(&refused, "Prometheus refused the query (bad_data)");
    // The batch (four queries) works through it too: no series yet, so a window of zeros.
    let rollouts = [RolloutSeries::with_default_versions("checkout")];
    let batch = good.windows(&rollouts, Duration::from_secs(30)).await;
    assert!(
        matches!(batch["checkout"], MetricsObservation::Window { .. }),
        "{batch:?}"
    );
    let forwarded = proxy.received();
    assert!(forwarded.len() >= 7, "{forwarded:?}");
    assert!(forwarded
        .iter()
        .all(|r| r.method == "POST" && r.target == "/api/v1/query"));

    // A wrong or missing token: one line that says the credentials were refused.
    for token in [Some(WRONG), None] {
        let bad = source(&proxy.base, Some(&ca.pem()), token);
        let line = bad.scalar("vector(42)").await.unwrap_err();
        assert_clean_line(
            &line,
            "HTTP 401: Prometheus refused the request's credentials (check bearerTokenSecretRef, basicAuth",
        );
        let batch = bad.windows(&rollouts, Duration::from_secs(30)).await;
        match &batch["checkout"] {
            MetricsObservation::Unavailable { reason } => {
                assert_clean_line(reason, &format!("prometheus {}: HTTP 401", proxy.base))
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
    }

    // The right token to a server this client does not trust: nothing is sent.
    let before = proxy.received().len();
    let untrusted = source(&proxy.base, None, Some(TOKEN));
    let line = untrusted.scalar("vector(42)").await.unwrap_err();
    assert_clean_line(&line, "TLS: the server's certificate is not trusted");
    assert_eq!(proxy.received().len(), before, "nothing reached the proxy");
}

/// The ECDS file and the rollout `stickycanary local` runs, in `dir` (the rollout as JSON,
/// which is YAML too).
fn local_scene(dir: &std::path::Path, prometheus: &str, webhook: &str) {
    let prometheus = serde_json::json!({"address": prometheus,
        "bearerTokenSecretRef": {"name": "prom", "key": "token"}});
    local_scene_with(dir, prometheus, Some(webhook));
}

/// As [`local_scene`], with `spec.prometheus` as given and an optional notification.
fn local_scene_with(dir: &std::path::Path, prometheus: serde_json::Value, webhook: Option<&str>) {
    use serde_json::json;
    let config = json!({"rollouts": {"checkout": {"hosts": ["checkout"], "weight": 0}}});
    let value = json!({"@type": "type.googleapis.com/google.protobuf.StringValue",
                       "value": config.to_string()});
    let ecds = json!({"resources": [{"name": "stickycanary",
                                     "typed_config": {"config": {"configuration": value}}}]});
    std::fs::write(dir.join("filter.ecds.json"), ecds.to_string()).unwrap();
    let mut spec = json!({
        "wasmPlugin": {"name": "stickycanary"},
        "canary": {"deployment": "checkout-canary"},
        "stages": [{"weight": 10, "duration": "30s"}, {"weight": 100}],
        "analysis": {"interval": "1s", "unavailableGrace": "1h"},
        "prometheus": prometheus,
    });
    if let Some(webhook) = webhook {
        spec["notification"] = json!({"webhook": webhook});
    }
    let rollout = json!({"apiVersion": "stickycanary.dev/v1alpha1", "kind": "CanaryRollout",
                         "metadata": {"name": "checkout"}, "spec": spec});
    std::fs::write(dir.join("rollout.yaml"), rollout.to_string()).unwrap();
}

fn local_once(
    dir: &std::path::Path,
    flags: &[&str],
    ssl_cert_file: &std::path::Path,
) -> std::process::Output {
    local_once_env(dir, flags, ssl_cert_file, &[])
}

/// As [`local_once`], with these environment variables set.
fn local_once_env(
    dir: &std::path::Path,
    flags: &[&str],
    ssl_cert_file: &std::path::Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> std::process::Output {
    let files = ["rollout.yaml", "filter.ecds.json", "status.json"].map(|name| dir.join(name));
    let [rollout, ecds, status] = files.each_ref().map(|path| path.as_os_str());
    let named = [
        ("--rollout", rollout),
        ("--envoy-ecds", ecds),
        ("--status-file", status),
    ];
    Command::new(env!("CARGO_BIN_EXE_stickycanary"))
        .arg("local")
        .args(
            named
                .iter()
                .flat_map(|(flag, path)| [std::ffi::OsStr::new(flag), path]),
        )
        .arg("--once")
        .args(flags)
        .env("SSL_CERT_FILE", ssl_cert_file)
        .env_remove("STICKYCANARY_PROMETHEUS_BEARER_TOKEN_FILE")
        .env_remove("STICKYCANARY_PROMETHEUS_CA_FILE")
        .env_remove("STICKYCANARY_PROMETHEUS_BASIC_AUTH_USER")
        .env_remove("STICKYCANARY_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_reads_token_ca_and_headers_from_flags_and_notifies_over_https() {
    let prometheus = start_prometheus();
    let prometheus_ca = TestCa::new("prometheus proxy CA");
    let proxy = token_proxy(&prometheus_ca, prometheus.addr).await;
    // The notification receiver's CA reaches the process through SSL_CERT_FILE only.
    let hook_ca = TestCa::new("notification CA");
    let hook = serve(Some(hook_ca.server_identity()), loopback::ok).await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("hook-ca.pem"), hook_ca.pem()).unwrap();
    std::fs::write(path("prom-ca.pem"), prometheus_ca.pem()).unwrap();
    std::fs::write(path("token"), format!("{TOKEN}\n")).unwrap();
    local_scene(dir.path(), &proxy.base, &format!("{}/hook", hook.base));

    // The Secret reference cannot be read here: one line naming the flag to use.
    let out = local_once(dir.path(), &[], &path("hook-ca.pem"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("spec.prometheus.bearerTokenSecretRef: local mode reads no Secrets; pass the token with --prometheus-bearer-token-file"),
        "{stderr}"
    );
    assert!(proxy.received().is_empty() && hook.received().is_empty());

    let token_file = path("token");
    let ca_file = path("prom-ca.pem");
    let flags = [
        "--prometheus-bearer-token-file",
        token_file.to_str().unwrap(),
        "--prometheus-ca-file",
        ca_file.to_str().unwrap(),
        "--prometheus-header",
        "X-Scope-OrgID: t1",
    ];
    let out = local_once(dir.path(), &flags, &path("hook-ca.pem"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
    let queries = proxy.received();
    assert!(!queries.is_empty(), "no query reached the proxy");
    for query in &queries {
        assert_eq!(
            query.header("authorization"),
            Some(&*format!("Bearer {TOKEN}"))
        );
        assert_eq!(query.header("x-scope-orgid"), Some("t1"));
    }
    // Prometheus answered (no data yet), so the metrics were not unavailable.
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path("status.json")).unwrap()).unwrap();
    assert!(
        status["status"]["prometheusUnavailableSince"].is_null(),
        "{status}"
    );
    let notified = hook.received();
    assert_eq!(notified.len(), 1, "{notified:?}");
    assert_eq!(notified[0].target, "/hook");
    assert!(
        notified[0].json()["text"]
            .as_str()
            .unwrap()
            .starts_with("StageAdvanced: stage 1/2 (10%)"),
        "{:?}",
        notified[0].json()
    );

    // No verification at all: it works, and it says so on stderr.
    let insecure = [
        "--prometheus-bearer-token-file",
        token_file.to_str().unwrap(),
        "--prometheus-insecure-skip-verify",
    ];
    let before = proxy.received().len();
    let out = local_once(dir.path(), &insecure, &path("hook-ca.pem"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "--prometheus-insecure-skip-verify: Prometheus's TLS certificate is not verified"
        ),
        "{stderr}"
    );
    assert!(proxy.received().len() > before);
}

/// Local mode stands in for `spec.prometheus.basicAuth` and a Secret-held header with flags
/// (or environment variables): a loopback Prometheus receives the exact Basic credentials,
/// the tenant header and the spec's literal header. Without the flags, or with two auths,
/// it refuses in one line naming the field or flag, and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_sends_basic_auth_and_tenant_header_from_flags_or_env() {
    let prometheus = serve(None, |_| {
        (
            200,
            vec![("content-type".into(), "application/json".into())],
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.into(),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("password"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(path("token"), format!("{WRONG}\n")).unwrap();
    let spec_prometheus = serde_json::json!({
        "address": prometheus.base,
        "basicAuth": {"username": {"name": "grafana-cloud", "key": "user"},
                      "password": {"name": "grafana-cloud", "key": "token"}},
        "headers": [
            {"name": "X-Scope-OrgID", "valueFrom": {"secretKeyRef": {"name": "tenant", "key": "id"}}},
            {"name": "X-Team", "value": "checkout"},
        ],
    });
    local_scene_with(dir.path(), spec_prometheus, None);
    let no_ca = path("password"); // SSL_CERT_FILE is not used: plain http.
    let password = path("password");
    let password = password.to_str().unwrap();
    let token = path("token");
    let token = token.to_str().unwrap();
    let basic = [
        "--prometheus-basic-auth-user",
        "123456",
        "--prometheus-basic-auth-password-file",
        password,
    ];
    let tenant = ["--prometheus-header", "X-Scope-OrgID: t1"];

    let refusals: [(Vec<&str>, &str); 3] = [
        (
            vec![],
            "spec.prometheus.basicAuth: local mode reads no Secrets; pass them with --prometheus-basic-auth-user and --prometheus-basic-auth-password-file",
        ),
        (
            basic.to_vec(),
            "spec.prometheus.headers[0].valueFrom: local mode reads no Secrets; pass the value with --prometheus-header 'X-Scope-OrgID: VALUE'",
        ),
        (
            [&basic[..], &tenant[..], &["--prometheus-bearer-token-file", token]].concat(),
            "--prometheus-basic-auth-user: not with --prometheus-bearer-token-file (each is an Authorization header)",
        ),
    ];
    for (flags, expected) in refusals {
        let out = local_once(dir.path(), &flags, &no_ca);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{flags:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert_clean_line(&stderr, expected);
    }
    assert!(prometheus.received().is_empty(), "sent before refusing");

    // base64("123456:prom-t0ken-8472"): the password file's newline is trimmed.
    let expected_auth = "Basic MTIzNDU2OnByb20tdDBrZW4tODQ3Mg==";
    let by_flags = [&basic[..], &tenant[..]].concat();
    let by_env: [(&str, &std::ffi::OsStr); 2] = [
        ("STICKYCANARY_PROMETHEUS_BASIC_AUTH_USER", "123456".as_ref()),
        (
            "STICKYCANARY_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE",
            password.as_ref(),
        ),
    ];
    for (flags, env) in [(&by_flags[..], &[][..]), (&tenant[..], &by_env[..])] {
        let before = prometheus.received().len();
        let out = local_once_env(dir.path(), flags, &no_ca, env);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains(TOKEN), "{stderr}");
        let queries = &prometheus.received()[before..];
        assert!(!queries.is_empty(), "no query reached Prometheus");
        for query in queries {
            assert_eq!(query.header("authorization"), Some(expected_auth));
            assert_eq!(query.header("x-scope-orgid"), Some("t1"));
            assert_eq!(query.header("x-team"), Some("checkout"));
        }
        let status = std::fs::read_to_string(path("status.json")).unwrap();
        assert!(
            !status.contains(TOKEN) && !status.contains("MTIzNDU2"),
            "{status}"
        );
    }
}
