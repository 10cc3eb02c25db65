//! The cases of one `make bench` run: the three peers a user would run instead of
//! stickycanary, and stickycanary itself in three configurations. Each case is one Envoy
//! bootstrap, built from the e2e harness's bootstrap and patched where the peer differs.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use stickycanary_e2e::envoy::{self, EnvoyOptions, FilterChain};

use crate::error::{failed, Result};

/// The canary weight of every case (percent), as in peer 1's 90/10 split.
pub const WEIGHT_PERCENT: u32 = 10;
/// Host of the one-rollout cases (and the Lua peer).
pub const HOST: &str = "checkout";
/// The 50-rollout case has `svc-00` … `svc-49`; requests go to the last one.
pub const MANY_ROLLOUTS: usize = 50;

pub const LUA_PEER_SCRIPT: &str = include_str!("../lua/sticky-peer.lua");

#[derive(Debug, Clone)]
pub enum Kind {
    /// Router only, route with `weighted_clusters` 90/10: Istio VirtualService weights.
    WeightedRouting,
    /// A proxy-wasm module through the ECDS file, as stickycanary is deployed.
    Wasm {
        wasm: PathBuf,
        plugin_config: String,
    },
    /// `envoy.filters.http.lua` running [`LUA_PEER_SCRIPT`].
    Lua,
}

/// What the sanity check expects before any number is taken.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// Exactly these users (by index) go to canary; computed from the case's own hash.
    ExactUsers(fn(&str) -> bool),
    /// Random or minted ids: the canary share must land in this range.
    ShareBetween(f64, f64),
    /// Everything to stable (the no-op filter sets no header).
    AllStable,
}

#[derive(Debug, Clone)]
pub struct Case {
    /// Short id used in logs and results.json.
    pub id: String,
    /// The row label in the tables.
    pub label: String,
    pub kind: Kind,
    /// `Host` of every request.
    pub host: String,
    /// No identity header at all (the anonymous-cookie path).
    pub anonymous: bool,
    pub expect: Expect,
    /// Does the response carry a freshly minted `set-cookie`?
    pub expect_set_cookie: bool,
}

/// All cases, peer 1 (the baseline every ratio is taken against) first.
pub fn all_cases(filter_wasm: &Path, noop_wasm: &Path) -> Vec<Case> {
    let filter = |plugin_config: String| Kind::Wasm {
        wasm: filter_wasm.to_path_buf(),
        plugin_config,
    };
    vec![
        Case {
            id: crate::report::PEER1.into(),
            label: "1 Envoy weighted_clusters 90/10".into(),
            kind: Kind::WeightedRouting,
            host: HOST.into(),
            anonymous: false,
            expect: Expect::ShareBetween(0.06, 0.14),
            expect_set_cookie: false,
        },
        Case {
            id: "noop-wasm".into(),
            label: "2 no-op proxy-wasm filter".into(),
            kind: Kind::Wasm {
                wasm: noop_wasm.to_path_buf(),
                plugin_config: "{}".into(),
            },
            host: HOST.into(),
            anonymous: false,
            expect: Expect::AllStable,
            expect_set_cookie: false,
        },
        Case {
            id: "lua".into(),
            label: "3 Lua filter (FNV-1a, same job)".into(),
            kind: Kind::Lua,
            host: HOST.into(),
            anonymous: false,
            expect: Expect::ExactUsers(lua_peer_is_canary),
            expect_set_cookie: false,
        },
        Case {
            id: "sc-1".into(),
            label: "4a stickycanary, 1 rollout".into(),
            kind: filter(one_rollout_config(f64::from(WEIGHT_PERCENT))),
            host: HOST.into(),
            anonymous: false,
            expect: Expect::ExactUsers(stickycanary_is_canary_checkout),
            expect_set_cookie: false,
        },
        Case {
            id: "sc-50".into(),
            label: "4b stickycanary, 50 rollouts (last)".into(),
            kind: filter(many_rollouts_config()),
            host: format!("svc-{:02}", MANY_ROLLOUTS - 1),
            anonymous: false,
            expect: Expect::ExactUsers(stickycanary_is_canary_last_service),
            expect_set_cookie: false,
        },
        Case {
            id: "sc-anon".into(),
            label: "4c stickycanary, anonymous cookie".into(),
            kind: filter(one_rollout_config(f64::from(WEIGHT_PERCENT))),
            host: HOST.into(),
            anonymous: true,
            expect: Expect::ShareBetween(0.06, 0.14),
            expect_set_cookie: true,
        },
    ]
}

/// Another build of the filter (e.g. a profiling variant), in the one-rollout case.
pub fn variant_case(name: &str, wasm: &Path) -> Case {
    Case {
        id: format!("sc-1:{name}"),
        label: format!("4a stickycanary, 1 rollout [{name}]"),
        kind: Kind::Wasm {
            wasm: wasm.to_path_buf(),
            plugin_config: one_rollout_config(f64::from(WEIGHT_PERCENT)),
        },
        host: HOST.into(),
        anonymous: false,
        // A `diag-` build is cut down to attribute cost (it may route by other rules):
        // sanity only checks that it serves.
        expect: if name.starts_with("diag-") {
            Expect::ShareBetween(0.0, 1.0)
        } else {
            Expect::ExactUsers(stickycanary_is_canary_checkout)
        },
        expect_set_cookie: false,
    }
}

