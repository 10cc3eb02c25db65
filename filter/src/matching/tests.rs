use super::*;

fn compiled(json: &str) -> CompiledConfig {
    CompiledConfig::from_json(json.as_bytes()).unwrap()
}

fn name_of(config: &CompiledConfig, authority: &str, path: &str) -> Option<String> {
    config
        .find_rollout(authority.as_bytes(), path.as_bytes())
        .map(|index| config.rollouts[index].name.clone())
}

const SHOP: &str = r#"{"rollouts":{
  "checkout":{"hosts":["checkout","Checkout.Shop.Svc.Cluster.Local","*.shop.example.com"],"weight":10},
  "wild-api":{"hosts":["*.shop.example.com"],"pathPrefix":"/api","weight":10},
  "exact-root":{"hosts":["www.shop.example.com"],"weight":10},
  "cart-api":{"hosts":["checkout"],"pathPrefix":"/api/cart","weight":10}
}}"#;

#[test]
fn exact_host_beats_wildcard() {
    let config = compiled(SHOP);
    // wild-api has the longer prefix, but exact-root names the host exactly.
    assert_eq!(
        name_of(&config, "www.shop.example.com", "/api/x").as_deref(),
        Some("exact-root")
    );
}

#[test]
fn longest_path_prefix_wins_among_exact_matches() {
    let config = compiled(SHOP);
    assert_eq!(
        name_of(&config, "checkout", "/api/cart/1").as_deref(),
        Some("cart-api")
    );
    assert_eq!(
        name_of(&config, "checkout", "/api/orders").as_deref(),
        Some("checkout")
    );
}

#[test]
fn longest_path_prefix_wins_among_wildcard_matches() {
    let config = compiled(SHOP);
    assert_eq!(
        name_of(&config, "m.shop.example.com", "/api/x").as_deref(),
        Some("wild-api")
    );
    assert_eq!(
        name_of(&config, "m.shop.example.com", "/home").as_deref(),
        Some("checkout")
    );
}

#[test]
fn exact_host_without_a_matching_prefix_falls_back_to_wildcards() {
    let config = compiled(
        r#"{"rollouts":{"a":{"hosts":["x.example.com"],"pathPrefix":"/only","weight":1},
                        "b":{"hosts":["*.example.com"],"weight":1}}}"#,
    );
    assert_eq!(
        name_of(&config, "x.example.com", "/other").as_deref(),
        Some("b")
    );
}

#[test]
fn wildcard_matches_any_depth_of_subdomain_but_not_the_bare_suffix() {
    let config = compiled(SHOP);
    assert_eq!(
        name_of(&config, "a.b.shop.example.com", "/").as_deref(),
        Some("checkout")
    );
    assert_eq!(name_of(&config, "shop.example.com", "/"), None);
    assert_eq!(name_of(&config, ".shop.example.com", "/"), None);
    assert_eq!(name_of(&config, "evilshop.example.com", "/"), None);
}

#[test]
fn more_specific_wildcard_wins_on_equal_prefixes() {
    let config = compiled(
        r#"{"rollouts":{"broad":{"hosts":["*.example.com"],"weight":1},
                        "narrow":{"hosts":["*.eu.example.com"],"weight":1}}}"#,
    );
    assert_eq!(
        name_of(&config, "a.eu.example.com", "/").as_deref(),
        Some("narrow")
    );
    assert_eq!(
        name_of(&config, "a.us.example.com", "/").as_deref(),
        Some("broad")
    );
}

#[test]
fn hosts_match_case_insensitively_without_port_or_trailing_dot() {
    let config = compiled(SHOP);
    for authority in [
        "CHECKOUT",
        "checkout:8080",
        "checkout.",
        "Checkout.:80",
        "checkout.shop.svc.cluster.local:443",
    ] {
        assert_eq!(
            name_of(&config, authority, "/").as_deref(),
            Some("checkout"),
            "{authority}"
        );
    }
}

