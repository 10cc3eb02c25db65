//! The test upstream behind `sc-backend`: answers every request with `x-served-by: <name>` and
//! body `<name>\n`, optionally failing or delaying on command.
//!
//! Errors are deterministic: with ratio `r`, request number `k` (counting from 1 since the last
//! behaviour change) fails exactly when `floor(k*r) > floor((k-1)*r)`, so `n` requests give exactly
//! `floor(n*r)` errors (r = 0.2 fails every 5th request) and tests can assert exact counts.
//!
//! Echo headers prove what the upstream actually received: `x-seen-canary-version` carries every
//! `x-canary-version` value the request had (joined by `,`; absent when there was none) and
//! `x-seen-user-id` the `x-user-id`. `GET /__echo` returns all request headers as JSON.
//!
//! Every response also carries `x-version: <version>`: the release the backend serves (its
//! name until told otherwise), so release tests prove from responses which version a user got.
//! `POST /__release` with `{"version":"v2"}` and/or `{"stopped":true}` changes it (what a
//! deployment tool would do); a stopped backend answers 503 `stopped`.
//!
//! Paths with a behaviour of their own: `/__fail` fails on either backend; `/__fails-on/<name>`
//! fails only on the backend called `<name>`; `/__sleep/<ms>` answers after `<ms>` (at most
//! 10 s) on either backend.
//!
//! Control plane (not counted as traffic): `POST /__control` with any subset of
//! `{"errorRatio":0.2,"errorStatus":503,"delayMs":800}` changes behaviour and resets the request
//! counter; `GET /__stats` returns `{"name","pid","requests","errors","errorRatio","errorStatus",
//! "delayMs"}` (`pid` lets the harness tell its own backend from anything else on the port).

use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::http1;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Behaviour {
    pub error_ratio: f64,
    pub error_status: u16,
    pub delay_ms: u64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            error_ratio: 0.0,
            error_status: 503,
            delay_ms: 0,
        }
    }
}

/// A partial update posted to `/__control`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BehaviourPatch {
    pub error_ratio: Option<f64>,
    pub error_status: Option<u16>,
    pub delay_ms: Option<u64>,
}

impl Behaviour {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_ratio) || self.error_ratio.is_nan() {
            return Err(format!(
                "errorRatio must be from 0 to 1 (got {})",
                self.error_ratio
            ));
        }
        if !(100..=599).contains(&self.error_status) {
            return Err(format!(
                "errorStatus must be an HTTP status 100..599 (got {})",
                self.error_status
            ));
        }
        Ok(())
    }

    fn apply(&self, patch: &BehaviourPatch) -> Behaviour {
        Behaviour {
            error_ratio: patch.error_ratio.unwrap_or(self.error_ratio),
            error_status: patch.error_status.unwrap_or(self.error_status),
            delay_ms: patch.delay_ms.unwrap_or(self.delay_ms),
        }
    }
}

/// Whether request number `k` (1-based) is an error at ratio `r`.
pub fn is_error(k: u64, ratio: f64) -> bool {
    if ratio <= 0.0 || k == 0 {
        return false;
    }
    (k as f64 * ratio).floor() > ((k - 1) as f64 * ratio).floor()
}

/// A release change posted to `/__release`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleasePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<bool>,
}

#[derive(Debug, Clone)]
struct Release {
    version: String,
    stopped: bool,
}

struct State {
    name: String,
    release: Mutex<Release>,
    behaviour: Mutex<Behaviour>,
    requests: AtomicU64,
    errors: AtomicU64,
}

