//! The mock's pure parts: WeChat's strict reading of an authorize link, where the
//! callback's code and state go, stable per-app openids, and form/query decoding.

use base64::Engine as _;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use super::MockConfig;
use crate::wechat::{encode_component, is_valid_state};

/// Which of WeChat's two link pages is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// `/connect/oauth2/authorize` (official account, inside WeChat).
    OAuth2,
    /// `/connect/qrconnect` (Open Platform website application, desktop).
    QrConnect,
}

/// A link WeChat would accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    pub appid: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: String,
    pub force_popup: bool,
}

/// Why WeChat's page refuses a link, with the code its page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The link does not match WeChat's pattern (parameter order, response_type).
    LinkInvalid,
    /// 10003: redirect_uri's host is not a configured callback domain.
    RedirectDomain,
    /// 10005: the app lacks this scope.
    Scope,
    /// 10016: an Open Platform appid used on the official-account page.
    OpenPlatformAppid,
    /// 40013: no such appid.
    Appid,
    /// 10011: redirect_uri missing or not an http(s) URL.
    RedirectUri,
    /// `state` outside 1–128 characters of `[A-Za-z0-9]` (when given at all).
    State,
}

impl Refusal {
    pub fn code(self) -> u32 {
        match self {
            Self::LinkInvalid => 0,
            Self::RedirectDomain => 10003,
            Self::Scope => 10005,
            Self::OpenPlatformAppid => 10016,
            Self::Appid => 40013,
            Self::RedirectUri => 10011,
            Self::State => 0,
        }
    }

    /// The words on WeChat's own page.
    pub fn message(self) -> &'static str {
        match self {
            Self::LinkInvalid => "该链接无法访问",
            Self::RedirectDomain => "redirect_uri 域名与后台配置不一致",
            Self::Scope => "此公众号并没有这些scope的权限",
            Self::OpenPlatformAppid => "不支持微信开放平台的Appid，请使用公众号Appid",
            Self::Appid => "appid 参数错误",
            Self::RedirectUri => "redirect_uri 参数错误",
            Self::State => "state 参数错误",
        }
    }

    /// The message in English, shown under WeChat's own Chinese one.
    pub fn message_en(self) -> &'static str {
        match self {
            Self::LinkInvalid => "This link cannot be accessed",
            Self::RedirectDomain => "The redirect_uri domain does not match the account's settings",
            Self::Scope => "This official account has no permission for this scope",
            Self::OpenPlatformAppid => {
                "Open Platform appids are not supported here: use the official account's appid"
            }
            Self::Appid => "The appid parameter is wrong",
            Self::RedirectUri => "The redirect_uri parameter is wrong",
            Self::State => "The state parameter is wrong",
        }
    }

    /// A stable name for scripts (the `x-mock-wechat-error` header).
    pub fn name(self) -> &'static str {
        match self {
            Self::LinkInvalid => "link_invalid",
            Self::RedirectDomain => "redirect_domain",
            Self::Scope => "scope",
            Self::OpenPlatformAppid => "open_platform_appid",
            Self::Appid => "appid",
            Self::RedirectUri => "redirect_uri",
            Self::State => "state",
        }
    }
}

/// Reads an authorize/qrconnect query the way WeChat matches it: these names in this
/// order (`state`, then `forcePopup` on the OAuth2 page, optional), `response_type=code`.
/// The `#wechat_redirect` fragment never reaches a server, so it cannot be checked here.
pub fn check_link(
    raw_query: &str,
    kind: LinkKind,
    config: &MockConfig,
) -> Result<AuthorizeRequest, Refusal> {
    let pairs = parse_query(raw_query);
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    let mut allowed: Vec<&[&str]> = vec![
        &["appid", "redirect_uri", "response_type", "scope"],
        &["appid", "redirect_uri", "response_type", "scope", "state"],
    ];
    if kind == LinkKind::OAuth2 {
        allowed.push(&[
            "appid",
            "redirect_uri",
            "response_type",
            "scope",
            "forcePopup",
        ]);
        allowed.push(&[
            "appid",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
            "forcePopup",
        ]);
    }
    if !allowed.contains(&names.as_slice()) {
        return Err(Refusal::LinkInvalid);
    }
    let get = |name: &str| param(&pairs, name).unwrap_or_default().to_string();
    if get("response_type") != "code" {
        return Err(Refusal::LinkInvalid);
    }
    let req = AuthorizeRequest {
        appid: get("appid"),
        redirect_uri: get("redirect_uri"),
        scope: get("scope"),
        state: get("state"),
        force_popup: get("forcePopup") == "true",
    };
    check_request(&req, kind, config)?;
    Ok(req)
}

