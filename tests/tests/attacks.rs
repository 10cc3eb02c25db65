//! Hostile input against the real Envoy 1.40 running the built filter (issue 7, "Attack cases").
//!
//! Every request goes out as raw bytes on a fresh loopback connection, so header case,
//! repetition, non-UTF-8 bytes and oversized values reach Envoy exactly as written. The
//! `sc-backend` upstreams answer with `x-served-by` (which version got the request) and
//! `x-seen-canary-version` (every routing-header value that reached them), so each response
//! shows whether the request reached the version it should. A request Envoy refuses itself
//! (a 4xx that never reached a backend) is safe and allowed where the case says so.
//!
//! After each group: Envoy is still running and ready, its log has no `panic` and no
//! `critical` line, and the backends' own counters agree with what the responses said.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stickycanary_e2e::backend::Backend;
use stickycanary_e2e::backend_server::Behaviour;
use stickycanary_e2e::envoy::{EcdsOutcome, Envoy, EnvoyOptions};
use stickycanary_e2e::{paths, promtext};
use stickycanary_filter::assign;

const BACKEND: &str = env!("CARGO_BIN_EXE_sc-backend");
const HOST: &str = "checkout";
const SALT: &str = "checkout";
const TOKEN: &str = "tok-7f3a9c2e51b84d06";
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The rollout under attack. Identity: header `x-user-id`, then cookie `session`; overrides
/// guarded by [`TOKEN`]; anonymous users get a minted cookie.
fn plugin_config(weight: f64) -> Value {
    json!({"rollouts": {"checkout": {
        "hosts": [HOST, "*.shop.example.com", "[::1]", "10.1.2.3"],
        "weight": weight,
        "salt": SALT,
        "identity": [{"header": "x-user-id"}, {"cookie": "session"}],
        "override": {"token": TOKEN}
    }}})
}

/// Contract 2 for a raw user id, computed here (not by the filter) from the hash and weight.
fn version_of(user: &[u8], weight: f64) -> &'static str {
    if assign::is_canary(assign::bucket_bytes(SALT, user), weight) {
        "canary"
    } else {
        "stable"
    }
}

fn user_with(weight: f64, version: &str) -> String {
    (0..100_000)
        .map(|n| format!("u{n}"))
        .find(|u| version_of(u.as_bytes(), weight) == version)
        .unwrap()
}

/// Envoy and its two backends for one test; dropped in field order.
struct Rig {
    envoy: Envoy,
    stable: Backend,
    canary: Backend,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn start(config: &Value) -> Rig {
        let wasm = paths::wasm_path().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap();
        let bin = Path::new(BACKEND);
        let stable = Backend::start_with_bin(bin, "stable", Behaviour::default(), dir.path())
            .expect("stable backend");
        let canary = Backend::start_with_bin(bin, "canary", Behaviour::default(), dir.path())
            .expect("canary backend");
        let mut opts = EnvoyOptions::new(stable.addr, canary.addr);
        opts.wasm = Some(wasm);
        let envoy = Envoy::start(&opts, &config.to_string()).expect("envoy");
        let rig = Rig {
            envoy,
            stable,
            canary,
            _dir: dir,
        };
        // Ready is reported before a worker ran the filter's first on_configure.
        rig.wait_version("probe", version_of(b"probe", weight_of(config)));
        rig
    }

