//! Query strings and form bodies of OAuth requests. A parameter given twice is an error
//! (RFC 6749 §3.1), never "the first one wins": two readers of one request must not
//! see two different values.

use percent_encoding::{percent_decode_str, utf8_percent_encode};

#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
    /// A pair that did not decode: the request is refused as a whole.
    undecodable: bool,
}

/// The parameter named is given more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated;

impl Params {
    /// `application/x-www-form-urlencoded` text (a query string or a form body).
    pub fn parse(s: &str) -> Params {
        let mut p = Params::default();
        for pair in s.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match (form_decode(k), form_decode(v)) {
                (Some(k), Some(v)) => p.pairs.push((k, v)),
                _ => p.undecodable = true,
            }
        }
        p
    }

    pub fn is_undecodable(&self) -> bool {
        self.undecodable
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 §3.1).
    pub fn one(&self, name: &str) -> Result<Option<&str>, Repeated> {
        let mut found = self
            .pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = found.next();
        if found.next().is_some() {
            return Err(Repeated);
        }
        Ok(first.filter(|v| !v.is_empty()))
    }
}

/// Decodes one form-urlencoded component ('+' is a space); None unless valid UTF-8.
pub fn form_decode(s: &str) -> Option<String> {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Encodes one query component (like encodeURIComponent).
pub fn form_encode(s: &str) -> String {
    utf8_percent_encode(s, crate::signin::COMPONENT).to_string()
}

/// `uri` with `params` added to its query, encoded.
pub fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = uri.to_string();
    let mut sep = if uri.contains('?') { '&' } else { '?' };
    if uri.ends_with('?') || uri.ends_with('&') {
        sep = '\0';
    }
    for (k, v) in params {
        if sep != '\0' {
            out.push(sep);
        }
        sep = '&';
        out.push_str(k);
        out.push('=');
        out.push_str(&form_encode(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_decoded_and_repeats_refused() {
        let p = Params::parse("a=1&b=x+y%21&c=&a2=%E4%B8%AD&d=1&d=2");
        assert_eq!(p.one("a"), Ok(Some("1")));
        assert_eq!(p.one("b"), Ok(Some("x y!")));
        assert_eq!(p.one("c"), Ok(None));
        assert_eq!(p.one("a2"), Ok(Some("中")));
        assert_eq!(p.one("missing"), Ok(None));
        assert_eq!(p.one("d"), Err(Repeated));
        assert!(!p.is_undecodable());
        assert!(Params::parse("a=%FF").is_undecodable());
    }

    #[test]
    fn parameters_are_appended_to_a_query_or_started_one() {
        assert_eq!(
            with_query("https://a.example/cb", &[("code", "x y"), ("state", "s&t")]),
            "https://a.example/cb?code=x%20y&state=s%26t"
        );
        assert_eq!(
            with_query("https://a.example/cb?app=1", &[("code", "c")]),
            "https://a.example/cb?app=1&code=c"
        );
        assert_eq!(
            with_query("https://a.example/cb?", &[("code", "c"), ("k", "v")]),
            "https://a.example/cb?code=c&k=v"
        );
    }
}
