//! The WeChat side of sign-in tests: the mock WeChat platform and the echo upstream
//! (a [`Platform`], which wxgates started with `proxy().wechat(&platform)` share), a
//! phone inside WeChat with its own cookie jar ([`Browser`]) that walks the
//! authorization dance step by step (or [`WalkingBrowser`], which walks it whole), and
//! checking what wxgate hands the upstream.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use http::header::{COOKIE, SET_COOKIE, USER_AGENT};
use http::{HeaderMap, Method, Request, StatusCode};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;
use wxgate::config::file::Config;
use wxgate::config::{DesktopMode, Scope};
use wxgate::mock::{MockConfig, MockWechat};

use super::{seen, send, start_upstream, Answer, Gate, TestClient, Upstream};

/// WeChat's in-app browser on Android.
pub const PHONE_UA: &str =
    "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A; wv) AppleWebKit/537.36 \
(KHTML, like Gecko) Version/4.0 Chrome/126.0.6478.188 Mobile Safari/537.36 XWEB/1260117 \
MMWEBSDK/20240501 MicroMessenger/8.0.50.2701(0x28003237) WeChat/arm64 Weixin NetType/WIFI \
Language/zh_CN ABI/arm64";

pub const SESSION_SECRET: &str = "signin-tests-0123456789abcdef0123456789";

/// The session cookie's name (the default `session.cookie_name`).
pub const SESSION_COOKIE: &str = "_wxgate";

// ---------------------------------------------------------------- the platform

/// The mock WeChat and the echo upstream: what every wxgate of a test shares.
pub struct Platform {
    pub mock: MockWechat,
    pub mock_addr: SocketAddr,
    pub upstream: Upstream,
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.mock.stop();
    }
}

/// The mock as sign-in tests want it: callbacks to 127.0.0.1 only, and the consent
/// form on every sign-in so a test picks its user.
pub fn picking_mock() -> MockConfig {
    MockConfig {
        authorized_hosts: vec!["127.0.0.1".into()],
        auto_consent: false,
        ..MockConfig::default()
    }
}

impl Platform {
    pub async fn start(mock: MockConfig) -> Platform {
        let (mock_addr, mock) = wxgate::mock::spawn(mock).await.expect("mock starts");
        Self::with_mock(mock_addr, mock).await
    }

    /// Around a mock that is already running.
    pub async fn with_mock(mock_addr: SocketAddr, mock: MockWechat) -> Platform {
        Platform {
            mock,
            mock_addr,
            upstream: start_upstream().await,
        }
    }

    /// The openid `user` has under the official account.
    pub fn openid(&self, user: &str) -> String {
        self.mock.openid(user, &self.mock.config().appid)
    }

    /// The code WeChat hands back once `user` consented to `scope` (the authorize page
    /// skipped).
    pub fn code(&self, user: &str, scope: &str) -> String {
        self.mock.issue_code(user, scope, &self.mock.config().appid)
    }
}

/// Verifies `token` as an upstream would, from the JWKS only; returns the claims.
pub fn verify(token: &str, jwks: &str, issuer: &str, audience: &str) -> Result<Value, String> {
    let jwks: JwkSet = serde_json::from_str(jwks).map_err(|e| e.to_string())?;
    let header = decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or("kid not in the JWKS")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);
    decode::<Value>(token, &key, &validation)
        .map(|t| t.claims)
        .map_err(|e| e.to_string())
}

/// The identity header the upstream saw for a request, exactly one.
pub fn identity_of(echo: &Value) -> String {
    let tokens = seen(echo, "x-wxgate-jwt-assertion");
    assert_eq!(tokens.len(), 1, "identity headers upstream: {tokens:?}");
    tokens[0].clone()
}

pub fn assert_page(a: &Answer, status: StatusCode, words: &str) {
    assert_eq!(a.status, status, "{}", a.text());
    assert!(a.header("location").is_none(), "a page, not a redirect");
    assert!(a.text().contains(words), "{words:?} not in {}", a.text());
}

/// `name` in a URL's query (its fragment left aside), percent-decoded.
pub fn url_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1.split('#').next()?;
    query_param(query, name)
}

