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
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans()
            .map_while(|span| Some((self.bytes.get(span.name())?, self.bytes.get(span.value())?)))
    }

    /// Whether `span` is named `name`: a name of another length is skipped without reading
    /// it, so a lookup costs little more than walking the length table.
    fn is_named(&self, span: &Span, name: &str) -> bool {
        span.name_len == name.len()
            && self
                .bytes
                .get(span.name())
                .is_some_and(|key| key.eq_ignore_ascii_case(name.as_bytes()))
    }

    fn spans(&self) -> Spans<'_> {
        let count = word(&self.bytes, 0).unwrap_or(0);
        // Each pair needs 8 bytes of lengths and 2 NULs: a count beyond that is a lie.
        let count = count.min(self.bytes.len() / 10);
        Spans {
            bytes: &self.bytes,
            remaining: count,
            sizes_at: 4,
            data_at: 4 + count * 8,
        }
    }
}

/// Where one pair lies in a [`HeaderSnapshot`]'s buffer; always within it.
struct Span {
    name_at: usize,
    name_len: usize,
    value_len: usize,
}

impl Span {
    fn name(&self) -> std::ops::Range<usize> {
        self.name_at..self.name_at + self.name_len
    }
    fn value(&self) -> std::ops::Range<usize> {
        let value_at = self.name_at + self.name_len + 1;
        value_at..value_at + self.value_len
    }
}

/// Iterator over a [`HeaderSnapshot`]'s pairs as [`Span`]s; ends at the first pair that
/// does not fit the buffer.
struct Spans<'a> {
    bytes: &'a [u8],
    remaining: usize,
    sizes_at: usize,
    data_at: usize,
}

impl Iterator for Spans<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let name_len = word(self.bytes, self.sizes_at)?;
        let value_len = word(self.bytes, self.sizes_at + 4)?;
        self.sizes_at += 8;
        let name_at = self.data_at;
        // name, NUL, value, NUL
        let end = name_at
            .checked_add(name_len)?
            .checked_add(value_len)?
            .checked_add(2)?;
        if end > self.bytes.len() {
            self.remaining = 0;
            return None;
        }
        self.data_at = end;
        Some(Span {
            name_at,
            name_len,
            value_len,
        })
    }
}

fn word(bytes: &[u8], at: usize) -> Option<usize> {
    let four: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(four)).ok()
}

impl RequestHeaders for HeaderSnapshot {
    fn header(&self, name: &str) -> Option<&[u8]> {
        let span = self.spans().find(|span| self.is_named(span, name))?;
        self.bytes.get(span.value())
    }

    fn header_values(&self, name: &str) -> Vec<&[u8]> {
        self.spans()
            .filter(|span| self.is_named(span, name))
            .map_while(|span| self.bytes.get(span.value()))
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
