//! A minimal blocking HTTP/1.1 client and server-side request reader.
//!
//! Just enough for the harness: keep-alive, `content-length` and `chunked` bodies, case-insensitive
//! header lookup. Every read and write has a timeout so nothing can hang a test.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::{Error, Result};

pub type Headers = Vec<(String, String)>;

/// Case-insensitive lookup of the first value of `name`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of `name`, in order.
pub fn header_all<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_all(&self.headers, name)
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_all(&self.headers, name)
    }
    /// Whether the client asked to close the connection after this request.
    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

fn io_err(what: &str, e: std::io::Error) -> Error {
    Error::Http(format!("{what}: {e}"))
}

/// Read one CRLF-terminated line without the line ending. `Ok(None)` on a clean EOF.
fn read_line(reader: &mut impl BufRead) -> Result<Option<String>> {
    let mut buf = Vec::new();
    let n = reader
        .read_until(b'\n', &mut buf)
        .map_err(|e| io_err("read", e))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(Error::Http("connection closed mid-line".into()));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn read_headers(reader: &mut impl BufRead) -> Result<Headers> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?
            .ok_or_else(|| Error::Http("connection closed inside headers".into()))?;
        if line.is_empty() {
            return Ok(headers);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| Error::Http(format!("malformed header line {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
        if headers.len() > 200 {
            return Err(Error::Http("more than 200 headers".into()));
        }
    }
}

/// Read a body framed by `headers`. `None` framing (no length, not chunked) means "read to EOF"
/// only when `until_eof` is set (responses); requests without framing have no body.
fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    until_eof: bool,
) -> Result<Vec<u8>> {
    let chunked = header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        loop {
            let size_line = read_line(reader)?
                .ok_or_else(|| Error::Http("connection closed in chunked body".into()))?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| Error::Http(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while let Some(line) = read_line(reader)? {
                    if line.is_empty() {
                        break;
                    }
                }
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader
                .read_exact(&mut body[start..])
                .map_err(|e| io_err("read chunk", e))?;
            read_line(reader)?;
        }
    }
    if let Some(len) = header(headers, "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| Error::Http(format!("bad content-length {len:?}")))?;
        let mut body = vec![0; len];
        reader
            .read_exact(&mut body)
            .map_err(|e| io_err("read body", e))?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if until_eof {
        reader
            .read_to_end(&mut body)
            .map_err(|e| io_err("read body to eof", e))?;
    }
    Ok(body)
}

/// Read one request from a server-side connection. `Ok(None)` when the client closed cleanly.
pub fn read_request(reader: &mut impl BufRead) -> Result<Option<Request>> {
    let line = match read_line(reader)? {
        Some(line) if line.is_empty() => match read_line(reader)? {
            Some(line) => line,
            None => return Ok(None),
        },
        Some(line) => line,
        None => return Ok(None),
    };
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(Error::Http(format!("malformed request line {line:?}")));
    };
    let (method, path) = (method.to_string(), path.to_string());
    let headers = read_headers(reader)?;
    let body = read_body(reader, &headers, false)?;
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

/// Serialize a response with a `content-length` body.
pub fn write_response(
    writer: &mut impl Write,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    out.push_str(&format!("content-length: {}\r\n", body.len()));
    if close {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    writer.write_all(&bytes)?;
    writer.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A keep-alive HTTP/1.1 client for one address. It reconnects lazily after the server closes.
pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    pub fn new(addr: SocketAddr, timeout: Duration) -> Self {
        Self {
            addr,
            timeout,
            conn: None,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn connect(&self) -> Result<BufReader<TcpStream>> {
        let stream = TcpStream::connect_timeout(&self.addr, self.timeout)
            .map_err(|e| io_err(&format!("connect {}", self.addr), e))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|_| stream.set_write_timeout(Some(self.timeout)))
            .and_then(|_| stream.set_nodelay(true))
            .map_err(|e| io_err("socket options", e))?;
        Ok(BufReader::new(stream))
    }

    /// Send one request and read the response. No retries: a failure is reported as it happened
    /// (and the connection is dropped so the next request starts fresh).
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        let result = self.send_inner(method, path, headers, body);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn send_inner(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(Error::Http("no connection".into()));
        };
        let mut out = format!("{method} {path} HTTP/1.1\r\n");
        let mut has_host = false;
        for (k, v) in headers {
            has_host |= k.eq_ignore_ascii_case("host");
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if !has_host {
            out.push_str(&format!("host: {}\r\n", self.addr));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            out.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        conn.get_mut()
            .write_all(&bytes)
            .map_err(|e| io_err("write request", e))?;

        let status_line = read_line(conn)?
            .ok_or_else(|| Error::Http("connection closed before the response".into()))?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Http(format!("malformed status line {status_line:?}")))?;
        let headers = read_headers(conn)?;
        let no_body =
            method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
        let body = if no_body {
            Vec::new()
        } else {
            read_body(conn, &headers, true)?
        };
        let close = header(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || (header(&headers, "content-length").is_none()
                && header(&headers, "transfer-encoding").is_none()
                && !no_body);
        if close {
            self.conn = None;
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
        self.send("GET", path, headers, &[])
    }
}

/// One request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response> {
    Client::new(addr, timeout).send(method, path, headers, body)
}

/// `GET` on a fresh connection with a 10 s timeout.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
    request(addr, "GET", path, headers, &[], Duration::from_secs(10))
}

/// Percent-encode a query-string component (RFC 3986 unreserved characters pass through).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