    /// Poll until 20 fresh connections in a row give `user` the `version`.
    fn wait_version(&self, user: &str, version: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut in_a_row = 0;
        while in_a_row < 20 {
            let r = self.send(HOST.as_bytes(), &[hv(b"x-user-id", user.as_bytes())]);
            if r.served_by() == Some(version) {
                in_a_row += 1;
            } else {
                in_a_row = 0;
                assert!(
                    Instant::now() < deadline,
                    "{user} never got {version}: {r:?}\n{}",
                    self.envoy.log_tail(30)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn apply(&self, config: &Value, probe_user: &str) {
        let outcome = self
            .envoy
            .set_plugin_config_and_wait(&config.to_string(), RELOAD_TIMEOUT)
            .unwrap();
        assert_eq!(outcome, EcdsOutcome::Reloaded, "a good config was refused");
        self.wait_version(
            probe_user,
            version_of(probe_user.as_bytes(), weight_of(config)),
        );
    }

    /// `GET /` with `Host: host` and `extra` header lines, as raw bytes.
    fn send(&self, host: &[u8], extra: &[(&[u8], &[u8])]) -> Reply {
        self.send_to("/", host, extra).0
    }

    /// `GET path`, like [`Rig::send`]; also returns the response body.
    fn send_to(&self, path: &str, host: &[u8], extra: &[(&[u8], &[u8])]) -> (Reply, Vec<u8>) {
        let mut head = format!("GET {path} HTTP/1.1\r\nhost: ").into_bytes();
        head.extend_from_slice(host);
        head.extend_from_slice(b"\r\n");
        for (name, value) in extra {
            head.extend_from_slice(name);
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"connection: close\r\n\r\n");
        raw_exchange(self.envoy.listener, &head)
    }

    /// (stable requests, canary requests) the backends served so far.
    fn backend_counts(&self) -> (u64, u64) {
        (
            self.stable.counts().unwrap().0,
            self.canary.counts().unwrap().0,
        )
    }
}

/// One raw header line: `(name, value)` as bytes.
type HeaderLine<'a> = (&'a [u8], &'a [u8]);

/// One raw header line `(name, value)`; a function so byte-string literals of any length coerce.
fn hv<'a>(name: &'a [u8], value: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    (name, value)
}

fn weight_of(config: &Value) -> f64 {
    config["rollouts"]["checkout"]["weight"].as_f64().unwrap()
}

/// What came back for one raw request.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn served_by(&self) -> Option<&str> {
        self.header("x-served-by")
    }
    /// Envoy refused the request itself: a 4xx that no backend answered, or a closed connection.
    fn rejected_by_envoy(&self) -> bool {
        self.served_by().is_none() && (self.status == 0 || (400..500).contains(&self.status))
    }
    /// The minted anonymous id from `Set-Cookie: stickycanary-id=<id>; ...`.
    fn minted_id(&self) -> Option<String> {
        let value = self.header("set-cookie")?;
        let pair = value.split(';').next()?;
        pair.strip_prefix("stickycanary-id=").map(str::to_string)
    }
}

/// Write `request`, read until the server closes (the request asked for `connection: close`).
fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (Reply, Vec<u8>) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // Envoy may answer and close a connection it refuses while we are still writing, or reset
    // it: keep whatever arrived. Nothing at all counts as refused (status 0).
    let _ = stream.write_all(request);
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    if bytes.is_empty() {
        let refused = Reply {
            status: 0,
            headers: Vec::new(),
        };
        return (refused, Vec::new());
    }
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {:?}", String::from_utf8_lossy(&bytes)));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = bytes.get(end + 4..).unwrap_or_default().to_vec();
    (Reply { status, headers }, body)
}

/// The request reached `version`, and the upstream saw exactly the filter's routing header
/// (`None`: no routing header at all, for requests no rollout owns).
fn assert_reached(reply: &Reply, version: &str, seen: Option<&str>, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {reply:?}");
    assert_eq!(reply.served_by(), Some(version), "{what}: {reply:?}");
    assert_eq!(
        reply.header("x-seen-canary-version"),
        seen,
        "{what}: the upstream saw a routing header the filter did not set: {reply:?}"
    );
}

/// A matched request reached the version the filter chose for it, and only that.
fn assert_routed(reply: &Reply, version: &str, what: &str) {
    assert_reached(reply, version, Some(version), what);
}

