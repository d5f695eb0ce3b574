//! Request-path normalisation and the `public_paths` / `api_paths` matcher.
//!
//! A public-path rule is an authentication bypass by design, so the path it is compared
//! with must be the path the upstream will serve, not a spelling an attacker chose.
//! [`normalize_path`] decodes once, resolves dot segments and collapses slashes, and
//! refuses every form an upstream could read differently from us (encoded slashes and
//! backslashes, `..;` as Tomcat reads it, double-encoded dots). Matching is
//! case-sensitive: upstreams usually are, so `/Static/x` is not under `/static/*`, and
//! a case-insensitive match would make public paths an upstream treats as distinct.

use std::collections::HashSet;

use percent_encoding::percent_decode_str;

/// Decodes, resolves and collapses a request path; `None` means the path is refused
/// (the caller answers 400 rather than guessing what the upstream would serve).
///
/// The input is the URI path; a query or fragment, if any slipped in, is dropped.
/// Percent-escapes are decoded exactly once; a decoded `/` or `\`, a control character,
/// a segment that reads `.`/`..` before a `;`, or a still-encoded `%2e`/`%2f`/`%5c`
/// after decoding are refused. The result keeps a trailing slash and never climbs
/// above the root.
pub fn normalize_path(raw_path: &str) -> Option<String> {
    let path = raw_path.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') || path.contains('\\') {
        return None;
    }
    if is_normal(path) {
        return Some(path.to_string());
    }
    normalize_slow(path)
}

/// Whether the slow path would give `path` back unchanged: nothing to decode, no dot
/// or empty segment (a trailing slash aside), nothing it refuses. Most requests'
/// paths are, and this spares them a string per segment.
fn is_normal(path: &str) -> bool {
    if path
        .bytes()
        .any(|b| matches!(b, b'%' | b'\\' | 0..=0x1f | 0x7f))
    {
        return false;
    }
    let mut segments = path[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if (seg.is_empty() && !last) || matches!(seg.split(';').next(), Some("." | "..")) {
            return false;
        }
    }
    true
}

