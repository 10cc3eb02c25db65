//! How the pure logic reads a request: one small trait, implemented by the proxy-wasm
//! glue with one hostcall per header, and by a map in tests.

use std::cell::OnceCell;

use crate::identity::cookie_value;

/// Read access to request headers. Names are lower-case; values are raw bytes because
/// a header value need not be UTF-8.
pub trait RequestHeaders {
    fn header(&self, name: &str) -> Option<Vec<u8>>;
}

/// A request as the decision sees it: headers fetched on demand, and the `cookie`
/// header fetched at most once however many cookie lookups follow.
pub struct RequestView<'h> {
    headers: &'h dyn RequestHeaders,
    cookie_header: OnceCell<Option<Vec<u8>>>,
}

impl<'h> RequestView<'h> {
    pub fn new(headers: &'h dyn RequestHeaders) -> RequestView<'h> {
        RequestView {
            headers,
            cookie_header: OnceCell::new(),
        }
    }

    pub fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.headers.header(name)
    }

    pub fn cookie(&self, name: &str) -> Option<Vec<u8>> {
        let header = self
            .cookie_header
            .get_or_init(|| self.headers.header("cookie"))
            .as_deref()?;
        cookie_value(header, name).map(<[u8]>::to_vec)
    }
}

/// Test and tooling helper: headers from a list of `(name, value)` pairs; the first
/// pair with a name (compared case-insensitively) wins, as in Envoy's map.
#[derive(Debug, Default, Clone)]
pub struct HeaderList(pub Vec<(String, Vec<u8>)>);

impl HeaderList {
    pub fn with(mut self, name: &str, value: impl AsRef<[u8]>) -> HeaderList {
        self.0.push((name.to_string(), value.as_ref().to_vec()));
        self
    }
}

impl RequestHeaders for HeaderList {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    }
}
