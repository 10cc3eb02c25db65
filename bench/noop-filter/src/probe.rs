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
//! - `scatter`: with `split`, the 10% of requests set to `canary` are picked at random (a
//!   hash of the request's sequence number) rather than every 10th, as user hashes pick
//!   them;
//! - `clear`: the `clear_route_cache` foreign function;
//! - `clock`: read the proxy's clock once when the request headers arrive and once in
//!   `on_log` (the filter's latency measurement);
//! - `code`, `duration`: read the `response.code` / `request.duration` properties in `on_log`;
//! - `counter`, `histogram`: increment a counter / record into a histogram in `on_log`;
//! - `shard`: increment a second counter in `on_log` (the filter's user-shard counter);
//! - `spread`: with `counter`, `histogram` and `shard`, update a *different* stat object per
//!   version and user shard, as the filter does (its stats carry those labels): a counter and
//!   a histogram per version, a shard counter per version and one of 16 shards (taken from a
//!   hash of the request's sequence number), instead of the same three objects every time.
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
    scatter: bool,
    clear: bool,
    clock: bool,
    code: bool,
    duration: bool,
    spread: bool,
    /// Stat ids: one each, or with `spread` one per version (counter, histogram) and per
    /// version and shard (shard counter), indexed by [`stat_slot`].
    counter: Vec<u32>,
    histogram: Vec<u32>,
    shard: Vec<u32>,
}

/// Shards per version with `spread` (the filter's `assign::SHARDS`).
const SHARDS: u64 = 16;

/// Defines `count` stats of `kind` named `name_<i>` (just `name` for one); empty if the proxy
/// refuses one.
fn define(kind: MetricType, name: &str, count: u64) -> Vec<u32> {
    (0..count)
        .map(|i| {
            let name = if count == 1 {
                name.to_string()
            } else {
                format!("{name}_{i}")
            };
            hostcalls::define_metric(kind, &name).ok()
        })
        .collect::<Option<Vec<u32>>>()
        .unwrap_or_default()
}

/// The id in `ids` for this request's version and shard (`ids` holds 1, 2 or 32 ids).
fn stat_slot(ids: &[u32], canary: bool, shard: u64) -> Option<u32> {
    let version = u64::from(canary);
    let index = match ids.len() {
        1 => 0,
        2 => version,
        _ => version * SHARDS + shard,
    };
    ids.get(usize::try_from(index).ok()?).copied()
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
        // counter, histogram, shard: defined once every op is read (`spread` changes how many).
        let mut wanted = (false, false, false);
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
                "scatter" => plan.scatter = true,
                "clear" => plan.clear = true,
                "clock" => plan.clock = true,
                "code" => plan.code = true,
                "duration" => plan.duration = true,
                "counter" => wanted.0 = true,
                "histogram" => wanted.1 = true,
                "shard" => wanted.2 = true,
                "spread" => plan.spread = true,
                _ => return false,
            }
        }
        let (versions, shards) = if plan.spread { (2, 2 * SHARDS) } else { (1, 1) };
        if wanted.0 {
            plan.counter = define(MetricType::Counter, "probe_requests_total", versions);
        }
        if wanted.1 {
            plan.histogram = define(MetricType::Histogram, "probe_duration_ms", versions);
        }
        if wanted.2 {
            plan.shard = define(MetricType::Counter, "probe_shard_requests_total", shards);
        }
        self.plan = Rc::new(plan);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.requests.set(self.requests.get().wrapping_add(1));
        let sequence = self.requests.get();
        let canary = if self.plan.scatter {
            splitmix64(sequence).is_multiple_of(10)
        } else {
            sequence.is_multiple_of(10)
        };
        Some(Box::new(ProbeRequest {
            plan: Rc::clone(&self.plan),
            canary: self.plan.split && canary,
            // Fibonacci hashing: the top 4 bits of sequence × 2^64/φ, spread like user hashes.
            shard: sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// SplitMix64's output function: consecutive inputs give unrelated outputs, so a test on
/// them picks requests as independently as distinct users' hashes do (Fibonacci hashing
/// would spread them evenly instead).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct ProbeRequest {
    plan: Rc<Plan>,
    /// `split`: this request is set to `canary`.
    canary: bool,
    /// `spread`: this request's shard in 0..SHARDS.
    shard: u64,
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
        if let Some(id) = stat_slot(&plan.counter, self.canary, self.shard) {
            let _ = hostcalls::increment_metric(id, 1);
        }
        if plan.clock {
            seen += clock_ns();
        }
        if let Some(id) = stat_slot(&plan.histogram, self.canary, self.shard) {
            let _ = hostcalls::record_metric(id, 3);
        }
        if let Some(id) = stat_slot(&plan.shard, self.canary, self.shard) {
            let _ = hostcalls::increment_metric(id, 1);
        }
        std::hint::black_box(seen);
    }
}
