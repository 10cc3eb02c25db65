//! Hostcall probe: performs, per request, the subset of stickycanary's hostcalls named in its
//! plugin configuration (a comma-separated list), and nothing else. Comparing probes in one
//! bench run prices each kind of hostcall on this Envoy, so the filter's cost can be split
//! into "hostcalls" and "its own logic".
//!
//! Operations, in the order the filter does them:
//! - `authority`, `path`, `user`: read `:authority`, `:path`, `x-user-id`;
//! - `pairs`: read all request headers in one call (`get_map_pairs`), the alternative to
//!   three single reads;
//! - `remove`, `set`: remove, then set `x-canary-version` (to `stable`);
//! - `clear`: the `clear_route_cache` foreign function;
//! - `code`, `duration`: read the `response.code` / `request.duration` properties in `on_log`;
//! - `counter`, `histogram`: increment a counter / record into a histogram in `on_log`.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};

const ROUTE_HEADER: &str = "x-canary-version";

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_context_id| -> Box<dyn RootContext> {
        Box::new(ProbeRoot { plan: Rc::new(Plan::default()) })
    });
}}

#[derive(Default)]
struct Plan {
    authority: bool,
    path: bool,
    user: bool,
    pairs: bool,
    remove: bool,
    set: bool,
    clear: bool,
    code: bool,
    duration: bool,
    counter: Option<u32>,
    histogram: Option<u32>,
}

struct ProbeRoot {
    plan: Rc<Plan>,
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
                "path" => plan.path = true,
                "user" => plan.user = true,
                "pairs" => plan.pairs = true,
                "remove" => plan.remove = true,
                "set" => plan.set = true,
                "clear" => plan.clear = true,
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
                _ => return false,
            }
        }
        self.plan = Rc::new(plan);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ProbeRequest {
            plan: Rc::clone(&self.plan),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct ProbeRequest {
    plan: Rc<Plan>,
}

impl Context for ProbeRequest {}

fn header(name: &str) -> usize {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
        .map_or(0, |v| v.len())
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
        if plan.remove {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, ROUTE_HEADER);
        }
        if plan.set {
            let _ =
                hostcalls::set_map_value(MapType::HttpRequestHeaders, ROUTE_HEADER, Some("stable"));
        }
        if plan.clear {
            let _ = hostcalls::call_foreign_function("clear_route_cache", None);
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
        if let Some(id) = plan.histogram {
            let _ = hostcalls::record_metric(id, 3);
        }
        std::hint::black_box(seen);
    }
}
