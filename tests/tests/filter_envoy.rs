//! The filter proven in a real Envoy 1.40 (V8) running the built `target/stickycanary.wasm`,
//! loaded through ECDS from a file exactly as `stickycanary local` drives it. Each test starts its
//! own Envoy and `stable`/`canary` backends on free 127.0.0.1 ports; all are killed on drop.
//!
//! Issue 2, "Prove it in a real Envoy": split, stickiness and monotonicity, reload under load,
//! overrides and anti-spoofing, anonymous cookies, exact metrics, and bad-config rejection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stickycanary_e2e::backend::Backend;
use stickycanary_e2e::backend_server::{Behaviour, BehaviourPatch};
use stickycanary_e2e::envoy::{EcdsOutcome, Envoy, EnvoyOptions, FilterChain};
use stickycanary_e2e::load::{self, LoadOptions, LoadSummary};
use stickycanary_e2e::{http1, paths, promtext};
use stickycanary_filter::assign;

const BACKEND: &str = env!("CARGO_BIN_EXE_sc-backend");
const HOST: &str = "checkout";
const SALT: &str = "checkout";
/// How long an ECDS file move may take to show up in Envoy's counters.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What the contract says `user` gets at `weight` with `salt` (contract 2, via the filter's own code).
fn expected_version(salt: &str, user: &str, weight: f64) -> &'static str {
    if assign::is_canary(assign::bucket(salt, user), weight) {
        "canary"
    } else {
        "stable"
    }
}

/// A pluginConfig with one rollout `checkout` on host `checkout`; `extra` is merged into the rollout.
fn plugin_config(weight: Value, extra: Value) -> Value {
    let mut rollout = json!({"hosts": [HOST], "weight": weight, "salt": SALT});
    if let (Some(r), Some(e)) = (rollout.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            r.insert(k.clone(), v.clone());
        }
    }
    json!({"rollouts": {"checkout": rollout}})
}

/// The first user `u<N>` (N from `from`) whose version at `weight` is `version`.
fn find_user(weight: f64, version: &str, from: u64) -> String {
    (from..from + 100_000)
        .map(|n| format!("u{n}"))
        .find(|u| expected_version(SALT, u, weight) == version)
        .unwrap()
}

struct Stack {
    // Field order = drop order: Envoy first, then the backends, then their log dir.
    envoy: Envoy,
    stable: Backend,
    canary: Backend,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start(config: &Value) -> Stack {
        Self::start_with(config, Behaviour::default(), Behaviour::default())
    }

    fn start_with(config: &Value, stable: Behaviour, canary: Behaviour) -> Stack {
        Self::start_chain(config, stable, canary, FilterChain::StickyCanary)
    }

    fn start_chain(
        config: &Value,
        stable: Behaviour,
        canary: Behaviour,
        chain: FilterChain,
    ) -> Stack {
        // Fail loudly (never skip) when the filter has not been built.
        let wasm = paths::wasm_path().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap();
        let stable =
            Backend::start_with_bin(Path::new(BACKEND), "stable", stable, dir.path()).unwrap();
        let canary =
            Backend::start_with_bin(Path::new(BACKEND), "canary", canary, dir.path()).unwrap();
        let mut opts = EnvoyOptions::new(stable.addr, canary.addr);
        opts.wasm = Some(wasm);
        opts.filter_chain = chain;
        let envoy = Envoy::start(&opts, &config.to_string()).unwrap();
        let stack = Stack {
            envoy,
            stable,
            canary,
            _dir: dir,
        };
        stack.wait_serving();
        stack
    }

