//! The per-request flow of the filter, written against a small [`Host`] trait instead of
//! proxy-wasm hostcalls, so that what the filter does to a request (which headers it
//! reads, removes and sets, when it clears the route cache, which stats it touches) is
//! tested natively with a recording mock. `wasm.rs` implements `Host` with hostcalls.

use std::rc::Rc;

use crate::config::OVERRIDE_TOKEN_HEADER;
use crate::decision::{decide, response_edits, Decision, Routed, VERSION_RESPONSE_HEADER};
use crate::headers::{HeaderSnapshot, RequestHeaders};
use crate::identity::IdMinter;
use crate::matching::CompiledConfig;
use crate::stats::{
    code_class, counter_index, duration_ms, histogram_index, outcome, shard_counter_index,
    StatNames,
};

/// What the filter needs from the proxy. One method per hostcall.
pub trait Host {
    /// Every request header, serialized as proxy-wasm does (see [`HeaderSnapshot`]), in
    /// one hostcall: cheaper than two single-header reads, and the only read that sees a
    /// header sent more than once (HTTP/1.1 `Cookie`).
    fn request_headers(&self) -> Option<Vec<u8>>;
    /// Removes every occurrence (Envoy header maps are case-insensitive). Like every
    /// request-header change from Wasm, Envoy then clears its route cache, so routing
    /// re-selects the route with the new headers.
    fn remove_request_header(&self, name: &str);
    /// Replaces every occurrence: Envoy's set removes all copies before adding one, so a
    /// single call both strips a client's spoofed header and writes the version. Clears
    /// the route cache like a removal.
    fn set_request_header(&self, name: &str, value: &str);
    fn add_response_header(&self, name: &str, value: &str);
    fn set_response_header(&self, name: &str, value: &str);
    /// `response.code`; `None` or 0 when no response was sent.
    fn response_code(&self) -> Option<u64>;
    /// The proxy's clock in nanoseconds (a hostcall that returns no buffer, so cheaper
    /// than reading the `request.duration` property).
    fn now_ns(&self) -> Option<u64>;
    fn increment_counter(&self, metric_id: u32);
    fn record_histogram(&self, metric_id: u32, value: u64);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Histogram,
}

/// A compiled config with the proxy's ids for all of its stats, indexed by
/// [`counter_index`] / [`histogram_index`] / [`shard_counter_index`]. Built once per
/// `on_configure`, so the request path never defines or looks up a stat by name.
#[derive(Debug)]
pub struct LoadedConfig {
    pub config: CompiledConfig,
    pub counter_ids: Vec<u32>,
    pub histogram_ids: Vec<u32>,
    pub shard_counter_ids: Vec<u32>,
}

impl LoadedConfig {
    /// Parses, validates and compiles `json`, then defines every stat through `define`.
    /// The error is the one line to log; nothing is defined for a rejected config.
    pub fn load(
        json: &[u8],
        mut define: impl FnMut(MetricKind, &str) -> Result<u32, String>,
    ) -> Result<LoadedConfig, String> {
        let config = CompiledConfig::from_json(json).map_err(|err| err.to_string())?;
        let names = StatNames::for_config(&config);
        let counter_ids = names
            .counters
            .iter()
            .map(|name| define(MetricKind::Counter, name))
            .collect::<Result<Vec<u32>, String>>()?;
        let histogram_ids = names
            .histograms
            .iter()
            .map(|name| define(MetricKind::Histogram, name))
            .collect::<Result<Vec<u32>, String>>()?;
        let shard_counter_ids = names
            .shard_counters
            .iter()
            .map(|name| define(MetricKind::Counter, name))
            .collect::<Result<Vec<u32>, String>>()?;
        Ok(LoadedConfig {
            config,
            counter_ids,
            histogram_ids,
            shard_counter_ids,
        })
    }
}

/// One HTTP request's state between its callbacks.
#[derive(Debug)]
pub struct RequestFlow {
    loaded: Rc<LoadedConfig>,
    routed: Option<Routed>,
    /// [`Host::now_ns`] when the request headers arrived, for routed requests.
    started_ns: Option<u64>,
}