/// Either Envoy refused the request, or it reached `version` as [`assert_routed`] says.
fn assert_routed_or_refused(reply: &Reply, version: &str, what: &str) {
    if reply.rejected_by_envoy() {
        eprintln!("{what}: refused by Envoy with {}", reply.status);
    } else {
        assert_routed(reply, version, what);
    }
}

/// Envoy's own critical-level lines when a config is refused (the filter returned false from
/// `on_configure`): expected after a deliberate bad config, and nothing else is tolerated.
const CONFIG_REFUSED_LINES: [&str; 2] = [
    "Plugin stickycanary failed to load",
    "Plugin configured to fail closed failed to load",
];

/// Envoy still runs and is ready, and its log shows no panic and nothing at critical level
/// (apart from Envoy's own lines for a refused config, when `configs_refused`).
fn assert_envoy_healthy(rig: &mut Rig, group: &str) {
    assert_envoy_healthy_with(rig, group, false);
}

fn assert_envoy_healthy_with(rig: &mut Rig, group: &str, configs_refused: bool) {
    assert!(
        rig.envoy.child_mut().exit_status().is_none(),
        "{group}: Envoy exited\n{}",
        rig.envoy.log_tail(40)
    );
    rig.envoy
        .admin_get("/ready")
        .unwrap_or_else(|e| panic!("{group}: Envoy not ready: {e}"));
    let log = rig.envoy.log_text();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            let expected =
                configs_refused && CONFIG_REFUSED_LINES.iter().any(|known| l.contains(known));
            lower.contains("panic") || (lower.contains("critical") && !expected)
        })
        .collect();
    assert!(bad.is_empty(), "{group}: Envoy log has {bad:#?}");
}

#[test]
fn a_client_routing_header_in_any_case_or_repeated_never_chooses_the_version() {
    let mut rig = Rig::start(&plugin_config(0.0));
    let user = "u1";
    let spoofs: Vec<(&str, Vec<HeaderLine>)> = vec![
        ("lower case", vec![hv(b"x-canary-version", b"canary")]),
        ("mixed case", vec![hv(b"X-Canary-Version", b"canary")]),
        ("upper case", vec![hv(b"X-CANARY-VERSION", b"canary")]),
        (
            "repeated",
            vec![
                hv(b"x-canary-version", b"canary"),
                hv(b"X-Canary-Version", b"canary"),
            ],
        ),
        (
            "stable then canary",
            vec![
                hv(b"x-canary-version", b"stable"),
                hv(b"x-canary-version", b"canary"),
            ],
        ),
        ("a list", vec![hv(b"x-canary-version", b"canary, canary")]),
        ("padded", vec![hv(b"x-canary-version", b"  canary  ")]),
    ];
    let before = rig.backend_counts();
    let mut sent = 0;
    for (what, spoof) in &spoofs {
        // An identified user, an anonymous one, and a host no rollout owns.
        let mut identified = spoof.clone();
        identified.push(hv(b"x-user-id", user.as_bytes()));
        assert_routed(
            &rig.send(HOST.as_bytes(), &identified),
            "stable",
            &format!("{what}, identified"),
        );
        let anonymous = rig.send(HOST.as_bytes(), spoof);
        let minted = anonymous.minted_id().expect("a minted id");
        assert_routed(
            &anonymous,
            version_of(minted.as_bytes(), 0.0),
            &format!("{what}, anonymous"),
        );
        assert_reached(
            &rig.send(b"elsewhere.example", &identified),
            "stable",
            None,
            &format!("{what}, unmatched host"),
        );
        sent += 3;
    }
    // A malformed spoof (space before the colon) is Envoy's to refuse.
    let odd = rig.send(
        HOST.as_bytes(),
        &[hv(b"x-canary-version ", b"canary"), hv(b"x-user-id", b"u1")],
    );
    assert_routed_or_refused(&odd, "stable", "space before the colon");
    if !odd.rejected_by_envoy() {
        sent += 1;
    }
    let after = rig.backend_counts();
    assert_eq!(after.1, before.1, "a spoofed request reached canary");
    assert_eq!(after.0 - before.0, sent, "stable served a different count");
    assert_envoy_healthy(&mut rig, "spoof at weight 0");

    // At 100 % a spoofed `stable` must not pull anyone back either.
    rig.apply(&plugin_config(100.0), user);
    let before = rig.backend_counts();
    for (what, spoof) in [
        ("stable", vec![(&b"x-canary-version"[..], &b"stable"[..])]),
        (
            "stable twice",
            vec![
                (&b"X-Canary-Version"[..], &b"stable"[..]),
                (&b"x-canary-version"[..], &b"stable"[..]),
            ],
        ),
    ] {
        let mut headers = spoof.clone();
        headers.push(hv(b"x-user-id", user.as_bytes()));
        assert_routed(
            &rig.send(HOST.as_bytes(), &headers),
            "canary",
            &format!("{what} at 100%"),
        );
    }
    let after = rig.backend_counts();
    assert_eq!(
        after.0, before.0,
        "a spoofed request reached stable at 100%"
    );
    assert_envoy_healthy(&mut rig, "spoof at weight 100");
}

