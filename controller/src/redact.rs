//! Addresses without their credentials.

/// `url` without its userinfo: `http://user:secret@prom:9090/x` → `http://prom:9090/x`.
/// Every address that reaches a log line, an Event, a reason or a status file goes through
/// this, so credentials put in the address are used but never echoed.
pub fn redacted(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(scheme_end) => url.split_at(scheme_end + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_lose_their_userinfo_and_nothing_else() {
        assert_eq!(
            redacted("http://user:s3cret@prom.monitoring:9090/prefix?x=1"),
            "http://prom.monitoring:9090/prefix?x=1"
        );
        assert_eq!(redacted("https://tok@prom/"), "https://prom/");
        assert_eq!(
            redacted("http://127.0.0.1:9090/a@b"),
            "http://127.0.0.1:9090/a@b",
            "an @ in the path is not userinfo"
        );
        assert_eq!(redacted("http://a:b@c@host:1"), "http://host:1");
        assert_eq!(redacted("not a url"), "not a url");
        assert_eq!(redacted("user:pw@prom:9090/x"), "prom:9090/x", "no scheme");
    }
}
