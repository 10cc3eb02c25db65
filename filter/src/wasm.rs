//! The proxy-wasm glue: implements [`Host`] with hostcalls and forwards the callbacks to
//! [`RequestFlow`]. Kept thin on purpose; every rule it applies lives in the pure modules.
//!
//! Hostcalls per matched request: all request headers in one read, set of the routing
//! header (plus removal of the override token, only when one was sent) and the clock; then
//! `response.code`, the clock and three metric updates in `on_log` (requests, latency and,
//! for hash-routed requests, the user's shard). Hostcalls that return a buffer (header and
//! property reads) cost the most, because Envoy calls back into the module to allocate it:
//! there are two per request, whatever the config asks to look at.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::flow::{Host, LoadedConfig, MetricKind, RequestFlow};
use crate::identity::IdMinter;

proxy_wasm::main! {{
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("stickycanary: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|context_id| Box::new(Root::new(context_id)));
}}

struct Root {
    loaded: Option<Rc<LoadedConfig>>,
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
}

fn define_metric(kind: MetricKind, name: &str) -> Result<u32, String> {
    let metric_type = match kind {
        MetricKind::Counter => MetricType::Counter,
        MetricKind::Histogram => MetricType::Histogram,
    };
    hostcalls::define_metric(metric_type, name)
        .map_err(|status| format!("defining stat {name}: {status:?}"))
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
        match LoadedConfig::load(&configuration, define_metric) {
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
            flow: self.loaded.clone().map(RequestFlow::new),
            ids: Rc::clone(&self.ids),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// [`Host`] over proxy-wasm hostcalls. Failures of a hostcall are ignored: the request
/// goes on unchanged rather than failing.
struct ProxyWasmHost;

impl Host for ProxyWasmHost {
    fn request_headers(&self) -> Option<Vec<u8>> {
        request_header_pairs()
    }
    fn remove_request_header(&self, name: &str) {
        let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
    }
    fn set_request_header(&self, name: &str, value: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
    }
    fn add_response_header(&self, name: &str, value: &str) {
        let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value);
    }
    fn set_response_header(&self, name: &str, value: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value));
    }
    fn response_code(&self) -> Option<u64> {
        property_u64(RESPONSE_CODE_PATH)
    }
    fn now_ns(&self) -> Option<u64> {
        let mut now: u64 = 0;
        // SAFETY: the out-pointer is valid for a write of a u64.
        let status = unsafe { proxy_get_current_time_nanoseconds(&mut now) };
        (status == 0).then_some(now)
    }
    fn increment_counter(&self, metric_id: u32) {
        let _ = hostcalls::increment_metric(metric_id, 1);
    }
    fn record_histogram(&self, metric_id: u32, value: u64) {
        let _ = hostcalls::record_metric(metric_id, value);
    }
}

// The raw hostcalls behind three SDK wrappers, for the request path:
// - `get_map_bytes` would decode every header into its own `String` and `Vec`; the filter
//   scans the buffer in place instead (`HeaderSnapshot`);
// - `get_property` allocates and serializes its path on every call; the filter's one path
//   is a constant;
// - `get_current_time` builds a `SystemTime` that the filter would turn straight back
//   into nanoseconds.
// Each wrapper also panics on a status it does not expect; these return it instead, and a
// failed call reads as "unknown". Declared with the SDK's signatures, hence the allowed clash.
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
}

/// `response.code`, serialized as proxy-wasm paths are: the segments joined by NUL.
const RESPONSE_CODE_PATH: &[u8] = b"response\0code";

/// Every request header in proxy-wasm's serialized form, or `None` when the call fails.
fn request_header_pairs() -> Option<Vec<u8>> {
    // SAFETY: both out-pointers are valid for writes; the host fills them in.
    host_buffer(|data, size| unsafe {
        proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, data, size)
    })
}

/// An integer property at a serialized `path`; Envoy encodes them as 8 little-endian bytes.
fn property_u64(path: &[u8]) -> Option<u64> {
    // SAFETY: `path` is valid for `path.len()` reads; both out-pointers are valid for writes.
    let bytes = host_buffer(|data, size| unsafe {
        proxy_get_property(path.as_ptr(), path.len(), data, size)
    })?;
    let array: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    u64::try_from(i64::from_le_bytes(array)).ok()
}

/// The buffer a hostcall returns through its two out-pointers, or `None` when it fails
/// (any status but Ok) or returns nothing.
fn host_buffer(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    if call(&mut data, &mut size) != 0 || data.is_null() {
        return None;
    }
    // SAFETY: the host allocated `size` bytes at `data` through this module's allocator
    // (`proxy_on_memory_allocate`, a `Vec` with capacity `size`, as the SDK's own
    // `get_map_bytes` and `get_property` rely on); the `Vec` takes them back and frees them.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

struct Request {
    /// `None` until a config has been accepted.
    flow: Option<RequestFlow>,
    ids: Rc<IdMinter>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(flow) = &mut self.flow {
            flow.on_request_headers(&ProxyWasmHost, &self.ids);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(flow) = &self.flow {
            flow.on_response_headers(&ProxyWasmHost);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(flow) = &self.flow {
            flow.on_log(&ProxyWasmHost);
        }
    }
}

/// Golden-vector agreement check: lets a test harness (Node, `filter/tests/wasm_golden.mjs`)
/// compute contract 2 buckets with the wasm build itself. Returns `u32::MAX` for a salt
/// that is not UTF-8. Only in the `golden-export` test build: it calls the same
/// `assign::placement` the request path calls, and the production module exports only
/// the proxy-wasm ABI.
///
/// # Safety
/// `salt`/`user` must point to `salt_len`/`user_len` readable bytes (or the length is 0).
#[cfg(feature = "golden-export")]
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
        Ok(salt) => crate::assign::placement(salt, user).bucket,
        Err(_) => u32::MAX,
    }
}
