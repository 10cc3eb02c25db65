//! A loopback exporter serving cAdvisor-shaped container series, as the kubelet does at
//! `/metrics/cadvisor`: `container_cpu_usage_seconds_total`,
//! `container_memory_working_set_bytes`, `container_cpu_cfs_periods_total` and
//! `container_cpu_cfs_throttled_periods_total`, labelled `namespace`, `pod`, `container`,
//! `id`, `image` and `name` as cAdvisor labels them.
//!
//! Counters grow at fixed per-second rates from the exporter's start, so the figures a query
//! must find are known. Like the kubelet it also serves the pod-level cgroup series
//! (`container=""`, the sum of the pod's containers) and the pause container
//! (`container="POD"`), which a correct query leaves out. Stopped on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{IoContext, Result};
use crate::prometheus::ScrapeTarget;

/// One container's steady usage.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerUsage {
    pub container: &'static str,
    pub cpu_cores: f64,
    pub memory_bytes: f64,
    /// CFS periods per second (10 with the default 100 ms period and a CPU limit; 0 without
    /// a limit, and then cAdvisor serves no CFS series at all).
    pub periods_per_second: f64,
    pub throttled_per_second: f64,
}

/// One pod and its containers.
#[derive(Clone, Debug, PartialEq)]
pub struct PodUsage {
    pub namespace: &'static str,
    pub pod: &'static str,
    pub containers: Vec<ContainerUsage>,
}

fn line(out: &mut String, metric: &str, pod: &PodUsage, container: &str, value: f64) {
    let id = format!("/kubepods/burstable/pod-{}/{container}", pod.pod);
    out.push_str(&format!(
        "{metric}{{container=\"{container}\",id=\"{id}\",image=\"registry.example/{container}:1\",name=\"{container}-{pod}\",namespace=\"{namespace}\",pod=\"{pod}\"}} {value}\n",
        pod = pod.pod,
        namespace = pod.namespace,
    ));
}

/// The exposition text after `elapsed` seconds.
pub fn exposition(pods: &[PodUsage], elapsed: f64) -> String {
    let mut out = String::new();
    type Pick = fn(&ContainerUsage) -> f64;
    let families: [(&str, &str, Pick, bool); 4] = [
        (
            "container_cpu_usage_seconds_total",
            "counter",
            |c| c.cpu_cores,
            true,
        ),
        (
            "container_memory_working_set_bytes",
            "gauge",
            |c| c.memory_bytes,
            false,
        ),
        (
            "container_cpu_cfs_periods_total",
            "counter",
            |c| c.periods_per_second,
            true,
        ),
        (
            "container_cpu_cfs_throttled_periods_total",
            "counter",
            |c| c.throttled_per_second,
            true,
        ),
    ];
    for (metric, kind, pick, counter) in families {
        out.push_str(&format!("# TYPE {metric} {kind}\n"));
        let cfs = metric.contains("cfs");
        for pod in pods {
            let scale = if counter { elapsed } else { 1.0 };
            let mut pod_total = 0.0;
            for container in &pod.containers {
                if cfs && container.periods_per_second == 0.0 {
                    continue;
                }
                let value = pick(container) * scale;
                pod_total += value;
                line(&mut out, metric, pod, container.container, value);
            }
            // The pod-level cgroup (every container again) and the pause container.
            line(&mut out, metric, pod, "", pod_total + 1.0);
            if !cfs {
                line(&mut out, metric, pod, "POD", 1000.0 * scale);
            }
        }
    }
    out
}

/// The running exporter.
pub struct Exporter {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    pub fn start(pods: Vec<PodUsage>) -> Result<Exporter> {
        let listener =
            TcpListener::bind("127.0.0.1:0").ctx(|| "bind the cAdvisor exporter".into())?;
        let addr = listener
            .local_addr()
            .ctx(|| "cAdvisor exporter address".into())?;
        let stop = Arc::new(AtomicBool::new(false));
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
                let body = exposition(&pods, started.elapsed().as_secs_f64());
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Ok(Exporter {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Scraped as the kubelet's cAdvisor endpoint.
    pub fn scrape_target(&self) -> ScrapeTarget {
        ScrapeTarget {
            job: "kubelet-cadvisor".into(),
            addr: self.addr,
            metrics_path: "/metrics/cadvisor".into(),
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A container with a CPU limit (10 CFS periods a second).
pub fn limited(
    container: &'static str,
    cpu_cores: f64,
    memory_mib: f64,
    throttled_per_second: f64,
) -> ContainerUsage {
    ContainerUsage {
        container,
        cpu_cores,
        memory_bytes: memory_mib * 1024.0 * 1024.0,
        periods_per_second: 10.0,
        throttled_per_second,
    }
}

/// The sample shop of `manifests/examples/checkout-demo-app.yaml`: two stable pods and one
/// canary pod of `checkout` in namespace `shop`, the canary throttled in 40% of its periods
/// and using 80% more memory per pod. The dashboard and alert tests scrape it.
pub fn sample_shop() -> Vec<PodUsage> {
    vec![
        PodUsage {
            namespace: "shop",
            pod: "checkout-stable-5d8f7c9b4d-x2x7q",
            containers: vec![limited("checkout", 0.2, 100.0, 0.2)],
        },
        PodUsage {
            namespace: "shop",
            pod: "checkout-stable-5d8f7c9b4d-q9w8e",
            containers: vec![limited("checkout", 0.2, 100.0, 0.2)],
        },
        PodUsage {
            namespace: "shop",
            pod: "checkout-canary-6c9f8d7b5f-k8p2m",
            containers: vec![limited("checkout", 0.3, 180.0, 4.0)],
        },
    ]
}
