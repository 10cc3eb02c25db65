//! How long a weight change takes to reach traffic: write the ECDS file (temp + rename, as
//! `stickycanary local` does), then poll with one user until the answer changes version.

use std::path::Path;
use std::time::{Duration, Instant};

use stickycanary_e2e::http1;

use crate::envoy_peer::PeerEnvoy;
use crate::error::{failed, Result};
use crate::peers::{one_rollout_config, HOST, WEIGHT_PERCENT};

const POLL_DEADLINE: Duration = Duration::from_secs(15);

/// Reload `count` times each way (weight 10 → 100 → 10) on the one-rollout Envoy; returns
/// every sample in milliseconds.
pub fn measure(envoy: &PeerEnvoy, wasm: &Path, count: usize) -> Result<Vec<f64>> {
    // A user on stable at 10% and (like everyone) on canary at 100%.
    let threshold = WEIGHT_PERCENT * 100;
    let user = (0..10_000)
        .map(|i| format!("u{i}"))
        .find(|u| stickycanary_filter::assign::bucket(HOST, u) >= threshold)
        .ok_or_else(|| failed("no user above the 10% threshold among u0..u9999"))?;
    let mut client = http1::Client::new(envoy.listener, Duration::from_secs(5));
    let served_by = |client: &mut http1::Client| -> Result<String> {
        let resp = client.get("/", &[("host", HOST), ("x-user-id", &user)])?;
        Ok(resp.header("x-served-by").unwrap_or_default().to_string())
    };
    if served_by(&mut client)? != "stable" {
        return Err(failed(
            "reload: the probe user is not on stable before the first reload",
        ));
    }
    let mut samples = Vec::with_capacity(count * 2);
    for _ in 0..count {
        for (weight, expect) in [(100.0, "canary"), (f64::from(WEIGHT_PERCENT), "stable")] {
            // Let the previous update settle so samples do not overlap.
            std::thread::sleep(Duration::from_millis(200));
            let start = Instant::now();
            envoy.set_plugin_config(wasm, &one_rollout_config(weight))?;
            loop {
                if served_by(&mut client)? == expect {
                    break;
                }
                if start.elapsed() > POLL_DEADLINE {
                    return Err(failed(format!(
                        "reload to weight {weight} not visible after {POLL_DEADLINE:?}"
                    )));
                }
            }
            samples.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(samples)
}
