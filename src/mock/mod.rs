//! The mock WeChat platform (`wxgate mock-wechat`, `wxgate demo`, and the tests): the
//! authorize and qrconnect pages with consent, the four `sns` API calls, and the
//! account's `cgi-bin` calls (global token, JS-SDK ticket, user info) with the JS-SDK's
//! signature check, faithful to WeChat's wire quirks (HTTP 200 errors as `text/plain`
//! JSON with a `rid`, single-use five-minute codes, per-app openids, snapshot users,
//! tokens that overwrite each other, daily quotas). And a WeCom organisation with its
//! in-app OAuth page, web-login QR and API (see `wecom.rs`).
//!
//! Knobs for failure testing (injected errcodes, latency, broken bodies) are on the
//! [`MockWechat`] handle and, for other languages, over HTTP under `/mock/` (see
//! `control.rs`).

mod account;
mod api;
mod control;
mod pages;
mod phone;
mod wecom;

#[cfg(test)]
pub(crate) use pages::every_page as every_mock_page;
#[cfg(test)]
pub(crate) use phone::every_page as every_phone_page;
#[cfg(test)]
pub(crate) use wecom::every_page as every_wecom_page;
mod wire;

pub use account::TokenIssue;
pub use phone::PHONE_USER_AGENT;
pub use wecom::{MockDepartment, MockMember, MockOutsider, WecomMockConfig, WecomPageRefusal};
pub use wire::{callback_location, check_link, derive_id, AuthorizeRequest, LinkKind, Refusal};

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::Body;

/// A code from the official account's authorize page lives five minutes.
pub const CODE_TTL: Duration = Duration::from_secs(5 * 60);
/// A website application's (qrconnect) code lives ten minutes.
pub const QR_CODE_TTL: Duration = Duration::from_secs(10 * 60);
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(7200);
pub const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A test user of the mock platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockUser {
    /// Stable name; openids derive from (appid, key), the unionid from key alone.
    pub key: String,
    pub nickname: String,
    /// Empty: an avatar served by the mock itself.
    pub headimgurl: String,
    pub has_unionid: bool,
    /// Authorizes from WeChat's snapshot page: virtual openid, `is_snapshotuser: 1`.
    pub snapshot: bool,
    /// Follows the official account (`cgi-bin/user/info` says `subscribe: 1`).
    pub subscribed: bool,
}

