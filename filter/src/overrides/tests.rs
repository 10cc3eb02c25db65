use super::*;
use crate::headers::HeaderList;
use crate::matching::CompiledConfig;

fn rollout(override_json: &str) -> CompiledRollout {
    let json = format!(
        r#"{{"rollouts":{{"r":{{"hosts":["h"],"weight":0,"canaryVersion":"v2","override":{override_json}}}}}}}"#
    );
    CompiledConfig::from_json(json.as_bytes())
        .unwrap()
        .rollouts
        .remove(0)
}

fn requested(rollout: &CompiledRollout, headers: &HeaderList) -> Option<Version> {
    requested_version(rollout, &RequestView::new(headers))
}

#[test]
fn override_header_names_a_version() {
    let rollout = rollout("{}");
    assert_eq!(
        requested(
            &rollout,
            &HeaderList::default().with("x-canary-override", "v2")
        ),
        Some(Version::Canary)
    );
    assert_eq!(
        requested(
            &rollout,
            &HeaderList::default().with("x-canary-override", "stable")
        ),
        Some(Version::Stable)
    );
}

#[test]
fn override_cookie_names_a_version() {
    let rollout = rollout("{}");
    let headers = HeaderList::default().with("cookie", "a=b; stickycanary-override=v2");
    assert_eq!(requested(&rollout, &headers), Some(Version::Canary));
}

#[test]
fn override_value_that_is_not_a_version_is_ignored() {
    let rollout = rollout("{}");
    for value in ["canary", "V2", "", "v2x"] {
        assert_eq!(
            requested(
                &rollout,
                &HeaderList::default().with("x-canary-override", value)
            ),
            None,
            "{value}"
        );
    }
}

#[test]
fn overrides_are_off_when_not_configured() {
    let rollout = rollout("null");
    assert_eq!(
        requested(
            &rollout,
            &HeaderList::default().with("x-canary-override", "v2")
        ),
        None
    );
}

#[test]
fn with_a_token_only_the_right_token_counts() {
    let rollout = rollout(r#"{"token":"s3cret"}"#);
    let asked = HeaderList::default().with("x-canary-override", "v2");
    assert_eq!(requested(&rollout, &asked), None, "missing token");
    assert_eq!(
        requested(
            &rollout,
            &asked.clone().with("x-canary-override-token", "s3cre")
        ),
        None
    );
    assert_eq!(
        requested(
            &rollout,
            &asked.clone().with("x-canary-override-token", "s3cret!")
        ),
        None
    );
    assert_eq!(
        requested(
            &rollout,
            &asked.clone().with("x-canary-override-token", "S3cret")
        ),
        None
    );
    assert_eq!(
        requested(&rollout, &asked.with("x-canary-override-token", "s3cret")),
        Some(Version::Canary)
    );
}

#[test]
fn constant_time_eq_compares_whole_values() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(constant_time_eq(b"", b""));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(!constant_time_eq(b"ab", b"abc"));
    assert!(!constant_time_eq(b"\0", b""));
}
