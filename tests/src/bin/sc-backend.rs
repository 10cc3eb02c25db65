//! `sc-backend`: the test upstream (see `stickycanary_e2e::backend_server` for the behaviour).

use std::net::TcpListener;
use std::process::ExitCode;

use stickycanary_e2e::backend_server::{serve, Behaviour};

const USAGE: &str = "\
sc-backend: a test upstream that answers every request with `x-served-by: <name>`, `x-version: <version>` and body `<name>\\n`

USAGE:
    sc-backend --listen 127.0.0.1:PORT --name NAME [--error-ratio R] [--error-status CODE] [--delay-ms MS]

OPTIONS:
    --listen ADDR         address to listen on (loopback only, e.g. 127.0.0.1:8081; port 0 picks one)
    --name NAME           version name to report, e.g. stable or canary
    --error-ratio R       fraction of requests (0..1) answered with --error-status; every Nth request,
                          so counts are exact (default 0)
    --error-status CODE   status for injected errors (default 503)
    --delay-ms MS         delay before every response (default 0)
    -h, --help            print this help

RUNTIME CONTROL:
    POST /__control  {\"errorRatio\":0.2,\"errorStatus\":503,\"delayMs\":800}  (any subset; resets counters)
    POST /__release  {\"version\":\"v2\",\"stopped\":false}  (the release it serves, sent back as x-version;
                     a stopped backend answers 503)
    GET  /__stats    request and error counts since start or the last change
    GET  /__echo     request headers as JSON
";

struct Args {
    listen: String,
    name: String,
    behaviour: Behaviour,
}

fn parse_args(args: &[String]) -> Result<Option<Args>, String> {
    let mut listen = None;
    let mut name = None;
    let mut behaviour = Behaviour::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => listen = Some(value()?),
            "--name" => name = Some(value()?),
            "--error-ratio" => {
                let v = value()?;
                behaviour.error_ratio = v.parse().map_err(|_| {
                    format!("--error-ratio must be a number from 0 to 1 (got {v:?})")
                })?;
            }
            "--error-status" => {
                let v = value()?;
                behaviour.error_status = v.parse().map_err(|_| {
                    format!("--error-status must be an HTTP status code (got {v:?})")
                })?;
            }
            "--delay-ms" => {
                let v = value()?;
                behaviour.delay_ms = v.parse().map_err(|_| {
                    format!("--delay-ms must be a whole number of milliseconds (got {v:?})")
                })?;
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    let listen = listen.ok_or("--listen is required (e.g. --listen 127.0.0.1:8081)")?;
    let name = name.ok_or("--name is required (e.g. --name stable)")?;
    if name.is_empty() {
        return Err("--name must not be empty".into());
    }
    behaviour.validate()?;
    Ok(Some(Args {
        listen,
        name,
        behaviour,
    }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&args) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sc-backend: {e}");
            return ExitCode::from(2);
        }
    };
    // Test upstreams never listen beyond loopback.
    match args.listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_loopback() => {}
        _ => {
            eprintln!(
                "sc-backend: --listen must be a loopback address like 127.0.0.1:8081 (got {:?})",
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
    match serve(listener, &args.name, args.behaviour) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sc-backend: {e}");
            ExitCode::from(1)
        }
    }
}
