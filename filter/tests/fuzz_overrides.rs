//! Fuzz target: override handling (contract 3.3). With a token configured, a request is
//! overridden exactly when it names a version and carries the exact token in
//! `x-canary-override-token`; near misses (one byte off, a prefix, one byte more, other case)
//! never count. `constant_time_eq` agrees with `==` on every pair.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fuzz_common;

use fuzz_common::{fuzz, header_bytes};
use proptest::prelude::*;
use serde_json::json;
use stickycanary_filter::decision::{decide, Decision, Source, Version};
use stickycanary_filter::headers::HeaderList;
use stickycanary_filter::identity::{cookie_value, IdMinter};
use stickycanary_filter::matching::CompiledConfig;
use stickycanary_filter::overrides::constant_time_eq;

#[test]
fn fuzz_constant_time_eq_is_equality() {
    let near = (header_bytes(40), 0usize..4, any::<u8>()).prop_map(|(a, how, byte)| {
        let mut b = a.clone();
        match how {
            0 => {}
            1 => {
                if let Some(last) = b.last_mut() {
                    *last ^= byte | 1;
                }
            }
            2 => {
                b.pop();
            }
            _ => b.push(byte),
        }
        (a, b)
    });
    fuzz("override/constant_time_eq", near, |(a, b)| {
        prop_assert_eq!(constant_time_eq(&a, &b), a == b);
        prop_assert_eq!(constant_time_eq(&b, &a), a == b);
        Ok(())
    });
}

/// What a tester (or an attacker) might send as the token, relative to the real one.
fn presented(token: &str) -> impl Strategy<Value = Option<Vec<u8>>> {
    let t = token.as_bytes().to_vec();
    let (t1, t2, t3, t4, t5) = (t.clone(), t.clone(), t.clone(), t.clone(), t.clone());
    prop_oneof![
        Just(None),
        Just(Some(t1)),
        Just(Some({
            let mut x = t2;
            let last = x.len() - 1;
            x[last] ^= 1;
            x
        })),
        Just(Some(t3[..t3.len() - 1].to_vec())),
        Just(Some([t4.as_slice(), b"0"].concat())),
        Just(Some(t5.to_ascii_uppercase())),
        Just(Some([b" ", t.as_slice(), b" "].concat())),
        header_bytes(30).prop_map(Some),
    ]
}

fn override_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        prop::sample::select(vec![
            "canary", "stable", " canary ", "CANARY", "can", "beta", ""
        ])
        .prop_map(|s| Some(s.as_bytes().to_vec())),
        header_bytes(10).prop_map(Some),
    ]
}

#[test]
fn fuzz_overrides_need_the_exact_token() {
    let token = "tOk-3f9a";
    let config = CompiledConfig::from_json(
        json!({"rollouts": {"checkout": {
            "hosts": ["checkout"], "weight": 50, "canaryVersion": "beta",
            "override": {"token": token}
        }}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let inputs = (
        override_value(),
        override_value(),
        presented(token),
        header_bytes(16),
    );
    fuzz(
        "override/token",
        inputs,
        |(header, cookie, token_header, user)| {
            let mut headers = HeaderList::default()
                .with(":authority", "checkout")
                .with(":path", "/")
                .with("x-user-id", &user);
            if let Some(v) = &header {
                headers = headers.with("x-canary-override", v);
            }
            let cookie_line = cookie
                .as_ref()
                .map(|v| [b"stickycanary-override=", v.as_slice()].concat());
            if let Some(c) = &cookie_line {
                headers = headers.with("cookie", c);
            }
            if let Some(t) = &token_header {
                headers = headers.with("x-canary-override-token", t);
            }
            let Decision::Route(routed) = decide(&config, &headers, &IdMinter::new(1)) else {
                return Err(TestCaseError::fail("a matching request passed through"));
            };
            // The override value the filter reads: the header, else the cookie.
            let asked = header.clone().or_else(|| {
                cookie_line
                    .as_ref()
                    .and_then(|c| cookie_value(c, "stickycanary-override").map(<[u8]>::to_vec))
            });
            let wanted = match asked.as_deref().map(<[u8]>::trim_ascii) {
                Some(b"stable") => Some(Version::Stable),
                Some(b"beta") => Some(Version::Canary),
                _ => None,
            };
            let token_ok = token_header
                .as_deref()
                .is_some_and(|t| t.trim_ascii() == token.as_bytes());
            match (wanted, token_ok) {
                (Some(version), true) => {
                    prop_assert_eq!(routed.source, Source::Override);
                    prop_assert_eq!(routed.version, version);
                }
                _ => prop_assert_eq!(routed.source, Source::Hash),
            }
            Ok(())
        },
    );
}

#[test]
fn regressions() {
    assert!(constant_time_eq(b"", b""));
    assert!(!constant_time_eq(b"", b"\0"));
    assert!(!constant_time_eq(b"a\0", b"a"));
}
