//! Host names: the patterns a route may name, and the one spelling of a request's host
//! they are compared with.
//!
//! A route's host is exact (`crm.example.com`) or a wildcard (`*.example.com`) that
//! matches one or more whole labels in front of the domain, never the domain itself and
//! never a name that merely ends in the same letters (`evilexample.com`).
//!
//! A request's host is compared after [`normalize_request_host`]: ASCII lowercase, no
//! port, one trailing dot dropped. Internationalised names are compared in their ASCII
//! (`xn--`) form only: a config must write them so, and a request host that is not
//! plain ASCII letters, digits, `-` and `.` (raw UTF-8, percent-escapes, empty labels)
//! matches no host pattern at all. wxgate carries no IDNA tables, and a host it cannot
//! read the way every upstream and browser would is safer sent to no named app.

use std::borrow::Cow;

/// A route's (or `server.extra_hosts`') host, lowercased, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `crm.example.com`
    Exact(String),
    /// `*.example.com`, stored as `example.com`: one or more labels in front of it.
    Under(String),
}

impl HostPattern {
    /// Reads a pattern as the config writes it.
    pub fn parse(raw: &str) -> Result<HostPattern, String> {
        let lower = raw.trim().to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if !raw.is_ascii() {
            return Err(format!(
                "{raw:?}: write an internationalised name in its ASCII form (\"xn--...\"), as browsers send it"
            ));
        }
        if name.contains('*') {
            return Err(format!(
                "{raw:?}: '*' is allowed only as a whole first label (\"*.example.com\")"
            ));
        }
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(format!(
                "{raw:?} is not a host name like \"app.example.com\" or \"*.example.com\" (no scheme, port, path or trailing dot)"
            ));
        }
        if wild && !name.contains('.') {
            return Err(format!(
                "{raw:?}: a wildcard needs a domain of at least two labels (\"*.example.com\")"
            ));
        }
        Ok(if wild {
            HostPattern::Under(name.to_string())
        } else {
            HostPattern::Exact(name.to_string())
        })
    }

    /// Whether a normalised request host is one this pattern names.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Under(domain) => is_under(host, domain),
        }
    }

    /// Whether every host `other` matches, this one matches too.
    pub fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Exact(_), HostPattern::Under(_)) => false,
            (HostPattern::Under(d), HostPattern::Exact(h)) => is_under(h, d),
            (HostPattern::Under(d), HostPattern::Under(e)) => d == e || is_under(e, d),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Under(d) => write!(f, "*.{d}"),
        }
    }
}

/// `a.example.com` and `a.b.example.com` are under `example.com`; `example.com` and
/// `evilexample.com` are not.
fn is_under(host: &str, domain: &str) -> bool {
    host.len() > domain.len() + 1
        && host.ends_with(domain)
        && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
}

