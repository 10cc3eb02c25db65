//! Fuzz target: host and path matching. Random configs (exact, wildcard, IPv6 hosts, several
//! path prefixes) against random `:authority` / `:path` values: `find_rollout`, and `rollout_for`
//! (which remembers the last host), never panic and
//! agrees with a brute-force reading of contract 1 written here (exact beats wildcard, then the
//! longest `pathPrefix`, then the more specific wildcard, then rollout-name order).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fuzz_common;

use fuzz_common::{fuzz, header_bytes};
use proptest::prelude::*;
use serde_json::json;
use stickycanary_filter::matching::CompiledConfig;

const LABELS: [&str; 6] = ["a", "b", "checkout", "shop", "example", "com"];
const PREFIXES: [&str; 5] = ["/", "/api", "/api/v2", "/a", "/b/"];

fn host_name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(LABELS.to_vec()), 1..4).prop_map(|l| l.join("."))
}

fn config_host() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => host_name(),
        3 => host_name().prop_map(|h| format!("*.{h}")),
        1 => host_name().prop_map(|h| h.to_ascii_uppercase()),
        1 => host_name().prop_map(|h| format!("{h}.")),
        1 => Just("[::1]".to_string()),
    ]
}

type Rollouts = Vec<(Vec<String>, String)>;

fn rollouts() -> impl Strategy<Value = Rollouts> {
    prop::collection::vec(
        (
            prop::collection::vec(config_host(), 1..4),
            prop::sample::select(PREFIXES.to_vec()).prop_map(str::to_string),
        ),
        1..5,
    )
}

fn authority() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => (host_name(), any::<bool>(), any::<bool>(), prop::option::of(0u16..70)).prop_map(
            |(host, upper, dot, port)| {
                let mut a = if upper { host.to_ascii_uppercase() } else { host };
                if dot {
                    a.push('.');
                }
                if let Some(p) = port {
                    a.push_str(&format!(":{p}"));
                }
                a.into_bytes()
            }
        ),
        1 => prop::sample::select(vec!["[::1]", "[::1]:80", "::1", "[::1", " checkout ", "a..", ".com"])
            .prop_map(|s| s.as_bytes().to_vec()),
        2 => header_bytes(24),
    ]
}

fn path() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(vec!["/", "/api", "/api/v2/x", "/a", "/b", "/b/c", "", "api"])
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => header_bytes(12),
    ]
}

/// Contract 1 read literally: normalise (trim, drop a port, one trailing dot, lower-case).
fn normalise(authority: &[u8]) -> Vec<u8> {
    let a = authority.trim_ascii();
    let host: &[u8] = if a.starts_with(b"[") {
        match a.iter().position(|b| *b == b']') {
            Some(end) => &a[..=end],
            None => a,
        }
    } else if a.iter().filter(|b| **b == b':').count() == 1 {
        &a[..a.iter().position(|b| *b == b':').unwrap()]
    } else {
        a
    };
    host.strip_suffix(b".").unwrap_or(host).to_ascii_lowercase()
}

/// Brute force over every (rollout, host) pair. Rollout names are `r0..`, so index = name order.
fn expected(rollouts: &Rollouts, authority: &[u8], path: &[u8]) -> Option<usize> {
    let host = normalise(authority);
    let mut exact: Option<(usize, usize)> = None; // (prefix len, index)
    let mut wildcard: Option<(usize, usize, usize)> = None; // (prefix len, suffix len, index)
    for (index, (hosts, prefix)) in rollouts.iter().enumerate() {
        if !path.starts_with(prefix.as_bytes()) {
            continue;
        }
        for h in hosts {
            match h.strip_prefix("*.") {
                None => {
                    if normalise(h.as_bytes()) == host
                        && exact.is_none_or(|(len, _)| prefix.len() > len)
                    {
                        exact = Some((prefix.len(), index));
                    }
                }
                Some(suffix) => {
                    let mut dotted = b".".to_vec();
                    dotted.extend(normalise(suffix.as_bytes()));
                    if host.len() > dotted.len() && host.ends_with(&dotted) {
                        let key = (prefix.len(), dotted.len(), index);
                        let better = wildcard.is_none_or(|(p, s, i)| {
                            (key.0, key.1) > (p, s) || ((key.0, key.1) == (p, s) && index < i)
                        });
                        if better {
                            wildcard = Some(key);
                        }
                    }
                }
            }
        }
    }
    exact.map(|(_, i)| i).or(wildcard.map(|(_, _, i)| i))
}

#[test]
fn fuzz_matching_against_the_contract() {
    let inputs = (
        rollouts(),
        prop::collection::vec((authority(), path()), 1..8),
    );
    fuzz("matching", inputs, |(rollouts, requests)| {
        let mut map = serde_json::Map::new();
        for (index, (hosts, prefix)) in rollouts.iter().enumerate() {
            map.insert(
                format!("r{index}"),
                json!({"hosts": hosts, "pathPrefix": prefix, "weight": 50}),
            );
        }
        let text = json!({ "rollouts": map }).to_string();
        let config = CompiledConfig::from_json(text.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("generated config rejected: {e}")))?;
        // Each request twice in a row (the second answer comes from `rollout_for`'s memory
        // of the last host), and the sequence through one config, as a proxy sees them.
        for (authority, path) in requests.iter().flat_map(|request| [request, request]) {
            let want = expected(&rollouts, authority, path);
            for (how, got) in [
                ("find_rollout", config.find_rollout(authority, path)),
                ("rollout_for", config.rollout_for(authority, path)),
            ] {
                prop_assert_eq!(
                    got,
                    want,
                    "{} authority {:?} path {:?}",
                    how,
                    String::from_utf8_lossy(authority),
                    String::from_utf8_lossy(path)
                );
            }
        }
        Ok(())
    });
}

#[test]
fn regressions() {
    let rollouts: Rollouts = vec![
        (vec!["*.com".into()], "/".into()),
        (vec!["a.com".into()], "/api".into()),
    ];
    for (authority, path) in [
        (&b"a.com"[..], &b"/"[..]),
        (b"A.COM.:80", b"/api"),
        (b".com", b"/"),
        (b"[::1]", b"/"),
        (b"", b""),
    ] {
        let config = CompiledConfig::from_json(
            json!({"rollouts": {"r0": {"hosts": ["*.com"], "weight": 1},
                                "r1": {"hosts": ["a.com"], "pathPrefix": "/api", "weight": 1}}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            config.find_rollout(authority, path),
            expected(&rollouts, authority, path)
        );
    }
}
