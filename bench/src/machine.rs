//! What a data-plane result was measured with, for BENCHMARKS.md: the machine (shared with
//! `controller-bench`, see [`stickycanary_e2e::host`]) plus the Envoy and wrk versions.

use std::path::Path;
use std::process::Command;

use serde::Serialize;
use stickycanary_e2e::host::{first_line, Machine};

/// Serialized flat, so `results.json` keeps its `machine` object's fields.
#[derive(Debug, Clone, Serialize)]
pub struct Testbed {
    #[serde(flatten)]
    pub machine: Machine,
    pub envoy_version: String,
    pub wrk_version: String,
}

impl Testbed {
    pub fn describe(envoy_bin: &Path) -> Self {
        Self {
            machine: Machine::read(),
            envoy_version: envoy_release(&first_line(Command::new(envoy_bin).arg("--version"))),
            wrk_version: first_line(Command::new("wrk").arg("-v"))
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL": keep the release number.
fn envoy_release(version_line: &str) -> String {
    version_line
        .rsplit("version:")
        .next()
        .unwrap_or_default()
        .split('/')
        .find(|part| {
            part.split('.').count() == 3 && part.split('.').all(|n| n.parse::<u32>().is_ok())
        })
        .unwrap_or("unknown")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_release_is_the_dotted_number_of_its_version_line() {
        assert_eq!(
            envoy_release("envoy  version: abc123/1.40.0/Clean/RELEASE/BoringSSL"),
            "1.40.0"
        );
        assert_eq!(envoy_release("unknown"), "unknown");
    }
}
