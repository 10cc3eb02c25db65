//! `sc-backend`: the test upstream (see `stickycanary_e2e::backend_server` for the behaviour).

use std::net::TcpListener;
use std::process::ExitCode;

use clap::Parser;
use stickycanary_e2e::backend_server::{serve, Behaviour};
use stickycanary_e2e::cli;

/// A test upstream that answers every request with `x-served-by: <name>`, `x-version:
/// <version>` and body `<name>\n`.
#[derive(Parser, Debug)]
#[command(
    name = "sc-backend",
    after_help = "\
Runtime control:
  POST /__control  {\"errorRatio\":0.2,\"errorStatus\":503,\"delayMs\":800}  (any subset; resets counters)
  POST /__release  {\"version\":\"v2\",\"stopped\":false}  (the release it serves, sent back as x-version;
                   a stopped backend answers 503)
  GET  /__stats    request and error counts since start or the last change
  GET  /__echo     request headers as JSON"
)]
struct Args {
    /// Address to listen on (loopback only, e.g. 127.0.0.1:8081; port 0 picks one)
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Allow a non-loopback --listen address: only for a pod in a cluster (the kind
    /// example's Deployments, where the sidecar forwards to the pod IP). Tests never set it.
    #[arg(long)]
    in_cluster: bool,
    /// Version name to report, e.g. stable or canary
    #[arg(long)]
    name: String,
    /// Fraction of requests (0..1) answered with --error-status; every Nth request, so counts
    /// are exact
    #[arg(long, value_name = "R", default_value_t = 0.0)]
    error_ratio: f64,
    /// Status for injected errors
    #[arg(long, value_name = "CODE", default_value_t = 503)]
    error_status: u16,
    /// Delay before every response, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 0)]
    delay_ms: u64,
}

fn main() -> ExitCode {
    let args = match cli::parse::<Args>("sc-backend") {
        Ok(args) => args,
        Err(code) => return code,
    };
    if args.name.is_empty() {
        eprintln!("sc-backend: --name must not be empty");
        return ExitCode::from(2);
    }
    let behaviour = Behaviour {
        error_ratio: args.error_ratio,
        error_status: args.error_status,
        delay_ms: args.delay_ms,
    };
    if let Err(e) = behaviour.validate() {
        eprintln!("sc-backend: {e}");
        return ExitCode::from(2);
    }
    // Test upstreams never listen beyond loopback; a pod in a cluster says so explicitly.
    match args.listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_loopback() || args.in_cluster => {}
        _ => {
            eprintln!(
                "sc-backend: --listen must be a loopback address like 127.0.0.1:8081, or pass --in-cluster in a pod (got {:?})",
                args.listen
            );
            return ExitCode::from(2);
        }
    }
    let listener = match TcpListener::bind(&args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sc-backend: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("sc-backend {} listening on {addr}", args.name),
        Err(e) => eprintln!("sc-backend: local_addr: {e}"),
    }
    match serve(listener, &args.name, behaviour) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sc-backend: {e}");
            ExitCode::from(1)
        }
    }
}
