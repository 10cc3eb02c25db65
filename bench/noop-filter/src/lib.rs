//! The no-op proxy-wasm peer of `make bench`: every HTTP context uses the SDK's default
//! callbacks (continue, touch nothing), so its cost is Envoy entering the Wasm VM for each
//! request callback and nothing else. Built with the same toolchain and profile as the filter
//! (`scripts/bench-build-noop.sh`).
//!
//! With the `probe` feature the same crate builds the hostcall probe instead (see `probe`).

#[cfg(all(target_arch = "wasm32", not(feature = "probe")))]
mod wasm {
    use proxy_wasm::traits::{Context, HttpContext};

    proxy_wasm::main! {{
        proxy_wasm::set_http_context(|_context_id, _root_context_id| -> Box<dyn HttpContext> {
            Box::new(Noop)
        });
    }}

    struct Noop;

    impl Context for Noop {}

    impl HttpContext for Noop {}
}

#[cfg(all(target_arch = "wasm32", feature = "probe"))]
mod probe;
