//! The sign-in harness: the mock WeChat platform and the echo upstream (a
//! [`Platform`]), one or more wxgates in front of them ([`Gate`]), and a phone inside
//! WeChat with its own cookie jar ([`Browser`]) that walks the authorization dance.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use http::header::{COOKIE, SET_COOKIE, USER_AGENT};
use http::{HeaderMap, Method, Request, StatusCode};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wxgate::config::Config;
use wxgate::mock::{MockConfig, MockWechat};

use super::{seen, send, start_upstream, Answer, TestClient, Upstream};

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

    /// Starts a wxgate signing in against this platform, sign-in required everywhere.
    /// `public_url`: the origin browsers use (default: the gate's own address), e.g.
    /// another replica's. `tweak` adjusts the config before it is resolved.
    pub async fn gate(
        &self,
        public_url: Option<&str>,
        tweak: impl FnOnce(&mut Config, &MockWechat),
    ) -> Gate {
        // The public listener first: its port is part of public_url (and redirect_uri).
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = public.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let origin = public_url.map_or_else(|| format!("http://{addr}"), str::to_string);
        let mc = self.mock.config();
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
public_url = "{origin}"
[admin]
# Only has to differ from server.listen: the listeners are bound above.
listen = "127.0.0.1:1"
[upstream]
url = "http://{upstream}"
[wechat]
appid = "{appid}"
secret = "{secret}"
authorize_url = "http://{mock_addr}/connect/oauth2/authorize"
api_base_url = "http://{mock_addr}"
[session]
secret = "{SESSION_SECRET}"
[access]
public_paths = []
"#,
            upstream = self.upstream.addr,
            appid = mc.appid,
            secret = mc.secret,
            mock_addr = self.mock_addr,
        );
        let mut config: Config = toml::from_str(&text).expect("test config parses");
        tweak(&mut config, &self.mock);
        config.base_dir = Path::new(".").to_path_buf();
        let problems = config.resolve(&BTreeMap::<String, String>::new());
        assert!(problems.is_empty(), "test config: {problems:?}");

        let (stop, stopped) = oneshot::channel::<()>();
        let gate = Gate {
            origin,
            addr,
            admin: admin_addr,
            mock_addr: self.mock_addr,
            appid: mc.appid.clone(),
            scope: config.wechat.scope.as_str(),
            upstream: self.upstream.addr,
            stop: Some(stop),
        };
        tokio::spawn(wxgate::run(
            config,
            wxgate::Listeners { public, admin },
            async move {
                let _ = stopped.await;
            },
        ));
        gate
    }

    /// The openid `user` has under the official account.
    pub fn openid(&self, user: &str) -> String {
        self.mock.openid(user, &self.mock.config().appid)
    }
}

// ---------------------------------------------------------------- one wxgate

/// A running wxgate, stopped when dropped.
pub struct Gate {
    /// public_url: the origin in redirect_uri, the issuer, the browser's origin.
    pub origin: String,
    /// Where it actually listens (differs from `origin` for a replica behind a shared name).
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub mock_addr: SocketAddr,
    pub appid: String,
    pub scope: &'static str,
    pub upstream: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Gate {
    /// `path` on this wxgate's listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn issuer(&self) -> String {
        format!("{}/_wxgate", self.origin)
    }

    pub fn audience(&self) -> String {
        format!("http://{}", self.upstream)
    }

    /// A phone inside WeChat on this wxgate's public origin, connecting to this
    /// wxgate's listener.
    pub fn phone(&self) -> Browser {
        Browser::new(&self.origin, PHONE_UA).via(&format!("http://{}", self.addr))
    }

    /// Checks a Location is WeChat's authorize link exactly as WeChat matches it, and
    /// returns its state.
    pub fn assert_authorize_link(&self, location: &str) -> String {
        // encodeURIComponent of public_url + "/_wxgate/callback", written out by hand.
        let redirect_uri = format!("{}/_wxgate/callback", self.origin)
            .replace(':', "%3A")
            .replace('/', "%2F");
        let prefix = format!(
            "http://{}/connect/oauth2/authorize?appid={}&redirect_uri={redirect_uri}&response_type=code&scope={}&state=",
            self.mock_addr, self.appid, self.scope
        );
        let rest = location.strip_prefix(&prefix).unwrap_or_else(|| {
            panic!("not the authorize link:\n  {location}\nexpected prefix\n  {prefix}")
        });
        let state = rest
            .strip_suffix("#wechat_redirect")
            .unwrap_or_else(|| panic!("no #wechat_redirect: {location}"));
        assert!(
            (1..=128).contains(&state.len()) && state.bytes().all(|b| b.is_ascii_alphanumeric()),
            "state {state:?}"
        );
        state.to_string()
    }

    /// Verifies a token as an upstream would, knowing only this wxgate's JWKS URL;
    /// returns its claims.
    pub async fn verify(&self, token: &str) -> Value {
        let jwks = super::get(&self.url("/_wxgate/jwks.json")).await;
        assert_eq!(jwks.status, StatusCode::OK);
        let jwks: JwkSet = serde_json::from_slice(&jwks.body).expect("JWKS");
        let header = decode_header(token).expect("JWT header");
        let kid = header.kid.clone().expect("kid");
        let jwk = jwks.find(&kid).expect("the kid is in the JWKS");
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[self.issuer()]);
        v.set_audience(&[self.audience()]);
        v.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);
        let data = decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
            .expect("the identity header verifies");
        data.claims
    }
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

    /// A navigation to a protected page without a session: the authorize link.
    pub async fn begin(&mut self, gate: &Gate, path: &str) -> String {
        let a = self.get(path).await;
        assert_eq!(a.status, StatusCode::FOUND, "{path}: {}", a.text());
        let location = a.header("location").expect("Location").to_string();
        gate.assert_authorize_link(&location);
        location
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
        let form: String = [
            ("appid", field("appid")),
            ("redirect_uri", field("redirect_uri")),
            ("scope", field("scope")),
            ("state", field("state")),
            ("user", user.to_string()),
            ("action", action.to_string()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&");
        let consent_url = base.replace("/connect/oauth2/authorize", "/connect/oauth2/consent");
        let a = self
            .request(
                Method::POST,
                &consent_url,
                &[("content-type", "application/x-www-form-urlencoded")],
                Some(form),
            )
            .await;
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
