use super::*;
use crate::headers::HeaderList;

fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    cookie_value(header.as_bytes(), name).map(|value| std::str::from_utf8(value).unwrap())
}

#[test]
fn cookie_is_found_among_others_after_leading_spaces() {
    assert_eq!(cookie("a=1;   session=abc;b=2", "session"), Some("abc"));
    assert_eq!(cookie("session=abc", "session"), Some("abc"));
}

// The cases below pin Envoy's own parsing (forEachCookie in source/common/http/utility.cc):
// a name loses only its leading spaces, a value is never trimmed, quotes go only when they
// wrap the whole value.

#[test]
fn a_value_keeps_its_surrounding_whitespace_as_envoy_does() {
    assert_eq!(cookie("a=1; session=abc ;b=2", "session"), Some("abc "));
    assert_eq!(cookie("session= abc", "session"), Some(" abc"));
    assert_eq!(cookie(r#"session= "abc""#, "session"), Some(r#" "abc""#));
}

#[test]
fn a_name_loses_only_leading_spaces_as_envoy_does() {
    assert_eq!(cookie("session =abc", "session"), None);
    assert_eq!(cookie("\tsession=abc", "session"), None);
    assert_eq!(
        cookie("a=1;\tsession=abc; session=def", "session"),
        Some("def")
    );
}

#[test]
fn quotes_are_removed_only_when_they_wrap_the_whole_value() {
    assert_eq!(cookie(r#"session="a"b"#, "session"), Some(r#""a"b"#));
    assert_eq!(cookie(r#"session=""abc"""#, "session"), Some(r#""abc""#));
}

#[test]
fn every_cookie_header_is_searched_in_order() {
    let headers: [&[u8]; 3] = [b"theme=dark", b"sid=u42; z=9", b"sid=late"];
    assert_eq!(cookie_value_in(headers, "sid"), Some(&b"u42"[..]));
    assert_eq!(cookie_value_in(headers, "theme"), Some(&b"dark"[..]));
    assert_eq!(cookie_value_in(headers, "none"), None);
    assert_eq!(cookie_value_in(Vec::<&[u8]>::new(), "sid"), None);
}

#[test]
fn identity_cookie_in_a_second_cookie_header_is_found() {
    let sources = vec![IdentitySource::Cookie("sid".into())];
    let headers = HeaderList::default()
        .with("cookie", "theme=dark")
        .with("Cookie", "sid=u42; z=9");
    assert_eq!(
        resolve_identity(&sources, &RequestView::new(&headers)),
        Some(&b"u42"[..])
    );
}

#[test]
fn cookie_value_may_contain_equals_signs() {
    assert_eq!(cookie("token=a=b==; x=1", "token"), Some("a=b=="));
}

#[test]
fn quoted_cookie_value_is_unquoted() {
    assert_eq!(cookie(r#"session="abc def""#, "session"), Some("abc def"));
    assert_eq!(cookie(r#"session=""#, "session"), Some("\""));
}

#[test]
fn first_of_duplicate_cookies_wins() {
    assert_eq!(
        cookie("session=first; session=second", "session"),
        Some("first")
    );
}

#[test]
fn cookie_names_are_exact_and_case_sensitive() {
    assert_eq!(cookie("xsession=1; Session=2", "session"), None);
    assert_eq!(cookie("session_id=1", "session"), None);
}

#[test]
fn malformed_cookie_headers_find_nothing_and_do_not_fail() {
    for header in [
        "", ";", ";;;", "=", "=value", "session", "session;", " ; = ; ",
    ] {
        assert_eq!(cookie(header, "session"), None, "{header:?}");
    }
    assert_eq!(cookie("session=", "session"), Some(""));
}

#[test]
fn huge_cookie_values_are_returned_whole() {
    let value = "v".repeat(100_000);
    let header = format!("a=1; session={value}");
    assert_eq!(cookie(&header, "session").map(str::len), Some(100_000));
}

#[test]
fn identity_takes_the_first_non_empty_source() {
    let sources = vec![
        IdentitySource::Header("x-user-id".into()),
        IdentitySource::Cookie("session".into()),
    ];
    let empty_header = HeaderList::default()
        .with("x-user-id", "  ")
        .with("cookie", "session=s1");
    assert_eq!(
        resolve_identity(&sources, &RequestView::new(&empty_header)),
        Some(&b"s1"[..])
    );
    let both = HeaderList::default()
        .with("x-user-id", "u1")
        .with("cookie", "session=s1");
    assert_eq!(
        resolve_identity(&sources, &RequestView::new(&both)),
        Some(&b"u1"[..])
    );
    let neither = HeaderList::default().with("cookie", "session=");
    assert_eq!(
        resolve_identity(&sources, &RequestView::new(&neither)),
        None
    );
}

#[test]
fn non_utf8_identity_is_used_as_bytes() {
    let sources = vec![IdentitySource::Header("x-user-id".into())];
    let headers = HeaderList::default().with("x-user-id", [0xff, 0xfe, b'a']);
    assert_eq!(
        resolve_identity(&sources, &RequestView::new(&headers)),
        Some(&[0xff, 0xfe, b'a'][..])
    );
}

#[test]
fn a_clean_request_id_becomes_the_anonymous_id() {
    let minter = IdMinter::new(7);
    assert_eq!(
        minter.mint(Some(b"550e8400-e29b-41d4-a716-446655440000")),
        "550e8400-e29b-41d4-a716-446655440000"
    );
}

#[test]
fn a_request_id_unsafe_for_a_cookie_is_hashed() {
    let minter = IdMinter::new(7);
    let id = minter.mint(Some(b"abc; Domain=evil.example"));
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(
        id,
        minter.mint(Some(b"abc; Domain=evil.example")),
        "same request id, same id"
    );
    let long = minter.mint(Some("r".repeat(65).as_bytes()));
    assert_eq!(long.len(), 32);
}

#[test]
fn without_a_request_id_each_minted_id_differs() {
    let minter = IdMinter::new(7);
    let ids: std::collections::HashSet<String> = (0..1000).map(|_| minter.mint(None)).collect();
    assert_eq!(ids.len(), 1000);
    let other_vm = IdMinter::new(8);
    assert!(
        !ids.contains(&other_vm.mint(None)),
        "another seed draws other ids"
    );
}

#[test]
fn set_cookie_has_the_contract_attributes() {
    let anonymous = AnonymousConfig::default();
    assert_eq!(
        anonymous_set_cookie(&anonymous, "abc"),
        "stickycanary-id=abc; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax"
    );
    let secure = AnonymousConfig {
        secure: true,
        max_age_seconds: 60,
        cookie: "sid".into(),
        ..AnonymousConfig::default()
    };
    assert_eq!(
        anonymous_set_cookie(&secure, "x"),
        "sid=x; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
    );
}
