//! Contract 3, parts 1 and 2: who the user is, and ids for users who are nobody yet.

use std::cell::Cell;

use xxhash_rust::xxh64::xxh64;

use crate::config::{AnonymousConfig, IdentitySource};
use crate::headers::RequestView;

/// A minted id from `x-request-id` is used as-is only when it is this short and made of
/// cookie-safe characters; anything else is hashed, so no client text reaches `Set-Cookie`.
const MAX_VERBATIM_ID_LEN: usize = 64;

/// The value of cookie `name` in one `Cookie` header value, or `None`, parsed exactly as
/// Envoy parses cookies (`forEachCookie` in Envoy's source/common/http/utility.cc, used by
/// `Http::Utility::parseCookieValue`/`parseCookies` and so by cookie hash policies):
///
/// - the value is split on `;`, empty pieces skipped;
/// - a piece without `=` is skipped; the name ends at the first `=` (values may hold more);
/// - only leading spaces (0x20) are dropped from the name; nothing else is trimmed, so
///   `name =v` has the name `name ` and does not match `name`;
/// - the value is everything after the `=`, untrimmed; when it is at least two bytes long
///   and starts and ends with `"`, that one pair of quotes is removed;
/// - the first piece with that exact (case-sensitive) name wins.
///
/// Whitespace left around a value is removed later, by the identity rule (contract 3.1).
pub fn cookie_value<'a>(cookie_header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    cookie_header
        .split(|byte| *byte == b';')
        .filter(|piece| !piece.is_empty())
        .find_map(|piece| {
            let equals = piece.iter().position(|byte| *byte == b'=')?;
            let leading_spaces = piece.iter().take_while(|byte| **byte == b' ').count();
            let key = piece.get(leading_spaces..equals).unwrap_or_default();
            if key != name.as_bytes() {
                return None;
            }
            let value = &piece[equals + 1..];
            let unquoted = match value {
                [b'"', inner @ .., b'"'] => inner,
                _ => value,
            };
            Some(unquoted)
        })
}

/// The value of cookie `name` across every `Cookie` header of a request, in the order they
/// arrived: HTTP/1.1 clients and proxies may send several headers, and Envoy's cookie
/// matching reads them all (`headers.get(cookie)` returns every entry), first match wins.
/// HTTP/2 cookie crumbs are joined into one header by Envoy before filters run.
pub fn cookie_value_in<'a>(
    cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    name: &str,
) -> Option<&'a [u8]> {
    cookie_headers
        .into_iter()
        .find_map(|header| cookie_value(header, name))
}

/// Walks `identity` in order and returns the first non-empty value, trimmed (contract 3.1).
pub fn resolve_identity<'h>(
    sources: &[IdentitySource],
    request: &RequestView<'h>,
) -> Option<&'h [u8]> {
    sources.iter().find_map(|source| {
        let value = match source {
            IdentitySource::Header(name) => request.header(name),
            IdentitySource::Cookie(name) => request.cookie(name),
        }?;
        let trimmed = value.trim_ascii();
        (!trimmed.is_empty()).then_some(trimmed)
    })
}

/// Mints ids for anonymous users: from `x-request-id` when present, else from a
/// per-VM seed and counter. Uniqueness matters, secrecy does not: the id only picks a
/// bucket, and anyone can choose their own by sending an identity header.
#[derive(Debug)]
pub struct IdMinter {
    seed: u64,
    counter: Cell<u64>,
    shard_turn: Cell<u8>,
}

impl IdMinter {
    pub fn new(seed: u64) -> IdMinter {
        IdMinter {
            seed,
            counter: Cell::new(0),
            shard_turn: Cell::new(0),
        }
    }

    /// The next shard in turn, for a request with no id to hash (anonymous users sent to
    /// stable): cycles through `0..assign::SHARDS`.
    pub fn next_shard(&self) -> u8 {
        let shard = self.shard_turn.get();
        self.shard_turn.set((shard + 1) % crate::assign::SHARDS);
        shard
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