#[test]
fn an_override_counts_only_with_the_exact_token() {
    let mut rig = Rig::start(&plugin_config(0.0));
    let user = user_with(0.0, "stable");
    let last_byte_differs = {
        let mut t = TOKEN.as_bytes().to_vec();
        let last = t.len() - 1;
        t[last] = if t[last] == b'6' { b'7' } else { b'6' };
        t
    };
    let prefix = &TOKEN.as_bytes()[..TOKEN.len() - 1];
    let longer = format!("{TOKEN}0");
    let upper = TOKEN.to_ascii_uppercase();
    let token_cookie = format!("x-canary-override-token={TOKEN}");
    let no_token: Vec<(&str, Vec<HeaderLine>)> = vec![
        (
            "header, no token",
            vec![hv(b"x-canary-override", b"canary")],
        ),
        (
            "cookie, no token",
            vec![hv(b"cookie", b"stickycanary-override=canary")],
        ),
        (
            "wrong token",
            vec![
                hv(b"x-canary-override", b"canary"),
                hv(b"x-canary-override-token", b"nope"),
            ],
        ),
        (
            "last byte differs",
            vec![
                hv(b"x-canary-override", b"canary"),
                hv(b"x-canary-override-token", &last_byte_differs),
            ],
        ),
        (
            "missing last byte",
            vec![
                hv(b"x-canary-override", b"canary"),
                hv(b"x-canary-override-token", prefix),
            ],
        ),
        (
            "one byte too many",
            vec![
                hv(b"x-canary-override", b"canary"),
                hv(b"x-canary-override-token", longer.as_bytes()),
            ],
        ),
        (
            "upper-cased token",
            vec![
                hv(b"x-canary-override", b"canary"),
                hv(b"x-canary-override-token", upper.as_bytes()),
            ],
        ),
        (
            "empty token",
            vec![
                hv(b"x-canary-override", b"canary"),
                hv(b"x-canary-override-token", b""),
            ],
        ),
        (
            "token as a cookie, not the header",
            vec![
                hv(b"x-canary-override", b"canary"),
                hv(b"cookie", token_cookie.as_bytes()),
            ],
        ),
        (
            "cookie override, wrong token",
            vec![
                hv(b"cookie", b"stickycanary-override=canary"),
                hv(b"x-canary-override-token", &last_byte_differs),
            ],
        ),
    ];
    let before = rig.backend_counts();
    for (what, attempt) in &no_token {
        let mut headers = attempt.clone();
        headers.push(hv(b"x-user-id", user.as_bytes()));
        assert_routed(&rig.send(HOST.as_bytes(), &headers), "stable", what);
    }
    assert_eq!(
        rig.backend_counts().1,
        before.1,
        "an override without the exact token reached canary"
    );

    // The controls: with the exact token both override forms work.
    for (what, form) in [
        ("header", (&b"x-canary-override"[..], &b"canary"[..])),
        (
            "cookie",
            (&b"cookie"[..], &b"stickycanary-override=canary"[..]),
        ),
    ] {
        let headers = [
            form,
            hv(b"x-canary-override-token", TOKEN.as_bytes()),
            hv(b"x-user-id", user.as_bytes()),
        ];
        assert_routed(
            &rig.send(HOST.as_bytes(), &headers),
            "canary",
            &format!("{what} override with the token"),
        );
    }
    assert_eq!(rig.backend_counts().1, before.1 + 2);
    assert_envoy_healthy(&mut rig, "override tokens");
}