/// The hostcall probe (`bench/noop-filter` with feature `probe`) doing `ops` per request.
pub fn probe_case(name: &str, wasm: &Path, ops: &str) -> Case {
    let has = |wanted: &str| ops.split(',').any(|op| op.trim() == wanted);
    Case {
        id: format!("probe:{name}"),
        label: format!("probe [{name}]"),
        kind: Kind::Wasm {
            wasm: wasm.to_path_buf(),
            plugin_config: ops.to_string(),
        },
        host: HOST.into(),
        anonymous: false,
        // The probe sets `stable`, or with `split` `canary` on every 10th request (with
        // `scatter` on a random 10%, so the share of 2000 requests varies more).
        expect: match (has("split"), has("scatter")) {
            (true, false) => Expect::ShareBetween(0.09, 0.11),
            (true, true) => Expect::ShareBetween(0.07, 0.13),
            (false, _) => Expect::AllStable,
        },
        expect_set_cookie: false,
    }
}

/// One rollout on host `checkout` (salt defaults to the rollout name).
pub fn one_rollout_config(weight: f64) -> String {
    json!({"rollouts": {"checkout": {"hosts": [HOST], "weight": weight}}}).to_string()
}

/// `svc-00` … `svc-49`, each with an exact host, its cluster-local name and a wildcard.
pub fn many_rollouts_config() -> String {
    let rollouts: serde_json::Map<String, Value> = (0..MANY_ROLLOUTS)
        .map(|i| {
            let name = format!("svc-{i:02}");
            let rollout = json!({
                "hosts": [name, format!("{name}.shop.svc.cluster.local"), format!("*.{name}.example.com")],
                "weight": WEIGHT_PERCENT,
            });
            (name, rollout)
        })
        .collect();
    json!({"rollouts": rollouts}).to_string()
}

fn stickycanary_is_canary_checkout(user: &str) -> bool {
    stickycanary_filter::assign::bucket(HOST, user) < WEIGHT_PERCENT * 100
}

fn stickycanary_is_canary_last_service(user: &str) -> bool {
    let salt = format!("svc-{:02}", MANY_ROLLOUTS - 1);
    stickycanary_filter::assign::bucket(&salt, user) < WEIGHT_PERCENT * 100
}

/// The Lua peer's assignment, recomputed here so the sanity check proves the script hashes
/// what it claims: FNV-1a 32 of `checkout:<user>`, mod 10000, below 1000.
fn lua_peer_is_canary(user: &str) -> bool {
    let key = format!("{HOST}:{user}");
    let hash = key.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    hash % 10_000 < WEIGHT_PERCENT * 100
}

/// The Envoy bootstrap of `case`: the harness bootstrap with the peer's route and filters.
pub fn bootstrap(
    case: &Case,
    opts: &EnvoyOptions,
    listener_port: u16,
    admin_port: u16,
    ecds_dir: &Path,
) -> Result<Value> {
    let mut opts = opts.clone();
    opts.filter_chain = match case.kind {
        Kind::Wasm { .. } => FilterChain::StickyCanary,
        Kind::WeightedRouting | Kind::Lua => FilterChain::RouterOnly,
    };
    let mut doc = envoy::bootstrap(&opts, listener_port, admin_port, ecds_dir);
    let hcm = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config";
    match case.kind {
        Kind::WeightedRouting => {
            let routes = doc
                .pointer_mut(&format!("{hcm}/route_config/virtual_hosts/0/routes"))
                .ok_or_else(|| failed("harness bootstrap has no routes to replace"))?;
            *routes = json!([{
                "match": {"prefix": "/"},
                "route": {
                    "weighted_clusters": {"clusters": [
                        {"name": "stable", "weight": 100 - WEIGHT_PERCENT},
                        {"name": "canary", "weight": WEIGHT_PERCENT}
                    ]},
                    "timeout": "30s"
                }
            }]);
        }
        Kind::Lua => {
            let filters = doc
                .pointer_mut(&format!("{hcm}/http_filters"))
                .and_then(Value::as_array_mut)
                .ok_or_else(|| failed("harness bootstrap has no http_filters"))?;
            filters.insert(
                0,
                json!({
                    "name": "envoy.filters.http.lua",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                        "default_source_code": {"inline_string": LUA_PEER_SCRIPT}
                    }
                }),
            );
        }
        Kind::Wasm { .. } => {}
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_peer_hash_matches_published_fnv1a_vectors() {
        // FNV-1a 32 reference values: "" -> 0x811c9dc5, "a" -> 0xe40c292c, "foobar" -> 0xbf9cf968.
        let fnv = |s: &str| {
            s.bytes().fold(0x811c_9dc5_u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(16_777_619)
            })
        };
        assert_eq!(fnv(""), 0x811c_9dc5);
        assert_eq!(fnv("a"), 0xe40c_292c);
        assert_eq!(fnv("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn many_rollouts_config_is_a_valid_plugin_config_with_fifty_rollouts() {
        let parsed =
            stickycanary_filter::config::PluginConfig::from_json(many_rollouts_config().as_bytes());
        assert!(parsed.is_ok(), "{parsed:?}");
        assert_eq!(parsed.map(|c| c.rollouts.len()).ok(), Some(MANY_ROLLOUTS));
    }

    #[test]
    fn one_rollout_config_is_valid() {
        let parsed = stickycanary_filter::config::PluginConfig::from_json(
            one_rollout_config(10.0).as_bytes(),
        );
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
