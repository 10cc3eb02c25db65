//! Contract 4: stat names in Istio's tag convention, and the complete, bounded set of
//! stats for a config, so they are defined when the config loads, never per request.

use crate::decision::{Source, Version};
use crate::matching::CompiledConfig;

pub const REQUESTS_TOTAL: &str = "stickycanary_requests_total";
pub const REQUEST_DURATION_MS: &str = "stickycanary_request_duration_ms";

/// `code_class` label values, in index order.
pub const CODE_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];
const VERSIONS: [Version; 2] = [Version::Stable, Version::Canary];
const SOURCES: [Source; 2] = [Source::Hash, Source::Override];

/// Index into [`CODE_CLASSES`] for an HTTP status; `none` when there was no response.
pub fn code_class(status: Option<u64>) -> usize {
    match status {
        Some(code @ 100..=599) => (code / 100 - 1) as usize,
        _ => CODE_CLASSES.len() - 1,
    }
}

/// Nanoseconds to whole milliseconds for the histogram, rounded up: a 200.3 ms request
/// must not be counted as "at most 200 ms".
pub fn duration_ms(nanoseconds: u64) -> u64 {
    nanoseconds.div_ceil(1_000_000)
}

pub fn counter_name(rollout: &str, version: &str, code_class: &str, source: &str) -> String {
    format!("rollout=.={rollout};.;version=.={version};.;code_class=.={code_class};.;source=.={source};.;{REQUESTS_TOTAL}")
}

pub fn histogram_name(rollout: &str, version: &str, source: &str) -> String {
    format!("rollout=.={rollout};.;version=.={version};.;source=.={source};.;{REQUEST_DURATION_MS}")
}

fn version_slot(version: Version) -> usize {
    match version {
        Version::Stable => 0,
        Version::Canary => 1,
    }
}

fn source_slot(source: Source) -> usize {
    match source {
        Source::Hash => 0,
        Source::Override => 1,
    }
}

/// Position of a counter in [`StatNames::counters`].
pub fn counter_index(rollout: usize, version: Version, code_class: usize, source: Source) -> usize {
    ((rollout * VERSIONS.len() + version_slot(version)) * CODE_CLASSES.len() + code_class)
        * SOURCES.len()
        + source_slot(source)
}

/// Position of a histogram in [`StatNames::histograms`].
pub fn histogram_index(rollout: usize, version: Version, source: Source) -> usize {
    (rollout * VERSIONS.len() + version_slot(version)) * SOURCES.len() + source_slot(source)
}

/// Every stat a config can touch, indexed by [`counter_index`] and [`histogram_index`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatNames {
    pub counters: Vec<String>,
    pub histograms: Vec<String>,
}

impl StatNames {
    pub fn for_config(config: &CompiledConfig) -> StatNames {
        let mut counters = Vec::new();
        let mut histograms = Vec::new();
        for rollout in &config.rollouts {
            for version in VERSIONS {
                let version_name = rollout.version_name(version);
                for class in CODE_CLASSES {
                    for source in SOURCES {
                        counters.push(counter_name(
                            &rollout.name,
                            version_name,
                            class,
                            source.label(),
                        ));
                    }
                }
                for source in SOURCES {
                    histograms.push(histogram_name(&rollout.name, version_name, source.label()));
                }
            }
        }
        StatNames {
            counters,
            histograms,
        }
    }
}

#[cfg(test)]
mod tests;
