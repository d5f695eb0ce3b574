//! The WeChat sign-in: deciding what each request needs (classify), who it belongs to
//! (authenticate), and the `/_wxgate/*` endpoints that run the authorization dance.

pub mod classify;
pub mod endpoints;
pub mod error;
pub mod paths;
pub mod redirect;
pub mod state;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, LOCATION, SET_COOKIE};
use http::{HeaderMap, Method, Response, StatusCode};
use tracing::{info, warn};

use crate::admin::metrics::metrics;
use crate::body::{empty, Body};
use crate::config::{Config, DesktopMode, SameSite};
use crate::identity::Signer;
use crate::session::codec::CookieCodec;
use crate::session::{
    all_cookies, cookie_values, now_unix, session_cookie, Session, Store, StoreError,
};
use crate::wechat::{AppCredentials, WechatClient};

pub use error::AuthError;
use paths::PathMatcher;
use state::FlowState;

/// Everything the sign-in needs, built once per configuration (and again on reload;
/// the session store is shared between generations so nobody is signed out).
pub struct Auth {
    pub cfg: Arc<Config>,
    pub store: Arc<Store>,
    pub signer: Signer,
    pub codec: CookieCodec,
    pub wechat: WechatClient,
    pub app: AppCredentials,
    pub website: Option<AppCredentials>,
    pub public: PathMatcher,
    pub api: PathMatcher,
    pub allowed: HashSet<String>,
    pub identity_header: HeaderName,
    /// public_url + "/_wxgate/callback", built once.
    pub redirect_uri: String,
    pub cookie_secure: bool,
    /// QR pages shown lately; carried over by a reload.
    pub qr_budget: Arc<crate::desktop::TicketBudget>,
    /// The account's services (`[account]`), if on.
    pub account: Option<crate::account::Account>,
    /// The OpenID Connect provider for other apps (`[hub]`), if on.
    pub hub: Option<Arc<crate::hub::Hub>>,
    /// Signing in through a hub instead of WeChat (`[hub_client]`), if on.
    pub hub_client: Option<Arc<crate::hub_client::HubClient>>,
}

/// What the gate decided for a request that is not one of wxgate's own URLs.
pub enum Gate {
    /// Forward to the upstream; with a session, attach the identity. `set_cookie`
    /// re-issues the session cookie (sliding expiry).
    Forward {
        session: Option<Session>,
        set_cookie: Option<HeaderValue>,
    },
    /// Answer here (302 to WeChat, 401, 403, 503...).
    Respond(Response<Body>),
}

