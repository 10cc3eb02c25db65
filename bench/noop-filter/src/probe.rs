//! Hostcall probe: performs, per request, the subset of stickycanary's hostcalls named in its
//! plugin configuration (a comma-separated list), and nothing else. Comparing probes in one
//! bench run prices each kind of hostcall on this Envoy, so the filter's cost can be split
//! into "hostcalls" and "its own logic".
//!
//! Operations, in the order the filter does them:
//! - `authority`, `path`, `user`: read `:authority`, `:path`, `x-user-id`;
//! - `pairs`: read all request headers in one call (`get_map_pairs`), the alternative to
//!   three single reads;
//! - `rawpairs`: the same hostcall, but the serialized buffer is scanned in place for
//!   `:authority` and `x-user-id` (no per-header allocation, as a filter would do it);
//! - `remove`, `set`: remove, then set `x-canary-version` (to `stable`);
//! - `split`: with `set`, every 10th request is set to `canary` instead, so the upstream
//!   traffic splits 90/10 like the filter's at the bench's 10% weight (two clusters in use,
//!   not one);
//! - `clear`: the `clear_route_cache` foreign function;
//! - `clock`: read the proxy's clock once when the request headers arrive and once in
//!   `on_log` (the filter's latency measurement);
//! - `code`, `duration`: read the `response.code` / `request.duration` properties in `on_log`;
//! - `counter`, `histogram`: increment a counter / record into a histogram in `on_log`;
//! - `shard`: increment a second counter in `on_log` (the filter's user-shard counter).
//!
//! The filter's own request path is `rawpairs,set,split,clock,code,counter,histogram,shard` for a
//! hash-routed request with a user id: the probe with exactly those is the "same hostcalls"
//! peer that `make bench-filter` pairs the filter with.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};

const ROUTE_HEADER: &str = "x-canary-version";

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_context_id| -> Box<dyn RootContext> {
        Box::new(ProbeRoot {
            plan: Rc::new(Plan::default()),
            requests: std::cell::Cell::new(0),
        })
    });
}}

#[derive(Default)]
struct Plan {
    authority: bool,
    path: bool,
    user: bool,
    pairs: bool,
    rawpairs: bool,
    remove: bool,
    set: bool,
    split: bool,
    clear: bool,
    clock: bool,
    code: bool,
    duration: bool,
    counter: Option<u32>,
    histogram: Option<u32>,
    shard: Option<u32>,
}

struct ProbeRoot {
    plan: Rc<Plan>,
    /// HTTP contexts created so far (for `split`).
    requests: std::cell::Cell<u64>,
}

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let text = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let mut plan = Plan::default();
        for op in text.split(',').map(str::trim).filter(|op| !op.is_empty()) {
            match op {
                "authority" => plan.authority = true,
                "rawpairs" => plan.rawpairs = true,
                "path" => plan.path = true,
                "user" => plan.user = true,
                "pairs" => plan.pairs = true,
                "remove" => plan.remove = true,
                "set" => plan.set = true,
                "split" => plan.split = true,
                "clear" => plan.clear = true,
                "clock" => plan.clock = true,
                "code" => plan.code = true,
                "duration" => plan.duration = true,
                "counter" => {
                    plan.counter =
                        hostcalls::define_metric(MetricType::Counter, "probe_requests_total").ok()
                }
                "histogram" => {
                    plan.histogram =
                        hostcalls::define_metric(MetricType::Histogram, "probe_duration_ms").ok()
                }
                "shard" => {
                    plan.shard =
                        hostcalls::define_metric(MetricType::Counter, "probe_shard_requests_total")
                            .ok()
                }
                _ => return false,
            }
        }
        self.plan = Rc::new(plan);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.requests.set(self.requests.get().wrapping_add(1));
        Some(Box::new(ProbeRequest {
            plan: Rc::clone(&self.plan),
            canary: self.plan.split && self.requests.get().is_multiple_of(10),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct ProbeRequest {
    plan: Rc<Plan>,
    /// `split`: this request is set to `canary`.
    canary: bool,
}

impl Context for ProbeRequest {}

fn header(name: &str) -> usize {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
        .map_or(0, |v| v.len())
}

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// All request headers in one hostcall; the lengths of `:authority` and `x-user-id` found by
/// walking the serialized pairs (u32 count, count × (u32 key len, u32 value len), then each
/// key and value followed by a NUL) without copying.
fn raw_pairs_lookup() -> usize {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer to `size` bytes it allocated through this module's
    // allocator (proxy_on_memory_allocate), which the Vec below takes back and frees.
    let status = unsafe { proxy_get_header_map_pairs(0, &mut data, &mut size) };
    if status != 0 || data.is_null() {
        return 0;
    }
    // SAFETY: `data` holds `size` bytes from this module's allocator (see above).
    let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
    let word = |at: usize| -> usize {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b: [u8; 4]| u32::from_le_bytes(b) as usize)
    };
    let count = word(0);
    let mut sizes_at = 4;
    let mut data_at = 4 + count * 8;
    let mut found = 0;
    for _ in 0..count {
        let (key_len, value_len) = (word(sizes_at), word(sizes_at + 4));
        sizes_at += 8;
        let key = bytes.get(data_at..data_at + key_len).unwrap_or_default();
        data_at += key_len + 1;
        if key == b":authority" || key == b"x-user-id" {
            found += value_len;
        }
        data_at += value_len + 1;
    }
    found
}

fn clock_ns() -> usize {
    hostcalls::get_current_time()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |elapsed| elapsed.subsec_nanos() as usize)
}

fn property(path: &[&str]) -> usize {
    hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()
        .map_or(0, |v| v.len())
}

impl HttpContext for ProbeRequest {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let plan = &self.plan;
        // The lengths feed nothing; reading them keeps the calls from being optimised out.
        let mut seen = 0;
        if plan.authority {
            seen += header(":authority");
        }
        if plan.path {
            seen += header(":path");
        }
        if plan.user {
            seen += header("x-user-id");
        }
        if plan.pairs {
            seen += hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
                .map_or(0, |pairs| pairs.len());
        }
        if plan.rawpairs {
            seen += raw_pairs_lookup();
        }
        if plan.remove {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, ROUTE_HEADER);
        }
        if plan.set {
            let version = if self.canary { "canary" } else { "stable" };
            let _ =
                hostcalls::set_map_value(MapType::HttpRequestHeaders, ROUTE_HEADER, Some(version));
        }
        if plan.clear {
            let _ = hostcalls::call_foreign_function("clear_route_cache", None);
        }
        if plan.clock {
            seen += clock_ns();
        }
        std::hint::black_box(seen);
        Action::Continue
    }

    fn on_log(&mut self) {
        let plan = &self.plan;
        let mut seen = 0;
        if plan.code {
            seen += property(&["response", "code"]);
        }
        if plan.duration {
            seen += property(&["request", "duration"]);
        }
        if let Some(id) = plan.counter {
            let _ = hostcalls::increment_metric(id, 1);
        }
        if plan.clock {
            seen += clock_ns();
        }
        if let Some(id) = plan.histogram {
            let _ = hostcalls::record_metric(id, 3);
        }
        if let Some(id) = plan.shard {
            let _ = hostcalls::increment_metric(id, 1);
        }
        std::hint::black_box(seen);
    }
}
