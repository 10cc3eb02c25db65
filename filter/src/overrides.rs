//! Contract 3.3: testers force a version with a header or cookie, optionally guarded by
//! a shared token.

use crate::config::{OverrideConfig, OVERRIDE_TOKEN_HEADER};
use crate::decision::Version;
use crate::headers::RequestView;
use crate::matching::CompiledRollout;

/// The version an override asks for, when overrides are on, the value names one of the
/// rollout's two versions and (if a token is configured) the request carries that token.
/// The header is checked before the cookie.
pub fn requested_version(rollout: &CompiledRollout, request: &RequestView<'_>) -> Option<Version> {
    let config: &OverrideConfig = rollout.override_config.as_ref()?;
    let from_header = config
        .header
        .as_deref()
        .and_then(|name| request.header(name));
    let value = from_header.or_else(|| {
        config
            .cookie
            .as_deref()
            .and_then(|name| request.cookie(name))
    })?;
    let value = value.trim_ascii();
    let version = if value == rollout.stable_version.as_bytes() {
        Version::Stable
    } else if value == rollout.canary_version.as_bytes() {
        Version::Canary
    } else {
        return None;
    };
    if let Some(token) = &config.token {
        let presented = request.header(OVERRIDE_TOKEN_HEADER)?;
        if !constant_time_eq(presented.trim_ascii(), token.as_bytes()) {
            return None;
        }
    }
    Some(version)
}

/// Compares without an early exit, so the time taken does not reveal how many leading
/// bytes of a guess were right (only the longer length shows).
pub fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let longest = presented.len().max(expected.len());
    let mut difference = u8::from(presented.len() != expected.len());
    for index in 0..longest {
        let a = presented.get(index).copied().unwrap_or(0);
        let b = expected.get(index).copied().unwrap_or(0);
        difference |= a ^ b;
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests;
