//! A route's path: exact (`/login`) or a prefix (`/crm/*`, which is `/crm` itself and
//! everything under `/crm/`), compared with the normalised path as `access.*_paths`
//! are (see `auth::paths`), case-sensitively.

use crate::signin::paths::normalize_path;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathPattern {
    /// `/login`: this path only (a trailing slash counts).
    Exact(String),
    /// `/crm/*` stored as `/crm`; `/*` as `""` (every path).
    Prefix(String),
}

impl PathPattern {
    pub fn parse(raw: &str) -> Result<PathPattern, String> {
        let (body, prefix) = match raw.strip_suffix("/*") {
            Some(b) => (b, true),
            None => (raw, false),
        };
        if !raw.starts_with('/') {
            return Err(format!("{raw:?} must start with /"));
        }
        if body.contains('*') {
            return Err(format!("{raw:?}: '*' is allowed only as a final \"/*\""));
        }
        let as_path = if body.is_empty() { "/" } else { body };
        if body.contains(['?', '#', '%', '\\'])
            || normalize_path(as_path).as_deref() != Some(as_path)
        {
            return Err(format!(
                "{raw:?} must be a plain normalised path (no query, fragment, escapes, dot segments or double slashes)"
            ));
        }
        if raw == "/_wxgate" || raw.starts_with("/_wxgate/") {
            return Err(format!("{raw:?}: /_wxgate/ belongs to wxgate"));
        }
        Ok(if prefix {
            PathPattern::Prefix(body.trim_end_matches('/').to_string())
        } else {
            PathPattern::Exact(body.to_string())
        })
    }

    /// Whether a normalised path is one this pattern names.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => p == path,
            PathPattern::Prefix(p) => is_under(path, p),
        }
    }

    /// Whether every path `other` matches, this one matches too.
    pub fn covers(&self, other: &PathPattern) -> bool {
        match (self, other) {
            (PathPattern::Exact(a), PathPattern::Exact(b)) => a == b,
            (PathPattern::Exact(_), PathPattern::Prefix(_)) => false,
            (PathPattern::Prefix(p), PathPattern::Exact(e)) => is_under(e, p),
            (PathPattern::Prefix(p), PathPattern::Prefix(q)) => is_under(q, p),
        }
    }

    /// The upstream's path for a normalised request path this pattern matched, when the
    /// route strips its prefix: `/crm/a` under `/crm/*` is `/a`, `/crm` is `/`. The
    /// rest is percent-encoded again (it was decoded to be matched), so what the app
    /// reads is exactly the part after the prefix.
    pub fn strip(&self, path: &str) -> String {
        let rest = match self {
            PathPattern::Prefix(p) => path.strip_prefix(p.as_str()).unwrap_or(path),
            PathPattern::Exact(_) => "",
        };
        let mut out = String::with_capacity(rest.len() + 1);
        if !rest.starts_with('/') {
            out.push('/');
        }
        out.extend(percent_encoding::utf8_percent_encode(rest, PATH_UNSAFE));
        out
    }
}

/// Bytes a path segment must not carry bare: what `normalize_path` decoded (controls
/// and non-ASCII are refused or kept as UTF-8 there) plus the delimiters of a URI.
const PATH_UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'^')
    .add(b'|');

impl std::fmt::Display for PathPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathPattern::Exact(p) => f.write_str(p),
            PathPattern::Prefix(p) => write!(f, "{p}/*"),
        }
    }
}

/// `/crm` and `/crm/...` are under `/crm`; `/crmx` is not; everything is under `""`.
fn is_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathPattern {
        PathPattern::parse(s).unwrap()
    }

    #[test]
    fn patterns_are_plain_paths_with_an_optional_final_star() {
        assert_eq!(p("/crm/*"), PathPattern::Prefix("/crm".into()));
        assert_eq!(p("/*"), PathPattern::Prefix("".into()));
        assert_eq!(p("/login"), PathPattern::Exact("/login".into()));
        assert_eq!(p("/"), PathPattern::Exact("/".into()));
        for bad in [
            "crm/*",
            "/a*/x",
            "/a/*/b",
            "/a/../b",
            "//a",
            "/a%2e",
            "/a\\b",
            "/a?b",
            "/_wxgate/*",
            "/_wxgate",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_prefix_covers_itself_and_below_but_not_siblings() {
        let crm = p("/crm/*");
        for (path, want) in [
            ("/crm", true),
            ("/crm/", true),
            ("/crm/a/b", true),
            ("/crmx", false),
            ("/Crm/a", false),
            ("/", false),
        ] {
            assert_eq!(crm.matches(path), want, "{path}");
        }
        assert!(p("/*").matches("/"));
        assert!(p("/crm/*").covers(&p("/crm/admin/*")));
        assert!(p("/crm/*").covers(&p("/crm")));
        assert!(!p("/crm/*").covers(&p("/crmx/*")));
        assert!(!p("/crm").covers(&p("/crm/*")));
        assert!(p("/*").covers(&p("/anything")));
    }

    #[test]
    fn stripping_keeps_what_follows_the_prefix_encoded_again() {
        assert_eq!(p("/crm/*").strip("/crm/a/b"), "/a/b");
        assert_eq!(p("/crm/*").strip("/crm"), "/");
        assert_eq!(p("/crm/*").strip("/crm/"), "/");
        assert_eq!(p("/crm/*").strip("/crm/a b/100%"), "/a%20b/100%25");
        assert_eq!(p("/crm/*").strip("/crm/文?#"), "/%E6%96%87%3F%23");
        assert_eq!(p("/*").strip("/x"), "/x");
        assert_eq!(p("/login").strip("/login"), "/");
    }
}