/// What a profile refresh did to the session.
enum Refreshed {
    /// Nothing to write back to the browser (not due, failed softly, or stored server-side).
    Unchanged,
    /// The store wants the browser to carry this new ticket.
    NewTicket(String),
    /// WeChat says the grant is gone: the session has been ended.
    Ended,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("identity: {0}")]
    Identity(#[from] crate::identity::IdentityError),
    #[error("wechat: {0}")]
    Wechat(#[from] crate::wechat::WechatError),
    #[error("{0}")]
    Other(String),
}

impl Auth {
    pub fn new(cfg: Arc<Config>, store: Arc<Store>) -> Result<Auth, BuildError> {
        let public_url = cfg.public().clone();
        let issuer = format!("{}/_wxgate", public_url.origin);
        let signer = Signer::from_config(&cfg.identity, &cfg.session.secret_bytes, issuer)?;
        let codec = CookieCodec::new(
            &cfg.session.secret_bytes,
            &cfg.session.previous_secret_bytes,
        );
        let wechat = WechatClient::new(&cfg.wechat.api_base_url, cfg.wechat.timeout.get())?;
        let identity_header = HeaderName::from_bytes(cfg.identity.header.as_bytes())
            .map_err(|_| BuildError::Other("identity.header is not a header name".into()))?;
        let website = (cfg.desktop.mode == DesktopMode::Qrconnect).then(|| AppCredentials {
            appid: cfg.desktop.website_appid.clone(),
            secret: cfg.desktop.website_secret.clone(),
        });
        let hub = cfg
            .hub
            .as_ref()
            .map(|h| Arc::new(crate::hub::Hub::new(h, &signer, cfg.identity.ttl.get())));
        let redirect_uri = format!("{}/_wxgate/callback", public_url.origin);
        let hub_client = match &cfg.hub_client {
            Some(c) => Some(Arc::new(
                crate::hub_client::HubClient::new(
                    c,
                    redirect_uri.clone(),
                    &cfg.session.secret_bytes,
                )
                .map_err(|e| BuildError::Other(format!("hub_client: {e}")))?,
            )),
            None => None,
        };
        Ok(Auth {
            hub,
            hub_client,
            public: PathMatcher::new(&cfg.access.public_paths)
                .map_err(|e| BuildError::Other(format!("access.public_paths: {e}")))?,
            api: PathMatcher::new(&cfg.access.api_paths)
                .map_err(|e| BuildError::Other(format!("access.api_paths: {e}")))?,
            allowed: cfg.access.allowed_openids.iter().cloned().collect(),
            app: AppCredentials {
                appid: cfg.wechat.appid.clone(),
                secret: cfg.wechat.secret.clone(),
            },
            website,
            redirect_uri,
            cookie_secure: cfg.cookie_secure(),
            qr_budget: Arc::default(),
            account: crate::account::Account::from_config(&cfg, &wechat, store.clone()),
            identity_header,
            signer,
            codec,
            wechat,
            store,
            cfg,
        })
    }

    /// The session this request carries, if any. A store failure is an error (503), not
    /// "no session": sending a signed-in user to WeChat because Redis blinked would burn
    /// codes and loop.
    pub async fn session_of(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(Session, String)>, AuthError> {
        let name = &self.cfg.session.cookie_name;
        let mut last_err = None;
        for sealed in cookie_values(headers, name) {
            let Some(ticket) = self.codec.open(name, sealed) else {
                continue;
            };
            match self.store.load(&ticket).await {
                Ok(Some(s)) if s.expires_at > now_unix() => return Ok(Some((s, ticket))),
                Ok(_) => {}
                Err(e) => last_err = Some(e),
            }
        }
        match last_err {
            Some(e) => {
                warn!(error = %e, "session store unavailable while reading a session");
                Err(AuthError::StoreUnavailable)
            }
            None => Ok(None),
        }
    }

    /// The session a request to a public path carries, if any: a public page may greet
    /// a signed-in user, so it gets the identity too. Nothing here may refuse the
    /// request: no cookie costs no lookup, and a store that is down (or a user outside
    /// `allowed_openids`) means "serve it anonymously".
    async fn public_session(&self, headers: &HeaderMap) -> Option<Session> {
        let name = &self.cfg.session.cookie_name;
        cookie_values(headers, name).next()?;
        match self.session_of(headers).await {
            Ok(Some((session, _))) if self.is_allowed(&session.openid) => Some(session),
            // session_of has logged the store's failure.
            Ok(_) | Err(_) => None,
        }
    }

    /// classify → authenticate, for every request that is not `/_wxgate/*`.
    pub async fn gate(
        &self,
        method: &Method,
        path_and_query: &str,
        normalized: &str,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Gate {
        if self.public.matches(normalized) {
            return Gate::Forward {
                session: self.public_session(headers).await,
                set_cookie: None,
            };
        }
        let json = classify::wants_json(headers);
        let session = match self.session_of(headers).await {
            Ok(s) => s,
            Err(e) => {
                metrics().denied.inc(&["store_unavailable"]);
                return Gate::Respond(e.response(json, None));
            }
        };
        if let Some((mut session, ticket)) = session {
            if !self.is_allowed(&session.openid) {
                metrics().denied.inc(&["not_allowed"]);
                return Gate::Respond(AuthError::NotAllowed.response(json, None));
            }
            let mut ticket = ticket;
            let mut reissue = false;
            match self.maybe_refresh_profile(&mut session, &ticket).await {
                Refreshed::Ended => {
                    return self
                        .unauthenticated(method, path_and_query, normalized, headers, client)
                        .await;
                }
                // The cookie store keeps the session in the cookie: the refreshed
                // profile only sticks if the browser gets the new cookie.
                Refreshed::NewTicket(t) => {
                    ticket = t;
                    reissue = true;
                }
                Refreshed::Unchanged => {}
            }
            let set_cookie = match self.slide(&session, &ticket).await {
                None if reissue => HeaderValue::from_str(&self.session_cookie(&ticket)).ok(),
                c => c,
            };
            return Gate::Forward {
                session: Some(session),
                set_cookie,
            };
        }
        self.unauthenticated(method, path_and_query, normalized, headers, client)
            .await
    }

    async fn unauthenticated(
        &self,
        method: &Method,
        path_and_query: &str,
        normalized: &str,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Gate {
        let rd = redirect::safe_return_path(path_and_query).unwrap_or_else(|| "/".to_string());
        if classify::is_api_request(method, headers, normalized, &self.api) {
            metrics().denied.inc(&["unauthenticated_api"]);
            return Gate::Respond(self.unauthorized_json(&rd));
        }
        Gate::Respond(self.begin(headers, &rd, 0, client).await)
    }

    /// 401 JSON telling an API client where a browser would sign in.
    pub fn unauthorized_json(&self, rd: &str) -> Response<Body> {
        let login_url = self.start_url(rd);
        let n = crate::pages::Notice {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
            title_zh: "请先登录",
            title_en: "Sign-in required",
            detail_zh: "此请求需要微信登录会话。".into(),
            detail: "This request needs a WeChat sign-in session.".into(),
            retry: None,
        };
        crate::pages::respond_with(
            &n,
            true,
            Some(serde_json::json!({ "login_url": login_url })),
        )
    }

    /// The same-origin URL that starts a sign-in returning to `rd`.
    pub fn start_url(&self, rd: &str) -> String {
        format!(
            "/_wxgate/start?rd={}",
            percent_encoding::utf8_percent_encode(rd, COMPONENT)
        )
    }

    /// Where a finished callback sends the browser: a 302 to `rd`. With
    /// `same_site = "strict"` a redirect chain that began on WeChat's domain would arrive
    /// without the new cookie (browsers treat the whole chain as cross-site) and start a
    /// sign-in again, forever; a tiny page that moves on by itself makes the last hop a
    /// same-site navigation instead.
    pub fn land(&self, rd: &str) -> Response<Body> {
        if self.cfg.session.same_site != SameSite::Strict {
            return redirect(rd);
        }
        crate::pages::moving_on(
            StatusCode::OK,
            "登录成功",
            "Signed in",
            "继续 · Continue",
            rd,
        )
    }

    /// Begins a sign-in for a browser navigation: the WeChat authorize redirect inside
    /// WeChat's browser, the desktop flow elsewhere. `tries` counts fresh authorizations
    /// already spent on this flow.
    pub async fn begin(
        &self,
        headers: &HeaderMap,
        rd: &str,
        tries: u8,
        client: IpAddr,
    ) -> Response<Body> {
        let scope = match &self.hub_client {
            Some(hub) => hub.scope(),
            None => self.cfg.wechat.scope,
        };
        self.begin_scoped(headers, rd, tries, client, scope).await
    }

    /// As [`Auth::begin`], asking WeChat for `scope` inside WeChat's browser (the hub
    /// asks for a profile when an app wants one). The desktop flows sign the phone in
    /// as configured.
    pub async fn begin_scoped(
        &self,
        headers: &HeaderMap,
        rd: &str,
        tries: u8,
        client: IpAddr,
        scope: crate::config::Scope,
    ) -> Response<Body> {
        // Every browser signs in at the hub, which handles computers itself.
        if let Some(hub) = &self.hub_client {
            return match hub.provider().await {
                Ok(p) => self.flow_redirect(headers, rd, tries, false, |state| {
                    hub.authorize_url(&p, state, scope)
                }),
                Err(e) => {
                    warn!(error = %e, "cannot start a sign-in through the hub");
                    metrics().signins.inc(&[e.code()]);
                    e.response(classify::wants_json(headers), Some(self.start_url(rd)))
                }
            };
        }
        let ua = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !classify::is_wechat_browser(ua) {
            return crate::desktop::begin(self, headers, rd, client).await;
        }
        self.authorize_redirect_scoped(headers, rd, tries, false, scope)
    }

    /// A 302 to WeChat's authorize (or qrconnect) URL with a fresh state bound to this browser.
    pub fn authorize_redirect(
        &self,
        headers: &HeaderMap,
        rd: &str,
        tries: u8,
        website: bool,
    ) -> Response<Body> {
        self.authorize_redirect_scoped(headers, rd, tries, website, self.cfg.wechat.scope)
    }

    /// As [`Auth::authorize_redirect`], asking for `scope`.
    pub fn authorize_redirect_scoped(
        &self,
        headers: &HeaderMap,
        rd: &str,
        tries: u8,
        website: bool,
        scope: crate::config::Scope,
    ) -> Response<Body> {
        self.flow_redirect(headers, rd, tries, website, |state| {
            if website {
                let appid = self
                    .website
                    .as_ref()
                    .map(|w| w.appid.as_str())
                    .unwrap_or_default();
                crate::wechat::qrconnect_url(
                    &self.cfg.wechat.qrconnect_url,
                    appid,
                    &self.redirect_uri,
                    state,
                )
            } else {
                crate::wechat::authorize_url(
                    &self.cfg.wechat.authorize_url,
                    &self.cfg.wechat.appid,
                    &self.redirect_uri,
                    scope,
                    state,
                    self.cfg.wechat.force_popup,
                )
            }
        })
    }

    /// A 302 to a provider's authorization URL (built by `location` from a fresh
    /// state) with that state bound to this browser by a flow cookie.
    fn flow_redirect(
        &self,
        headers: &HeaderMap,
        rd: &str,
        tries: u8,
        website: bool,
        location: impl FnOnce(&str) -> String,
    ) -> Response<Body> {
        let now = now_unix();
        let state = state::new_state();
        // The provider's own code/state never travel on into the app.
        let rd = redirect::strip_code_and_state(rd);
        let flow = FlowState {
            rd,
            t: now,
            r: tries,
            d: false,
            w: website,
        };
        let mut resp = redirect(&location(&state));
        // Make room for this flow among the ones already in flight in other tabs.
        let existing: Vec<(String, Option<FlowState>)> = all_cookies(headers)
            .filter(|(n, _)| state::state_of_cookie(&self.cfg.session.cookie_name, n).is_some())
            .map(|(n, v)| (n.to_string(), self.open_flow(n, v)))
            .collect();
        for name in state::flows_to_drop(&existing, now) {
            self.push_cookie(&mut resp, &self.clear_cookie_value(&name));
        }
        let name = state::cookie_name(&self.cfg.session.cookie_name, &state);
        let value = self.flow_cookie(&name, &flow, state::FLOW_TTL_SECS);
        self.push_cookie(&mut resp, &value);
        resp
    }

    fn open_flow(&self, name: &str, sealed: &str) -> Option<FlowState> {
        let json = self.codec.open(name, sealed)?;
        serde_json::from_str(&json).ok()
    }

    /// The flow a callback's state names, read from this browser's cookie.
    pub fn flow_of(&self, headers: &HeaderMap, state: &str) -> Option<FlowState> {
        let name = state::cookie_name(&self.cfg.session.cookie_name, state);
        let found = cookie_values(headers, &name).find_map(|v| self.open_flow(&name, v));
        found
    }

    /// A Set-Cookie value for a flow cookie. Always SameSite=Lax: the callback is a
    /// top-level navigation from WeChat's domain, which Strict would strip.
    pub fn flow_cookie(&self, name: &str, flow: &FlowState, ttl: u64) -> String {
        let json = serde_json::to_string(flow).unwrap_or_default();
        let sealed = self.codec.seal(name, &json);
        session_cookie(
            name,
            &sealed,
            self.cookie_secure,
            SameSite::Lax,
            Some(Duration::from_secs(ttl)),
        )
    }

    pub fn session_cookie(&self, ticket: &str) -> String {
        let name = &self.cfg.session.cookie_name;
        let sealed = self.codec.seal(name, ticket);
        session_cookie(
            name,
            &sealed,
            self.cookie_secure,
            self.cfg.session.same_site,
            Some(self.cfg.session.ttl.get()),
        )
    }

    pub fn clear_cookie_value(&self, name: &str) -> String {
        crate::session::clear_cookie(name, self.cookie_secure, SameSite::Lax)
    }

    pub fn push_cookie(&self, resp: &mut Response<Body>, value: &str) {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().append(SET_COOKIE, v);
        }
    }

    pub fn is_allowed(&self, openid: &str) -> bool {
        self.allowed.is_empty() || self.allowed.contains(openid)
    }

    /// Sliding expiry: at most once a minute, push the session's expiry forward in the
    /// store and re-issue the cookie so the browser keeps it as long.
    async fn slide(&self, session: &Session, ticket: &str) -> Option<HeaderValue> {
        let ttl = self.cfg.session.ttl.get().as_secs();
        let now = now_unix();
        if session.expires_at.saturating_add(60) > now.saturating_add(ttl) {
            return None;
        }
        let mut s = session.clone();
        s.expires_at = now + ttl;
        match self.store.touch(ticket, &s).await {
            Ok(new_ticket) => {
                let t = new_ticket.as_deref().unwrap_or(ticket);
                HeaderValue::from_str(&self.session_cookie(t)).ok()
            }
            Err(e) => {
                // The session is still valid: serve the request, slide next time.
                warn!(error = %e, "could not extend a session's expiry");
                None
            }
        }
    }

    /// Refreshes an snsapi_userinfo profile older than `session.refresh_interval`.
    async fn maybe_refresh_profile(&self, session: &mut Session, ticket: &str) -> Refreshed {
        let interval = self.cfg.session.refresh_interval.get().as_secs();
        let now = now_unix();
        if session.scope != crate::config::Scope::UserInfo
            || now.saturating_sub(session.profile_at) < interval
        {
            return Refreshed::Unchanged;
        }
        let Some(refresh_token) = session.refresh_token.clone() else {
            return Refreshed::Unchanged;
        };
        let lock = format!("refresh:{}", session.id);
        // Another request or replica is refreshing this session: serve the current profile.
        if !self
            .store
            .try_lock(&lock, Duration::from_secs(30))
            .await
            .unwrap_or(false)
        {
            return Refreshed::Unchanged;
        }
        // This request may have loaded the session just before another one finished
        // refreshing it and released the lock: look again before spending the token.
        if let Ok(Some(current)) = self.store.load(ticket).await {
            if now.saturating_sub(current.profile_at) < interval {
                *session = current;
                let _ = self.store.unlock(&lock).await;
                return Refreshed::Unchanged;
            }
        }
        let result = self.refresh_profile(session, &refresh_token).await;
        let outcome = self.store_refreshed(session, ticket, result, now).await;
        // Only now: a request that loaded the session before the refreshed one was
        // stored must find the lock taken, or it would refresh a second time.
        let _ = self.store.unlock(&lock).await;
        outcome
    }

    /// Stores what a profile refresh brought (or ends the session WeChat ended).
    async fn store_refreshed(
        &self,
        session: &mut Session,
        ticket: &str,
        result: Result<(), crate::wechat::WechatError>,
        now: u64,
    ) -> Refreshed {
        match result {
            Ok(()) => {
                session.profile_at = now;
                match self.store.touch(ticket, session).await {
                    Ok(Some(new_ticket)) => Refreshed::NewTicket(new_ticket),
                    Ok(None) => Refreshed::Unchanged,
                    Err(e) => {
                        warn!(error = %e, "could not store a refreshed profile");
                        Refreshed::Unchanged
                    }
                }
            }
            Err(e) if e.kind() == crate::wechat::ErrorKind::RefreshEnded => {
                info!(openid = %session.openid, "WeChat ended the grant; ending the session");
                let _ = self.store.delete(ticket, session).await;
                metrics().sessions_ended.inc(&["refresh_revoked"]);
                Refreshed::Ended
            }
            Err(e) => {
                warn!(error = %e, "profile refresh failed; serving the previous profile");
                Refreshed::Unchanged
            }
        }
    }

    async fn refresh_profile(
        &self,
        session: &mut Session,
        refresh_token: &str,
    ) -> Result<(), crate::wechat::WechatError> {
        let tok = self.wechat.refresh(&session.appid, refresh_token).await?;
        let info = self
            .wechat
            .userinfo(&tok.access_token, &tok.openid, &self.cfg.wechat.lang)
            .await?;
        session.nickname = Some(info.nickname);
        session.headimgurl = Some(info.headimgurl).filter(|s| !s.is_empty());
        if info.unionid.is_some() {
            session.unionid = info.unionid;
        }
        session.access_token = Some(tok.access_token);
        session.refresh_token = Some(tok.refresh_token);
        Ok(())
    }

    /// The identity's claims from outside the session (the account's `subscribe`).
    pub async fn identity_extra(&self, session: &Session) -> crate::identity::Extra {
        match &self.account {
            Some(a) => a.identity_extra(session).await,
            None => crate::identity::Extra::default(),
        }
    }

    /// Adds the identity header (and the plain convenience headers) for a session.
    pub async fn attach_identity(
        &self,
        headers: &mut HeaderMap,
        session: &Session,
    ) -> Result<(), AuthError> {
        let extra = self.identity_extra(session).await;
        let token = self
            .signer
            .token_with(session, &extra)
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        headers.insert(self.identity_header.clone(), token);
        if self.cfg.identity.plain_headers {
            for (name, value) in plain_headers(session, "x-wxgate-") {
                headers.insert(name, value);
            }
        }
        Ok(())
    }

    /// Starts a new session for a WeChat user: a new id (never the browser's old one),
    /// stored, and its Set-Cookie value.
    pub async fn create_session(
        &self,
        mut session: Session,
    ) -> Result<(Session, String), StoreError> {
        session.id = crate::session::new_session_id();
        let now = now_unix();
        session.created_at = now;
        session.profile_at = now;
        session.expires_at = now + self.cfg.session.ttl.get().as_secs();
        let ticket = self.store.save(&session).await?;
        metrics()
            .sessions_created
            .inc(&[self.cfg.session.store.as_str()]);
        Ok((session, self.session_cookie(&ticket)))
    }
}

/// wxgate's own cookies, which never reach the upstream: the session, the flow cookies
/// and the desktop browser nonce.
pub fn is_own_cookie(base: &str, name: &str) -> bool {
    name == base
        || state::state_of_cookie(base, name).is_some()
        || name.strip_prefix(base) == Some(crate::desktop::NONCE_COOKIE)
}

/// `X-Wxgate-Openid`-style headers (or `X-Auth-Request-*` for forward-auth), values
/// percent-encoded so any nickname fits in a header.
pub fn plain_headers(session: &Session, prefix: &str) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(3);
    let mut add = |suffix: &str, value: &str| {
        let enc = classify::percent_encode_header(value);
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(format!("{prefix}{suffix}").as_bytes()),
            HeaderValue::from_str(&enc),
        ) {
            out.push((n, v));
        }
    };
    add("openid", &session.openid);
    if let Some(u) = &session.unionid {
        add("unionid", u);
    }
    if let Some(n) = &session.nickname {
        add("nickname", n);
    }
    out
}

/// Characters escaped in a query component (like encodeURIComponent).
pub const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn redirect(location: &str) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}
