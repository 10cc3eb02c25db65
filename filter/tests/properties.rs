//! Property tests: no input can make the pure filter logic panic, and the assignment
//! keeps its promises (monotone in the weight, a new salt draws a new cohort).
//! Case counts are fixed per block so the report can state how many ran.

use proptest::prelude::*;
use serde_json::{json, Value};
use stickycanary_filter::assign::{bucket, is_canary};
use stickycanary_filter::config::{validate_label, PluginConfig};
use stickycanary_filter::decision::{decide, Decision, Version};
use stickycanary_filter::headers::HeaderList;
use stickycanary_filter::identity::{cookie_value, IdMinter};
use stickycanary_filter::matching::{normalize_host, CompiledConfig};

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9*.;=:/ -]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("rollouts"),
            Just("hosts"),
            Just("weight"),
            Just("identity"),
            Just("header"),
            Just("cookie"),
            Just("anonymous"),
            Just("override"),
            Just("token"),
            Just("assign")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("rollouts".to_string()),
                    Just("hosts".to_string()),
                    Just("weight".to_string()),
                    Just("identity".to_string()),
                    Just("anonymous".to_string()),
                    Just("override".to_string()),
                    Just("routeHeader".to_string()),
                    Just("salt".to_string()),
                    "[a-z0-9-]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A syntactically plausible config whose fields are drawn from good and bad values.
fn plausible_config() -> impl Strategy<Value = (Value, bool)> {
    let names = prop_oneof![
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?",
        "[A-Za-z0-9_;.=-]{0,12}"
    ];
    let weights = prop_oneof![0.0..=100.0f64, any::<f64>(), -1e3..1e3f64];
    let hosts = prop::collection::vec("(\\*\\.)?[a-z0-9.-]{1,12}", 0..3);
    (names, weights, hosts, any::<bool>()).prop_map(|(name, weight, hosts, expose)| {
        let finite = weight.is_finite();
        let config = json!({
            "exposeVersionHeader": expose,
            "rollouts": { name.clone(): { "hosts": hosts.clone(), "weight": if finite { json!(weight) } else { json!(null) } } }
        });
        let host_ok = |h: &String| {
            let bare = h.strip_prefix("*.").unwrap_or(h);
            !bare.is_empty() && !bare.contains('*')
        };
        let valid = validate_label(&name).is_ok()
            && finite
            && (0.0..=100.0).contains(&weight)
            && !hosts.is_empty()
            && hosts.iter().all(host_ok);
        (config, valid)
    })
}

fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        "[ -~]{0,40}".prop_map(String::into_bytes),
        "(u[0-9]{1,4}|checkout|stable|canary|session=[a-z0-9]{0,6}; ?)*"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_the_config_parser(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = PluginConfig::from_json(&bytes);
        let _ = CompiledConfig::from_json(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics_and_errors_stay_one_line(value in arbitrary_json()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        if let Err(err) = PluginConfig::from_json(&bytes) {
            let message = err.to_string();
            prop_assert!(!message.contains('\n'), "{}", message);
            prop_assert!(message.contains(": "), "{}", message);
        }
    }

    #[test]
    fn a_config_is_accepted_exactly_when_it_follows_contract_1((config, valid) in plausible_config()) {
        let bytes = serde_json::to_vec(&config).unwrap();
        let result = PluginConfig::from_json(&bytes);
        prop_assert_eq!(result.is_ok(), valid, "{} -> {:?}", config, result);
    }

    #[test]
    fn arbitrary_cookie_headers_never_panic(header in header_bytes(), name in "[a-z-]{1,10}") {
        if let Some(value) = cookie_value(&header, &name) {
            prop_assert!(value.len() <= header.len());
        }
    }

    #[test]
    fn a_cookie_is_found_wherever_it_sits(
        before in prop::collection::vec("[a-z]{1,6}=[a-zA-Z0-9]{0,6}", 0..4),
        after in prop::collection::vec("[a-z]{1,6}=[a-zA-Z0-9]{0,6}", 0..4),
        value in "[a-zA-Z0-9._-]{1,30}",
    ) {
        let before: Vec<_> = before.into_iter().filter(|pair| !pair.starts_with("sid=")).collect();
        let mut pairs = before.clone();
        pairs.push(format!("sid={value}"));
        pairs.extend(after);
        let header = pairs.join("; ");
        prop_assert_eq!(cookie_value(header.as_bytes(), "sid"), Some(value.as_bytes()));
    }

    #[test]
    fn host_normalisation_never_panics(authority in header_bytes()) {
        let host = normalize_host(&authority);
        prop_assert!(host.len() <= authority.len());
        prop_assert!(!host.iter().any(u8::is_ascii_uppercase));
    }

    #[test]
    fn raising_the_weight_never_moves_a_user_back_to_stable(
        salt in ".{0,16}", user in ".{0,24}", low in 0.0..=100.0f64, high in 0.0..=100.0f64,
    ) {
        let (low, high) = if low <= high { (low, high) } else { (high, low) };
        let user_bucket = bucket(&salt, &user);
        prop_assert!(user_bucket < 10_000);
        prop_assert!(!is_canary(user_bucket, low) || is_canary(user_bucket, high));
    }
}

#[allow(clippy::unwrap_used)] // a fixture: a bad literal should fail the test loudly
fn decision_config() -> CompiledConfig {
    CompiledConfig::from_json(
        br#"{"exposeVersionHeader":true,"rollouts":{
          "checkout":{"hosts":["checkout","*.shop.example.com"],"weight":50,
            "identity":[{"header":"x-user-id"},{"cookie":"session"}],"override":{"token":"t"}},
          "search":{"hosts":["search"],"pathPrefix":"/api","weight":10,"anonymous":{"assign":"stable"}}}}"#,
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_request_headers_never_panic_the_decision(
        authority in prop_oneof![Just(b"checkout".to_vec()), Just(b"A.Shop.Example.com:80".to_vec()), Just(b"search".to_vec()), header_bytes()],
        path in header_bytes(),
        user in header_bytes(),
        cookie in header_bytes(),
        override_value in header_bytes(),
        token in header_bytes(),
        request_id in header_bytes(),
    ) {
        let config = decision_config();
        let headers = HeaderList::default()
            .with(":authority", &authority)
            .with(":path", &path)
            .with("x-user-id", &user)
            .with("cookie", &cookie)
            .with("x-canary-override", &override_value)
            .with("x-canary-override-token", &token)
            .with("x-request-id", &request_id);
        if let Decision::Route(routed) = decide(&config, &headers, &IdMinter::new(3)) {
            prop_assert!(routed.rollout < config.rollouts.len());
            if let Some(set_cookie) = routed.set_cookie {
                // No client bytes can inject attributes or break the header.
                let (pair, attributes) = set_cookie.split_once("; ").unwrap();
                let id = pair.strip_prefix("stickycanary-id=").unwrap();
                prop_assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{}", set_cookie);
                prop_assert_eq!(attributes, "Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax");
            }
        }
    }

    #[test]
    fn a_routed_user_keeps_their_version_when_the_weight_rises(user in "[ -~]{1,24}", low in 0.0..=100.0f64, high in 0.0..=100.0f64) {
        let (low, high) = if low <= high { (low, high) } else { (high, low) };
        let version_at = |weight: f64| {
            let config = CompiledConfig::from_json(
                format!(r#"{{"rollouts":{{"r":{{"hosts":["h"],"weight":{weight}}}}}}}"#).as_bytes(),
            ).unwrap();
            let headers = HeaderList::default().with(":authority", "h").with(":path", "/").with("x-user-id", &user);
            match decide(&config, &headers, &IdMinter::new(0)) {
                Decision::Route(routed) => Some(routed.version),
                Decision::PassThrough => None,
            }
        };
        let before = version_at(low);
        prop_assume!(before.is_some() && !user.trim().is_empty());
        if before == Some(Version::Canary) {
            prop_assert_eq!(version_at(high), Some(Version::Canary));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_new_salt_draws_a_new_cohort(first in "[a-z0-9-]{1,20}", second in "[a-z0-9-]{1,20}") {
        prop_assume!(first != second);
        let users = 1000;
        let same = (0..users)
            .filter(|n| {
                let user = format!("user-{n}");
                is_canary(bucket(&first, &user), 50.0) == is_canary(bucket(&second, &user), 50.0)
            })
            .count();
        // Independent cohorts agree on about half of the users (binomial, sd ≈ 16).
        prop_assert!((400..=600).contains(&same), "{} of {} kept their version", same, users);
    }
}
