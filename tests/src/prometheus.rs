//! A real Prometheus on 127.0.0.1 with its own temp TSDB, for tests and the demo.
//! It can be stopped and started again on the same port and data directory (to test a
//! Prometheus outage) and queried with instant queries.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, IoContext, Result};
use crate::proc::ChildGuard;
use crate::{http1, paths, ports};

#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    pub job: String,
    pub addr: SocketAddr,
    pub metrics_path: String,
}

impl ScrapeTarget {
    /// Envoy's admin `/stats/prometheus`.
    pub fn envoy(admin: SocketAddr) -> Self {
        Self {
            job: "envoy".into(),
            addr: admin,
            metrics_path: "/stats/prometheus".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PrometheusOptions {
    pub scrape_interval: Duration,
    pub targets: Vec<ScrapeTarget>,
    /// `None` picks a free port.
    pub port: Option<u16>,
    pub ready_timeout: Duration,
    /// Rule files to load (`rule_files`), evaluated every scrape interval.
    pub rule_files: Vec<PathBuf>,
}

impl PrometheusOptions {
    pub fn new(targets: Vec<ScrapeTarget>) -> Self {
        Self {
            scrape_interval: Duration::from_secs(1),
            targets,
            port: None,
            ready_timeout: Duration::from_secs(60),
            rule_files: Vec::new(),
        }
    }
}

fn duration_text(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// The `prometheus.yml` text for `opts` (JSON is valid YAML).
pub fn config_text(opts: &PrometheusOptions) -> String {
    let scrape_configs: Vec<Value> = opts
        .targets
        .iter()
        .map(|t| {
            serde_json::json!({
                "job_name": t.job,
                "metrics_path": t.metrics_path,
                "scrape_interval": duration_text(opts.scrape_interval),
                "scrape_timeout": duration_text(opts.scrape_interval),
                "static_configs": [{"targets": [t.addr.to_string()]}]
            })
        })
        .collect();
    serde_json::json!({
        "global": {
            "scrape_interval": duration_text(opts.scrape_interval),
            "evaluation_interval": duration_text(opts.scrape_interval)
        },
        "scrape_configs": scrape_configs,
        "rule_files": opts.rule_files
    })
    .to_string()
}

pub struct Prometheus {
    child: Option<ChildGuard>,
    pub addr: SocketAddr,
    opts: PrometheusOptions,
    // Last, so the process dies before its data directory goes.
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Write the config, start Prometheus and wait until `/-/ready` answers 200.
    /// When the port is picked here and turns out taken at bind time, it retries on a fresh one.
    pub fn start(opts: &PrometheusOptions) -> Result<Self> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(opts) {
                Err(e)
                    if attempt < 3 && opts.port.is_none() && crate::envoy::is_bind_failure(&e) =>
                {
                    continue
                }
                other => return other,
            }
        }
    }

    fn start_once(opts: &PrometheusOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sc-prometheus-")
            .tempdir()
            .ctx(|| "create prometheus temp dir".into())?;
        std::fs::write(dir.path().join("prometheus.yml"), config_text(opts))
            .ctx(|| "write prometheus.yml".into())?;
        let port = match opts.port {
            Some(p) => p,
            None => ports::free_port()?,
        };
        let mut prometheus = Self {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            opts: opts.clone(),
            dir,
        };
        prometheus.start_process()?;
        Ok(prometheus)
    }

    fn start_process(&mut self) -> Result<()> {
        let mut cmd = Command::new(paths::prometheus_bin()?);
        cmd.arg(format!(
            "--config.file={}",
            self.dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            self.dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={}", self.addr))
        .arg("--storage.tsdb.retention.time=1d")
        .arg("--log.level=warn");
        let mut child =
            ChildGuard::spawn("prometheus", cmd, &self.dir.path().join("prometheus.log"))?;
        let addr = self.addr;
        // Ready means *this* Prometheus (its TSDB is our data directory) answers, not any
        // Prometheus that took the port between the probe and our bind: that one would scrape
        // another stack, and ours would exit with a bind failure that `start` retries.
        let data_dir = self.data_dir().display().to_string();
        child.wait_ready(self.opts.ready_timeout, || {
            http1::request(addr, "GET", "/-/ready", &[], &[], Duration::from_secs(2))
                .is_ok_and(|r| r.status == 200)
                && tsdb_path(addr).as_deref() == Some(data_dir.as_str())
        })?;
        self.child = Some(child);
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.exit_status().is_none())
    }

    /// Stop gracefully (SIGTERM, up to 15 s, then SIGKILL). The port and data stay reserved.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.terminate(Duration::from_secs(15));
        }
    }

    /// Start again on the same port with the same data directory.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.start_process()
    }

    /// Instant query: the `data.result` array of `/api/v1/query`.
    pub fn query(&self, promql: &str) -> Result<Vec<Value>> {
        let path = format!("/api/v1/query?query={}", http1::url_encode(promql));
        let resp = http1::request(self.addr, "GET", &path, &[], &[], Duration::from_secs(10))?;
        let body: Value = serde_json::from_slice(&resp.body).map_err(|e| {
            Error::Http(format!(
                "prometheus answered non-JSON ({}): {e}",
                resp.status
            ))
        })?;
        if body["status"] != "success" {
            return Err(Error::Http(format!(
                "prometheus query {promql:?} failed: {}",
                body["error"].as_str().unwrap_or("unknown error")
            )));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The single value of a query returning one vector element or a scalar; `None` when empty.
    pub fn query_value(&self, promql: &str) -> Result<Option<f64>> {
        let result = self.query(promql)?;
        let Some(first) = result.first() else {
            return Ok(None);
        };
        let value = first["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| {
                Error::Http(format!("unexpected result shape for {promql:?}: {first}"))
            })?;
        Ok(Some(value))
    }

    /// Poll until every configured target reports `up == 1`.
    pub fn wait_targets_up(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let want = self.opts.targets.len();
        loop {
            let up = self.query("up == 1").map(|r| r.len()).unwrap_or(0);
            if up >= want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!("{up} of {want} scrape targets up")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_text(&self) -> String {
        self.child
            .as_ref()
            .map(ChildGuard::log_text)
            .unwrap_or_else(|| {
                std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
            })
    }
}

/// The `--storage.tsdb.path` of the Prometheus answering on `addr`.
fn tsdb_path(addr: SocketAddr) -> Option<String> {
    let resp = http1::request(
        addr,
        "GET",
        "/api/v1/status/flags",
        &[],
        &[],
        Duration::from_secs(2),
    )
    .ok()?;
    let body: Value = serde_json::from_slice(&resp.body).ok()?;
    body["data"]["storage.tsdb.path"]
        .as_str()
        .map(str::to_string)
}