#[test]
fn ipv6_literal_authority_keeps_its_brackets() {
    let config = compiled(r#"{"rollouts":{"v6":{"hosts":["[::1]"],"weight":1}}}"#);
    assert_eq!(name_of(&config, "[::1]:8080", "/").as_deref(), Some("v6"));
    assert_eq!(name_of(&config, "[::1]", "/").as_deref(), Some("v6"));
    assert_eq!(normalize_host(b"[::1]:8080"), b"[::1]");
    assert_eq!(normalize_host(b"::1"), b"::1");
    assert_eq!(normalize_host(b"Example.COM.:80"), b"example.com");
}

#[test]
fn unknown_host_or_path_passes_through() {
    let config = compiled(SHOP);
    assert_eq!(name_of(&config, "other.example.org", "/"), None);
    assert_eq!(name_of(&config, "", "/"), None);
    let prefixed = compiled(r#"{"rollouts":{"a":{"hosts":["h"],"pathPrefix":"/api","weight":1}}}"#);
    assert_eq!(name_of(&prefixed, "h", "/web"), None);
}

#[test]
fn equal_prefixes_on_one_host_resolve_by_rollout_name_whatever_the_document_order() {
    let first = compiled(
        r#"{"rollouts":{"zeta":{"hosts":["h"],"weight":1},"alpha":{"hosts":["h"],"weight":1}}}"#,
    );
    let second = compiled(
        r#"{"rollouts":{"alpha":{"hosts":["h"],"weight":1},"zeta":{"hosts":["h"],"weight":1}}}"#,
    );
    assert_eq!(name_of(&first, "h", "/").as_deref(), Some("alpha"));
    assert_eq!(name_of(&second, "h", "/").as_deref(), Some("alpha"));
}

#[test]
fn fifty_rollouts_each_find_their_own_host() {
    let rollouts: Vec<String> = (0..50)
        .map(|n| {
            format!(
                r#""svc-{n}":{{"hosts":["svc-{n}.shop","*.svc-{n}.example.com"],"weight":{n}}}"#
            )
        })
        .collect();
    let config = compiled(&format!(r#"{{"rollouts":{{{}}}}}"#, rollouts.join(",")));
    for n in 0..50 {
        let expected = format!("svc-{n}");
        assert_eq!(
            name_of(&config, &format!("svc-{n}.shop"), "/"),
            Some(expected.clone())
        );
        assert_eq!(
            name_of(&config, &format!("a.svc-{n}.example.com"), "/x"),
            Some(expected)
        );
    }
}

#[test]
fn compile_precomputes_salt_threshold_and_route_header() {
    let config =
        compiled(r#"{"routeHeader":"X-Canary","rollouts":{"a":{"hosts":["h"],"weight":12.34}}}"#);
    assert_eq!(config.route_header, "x-canary");
    assert_eq!(config.rollouts[0].salt, "a");
    assert_eq!(config.rollouts[0].canary_threshold, 1234);
}

#[test]
fn the_remembered_host_answers_only_for_the_same_authority() {
    let config = compiled(
        r#"{"rollouts": {"checkout": {"hosts": ["checkout", "*.shop.example.com"], "weight": 10},
                          "search": {"hosts": ["search"], "weight": 10}}}"#,
    );
    let index = |name: &str| config.rollouts.iter().position(|r| r.name == name);
    for (authority, owner) in [
        ("checkout", index("checkout")),
        ("checkout", index("checkout")),
        ("search", index("search")),
        ("Search:8080", index("search")),
        ("unknown", None),
        ("unknown", None),
        ("a.shop.example.com", index("checkout")),
        ("checkout", index("checkout")),
        ("", None),
    ] {
        assert_eq!(
            config.rollout_for(authority.as_bytes(), b"/"),
            owner,
            "{authority:?}"
        );
    }
}

#[test]
fn with_path_prefixes_the_same_host_is_looked_up_for_each_path() {
    let config = compiled(
        r#"{"rollouts": {"api": {"hosts": ["shop"], "pathPrefix": "/api", "weight": 10},
                          "web": {"hosts": ["shop"], "weight": 10}}}"#,
    );
    let name = |path: &str| {
        config
            .rollout_for(b"shop", path.as_bytes())
            .map(|index| config.rollouts[index].name.clone())
    };
    assert_eq!(name("/api/orders").as_deref(), Some("api"));
    assert_eq!(name("/").as_deref(), Some("web"));
    assert_eq!(name("/api").as_deref(), Some("api"));
}