/// The checks that do not depend on the link's shape (also applied to consent forms).
pub fn check_request(
    req: &AuthorizeRequest,
    kind: LinkKind,
    config: &MockConfig,
) -> Result<(), Refusal> {
    match kind {
        LinkKind::OAuth2 if req.appid == config.appid => {}
        LinkKind::OAuth2 if req.appid == config.website_appid => {
            return Err(Refusal::OpenPlatformAppid)
        }
        LinkKind::QrConnect if req.appid == config.website_appid => {}
        _ => return Err(Refusal::Appid),
    }
    let host = redirect_host(&req.redirect_uri).ok_or(Refusal::RedirectUri)?;
    if !config.authorized_hosts.is_empty()
        && !config
            .authorized_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&host))
    {
        return Err(Refusal::RedirectDomain);
    }
    let scope_ok = match kind {
        LinkKind::OAuth2 => req.scope == "snsapi_base" || req.scope == "snsapi_userinfo",
        LinkKind::QrConnect => req.scope == "snsapi_login",
    };
    if !scope_ok {
        return Err(Refusal::Scope);
    }
    // WeChat documents state as optional; when present it must be what it allows.
    if !req.state.is_empty() && !is_valid_state(&req.state) {
        return Err(Refusal::State);
    }
    Ok(())
}

/// The host (no port) of an http(s) redirect_uri.
fn redirect_host(uri: &str) -> Option<String> {
    let url = reqwest::Url::parse(uri).ok()?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return None;
    }
    url.host_str().map(str::to_ascii_lowercase)
}

/// `redirect_uri?code=CODE&state=STATE` (no code when the user refused): the
/// parameters go before any `#fragment`, joined with `&` when a query is already there.
pub fn callback_location(redirect_uri: &str, code: Option<&str>, state: &str) -> String {
    let (base, fragment) = match redirect_uri.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (redirect_uri, None),
    };
    let mut out = String::from(base);
    out.push(if base.contains('?') { '&' } else { '?' });
    if let Some(code) = code {
        out.push_str("code=");
        out.push_str(&encode_component(code));
        out.push('&');
    }
    out.push_str("state=");
    out.push_str(&encode_component(state));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// A `Location` header value: the redirect_uri came percent-decoded out of the link,
/// so non-ASCII, spaces and controls are escaped again (everything else is kept).
pub fn location_value(url: &str) -> String {
    const UNSAFE: &AsciiSet = &CONTROLS.add(b' ');
    utf8_percent_encode(url, UNSAFE).to_string()
}

/// A WeChat-looking id (`o` + 27 characters) derived from its parts, so the same user
/// has one openid per appid and one unionid across apps.
pub fn derive_id(kind: &str, parts: &[&str]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(kind.as_bytes());
    for p in parts {
        ctx.update(b"\0");
        ctx.update(p.as_bytes());
    }
    let digest = ctx.finish();
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    format!("o{}", &text[..27])
}

/// The first value of `name` in a parsed query or form.
pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `application/x-www-form-urlencoded` and query strings: `+` is a space, bad escapes
/// are kept as they are.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_decode_str(&s).decode_utf8_lossy().into_owned()
}

