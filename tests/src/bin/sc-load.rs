//! `sc-load`: send traffic from many distinct users and print one JSON summary.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use stickycanary_e2e::load::{self, LoadOptions};

const USAGE: &str = "\
sc-load: send HTTP/1.1 traffic from many distinct users (x-user-id: u<N>) and print a JSON summary

USAGE:
    sc-load --target 127.0.0.1:PORT [--host HOST] [--connections N] [--users N] [--first-user N]
            (--requests N | --duration SECONDS) [--rate RPS] [--header 'name: value']... [--anonymous]
            [--path /] [--timeout SECONDS] [--progress SECONDS]

OPTIONS:
    --target ADDR        Envoy listener (loopback only)
    --host HOST          Host header, i.e. the rollout's host (default checkout)
    --connections N      keep-alive connections, one thread each (default 4)
    --users N            distinct users, taken round-robin (default 1000)
    --first-user N       first user number (default 0)
    --requests N         stop after N requests in total
    --duration SECONDS   stop after this many seconds (fractions allowed)
    --rate RPS           total requests per second (default: as fast as possible)
    --header 'k: v'      extra request header (repeatable)
    --anonymous          send no x-user-id
    --path PATH          request path (default /)
    --timeout SECONDS    per-request timeout (default 30)
    --progress SECONDS   also print a JSON summary line every SECONDS while running
    -h, --help           print this help

OUTPUT: one JSON object: requests, ok, statuses, transport_errors, by_version, non_2xx_by_version,
        elapsed_seconds, requests_per_second, latency_ms_p50/p99/max, distinct_users, users_switched.
        Exit status 0 when the run finished (whatever the responses were), 2 on bad arguments.
";

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str, what: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag} must be {what} (got {v:?})"))
}

fn parse_secs(flag: &str, v: &str) -> Result<Duration, String> {
    let secs: f64 = parse_num(flag, v.trim_end_matches('s'), "a number of seconds")?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!(
            "{flag} must be a positive number of seconds (got {v:?})"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_args(args: &[String]) -> Result<Option<(LoadOptions, Option<Duration>)>, String> {
    let mut target: Option<SocketAddr> = None;
    let mut opts = LoadOptions::new(SocketAddr::from(([127, 0, 0, 1], 0)), "checkout");
    let mut progress = None;
    let mut it = args.iter();
    while let Some(raw) = it.next() {
        if raw == "-h" || raw == "--help" {
            return Ok(None);
        }
        let (flag, inline) = match raw.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (raw.clone(), None),
        };
        if flag == "--anonymous" {
            opts.user_header = None;
            continue;
        }
        let value = inline
            .or_else(|| it.next().cloned())
            .ok_or_else(|| format!("{flag} needs a value (see --help)"))?;
        match flag.as_str() {
            "--target" => {
                let addr: SocketAddr = parse_num(&flag, &value, "an address like 127.0.0.1:10000")?;
                if !addr.ip().is_loopback() {
                    return Err(format!("--target must be a loopback address (got {addr})"));
                }
                target = Some(addr);
            }
            "--host" => opts.host = value,
            "--path" => opts.path = value,
            "--connections" => {
                opts.connections = parse_num(&flag, &value, "a whole number")?;
                if opts.connections == 0 {
                    return Err("--connections must be at least 1".into());
                }
            }
            "--users" => {
                opts.users = parse_num(&flag, &value, "a whole number")?;
                if opts.users == 0 {
                    return Err("--users must be at least 1".into());
                }
            }
            "--first-user" => opts.first_user = parse_num(&flag, &value, "a whole number")?,
            "--requests" => opts.requests = Some(parse_num(&flag, &value, "a whole number")?),
            "--duration" => opts.duration = Some(parse_secs(&flag, &value)?),
            "--rate" => {
                let rate: f64 = parse_num(&flag, &value, "a number of requests per second")?;
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(format!("--rate must be positive (got {value:?})"));
                }
                opts.rate = Some(rate);
            }
            "--timeout" => opts.timeout = parse_secs(&flag, &value)?,
            "--progress" => progress = Some(parse_secs(&flag, &value)?),
            "--header" => {
                let (k, v) = value.split_once(':').ok_or_else(|| {
                    format!("--header must look like 'name: value' (got {value:?})")
                })?;
                opts.headers
                    .push((k.trim().to_string(), v.trim().to_string()));
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    opts.target = target.ok_or("--target is required (e.g. --target 127.0.0.1:10000)")?;
    if opts.requests.is_none() && opts.duration.is_none() {
        return Err("give --requests N or --duration SECONDS".into());
    }
    Ok(Some((opts, progress)))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, progress) = match parse_args(&args) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sc-load: {e}");
            return ExitCode::from(2);
        }
    };
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
