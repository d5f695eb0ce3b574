//! Reading and writing wxgate's cookies: the Set-Cookie attributes and the Cookie
//! request headers.

use std::time::Duration;

use http::HeaderMap;

use crate::config::SameSite;

/// A Set-Cookie value: HttpOnly, Path=/, Secure when asked (always with SameSite=None,
/// which browsers refuse otherwise), and Max-Age when given.
pub fn session_cookie(
    name: &str,
    sealed_value: &str,
    secure: bool,
    same_site: SameSite,
    max_age: Option<Duration>,
) -> String {
    let mut s = format!("{name}={sealed_value}; Path=/; HttpOnly");
    if secure || same_site == SameSite::None {
        s.push_str("; Secure");
    }
    s.push_str(match same_site {
        SameSite::Lax => "; SameSite=Lax",
        SameSite::Strict => "; SameSite=Strict",
        SameSite::None => "; SameSite=None",
    });
    if let Some(age) = max_age {
        s.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    s
}

/// A Set-Cookie value that makes the browser forget the cookie.
pub fn clear_cookie(name: &str, secure: bool, same_site: SameSite) -> String {
    session_cookie(name, "", secure, same_site, Some(Duration::ZERO))
}

/// Every (name, value) pair of every Cookie header (HTTP/2 clients send one per cookie).
pub fn all_cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .map(|(n, v)| (n.trim(), v.trim()))
}

/// Every value of the cookie `name`, across all Cookie headers (a browser may send
/// several cookies of one name, e.g. set for different paths).
pub fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    all_cookies(headers)
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn set_cookie_values_carry_the_safe_attributes() {
        let day = Some(Duration::from_secs(86400));
        let table: &[(bool, SameSite, Option<Duration>, &str)] = &[
            (
                true,
                SameSite::Lax,
                day,
                "n=v; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=86400",
            ),
            (
                false,
                SameSite::Strict,
                None,
                "n=v; Path=/; HttpOnly; SameSite=Strict",
            ),
            (
                false,
                SameSite::None,
                None,
                "n=v; Path=/; HttpOnly; Secure; SameSite=None",
            ),
        ];
        for (secure, same_site, max_age, want) in table {
            assert_eq!(
                session_cookie("n", "v", *secure, *same_site, *max_age),
                *want
            );
        }
        assert_eq!(
            clear_cookie("n", true, SameSite::Lax),
            "n=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0"
        );
    }

    #[test]
    fn cookie_values_come_from_every_cookie_header_and_only_that_name() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; _wxgate=x; _wxgate_s=z"),
        );
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("b=2;_wxgate=y=="),
        );
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("novalue; _wxgate"),
        );
        assert_eq!(
            cookie_values(&h, "_wxgate").collect::<Vec<_>>(),
            vec!["x", "y=="]
        );
        assert_eq!(cookie_values(&HeaderMap::new(), "_wxgate").count(), 0);
    }
}