impl MockUser {
    pub fn new(key: &str, nickname: &str) -> Self {
        Self {
            key: key.into(),
            nickname: nickname.into(),
            headimgurl: String::new(),
            has_unionid: false,
            snapshot: false,
            subscribed: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MockConfig {
    /// The official account (authorize page, snsapi_base / snsapi_userinfo).
    pub appid: String,
    pub secret: String,
    /// The Open Platform website application (qrconnect, snsapi_login).
    pub website_appid: String,
    pub website_secret: String,
    /// Callback domains: exact hosts, no port. Empty: any host.
    pub authorized_hosts: Vec<String>,
    pub users: Vec<MockUser>,
    /// snsapi_base inside WeChat skips the consent page for the first user, as WeChat does.
    pub auto_consent: bool,
    /// Lifetime of an account access_token (WeChat: 7200 s). Tests shorten it to watch
    /// renewals happen.
    pub token_ttl: Duration,
    /// How long an overwritten classic token keeps working, and the last stretch of a
    /// stable token's life in which a new one is handed out (WeChat: 5 minutes).
    pub token_overlap: Duration,
    /// Lifetime of a jsapi_ticket (WeChat: 7200 s).
    pub ticket_ttl: Duration,
    /// `cgi-bin/token` calls a day (WeChat: 2000; 200 for test accounts).
    pub classic_daily_quota: u32,
    /// `cgi-bin/stable_token` calls a day (WeChat: 500,000).
    pub stable_daily_quota: u32,
    /// Forced stable-token renewals a day (WeChat: 20).
    pub force_daily_quota: u32,
    /// A forced renewal sooner than this after the last one renews nothing (WeChat: 30 s).
    pub force_interval: Duration,
    /// `getticket` calls a day (WeChat says only "very limited").
    pub ticket_daily_quota: u32,
    /// Addresses allowed to fetch the account's token; empty: any (40164 otherwise).
    pub ip_whitelist: Vec<IpAddr>,
    /// The JS-SDK safe domains (JS接口安全域名); empty: any.
    pub js_safe_domains: Vec<String>,
    /// The WeCom organisation and its self-built app.
    pub wecom: WecomMockConfig,
}

impl Default for MockConfig {
    fn default() -> Self {
        let mut alice = MockUser::new("alice", "Alice 🌸");
        alice.has_unionid = true;
        alice.subscribed = true;
        let mut snap = MockUser::new("snapshot", "微信用户");
        snap.snapshot = true;
        Self {
            appid: "wxmock0000000001".into(),
            secret: "mocksecret00000000000000000000001".into(),
            website_appid: "wxmockweb0000001".into(),
            website_secret: "mockwebsecret0000000000000000001".into(),
            authorized_hosts: Vec::new(),
            users: vec![
                alice,
                MockUser::new("bob", "王小明 🐼"),
                MockUser::new("carol", "Carol ✨ <b>&amp;</b>"),
                snap,
            ],
            auto_consent: true,
            token_ttl: Duration::from_secs(7200),
            token_overlap: Duration::from_secs(300),
            ticket_ttl: Duration::from_secs(7200),
            classic_daily_quota: 2000,
            stable_daily_quota: 500_000,
            force_daily_quota: 20,
            force_interval: Duration::from_secs(30),
            ticket_daily_quota: 10_000,
            ip_whitelist: Vec::new(),
            js_safe_domains: Vec::new(),
            wecom: WecomMockConfig::default(),
        }
    }
}

/// How a knob breaks an endpoint's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// HTTP 200 with an HTML error page (a proxy or captive portal in the way).
    Html,
    /// HTTP 200 with bytes that are not JSON.
    Garbage,
    /// HTTP 500.
    Http500,
    /// Headers promise a body; the connection closes halfway through it.
    CloseMidBody,
}

impl Broken {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "html" => Some(Self::Html),
            "garbage" => Some(Self::Garbage),
            "http500" | "500" => Some(Self::Http500),
            "close_mid_body" | "close" => Some(Self::CloseMidBody),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct Knobs {
    inject: Option<(i64, u32)>,
    latency: Option<Duration>,
    broken: Option<Broken>,
}

#[derive(Debug, Clone)]
struct CodeGrant {
    appid: String,
    user: String,
    scope: String,
    expires_at: Instant,
    used: bool,
}

#[derive(Debug, Clone)]
struct AccessGrant {
    user: String,
    openid: String,
    scope: String,
    expires_at: Instant,
}

#[derive(Debug, Clone)]
struct RefreshGrant {
    appid: String,
    user: String,
    scope: String,
    expires_at: Instant,
    revoked: bool,
}

#[derive(Debug, Default)]
struct State {
    codes: HashMap<String, CodeGrant>,
    access: HashMap<String, AccessGrant>,
    refresh: HashMap<String, RefreshGrant>,
    knobs: HashMap<String, Knobs>,
    calls: HashMap<String, u64>,
    account: account::AccountState,
    wecom: wecom::WecomState,
}

struct Inner {
    config: MockConfig,
    state: Mutex<State>,
    stop: watch::Sender<bool>,
}

/// Handle on a running (or ready to run) mock platform. Clones share one state.
#[derive(Clone)]
pub struct MockWechat {
    inner: Arc<Inner>,
}

impl MockWechat {
    pub fn new(config: MockConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                stop: watch::channel(false).0,
            }),
        }
    }