/// The mock's pages escape like wxgate's own.
pub use crate::pages::escape as html_escape;

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MockConfig {
        MockConfig {
            authorized_hosts: vec!["app.example.com".into()],
            ..MockConfig::default()
        }
    }

    #[test]
    fn authorize_links_are_matched_as_strictly_as_wechat_does() {
        let c = config();
        let app = c.appid.clone();
        let web = c.website_appid.clone();
        let cb = "https%3A%2F%2Fapp.example.com%3A8443%2F_wxgate%2Fcallback";
        let cases: Vec<(String, Result<(), Refusal>)> = vec![
            (format!("appid={app}&redirect_uri={cb}&response_type=code&scope=snsapi_base&state=abc"), Ok(())),
            (format!("appid={app}&redirect_uri={cb}&response_type=code&scope=snsapi_userinfo&state=abc&forcePopup=true"), Ok(())),
            (format!("appid={app}&redirect_uri={cb}&response_type=code&scope=snsapi_base"), Ok(())),
            (format!("redirect_uri={cb}&appid={app}&response_type=code&scope=snsapi_base&state=abc"), Err(Refusal::LinkInvalid)),
            (format!("appid={app}&redirect_uri={cb}&scope=snsapi_base&response_type=code&state=abc"), Err(Refusal::LinkInvalid)),
            (format!("appid={app}&redirect_uri={cb}&response_type=token&scope=snsapi_base&state=abc"), Err(Refusal::LinkInvalid)),
            (format!("appid={app}&redirect_uri={cb}&response_type=code&scope=snsapi_base&state=abc&x=1"), Err(Refusal::LinkInvalid)),
            (format!("appid=wxnobody&redirect_uri={cb}&response_type=code&scope=snsapi_base&state=a"), Err(Refusal::Appid)),
            (format!("appid={web}&redirect_uri={cb}&response_type=code&scope=snsapi_base&state=a"), Err(Refusal::OpenPlatformAppid)),
            (format!("appid={app}&redirect_uri=https%3A%2F%2Fevil.example.com%2Fcb&response_type=code&scope=snsapi_base&state=a"), Err(Refusal::RedirectDomain)),
            (format!("appid={app}&redirect_uri=https%3A%2F%2Fsub.app.example.com%2Fcb&response_type=code&scope=snsapi_base&state=a"), Err(Refusal::RedirectDomain)),
            (format!("appid={app}&redirect_uri=javascript%3Aalert(1)&response_type=code&scope=snsapi_base&state=a"), Err(Refusal::RedirectUri)),
            (format!("appid={app}&redirect_uri={cb}&response_type=code&scope=snsapi_login&state=a"), Err(Refusal::Scope)),
            (format!("appid={app}&redirect_uri={cb}&response_type=code&scope=snsapi_base,snsapi_userinfo&state=a"), Err(Refusal::Scope)),
            (format!("appid={app}&redirect_uri={cb}&response_type=code&scope=snsapi_base&state="), Ok(())),
            (format!("appid={app}&redirect_uri={cb}&response_type=code&scope=snsapi_base&state=a-b"), Err(Refusal::State)),
            (format!("appid={app}&redirect_uri={cb}&response_type=code&scope=snsapi_base&state={}", "a".repeat(129)), Err(Refusal::State)),
        ];
        for (query, want) in cases {
            let got = check_link(&query, LinkKind::OAuth2, &c).map(|_| ());
            assert_eq!(got, want, "{query}");
        }
    }

    #[test]
    fn qrconnect_links_need_the_website_appid_and_snsapi_login() {
        let c = config();
        let app = c.appid.clone();
        let web = c.website_appid.clone();
        let cb = "https%3A%2F%2Fapp.example.com%2Fcb";
        let cases: Vec<(String, Result<(), Refusal>)> = vec![
            (format!("appid={web}&redirect_uri={cb}&response_type=code&scope=snsapi_login&state=s"), Ok(())),
            (format!("appid={app}&redirect_uri={cb}&response_type=code&scope=snsapi_login&state=s"), Err(Refusal::Appid)),
            (format!("appid={web}&redirect_uri={cb}&response_type=code&scope=snsapi_base&state=s"), Err(Refusal::Scope)),
            (format!("appid={web}&redirect_uri={cb}&response_type=code&scope=snsapi_login&state=s&forcePopup=true"), Err(Refusal::LinkInvalid)),
        ];
        for (query, want) in cases {
            let got = check_link(&query, LinkKind::QrConnect, &c).map(|_| ());
            assert_eq!(got, want, "{query}");
        }
    }

    #[test]
    fn an_empty_host_list_authorizes_any_callback_domain() {
        let c = MockConfig::default();
        let q = format!(
            "appid={}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&response_type=code&scope=snsapi_base&state=s",
            c.appid
        );
        let req = check_link(&q, LinkKind::OAuth2, &c).map_err(Refusal::code);
        assert_eq!(
            req.map(|r| r.redirect_uri),
            Ok("http://127.0.0.1:9/cb".to_string())
        );
    }

    #[test]
    fn callback_parameters_go_before_the_fragment() {
        let cases: &[(&str, Option<&str>, &str, &str)] = &[
            (
                "https://a.cn/cb",
                Some("C1"),
                "S",
                "https://a.cn/cb?code=C1&state=S",
            ),
            (
                "https://a.cn/cb?x=1",
                Some("C1"),
                "S",
                "https://a.cn/cb?x=1&code=C1&state=S",
            ),
            (
                "https://a.cn/cb#/spa",
                Some("C1"),
                "S",
                "https://a.cn/cb?code=C1&state=S#/spa",
            ),
            (
                "https://a.cn/cb?x=1#f?y",
                Some("C"),
                "S",
                "https://a.cn/cb?x=1&code=C&state=S#f?y",
            ),
            ("https://a.cn/cb", None, "S", "https://a.cn/cb?state=S"),
            ("https://a.cn/cb", None, "", "https://a.cn/cb?state="),
        ];
        for (uri, code, state, want) in cases {
            assert_eq!(callback_location(uri, *code, state), *want, "{uri}");
        }
    }

    #[test]
    fn locations_escape_only_what_a_header_cannot_carry() {
        let cases: &[(&str, &str)] = &[
            (
                "https://a.cn/cb?code=C&state=S#/x",
                "https://a.cn/cb?code=C&state=S#/x",
            ),
            (
                "https://例子.cn/路径?q=a b",
                "https://%E4%BE%8B%E5%AD%90.cn/%E8%B7%AF%E5%BE%84?q=a%20b",
            ),
            (
                "https://a.cn/\r\nSet-Cookie:x",
                "https://a.cn/%0D%0ASet-Cookie:x",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(location_value(url), *want, "{url}");
        }
    }

    #[test]
    fn openids_differ_per_app_while_unionids_do_not() {
        let a = derive_id("openid", &["wxA", "alice"]);
        let b = derive_id("openid", &["wxB", "alice"]);
        assert_ne!(a, b);
        assert_eq!(a, derive_id("openid", &["wxA", "alice"]));
        assert_eq!(a.len(), 28);
        assert!(a.starts_with('o'));
        // Parts are delimited: ("ab","c") is not ("a","bc").
        assert_ne!(derive_id("x", &["ab", "c"]), derive_id("x", &["a", "bc"]));
    }

    #[test]
    fn forms_decode_plus_and_percent_escapes() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("a=1&b=x+y", &[("a", "1"), ("b", "x y")]),
            (
                "u=https%3A%2F%2Fa.cn%2F%3Fq%3D1",
                &[("u", "https://a.cn/?q=1")],
            ),
            ("flag&&k=", &[("flag", ""), ("k", "")]),
            ("bad=%zz", &[("bad", "%zz")]),
            ("n=%E7%8E%8B", &[("n", "王")]),
        ];
        for (raw, want) in cases {
            let got = parse_query(raw);
            let got: Vec<(&str, &str)> =
                got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(got, *want, "{raw}");
        }
    }
}
