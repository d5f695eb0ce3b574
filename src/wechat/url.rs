//! The links wxgate sends browsers to, and the small values WeChat hands back: pure
//! functions, because WeChat matches these byte for byte.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::config::Scope;

/// What `encodeURIComponent` leaves alone; everything else, every reserved character
/// included, is escaped so `redirect_uri` survives as one opaque parameter.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Percent-encodes like JavaScript's `encodeURIComponent`.
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, URI_COMPONENT).to_string()
}

/// The official account's authorize link. WeChat accepts only this parameter order,
/// and only with the `#wechat_redirect` fragment, even when reached through a 302.
pub fn authorize_url(
    base: &str,
    appid: &str,
    redirect_uri: &str,
    scope: Scope,
    state: &str,
    force_popup: bool,
) -> String {
    let popup = if force_popup { "&forcePopup=true" } else { "" };
    format!(
        "{base}?appid={}&redirect_uri={}&response_type=code&scope={}&state={}{popup}#wechat_redirect",
        encode_component(appid),
        encode_component(redirect_uri),
        scope.as_str(),
        encode_component(state),
    )
}

/// The Open Platform website application's QR login link (a different appid).
pub fn qrconnect_url(base: &str, website_appid: &str, redirect_uri: &str, state: &str) -> String {
    format!(
        "{base}?appid={}&redirect_uri={}&response_type=code&scope=snsapi_login&state={}#wechat_redirect",
        encode_component(website_appid),
        encode_component(redirect_uri),
        encode_component(state),
    )
}

/// WeChat rejects any `state` outside 1–128 characters of `[A-Za-z0-9]`.
pub fn is_valid_state(state: &str) -> bool {
    (1..=128).contains(&state.len()) && state.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// WeChat's `scope` field is a comma list, sometimes with a trailing comma.
pub fn parse_scopes(scope: &str) -> Vec<String> {
    scope
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://open.weixin.qq.com/connect/oauth2/authorize";

    #[test]
    fn authorize_url_keeps_wechats_parameter_order_and_fragment() {
        let cases: &[(&str, Scope, &str, bool, &str)] = &[
            (
                "https://app.example.com/_wxgate/callback",
                Scope::Base,
                "abc123",
                false,
                "?appid=wx1&redirect_uri=https%3A%2F%2Fapp.example.com%2F_wxgate%2Fcallback&response_type=code&scope=snsapi_base&state=abc123#wechat_redirect",
            ),
            (
                "https://app.example.com/cb?x=1&y=a b#frag",
                Scope::UserInfo,
                "S",
                true,
                "?appid=wx1&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb%3Fx%3D1%26y%3Da%20b%23frag&response_type=code&scope=snsapi_userinfo&state=S&forcePopup=true#wechat_redirect",
            ),
            (
                "http://h:8080/a-b_c.d!e~f*g'h(i)j+k,l;m@n$o",
                Scope::Base,
                "z",
                false,
                "?appid=wx1&redirect_uri=http%3A%2F%2Fh%3A8080%2Fa-b_c.d!e~f*g'h(i)j%2Bk%2Cl%3Bm%40n%24o&response_type=code&scope=snsapi_base&state=z#wechat_redirect",
            ),
            (
                "https://例子.cn/路径",
                Scope::Base,
                "z",
                false,
                "?appid=wx1&redirect_uri=https%3A%2F%2F%E4%BE%8B%E5%AD%90.cn%2F%E8%B7%AF%E5%BE%84&response_type=code&scope=snsapi_base&state=z#wechat_redirect",
            ),
        ];
        for (redirect, scope, state, popup, want) in cases {
            assert_eq!(
                authorize_url(BASE, "wx1", redirect, *scope, state, *popup),
                format!("{BASE}{want}"),
                "{redirect}"
            );
        }
    }

    #[test]
    fn qrconnect_url_asks_for_snsapi_login_with_the_website_appid() {
        assert_eq!(
            qrconnect_url(
                "https://open.weixin.qq.com/connect/qrconnect",
                "wxweb",
                "https://a.cn/cb",
                "st"
            ),
            "https://open.weixin.qq.com/connect/qrconnect?appid=wxweb&redirect_uri=https%3A%2F%2Fa.cn%2Fcb&response_type=code&scope=snsapi_login&state=st#wechat_redirect"
        );
    }

    #[test]
    fn state_must_be_1_to_128_alphanumerics() {
        let long_ok = "a".repeat(128);
        let too_long = "a".repeat(129);
        let cases: &[(&str, bool)] = &[
            ("a", true),
            ("AZaz09", true),
            (&long_ok, true),
            ("", false),
            (&too_long, false),
            ("a-b", false),
            ("a b", false),
            ("a_b", false),
            ("é", false),
            ("abc=", false),
        ];
        for (state, ok) in cases {
            assert_eq!(is_valid_state(state), *ok, "{state:?}");
        }
    }

    #[test]
    fn scopes_are_read_from_a_comma_list_with_trailing_comma() {
        let cases: &[(&str, &[&str])] = &[
            ("snsapi_base", &["snsapi_base"]),
            ("snsapi_userinfo,", &["snsapi_userinfo"]),
            (
                "snsapi_base,snsapi_userinfo,",
                &["snsapi_base", "snsapi_userinfo"],
            ),
            (
                " snsapi_base , snsapi_userinfo",
                &["snsapi_base", "snsapi_userinfo"],
            ),
            ("", &[]),
            (",,", &[]),
        ];
        for (input, want) in cases {
            assert_eq!(parse_scopes(input), *want, "{input:?}");
        }
    }
}