/// An `application/x-www-form-urlencoded` body.
pub fn form(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Desktop sign-in in `mode` against the mock (whose website app it uses), with
/// snsapi_userinfo inside WeChat so phones show who signs in.
pub fn desktop_sign_in(c: &mut Config, mock: &MockWechat, mode: DesktopMode) {
    c.wechat.scope = Scope::UserInfo;
    c.wechat.qrconnect_url = c
        .wechat
        .authorize_url
        .replace("/connect/oauth2/authorize", "/connect/qrconnect");
    c.desktop.mode = mode;
    c.desktop.website_appid = mock.config().website_appid.clone();
    c.desktop.website_secret = mock.config().website_secret.clone();
}

pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| {
            percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

// ---------------------------------------------------------------- the browser

/// A browser: its own cookie jar for one origin (kept by hand, in creation order,
/// honouring `Max-Age=0`), no automatic redirects.
pub struct Browser {
    client: TestClient,
    /// The site's origin: its cookies, relative links.
    pub origin: String,
    /// Where requests for `origin` actually go (a replica behind a shared public name).
    actual: Option<String>,
    ua: &'static str,
    jar: Vec<(String, String)>,
}

impl Browser {
    pub fn new(origin: &str, ua: &'static str) -> Self {
        Self {
            client: super::http1_client(),
            origin: origin.to_string(),
            actual: None,
            ua,
            jar: Vec::new(),
        }
    }

    /// Requests for the origin connect to `actual` instead (same cookies, same links).
    pub fn via(mut self, actual: &str) -> Self {
        self.actual = (actual != self.origin).then(|| actual.to_string());
        self
    }

    pub fn abs(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.origin)
        } else {
            url.to_string()
        }
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    pub fn flow_cookies(&self) -> Vec<String> {
        self.jar
            .iter()
            .filter(|(n, _)| n.starts_with("_wxgate_st_"))
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        match self.jar.iter_mut().find(|(n, _)| n == name) {
            Some(c) => c.1 = value.to_string(),
            None => self.jar.push((name.to_string(), value.to_string())),
        }
    }

    pub fn take_cookies(&mut self, headers: &HeaderMap) {
        for sc in headers.get_all(SET_COOKIE) {
            let sc = sc.to_str().expect("Set-Cookie is ASCII");
            let mut parts = sc.split(';');
            let (name, value) = parts
                .next()
                .and_then(|p| p.split_once('='))
                .expect("Set-Cookie has name=value");
            let gone = parts.any(|a| a.trim().eq_ignore_ascii_case("Max-Age=0"));
            self.jar.retain(|(n, _)| n != name.trim());
            if !gone {
                self.jar.push((name.trim().into(), value.trim().into()));
            }
        }
    }

    pub async fn request(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Answer {
        let url = self.abs(url);
        let ours = url.starts_with(&format!("{}/", self.origin));
        let target = match &self.actual {
            Some(actual) if ours => format!("{actual}{}", &url[self.origin.len()..]),
            _ => url,
        };
        let mut b = Request::builder()
            .method(method)
            .uri(&target)
            .header(USER_AGENT, self.ua);
        if ours && !self.jar.is_empty() {
            b = b.header(COOKIE, self.cookie_header());
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let body = body.map(super::body).unwrap_or_else(wxgate::body::empty);
        let answer = send(&self.client, b.body(body).unwrap()).await;
        if ours {
            self.take_cookies(&answer.headers);
        }
        answer
    }

    pub async fn get(&mut self, url: &str) -> Answer {
        self.request(Method::GET, url, &[], None).await
    }

    /// A GET as the page's scripts send it (asking for JSON).
    pub async fn get_json(&mut self, url: &str) -> Answer {
        self.request(Method::GET, url, &[("accept", "application/json")], None)
            .await
    }

    /// A POST with no body (a form of hidden fields carried in its action URL).
    pub async fn post(&mut self, url: &str) -> Answer {
        self.request(Method::POST, url, &[], None).await
    }

    /// A POST of a form.
    pub async fn post_form(&mut self, url: &str, fields: &[(&str, String)]) -> Answer {
        let ct = [("content-type", "application/x-www-form-urlencoded")];
        self.request(Method::POST, url, &ct, Some(form(fields)))
            .await
    }

    /// GETs `url` and follows redirects (relative ones against the origin) to the first
    /// answer that is not one.
    pub async fn follow(&mut self, url: &str) -> Answer {
        let mut url = url.to_string();
        for _ in 0..10 {
            let a = self.get(&url).await;
            match a.header("location") {
                Some(l) => url = l.to_string(),
                None => return a,
            }
        }
        panic!("more than 10 redirects, the last to {url}");
    }

    /// A navigation to a protected page without a session: the authorize link.
    pub async fn begin(&mut self, gate: &Gate, path: &str) -> String {
        let a = self.get(path).await;
        assert_eq!(a.status, StatusCode::FOUND, "{path}: {}", a.text());
        let location = a.header("location").expect("Location").to_string();
        gate.assert_authorize_link(&location);
        location
    }

    /// As [`Browser::begin`]; returns the authorize link's state.
    pub async fn begin_state(&mut self, gate: &Gate, path: &str) -> String {
        let link = self.begin(gate, path).await;
        url_param(&link, "state").expect("the authorize link has a state")
    }

    /// WeChat sends the browser back with `code` and `state`.
    pub async fn callback(&mut self, code: &str, state: &str) -> Answer {
        self.get(&format!("/_wxgate/callback?code={code}&state={state}"))
            .await
    }

    /// Signs `user` in from `path` with the code WeChat would send back (no authorize
    /// page): the callback redirects and leaves a session cookie.
    pub async fn sign_in_by_code(
        &mut self,
        gate: &Gate,
        platform: &Platform,
        path: &str,
        user: &str,
    ) {
        let state = self.begin_state(gate, path).await;
        let a = self
            .callback(&platform.code(user, gate.scope), &state)
            .await;
        assert_eq!(a.status, StatusCode::FOUND, "signed in: {}", a.text());
        assert!(self.has_session(), "no session cookie");
    }

    /// Whether the browser holds a session cookie (not only flow cookies).
    pub fn has_session(&self) -> bool {
        self.cookie(SESSION_COOKIE).is_some()
    }

    /// WeChat's side: open the authorize link (without its fragment, as a browser
    /// does), answer the consent form. Returns the callback URL WeChat sends back.
    pub async fn consent(&mut self, authorize: &str, user: &str, action: &str) -> String {
        let link = authorize.split('#').next().unwrap();
        let page = self.get(link).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.text().contains("action=\"/connect/oauth2/consent\""),
            "consent page: {}",
            page.text()
        );
        let (base, query) = link.split_once('?').unwrap();
        let field = |name: &str| query_param(query, name).unwrap_or_default();
        let fields = [
            ("appid", field("appid")),
            ("redirect_uri", field("redirect_uri")),
            ("scope", field("scope")),
            ("state", field("state")),
            ("user", user.to_string()),
            ("action", action.to_string()),
        ];
        let consent_url = base.replace("/connect/oauth2/authorize", "/connect/oauth2/consent");
        let a = self.post_form(&consent_url, &fields).await;
        assert_eq!(a.status, StatusCode::FOUND, "consent: {}", a.text());
        let callback = a.header("location").expect("callback Location").to_string();
        assert!(
            callback.starts_with(&format!("{}/_wxgate/callback?", self.origin)),
            "{callback}"
        );
        callback
    }

    /// The whole dance from `path`: returns the callback URL used and checks the
    /// browser lands on `lands_on` (`path` minus WeChat's code/state) with a session
    /// cookie.
    pub async fn sign_in_at(
        &mut self,
        gate: &Gate,
        user: &str,
        path: &str,
        lands_on: &str,
    ) -> String {
        let authorize = self.begin(gate, path).await;
        let callback = self.consent(&authorize, user, "allow").await;
        let a = self.get(&callback).await;
        assert_eq!(a.status, StatusCode::FOUND, "callback: {}", a.text());
        assert_eq!(a.header("location"), Some(lands_on));
        assert!(self.cookie(SESSION_COOKIE).is_some(), "no session cookie");
        callback
    }

    /// Signs `user` in from a protected page; returns the session cookie.
    pub async fn sign_in(&mut self, gate: &Gate, user: &str) -> String {
        self.sign_in_at(gate, user, "/orders/42?tab=items", "/orders/42?tab=items")
            .await;
        self.cookie(SESSION_COOKIE).unwrap()
    }
}

// ---------------------------------------------------------------- a whole site

/// The mock's app as a `[wechat]` section (snsapi_base: silent inside WeChat).
pub fn wechat_toml(mock_addr: SocketAddr, mock: &MockWechat) -> String {
    format!(
        "[wechat]\nappid = \"{}\"\nsecret = \"{}\"\nauthorize_url = \"http://{mock_addr}/connect/oauth2/authorize\"\napi_base_url = \"http://{mock_addr}\"\n",
        mock.config().appid,
        mock.config().secret
    )
}

/// Signs the browser in through `base` (wxgate or whatever is in front of it) by asking
/// for `path`; returns every hop, the last one the app's answer.
pub async fn sign_in(browser: &WalkingBrowser, base: &str, path: &str) -> Vec<Page> {
    let pages = browser.walk(&format!("{base}{path}"), |_| false).await;
    let last = pages.last().expect("at least one page");
    assert_eq!(last.status, 200, "signed in and at the app: {}", last.body);
    pages
}

/// The `kid` a token names.
pub fn kid_of(token: &str) -> String {
    decode_header(token)
        .expect("a JWT header")
        .kid
        .expect("a kid")
}

// ---------------------------------------------------------------- the walking browser

/// A phone browser inside WeChat that walks whole sign-ins by itself (the mock
/// consents for its first user): keeps cookies by name for every server (all one site
/// here), shares itself between tasks, and returns every hop so each can be looked at.
pub struct WalkingBrowser {
    client: reqwest::Client,
    jar: Mutex<BTreeMap<String, String>>,
    /// (origin in links, origin to connect to): for a wxgate whose public_url names a
    /// host that does not resolve.
    alias: Option<(String, String)>,
    user_agent: &'static str,
}

/// One answer, body read.
pub struct Page {
    pub url: String,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.url, self.body))
    }
}

