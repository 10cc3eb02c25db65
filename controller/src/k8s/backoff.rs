//! The requeue delay after a failed reconcile: it starts from a base that depends on the
//! error (a missing WasmPlugin will not come back in 5 s), doubles with each consecutive
//! failure of the same object, stops growing at a cap, and is jittered so that many
//! rollouts failing together (an API server restart) do not retry in lock-step.
//! A successful reconcile resets the object's count.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

/// The longest requeue delay after errors.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// How much of the delay jitter may take away (the delay is in `[(1 - JITTER) d, d]`).
pub const JITTER: f64 = 0.2;

/// `base * 2^(failures - 1)`, at most `cap`, shortened by `jitter` (in `[0, 1)`) times
/// [`JITTER`]. `failures` counts this one, so the first failure waits about `base`.
pub fn delay(base: Duration, failures: u32, cap: Duration, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    let grown = base.saturating_mul(1u32 << doublings).min(cap);
    grown.mul_f64(1.0 - JITTER * jitter.clamp(0.0, 1.0))
}

/// Consecutive failures per object.
#[derive(Default)]
pub struct ErrorBackoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl ErrorBackoff {
    /// Counts a failure of `key` and returns how long to wait before retrying it.
    pub fn next(&self, key: &str, base: Duration) -> Duration {
        let failures = match self.failures.lock() {
            Ok(mut map) => {
                let count = map.entry(key.to_string()).or_insert(0);
                *count = count.saturating_add(1);
                *count
            }
            Err(_) => 1,
        };
        delay(base, failures, MAX_BACKOFF, random_fraction(key, failures))
    }

    /// Consecutive failures of `key` so far.
    pub fn failures(&self, key: &str) -> u32 {
        self.failures
            .lock()
            .ok()
            .and_then(|m| m.get(key).copied())
            .unwrap_or(0)
    }

    /// `key` reconciled successfully: its next failure starts from the base again.
    pub fn reset(&self, key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(key);
        }
    }
}

/// A fraction in `[0, 1)` that differs between processes and calls (std's randomly keyed
/// hasher; cryptographic quality is not needed to spread retries).
fn random_fraction(key: &str, failures: u32) -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    key.hash(&mut hasher);
    failures.hash(&mut hasher);
    std::time::SystemTime::now().hash(&mut hasher);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_per_failure_up_to_the_cap() {
        let base = Duration::from_secs(5);
        let no_jitter: Vec<u64> = (1..=9)
            .map(|n| delay(base, n, MAX_BACKOFF, 0.0).as_secs())
            .collect();
        assert_eq!(no_jitter, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(delay(base, u32::MAX, MAX_BACKOFF, 0.0), MAX_BACKOFF);
    }

    #[test]
    fn jitter_only_shortens_and_by_at_most_a_fifth() {
        let d = delay(Duration::from_secs(10), 1, MAX_BACKOFF, 0.999_999);
        assert!(
            d <= Duration::from_secs(10) && d >= Duration::from_secs(8),
            "{d:?}"
        );
        assert_eq!(
            delay(MAX_BACKOFF, 3, MAX_BACKOFF, 0.5),
            MAX_BACKOFF.mul_f64(0.9)
        );
    }

    #[test]
    fn failures_are_counted_per_object_and_reset_on_success() {
        let backoff = ErrorBackoff::default();
        let base = Duration::from_secs(5);
        let first = backoff.next("shop/a", base);
        let second = backoff.next("shop/a", base);
        let third = backoff.next("shop/a", base);
        let other = backoff.next("shop/b", base);
        assert!(first <= base && first >= base.mul_f64(0.8), "{first:?}");
        assert!(second > base && second <= base * 2, "{second:?}");
        assert!(third > base * 2 && third <= base * 4, "{third:?}");
        assert!(
            other <= base,
            "another object starts from the base: {other:?}"
        );
        backoff.reset("shop/a");
        assert_eq!(backoff.failures("shop/a"), 0);
        assert!(backoff.next("shop/a", base) <= base);
    }

    #[test]
    fn jitter_spreads_retries() {
        let spread: std::collections::BTreeSet<u128> = (0..20)
            .map(|_| {
                delay(
                    Duration::from_secs(60),
                    1,
                    MAX_BACKOFF,
                    random_fraction("k", 1),
                )
                .as_millis()
            })
            .collect();
        assert!(spread.len() > 10, "{spread:?}");
    }
}
