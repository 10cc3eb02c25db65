//! Human durations as written in a `CanaryRollout`: `500ms`, `30s`, `10m`, `1h30m`.
//!
//! The spec stores them as strings (so `kubectl` users write what they read), and this
//! newtype parses them once at deserialisation so the engine works with real durations.
//! Whether zero is allowed depends on the field; `validate.rs` decides that.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The regular expression the CRD's OpenAPI schema enforces for every duration field.
/// It matches what [`Duration::from_str`] accepts.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration (expected e.g. 30s, 10m, 1h30m, 500ms)")]
    Empty,
    #[error("invalid duration {0:?} (expected e.g. 30s, 10m, 1h30m, 500ms)")]
    Invalid(String),
    #[error("duration {0:?} is too large")]
    TooLarge(String),
}

/// A non-negative duration with millisecond resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub const fn from_millis(millis: u64) -> Self {
        Duration(std::time::Duration::from_millis(millis))
    }

    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub const fn from_mins(mins: u64) -> Self {
        Duration(std::time::Duration::from_secs(mins * 60))
    }

    pub const fn as_std(&self) -> std::time::Duration {
        self.0
    }

    pub fn as_millis(&self) -> u128 {
        self.0.as_millis()
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// The same span as a signed `jiff` duration, for timestamp arithmetic.
    pub fn to_signed(&self) -> k8s_openapi::jiff::SignedDuration {
        // Durations parsed from text are far below i64::MAX seconds; saturate just in case.
        k8s_openapi::jiff::SignedDuration::try_from(self.0)
            .unwrap_or(k8s_openapi::jiff::SignedDuration::MAX)
    }
}

impl From<std::time::Duration> for Duration {
    fn from(value: std::time::Duration) -> Self {
        // Sub-millisecond precision cannot be written back out, so drop it here.
        Duration(std::time::Duration::from_millis(
            u64::try_from(value.as_millis()).unwrap_or(u64::MAX),
        ))
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(DurationError::Empty);
        }
        let invalid = || DurationError::Invalid(text.to_string());
        let too_large = || DurationError::TooLarge(text.to_string());
        let bytes = text.as_bytes();
        let mut total_ms: u64 = 0;
        let mut pos = 0;
        while pos < bytes.len() {
            let digits_start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            if pos == digits_start {
                return Err(invalid());
            }
            let number: u64 = text[digits_start..pos].parse().map_err(|_| too_large())?;
            let unit_ms: u64 = if text[pos..].starts_with("ms") {
                pos += 2;
                1
            } else {
                let unit = bytes.get(pos).copied().ok_or_else(invalid)?;
                pos += 1;
                match unit {
                    b's' => 1_000,
                    b'm' => 60_000,
                    b'h' => 3_600_000,
                    _ => return Err(invalid()),
                }
            };
            let part = number.checked_mul(unit_ms).ok_or_else(too_large)?;
            total_ms = total_ms.checked_add(part).ok_or_else(too_large)?;
        }
        Ok(Duration::from_millis(total_ms))
    }
}

impl fmt::Display for Duration {
    /// Canonical form: largest units first, zero parts left out (`1h30m`, `1m30s`, `1s500ms`),
    /// and `0s` for zero. Parsing the output gives back the same duration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut remaining_ms = self.0.as_millis();
        if remaining_ms == 0 {
            return f.write_str("0s");
        }
        for (unit, unit_ms) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            let count = remaining_ms / unit_ms;
            if count > 0 {
                write!(f, "{count}{unit}")?;
                remaining_ms -= count * unit_ms;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Duration")
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration such as 30s, 10m, 1h30m or 500ms.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("10m", 600_000),
            ("1h30m", 5_400_000),
            ("0s", 0),
            ("1s500ms", 1_500),
        ] {
            let parsed: Duration = text.parse().unwrap();
            assert_eq!(parsed.as_millis(), ms, "{text}");
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!("90m".parse::<Duration>().unwrap().to_string(), "1h30m");
    }

    #[test]
    fn rejects_malformed_text() {
        for text in ["", "10", "m", "10x", "1.5m", "-1s", "10 m", "1h30", "ms"] {
            assert!(text.parse::<Duration>().is_err(), "{text:?} should fail");
        }
        assert!(matches!(
            "99999999999999999999h".parse::<Duration>(),
            Err(DurationError::TooLarge(_))
        ));
    }
}
