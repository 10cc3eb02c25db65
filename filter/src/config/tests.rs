use super::*;

fn parse(json: &str) -> Result<PluginConfig, ConfigError> {
    PluginConfig::from_json(json.as_bytes())
}

fn error_of(json: &str) -> String {
    match parse(json) {
        Ok(config) => panic!("expected a rejection, got {config:?}"),
        Err(err) => err.to_string(),
    }
}

/// A minimal valid rollout with one field replaced by `field_json` (`"key": value`).
fn rollout_with(field_json: &str) -> String {
    format!(
        r#"{{"rollouts":{{"checkout":{{"hosts":["checkout"],"weight":10{sep}{field_json}}}}}}}"#,
        sep = if field_json.is_empty() { "" } else { "," }
    )
}

#[test]
fn the_documented_example_parses() {
    let config = parse(
        r#"{
      "routeHeader": "x-canary-version",
      "exposeVersionHeader": true,
      "rollouts": {
        "checkout": {
          "hosts": ["checkout", "checkout.shop.svc.cluster.local", "*.shop.example.com"],
          "pathPrefix": "/",
          "weight": 10,
          "salt": "checkout-2026-11-26",
          "stableVersion": "stable",
          "canaryVersion": "canary",
          "identity": [{"header": "x-user-id"}, {"cookie": "session"}],
          "anonymous": {"assign": "cookie", "cookie": "stickycanary-id", "maxAgeSeconds": 2592000},
          "override": {"header": "x-canary-override", "cookie": "stickycanary-override", "token": null}
        }
      }
    }"#,
    )
    .unwrap();
    let rollout = &config.rollouts["checkout"];
    assert!(config.expose_version_header);
    assert_eq!(rollout.hosts.len(), 3);
    assert_eq!(rollout.weight, 10.0);
    assert_eq!(rollout.effective_salt("checkout"), "checkout-2026-11-26");
    assert_eq!(
        rollout.identity,
        vec![
            IdentitySource::Header("x-user-id".into()),
            IdentitySource::Cookie("session".into())
        ]
    );
    assert_eq!(rollout.r#override.as_ref().unwrap().token, None);
}

