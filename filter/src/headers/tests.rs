use super::*;

fn snapshot(pairs: &[(&str, &str)]) -> HeaderSnapshot {
    HeaderSnapshot::new(HeaderSnapshot::serialize(pairs))
}

#[test]
fn a_snapshot_finds_the_first_value_of_a_header_in_any_case() {
    let headers = snapshot(&[
        (":authority", "checkout"),
        ("x-user-id", "u1"),
        ("X-User-Id", "u2"),
    ]);
    assert_eq!(headers.header(":authority"), Some(&b"checkout"[..]));
    assert_eq!(headers.header("x-user-id"), Some(&b"u1"[..]));
    assert_eq!(headers.header("X-USER-ID"), Some(&b"u1"[..]));
    assert_eq!(headers.header("missing"), None);
}

#[test]
fn a_snapshot_returns_every_value_of_a_repeated_header_in_order() {
    let headers = snapshot(&[
        ("cookie", "theme=dark"),
        ("x-other", "1"),
        ("cookie", "sid=u42; z=9"),
    ]);
    assert_eq!(
        headers.header_values("cookie"),
        vec![&b"theme=dark"[..], &b"sid=u42; z=9"[..]]
    );
    assert_eq!(RequestView::new(&headers).cookie("sid"), Some(&b"u42"[..]));
}

#[test]
fn empty_names_and_values_survive_the_format() {
    let headers = snapshot(&[("a", ""), ("", "v"), ("b", "2")]);
    let pairs: Vec<_> = headers.pairs().collect();
    assert_eq!(
        pairs,
        vec![
            (&b"a"[..], &b""[..]),
            (&b""[..], &b"v"[..]),
            (&b"b"[..], &b"2"[..])
        ]
    );
}

#[test]
fn a_malformed_snapshot_reads_as_far_as_it_makes_sense_and_never_panics() {
    let good = HeaderSnapshot::serialize(&[("a", "1"), ("b", "2")]);
    for cut in 0..good.len() {
        let headers = HeaderSnapshot::new(good[..cut].to_vec());
        assert!(headers.pairs().count() <= 2);
        let _ = headers.header("b");
    }
    // A count far beyond the buffer, and lengths pointing past its end.
    let mut lying = good.clone();
    lying[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(HeaderSnapshot::new(lying).pairs().count() <= 2);
    let mut long_value = good;
    long_value[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(HeaderSnapshot::new(long_value).header("a"), None);
    assert_eq!(HeaderSnapshot::default().header("a"), None);
}