/// How a cookie case must come out: one user id (cookies parsed as Envoy parses them, every
/// `Cookie` line in order), or anonymous (no usable `session` value).
enum Expect {
    User(Vec<u8>),
    Anonymous,
}

#[test]
fn hostile_cookies_never_send_a_request_to_a_wrong_version() {
    let weight = 50.0;
    let mut rig = Rig::start(&plugin_config(weight));
    let big = "x".repeat(8 * 1024);
    let non_utf8: Vec<u8> = (0x80..=0xffu8).collect();
    let cookie = |value: &[u8]| {
        let mut c = b"session=".to_vec();
        c.extend_from_slice(value);
        c
    };
    let cases: Vec<(&str, Vec<Vec<u8>>, Expect)> = vec![
        (
            "plain",
            vec![b"session=abc".to_vec()],
            Expect::User(b"abc".to_vec()),
        ),
        (
            "quoted",
            vec![b"session=\"abc\"".to_vec()],
            Expect::User(b"abc".to_vec()),
        ),
        (
            "'=' inside the value",
            vec![b"session=a=b=c".to_vec()],
            Expect::User(b"a=b=c".to_vec()),
        ),
        (
            "';' inside quotes splits the pair",
            vec![b"session=\"a;b\"".to_vec()],
            Expect::User(b"\"a".to_vec()),
        ),
        (
            "a lone quote",
            vec![b"session=\"".to_vec()],
            Expect::User(b"\"".to_vec()),
        ),
        (
            "duplicate names: the first wins",
            vec![b"other=1;session=first; session=second".to_vec()],
            Expect::User(b"first".to_vec()),
        ),
        (
            "name without '=' then the real pair",
            vec![b"session; session=real".to_vec()],
            Expect::User(b"real".to_vec()),
        ),
        (
            "empty quoted value",
            vec![b"session=\"\"".to_vec()],
            Expect::Anonymous,
        ),
        (
            "empty first duplicate",
            vec![b"session=; session=later".to_vec()],
            Expect::Anonymous,
        ),
        (
            "only separators",
            vec![b";;; = ;=;session".to_vec()],
            Expect::Anonymous,
        ),
        (
            "a similar name",
            vec![b"xsession=abc; Session=abc".to_vec()],
            Expect::Anonymous,
        ),
        ("8 KB value", vec![cookie(big.as_bytes())], {
            Expect::User(big.clone().into_bytes())
        }),
        (
            "non-UTF-8 bytes",
            vec![cookie(&non_utf8)],
            Expect::User(non_utf8.clone()),
        ),
        (
            "UTF-8 value",
            vec![cookie("café-ü".as_bytes())],
            Expect::User("café-ü".as_bytes().to_vec()),
        ),
        (
            "two Cookie lines: the first header's pair wins, as in Envoy's own parsing",
            vec![b"session=first".to_vec(), b"session=second".to_vec()],
            Expect::User(b"first".to_vec()),
        ),
        (
            "the identity only in the second Cookie line",
            vec![b"theme=dark".to_vec(), b"session=u42; z=9".to_vec()],
            Expect::User(b"u42".to_vec()),
        ),
        (
            "a space after the value is trimmed by the identity rule",
            vec![b"session=abc ;b=2".to_vec()],
            Expect::User(b"abc".to_vec()),
        ),
        (
            "a space before '=' makes another name, as in Envoy",
            vec![b"session =abc".to_vec()],
            Expect::Anonymous,
        ),
    ];
    let before = rig.backend_counts();
    let mut served = 0;
    for (what, cookie_lines, expect) in &cases {
        let headers: Vec<(&[u8], &[u8])> = cookie_lines
            .iter()
            .map(|line| (&b"cookie"[..], line.as_slice()))
            .collect();
        let reply = rig.send(HOST.as_bytes(), &headers);
        match expect {
            Expect::User(user) => {
                assert!(reply.minted_id().is_none(), "{what}: treated as anonymous");
                assert_routed(&reply, version_of(user, weight), what);
            }
            Expect::Anonymous => {
                let minted = reply
                    .minted_id()
                    .unwrap_or_else(|| panic!("{what}: no id minted: {reply:?}"));
                assert_routed(&reply, version_of(minted.as_bytes(), weight), what);
            }
        }
        served += 1;
    }
    // Control bytes are Envoy's to refuse (HTTP/1 forbids them in a field value).
    for (what, value) in [
        ("NUL byte", cookie(b"a\0b")),
        ("control byte", cookie(b"a\x01b")),
    ] {
        let reply = rig.send(HOST.as_bytes(), &[hv(b"cookie", &value)]);
        let user = &value[b"session=".len()..];
        assert_routed_or_refused(&reply, version_of(user, weight), what);
        if !reply.rejected_by_envoy() {
            served += 1;
        }
    }
    // A client-chosen request id never writes attributes into the minted cookie.
    let reply = rig.send(
        HOST.as_bytes(),
        &[hv(
            b"x-request-id",
            b"a; Domain=evil.example; Path=/x; Secure=no",
        )],
    );
    served += 1;
    let set_cookie = reply.header("set-cookie").expect("a minted cookie");
    let minted = reply.minted_id().unwrap();
    assert!(
        !minted.is_empty()
            && minted
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "client text reached Set-Cookie: {set_cookie}"
    );
    assert_eq!(
        set_cookie,
        format!("stickycanary-id={minted}; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax")
    );
    assert_routed(
        &reply,
        version_of(minted.as_bytes(), weight),
        "hostile x-request-id",
    );

    let after = rig.backend_counts();
    assert_eq!(
        (after.0 - before.0) + (after.1 - before.1),
        served,
        "the backends served a different number of requests than answered"
    );
    assert_envoy_healthy(&mut rig, "cookies");
}