impl Default for WalkingBrowser {
    fn default() -> Self {
        Self::new()
    }
}

impl WalkingBrowser {
    pub fn new() -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client builds"),
            jar: Mutex::new(BTreeMap::new()),
            alias: None,
            user_agent: PHONE_UA,
        }
    }

    /// The same browser saying it is another (a computer's, a phone's Safari).
    pub fn with_user_agent(mut self, ua: &'static str) -> Self {
        self.user_agent = ua;
        self
    }

    /// One form POST (`application/x-www-form-urlencoded`), no redirect followed.
    pub async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Page {
        let body = fields
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    wxgate::wechat::encode_component(k),
                    wxgate::wechat::encode_component(v)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let resp = self
            .client
            .post(url)
            .header("user-agent", self.user_agent)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", self.cookie_header())
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        self.keep_cookies(resp.headers());
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Page {
            url: url.to_string(),
            status,
            headers,
            body,
        }
    }

    /// Links to `public` are fetched from `actual` instead.
    pub fn with_alias(mut self, public: &str, actual: &str) -> Self {
        self.alias = Some((public.to_string(), actual.to_string()));
        self
    }

    pub fn cookie_header(&self) -> String {
        let jar = self.jar.lock().unwrap();
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One GET, no redirect followed.
    pub async fn get(&self, url: &str) -> Page {
        self.get_with(url, &[]).await
    }

    /// One GET with extra headers, no redirect followed.
    pub async fn get_with(&self, url: &str, extra: &[(&str, &str)]) -> Page {
        let target = match &self.alias {
            Some((public, actual)) if url.starts_with(public.as_str()) => {
                format!("{actual}{}", &url[public.len()..])
            }
            _ => url.to_string(),
        };
        let mut req = self
            .client
            .get(&target)
            .header("user-agent", self.user_agent)
            .header("accept", "text/html,application/xhtml+xml");
        let cookies = self.cookie_header();
        if !cookies.is_empty() {
            req = req.header("cookie", cookies);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {target}: {e}"));
        self.keep_cookies(resp.headers());
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Page {
            url: url.to_string(),
            status,
            headers,
            body,
        }
    }

    fn keep_cookies(&self, headers: &reqwest::header::HeaderMap) {
        let mut jar = self.jar.lock().unwrap();
        for v in headers.get_all("set-cookie") {
            let Ok(v) = v.to_str() else { continue };
            let mut attrs = v.split(';');
            let Some((name, value)) = attrs.next().and_then(|nv| nv.trim().split_once('=')) else {
                continue;
            };
            let gone =
                value.is_empty() || attrs.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if gone {
                jar.remove(name);
            } else {
                jar.insert(name.to_string(), value.to_string());
            }
        }
    }

    /// GETs `url` and follows redirects (relative ones against the current page) until
    /// a page that is not a redirect, or `stop_at` matches a Location.
    pub async fn walk(&self, url: &str, stop_at: impl Fn(&str) -> bool) -> Vec<Page> {
        let mut pages = Vec::new();
        let mut next = url.to_string();
        for _ in 0..10 {
            let page = self.get(&next).await;
            let location = (300..400)
                .contains(&page.status)
                .then(|| page.header("location").map(str::to_string))
                .flatten();
            pages.push(page);
            let Some(loc) = location else {
                return pages;
            };
            // The fragment (#wechat_redirect) is never sent by a browser.
            let loc = loc.split('#').next().unwrap_or_default().to_string();
            let absolute = if loc.starts_with('/') {
                let origin_end = next
                    .find("://")
                    .and_then(|s| next[s + 3..].find('/').map(|p| p + s + 3))
                    .unwrap_or(next.len());
                format!("{}{loc}", &next[..origin_end])
            } else {
                loc
            };
            if stop_at(&absolute) {
                return pages;
            }
            next = absolute;
        }
        panic!("more than 10 redirects from {url}");
    }
}
