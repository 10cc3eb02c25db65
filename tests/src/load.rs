//! The load generator behind `sc-load`: N keep-alive connections (one thread each) sending
//! requests for many distinct users (`x-user-id: u<N>`), recording per request the version that
//! served it (`x-served-by`), the status, and transport errors.
//!
//! Users are taken round-robin from a shared counter, so `requests == users` sends exactly one
//! request per user. An optional target rate paces the whole run (not per connection).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::http1;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Envoy's listener.
    pub target: SocketAddr,
    /// The `Host` header (the rollout's host).
    pub host: String,
    pub path: String,
    pub connections: usize,
    /// Number of distinct users; request `i` uses user `first_user + i % users`.
    pub users: u64,
    pub first_user: u64,
    pub user_prefix: String,
    /// Identity header; `None` sends no identity (anonymous traffic).
    pub user_header: Option<String>,
    /// Stop after this many requests in total.
    pub requests: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Total requests per second across all connections; `None` = as fast as possible.
    pub rate: Option<f64>,
    /// Extra headers on every request.
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// Keep each user's versions (needed for stickiness checks; costs memory per user).
    pub track_users: bool,
}

impl LoadOptions {
    pub fn new(target: SocketAddr, host: &str) -> Self {
        Self {
            target,
            host: host.to_string(),
            path: "/".into(),
            connections: 4,
            users: 1000,
            first_user: 0,
            user_prefix: "u".into(),
            user_header: Some("x-user-id".into()),
            requests: None,
            duration: None,
            rate: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(30),
            track_users: true,
        }
    }

    pub fn user_id(&self, index: u64) -> String {
        format!(
            "{}{}",
            self.user_prefix,
            self.first_user + index % self.users.max(1)
        )
    }
}

/// What one user saw during the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UserRecord {
    pub first: String,
    pub last: String,
    pub requests: u64,
    /// Number of times the version changed between consecutive requests of this user.
    pub switches: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadSummary {
    pub requests: u64,
    /// Responses with a 2xx status.
    pub ok: u64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no HTTP response at all (connect/read/write errors, timeouts).
    pub transport_errors: u64,
    /// Responses by `x-served-by` (`none` when the header was missing, e.g. a local Envoy reply).
    pub by_version: BTreeMap<String, u64>,
    /// Non-2xx responses by `x-served-by`.
    pub non_2xx_by_version: BTreeMap<String, u64>,
    /// Seconds from the start of the run to the first response served by each version.
    pub first_seconds_by_version: BTreeMap<String, f64>,
    /// Seconds from the start of the run to the latest response served by each version (e.g. the
    /// last canary response after a rollback was triggered).
    pub last_seconds_by_version: BTreeMap<String, f64>,
    /// The first few transport error messages, for diagnosis.
    pub error_samples: Vec<String>,
    pub elapsed_seconds: f64,
    pub requests_per_second: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    /// Distinct users seen (when tracking users).
    pub distinct_users: u64,
    /// Users that saw more than one version (when tracking users).
    pub users_switched: u64,
    #[serde(skip)]
    pub users: BTreeMap<String, UserRecord>,
}

impl LoadSummary {
    /// Fraction (0..=1) of responses served by `version`.
    pub fn share(&self, version: &str) -> f64 {
        let total: u64 = self.by_version.values().sum();
        if total == 0 {
            return 0.0;
        }
        *self.by_version.get(version).unwrap_or(&0) as f64 / total as f64
    }

    /// Responses that were not 2xx plus transport errors.
    pub fn failures(&self) -> u64 {
        self.requests - self.ok
    }

    /// The version each user saw last.
    pub fn user_versions(&self) -> BTreeMap<String, String> {
        self.users
            .iter()
            .map(|(u, r)| (u.clone(), r.last.clone()))
            .collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

#[derive(Default)]
struct Aggregate {
    summary: LoadSummary,
    latencies_us: Vec<u64>,
}

struct Shared {
    opts: LoadOptions,
    next: AtomicU64,
    stop: AtomicBool,
    started: Instant,
    agg: Mutex<Aggregate>,
}

/// A running load; stop it with [`LoadHandle::stop`] or wait with [`LoadHandle::wait`].
pub struct LoadHandle {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// Start sending load in the background.
pub fn start(opts: LoadOptions) -> LoadHandle {
    let shared = Arc::new(Shared {
        opts,
        next: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        started: Instant::now(),
        agg: Mutex::new(Aggregate::default()),
    });
    let workers = (0..shared.opts.connections.max(1))
        .map(|_| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || worker(&shared))
        })
        .collect();
    LoadHandle { shared, workers }
}

/// Run to completion (`requests` or `duration` must be set, else this runs until the process ends).
pub fn run(opts: LoadOptions) -> LoadSummary {
    start(opts).wait()
}

impl LoadHandle {
    /// A summary of what has been recorded so far.
    pub fn snapshot(&self) -> LoadSummary {
        finish(&self.shared)
    }

