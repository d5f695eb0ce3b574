//! Reading what kind of client sent a request: WeChat's browser or another one, a page
//! navigation or an API call; plus the short browser description the phone shows when
//! confirming a desktop sign-in, and the encoding of profile values put in headers.

use http::{HeaderMap, Method};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use super::paths::PathMatcher;

/// Whether the User-Agent is WeChat's in-app browser, where the authorize URL works.
///
/// Desktop WeChat (`WindowsWechat`, `MacWechat`) carries `MicroMessenger/` and its
/// browser completes web authorization, so it counts. WeCom (`wxwork/`) also carries
/// `MicroMessenger/` but an official account's authorize URL only answers "open this in
/// WeChat" there, so WeCom is treated as any other browser and gets the QR page.
pub fn is_wechat_browser(user_agent: &str) -> bool {
    browser_of(user_agent) == Browser::Wechat
}

/// Whose in-app browser a User-Agent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Browser {
    /// WeCom's (phone or desktop app): `wxwork/`, which also carries `MicroMessenger/`.
    Wecom,
    /// WeChat's (phone, or desktop WeChat's `WindowsWechat` / `MacWechat`).
    Wechat,
    /// Any other browser.
    Other,
}

/// Classifies a User-Agent. WeCom first: its User-Agent says `MicroMessenger/` too.
pub fn browser_of(user_agent: &str) -> Browser {
    let ua = user_agent.to_ascii_lowercase();
    if ua.contains("wxwork/") {
        Browser::Wecom
    } else if ua.contains("micromessenger/") {
        Browser::Wechat
    } else {
        Browser::Other
    }
}

/// Whether the User-Agent is a phone's or tablet's browser: one that cannot scan a QR
/// code on its own screen. (iPadOS Safari says "Macintosh" and counts as a computer.)
pub fn is_mobile_browser(user_agent: &str) -> bool {
    [
        "Mobile",
        "Android",
        "iPhone",
        "iPad",
        "iPod",
        "HarmonyOS",
        "OpenHarmony",
    ]
    .iter()
    .any(|token| user_agent.contains(token))
}

/// Whether an unauthenticated request gets `401` JSON rather than a redirect to sign in.
pub fn is_api_request(
    method: &Method,
    headers: &HeaderMap,
    normalized_path: &str,
    api: &PathMatcher,
) -> bool {
    (method != Method::GET && method != Method::HEAD)
        || api.matches(normalized_path)
        || crate::pages::wants_json(headers)
}

/// A short `(browser, os)` description such as `("Chrome 120", "Windows 10")`.
///
/// Built only from fixed names and version digits, never from UA text, so it is safe
/// to show on a page. Windows 11 reports itself as `Windows NT 10.0`, hence "Windows 10".
pub fn describe_user_agent(ua: &str) -> (String, String) {
    (describe_browser(ua), describe_os(ua).to_string())
}

fn describe_browser(ua: &str) -> String {
    if let Some(v) = version_after(ua, "wxwork/", 2) {
        return format!("WeCom {v}");
    }
    if let Some(v) = version_after(ua, "MicroMessenger/", 2) {
        return format!("WeChat {v}");
    }
    // Order matters: Edge and Opera also say Chrome, Chrome also says Safari.
    let named: &[(&str, &str)] = &[
        ("EdgA/", "Edge"),
        ("EdgiOS/", "Edge"),
        ("Edg/", "Edge"),
        ("Edge/", "Edge"),
        ("OPR/", "Opera"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("UCBrowser/", "UC Browser"),
        ("MQQBrowser/", "QQ Browser"),
        ("QQBrowser/", "QQ Browser"),
        ("Quark/", "Quark"),
        ("FxiOS/", "Firefox"),
        ("Firefox/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("Chrome/", "Chrome"),
    ];
    for (token, name) in named {
        if let Some(v) = version_after(ua, token, 1) {
            return format!("{name} {v}");
        }
    }
    if ua.contains("Safari/") && ua.contains("Version/") {
        return "Safari".to_string();
    }
    "Unknown browser".to_string()
}

fn describe_os(ua: &str) -> &'static str {
    if ua.contains("HarmonyOS") || ua.contains("OpenHarmony") {
        "HarmonyOS"
    } else if ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iPod") {
        "iOS"
    } else if ua.contains("Android") {
        "Android"
    } else if ua.contains("Windows NT 10.0") {
        "Windows 10"
    } else if ua.contains("Windows NT 6.3") {
        "Windows 8.1"
    } else if ua.contains("Windows NT 6.2") {
        "Windows 8"
    } else if ua.contains("Windows NT 6.1") {
        "Windows 7"
    } else if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        "macOS"
    } else if ua.contains("CrOS") {
        "ChromeOS"
    } else if ua.contains("Linux") {
        "Linux"
    } else {
        "Unknown OS"
    }
}