    pub fn config(&self) -> &MockConfig {
        &self.inner.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next `times` calls to `endpoint` answer `errcode` (e.g. -1, 45009).
    /// Endpoints: `access_token`, `refresh_token`, `auth`, `userinfo`, and the account's
    /// `token`, `stable_token`, `getticket`, `user_info`, `getcallbackip`.
    pub fn inject(&self, endpoint: &str, errcode: i64, times: u32) {
        self.state()
            .knobs
            .entry(endpoint.into())
            .or_default()
            .inject = Some((errcode, times));
    }

    /// Every call to `endpoint` waits this long before answering (zero: no wait).
    pub fn set_latency(&self, endpoint: &str, latency: Duration) {
        let mut s = self.state();
        let k = s.knobs.entry(endpoint.into()).or_default();
        k.latency = (!latency.is_zero()).then_some(latency);
    }

    /// Every call to `endpoint` gets a broken answer until [`MockWechat::clear`].
    pub fn set_broken(&self, endpoint: &str, broken: Broken) {
        self.state()
            .knobs
            .entry(endpoint.into())
            .or_default()
            .broken = Some(broken);
    }

    /// Removes every knob of `endpoint` (`None`: of all endpoints).
    pub fn clear(&self, endpoint: Option<&str>) {
        let mut s = self.state();
        match endpoint {
            Some(e) => {
                s.knobs.remove(e);
            }
            None => s.knobs.clear(),
        }
    }

    /// How many requests `endpoint` has received (`authorize`, `consent`, `qrconnect`,
    /// `qrconnect_confirm`, `access_token`, `refresh_token`, `auth`, `userinfo`,
    /// `token`, `stable_token`, `getticket`, `user_info`, `getcallbackip`,
    /// `jssdk_verify`).
    pub fn calls(&self, endpoint: &str) -> u64 {
        self.state().calls.get(endpoint).copied().unwrap_or(0)
    }

    /// A code as if `user_key` had just consented to `scope` for `appid`.
    pub fn issue_code(&self, user_key: &str, scope: &str, appid: &str) -> String {
        let ttl = if appid == self.inner.config.website_appid {
            QR_CODE_TTL
        } else {
            CODE_TTL
        };
        let code = random_token(32);
        self.state().codes.insert(
            code.clone(),
            CodeGrant {
                appid: appid.into(),
                user: user_key.into(),
                scope: scope.into(),
                expires_at: Instant::now() + ttl,
                used: false,
            },
        );
        code
    }

    /// Ages every issued code past its lifetime (the next exchange gets 42003).
    pub fn expire_codes(&self) {
        let now = Instant::now();
        for c in self.state().codes.values_mut() {
            c.expires_at = now;
        }
    }

    /// Ages every access token past 7200 s (`sns/auth` and `sns/userinfo` get 42001).
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for t in self.state().access.values_mut() {
            t.expires_at = now;
        }
    }

    /// Revokes the user's refresh tokens, as a password change does (refresh → 42007).
    pub fn revoke_refresh_tokens(&self, user_key: &str) {
        for r in self.state().refresh.values_mut() {
            if r.user == user_key {
                r.revoked = true;
            }
        }
    }

    /// The openid `user_key` has under `appid` (virtual for snapshot users).
    pub fn openid(&self, user_key: &str, appid: &str) -> String {
        let snapshot = self.user(user_key).is_some_and(|u| u.snapshot);
        let kind = if snapshot {
            "snapshot-openid"
        } else {
            "openid"
        };
        derive_id(kind, &[appid, user_key])
    }

    /// The unionid of `user_key`, the same under every appid (when it has one).
    pub fn unionid(&self, user_key: &str) -> Option<String> {
        self.user(user_key)
            .filter(|u| u.has_unionid && !u.snapshot)
            .map(|u| derive_id("unionid", &[&u.key]))
    }

    fn user(&self, key: &str) -> Option<&MockUser> {
        self.inner.config.users.iter().find(|u| u.key == key)
    }

    /// Stops a server started by [`spawn`] or [`serve`].
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
    }

    async fn stopped(&self) {
        let mut rx = self.inner.stop.subscribe();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }

    /// Counts the call and applies latency; returns the broken/injected answer if any.
    async fn enter(&self, endpoint: &str) -> Option<Fault> {
        let (latency, fault) = {
            let mut s = self.state();
            *s.calls.entry(endpoint.into()).or_insert(0) += 1;
            match s.knobs.get_mut(endpoint) {
                None => (None, None),
                Some(k) => {
                    let fault = if let Some(b) = k.broken {
                        Some(Fault::Broken(b))
                    } else if let Some((code, times)) = k.inject {
                        k.inject = (times > 1).then_some((code, times - 1));
                        Some(Fault::Errcode(code))
                    } else {
                        None
                    };
                    (k.latency, fault)
                }
            }
        };
        if let Some(d) = latency {
            tokio::time::sleep(d).await;
        }
        fault
    }
}

