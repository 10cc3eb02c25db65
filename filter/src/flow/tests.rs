use std::cell::RefCell;

use super::*;
use crate::decision::{Source, Version};
use crate::headers::HeaderSnapshot;
use crate::stats::CODE_CLASSES;

/// Everything the flow asked of the host, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    /// The one read of every request header.
    ReadAll,
    Remove(String),
    Set(String, String),
    AddResponse(String, String),
    SetResponse(String, String),
    Increment(u32),
    Record(u32, u64),
}

/// A recording host: request headers from a list, response code and clock fixed.
#[derive(Default)]
struct MockHost {
    headers: Vec<(String, Vec<u8>)>,
    response_code: Option<u64>,
    now_ns: Option<u64>,
    calls: RefCell<Vec<Call>>,
}

impl MockHost {
    fn with(mut self, name: &str, value: &str) -> MockHost {
        self.headers
            .push((name.to_string(), value.as_bytes().to_vec()));
        self
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }
    fn edits(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|call| !matches!(call, Call::ReadAll))
            .collect()
    }
    fn push(&self, call: Call) {
        self.calls.borrow_mut().push(call);
    }
}

impl Host for MockHost {
    fn request_headers(&self) -> Option<Vec<u8>> {
        self.push(Call::ReadAll);
        Some(HeaderSnapshot::serialize(&self.headers))
    }
    fn remove_request_header(&self, name: &str) {
        self.push(Call::Remove(name.to_string()));
    }
    fn set_request_header(&self, name: &str, value: &str) {
        self.push(Call::Set(name.to_string(), value.to_string()));
    }
    fn add_response_header(&self, name: &str, value: &str) {
        self.push(Call::AddResponse(name.to_string(), value.to_string()));
    }
    fn set_response_header(&self, name: &str, value: &str) {
        self.push(Call::SetResponse(name.to_string(), value.to_string()));
    }
    fn response_code(&self) -> Option<u64> {
        self.response_code
    }
    fn now_ns(&self) -> Option<u64> {
        self.now_ns
    }
    fn increment_counter(&self, metric_id: u32) {
        self.push(Call::Increment(metric_id));
    }
    fn record_histogram(&self, metric_id: u32, value: u64) {
        self.push(Call::Record(metric_id, value));
    }
}

const CONFIG: &str = r#"{"exposeVersionHeader":true,"rollouts":{
  "checkout":{"hosts":["checkout"],"weight":100,"identity":[{"header":"x-user-id"},{"cookie":"session"}]},
  "search":{"hosts":["search"],"weight":0,"override":{}}}}"#;

/// Loads `json`, handing out metric ids 1000, 1001, ... in definition order.
fn load(json: &str) -> (Rc<LoadedConfig>, Vec<(MetricKind, String)>) {
    let mut defined = Vec::new();
    let loaded = LoadedConfig::load(json.as_bytes(), |kind, name| {
        defined.push((kind, name.to_string()));
        Ok(999 + defined.len() as u32)
    })
    .unwrap();
    (Rc::new(loaded), defined)
}

fn run(json: &str, host: &MockHost) -> RequestFlow {
    let (loaded, _) = load(json);
    let mut flow = RequestFlow::new(loaded);
    flow.on_request_headers(host, &IdMinter::new(5));
    flow
}

fn checkout() -> MockHost {
    MockHost::default()
        .with(":authority", "checkout")
        .with(":path", "/cart")
}

#[test]
fn a_matched_request_replaces_the_client_routing_header_in_one_call() {
    let host = checkout()
        .with("x-user-id", "u1")
        .with("X-Canary-Version", "stable");
    run(CONFIG, &host);
    assert_eq!(
        host.edits(),
        vec![Call::Set("x-canary-version".into(), "canary".into()),]
    );
}

#[test]
fn an_unmatched_request_loses_a_spoofed_routing_header() {
    let host = MockHost::default()
        .with(":authority", "elsewhere")
        .with(":path", "/")
        .with("x-canary-version", "canary");
    let flow = run(CONFIG, &host);
    assert_eq!(host.edits(), vec![Call::Remove("x-canary-version".into()),]);
    assert_eq!(flow.routed(), None);
}

