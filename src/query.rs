//! Reading URL query strings.

/// A query parameter, percent-decoded ('+' is a space, as in forms). First one wins.
pub fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != name {
            return None;
        }
        let v = v.replace('+', " ");
        percent_encoding::percent_decode_str(&v)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded_once() {
        let q = "rd=%2Fa%3Fb%3D1&code=abc&state=S&x=a+b&rd=/second";
        assert_eq!(param(q, "rd").as_deref(), Some("/a?b=1"));
        assert_eq!(param(q, "code").as_deref(), Some("abc"));
        assert_eq!(param(q, "x").as_deref(), Some("a b"));
        assert_eq!(param(q, "missing"), None);
        assert_eq!(param("rd=%252F", "rd").as_deref(), Some("%2F"));
    }
}