    /// True once every worker has finished (request budget or duration reached).
    pub fn is_finished(&self) -> bool {
        self.workers.iter().all(JoinHandle::is_finished)
    }

    /// Stop sending (in-flight requests complete) and return the summary.
    pub fn stop(self) -> LoadSummary {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.wait()
    }

    /// Wait for the workers to finish on their own.
    pub fn wait(self) -> LoadSummary {
        for w in self.workers {
            let _ = w.join();
        }
        finish(&self.shared)
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

fn finish(shared: &Shared) -> LoadSummary {
    let agg = shared.agg.lock().unwrap_or_else(|e| e.into_inner());
    let mut summary = agg.summary.clone();
    let mut lat = agg.latencies_us.clone();
    drop(agg);
    lat.sort_unstable();
    summary.elapsed_seconds = shared.started.elapsed().as_secs_f64();
    summary.requests_per_second = summary.requests as f64 / summary.elapsed_seconds.max(1e-9);
    summary.latency_ms_p50 = percentile(&lat, 0.50);
    summary.latency_ms_p99 = percentile(&lat, 0.99);
    summary.latency_ms_max = lat.last().map_or(0.0, |v| *v as f64 / 1000.0);
    summary.distinct_users = summary.users.len() as u64;
    summary.users_switched = summary.users.values().filter(|r| r.switches > 0).count() as u64;
    summary
}

fn worker(shared: &Shared) {
    let opts = &shared.opts;
    let mut client = http1::Client::new(opts.target, opts.timeout);
    let deadline = opts.duration.map(|d| shared.started + d);
    loop {
        if shared.stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        let index = shared.next.fetch_add(1, Ordering::SeqCst);
        if opts.requests.is_some_and(|n| index >= n) {
            return;
        }
        if let Some(rate) = opts.rate.filter(|r| *r > 0.0) {
            let due = shared.started + Duration::from_secs_f64(index as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
        }
        let user = opts.user_id(index);
        let mut headers: Vec<(&str, &str)> = vec![("host", opts.host.as_str())];
        if let Some(h) = &opts.user_header {
            headers.push((h.as_str(), user.as_str()));
        }
        for (k, v) in &opts.headers {
            headers.push((k.as_str(), v.as_str()));
        }
        let sent_at = Instant::now();
        let result = client.get(&opts.path, &headers);
        let latency_us = sent_at.elapsed().as_micros() as u64;
        record(shared, &user, result, latency_us);
    }
}

fn record(shared: &Shared, user: &str, result: crate::Result<http1::Response>, latency_us: u64) {
    let mut agg = shared.agg.lock().unwrap_or_else(|e| e.into_inner());
    agg.summary.requests += 1;
    match result {
        Err(e) => {
            agg.summary.transport_errors += 1;
            if agg.summary.error_samples.len() < 5 {
                agg.summary.error_samples.push(e.to_string());
            }
        }
        Ok(resp) => {
            agg.latencies_us.push(latency_us);
            let version = resp.header("x-served-by").unwrap_or("none").to_string();
            *agg.summary.statuses.entry(resp.status).or_insert(0) += 1;
            *agg.summary.by_version.entry(version.clone()).or_insert(0) += 1;
            let at = shared.started.elapsed().as_secs_f64();
            agg.summary
                .first_seconds_by_version
                .entry(version.clone())
                .or_insert(at);
            let last = agg
                .summary
                .last_seconds_by_version
                .entry(version.clone())
                .or_insert(at);
            *last = last.max(at);
            if (200..300).contains(&resp.status) {
                agg.summary.ok += 1;
            } else {
                *agg.summary
                    .non_2xx_by_version
                    .entry(version.clone())
                    .or_insert(0) += 1;
            }
            if shared.opts.track_users {
                let rec = agg.summary.users.entry(user.to_string()).or_default();
                if rec.requests == 0 {
                    rec.first = version.clone();
                } else if rec.last != version {
                    rec.switches += 1;
                }
                rec.last = version;
                rec.requests += 1;
            }
        }
    }
}