#[test]
fn omitted_fields_take_the_contract_defaults() {
    let config = parse(&rollout_with("")).unwrap();
    assert_eq!(config.route_header, "x-canary-version");
    assert!(!config.expose_version_header);
    let rollout = &config.rollouts["checkout"];
    assert_eq!(rollout.path_prefix, "/");
    assert_eq!(rollout.salt, None);
    assert_eq!(rollout.effective_salt("checkout"), "checkout");
    assert_eq!(rollout.stable_version, "stable");
    assert_eq!(rollout.canary_version, "canary");
    assert_eq!(
        rollout.identity,
        vec![IdentitySource::Header("x-user-id".into())]
    );
    assert_eq!(rollout.anonymous.assign, AnonymousAssign::Cookie);
    assert_eq!(rollout.anonymous.cookie, "stickycanary-id");
    assert_eq!(rollout.anonymous.max_age_seconds, 2_592_000);
    assert!(!rollout.anonymous.secure);
    assert_eq!(rollout.r#override, None);
}

#[test]
fn an_empty_override_object_enables_the_default_header_and_cookie() {
    let config = parse(&rollout_with(r#""override":{}"#)).unwrap();
    let override_config = config.rollouts["checkout"].r#override.clone().unwrap();
    assert_eq!(override_config.header.as_deref(), Some("x-canary-override"));
    assert_eq!(
        override_config.cookie.as_deref(),
        Some("stickycanary-override")
    );
}

#[test]
fn anonymous_secure_is_an_optional_flag() {
    let config = parse(&rollout_with(r#""anonymous":{"secure":true}"#)).unwrap();
    assert!(config.rollouts["checkout"].anonymous.secure);
}

#[test]
fn serialising_and_parsing_again_gives_the_same_config() {
    let config = parse(&rollout_with(r#""salt":"s1","override":{"token":"t0k"}"#)).unwrap();
    let json = serde_json::to_vec(&config).unwrap();
    assert_eq!(PluginConfig::from_json(&json).unwrap(), config);
}

#[test]
fn malformed_json_is_rejected_at_the_root() {
    let message = error_of(r#"{"rollouts": {"#);
    assert!(message.starts_with("(root): malformed JSON"), "{message}");
    let trailing = error_of(r#"{} {}"#);
    assert!(trailing.starts_with("(root): malformed JSON"), "{trailing}");
}

#[test]
fn unknown_field_is_rejected_with_its_path() {
    let message = error_of(&rollout_with(r#""wieght":5"#));
    assert!(
        message.starts_with("rollouts.checkout.wieght: unknown field"),
        "{message}"
    );
    let top = error_of(r#"{"routeHeadr":"x"}"#);
    assert!(top.starts_with("routeHeadr: unknown field"), "{top}");
    let nested = error_of(&rollout_with(r#""anonymous":{"maxAge":5}"#));
    assert!(
        nested.starts_with("rollouts.checkout.anonymous.maxAge: unknown field"),
        "{nested}"
    );
}

#[test]
fn weight_above_100_is_rejected_naming_the_field() {
    let config = r#"{"rollouts":{"checkout":{"hosts":["checkout"],"weight":150}}}"#;
    assert_eq!(
        error_of(config),
        "rollouts.checkout.weight: must be a number from 0 to 100 (got 150)"
    );
}

#[test]
fn weight_that_is_not_a_number_is_rejected_naming_the_field() {
    let config = r#"{"rollouts":{"checkout":{"hosts":["checkout"],"weight":"ten"}}}"#;
    assert_eq!(
        error_of(config),
        r#"rollouts.checkout.weight: must be a number from 0 to 100 (got "ten")"#
    );
    let null = r#"{"rollouts":{"checkout":{"hosts":["checkout"],"weight":null}}}"#;
    assert!(error_of(null).starts_with("rollouts.checkout.weight: must be a number"));
}

#[test]
fn negative_weight_is_rejected() {
    let config = r#"{"rollouts":{"checkout":{"hosts":["checkout"],"weight":-0.5}}}"#;
    assert_eq!(
        error_of(config),
        "rollouts.checkout.weight: must be a number from 0 to 100 (got -0.5)"
    );
}

#[test]
fn weight_bounds_and_fractions_are_accepted() {
    for weight in ["0", "100", "0.01", "99.99", "100.0"] {
        let config = format!(r#"{{"rollouts":{{"a":{{"hosts":["a"],"weight":{weight}}}}}}}"#);
        parse(&config).unwrap();
    }
}

#[test]
fn missing_weight_is_rejected() {
    let message = error_of(r#"{"rollouts":{"checkout":{"hosts":["checkout"]}}}"#);
    assert!(message.contains("missing field `weight`"), "{message}");
    assert!(message.starts_with("rollouts.checkout"), "{message}");
}

#[test]
fn empty_hosts_list_is_rejected() {
    let message = error_of(r#"{"rollouts":{"checkout":{"hosts":[],"weight":10}}}"#);
    assert_eq!(
        message,
        "rollouts.checkout.hosts: must list at least one host"
    );
}

#[test]
fn malformed_host_entries_are_rejected() {
    for host in ["", "*.", "a*b.com", "*", "a b", "a/b"] {
        let config = format!(r#"{{"rollouts":{{"c":{{"hosts":["ok",{host:?}],"weight":1}}}}}}"#);
        let message = error_of(&config);
        assert!(
            message.starts_with("rollouts.c.hosts[1]: "),
            "{host:?}: {message}"
        );
    }
}

#[test]
fn bad_rollout_names_are_rejected() {
    for name in [
        "Checkout",
        "-a",
        "a-",
        "a_b",
        "a.b",
        "",
        &"a".repeat(64),
        "a;.;version=.=x",
    ] {
        let config = format!(r#"{{"rollouts":{{{name:?}:{{"hosts":["h"],"weight":1}}}}}}"#);
        let message = error_of(&config);
        assert!(
            message.starts_with(&format!(
                "rollouts.{name}: bad rollout name: must be a DNS-1123 label"
            )),
            "{name:?}: {message}"
        );
    }
}

#[test]
fn stat_tag_injection_through_a_version_name_is_rejected() {
    let message = error_of(&rollout_with(r#""canaryVersion":"a;.;version=.=x""#));
    assert!(
        message.starts_with("rollouts.checkout.canaryVersion: must be a DNS-1123 label"),
        "{message}"
    );
    let stable = error_of(&rollout_with(r#""stableVersion":"Stable""#));
    assert!(
        stable.starts_with("rollouts.checkout.stableVersion: "),
        "{stable}"
    );
}

#[test]
fn same_stable_and_canary_name_is_rejected() {
    let message = error_of(&rollout_with(
        r#""stableVersion":"v1","canaryVersion":"v1""#,
    ));
    assert_eq!(
        message,
        r#"rollouts.checkout.canaryVersion: must differ from stableVersion (both are "v1")"#
    );
}

#[test]
fn cookie_names_that_could_inject_attributes_are_rejected() {
    let message = error_of(&rollout_with(r#""anonymous":{"cookie":"id; Domain=evil"}"#));
    assert!(
        message.starts_with("rollouts.checkout.anonymous.cookie: "),
        "{message}"
    );
    let identity = error_of(&rollout_with(r#""identity":[{"cookie":"a=b"}]"#));
    assert!(
        identity.starts_with("rollouts.checkout.identity[0]: "),
        "{identity}"
    );
}

#[test]
fn unknown_identity_kind_is_rejected() {
    let message = error_of(&rollout_with(r#""identity":[{"query":"uid"}]"#));
    assert!(
        message.starts_with("rollouts.checkout.identity[0]: unknown variant"),
        "{message}"
    );
}

#[test]
fn unknown_anonymous_assign_mode_is_rejected() {
    let message = error_of(&rollout_with(r#""anonymous":{"assign":"canary"}"#));
    assert!(
        message.starts_with("rollouts.checkout.anonymous.assign: unknown variant"),
        "{message}"
    );
}

#[test]
fn override_without_header_or_cookie_is_rejected() {
    let message = error_of(&rollout_with(r#""override":{"header":null,"cookie":null}"#));
    assert!(
        message.starts_with("rollouts.checkout.override: needs a header or a cookie"),
        "{message}"
    );
    let empty_token = error_of(&rollout_with(r#""override":{"token":""}"#));
    assert!(
        empty_token.starts_with("rollouts.checkout.override.token: "),
        "{empty_token}"
    );
}

#[test]
fn bad_route_header_is_rejected() {
    let message = error_of(r#"{"routeHeader":"x canary","rollouts":{}}"#);
    assert!(
        message.starts_with("routeHeader: must be an HTTP header name"),
        "{message}"
    );
}

#[test]
fn path_prefix_must_start_with_a_slash() {
    let message = error_of(&rollout_with(r#""pathPrefix":"api""#));
    assert!(
        message.starts_with("rollouts.checkout.pathPrefix: must start with '/'"),
        "{message}"
    );
}

#[test]
fn every_error_is_a_single_line() {
    let inputs = [
        "{".to_string(),
        rollout_with(r#""wieght":5"#),
        rollout_with(r#""identity":"x-user-id""#),
        r#"{"rollouts":[]}"#.to_string(),
    ];
    for input in inputs {
        let message = error_of(&input);
        assert!(!message.contains('\n'), "{message}");
    }
}

#[test]
fn validate_label_accepts_dns_1123_labels() {
    for good in ["a", "0", "checkout", "v2-canary", &"a".repeat(63)] {
        assert_eq!(validate_label(good), Ok(()), "{good}");
    }
}

#[test]
fn a_config_built_in_code_is_checked_by_validate() {
    let mut config = parse(&rollout_with("")).unwrap();
    config.rollouts.get_mut("checkout").unwrap().weight = 100.5;
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "rollouts.checkout.weight: must be a number from 0 to 100 (got 100.5)"
    );
}

#[test]
fn slow_threshold_defaults_to_500_ms_and_accepts_1_to_600000() {
    let config = parse(&rollout_with("")).unwrap();
    let rollout = &config.rollouts["checkout"];
    assert_eq!(rollout.slow_threshold_ms, None);
    assert_eq!(rollout.effective_slow_threshold_ms(), 500);
    for ms in [1, 250, 600_000] {
        let config = parse(&rollout_with(&format!(r#""slowThresholdMs":{ms}"#))).unwrap();
        assert_eq!(
            config.rollouts["checkout"].effective_slow_threshold_ms(),
            ms
        );
    }
    // Omitted stays omitted when the controller writes the config back.
    let written = serde_json::to_string(&parse(&rollout_with("")).unwrap()).unwrap();
    assert!(!written.contains("slowThresholdMs"), "{written}");
}

#[test]
fn slow_threshold_out_of_range_or_not_an_integer_is_rejected_by_name() {
    for ms in ["0", "600001"] {
        assert_eq!(
            error_of(&rollout_with(&format!(r#""slowThresholdMs":{ms}"#))),
            format!("rollouts.checkout.slowThresholdMs: must be a whole number of milliseconds from 1 to 600000 (got {ms})")
        );
    }
    for bad in ["-5", "1.5", "\"500\""] {
        let err = error_of(&rollout_with(&format!(r#""slowThresholdMs":{bad}"#)));
        assert!(
            err.starts_with("rollouts.checkout.slowThresholdMs: "),
            "{bad}: {err}"
        );
    }
}
