//! Contract 3, parts 1 and 2: who the user is, and ids for users who are nobody yet.

use std::cell::Cell;

use xxhash_rust::xxh64::xxh64;

use crate::config::{AnonymousConfig, IdentitySource};
use crate::headers::RequestView;

/// A minted id from `x-request-id` is used as-is only when it is this short and made of
/// cookie-safe characters; anything else is hashed, so no client text reaches `Set-Cookie`.
const MAX_VERBATIM_ID_LEN: usize = 64;

/// The value of cookie `name` in a `Cookie` header, or `None`.
///
/// Pairs are split on `;`, surrounding spaces are trimmed, the name ends at the first
/// `=` (values may contain more), one pair of surrounding double quotes is removed, and
/// the first pair with that name wins. Pairs without `=` are ignored.
pub fn cookie_value<'a>(cookie_header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    cookie_header.split(|byte| *byte == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let equals = pair.iter().position(|byte| *byte == b'=')?;
        if pair[..equals].trim_ascii() != name.as_bytes() {
            return None;
        }
        let value = pair[equals + 1..].trim_ascii();
        let unquoted = match value {
            [b'"', inner @ .., b'"'] => inner,
            _ => value,
        };
        Some(unquoted)
    })
}

/// Walks `identity` in order and returns the first non-empty value (contract 3.1).
pub fn resolve_identity(sources: &[IdentitySource], request: &RequestView<'_>) -> Option<Vec<u8>> {
    sources.iter().find_map(|source| {
        let value = match source {
            IdentitySource::Header(name) => request.header(name),
            IdentitySource::Cookie(name) => request.cookie(name),
        }?;
        let trimmed = value.trim_ascii();
        (!trimmed.is_empty()).then(|| trimmed.to_vec())
    })
}

/// Mints ids for anonymous users: from `x-request-id` when present, else from a
/// per-VM seed and counter. Uniqueness matters, secrecy does not: the id only picks a
/// bucket, and anyone can choose their own by sending an identity header.
#[derive(Debug)]
pub struct IdMinter {
    seed: u64,
    counter: Cell<u64>,
}

impl IdMinter {
    pub fn new(seed: u64) -> IdMinter {
        IdMinter {
            seed,
            counter: Cell::new(0),
        }
    }

    pub fn mint(&self, request_id: Option<&[u8]>) -> String {
        match request_id.map(<[u8]>::trim_ascii) {
            Some(id) if is_verbatim_id(id) => String::from_utf8_lossy(id).into_owned(),
            Some(id) if !id.is_empty() => hex_id(xxh64(id, 1), xxh64(id, 2)),
            _ => {
                let count = self.counter.get().wrapping_add(1);
                self.counter.set(count);
                let bytes = count.to_le_bytes();
                hex_id(xxh64(&bytes, self.seed), xxh64(&bytes, self.seed ^ 0x5eed))
            }
        }
    }
}

fn is_verbatim_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_VERBATIM_ID_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

fn hex_id(high: u64, low: u64) -> String {
    format!("{high:016x}{low:016x}")
}

/// `Set-Cookie` value for a freshly minted anonymous id (contract 3.2).
pub fn anonymous_set_cookie(anonymous: &AnonymousConfig, id: &str) -> String {
    let secure = if anonymous.secure { "; Secure" } else { "" };
    format!(
        "{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        anonymous.cookie, id, anonymous.max_age_seconds
    )
}

#[cfg(test)]
mod tests;