#[test]
fn an_unmatched_request_without_routing_header_is_left_untouched() {
    let host = MockHost::default()
        .with(":authority", "elsewhere")
        .with(":path", "/");
    run(CONFIG, &host);
    assert_eq!(host.calls(), vec![Call::ReadAll]);
}

#[test]
fn request_headers_are_read_in_one_call_however_many_lookups_follow() {
    // No x-user-id, no session cookie: the walk tries the header, the session cookie,
    // then the anonymous cookie, then mints from x-request-id.
    let host = checkout().with("cookie", "other=1");
    run(CONFIG, &host);
    assert_eq!(
        host.calls(),
        vec![
            Call::ReadAll,
            Call::Set("x-canary-version".into(), "canary".into())
        ]
    );
}

#[test]
fn an_identity_cookie_in_a_second_cookie_header_is_used() {
    // HTTP/1.1 allows the cookies to come in two headers; the second holds the session.
    let config = r#"{"rollouts":{"checkout":{"hosts":["checkout"],"weight":50,"salt":"s",
        "identity":[{"cookie":"session"}]}}}"#;
    let users: Vec<String> = (0..40).map(|n| format!("user-{n}")).collect();
    for user in &users {
        let host = checkout()
            .with("cookie", "theme=dark")
            .with("cookie", &format!("session={user}; z=9"));
        let flow = run(config, &host);
        let routed = flow.routed().unwrap();
        assert_eq!(routed.set_cookie, None, "{user} was treated as anonymous");
        let expected = if crate::assign::bucket("s", user) < 5000 {
            Version::Canary
        } else {
            Version::Stable
        };
        assert_eq!(routed.version, expected, "{user}");
    }
}

#[test]
fn an_override_is_routed_and_labelled() {
    let host = MockHost::default()
        .with(":authority", "search")
        .with(":path", "/")
        .with("x-user-id", "u1")
        .with("x-canary-override", "canary");
    let flow = run(CONFIG, &host);
    let routed = flow.routed().unwrap();
    assert_eq!(
        (routed.version, routed.source),
        (Version::Canary, Source::Override)
    );
    assert!(host
        .edits()
        .contains(&Call::Set("x-canary-version".into(), "canary".into())));
}

#[test]
fn the_response_gets_the_anonymous_cookie_and_the_version_header() {
    let host = checkout().with("x-request-id", "rid-1");
    let flow = run(CONFIG, &host);
    let response = MockHost::default();
    flow.on_response_headers(&response);
    assert_eq!(
        response.edits(),
        vec![
            Call::AddResponse(
                "set-cookie".into(),
                "stickycanary-id=rid-1; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax".into()
            ),
            Call::SetResponse("x-canary-version".into(), "canary".into()),
        ]
    );
}

#[test]
fn on_log_counts_the_code_class_and_records_latency_in_whole_ms() {
    let (loaded, defined) = load(CONFIG);
    let mut flow = RequestFlow::new(loaded);
    let request = MockHost {
        now_ns: Some(7_000_000_000),
        ..checkout().with("x-user-id", "u1")
    };
    flow.on_request_headers(&request, &IdMinter::new(5));
    let log = MockHost {
        response_code: Some(503),
        now_ns: Some(7_200_300_000),
        ..MockHost::default()
    };
    flow.on_log(&log);
    let calls = log.edits();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let name_of = |id: u32| defined[(id - 1000) as usize].1.clone();
    let Call::Increment(counter) = calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(
        name_of(counter),
        "rollout=.=checkout;.;version=.=canary;.;code_class=.=5xx;.;source=.=hash;.;stickycanary_requests_total"
    );
    let Call::Record(histogram, value) = calls[1] else {
        panic!("{calls:?}")
    };
    assert_eq!(value, 201);
    assert_eq!(
        name_of(histogram),
        "rollout=.=checkout;.;version=.=canary;.;source=.=hash;.;stickycanary_request_duration_ms"
    );
    let Call::Increment(shard_counter) = calls[2] else {
        panic!("{calls:?}")
    };
    let shard = crate::assign::placement("checkout", b"u1").shard;
    assert_eq!(
        name_of(shard_counter),
        format!("rollout=.=checkout;.;version=.=canary;.;shard=.={shard};.;outcome=.=error;.;stickycanary_shard_requests_total")
    );
}