#[test]
fn user_ids_of_zero_bytes_and_64_kb_are_handled_or_refused_never_misrouted() {
    let weight = 50.0;
    let mut rig = Rig::start(&plugin_config(weight));
    // Empty and blank ids fall through to the anonymous cookie.
    for (what, id) in [("0 bytes", &b""[..]), ("blanks", &b"   \t "[..])] {
        let reply = rig.send(HOST.as_bytes(), &[hv(b"x-user-id", id)]);
        let minted = reply
            .minted_id()
            .unwrap_or_else(|| panic!("{what}: no id minted: {reply:?}"));
        assert_routed(&reply, version_of(minted.as_bytes(), weight), what);
    }
    for (what, id) in [
        ("1 byte", b"a".to_vec()),
        ("non-UTF-8", vec![0xff, 0xfe, 0x80, b'u']),
        ("16 KB", vec![b'k'; 16 * 1024]),
        ("48 KB", vec![b'm'; 48 * 1024]),
    ] {
        let reply = rig.send(HOST.as_bytes(), &[hv(b"x-user-id", &id)]);
        assert!(reply.minted_id().is_none(), "{what}: treated as anonymous");
        assert_routed(&reply, version_of(&id, weight), what);
    }
    // Over Envoy's default 60 KB header limit: refused (431) or, if ever let through, routed right.
    let mut refused = 0;
    for (what, id) in [
        ("64 KB", vec![b'z'; 64 * 1024]),
        ("128 KB", vec![b'y'; 128 * 1024]),
    ] {
        let reply = rig.send(HOST.as_bytes(), &[hv(b"x-user-id", &id)]);
        assert_routed_or_refused(&reply, version_of(&id, weight), what);
        refused += u32::from(reply.rejected_by_envoy());
    }
    eprintln!("ids over 60 KB refused by Envoy: {refused} of 2");
    // Repeated identity headers: whichever value the filter reads, the route matches it.
    let reply = rig.send(
        HOST.as_bytes(),
        &[hv(b"x-user-id", b"first"), hv(b"x-user-id", b"second")],
    );
    let allowed = [
        version_of(b"first", weight),
        version_of(b"second", weight),
        version_of(b"first,second", weight),
    ];
    let got = reply.served_by().unwrap_or("none").to_string();
    assert!(allowed.contains(&got.as_str()), "repeated id: {reply:?}");
    assert_routed(&reply, &got, "repeated id");
    // Envoy keeps serving normally afterwards.
    rig.wait_version("u1", version_of(b"u1", weight));
    assert_envoy_healthy(&mut rig, "user ids");
}

