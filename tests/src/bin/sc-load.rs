//! `sc-load`: send traffic from many distinct users and print one JSON summary.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use stickycanary_e2e::cli;
use stickycanary_e2e::load::{self, LoadOptions};

/// Send HTTP/1.1 traffic from many distinct users (x-user-id: u<N>) and print a JSON summary.
#[derive(Parser, Debug)]
#[command(
    name = "sc-load",
    group(ArgGroup::new("stop").args(["requests", "duration"]).required(true).multiple(true)),
    after_help = "\
Output: one JSON object: requests, ok, statuses, transport_errors, by_version, non_2xx_by_version,
        elapsed_seconds, requests_per_second, latency_ms_p50/p99/max, distinct_users, users_switched.
        Exit status 0 when the run finished (whatever the responses were), 2 on bad arguments."
)]
struct Args {
    /// Envoy listener (loopback only), e.g. 127.0.0.1:10000
    #[arg(long, value_name = "ADDR", value_parser = loopback)]
    target: SocketAddr,
    /// Host header, i.e. the rollout's host
    #[arg(long, default_value = "checkout")]
    host: String,
    /// Keep-alive connections, one thread each
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = cli::at_least_one)]
    connections: usize,
    /// Distinct users, taken round-robin
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    users: u64,
    /// First user number
    #[arg(long, value_name = "N", default_value_t = 0)]
    first_user: u64,
    /// Stop after N requests in total (give this, --duration or both)
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Stop after this many seconds (fractions allowed, e.g. 2.5 or 10s)
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    duration: Option<Duration>,
    /// Total requests per second [default: as fast as possible]
    #[arg(long, value_name = "RPS", value_parser = positive_rate)]
    rate: Option<f64>,
    /// Extra request header 'name: value' (repeatable)
    #[arg(long, value_name = "'k: v'", value_parser = header)]
    header: Vec<(String, String)>,
    /// Send no x-user-id
    #[arg(long)]
    anonymous: bool,
    /// Request path
    #[arg(long, default_value = "/")]
    path: String,
    /// Per-request timeout in seconds
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds)]
    timeout: Duration,
    /// Also print a JSON summary line every SECONDS while running
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    progress: Option<Duration>,
}

fn loopback(v: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = v
        .parse()
        .map_err(|_| format!("must be an address like 127.0.0.1:10000 (got {v:?})"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("must be a loopback address (got {addr})"));
    }
    Ok(addr)
}

fn seconds(v: &str) -> Result<Duration, String> {
    match v.trim_end_matches('s').parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!("must be a positive number of seconds (got {v:?})")),
    }
}

fn positive_rate(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "must be a positive number of requests per second (got {v:?})"
        )),
    }
}

fn header(v: &str) -> Result<(String, String), String> {
    let (k, val) = v
        .split_once(':')
        .ok_or_else(|| format!("must look like 'name: value' (got {v:?})"))?;
    Ok((k.trim().to_string(), val.trim().to_string()))
}

impl Args {
    fn load_options(self) -> LoadOptions {
        let mut opts = LoadOptions::new(self.target, &self.host);
        opts.path = self.path;
        opts.connections = self.connections;
        opts.users = self.users;
        opts.first_user = self.first_user;
        opts.requests = self.requests;
        opts.duration = self.duration;
        opts.rate = self.rate;
        opts.headers = self.header;
        opts.timeout = self.timeout;
        if self.anonymous {
            opts.user_header = None;
        }
        opts
    }
}

fn main() -> ExitCode {
    let args = match cli::parse::<Args>("sc-load") {
        Ok(args) => args,
        Err(code) => return code,
    };
    let progress = args.progress;
    let opts = args.load_options();
    let handle = load::start(opts);
    if let Some(every) = progress {
        while !handle.is_finished() {
            std::thread::sleep(every);
            println!("{}", handle.snapshot().to_json());
        }
    }
    println!("{}", handle.wait().to_json());
    ExitCode::SUCCESS
}