/// The first `parts` dot-separated numeric components after `token`, digits only.
fn version_after(ua: &str, token: &str, parts: usize) -> Option<String> {
    let start = ua.find(token)? + token.len();
    let mut version = String::new();
    for (i, part) in ua[start..].split('.').take(parts).enumerate() {
        let digits: String = part
            .chars()
            .take_while(char::is_ascii_digit)
            .take(6)
            .collect();
        if digits.is_empty() {
            break;
        }
        if i > 0 {
            version.push('.');
        }
        version.push_str(&digits);
        if digits.len() != part.len() {
            break;
        }
    }
    (!version.is_empty()).then_some(version)
}

/// Header values must be ASCII without controls; `%` is encoded too so the value
/// decodes unambiguously.
const HEADER_UNSAFE: &AsciiSet = &CONTROLS.add(b'%');

/// Percent-encodes non-ASCII, controls and `%` for a header value (nicknames are UTF-8
/// and may carry anything).
pub fn percent_encode_header(value: &str) -> String {
    utf8_percent_encode(value, HEADER_UNSAFE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const IOS_WECHAT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x18002c2d) NetType/WIFI Language/zh_CN";
    const ANDROID_WECHAT: &str = "Mozilla/5.0 (Linux; Android 13; V2218A Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/111.0.5563.116 Mobile Safari/537.36 XWEB/1160043 MMWEBSDK/20231202 MMWEBID/2247 MicroMessenger/8.0.45.2521(0x28002D3D) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64";
    const WINDOWS_WECHAT: &str = "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/81.0.4044.138 Safari/537.36 NetType/WIFI MicroMessenger/7.0.20.1781(0x6700143B) WindowsWechat(0x63090a13) XWEB/9129 Flue";
    const MAC_WECHAT: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) MicroMessenger/3.8.7(0x13080712) MacWechat/3.8.7(0x13080712) Language/zh_CN";
    const WECOM: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 wxwork/4.1.16 MicroMessenger/7.0.1 Language/zh ColorScheme/Light";
    const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";
    const SAFARI_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const EDGE_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91";
    const FIREFOX_LINUX: &str =
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
    const CHROME_ANDROID: &str = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const CURL: &str = "curl/8.5.0";

    #[test]
    fn only_wechat_and_desktop_wechat_are_sent_to_the_authorize_url() {
        let table: &[(&str, bool)] = &[
            (IOS_WECHAT, true),
            (ANDROID_WECHAT, true),
            (WINDOWS_WECHAT, true),
            (MAC_WECHAT, true),
            (WECOM, false),
            (CHROME_WIN, false),
            (SAFARI_MAC, false),
            (SAFARI_IOS, false),
            (EDGE_WIN, false),
            (FIREFOX_LINUX, false),
            (CHROME_ANDROID, false),
            (GOOGLEBOT, false),
            (CURL, false),
            ("", false),
            ("MicroMessenger", false),
        ];
        for (ua, want) in table {
            assert_eq!(is_wechat_browser(ua), *want, "ua={ua:?}");
        }
    }

    #[test]
    fn wecom_is_told_apart_from_wechat_though_it_says_micromessenger() {
        const WECOM_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/86.0.4240.198 Safari/537.36 NetType/WIFI MicroMessenger/7.0.20.1781(0x6700143B) WindowsWechat(0x63090a13) wxwork/4.1.0 (MicroMessenger/6.2) WeChat/2.0.4";
        const WECOM_ANDROID: &str = "Mozilla/5.0 (Linux; Android 13; M2012K11AC Build/TKQ1.220829.002; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/107.0.5304.141 Mobile Safari/537.36 MMWEBID/1234 wxwork/4.1.10 MicroMessenger/7.0.1 NetType/WIFI Language/zh ABI/arm64";
        let table: &[(&str, Browser)] = &[
            (WECOM, Browser::Wecom),
            (WECOM_WINDOWS, Browser::Wecom),
            (WECOM_ANDROID, Browser::Wecom),
            (IOS_WECHAT, Browser::Wechat),
            (WINDOWS_WECHAT, Browser::Wechat),
            (MAC_WECHAT, Browser::Wechat),
            (CHROME_WIN, Browser::Other),
            (SAFARI_IOS, Browser::Other),
            ("", Browser::Other),
        ];
        for (ua, want) in table {
            assert_eq!(browser_of(ua), *want, "ua={ua:?}");
        }
    }

    #[test]
    fn phones_and_tablets_are_told_apart_from_computers() {
        let table: &[(&str, bool)] = &[
            (SAFARI_IOS, true),
            (CHROME_ANDROID, true),
            (IOS_WECHAT, true),
            (
                "Mozilla/5.0 (Linux; Android 12; HarmonyOS; ...) Quark/6.2",
                true,
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 15_0 like Mac OS X) AppleWebKit/605.1.15",
                true,
            ),
            (CHROME_WIN, false),
            (SAFARI_MAC, false),
            (EDGE_WIN, false),
            (FIREFOX_LINUX, false),
            (GOOGLEBOT, false),
            (CURL, false),
        ];
        for (ua, want) in table {
            assert_eq!(is_mobile_browser(ua), *want, "ua={ua:?}");
        }
    }

    #[test]
    fn user_agents_are_described_for_the_confirmation_page() {
        let table: &[(&str, (&str, &str))] = &[
            (CHROME_WIN, ("Chrome 120", "Windows 10")),
            (SAFARI_MAC, ("Safari", "macOS")),
            (SAFARI_IOS, ("Safari", "iOS")),
            (IOS_WECHAT, ("WeChat 8.0", "iOS")),
            (ANDROID_WECHAT, ("WeChat 8.0", "Android")),
            (WINDOWS_WECHAT, ("WeChat 7.0", "Windows 10")),
            (MAC_WECHAT, ("WeChat 3.8", "macOS")),
            (WECOM, ("WeCom 4.1", "iOS")),
            (EDGE_WIN, ("Edge 120", "Windows 10")),
            (FIREFOX_LINUX, ("Firefox 121", "Linux")),
            (CHROME_ANDROID, ("Chrome 120", "Android")),
            (GOOGLEBOT, ("Unknown browser", "Unknown OS")),
            ("Chrome/<script>", ("Unknown browser", "Unknown OS")),
        ];
        for (ua, (browser, os)) in table {
            assert_eq!(
                describe_user_agent(ua),
                (browser.to_string(), os.to_string()),
                "ua={ua:?}"
            );
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn api_requests_get_401_and_navigations_get_redirected() {
        let api = PathMatcher::new(&["/api/*"]).unwrap();
        type Headers<'a> = &'a [(&'static str, &'static str)];
        let none: Headers = &[];
        let table: &[(Method, Headers, &str, bool)] = &[
            (Method::GET, none, "/orders", false),
            (Method::HEAD, none, "/orders", false),
            (Method::GET, none, "/api/orders", true),
            (Method::GET, none, "/api", true),
            (Method::GET, none, "/apix", false),
            (Method::POST, none, "/orders", true),
            (Method::PUT, none, "/orders", true),
            (Method::DELETE, none, "/orders", true),
            (Method::OPTIONS, none, "/orders", true),
            (
                Method::GET,
                &[("accept", "application/json")],
                "/orders",
                true,
            ),
            (
                Method::GET,
                &[("x-requested-with", "XMLHttpRequest")],
                "/x",
                true,
            ),
        ];
        for (method, pairs, path, want) in table {
            assert_eq!(
                is_api_request(method, &headers(pairs), path, &api),
                *want,
                "{method} {path} {pairs:?}"
            );
        }
    }

    #[test]
    fn header_values_carry_only_printable_ascii() {
        let table: &[(&str, &str)] = &[
            ("alice", "alice"),
            ("Alice Smith", "Alice Smith"),
            ("小明", "%E5%B0%8F%E6%98%8E"),
            ("a\r\nX-Evil: 1", "a%0D%0AX-Evil: 1"),
            ("100%", "100%25"),
            ("tab\there", "tab%09here"),
            ("\u{7f}", "%7F"),
            ("😀", "%F0%9F%98%80"),
        ];
        for (value, want) in table {
            assert_eq!(percent_encode_header(value), *want, "value={value:?}");
        }
    }
}
