//! The bounded-time fuzz runner shared by `filter/tests/fuzz_*.rs`.
//!
//! Why proptest and not cargo-fuzz: cargo-fuzz needs a nightly toolchain (sanitizer flags) and
//! builds libFuzzer from C++; this machine has stable rustup only, and the lead asked for
//! something `make test` can run as is. Each target keeps generating inputs from its strategy
//! in batches of 256 until `FUZZ_SECONDS` (default: one batch, for `cargo test`) have passed.
//! A panic or a broken invariant fails the batch; proptest shrinks it to a minimal input and
//! the test panics with it, so `scripts/fuzz.sh` reports it as a crash (copy the input into the
//! target's `regressions` test).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Runs `check` on inputs from `strategy` for `FUZZ_SECONDS` (or one batch of 256 cases) and
/// prints one summary line: `fuzz <name>: <executions> executions in <s> s, 0 crashes`.
pub fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let budget = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64);
    let executions = AtomicU64::new(0);
    let started = Instant::now();
    loop {
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&strategy, |value| {
            executions.fetch_add(1, Ordering::Relaxed);
            check(value)
        });
        if let Err(failure) = result {
            panic!(
                "fuzz {name}: CRASH after {} executions: {failure}",
                executions.load(Ordering::Relaxed)
            );
        }
        if budget.is_none_or(|b| started.elapsed() >= b) {
            break;
        }
    }
    eprintln!(
        "fuzz {name}: {} executions in {:.1} s, 0 crashes",
        executions.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}

#[allow(dead_code)] // not every target uses it
/// Header-ish bytes: mostly printable, with separators, quotes, controls and high bytes.
pub fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(b"abcAZ09-_.:;=\" ,[]*@%\t/".to_vec()),
            2 => any::<u8>(),
            1 => Just(0u8),
        ],
        0..max,
    )
}
