//! Gates are checked twice: by the CRD schema (the API server) and by `validate` (files,
//! local mode, and the controller before it acts). Errors never echo a webhook URL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube::CustomResourceExt;
use serde_json::Value;
use stickycanary::crd::{CanaryRollout, CanaryRolloutSpec};
use stickycanary::validate::validate_spec;

fn spec(extra: &str) -> CanaryRolloutSpec {
    serde_yaml::from_str(&format!(
        "wasmPlugin: {{name: sc}}\ncanary: {{deployment: checkout-canary}}\n{extra}"
    ))
    .unwrap()
}

fn errors(extra: &str) -> Vec<String> {
    match validate_spec(&spec(extra)) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_crd_schema_enforces_webhook_urls_and_approval_revisions() {
    let crd = serde_json::to_value(CanaryRollout::crd()).unwrap();
    let schema = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema/properties")
        .unwrap();
    let webhook = schema
        .pointer("/spec/properties/webhooks/items/properties")
        .unwrap();
    assert_eq!(
        webhook.pointer("/url/pattern"),
        Some(&Value::from(r"^https?://[^\s]+$"))
    );
    assert_eq!(webhook.pointer("/url/maxLength"), Some(&Value::from(2048)));
    let types: Vec<&str> = webhook
        .pointer("/type/enum")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "confirm-rollout",
            "pre-rollout",
            "rollout",
            "confirm-traffic-increase",
            "confirm-promotion",
            "rollback",
            "post-rollout",
            "event"
        ]
    );
    for gate in [
        "confirmRollout",
        "confirmTrafficIncrease",
        "confirmPromotion",
    ] {
        let revision = schema
            .pointer(&format!(
                "/status/properties/approvals/properties/{gate}/properties/revision"
            ))
            .unwrap();
        assert_eq!(
            revision.pointer("/pattern"),
            Some(&Value::from("^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$")),
            "{gate}"
        );
    }
}

#[test]
fn validate_checks_webhooks_without_echoing_their_urls() {
    assert_eq!(
        errors("webhooks:\n  - {name: lt, type: rollout, url: \"https://loadtester.shop.svc/run?token=abc\"}\n  - {name: rm, type: confirm-promotion, approval: manual}\n"),
        Vec::<String>::new()
    );
    let bad = errors(
        "webhooks:\n  \
         - {name: a, type: rollout, url: \"ftp://host/SECRET1\"}\n  \
         - {name: b, type: rollout, url: \"https://user:SECRET2@host/x\"}\n  \
         - {name: c, type: rollback, approval: manual}\n  \
         - {name: d, type: confirm-rollout}\n  \
         - {name: e, type: confirm-rollout, url: \"http://h/SECRET3\", approval: manual}\n  \
         - {name: e, type: event, url: \"http://h/x\", timeout: 2m}\n  \
         - {name: f, type: confirm-promotion, url: \"http://h/x\", for: 1m}\n",
    );
    let text = bad.join("\n");
    for expected in [
        "spec.webhooks[0].url: must be an http:// or https:// URL (the value is not shown: it may be a secret)",
        "spec.webhooks[1].url: must not carry user:password@",
        "spec.webhooks[2].approval: manual approval is for confirm-rollout, confirm-traffic-increase and confirm-promotion, not rollback",
        "spec.webhooks[3].url: required",
        "spec.webhooks[4].approval: set either url or approval: manual, not both",
        "spec.webhooks[5].name: \"e\" is used twice",
        "spec.webhooks[5].timeout: must be more than 0s and at most 1m (got 2m)",
        "spec.webhooks[6].for: only rollout and pre-rollout webhooks",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("SECRET"), "{text}");
}

#[test]
fn validate_checks_rollout_windows() {
    assert_eq!(
        errors("schedule:\n  windows:\n    - {cron: \"0 9 * * 1-5\", duration: 7h, timeZone: Europe/Berlin}\n"),
        Vec::<String>::new()
    );
    let text = errors(
        "schedule:\n  windows:\n    \
         - {cron: \"0 25 * * *\", duration: 1h}\n    \
         - {cron: \"0 9 * * 1-5\", duration: 1h, timeZone: Mars/Olympus}\n    \
         - {cron: \"0 9 * * 1-5\", duration: 0s}\n    \
         - {cron: \"0 0 9 * * 1-5\", duration: 1h}\n",
    )
    .join("\n");
    for expected in [
        "spec.schedule.windows[0]: cron \"0 25 * * *\"",
        "spec.schedule.windows[1]: timeZone \"Mars/Olympus\": not a known IANA time zone",
        "spec.schedule.windows[2]: duration must be more than 0s",
        "spec.schedule.windows[3]: cron \"0 0 9 * * 1-5\": needs 5 fields",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
