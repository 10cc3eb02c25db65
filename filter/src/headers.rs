//! How the pure logic reads a request: one small trait over borrowed header values,
//! implemented by [`HeaderSnapshot`] (every request header, fetched from the proxy in one
//! hostcall) and by [`HeaderList`] in tests and tools.

use crate::identity::cookie_value_in;

/// Read access to request headers. Names are compared ASCII case-insensitively (Envoy
/// stores them lower-case); values are raw bytes because a header value need not be UTF-8.
pub trait RequestHeaders {
    /// The first value of `name`, as Envoy's single-header read returns it.
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// Every value of `name`, in arrival order: a header may appear several times
    /// (HTTP/1.1 `Cookie`), and a single-header read sees only the first.
    fn header_values(&self, name: &str) -> Vec<&[u8]>;
}

/// A request as the decision sees it.
pub struct RequestView<'h> {
    headers: &'h dyn RequestHeaders,
}

impl<'h> RequestView<'h> {
    pub fn new(headers: &'h dyn RequestHeaders) -> RequestView<'h> {
        RequestView { headers }
    }

    pub fn header(&self, name: &str) -> Option<&'h [u8]> {
        self.headers.header(name)
    }

    /// Cookie `name` from any of the request's `Cookie` headers (see [`cookie_value_in`]).
    pub fn cookie(&self, name: &str) -> Option<&'h [u8]> {
        cookie_value_in(self.headers.header_values("cookie"), name)
    }
}

/// Every request header as proxy-wasm serializes a header map
/// (`proxy_get_header_map_pairs`): a little-endian u32 count `n`, then `n` pairs of u32
/// name and value lengths, then each name and each value followed by a NUL byte.
///
/// One hostcall fetches it whatever the filter then looks up, so the override header, the
/// override token and every `Cookie` header cost nothing more to check (a single-header
/// read returns only the first `Cookie` header). Lookups scan it in place, no copies. A
/// malformed buffer reads as ending where it stops making sense: never a panic.
#[derive(Debug, Default, Clone)]
pub struct HeaderSnapshot {
    bytes: Vec<u8>,
}

impl HeaderSnapshot {
    pub fn new(bytes: Vec<u8>) -> HeaderSnapshot {
        HeaderSnapshot { bytes }
    }

    /// Serializes `(name, value)` pairs in the proxy-wasm format (tests and tools).
    pub fn serialize<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        bytes.extend_from_slice(&len(pairs.len()));
        for (name, value) in pairs {
            bytes.extend_from_slice(&len(name.as_ref().len()));
            bytes.extend_from_slice(&len(value.as_ref().len()));
        }
        for (name, value) in pairs {
            bytes.extend_from_slice(name.as_ref());
            bytes.push(0);
            bytes.extend_from_slice(value.as_ref());
            bytes.push(0);
        }
        bytes
    }

    /// The `(name, value)` pairs in order.
    pub fn pairs(&self) -> Pairs<'_> {
        let count = word(&self.bytes, 0).unwrap_or(0);
        // Each pair needs 8 bytes of lengths and 2 NULs: a count beyond that is a lie.
        let count = count.min(self.bytes.len() / 10);
        Pairs {
            bytes: &self.bytes,
            remaining: count,
            sizes_at: 4,
            data_at: 4 + count * 8,
        }
    }
}

/// Iterator over a [`HeaderSnapshot`]'s pairs.
pub struct Pairs<'a> {
    bytes: &'a [u8],
    remaining: usize,
    sizes_at: usize,
    data_at: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let name_len = word(self.bytes, self.sizes_at)?;
        let value_len = word(self.bytes, self.sizes_at + 4)?;
        self.sizes_at += 8;
        let name_end = self.data_at.checked_add(name_len)?;
        let name = self.bytes.get(self.data_at..name_end)?;
        let value_at = name_end.checked_add(1)?;
        let value_end = value_at.checked_add(value_len)?;
        let value = self.bytes.get(value_at..value_end)?;
        self.data_at = value_end.checked_add(1)?;
        Some((name, value))
    }
}

fn word(bytes: &[u8], at: usize) -> Option<usize> {
    let four: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(four)).ok()
}

impl RequestHeaders for HeaderSnapshot {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.pairs()
            .find(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    fn header_values(&self, name: &str) -> Vec<&[u8]> {
        self.pairs()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
            .collect()
    }
}

/// Test and tooling helper: headers from a list of `(name, value)` pairs, names compared
/// case-insensitively; `header` returns the first pair with a name, as in Envoy's map.
#[derive(Debug, Default, Clone)]
pub struct HeaderList(pub Vec<(String, Vec<u8>)>);

impl HeaderList {
    pub fn with(mut self, name: &str, value: impl AsRef<[u8]>) -> HeaderList {
        self.0.push((name.to_string(), value.as_ref().to_vec()));
        self
    }
}

impl RequestHeaders for HeaderList {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    fn header_values(&self, name: &str) -> Vec<&[u8]> {
        self.0
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
            .collect()
    }
}

#[cfg(test)]
mod tests;