impl RequestFlow {
    pub fn new(loaded: Rc<LoadedConfig>) -> RequestFlow {
        RequestFlow {
            loaded,
            routed: None,
            started_ns: None,
        }
    }

    /// The decision taken for this request, if a rollout owned it.
    pub fn routed(&self) -> Option<&Routed> {
        self.routed.as_ref()
    }

    /// Contract 3.4: the client's routing header never survives, and a matched request
    /// gets the version. Envoy clears the route cache on each of these header changes
    /// (guarded by the e2e test `a_route_looked_up_before_the_filter_is_reselected`), so no
    /// separate `clear_route_cache` call is made.
    ///
    /// All headers come in one hostcall, so whether the routing header or the override
    /// token is present is known for free: each is removed only when it was sent.
    pub fn on_request_headers(&mut self, host: &dyn Host, ids: &IdMinter) {
        let headers = HeaderSnapshot::new(host.request_headers().unwrap_or_default());
        let config = &self.loaded.config;
        let route_header = config.route_header.as_str();
        match decide(config, &headers, ids) {
            Decision::PassThrough => {
                // Checking first keeps untouched requests free of a route-cache clear.
                if headers.header(route_header).is_some() {
                    host.remove_request_header(route_header);
                }
            }
            Decision::Route(routed) => {
                match config.rollouts.get(routed.rollout) {
                    Some(rollout) => {
                        host.set_request_header(route_header, rollout.version_name(routed.version));
                        // The testers' secret is for this proxy only: never forward it.
                        let has_token = rollout
                            .override_config
                            .as_ref()
                            .is_some_and(|o| o.token.is_some());
                        if has_token && headers.header(OVERRIDE_TOKEN_HEADER).is_some() {
                            host.remove_request_header(OVERRIDE_TOKEN_HEADER);
                        }
                    }
                    None => host.remove_request_header(route_header),
                }
                self.started_ns = host.now_ns();
                self.routed = Some(routed);
            }
        }
    }

    pub fn on_response_headers(&self, host: &dyn Host) {
        let Some(routed) = &self.routed else {
            return;
        };
        let edits = response_edits(&self.loaded.config, routed);
        if let Some(set_cookie) = edits.add_set_cookie {
            host.add_response_header("set-cookie", set_cookie);
        }
        if let Some(version) = edits.set_version_header {
            host.set_response_header(VERSION_RESPONSE_HEADER, version);
        }
    }

    /// Contract 4: one counter increment and one latency sample per routed request, and
    /// for a hash-routed request one shard counter increment (issue 17). The latency runs
    /// from the request headers to the end of the stream; a clock that stepped backwards
    /// in between skips the sample rather than recording a wrong one.
    pub fn on_log(&self, host: &dyn Host) {
        let Some(routed) = &self.routed else {
            return;
        };
        let loaded = &self.loaded;
        let status = host.response_code().filter(|code| *code != 0);
        let class = code_class(status);
        let counter = counter_index(routed.rollout, routed.version, class, routed.source);
        if let Some(id) = loaded.counter_ids.get(counter) {
            host.increment_counter(*id);
        }
        let duration_ns = self
            .started_ns
            .zip(host.now_ns())
            .and_then(|(start, end)| end.checked_sub(start));
        if let Some(duration_ns) = duration_ns {
            let histogram = histogram_index(routed.rollout, routed.version, routed.source);
            if let Some(id) = loaded.histogram_ids.get(histogram) {
                host.record_histogram(*id, duration_ms(duration_ns));
            }
        }
        if let (Some(shard), Some(rollout)) =
            (routed.shard, loaded.config.rollouts.get(routed.rollout))
        {
            let outcome = outcome(class, duration_ns, rollout.slow_threshold_ns);
            let index = shard_counter_index(routed.rollout, routed.version, shard, outcome);
            if let Some(id) = loaded.shard_counter_ids.get(index) {
                host.increment_counter(*id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
