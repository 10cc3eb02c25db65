//! The proxy-wasm glue: hostcalls in, [`decide`] in the middle, header edits and stats
//! out. Kept thin on purpose; every rule it applies lives in the pure modules.
//!
//! Hostcalls per matched request: `:authority`, `:path`, the identity sources (the
//! `cookie` header at most once), remove + set of the routing header, `clear_route_cache`;
//! then two properties and two metric updates in `on_log`.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::assign;
use crate::decision::{decide, response_edits, Decision, Routed, VERSION_RESPONSE_HEADER};
use crate::headers::RequestHeaders;
use crate::identity::IdMinter;
use crate::matching::CompiledConfig;
use crate::stats::{code_class, counter_index, duration_ms, histogram_index, StatNames};

proxy_wasm::main! {{
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("stickycanary: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|context_id| Box::new(Root::new(context_id)));
}}

/// A compiled config together with the Envoy metric ids of all its stats, indexed by
/// `stats::counter_index` / `stats::histogram_index`.
struct Loaded {
    config: CompiledConfig,
    counter_ids: Vec<u32>,
    histogram_ids: Vec<u32>,
}

struct Root {
    loaded: Option<Rc<Loaded>>,
    ids: Rc<IdMinter>,
}

impl Root {
    fn new(context_id: u32) -> Root {
        // Distinct per VM and start time, so replicas mint distinct anonymous ids.
        let now = hostcalls::get_current_time()
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        Root {
            loaded: None,
            ids: Rc::new(IdMinter::new(now ^ (u64::from(context_id) << 48))),
        }
    }

    fn load(configuration: &[u8]) -> Result<Loaded, String> {
        let config = CompiledConfig::from_json(configuration).map_err(|err| err.to_string())?;
        let names = StatNames::for_config(&config);
        let define = |kind, name: &String| {
            hostcalls::define_metric(kind, name)
                .map_err(|status| format!("defining stat {name}: {status:?}"))
        };
        let counter_ids = names
            .counters
            .iter()
            .map(|name| define(MetricType::Counter, name))
            .collect::<Result<Vec<u32>, String>>()?;
        let histogram_ids = names
            .histograms
            .iter()
            .map(|name| define(MetricType::Histogram, name))
            .collect::<Result<Vec<u32>, String>>()?;
        Ok(Loaded {
            config,
            counter_ids,
            histogram_ids,
        })
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let configuration = hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        match Root::load(&configuration) {
            Ok(loaded) => {
                self.loaded = Some(Rc::new(loaded));
                true
            }
            Err(reason) => {
                // Returning false makes Envoy reject this config and keep the previous one.
                let _ = hostcalls::log(
                    LogLevel::Error,
                    &format!("stickycanary: rejected config: {reason}"),
                );
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            loaded: self.loaded.clone(),
            ids: Rc::clone(&self.ids),
            routed: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Request headers read one hostcall at a time, only those the decision asks for.
struct HostRequestHeaders;

impl RequestHeaders for HostRequestHeaders {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }
}

struct Request {
    loaded: Option<Rc<Loaded>>,
    ids: Rc<IdMinter>,
    routed: Option<Routed>,
}

impl Context for Request {}

impl Request {
    fn clear_route_cache() {
        // Absent on hosts without Envoy's foreign function; routing then sees the header
        // only if nothing computed the route earlier, which is the best available.
        let _ = hostcalls::call_foreign_function("clear_route_cache", None);
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(loaded) = self.loaded.clone() else {
            return Action::Continue;
        };
        let route_header = loaded.config.route_header.as_str();
        match decide(&loaded.config, &HostRequestHeaders, &self.ids) {
            Decision::PassThrough => {
                // Envoy header maps are case-insensitive and removal drops every
                // occurrence, so a client cannot smuggle a routing header through.
                if HostRequestHeaders.header(route_header).is_some() {
                    let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, route_header);
                    Request::clear_route_cache();
                }
            }
            Decision::Route(routed) => {
                let version = loaded
                    .config
                    .rollouts
                    .get(routed.rollout)
                    .map(|rollout| rollout.version_name(routed.version));
                let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, route_header);
                if let Some(version) = version {
                    let _ = hostcalls::set_map_value(
                        MapType::HttpRequestHeaders,
                        route_header,
                        Some(version),
                    );
                }
                Request::clear_route_cache();
                self.routed = Some(routed);
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (Some(loaded), Some(routed)) = (&self.loaded, &self.routed) else {
            return Action::Continue;
        };
        let edits = response_edits(&loaded.config, routed);
        if let Some(set_cookie) = edits.add_set_cookie {
            let _ =
                hostcalls::add_map_value(MapType::HttpResponseHeaders, "set-cookie", set_cookie);
        }
        if let Some(version) = edits.set_version_header {
            let _ = hostcalls::set_map_value(
                MapType::HttpResponseHeaders,
                VERSION_RESPONSE_HEADER,
                Some(version),
            );
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let (Some(loaded), Some(routed)) = (&self.loaded, &self.routed) else {
            return;
        };
        // `response.code` is 0 or absent when no response was sent (reset): class `none`.
        let status = property_u64(&["response", "code"]).filter(|code| *code != 0);
        let class = code_class(status);
        let counter = counter_index(routed.rollout, routed.version, class, routed.source);
        if let Some(id) = loaded.counter_ids.get(counter) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
        if let Some(duration_ns) = property_u64(&["request", "duration"]) {
            let histogram = histogram_index(routed.rollout, routed.version, routed.source);
            if let Some(id) = loaded.histogram_ids.get(histogram) {
                let _ = hostcalls::record_metric(*id, duration_ms(duration_ns));
            }
        }
    }
}

/// An integer property; Envoy encodes them as 8 little-endian bytes (`request.duration`
/// is a signed nanosecond count, never negative in practice).
fn property_u64(path: &[&str]) -> Option<u64> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    let array: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let value = i64::from_le_bytes(array);
    u64::try_from(value).ok()
}

/// Golden-vector agreement check: lets a test harness (Node, `filter/tests/wasm_golden.mjs`)
/// compute contract 2 buckets with the wasm build itself. Returns `u32::MAX` for a salt
/// that is not UTF-8.
///
/// # Safety
/// `salt`/`user` must point to `salt_len`/`user_len` readable bytes (or the length is 0).
#[no_mangle]
pub unsafe extern "C" fn stickycanary_bucket(
    salt: *const u8,
    salt_len: usize,
    user: *const u8,
    user_len: usize,
) -> u32 {
    let salt = if salt_len == 0 || salt.is_null() {
        &[][..]
    } else {
        // SAFETY: the caller guarantees `salt_len` readable bytes at `salt`.
        unsafe { std::slice::from_raw_parts(salt, salt_len) }
    };
    let user = if user_len == 0 || user.is_null() {
        &[][..]
    } else {
        // SAFETY: the caller guarantees `user_len` readable bytes at `user`.
        unsafe { std::slice::from_raw_parts(user, user_len) }
    };
    match std::str::from_utf8(salt) {
        Ok(salt) => assign::bucket_bytes(salt, user),
        Err(_) => u32::MAX,
    }
}