#[test]
fn authority_forms_match_as_the_contract_says() {
    // At 100 % a matched request goes to canary and an unmatched one to stable with no header.
    let mut rig = Rig::start(&plugin_config(100.0));
    let matched = [
        "checkout",
        "checkout:8080",
        "CHECKOUT",
        "ChEcKoUt:1",
        "checkout.",
        "checkout.:8080",
        "a.shop.example.com",
        "A.B.SHOP.EXAMPLE.COM.",
        "a.shop.example.com:443",
        "[::1]",
        "[::1]:8443",
        "10.1.2.3",
        "10.1.2.3:80",
    ];
    let unmatched = [
        "shop.example.com",
        "evilcheckout",
        "checkout.evil.example",
        "checkoutx:8080",
        "xshop.example.com",
        "[::2]:80",
        "10.1.2.33",
    ];
    // Envoy may refuse these itself; if not, the filter must not match them.
    let odd_unmatched = [
        "checkout..",
        ".shop.example.com",
        "::1",
        "[::1",
        "checkout:80:80",
        "user@checkout",
        "",
    ];
    let user: &[u8] = b"u42";
    for host in matched {
        let reply = rig.send(host.as_bytes(), &[hv(b"x-user-id", user)]);
        assert_routed(&reply, "canary", &format!("host {host:?}"));
    }
    for host in unmatched {
        let reply = rig.send(host.as_bytes(), &[hv(b"x-user-id", user)]);
        assert_reached(&reply, "stable", None, &format!("host {host:?}"));
    }
    for host in odd_unmatched {
        let reply = rig.send(host.as_bytes(), &[hv(b"x-user-id", user)]);
        if reply.rejected_by_envoy() {
            eprintln!("host {host:?}: refused by Envoy with {}", reply.status);
        } else {
            assert_reached(&reply, "stable", None, &format!("host {host:?}"));
        }
    }
    assert_envoy_healthy(&mut rig, "authorities");
}

