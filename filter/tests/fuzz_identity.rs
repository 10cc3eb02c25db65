//! Fuzz target: cookie and identity parsing (contract 3.1 and 3.2). Arbitrary `Cookie` headers
//! never panic the parser and a found value is always a `;`-free slice of the header; headers
//! built from known pairs give the first pair's value; the user the decision hashes is the
//! first non-empty identity source; minted anonymous ids are cookie-safe whatever the client
//! sent as `x-request-id`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fuzz_common;

use fuzz_common::{fuzz, header_bytes};
use proptest::prelude::*;
use serde_json::json;
use stickycanary_filter::assign;
use stickycanary_filter::decision::{decide, Decision, Source, Version};
use stickycanary_filter::headers::{HeaderList, HeaderSnapshot, RequestHeaders};
use stickycanary_filter::identity::{cookie_value, IdMinter};
use stickycanary_filter::matching::CompiledConfig;

fn is_subslice(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

#[test]
fn fuzz_cookie_header_bytes() {
    let name = prop::sample::select(vec!["session", "s", "a", "stickycanary-id"]);
    fuzz(
        "cookie/bytes",
        (header_bytes(300), name),
        |(header, name)| {
            if let Some(value) = cookie_value(&header, name) {
                prop_assert!(value.is_empty() || is_subslice(&header, value));
                prop_assert!(!value.contains(&b';'));
            }
            Ok(())
        },
    );
}

/// A cookie value without `;` and without surrounding blanks (what a browser sends).
fn cookie_text() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(b"abcXYZ019-_=\"%.,/".to_vec()),
            1 => 0x80u8..=0xff,
        ],
        0..40,
    )
    .prop_map(|v| v.trim_ascii().to_vec())
}

#[test]
fn fuzz_cookie_pairs_first_exact_name_wins() {
    let names = prop::sample::select(vec!["session", "sess", "Session", "x", "session2"]);
    let pairs = prop::collection::vec((names, cookie_text(), any::<bool>()), 0..8);
    fuzz("cookie/pairs", pairs, |pairs| {
        let header: Vec<u8> = pairs
            .iter()
            .map(|(name, value, spaced)| {
                let mut pair = name.as_bytes().to_vec();
                pair.extend_from_slice(if *spaced { b" = " } else { b"=" });
                pair.extend_from_slice(value);
                pair
            })
            .collect::<Vec<_>>()
            .join(&b"; "[..]);
        // Envoy's rule: `session = v` names the cookie `session ` (only leading spaces are
        // dropped from a name), so spaced pairs never match.
        let want = pairs
            .iter()
            .find(|(name, _, spaced)| *name == "session" && !*spaced)
            .map(|(_, v, _)| match v.as_slice() {
                [b'"', inner @ .., b'"'] => inner.to_vec(),
                other => other.to_vec(),
            });
        prop_assert_eq!(cookie_value(&header, "session").map(<[u8]>::to_vec), want);
        Ok(())
    });
}

#[test]
fn fuzz_header_snapshot_bytes_never_panic() {
    // The proxy's serialized header map, as the filter reads it in one hostcall: whatever
    // the bytes, lookups end without a panic and only return slices of the buffer.
    fuzz(
        "headers/snapshot-bytes",
        prop::collection::vec(any::<u8>(), 0..200),
        |bytes| {
            let snapshot = HeaderSnapshot::new(bytes.clone());
            prop_assert!(snapshot.pairs().count() <= bytes.len() / 10);
            for name in [":authority", "cookie", ""] {
                let _ = snapshot.header(name);
                let _ = snapshot.header_values(name);
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_header_snapshot_round_trips_any_pairs() {
    let pairs = prop::collection::vec((header_bytes(20), header_bytes(60)), 0..12);
    fuzz("headers/snapshot-pairs", pairs, |pairs| {
        let snapshot = HeaderSnapshot::new(HeaderSnapshot::serialize(&pairs));
        let read: Vec<(Vec<u8>, Vec<u8>)> = snapshot
            .pairs()
            .map(|(name, value)| (name.to_vec(), value.to_vec()))
            .collect();
        prop_assert_eq!(read, pairs);
        Ok(())
    });
}

fn config() -> CompiledConfig {
    CompiledConfig::from_json(
        json!({"rollouts": {"checkout": {
            "hosts": ["checkout"], "weight": 37.5, "salt": "fz",
            "identity": [{"header": "x-user-id"}, {"cookie": "session"}, {"header": "x-alt"}]
        }}})
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

fn hashed(user: &[u8]) -> Version {
    if assign::bucket_bytes("fz", user) < assign::threshold(37.5) {
        Version::Canary
    } else {
        Version::Stable
    }
}

#[test]
fn fuzz_identity_is_the_first_non_empty_source() {
    let value = || {
        prop_oneof![
            2 => Just(None),
            1 => Just(Some(b"  ".to_vec())),
            4 => header_bytes(40).prop_map(Some),
        ]
    };
    let inputs = (value(), value(), value(), header_bytes(64));
    let config = config();
    fuzz(
        "identity",
        inputs,
        |(user_header, session, alt, request_id)| {
            let mut headers = HeaderList::default()
                .with(":authority", "checkout")
                .with(":path", "/")
                .with("x-request-id", &request_id);
            if let Some(v) = &user_header {
                headers = headers.with("x-user-id", v);
            }
            if let Some(v) = &session {
                let mut c = b"session=".to_vec();
                c.extend_from_slice(v);
                headers = headers.with("cookie", c);
            }
            if let Some(v) = &alt {
                headers = headers.with("x-alt", v);
            }
            let Decision::Route(routed) = decide(&config, &headers, &IdMinter::new(7)) else {
                return Err(TestCaseError::fail("a matching request passed through"));
            };
            prop_assert_eq!(routed.source, Source::Hash);
            let session_value = session.as_ref().and_then(|v| {
                let mut c = b"session=".to_vec();
                c.extend_from_slice(v);
                cookie_value(&c, "session").map(<[u8]>::to_vec)
            });
            let first = [user_header.clone(), session_value, alt.clone()]
                .into_iter()
                .flatten()
                .map(|v| v.trim_ascii().to_vec())
                .find(|v| !v.is_empty());
            match first {
                Some(user) => {
                    prop_assert!(routed.set_cookie.is_none());
                    prop_assert_eq!(routed.version, hashed(&user));
                }
                None => {
                    let cookie = routed.set_cookie.clone().unwrap();
                    let id = cookie
                        .strip_prefix("stickycanary-id=")
                        .and_then(|rest| rest.split(';').next())
                        .unwrap();
                    prop_assert!(!id.is_empty() && id.len() <= 64, "{cookie}");
                    prop_assert!(
                        id.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                        "client bytes reached Set-Cookie: {cookie}"
                    );
                    prop_assert!(
                        cookie.ends_with("; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax")
                    );
                    prop_assert_eq!(routed.version, hashed(id.as_bytes()));
                }
            }
            Ok(())
        },
    );
}

#[test]
fn regressions() {
    for header in [
        &b""[..],
        b"=",
        b";",
        b"session",
        b"session=\"",
        b"\"session\"=x",
        b"session=\xff\xfe",
    ] {
        let _ = cookie_value(header, "session");
    }
    assert_eq!(cookie_value(b"session=\"", "session"), Some(&b"\""[..]));
    assert_eq!(cookie_value(b"session=\"\"", "session"), Some(&b""[..]));
}
