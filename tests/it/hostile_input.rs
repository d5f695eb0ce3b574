//! Hostile input against the pure request-classification functions: the open-redirect
//! corpus, the public-path bypass table, spoofed forwarded URIs and header values.
//! These are the shapes of the published auth-proxy advisories (open redirects through
//! `/\`, tabs, encoded slashes; skip-auth rules matched against the query; `..;`).

use crate::support::corpus::{header_names, unescape, Removed};
use wxgate::signin::classify::percent_encode_header;
use wxgate::signin::paths::{normalize_path, PathMatcher};
use wxgate::signin::redirect::{safe_return_path, strip_code_and_state};

fn corpus(name: &str) -> Vec<(usize, String)> {
    crate::support::corpus::lines(name)
}

#[test]
fn every_hostile_return_path_in_the_corpus_is_refused() {
    let lines = corpus("hostile_rd.txt");
    assert!(lines.len() >= 400, "corpus has {} values", lines.len());
    let accepted: Vec<String> = lines
        .iter()
        .filter_map(|(n, l)| {
            let rd = unescape(l);
            safe_return_path(&rd).map(|got| format!("line {n}: {rd:?} -> {got:?}"))
        })
        .collect();
    assert!(accepted.is_empty(), "accepted:\n{}", accepted.join("\n"));
}

#[test]
fn every_safe_return_path_in_the_corpus_is_rebuilt_as_listed() {
    let lines = corpus("safe_rd.txt");
    assert!(lines.len() >= 20);
    for (n, line) in lines {
        let (input, want) = line
            .split_once(" => ")
            .unwrap_or_else(|| panic!("line {n}: expected `input => rebuilt`"));
        let (input, want) = (unescape(input), unescape(want));
        assert_eq!(
            safe_return_path(&input).as_deref(),
            Some(want.as_str()),
            "line {n}: {input:?}"
        );
        // A rebuilt path is a fixed point: validating it again changes nothing.
        assert_eq!(safe_return_path(&want).as_deref(), Some(want.as_str()));
    }
}

#[test]
fn a_return_path_never_keeps_the_callback_code_or_state() {
    let rd = strip_code_and_state("/orders?code=061abc&state=Xy12&id=7");
    assert_eq!(safe_return_path(&rd).as_deref(), Some("/orders?id=7"));
}

fn public() -> PathMatcher {
    PathMatcher::new(&["/static/*", "/healthz", "/public/*"]).expect("valid patterns")
}

/// Whether a raw request path would skip sign-in: the proxy refuses (400) a path that
/// does not normalise, so only a normalised path that matches is public.
fn skips_sign_in(raw: &str) -> bool {
    normalize_path(raw).is_some_and(|p| public().matches(&p))
}

#[test]
fn no_spelling_of_a_private_path_matches_a_public_pattern() {
    let attempts = [
        "/admin",
        "/static/../admin",
        "/static/./../admin",
        "/static/%2e%2e/admin",
        "/static/%2E%2E/admin",
        "/static/.%2e/admin",
        "/static/%2e./admin",
        "/static%2f..%2fadmin",
        "/static%2F..%2Fadmin",
        "/static%5c..%5cadmin",
        "/static\\..\\admin",
        "/static/..\\admin",
        "//admin",
        "///admin",
        "/static/..;/admin",
        "/static/..;x=1/admin",
        "/static/.;/../admin",
        "/static/%2e%2e;/admin",
        "/static;/../admin",
        "/admin?x=/static/",
        "/admin?/static/x",
        "/admin#/static/",
        "/admin%3f/static/",
        "/admin%23/static/",
        "/STATIC/x",
        "/Static/x",
        "/static/%252e%252e/admin",
        "/static/%252E%252E/admin",
        "/static%252f..%252fadmin",
        "/static/%25252e%25252e/admin",
        "/staticx/../admin",
        "/staticadmin",
        "/static.admin",
        "/healthz/../admin",
        "/healthz/admin",
        "/healthz;/admin",
        "/healthz%00/admin",
        "/static/%00/../../admin",
        "/static/\t/../../admin",
        "/static/%0a/../../admin",
        "/public/../../admin",
        "/public/%2e%2e/%2e%2e/admin",
        "admin",
        "static/x",
        "",
    ];
    let bypasses: Vec<&str> = attempts.into_iter().filter(|a| skips_sign_in(a)).collect();
    assert!(
        bypasses.is_empty(),
        "these reached a public pattern: {bypasses:?}"
    );
}

#[test]
fn honest_spellings_of_public_paths_still_skip_sign_in() {
    for path in [
        "/static",
        "/static/",
        "/static/app.js",
        "/static/css/site.css?v=3",
        "//static/app.js",
        "/st%61tic/app.js",
        "/admin/../static/app.js",
        "/healthz",
        "/public/a/b",
    ] {
        assert!(skips_sign_in(path), "{path} should be public");
    }
}

#[test]
fn a_spoofed_forwarded_uri_is_judged_by_its_path_alone() {
    // Forward-auth reads the original URL from X-Forwarded-Uri / X-Original-URL; a
    // client that reaches wxgate directly may send any value, so the query and
    // fragment must never count toward a public match.
    for forwarded in [
        "/admin?redirect=/static/",
        "/admin#/static/x",
        "/admin?%2fstatic%2f",
        "/admin;/static/",
        "/admin/..;/static/",
    ] {
        assert!(!skips_sign_in(forwarded), "{forwarded} must stay private");
    }
}

#[test]
fn profile_values_cannot_inject_a_header() {
    for nickname in ["a\r\nX-Wxgate-Openid: admin", "a\nb", "a\0b", "小明\r\n"] {
        let encoded = percent_encode_header(nickname);
        assert!(
            encoded.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "{nickname:?} -> {encoded:?}"
        );
        assert!(http::HeaderValue::from_str(&encoded).is_ok());
    }
}

#[test]
fn every_hostile_header_name_in_the_corpus_is_removed_when_it_must_be() {
    let names = header_names();
    assert!(names.len() >= 50, "corpus has {} names", names.len());
    let identity = http::HeaderName::from_static("x-wxgate-jwt-assertion");
    let mut wrong = vec![];
    for (when, name) in &names {
        for trusted in [false, true] {
            let mut h = http::HeaderMap::new();
            h.insert(
                http::HeaderName::from_bytes(name.as_bytes()).expect("a valid name"),
                http::HeaderValue::from_static("forged"),
            );
            wxgate::proxy::headers::strip_identity_headers(&mut h, &identity, trusted);
            let removed = h.is_empty();
            let want = match when {
                Removed::Always => true,
                Removed::Untrusted => !trusted,
                Removed::Never => false,
            };
            if removed != want {
                wrong.push(format!("{name} (trusted {trusted}): removed {removed}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
