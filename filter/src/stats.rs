//! Contract 4: stat names in Istio's tag convention, and the complete, bounded set of
//! stats for a config, so they are defined when the config loads, never per request.

use crate::assign::SHARDS;
use crate::decision::{Source, Version};
use crate::matching::CompiledConfig;

pub const REQUESTS_TOTAL: &str = "stickycanary_requests_total";
pub const REQUEST_DURATION_MS: &str = "stickycanary_request_duration_ms";
pub const SHARD_REQUESTS_TOTAL: &str = "stickycanary_shard_requests_total";

/// `code_class` label values, in index order.
pub const CODE_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];
/// `outcome` label values of the shard counter, in index order.
pub const OUTCOMES: [&str; 3] = ["ok", "slow", "error"];
const OUTCOME_OK: usize = 0;
const OUTCOME_SLOW: usize = 1;
const OUTCOME_ERROR: usize = 2;
/// Index of `5xx` in [`CODE_CLASSES`].
const CLASS_5XX: usize = 4;
const VERSIONS: [Version; 2] = [Version::Stable, Version::Canary];
const SOURCES: [Source; 2] = [Source::Hash, Source::Override];

/// Index into [`CODE_CLASSES`] for an HTTP status; `none` when there was no response.
pub fn code_class(status: Option<u64>) -> usize {
    match status {
        Some(code @ 100..=599) => (code / 100 - 1) as usize,
        _ => CODE_CLASSES.len() - 1,
    }
}

/// Index into [`OUTCOMES`]: `error` for a 5xx (the request-level error rate's definition),
/// else `slow` when the request took longer than the threshold, else `ok`. A request
/// whose duration is unknown (the clock stepped back) is not called slow.
pub fn outcome(code_class: usize, duration_ns: Option<u64>, slow_threshold_ns: u64) -> usize {
    if code_class == CLASS_5XX {
        OUTCOME_ERROR
    } else if duration_ns.is_some_and(|ns| ns > slow_threshold_ns) {
        OUTCOME_SLOW
    } else {
        OUTCOME_OK
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

pub fn shard_counter_name(rollout: &str, version: &str, shard: u8, outcome: &str) -> String {
    format!("rollout=.={rollout};.;version=.={version};.;shard=.={shard};.;outcome=.={outcome};.;{SHARD_REQUESTS_TOTAL}")
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

/// Position of a shard counter in [`StatNames::shard_counters`].
pub fn shard_counter_index(rollout: usize, version: Version, shard: u8, outcome: usize) -> usize {
    ((rollout * VERSIONS.len() + version_slot(version)) * usize::from(SHARDS) + usize::from(shard))
        * OUTCOMES.len()
        + outcome
}

/// Every stat a config can touch, indexed by [`counter_index`] and [`histogram_index`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatNames {
    pub counters: Vec<String>,
    pub histograms: Vec<String>,
    /// 2 versions × [`SHARDS`] × 3 outcomes = 96 per rollout.
    pub shard_counters: Vec<String>,
}

impl StatNames {
    pub fn for_config(config: &CompiledConfig) -> StatNames {
        let mut counters = Vec::new();
        let mut histograms = Vec::new();
        let mut shard_counters = Vec::new();
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
                for shard in 0..SHARDS {
                    for outcome in OUTCOMES {
                        shard_counters.push(shard_counter_name(
                            &rollout.name,
                            version_name,
                            shard,
                            outcome,
                        ));
                    }
                }
            }
        }
        StatNames {
            counters,
            histograms,
            shard_counters,
        }
    }
}

#[cfg(test)]
mod tests;