fn normalize_slow(path: &str) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    let raw_segments: Vec<&str> = path[1..].split('/').collect();
    let last = raw_segments.len() - 1;
    let mut trailing_slash = false;
    for (i, raw) in raw_segments.iter().enumerate() {
        let seg = decode_segment(raw)?;
        let is_last = i == last;
        match seg.as_str() {
            "" => trailing_slash = is_last,
            "." => trailing_slash = is_last,
            ".." => {
                out.pop();
                trailing_slash = is_last;
            }
            _ => {
                out.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut normalized = String::with_capacity(path.len());
    for seg in &out {
        normalized.push('/');
        normalized.push_str(seg);
    }
    if trailing_slash || normalized.is_empty() {
        normalized.push('/');
    }
    Some(normalized)
}

/// Decodes one segment, refusing the spellings that let a segment mean something else
/// to a later decoder or to a servlet container.
fn decode_segment(raw: &str) -> Option<String> {
    let bytes: Vec<u8> = percent_decode_str(raw).collect();
    if bytes
        .iter()
        .any(|b| matches!(b, b'/' | b'\\' | 0..=0x1f | 0x7f))
    {
        return None;
    }
    // Invalid UTF-8 (a legacy GBK path, say) is kept lossily: U+FFFD can never form a
    // `/` or a `.`, so it cannot move a path across a pattern boundary.
    let seg = String::from_utf8_lossy(&bytes).into_owned();
    if is_dot_with_params(&seg) || !later_decodings_are_inert(&seg) {
        return None;
    }
    Some(seg)
}

/// Tomcat and Jetty strip `;params` before resolving dots: `/static/..;/admin` is
/// `/admin` to them.
fn is_dot_with_params(seg: &str) -> bool {
    seg.contains(';') && matches!(seg.split(';').next(), Some("." | ".."))
}

/// An upstream (or a framework behind it) may decode again. Whatever those further
/// decodings produce must stay one ordinary segment: no slash, backslash, control or
/// dot segment; and a segment still changing after four decodings is refused.
fn later_decodings_are_inert(seg: &str) -> bool {
    let mut current = seg.to_string();
    for round in 0..4 {
        let decoded = percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == current {
            return true;
        }
        let dots = matches!(decoded.split(';').next(), Some("." | ".."));
        if dots || decoded.contains(['/', '\\']) || decoded.chars().any(char::is_control) {
            return false;
        }
        if round == 3 {
            break;
        }
        current = decoded;
    }
    false
}

/// Why a path pattern cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathPatternError {
    #[error("{0:?}: a path pattern must be a normalised path starting with /")]
    NotNormalized(String),
    #[error("{0:?}: '*' is allowed only as a final \"/*\"")]
    Wildcard(String),
}

/// A compiled list of `"/exact"` and `"/prefix/*"` patterns.
///
/// `"/prefix/*"` matches `/prefix` itself and everything under `/prefix/`, never
/// `/prefixed`. Patterns are compared with paths from [`normalize_path`] only.
#[derive(Debug, Clone, Default)]
pub struct PathMatcher {
    exact: HashSet<String>,
    /// Prefixes without their trailing slash; `""` (from `"/*"`) matches every path.
    prefixes: Vec<String>,
}

impl PathMatcher {
    /// Compiles patterns once, at config load.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PathPatternError> {
        let mut matcher = PathMatcher::default();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let (body, is_prefix) = match pattern.strip_suffix("/*") {
                Some(body) => (body, true),
                None => (pattern, false),
            };
            if body.contains('*') {
                return Err(PathPatternError::Wildcard(pattern.to_string()));
            }
            let as_path = if body.is_empty() { "/" } else { body };
            // A pattern that normalises to something else would never match what it says.
            if normalize_path(as_path).as_deref() != Some(as_path) || as_path.contains('%') {
                return Err(PathPatternError::NotNormalized(pattern.to_string()));
            }
            if is_prefix {
                matcher
                    .prefixes
                    .push(body.trim_end_matches('/').to_string());
            } else {
                matcher.exact.insert(body.to_string());
            }
        }
        Ok(matcher)
    }

    /// Whether a normalised path is covered by any pattern.
    pub fn matches(&self, normalized: &str) -> bool {
        self.exact.contains(normalized)
            || self.prefixes.iter().any(|p| {
                normalized
                    .strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_path_decodes_once_resolves_dots_and_refuses_smuggling() {
        let table: &[(&str, Option<&str>)] = &[
            ("/", Some("/")),
            ("/a/b", Some("/a/b")),
            ("/a/b/", Some("/a/b/")),
            ("//a///b", Some("/a/b")),
            ("/a/./b", Some("/a/b")),
            ("/a/b/..", Some("/a/")),
            ("/a/b/.", Some("/a/b/")),
            ("/../../etc/passwd", Some("/etc/passwd")),
            ("/static/../admin", Some("/admin")),
            ("/static/%2e%2e/admin", Some("/admin")),
            ("/static/%2E./admin", Some("/admin")),
            ("/st%61tic/x", Some("/static/x")),
            ("/a%20b", Some("/a b")),
            ("/%E6%96%87%E7%AB%A0", Some("/文章")),
            ("/%FF", Some("/\u{FFFD}")),
            ("/a;v=1/b", Some("/a;v=1/b")),
            ("/a?x=/static/", Some("/a")),
            ("/a#/static/", Some("/a")),
            ("/100%25", Some("/100%")),
            ("/static%2f..%2fadmin", None),
            ("/static%2F..%2Fadmin", None),
            ("/a%5cb", None),
            ("/a\\b", None),
            ("/static/..;/admin", None),
            ("/static/.;/admin", None),
            ("/static/%2e%2e;/admin", None),
            ("/static/%252e%252e/admin", None),
            ("/static/%252f", None),
            ("/static/%25252e%25252e/admin", None),
            ("/static/%255c", None),
            ("/static/%2500", None),
            ("/static/%252e%252e%253b/admin", None),
            ("/static/%2541", Some("/static/%41")),
            ("/a%00b", None),
            ("/a%0d%0ab", None),
            ("/a%09", None),
            ("/a%7f", None),
            ("a/b", None),
            ("", None),
            ("*", None),
        ];
        for (raw, want) in table {
            assert_eq!(
                normalize_path(raw).as_deref(),
                *want,
                "normalize_path({raw:?})"
            );
        }
    }

    #[test]
    fn the_fast_path_only_takes_paths_the_full_normalisation_gives_back_unchanged() {
        let paths = [
            "/",
            "/a",
            "/a/b/",
            "/a;v=1/b",
            "/;x",
            "/a.b/c..d/.e",
            "/文章",
            "/a b",
            "//a",
            "/a//",
            "/.",
            "/..",
            "/a/.",
            "/a/..",
            "/.;x",
            "/..;x",
            "/a/./b",
            "/a%41",
            "/a\u{7f}",
            "/a\tb",
            "/...",
            "/a/.../b",
        ];
        let mut fast = 0;
        for p in paths {
            if is_normal(p) {
                fast += 1;
                assert_eq!(normalize_slow(p).as_deref(), Some(p), "{p:?}");
            }
            assert_eq!(normalize_path(p), normalize_slow(p), "{p:?}");
        }
        assert!(fast >= 10, "only {fast} paths took the fast path");
    }

    #[test]
    fn prefix_pattern_covers_itself_and_below_but_not_siblings() {
        let m = PathMatcher::new(&["/static/*", "/healthz", "/docs/"]).unwrap();
        let table: &[(&str, bool)] = &[
            ("/static", true),
            ("/static/", true),
            ("/static/app.js", true),
            ("/static/a/b/c", true),
            ("/staticfoo", false),
            ("/statics/x", false),
            ("/Static/x", false),
            ("/healthz", true),
            ("/healthz/", false),
            ("/healthz/x", false),
            ("/docs/", true),
            ("/docs", false),
            ("/", false),
            ("/admin", false),
        ];
        for (path, want) in table {
            assert_eq!(m.matches(path), *want, "matches({path:?})");
        }
    }

    #[test]
    fn root_wildcard_matches_everything_and_empty_matches_nothing() {
        let all = PathMatcher::new(&["/*"]).unwrap();
        assert!(all.matches("/") && all.matches("/x/y"));
        let none = PathMatcher::new::<&str>(&[]).unwrap();
        assert!(none.is_empty() && !none.matches("/"));
    }

    #[test]
    fn patterns_that_are_not_plain_paths_are_refused() {
        let table: &[(&str, bool)] = &[
            ("/ok/*", true),
            ("/ok", true),
            ("/*", true),
            ("/a*/x", false),
            ("/a/*/b", false),
            ("/a/../b", false),
            ("//a", false),
            ("/a%2e", false),
            ("relative", false),
            ("/a\\b", false),
        ];
        for (pattern, ok) in table {
            assert_eq!(
                PathMatcher::new(&[pattern]).is_ok(),
                *ok,
                "pattern {pattern:?}"
            );
        }
    }
}