fn label_ok(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// The request's host (a `Host` value or an authority) as patterns are compared with:
/// port dropped, one trailing dot dropped, ASCII lowercase. `None` when it is not a
/// plain DNS name (an IP literal in brackets, raw UTF-8, escapes, empty labels): such a
/// host matches no host pattern. Allocates only for a name with capitals.
pub fn normalize_request_host(raw: &str) -> Option<Cow<'_, str>> {
    let name = match raw.rfind(':') {
        Some(i) if raw[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &raw[..i],
        Some(_) => return None,
        None => raw,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut upper = false;
    let mut prev_dot = true;
    for b in name.bytes() {
        match b {
            b'.' if prev_dot => return None,
            b'.' => prev_dot = true,
            b'a'..=b'z' | b'0'..=b'9' | b'-' => prev_dot = false,
            b'A'..=b'Z' => {
                upper = true;
                prev_dot = false;
            }
            _ => return None,
        }
    }
    if prev_dot {
        return None;
    }
    Some(if upper {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    })
}

/// The domains a wildcard could name for `host`, longest first: for `a.b.example.com`,
/// `b.example.com`, `example.com`, `com`.
pub fn parent_domains(host: &str) -> impl Iterator<Item = &str> {
    host.match_indices('.').map(move |(i, _)| &host[i + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_exact_names_or_a_wildcard_first_label() {
        let table: &[(&str, Option<HostPattern>)] = &[
            (
                "crm.example.com",
                Some(HostPattern::Exact("crm.example.com".into())),
            ),
            (
                "CRM.Example.COM",
                Some(HostPattern::Exact("crm.example.com".into())),
            ),
            (
                "*.example.com",
                Some(HostPattern::Under("example.com".into())),
            ),
            (
                "xn--fiqs8s.example.com",
                Some(HostPattern::Exact("xn--fiqs8s.example.com".into())),
            ),
            ("localhost", Some(HostPattern::Exact("localhost".into()))),
            ("127.0.0.1", Some(HostPattern::Exact("127.0.0.1".into()))),
            ("*.com", None),
            ("*", None),
            ("a.*.example.com", None),
            ("*example.com", None),
            ("**.example.com", None),
            ("example.com.", None),
            ("example.com:8080", None),
            ("https://example.com", None),
            ("example.com/x", None),
            ("中国.example.com", None),
            ("-a.example.com", None),
            ("a..example.com", None),
            ("", None),
        ];
        for (raw, want) in table {
            assert_eq!(HostPattern::parse(raw).ok(), *want, "{raw:?}");
        }
    }

    #[test]
    fn request_hosts_lose_port_trailing_dot_and_case_and_nothing_else() {
        let table: &[(&str, Option<&str>)] = &[
            ("crm.example.com", Some("crm.example.com")),
            ("CRM.example.com", Some("crm.example.com")),
            ("crm.example.com:8443", Some("crm.example.com")),
            ("crm.example.com.", Some("crm.example.com")),
            ("crm.example.com.:80", Some("crm.example.com")),
            ("crm.example.com..", None),
            (".crm.example.com", None),
            ("crm..example.com", None),
            ("crm.example.com:", Some("crm.example.com")),
            ("crm.example.com:x", None),
            ("[::1]:8080", None),
            ("[::1]", None),
            ("%63rm.example.com", None),
            ("crm.example.com\u{FF0E}", None),
            ("bücher.example.com", None),
            ("", None),
            (".", None),
        ];
        for (raw, want) in table {
            assert_eq!(normalize_request_host(raw).as_deref(), *want, "{raw:?}");
        }
    }

    #[test]
    fn a_wildcard_matches_whole_labels_in_front_of_its_domain_only() {
        let w = HostPattern::parse("*.example.com").unwrap();
        for (host, want) in [
            ("a.example.com", true),
            ("a.b.example.com", true),
            ("example.com", false),
            ("evilexample.com", false),
            ("a.evilexample.com", false),
            ("example.com.evil.net", false),
            ("aexample.com", false),
            ("a.example.co", false),
        ] {
            assert_eq!(w.matches(host), want, "{host}");
        }
    }

    #[test]
    fn coverage_is_what_matching_implies() {
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert!(p("*.example.com").covers(&p("a.example.com")));
        assert!(p("*.example.com").covers(&p("*.a.example.com")));
        assert!(p("*.example.com").covers(&p("*.example.com")));
        assert!(!p("*.example.com").covers(&p("example.com")));
        assert!(!p("*.a.example.com").covers(&p("*.example.com")));
        assert!(!p("a.example.com").covers(&p("*.example.com")));
        assert!(!p("*.example.com").covers(&p("a.evilexample.com")));
    }

    #[test]
    fn parent_domains_walk_label_by_label() {
        let v: Vec<&str> = parent_domains("a.b.example.com").collect();
        assert_eq!(v, ["b.example.com", "example.com", "com"]);
        assert_eq!(parent_domains("localhost").count(), 0);
    }
}
