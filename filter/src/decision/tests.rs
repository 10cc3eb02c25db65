use super::*;
use crate::headers::HeaderList;

fn compiled(rollout_fields: &str) -> CompiledConfig {
    let json = format!(
        r#"{{"rollouts":{{"checkout":{{"hosts":["checkout"],"salt":"s"{sep}{rollout_fields}}}}}}}"#,
        sep = if rollout_fields.is_empty() { "" } else { "," }
    );
    CompiledConfig::from_json(json.as_bytes()).unwrap()
}

fn request() -> HeaderList {
    HeaderList::default()
        .with(":authority", "checkout")
        .with(":path", "/")
}

fn routed(config: &CompiledConfig, headers: &HeaderList) -> Routed {
    match decide(config, headers, &IdMinter::new(1)) {
        Decision::Route(routed) => routed,
        Decision::PassThrough => panic!("expected a route"),
    }
}

/// Users `u0..` split by their golden-vector computation at weight 50.
fn users_on(version: Version) -> impl Iterator<Item = String> {
    (0..).map(|n| format!("u{n}")).filter(move |user| {
        let canary = assign::is_canary(assign::bucket("s", user), 50.0);
        canary == (version == Version::Canary)
    })
}

#[test]
fn a_request_for_another_host_passes_through() {
    let config = compiled(r#""weight":50"#);
    let headers = HeaderList::default()
        .with(":authority", "elsewhere")
        .with(":path", "/");
    assert_eq!(
        decide(&config, &headers, &IdMinter::new(1)),
        Decision::PassThrough
    );
    assert_eq!(
        decide(&config, &HeaderList::default(), &IdMinter::new(1)),
        Decision::PassThrough
    );
}

#[test]
fn a_user_gets_the_version_of_their_bucket() {
    let config = compiled(r#""weight":50"#);
    for version in [Version::Stable, Version::Canary] {
        for user in users_on(version).take(20) {
            let decision = routed(&config, &request().with("x-user-id", &user));
            assert_eq!(decision.version, version, "{user}");
            assert_eq!(decision.source, Source::Hash);
            assert_eq!(decision.set_cookie, None);
            assert_eq!(decision.rollout, 0);
        }
    }
}

#[test]
fn an_override_beats_the_hash_and_is_labelled_override() {
    let config = compiled(r#""weight":0,"override":{}"#);
    let user = users_on(Version::Stable).next().unwrap();
    let decision = routed(
        &config,
        &request()
            .with("x-user-id", &user)
            .with("x-canary-override", "canary"),
    );
    assert_eq!(
        (decision.version, decision.source),
        (Version::Canary, Source::Override)
    );
}

#[test]
fn an_anonymous_user_gets_a_cookie_and_keeps_their_version_with_it() {
    let config = compiled(r#""weight":50"#);
    for n in 0..50 {
        let request_id = format!("req-{n}");
        let first = routed(&config, &request().with("x-request-id", &request_id));
        let set_cookie = first.set_cookie.clone().unwrap();
        assert_eq!(
            set_cookie,
            format!(
                "stickycanary-id={request_id}; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax"
            )
        );
        let cookie_pair = set_cookie.split(';').next().unwrap().to_string();
        let again = routed(
            &config,
            &request()
                .with("cookie", &cookie_pair)
                .with("x-request-id", "other"),
        );
        assert_eq!(again.version, first.version, "{cookie_pair}");
        assert_eq!(again.set_cookie, None);
    }
}

#[test]
fn anonymous_users_without_request_id_get_distinct_ids() {
    let config = compiled(r#""weight":50"#);
    let minter = IdMinter::new(99);
    let mut cookies = std::collections::HashSet::new();
    for _ in 0..100 {
        let Decision::Route(routed) = decide(&config, &request(), &minter) else {
            panic!("no route")
        };
        cookies.insert(routed.set_cookie.unwrap());
    }
    assert_eq!(cookies.len(), 100);
}

#[test]
fn anonymous_assign_stable_sends_identityless_users_to_stable() {
    let config = compiled(r#""weight":100,"anonymous":{"assign":"stable"}"#);
    let decision = routed(&config, &request().with("x-request-id", "r1"));
    assert_eq!(
        (decision.version, decision.source, decision.set_cookie),
        (Version::Stable, Source::Hash, None)
    );
    let known = routed(&config, &request().with("x-user-id", "u1"));
    assert_eq!(
        known.version,
        Version::Canary,
        "identified users still follow the weight"
    );
}

#[test]
fn secure_anonymous_cookie_carries_secure() {
    let config = compiled(r#""weight":10,"anonymous":{"secure":true}"#);
    let decision = routed(&config, &request());
    assert!(decision
        .set_cookie
        .unwrap()
        .ends_with("; HttpOnly; SameSite=Lax; Secure"));
}

#[test]
fn identity_from_a_cookie_is_honoured() {
    let config = compiled(r#""weight":50,"identity":[{"cookie":"session"}]"#);
    for version in [Version::Stable, Version::Canary] {
        let user = users_on(version).next().unwrap();
        let decision = routed(
            &config,
            &request().with("cookie", format!("x=1; session={user}")),
        );
        assert_eq!(decision.version, version);
    }
}

#[test]
fn raising_weight_never_moves_a_canary_user_back() {
    let weights = [0.0, 1.0, 10.0, 25.0, 33.33, 50.0, 99.99, 100.0];
    let configs: Vec<CompiledConfig> = weights
        .iter()
        .map(|w| compiled(&format!(r#""weight":{w}"#)))
        .collect();
    for n in 0..500 {
        let headers = request().with("x-user-id", format!("u{n}"));
        let mut was_canary = false;
        for config in &configs {
            let canary = routed(config, &headers).version == Version::Canary;
            assert!(canary || !was_canary, "u{n} moved back");
            was_canary = canary;
        }
    }
}

#[test]
fn response_carries_the_version_only_when_exposed() {
    let hidden = compiled(r#""weight":100"#);
    let routed_hidden = routed(&hidden, &request().with("x-user-id", "u1"));
    assert_eq!(
        response_edits(&hidden, &routed_hidden).set_version_header,
        None
    );
    let shown = CompiledConfig::from_json(
        br#"{"exposeVersionHeader":true,"rollouts":{"checkout":{"hosts":["checkout"],"weight":100,"canaryVersion":"v2"}}}"#,
    )
    .unwrap();
    let routed_shown = routed(&shown, &request().with("x-user-id", "u1"));
    let edits = response_edits(&shown, &routed_shown);
    assert_eq!(edits.set_version_header, Some("v2"));
    assert_eq!(edits.add_set_cookie, None);
}

#[test]
fn response_sets_the_cookie_of_a_new_anonymous_user() {
    let config = compiled(r#""weight":10"#);
    let decision = routed(&config, &request().with("x-request-id", "r-1"));
    let edits = response_edits(&config, &decision);
    assert_eq!(
        edits.add_set_cookie,
        Some("stickycanary-id=r-1; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax")
    );
}