/// The `outcome` label of the one shard counter a hash-routed request increments.
fn shard_outcome(config: &str, code: Option<u64>, took_ns: Option<u64>) -> String {
    let (loaded, defined) = load(config);
    let mut flow = RequestFlow::new(loaded);
    let request = MockHost {
        now_ns: Some(1_000_000_000),
        ..checkout().with("x-user-id", "u1")
    };
    flow.on_request_headers(&request, &IdMinter::new(5));
    let log = MockHost {
        response_code: code,
        now_ns: took_ns.map(|ns| 1_000_000_000 + ns),
        ..MockHost::default()
    };
    flow.on_log(&log);
    let shard_counters: Vec<String> = log
        .edits()
        .into_iter()
        .filter_map(|call| match call {
            Call::Increment(id) => Some(defined[(id - 1000) as usize].1.clone()),
            _ => None,
        })
        .filter(|name| name.ends_with("stickycanary_shard_requests_total"))
        .collect();
    assert_eq!(shard_counters.len(), 1, "{shard_counters:?}");
    let name = &shard_counters[0];
    let start = name.find("outcome=.=").unwrap() + "outcome=.=".len();
    name[start..].split(';').next().unwrap().to_string()
}

#[test]
fn the_shard_outcome_is_error_for_5xx_then_slow_past_the_threshold_then_ok() {
    const MS: u64 = 1_000_000;
    assert_eq!(shard_outcome(CONFIG, Some(503), Some(10 * MS)), "error");
    assert_eq!(shard_outcome(CONFIG, Some(500), Some(900 * MS)), "error");
    assert_eq!(shard_outcome(CONFIG, Some(200), Some(500 * MS + 1)), "slow");
    assert_eq!(shard_outcome(CONFIG, Some(404), Some(500 * MS)), "ok");
    assert_eq!(shard_outcome(CONFIG, None, Some(MS)), "ok");
    assert_eq!(
        shard_outcome(CONFIG, Some(200), None),
        "ok",
        "unknown duration"
    );
    let strict =
        r#"{"rollouts":{"checkout":{"hosts":["checkout"],"weight":100,"slowThresholdMs":20}}}"#;
    assert_eq!(shard_outcome(strict, Some(200), Some(21 * MS)), "slow");
    assert_eq!(shard_outcome(strict, Some(200), Some(20 * MS)), "ok");
}