#[test]
fn names_that_try_to_inject_stat_tags_are_rejected_at_config_time() {
    let weight = 10.0;
    let good = plugin_config(weight);
    let mut rig = Rig::start(&good);
    let users: Vec<String> = (0..200).map(|n| format!("u{n}")).collect();
    let check_split = |rig: &Rig, when: &str| {
        for user in &users {
            let reply = rig.send(HOST.as_bytes(), &[hv(b"x-user-id", user.as_bytes())]);
            assert_routed(
                &reply,
                version_of(user.as_bytes(), weight),
                &format!("{user} {when}"),
            );
        }
    };
    check_split(&rig, "before");

    let with = |field: &str, value: &str| {
        let mut config = plugin_config(weight);
        config["rollouts"]["checkout"][field] = json!(value);
        config
    };
    let renamed = |name: &str| {
        let mut config = json!({"rollouts": {}});
        config["rollouts"][name] = plugin_config(weight)["rollouts"]["checkout"].clone();
        config
    };
    let mut bad_route_header = plugin_config(weight);
    bad_route_header["routeHeader"] = json!("x-canary-version;.;version=.=x");
    let cases: Vec<(&str, Value)> = vec![
        ("rollout name", renamed("a;.;version=.=x")),
        (
            "rollout name with a code class",
            renamed("checkout;.;code_class=.=2xx"),
        ),
        ("stableVersion", with("stableVersion", "x;.;rollout=.=y")),
        (
            "canaryVersion",
            with("canaryVersion", "canary;.;source=.=override"),
        ),
        (
            "canaryVersion with '='",
            with("canaryVersion", "canary=.=x"),
        ),
        ("upper-case version", with("canaryVersion", "Canary")),
        (
            "64-character version",
            with("canaryVersion", &"c".repeat(64)),
        ),
        ("routeHeader", bad_route_header),
    ];
    for (what, config) in &cases {
        let log_before = rig.envoy.log_text().len();
        let outcome = rig
            .envoy
            .set_plugin_config_and_wait(&config.to_string(), RELOAD_TIMEOUT)
            .unwrap();
        assert_eq!(outcome, EcdsOutcome::Failed, "{what}: Envoy took {config}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let _ = rig.send(HOST.as_bytes(), &[hv(b"x-user-id", b"probe")]);
            let log = rig.envoy.log_text();
            let new = log.get(log_before..).unwrap_or("");
            if new.contains("stickycanary: rejected config") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no rejection logged; new log:\n{new}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        check_split(&rig, &format!("after the {what} attempt"));
    }
    // No injected tag ever became a label: every filter series names our rollout and versions.
    let samples = promtext::parse(&rig.envoy.stats_prometheus().unwrap());
    let ours: Vec<&promtext::Sample> = samples
        .iter()
        .filter(|s| s.name.starts_with("stickycanary_"))
        .collect();
    assert!(!ours.is_empty(), "no stickycanary series at all");
    for sample in ours {
        assert_eq!(sample.label("rollout"), Some("checkout"), "{sample:?}");
        assert!(
            matches!(sample.label("version"), Some("stable" | "canary")),
            "{sample:?}"
        );
        if sample.name == "stickycanary_shard_requests_total" {
            // The shard counter has no `source` (hash-routed only) but a shard and outcome.
            assert_eq!(sample.label("source"), None, "{sample:?}");
            let shard: Option<u8> = sample.label("shard").and_then(|s| s.parse().ok());
            assert!(shard.is_some_and(|s| s < 16), "{sample:?}");
            assert!(
                matches!(sample.label("outcome"), Some("ok" | "slow" | "error")),
                "{sample:?}"
            );
        } else {
            assert!(
                matches!(sample.label("source"), Some("hash" | "override")),
                "{sample:?}"
            );
        }
    }
    assert_envoy_healthy_with(&mut rig, "stat tag injection", true);
}

/// The tester's token is for the proxy only: a matched request loses `x-canary-override-token`
/// before it goes upstream (`/__echo` returns the headers the backend received).
#[test]
fn the_override_token_does_not_reach_the_upstream() {
    let rig = Rig::start(&plugin_config(0.0));
    let (reply, body) = rig.send_to(
        "/__echo",
        HOST.as_bytes(),
        &[
            hv(b"x-canary-override", b"canary"),
            hv(b"x-canary-override-token", TOKEN.as_bytes()),
            hv(b"x-user-id", b"u1"),
        ],
    );
    assert_routed(&reply, "canary", "override with the token");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("x-user-id"), "no echo: {body}");
    assert!(
        !body.contains(TOKEN),
        "the upstream received the token: {body}"
    );
}
