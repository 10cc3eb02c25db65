//! A stand-in for N Envoys: serves contract 4's series for N rollouts on 127.0.0.1, the way
//! Envoy's `/stats/prometheus` would after the stats_tags rewrite, with counters that grow on
//! every scrape. Prometheus scrapes it; the controller never talks to it.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The filter's histogram buckets (ms), `+Inf` last.
const BUCKETS: [&str; 16] = [
    "5", "10", "25", "50", "100", "200", "250", "300", "400", "500", "750", "1000", "2500", "5000",
    "10000", "+Inf",
];

/// Share of requests at or under each bucket bound, in per mille (cumulative).
const BUCKET_SHARE: [u64; 16] = [
    100, 250, 500, 700, 850, 930, 950, 970, 985, 992, 996, 998, 999, 1000, 1000, 1000,
];

/// Requests per scrape: (version, code_class, count). Canary gets a 10% stage's share.
const TRAFFIC: [(&str, &str, u64); 4] = [
    ("stable", "2xx", 900),
    ("stable", "5xx", 2),
    ("canary", "2xx", 100),
    ("canary", "5xx", 0),
];

/// The rollout key of rollout `i` (DNS-1123, sorts in order).
pub fn rollout_key(i: usize) -> String {
    format!("r{i:04}")
}

/// The exposition text after `scrape` scrapes for `rollouts` rollouts.
pub fn exposition(rollouts: usize, scrape: u64) -> String {
    // ~40 series per rollout, ~110 bytes each.
    let mut out = String::with_capacity(rollouts * 40 * 110 + 256);
    out.push_str("# TYPE stickycanary_requests_total counter\n");
    for i in 0..rollouts {
        let key = rollout_key(i);
        for (version, class, per_scrape) in TRAFFIC {
            // One canary 5xx every tenth scrape: a healthy but not spotless canary.
            let count = if version == "canary" && class == "5xx" {
                scrape / 10
            } else {
                per_scrape * scrape
            };
            let _ = writeln!(
                out,
                "stickycanary_requests_total{{rollout=\"{key}\",version=\"{version}\",code_class=\"{class}\",source=\"hash\"}} {count}"
            );
        }
    }
    out.push_str("# TYPE stickycanary_request_duration_ms histogram\n");
    for i in 0..rollouts {
        let key = rollout_key(i);
        for version in ["stable", "canary"] {
            let total: u64 = TRAFFIC
                .iter()
                .filter(|(v, _, _)| *v == version)
                .map(|(_, _, n)| n * scrape)
                .sum();
            for (le, share) in BUCKETS.iter().zip(BUCKET_SHARE) {
                let _ = writeln!(
                    out,
                    "stickycanary_request_duration_ms_bucket{{rollout=\"{key}\",version=\"{version}\",source=\"hash\",le=\"{le}\"}} {}",
                    total * share / 1000
                );
            }
            let labels = format!("rollout=\"{key}\",version=\"{version}\",source=\"hash\"");
            let _ = writeln!(
                out,
                "stickycanary_request_duration_ms_sum{{{labels}}} {}",
                total * 40
            );
            let _ = writeln!(
                out,
                "stickycanary_request_duration_ms_count{{{labels}}} {total}"
            );
        }
    }
    out
}

/// The running exporter; stops and joins its thread on drop.
pub struct Exporter {
    pub addr: SocketAddr,
    pub scrapes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Listens on 127.0.0.1 (a kernel-picked port) and serves `rollouts` rollouts' series.
    pub fn start(rollouts: usize) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        // Non-blocking accept so the thread notices `stop` without a wake-up connection.
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let scrapes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (scrapes, stop) = (scrapes.clone(), stop.clone());
            std::thread::Builder::new()
                .name("exporter".into())
                .spawn(move || serve(&listener, rollouts, &scrapes, &stop))?
        };
        Ok(Exporter {
            addr,
            scrapes,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: &TcpListener, rollouts: usize, scrapes: &AtomicU64, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let scrape = scrapes.fetch_add(1, Ordering::Relaxed) + 1;
                let _ = answer(stream, rollouts, scrape);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One request, one response, then close (Prometheus reconnects per scrape).
fn answer(mut stream: TcpStream, rollouts: usize, scrape: u64) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut chunk = [0u8; 2048];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let body = exposition(rollouts, scrape);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_per_rollout_and_growth() {
        let one = exposition(2, 1);
        let two = exposition(2, 2);
        let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
        // 4 request counters + 2 versions x (16 buckets + sum + count) per rollout.
        assert_eq!(series(&one), 2 * (4 + 2 * 18));
        assert!(one.contains(
            "stickycanary_requests_total{rollout=\"r0001\",version=\"canary\",code_class=\"2xx\",source=\"hash\"} 100\n"
        ));
        assert!(two.contains(
            "stickycanary_requests_total{rollout=\"r0001\",version=\"canary\",code_class=\"2xx\",source=\"hash\"} 200\n"
        ));
        assert!(two.contains(
            "stickycanary_request_duration_ms_bucket{rollout=\"r0000\",version=\"stable\",source=\"hash\",le=\"+Inf\"} 1804\n"
        ));
    }
}