/// Serve forever on `listener` (one thread per connection).
pub fn serve(listener: TcpListener, name: &str, behaviour: Behaviour) -> Result<()> {
    behaviour.validate().map_err(Error::Other)?;
    let state = Arc::new(State {
        name: name.to_string(),
        release: Mutex::new(Release {
            version: name.to_string(),
            stopped: false,
        }),
        behaviour: Mutex::new(behaviour),
        requests: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    for stream in listener.incoming() {
        let stream = stream.ctx(|| "accept".into())?;
        let state = Arc::clone(&state);
        std::thread::spawn(move || {
            // A broken connection only ends that connection.
            let _ = handle_connection(stream, &state);
        });
    }
    Ok(())
}

fn handle_connection(stream: TcpStream, state: &State) -> Result<()> {
    stream.set_nodelay(true).ctx(|| "nodelay".into())?;
    // Idle keep-alive connections are closed after 5 minutes so threads don't pile up.
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .ctx(|| "read timeout".into())?;
    let mut writer = stream.try_clone().ctx(|| "clone stream".into())?;
    let mut reader = BufReader::new(stream);
    while let Some(request) = http1::read_request(&mut reader)? {
        let close = request.wants_close();
        let (status, headers, body) = respond(&request, state);
        http1::write_response(&mut writer, status, &headers, &body, close)
            .ctx(|| "write".into())?;
        if close {
            break;
        }
    }
    Ok(())
}

fn json_response(value: serde_json::Value) -> (u16, Vec<(String, String)>, Vec<u8>) {
    (
        200,
        vec![("content-type".into(), "application/json".into())],
        value.to_string().into_bytes(),
    )
}

fn respond(request: &http1::Request, state: &State) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let path = request.path.split('?').next().unwrap_or("");
    match (request.method.as_str(), path) {
        ("POST", "/__control") => {
            let patch: BehaviourPatch = match serde_json::from_slice(&request.body) {
                Ok(p) => p,
                Err(e) => return (400, vec![], format!("bad control body: {e}\n").into_bytes()),
            };
            let mut behaviour = state.behaviour.lock().unwrap_or_else(|e| e.into_inner());
            let updated = behaviour.apply(&patch);
            if let Err(e) = updated.validate() {
                return (400, vec![], format!("{e}\n").into_bytes());
            }
            *behaviour = updated;
            state.requests.store(0, Ordering::SeqCst);
            state.errors.store(0, Ordering::SeqCst);
            json_response(serde_json::json!(updated))
        }
        ("POST", "/__release") => {
            let patch: ReleasePatch = match serde_json::from_slice(&request.body) {
                Ok(p) => p,
                Err(e) => return (400, vec![], format!("bad release body: {e}\n").into_bytes()),
            };
            let mut release = state.release.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(version) = patch.version {
                release.version = version;
            }
            if let Some(stopped) = patch.stopped {
                release.stopped = stopped;
            }
            json_response(
                serde_json::json!({"version": release.version, "stopped": release.stopped}),
            )
        }
        ("GET", "/__stats") => {
            let behaviour = *state.behaviour.lock().unwrap_or_else(|e| e.into_inner());
            json_response(serde_json::json!({
                "name": state.name,
                "pid": std::process::id(),
                "requests": state.requests.load(Ordering::SeqCst),
                "errors": state.errors.load(Ordering::SeqCst),
                "errorRatio": behaviour.error_ratio,
                "errorStatus": behaviour.error_status,
                "delayMs": behaviour.delay_ms,
            }))
        }
        _ => serve_traffic(request, state),
    }
}

fn serve_traffic(request: &http1::Request, state: &State) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let release = state
        .release
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if release.stopped {
        return (
            503,
            vec![
                ("x-served-by".to_string(), state.name.clone()),
                ("x-version".to_string(), "stopped".to_string()),
            ],
            b"stopped\n".to_vec(),
        );
    }
    let behaviour = *state.behaviour.lock().unwrap_or_else(|e| e.into_inner());
    let k = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if behaviour.delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(behaviour.delay_ms));
    }
    let path = request.path.split('?').next().unwrap_or("");
    // `/__sleep/<ms>` takes that long on either version: a healthy but slow client (a batch
    // job, a heavy report), as in the slow-user e2e.
    if let Some(ms) = path
        .strip_prefix("/__sleep/")
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms.min(10_000)));
    }
    // `/__fail` always fails, on either version: a client whose requests fail whichever
    // version serves them (a bot retrying a bad request), as in the clustered-user e2e.
    // `/__fails-on/<name>` fails only on the backend called `<name>`: a code path that one
    // version broke, used by only the users who call it.
    let always_fails =
        path == "/__fail" || path.strip_prefix("/__fails-on/") == Some(state.name.as_str());
    let failed = always_fails || is_error(k, behaviour.error_ratio);
    if failed {
        state.errors.fetch_add(1, Ordering::SeqCst);
    }
    let mut headers = vec![
        ("x-served-by".to_string(), state.name.clone()),
        ("x-version".to_string(), release.version.clone()),
        ("content-type".to_string(), "text/plain".to_string()),
    ];
    let seen = request.header_all("x-canary-version");
    if !seen.is_empty() {
        headers.push(("x-seen-canary-version".into(), seen.join(",")));
    }
    if let Some(user) = request.header("x-user-id") {
        headers.push(("x-seen-user-id".into(), user.to_string()));
    }
    let body = if path == "/__echo" {
        let all: Vec<serde_json::Value> = request
            .headers
            .iter()
            .map(|(k, v)| serde_json::json!([k, v]))
            .collect();
        serde_json::json!({"servedBy": state.name, "headers": all})
            .to_string()
            .into_bytes()
    } else {
        format!("{}\n", state.name).into_bytes()
    };
    let status = if failed { behaviour.error_status } else { 200 };
    (status, headers, body)
}

#[cfg(test)]
mod tests {
    use super::is_error;

    #[test]
    fn error_injection_is_exact_per_counter() {
        let errors = (1..=1000).filter(|&k| is_error(k, 0.2)).count();
        assert_eq!(errors, 200);
        assert!(is_error(5, 0.2) && !is_error(4, 0.2));
        assert_eq!((1..=7).filter(|&k| is_error(k, 1.0)).count(), 7);
        assert_eq!((1..=7).filter(|&k| is_error(k, 0.0)).count(), 0);
    }
}