enum Fault {
    Broken(Broken),
    Errcode(i64),
}

/// Alphanumeric, like WeChat's codes and tokens.
// Without a working system random source no token can be made: stopping is right.
#[allow(clippy::expect_used)]
fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator works");
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Serves the mock on `listener` until `shutdown` resolves or the handle is stopped;
/// open connections then get a bounded grace period.
pub async fn serve(listener: TcpListener, mock: MockWechat, shutdown: impl Future<Output = ()>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    let stopped = mock.clone();
    let stopped = stopped.stopped();
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on the error.
                tracing::warn!(error = %e, "mock wechat: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mock = mock.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let mock = mock.clone();
            req.extensions_mut().insert(account::Peer(peer));
            async move { Ok::<_, Infallible>(route(mock, req).await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "mock wechat: connection ended");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

/// Starts a mock on 127.0.0.1 on a free port; it runs until the process ends or
/// [`MockWechat::stop`].
pub async fn spawn(config: MockConfig) -> std::io::Result<(SocketAddr, MockWechat)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let mock = MockWechat::new(config);
    tokio::spawn(serve(listener, mock.clone(), std::future::pending()));
    Ok((addr, mock))
}

/// Answers one request as the mock does on its own listener (for a server that
/// serves the mock's pages on a port of its own, as `wxgate demo` does).
pub async fn handle(mock: MockWechat, req: Request<Incoming>) -> Response<Body> {
    route(mock, req).await
}

async fn route(mock: MockWechat, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/connect/oauth2/authorize"
            if wecom::is_wecom_link(&mock, req.uri().query().unwrap_or("")) =>
        {
            wecom::authorize(mock, req).await
        }
        "/connect/oauth2/authorize" => pages::authorize(mock, req, LinkKind::OAuth2).await,
        "/connect/oauth2/wecom_consent" => wecom::consent(mock, req).await,
        "/wwlogin/sso/login" => wecom::sso(mock, req).await,
        "/wwlogin/sso/status" => wecom::sso_status(&mock, &req),
        "/wwlogin/sso/scan" => wecom::sso_scan(mock, req).await,
        "/cgi-bin/gettoken" => wecom::api(mock, req, "wecom_gettoken").await,
        "/cgi-bin/auth/getuserinfo" => wecom::api(mock, req, "wecom_getuserinfo").await,
        "/cgi-bin/user/get" => wecom::api(mock, req, "wecom_user_get").await,
        "/cgi-bin/auth/getuserdetail" => wecom::api(mock, req, "wecom_getuserdetail").await,
        "/connect/qrconnect" => pages::authorize(mock, req, LinkKind::QrConnect).await,
        "/connect/oauth2/consent" => pages::consent(mock, req, LinkKind::OAuth2).await,
        "/connect/qrconnect/confirm" => pages::consent(mock, req, LinkKind::QrConnect).await,
        "/sns/oauth2/access_token" => api::handle(mock, req, "access_token").await,
        "/sns/oauth2/refresh_token" => api::handle(mock, req, "refresh_token").await,
        "/sns/auth" => api::handle(mock, req, "auth").await,
        "/sns/userinfo" => api::handle(mock, req, "userinfo").await,
        "/cgi-bin/token" => account::handle(mock, req, "token").await,
        "/cgi-bin/stable_token" => account::handle(mock, req, "stable_token").await,
        "/cgi-bin/ticket/getticket" => account::handle(mock, req, "getticket").await,
        "/cgi-bin/user/info" => account::handle(mock, req, "user_info").await,
        "/cgi-bin/getcallbackip" => account::handle(mock, req, "getcallbackip").await,
        "/mock/jweixin.js" => account::script(),
        "/mock/jssdk/verify" => account::verify(mock, req).await,
        "/" => pages::index(&mock),
        "/mock/phone" => phone::scan(mock, req).await,
        "/mock/phone/submit" => phone::submit(req).await,
        p if p.starts_with("/mock/wecom/") => wecom::control(&mock, &req),
        p if p.starts_with("/mock/") => control::handle(mock, req).await,
        _ => pages::not_found(),
    }
}
