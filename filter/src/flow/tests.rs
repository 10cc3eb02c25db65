use std::cell::RefCell;

use super::*;
use crate::decision::{Source, Version};
use crate::stats::CODE_CLASSES;

/// Everything the flow asked of the host, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Read(String),
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
            .filter(|call| !matches!(call, Call::Read(_)))
            .collect()
    }
    fn reads(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::Read(name) => Some(name),
                _ => None,
            })
            .collect()
    }
    fn push(&self, call: Call) {
        self.calls.borrow_mut().push(call);
    }
}

impl Host for MockHost {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.push(Call::Read(name.to_string()));
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
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
    assert_eq!(host.edits(), vec![]);
    assert_eq!(host.reads(), vec![":authority", "x-canary-version"]);
}

#[test]
fn a_matched_request_reads_only_the_headers_it_needs() {
    let host = checkout()
        .with("x-user-id", "u1")
        .with("cookie", "session=s");
    run(CONFIG, &host);
    assert_eq!(host.reads(), vec![":authority", "x-user-id"]);
}

#[test]
fn the_cookie_header_is_read_once_however_many_cookies_are_consulted() {
    // No x-user-id, no session cookie: the walk tries the header, the session cookie,
    // then the anonymous cookie, then mints from x-request-id.
    let host = checkout().with("cookie", "other=1");
    run(CONFIG, &host);
    assert_eq!(
        host.reads(),
        vec![":authority", "x-user-id", "cookie", "x-request-id"]
    );
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
    assert_eq!(calls.len(), 2, "{calls:?}");
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
        assert_eq!(calls.len(), 1, "{now_ns:?}: {calls:?}");
        assert!(matches!(calls[0], Call::Increment(_)), "{calls:?}");
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
    assert_eq!((counters, histograms), (2 * 2 * 6 * 2, 2 * 2 * 2));
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
fn path_is_read_only_when_some_rollout_narrows_by_path() {
    let host = checkout().with("x-user-id", "u1");
    run(
        r#"{"rollouts":{"checkout":{"hosts":["checkout"],"pathPrefix":"/cart","weight":100}}}"#,
        &host,
    );
    assert_eq!(host.reads(), vec![":authority", ":path", "x-user-id"]);
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