#[test]
fn an_override_request_is_not_counted_in_a_shard() {
    let (loaded, defined) = load(CONFIG);
    let mut flow = RequestFlow::new(loaded);
    let request = MockHost::default()
        .with(":authority", "search")
        .with(":path", "/")
        .with("x-canary-override", "canary");
    flow.on_request_headers(&request, &IdMinter::new(5));
    let log = MockHost {
        response_code: Some(200),
        now_ns: None,
        ..MockHost::default()
    };
    flow.on_log(&log);
    let names: Vec<String> = log
        .edits()
        .into_iter()
        .filter_map(|call| match call {
            Call::Increment(id) => Some(defined[(id - 1000) as usize].1.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].contains("source=.=override;"), "{names:?}");
}

#[test]
fn a_clock_that_steps_back_skips_the_latency_sample_but_still_counts() {
    let (loaded, _) = load(CONFIG);
    let mut flow = RequestFlow::new(loaded);
    let request = MockHost {
        now_ns: Some(7_000_000_000),
        ..checkout().with("x-user-id", "u1")
    };
    flow.on_request_headers(&request, &IdMinter::new(5));
    for now_ns in [Some(6_999_999_999), None] {
        let log = MockHost {
            response_code: Some(200),
            now_ns,
            ..MockHost::default()
        };
        flow.on_log(&log);
        let calls = log.edits();
        assert_eq!(calls.len(), 2, "{now_ns:?}: {calls:?}");
        assert!(
            calls.iter().all(|call| matches!(call, Call::Increment(_))),
            "{calls:?}"
        );
    }
}

#[test]
fn a_request_without_response_counts_as_code_class_none() {
    let (loaded, defined) = load(CONFIG);
    let mut flow = RequestFlow::new(loaded);
    flow.on_request_headers(&checkout().with("x-user-id", "u1"), &IdMinter::new(5));
    for code in [None, Some(0)] {
        let log = MockHost {
            response_code: code,
            ..MockHost::default()
        };
        flow.on_log(&log);
        let Call::Increment(counter) = log.edits()[0] else {
            panic!()
        };
        assert!(defined[(counter - 1000) as usize]
            .1
            .contains(&format!("code_class=.={};", CODE_CLASSES[5])));
    }
}

#[test]
fn a_passed_through_request_touches_no_stats_and_no_response() {
    let host = MockHost::default()
        .with(":authority", "elsewhere")
        .with(":path", "/");
    let flow = run(CONFIG, &host);
    let after = MockHost {
        response_code: Some(200),
        now_ns: Some(1),
        ..MockHost::default()
    };
    flow.on_response_headers(&after);
    flow.on_log(&after);
    assert_eq!(after.edits(), vec![]);
}

#[test]
fn loading_defines_every_stat_once() {
    let (_, defined) = load(CONFIG);
    let counters = defined
        .iter()
        .filter(|(kind, _)| *kind == MetricKind::Counter)
        .count();
    let histograms = defined
        .iter()
        .filter(|(kind, _)| *kind == MetricKind::Histogram)
        .count();
    // Per rollout: 2 versions × 6 classes × 2 sources request counters plus
    // 2 versions × 16 shards × 3 outcomes shard counters; 2 × 2 histograms.
    assert_eq!(
        (counters, histograms),
        (2 * (2 * 6 * 2 + 2 * 16 * 3), 2 * 2 * 2)
    );
}

#[test]
fn a_rejected_config_defines_nothing_and_names_the_field() {
    let mut defined = 0;
    let err = LoadedConfig::load(
        br#"{"rollouts":{"a":{"hosts":["a"],"weight":150}}}"#,
        |_, _| {
            defined += 1;
            Ok(0)
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        "rollouts.a.weight: must be a number from 0 to 100 (got 150)"
    );
    assert_eq!(defined, 0);
}

#[test]
fn a_failure_to_define_a_stat_rejects_the_config() {
    let err = LoadedConfig::load(CONFIG.as_bytes(), |_, name| {
        Err(format!("no room for {name}"))
    })
    .unwrap_err();
    assert!(err.starts_with("no room for rollout=.=checkout"), "{err}");
}

#[test]
fn a_rollout_narrowed_by_path_still_routes_from_the_one_read() {
    let host = checkout().with("x-user-id", "u1");
    run(
        r#"{"rollouts":{"checkout":{"hosts":["checkout"],"pathPrefix":"/cart","weight":100}}}"#,
        &host,
    );
    assert_eq!(
        host.edits(),
        vec![Call::Set("x-canary-version".into(), "canary".into()),]
    );
}

#[test]
fn the_override_token_never_travels_upstream_from_a_rollout_that_has_one() {
    let host = checkout()
        .with("x-user-id", "u1")
        .with("x-canary-override-token", "s3cret");
    run(
        r#"{"rollouts":{"checkout":{"hosts":["checkout"],"weight":100,"override":{"token":"s3cret"}}}}"#,
        &host,
    );
    assert_eq!(
        host.edits(),
        vec![
            Call::Set("x-canary-version".into(), "canary".into()),
            Call::Remove("x-canary-override-token".into()),
        ]
    );
}

#[test]
fn an_absent_override_token_costs_no_removal() {
    let host = checkout().with("x-user-id", "u1");
    run(
        r#"{"rollouts":{"checkout":{"hosts":["checkout"],"weight":100,"override":{"token":"s3cret"}}}}"#,
        &host,
    );
    assert_eq!(
        host.calls(),
        vec![
            Call::ReadAll,
            Call::Set("x-canary-version".into(), "canary".into())
        ]
    );
}