    /// Envoy is ready before the filter's first `on_configure` ran on a worker; wait until a
    /// request for the rollout is answered by a backend.
    fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.envoy.get(HOST, "/", &[("x-user-id", "probe")]);
            if r.as_ref().is_ok_and(|r| r.header("x-served-by").is_some()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the filter never served a request: {:?}\n{}",
                r.map(|r| (r.status, r.body_text())),
                self.envoy.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Move a new config into place and wait until Envoy processed it; then, when `probe` names
    /// a user and the version the new config gives them, until 20 fresh connections in a row
    /// (spread over Envoy's workers) see that version.
    fn apply(&self, config: &Value, probe: Option<(&str, &str)>) {
        self.envoy
            .set_plugin_config_and_wait(&config.to_string(), RELOAD_TIMEOUT)
            .unwrap();
        let Some((user, version)) = probe else { return };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut in_a_row = 0;
        while in_a_row < 20 {
            let r = self.envoy.get(HOST, "/", &[("x-user-id", user)]).unwrap();
            if r.header("x-served-by") == Some(version) {
                in_a_row += 1;
            } else {
                in_a_row = 0;
                assert!(
                    Instant::now() < deadline,
                    "new config never took effect: {user} still gets {:?} (status {})\n{}",
                    r.header("x-served-by"),
                    r.status,
                    self.envoy.log_tail(30)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn load(&self, users: u64, requests: u64) -> LoadSummary {
        let mut opts = LoadOptions::new(self.envoy.listener, HOST);
        opts.users = users;
        opts.requests = Some(requests);
        opts.connections = 4;
        opts.timeout = Duration::from_secs(20);
        load::run(opts)
    }

    fn send(&self, headers: &[(&str, &str)]) -> http1::Response {
        self.envoy.get(HOST, "/", headers).unwrap()
    }

    fn metrics(&self) -> Vec<promtext::Sample> {
        promtext::parse(&self.envoy.stats_prometheus().unwrap())
    }
}

fn assert_all_ok(s: &LoadSummary, what: &str) {
    assert_eq!(
        (s.failures(), s.transport_errors),
        (0, 0),
        "{what}: every request must succeed: {}",
        s.to_json()
    );
}

/// Users whose observed version differs from the contract's, as `user: got/want` (first 10).
fn mismatches(s: &LoadSummary, weight: f64) -> Vec<String> {
    s.users
        .iter()
        .filter(|(u, r)| r.last != expected_version(SALT, u, weight) || r.switches > 0)
        .take(10)
        .map(|(u, r)| {
            format!(
                "{u}: got {} want {}",
                r.last,
                expected_version(SALT, u, weight)
            )
        })
        .collect()
}

#[test]
fn golden_vectors_anchor_the_test_oracle() {
    // The oracle the Envoy tests compare against is the filter's own code; pin it to the
    // checked-in golden vectors so a drift in both would still be caught.
    let text = std::fs::read_to_string(paths::workspace_root().join("filter/testdata/golden.json"))
        .unwrap();
    let vectors: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(vectors.len() >= 10);
    for v in &vectors {
        let (salt, user) = (v["salt"].as_str().unwrap(), v["user"].as_str().unwrap());
        assert_eq!(
            u64::from(assign::bucket(salt, user)),
            v["bucket"].as_u64().unwrap(),
            "{v}"
        );
        for (weight, version) in v["versions"].as_object().unwrap() {
            let weight: f64 = weight.parse().unwrap();
            let want = if assign::is_canary(assign::bucket(salt, user), weight) {
                "canary"
            } else {
                "stable"
            };
            assert_eq!(version.as_str().unwrap(), want, "{v} at {weight}");
        }
    }
}

#[test]
fn split_matches_the_weight_and_the_hash_for_10000_users() {
    let stack = Stack::start(&plugin_config(json!(0), json!({})));
    for weight in [0.0, 10.0, 50.0, 100.0] {
        let probe_version = if weight > 0.0 { "canary" } else { "stable" };
        let probe = find_user(weight, probe_version, 1_000_000);
        stack.apply(
            &plugin_config(json!(weight), json!({})),
            Some((&probe, probe_version)),
        );
        let s = stack.load(10_000, 10_000);
        assert_all_ok(&s, &format!("weight {weight}"));
        assert_eq!(s.distinct_users, 10_000);
        let share = s.share("canary") * 100.0;
        assert!(
            (share - weight).abs() <= 1.5,
            "weight {weight}: canary share {share:.2}% is outside ±1.5 pp"
        );
        let wrong = mismatches(&s, weight);
        assert!(
            wrong.is_empty(),
            "weight {weight}: users off the hash: {wrong:?}"
        );
    }
}

#[test]
fn a_route_looked_up_before_the_filter_is_reselected() {
    // A Lua filter ahead of stickycanary selects and caches the route first, as Istio's own
    // filters can. The filter makes no separate clear_route_cache call: Envoy must re-select
    // the route after the filter's header change, for the set and for the removal alike.
    let stack = Stack::start_chain(
        &plugin_config(json!(100), json!({})),
        Behaviour::default(),
        Behaviour::default(),
        FilterChain::StickyCanaryAfterRouteLookup,
    );
    let s = stack.load(300, 300);
    assert_all_ok(&s, "weight 100 behind a route lookup");
    assert_eq!(
        s.share("canary"),
        1.0,
        "some users kept the cached stable route"
    );

    // An unmatched host with a spoofed header: the cached route is canary; the removal
    // must send it back to stable.
    let r = stack
        .envoy
        .get("elsewhere", "/", &[("x-canary-version", "canary")])
        .unwrap();
    assert_eq!(
        r.header("x-served-by"),
        Some("stable"),
        "spoofed header kept its route"
    );

    let user = find_user(0.0, "stable", 2_000_000);
    stack.apply(&plugin_config(json!(0), json!({})), Some((&user, "stable")));
    let r = stack.send(&[("x-user-id", &user), ("x-canary-version", "canary")]);
    assert_eq!(
        r.header("x-served-by"),
        Some("stable"),
        "spoofed header kept its route"
    );
}

#[test]
fn users_are_sticky_and_raising_the_weight_never_moves_a_canary_user_back() {
    let stack = Stack::start(&plugin_config(json!(10), json!({})));
    // 500 users × 20 requests each, interleaved across 4 connections.
    let at_10 = stack.load(500, 500 * 20);
    assert_all_ok(&at_10, "weight 10");
    assert!(at_10.users.values().all(|r| r.requests == 20));
    assert_eq!(
        at_10.users_switched, 0,
        "a user saw both versions at a fixed weight"
    );
    let wrong = mismatches(&at_10, 10.0);
    assert!(wrong.is_empty(), "{wrong:?}");

    let before = stack.load(4000, 4000).user_versions();
    let newly_canary = find_user(25.0, "canary", 0);
    let newly_canary = (0..)
        .map(|n| format!("u{n}"))
        .find(|u| {
            expected_version(SALT, u, 10.0) == "stable"
                && expected_version(SALT, u, 25.0) == "canary"
        })
        .unwrap_or(newly_canary);
    stack.apply(
        &plugin_config(json!(25), json!({})),
        Some((&newly_canary, "canary")),
    );
    let after = stack.load(4000, 4000);
    assert_all_ok(&after, "weight 25");
    let after = after.user_versions();
    let canary_before: Vec<&String> = before
        .iter()
        .filter(|(_, v)| *v == "canary")
        .map(|(u, _)| u)
        .collect();
    assert!(
        canary_before.len() > 250,
        "about 10% of 4000 users are canary at 10"
    );
    let moved_back: Vec<&&String> = canary_before
        .iter()
        .filter(|u| after[**u] != "canary")
        .collect();
    assert!(
        moved_back.is_empty(),
        "canary users moved back to stable at 25: {moved_back:?}"
    );
    let moved_up = before
        .iter()
        .filter(|(u, v)| *v == "stable" && after[*u] == "canary")
        .count();
    let want_moved_up = (0..4000)
        .map(|n| format!("u{n}"))
        .filter(|u| {
            expected_version(SALT, u, 10.0) == "stable"
                && expected_version(SALT, u, 25.0) == "canary"
        })
        .count();
    assert_eq!(
        moved_up, want_moved_up,
        "exactly the hash's 10..25 band moves to canary"
    );
}

#[test]
fn twenty_reloads_under_load_fail_no_request() {
    let stack = Stack::start(&plugin_config(json!(10), json!({})));
    let mut opts = LoadOptions::new(stack.envoy.listener, HOST);
    opts.users = 2000;
    opts.connections = 4;
    opts.timeout = Duration::from_secs(20);
    // No duration: the load runs until every reload is done and at least 10 s have passed.
    let started = Instant::now();
    let running = load::start(opts);
    let counters_before = stack.envoy.ecds_counters().unwrap();
    let weights = [25.0, 50.0, 10.0, 75.0, 0.0, 100.0, 33.33, 5.0, 60.0, 90.0];
    for i in 0..20 {
        std::thread::sleep(Duration::from_millis(450));
        let weight = weights[i % weights.len()];
        stack
            .envoy
            .set_plugin_config_and_wait(
                &plugin_config(json!(weight), json!({})).to_string(),
                RELOAD_TIMEOUT,
            )
            .unwrap();
        let so_far = running.snapshot();
        assert_eq!(
            so_far.failures(),
            0,
            "failed requests by reload {}: {}",
            i + 1,
            so_far.to_json()
        );
    }
    if let Some(rest) = Duration::from_secs(10).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let s = running.stop();
    let counters_after = stack.envoy.ecds_counters().unwrap();
    assert_eq!(
        counters_after.reload - counters_before.reload,
        20,
        "every move was a reload"
    );
    assert_eq!(counters_after.fail, counters_before.fail);
    assert!(s.requests > 2000, "load kept flowing: {}", s.to_json());
    assert_all_ok(&s, "reloads under load");
    assert_eq!(
        s.by_version.get("none"),
        None,
        "every response came from a backend"
    );
    assert!(s.by_version.contains_key("canary") && s.by_version.contains_key("stable"));
    eprintln!("reload under load: {}", s.to_json());
}

#[test]
fn overrides_work_by_header_and_cookie_and_need_the_token_when_set() {
    let open = plugin_config(
        json!(0),
        json!({"override": {"header": "x-canary-override", "cookie": "stickycanary-override"}}),
    );
    let stack = Stack::start(&open);
    let served = |h: &[(&str, &str)]| stack.send(h).header("x-served-by").map(str::to_string);
    // Weight 0: the hash says stable for everybody, so canary can only come from an override.
    assert_eq!(served(&[("x-user-id", "u1")]).as_deref(), Some("stable"));
    assert_eq!(
        served(&[("x-user-id", "u1"), ("x-canary-override", "canary")]).as_deref(),
        Some("canary")
    );
    assert_eq!(
        served(&[
            ("x-user-id", "u1"),
            ("cookie", "a=b; stickycanary-override=canary")
        ])
        .as_deref(),
        Some("canary")
    );
    assert_eq!(
        served(&[("x-canary-override", "canary")]).as_deref(),
        Some("canary"),
        "override without identity"
    );
    assert_eq!(
        served(&[("x-user-id", "u1"), ("x-canary-override", "nonsense")]).as_deref(),
        Some("stable")
    );
    let r = stack.send(&[("x-user-id", "u1"), ("x-canary-override", "canary")]);
    assert_eq!(
        r.header("x-seen-canary-version"),
        Some("canary"),
        "upstream sees the filter's header"
    );

    // Weight 100: overriding to stable works the other way round.
    let all_canary = plugin_config(
        json!(100),
        json!({"override": {"header": "x-canary-override", "cookie": "stickycanary-override"}}),
    );
    stack.apply(&all_canary, Some(("u1", "canary")));
    assert_eq!(
        served(&[("x-user-id", "u1"), ("x-canary-override", "stable")]).as_deref(),
        Some("stable")
    );
    assert_eq!(
        served(&[
            ("x-user-id", "u1"),
            ("cookie", "stickycanary-override=stable")
        ])
        .as_deref(),
        Some("stable")
    );

    // With a token, a missing or wrong token is ignored.
    let with_token = plugin_config(
        json!(0),
        json!({"override": {"header": "x-canary-override", "cookie": "stickycanary-override", "token": "s3cret-token"}}),
    );
    stack.apply(&with_token, Some(("u1", "stable")));
    let o = ("x-canary-override", "canary");
    assert_eq!(
        served(&[("x-user-id", "u1"), o]).as_deref(),
        Some("stable"),
        "missing token"
    );
    assert_eq!(
        served(&[("x-user-id", "u1"), o, ("x-canary-override-token", "wrong")]).as_deref(),
        Some("stable"),
        "wrong token"
    );
    assert_eq!(
        served(&[
            ("x-user-id", "u1"),
            o,
            ("x-canary-override-token", "s3cret-tokeN")
        ])
        .as_deref(),
        Some("stable"),
        "near-miss token"
    );
    assert_eq!(
        served(&[
            ("x-user-id", "u1"),
            o,
            ("x-canary-override-token", "s3cret-token")
        ])
        .as_deref(),
        Some("canary"),
        "right token"
    );
    assert_eq!(
        served(&[
            ("x-user-id", "u1"),
            ("cookie", "stickycanary-override=canary"),
            ("x-canary-override-token", "s3cret-token")
        ])
        .as_deref(),
        Some("canary"),
        "cookie override with the right token"
    );
}

#[test]
fn a_client_sent_routing_header_never_reaches_routing_and_unmatched_hosts_pass_untouched() {
    let stack = Stack::start(&plugin_config(json!(0), json!({})));
    for spoof in ["x-canary-version", "X-Canary-Version", "X-CANARY-VERSION"] {
        let r = stack.send(&[("x-user-id", "u1"), (spoof, "canary")]);
        assert_eq!(
            r.header("x-served-by"),
            Some("stable"),
            "{spoof} spoof must not route"
        );
        assert_eq!(
            r.header("x-seen-canary-version"),
            Some("stable"),
            "{spoof}: upstream sees only the filter's value"
        );
    }
    // Two spoofed copies at once.
    let r = stack.send(&[
        ("x-user-id", "u1"),
        ("x-canary-version", "canary"),
        ("x-canary-version", "canary"),
    ]);
    assert_eq!(r.header("x-served-by"), Some("stable"));
    assert_eq!(r.header("x-seen-canary-version"), Some("stable"));

    stack.apply(
        &plugin_config(json!(100), json!({})),
        Some(("u1", "canary")),
    );
    let r = stack.send(&[("x-user-id", "u1"), ("x-canary-version", "stable")]);
    assert_eq!(r.header("x-served-by"), Some("canary"));
    assert_eq!(r.header("x-seen-canary-version"), Some("canary"));

    // A host no rollout matches: no assignment, no cookie, the spoofed header still removed.
    let other = |h: &[(&str, &str)]| stack.envoy.get("other.example", "/", h).unwrap();
    let r = other(&[("x-user-id", "u1")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-served-by"), Some("stable"));
    assert_eq!(
        r.header("x-seen-canary-version"),
        None,
        "unmatched host gets no routing header"
    );
    assert_eq!(
        r.header("x-seen-user-id"),
        Some("u1"),
        "other headers pass untouched"
    );
    assert_eq!(r.header("set-cookie"), None);
    let r = other(&[]);
    assert_eq!(
        r.header("set-cookie"),
        None,
        "no anonymous cookie for an unmatched host"
    );
    let r = other(&[("x-user-id", "u1"), ("x-canary-version", "canary")]);
    assert_eq!(
        r.header("x-served-by"),
        Some("stable"),
        "spoof on an unmatched host must not route"
    );
    assert_eq!(
        r.header("x-seen-canary-version"),
        None,
        "spoofed header removed on an unmatched host"
    );
}

/// Split a `Set-Cookie` value into its id and its lower-cased attributes.
fn parse_set_cookie(value: &str) -> (String, String, Vec<String>) {
    let mut parts = value.split(';').map(str::trim);
    let (name, id) = parts.next().unwrap().split_once('=').unwrap();
    (
        name.to_string(),
        id.to_string(),
        parts.map(str::to_ascii_lowercase).collect(),
    )
}

#[test]
fn anonymous_users_get_a_cookie_and_keep_their_version_with_it() {
    let stack = Stack::start(&plugin_config(json!(50), json!({})));
    let mut seen = BTreeMap::new();
    for _ in 0..60 {
        let r = stack.send(&[]);
        assert_eq!(r.status, 200);
        let cookies = r.header_all("set-cookie");
        assert_eq!(cookies.len(), 1, "exactly one Set-Cookie: {cookies:?}");
        let (name, id, attrs) = parse_set_cookie(cookies[0]);
        assert_eq!(name, "stickycanary-id");
        assert!(!id.is_empty());
        for want in ["path=/", "max-age=2592000", "httponly", "samesite=lax"] {
            assert!(
                attrs.iter().any(|a| a == want),
                "{want} missing in {:?}",
                cookies[0]
            );
        }
        assert!(
            !attrs.iter().any(|a| a == "secure"),
            "Secure only when configured"
        );
        let first = r.header("x-served-by").unwrap().to_string();
        assert_eq!(
            first,
            expected_version(SALT, &id, 50.0),
            "minted id {id} is hashed like a user id"
        );
        // Sending the cookie back keeps the user on the same version.
        let cookie = format!("stickycanary-id={id}");
        for _ in 0..5 {
            let again = stack.send(&[("cookie", &cookie)]);
            assert_eq!(
                again.header("x-served-by"),
                Some(first.as_str()),
                "anonymous user {id} flipped"
            );
            for c in again.header_all("set-cookie") {
                assert_eq!(
                    parse_set_cookie(c).1,
                    id,
                    "a returning user must keep the id"
                );
            }
        }
        seen.insert(id, first);
    }
    assert_eq!(seen.len(), 60, "every anonymous request gets a fresh id");
    let canary = seen.values().filter(|v| *v == "canary").count();
    assert!(
        (10..=50).contains(&canary),
        "about half of 60 anonymous users on canary, got {canary}"
    );

    // assign: stable sends identity-less requests to stable, without a cookie.
    stack.apply(
        &plugin_config(json!(100), json!({"anonymous": {"assign": "stable"}})),
        Some(("u1", "canary")),
    );
    for _ in 0..10 {
        let r = stack.send(&[]);
        assert_eq!(r.header("x-served-by"), Some("stable"));
        assert!(r.header_all("set-cookie").is_empty());
    }
}

/// The `stickycanary_requests_total` value for one label set (0 when absent).
fn requests_total(m: &[promtext::Sample], version: &str, code_class: &str, source: &str) -> f64 {
    promtext::sum(
        m,
        "stickycanary_requests_total",
        &[
            ("rollout", "checkout"),
            ("version", version),
            ("code_class", code_class),
            ("source", source),
        ],
    )
}

fn duration_bucket(m: &[promtext::Sample], version: &str, le: &str) -> f64 {
    promtext::sum(
        m,
        "stickycanary_request_duration_ms_bucket",
        &[
            ("rollout", "checkout"),
            ("version", version),
            ("source", "hash"),
            ("le", le),
        ],
    )
}

fn duration_count(m: &[promtext::Sample], version: &str, source: &str) -> f64 {
    promtext::sum(
        m,
        "stickycanary_request_duration_ms_count",
        &[
            ("rollout", "checkout"),
            ("version", version),
            ("source", source),
        ],
    )
}

/// Poll Envoy's metrics until `done` holds (stats land in `on_log`, after the response, and
/// histograms are merged on the stats flush), then return them.
fn metrics_when(
    stack: &Stack,
    what: &str,
    done: impl Fn(&[promtext::Sample]) -> bool,
) -> Vec<promtext::Sample> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = stack.metrics();
        if done(&m) {
            return m;
        }
        if Instant::now() >= deadline {
            let ours: Vec<String> = m
                .iter()
                .filter(|s| s.name.starts_with("stickycanary_"))
                .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
                .collect();
            panic!("metrics never reached: {what}\n{}", ours.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn metrics_count_exactly_what_was_sent_per_version_code_class_and_source() {
    let config = plugin_config(
        json!(50),
        json!({"override": {"header": "x-canary-override", "cookie": "stickycanary-override"}}),
    );
    // The canary fails every 4th request with 503; stable always answers 200.
    let canary_behaviour = Behaviour {
        error_ratio: 0.25,
        ..Behaviour::default()
    };
    let stack = Stack::start_with(&config, Behaviour::default(), canary_behaviour);
    let base = stack.metrics();
    stack.stable.control(&BehaviourPatch::default()).unwrap();
    stack.canary.control(&BehaviourPatch::default()).unwrap(); // resets the error counter

    let s = stack.load(3000, 3000);
    assert_eq!(s.transport_errors, 0, "{}", s.to_json());
    let want_canary = (0..3000)
        .filter(|n| expected_version(SALT, &format!("u{n}"), 50.0) == "canary")
        .count() as u64;
    let want_stable = 3000 - want_canary;
    let canary_5xx = want_canary / 4; // exactly every 4th canary request
    assert_eq!(s.by_version.get("canary"), Some(&want_canary));
    assert_eq!(s.non_2xx_by_version.get("canary"), Some(&canary_5xx));
    assert_eq!(stack.canary.counts().unwrap(), (want_canary, canary_5xx));

    let delta = |m: &[promtext::Sample], v: &str, c: &str, src: &str| {
        requests_total(m, v, c, src) - requests_total(&base, v, c, src)
    };
    let m = metrics_when(&stack, "3000 hash requests counted", |m| {
        ["stable", "canary"]
            .iter()
            .flat_map(|v| ["2xx", "5xx"].map(|c| delta(m, v, c, "hash")))
            .sum::<f64>()
            >= 3000.0
    });
    assert_eq!(delta(&m, "stable", "2xx", "hash"), want_stable as f64);
    assert_eq!(delta(&m, "stable", "5xx", "hash"), 0.0);
    assert_eq!(
        delta(&m, "canary", "2xx", "hash"),
        (want_canary - canary_5xx) as f64
    );
    assert_eq!(delta(&m, "canary", "5xx", "hash"), canary_5xx as f64);
    for v in ["stable", "canary"] {
        for c in ["1xx", "3xx", "4xx", "none"] {
            assert_eq!(delta(&m, v, c, "hash"), 0.0, "{v} {c}");
        }
    }
    // The labels the contract names are real Prometheus labels on both series.
    let series = promtext::select(&m, "stickycanary_requests_total", &[]);
    assert!(series
        .iter()
        .all(|s| ["rollout", "version", "code_class", "source"]
            .iter()
            .all(|l| s.label(l).is_some())));
    let hist = promtext::select(&m, "stickycanary_request_duration_ms_count", &[]);
    assert!(!hist.is_empty());
    assert!(hist.iter().all(|s| ["rollout", "version", "source"]
        .iter()
        .all(|l| s.label(l).is_some())));

    // Override traffic is labelled source="override".
    let before = stack.metrics();
    let stable_user = find_user(50.0, "stable", 0);
    for _ in 0..25 {
        let r = stack.send(&[("x-user-id", &stable_user), ("x-canary-override", "canary")]);
        assert_eq!(r.header("x-served-by"), Some("canary"));
    }
    let m = metrics_when(&stack, "25 override requests", |m| {
        requests_total(m, "canary", "2xx", "override")
            + requests_total(m, "canary", "5xx", "override")
            - requests_total(&before, "canary", "2xx", "override")
            - requests_total(&before, "canary", "5xx", "override")
            >= 25.0
    });
    let over = |m: &[promtext::Sample]| {
        requests_total(m, "canary", "2xx", "override")
            + requests_total(m, "canary", "5xx", "override")
    };
    assert_eq!(over(&m) - over(&before), 25.0);
    assert_eq!(
        requests_total(&m, "stable", "2xx", "hash")
            + requests_total(&m, "canary", "2xx", "hash")
            + requests_total(&m, "canary", "5xx", "hash"),
        requests_total(&before, "stable", "2xx", "hash")
            + requests_total(&before, "canary", "2xx", "hash")
            + requests_total(&before, "canary", "5xx", "hash"),
        "override requests are not counted as hash traffic"
    );

    // A canary delayed by 200 ms lands in the buckets at or above 200 ms.
    stack
        .canary
        .control(&BehaviourPatch {
            error_ratio: Some(0.0),
            delay_ms: Some(200),
            ..BehaviourPatch::default()
        })
        .unwrap();
    let before = metrics_when(&stack, "histograms flushed", |m| {
        duration_count(m, "canary", "hash") >= want_canary as f64
    });
    let canary_users: Vec<String> = (0..)
        .map(|n| format!("u{n}"))
        .filter(|u| expected_version(SALT, u, 50.0) == "canary")
        .take(20)
        .collect();
    std::thread::scope(|scope| {
        for chunk in canary_users.chunks(5) {
            let stack = &stack;
            scope.spawn(move || {
                for u in chunk {
                    let r = stack.send(&[("x-user-id", u)]);
                    assert_eq!(r.header("x-served-by"), Some("canary"));
                }
            });
        }
    });
    let m = metrics_when(&stack, "20 slow canary requests in the histogram", |m| {
        duration_count(m, "canary", "hash") - duration_count(&before, "canary", "hash") >= 20.0
    });
    assert_eq!(
        duration_count(&m, "canary", "hash") - duration_count(&before, "canary", "hash"),
        20.0
    );
    for le in ["5", "10", "25", "50", "100"] {
        assert_eq!(
            duration_bucket(&m, "canary", le) - duration_bucket(&before, "canary", le),
            0.0,
            "a 200 ms request landed in le={le}"
        );
    }
    assert_eq!(
        duration_bucket(&m, "canary", "+Inf") - duration_bucket(&before, "canary", "+Inf"),
        20.0
    );
    assert!(
        duration_bucket(&m, "canary", "200") + duration_bucket(&m, "canary", "250") > 0.0,
        "le=200 and le=250 buckets exist"
    );
}

#[test]
fn bad_configs_are_rejected_with_a_named_reason_and_the_previous_split_keeps_serving() {
    let good = plugin_config(json!(50), json!({}));
    let stack = Stack::start(&good);
    let reference = stack.load(1000, 1000);
    assert_all_ok(&reference, "good config");
    let wrong = mismatches(&reference, 50.0);
    assert!(wrong.is_empty(), "{wrong:?}");

    let rollout = |extra: Value| plugin_config(json!(50), extra).to_string();
    let mut bad_name = json!({"rollouts": {"Check_Out": {"hosts": [HOST], "weight": 50}}});
    bad_name["rollouts"]["Check_Out"]["salt"] = json!(SALT);
    // (config text, the words the log line must contain, case-insensitive)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "malformed JSON",
            r#"{"rollouts": {"checkout": {"hosts": ["checkout"], "weight": 5"#.to_string(),
            vec!["json"],
        ),
        (
            "unknown field",
            rollout(json!({"colour": "blue"})),
            vec!["colour"],
        ),
        (
            "weight 150",
            plugin_config(json!(150), json!({})).to_string(),
            vec!["weight", "150"],
        ),
        (
            "weight \"ten\"",
            plugin_config(json!("ten"), json!({})).to_string(),
            vec!["weight"],
        ),
        ("empty hosts", rollout(json!({"hosts": []})), vec!["hosts"]),
        ("bad rollout name", bad_name.to_string(), vec!["check_out"]),
    ];
    for (what, config, words) in &cases {
        let log_before = stack.envoy.log_text().len();
        let outcome = stack
            .envoy
            .set_plugin_config_and_wait(config, RELOAD_TIMEOUT)
            .unwrap();
        // Envoy runs on_configure on the main thread when the ECDS resource arrives; `false`
        // makes it refuse the update (config_fail), which is what keeps the old config serving.
        assert_eq!(
            outcome,
            EcdsOutcome::Failed,
            "{what}: Envoy accepted a bad config"
        );
        // The filter's log line naming the problem (wasm logs carry the plugin name).
        let deadline = Instant::now() + Duration::from_secs(20);
        let line = loop {
            // Envoy creates the plugin on a worker at the first request after the move.
            let _ = stack.envoy.get(HOST, "/", &[("x-user-id", "probe")]);
            let log = stack.envoy.log_text();
            let new = log.get(log_before..).unwrap_or("").to_string();
            let hit = new.lines().find(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("stickycanary")
                    && words.iter().all(|w| l.contains(&w.to_ascii_lowercase()))
            });
            if let Some(hit) = hit {
                break hit.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no log line naming {words:?}; new log:\n{new}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        eprintln!("{what}: ECDS {outcome:?}; {line}");
        let s = stack.load(1000, 1000);
        assert_all_ok(&s, &format!("after {what}"));
        assert_eq!(
            s.user_versions(),
            reference.user_versions(),
            "after {what}: the split changed"
        );
    }

    // A good config still applies afterwards.
    let probe = find_user(10.0, "stable", 0);
    let probe = (0..)
        .map(|n| format!("u{n}"))
        .find(|u| {
            expected_version(SALT, u, 50.0) == "canary"
                && expected_version(SALT, u, 10.0) == "stable"
        })
        .unwrap_or(probe);
    stack.apply(
        &plugin_config(json!(10), json!({})),
        Some((&probe, "stable")),
    );
    let s = stack.load(1000, 1000);
    assert_all_ok(&s, "good config after the bad ones");
    let wrong = mismatches(&s, 10.0);
    assert!(wrong.is_empty(), "{wrong:?}");
}

#[test]
fn hosts_match_without_port_case_insensitively_and_by_wildcard_and_the_version_header_is_opt_in() {
    let config = |expose: bool| {
        json!({"exposeVersionHeader": expose, "rollouts": {
            "checkout": {"hosts": [HOST, "*.shop.example.com"], "weight": 100, "salt": SALT}
        }})
    };
    let stack = Stack::start(&config(false));
    let served = |host: &str| {
        let r = stack.envoy.get(host, "/", &[("x-user-id", "u1")]).unwrap();
        (
            r.header("x-seen-canary-version").map(str::to_string),
            r.header("x-canary-version").map(str::to_string),
        )
    };
    for host in [
        "checkout",
        "CheckOut",
        "checkout:8080",
        "a.shop.example.com",
        "A.Shop.Example.Com:443",
    ] {
        assert_eq!(
            served(host).0.as_deref(),
            Some("canary"),
            "{host} should match the rollout"
        );
        assert_eq!(
            served(host).1,
            None,
            "{host}: no version header unless exposeVersionHeader"
        );
    }
    for host in [
        "checkout.other",
        "shop.example.com",
        "xcheckout",
        "example.com",
    ] {
        assert_eq!(served(host).0, None, "{host} must not match");
    }
    stack.apply(&config(true), None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while served("checkout").1.is_none() {
        assert!(
            Instant::now() < deadline,
            "exposeVersionHeader never took effect"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..20 {
        assert_eq!(served("checkout").1.as_deref(), Some("canary"));
    }
    assert_eq!(
        served("elsewhere").1,
        None,
        "unmatched hosts get no version header"
    );
}

#[test]
fn identity_is_the_first_non_empty_source_in_order_header_then_cookie() {
    let config = plugin_config(
        json!(50),
        json!({"identity": [{"header": "x-user-id"}, {"cookie": "session"}]}),
    );
    let stack = Stack::start(&config);
    let canary_user = find_user(50.0, "canary", 0);
    let stable_user = find_user(50.0, "stable", 0);
    let served = |h: &[(&str, &str)]| {
        let r = stack.send(h);
        assert!(
            r.header_all("set-cookie").is_empty(),
            "an identified user gets no anonymous cookie: {h:?}"
        );
        r.header("x-served-by").unwrap().to_string()
    };
    let session = |u: &str| format!("theme=dark; session={u}; other=1");
    for _ in 0..5 {
        assert_eq!(served(&[("cookie", &session(&canary_user))]), "canary");
        assert_eq!(served(&[("cookie", &session(&stable_user))]), "stable");
        // The header comes first in `identity`, so it wins over the cookie.
        assert_eq!(
            served(&[
                ("x-user-id", &stable_user),
                ("cookie", &session(&canary_user))
            ]),
            "stable"
        );
        assert_eq!(
            served(&[
                ("x-user-id", &canary_user),
                ("cookie", &session(&stable_user))
            ]),
            "canary"
        );
        // An empty header is no identity: the cookie decides.
        assert_eq!(
            served(&[("x-user-id", ""), ("cookie", &session(&canary_user))]),
            "canary"
        );
    }
}

/// `x-served-by` of one HTTP/2 (prior knowledge, cleartext) request sent by curl, each
/// `cookie` given as its own header field (a cookie crumb, RFC 9113 8.2.3).
fn http2_served_by(envoy: &Envoy, cookies: &[&str]) -> Option<String> {
    let mut command = std::process::Command::new("curl");
    command.args([
        "-s",
        "--http2-prior-knowledge",
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "-H",
        &format!("host: {HOST}"),
    ]);
    for cookie in cookies {
        command.args(["-H", &format!("cookie: {cookie}")]);
    }
    let output = command
        .arg(format!("http://{}/", envoy.listener))
        .output()
        .expect("curl runs");
    let head = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(head.starts_with("HTTP/2 "), "not an HTTP/2 answer: {head}");
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("x-served-by")
            .then(|| value.trim().to_string())
    })
}

#[test]
fn an_identity_cookie_in_a_later_cookie_header_or_crumb_routes_the_user() {
    // Issue 15.1: HTTP/1.1 clients and proxies may split cookies over several `Cookie`
    // headers; a filter that read only the first treated these users as anonymous.
    let config = plugin_config(json!(50), json!({"identity": [{"cookie": "session"}]}));
    let stack = Stack::start(&config);
    let mut by_version = BTreeMap::new();
    for n in 0..40 {
        let user = format!("u{n}");
        let want = expected_version(SALT, &user, 50.0);
        let session = format!("session={user}; z=9");
        let reply = stack.send(&[("cookie", "theme=dark"), ("cookie", &session)]);
        assert_eq!(
            reply.header("x-served-by"),
            Some(want),
            "HTTP/1.1, session in the second Cookie header: {user}"
        );
        assert!(
            reply.header_all("set-cookie").is_empty(),
            "HTTP/1.1: {user} was treated as anonymous"
        );
        // HTTP/2: Envoy joins the crumbs into one header before filters run.
        assert_eq!(
            http2_served_by(&stack.envoy, &["theme=dark", &session]).as_deref(),
            Some(want),
            "HTTP/2, session in the second cookie crumb: {user}"
        );
        *by_version.entry(want).or_insert(0) += 1;
    }
    assert_eq!(by_version.len(), 2, "both versions tested: {by_version:?}");
}

/// `stickycanary_shard_requests_total` of rollout `checkout`, keyed by (version, shard, outcome).
fn shard_series(m: &[promtext::Sample]) -> BTreeMap<(String, String, String), f64> {
    m.iter()
        .filter(|s| {
            s.name == "stickycanary_shard_requests_total" && s.label("rollout") == Some("checkout")
        })
        .map(|s| {
            let label = |name: &str| s.label(name).unwrap_or("?").to_string();
            (
                (label("version"), label("shard"), label("outcome")),
                s.value,
            )
        })
        .collect()
}

#[test]
fn shard_counters_put_each_user_in_one_shard_and_spread_users_over_all_of_them() {
    // Issue 17.1 through the real Envoy: 2 versions x 16 shards x 3 outcomes, defined when the
    // config loads; a user's requests all land in the shard the filter's hash gives them;
    // different users spread over every shard of both versions.
    let stack = Stack::start(&plugin_config(json!(50), json!({})));
    // The start-up probe requests are counted in `on_log`, which may run just after their
    // response: let it land before taking the baseline.
    std::thread::sleep(Duration::from_millis(300));
    let before = shard_series(&stack.metrics());
    assert_eq!(before.len(), 96, "series: {:?}", before.keys());
    for version in ["stable", "canary"] {
        for shard in 0..16 {
            for outcome in ["ok", "slow", "error"] {
                let key = (version.to_string(), shard.to_string(), outcome.to_string());
                assert!(before.contains_key(&key), "missing {key:?}");
            }
        }
    }

    // One user, 25 requests: exactly one series moves, by 25.
    let user = "sticky-user-7";
    let placement = assign::placement(SALT, user.as_bytes());
    let version = expected_version(SALT, user, 50.0);
    for _ in 0..25 {
        assert_eq!(
            stack.send(&[("x-user-id", user)]).header("x-served-by"),
            Some(version)
        );
    }
    let key = (
        version.to_string(),
        placement.shard.to_string(),
        "ok".to_string(),
    );
    let after_one = shard_series(&metrics_when(&stack, "25 requests of one user", |m| {
        shard_series(m).get(&key).copied().unwrap_or(0.0) >= before[&key] + 25.0
    }));
    for (series, value) in &after_one {
        let moved = value - before[series];
        let want = if *series == key { 25.0 } else { 0.0 };
        assert_eq!(moved, want, "{series:?}");
    }

    // 640 users, one request each: every shard of both versions gets users, and each shard
    // counts exactly the users the hash puts there.
    let mut want: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for n in 0..640 {
        let user = format!("spread-{n}");
        let placement = assign::placement(SALT, user.as_bytes());
        let version = expected_version(SALT, &user, 50.0);
        assert_eq!(
            stack.send(&[("x-user-id", &user)]).header("x-served-by"),
            Some(version)
        );
        *want
            .entry((
                version.to_string(),
                placement.shard.to_string(),
                "ok".to_string(),
            ))
            .or_insert(0.0) += 1.0;
    }
    assert_eq!(
        want.len(),
        32,
        "every shard of both versions has users: {want:?}"
    );
    let total = |m: &BTreeMap<(String, String, String), f64>| m.values().sum::<f64>();
    let after_spread = shard_series(&metrics_when(&stack, "640 users", |m| {
        total(&shard_series(m)) >= total(&after_one) + 640.0
    }));
    for (series, value) in &after_spread {
        let moved = value - after_one[series];
        assert_eq!(
            moved,
            want.get(series).copied().unwrap_or(0.0),
            "{series:?}"
        );
    }
}
