//! Signing browsers in: the machinery every sign-in method shares, and the interface a
//! method implements.
//!
//! ```text
//!   app ──► signin::endpoints ─┐   (/_wxgate/* own URLs)
//!   app ──► signin::gate ──────┴─► signin::methods ──► methods::{wechat_inapp, desktop, ...}
//!                                  (choose + the list)            │
//!            signin::gate, signin::endpoints, every method ───────┴─► signin (this module:
//!              Core, Method, Verified)  ──► session, identity, wechat, pages, config
//! ```
//!
//! This module is the layer below the methods: the session cookie and store, the flow
//! (state) cookies, landing a browser, creating a session from what a method
//! [`Verified`], the signed identity. It names no method. A method is one module under
//! `methods/` implementing [`Method`]; [`methods`] lists them and holds the one function
//! that chooses one per request. Adding a method is adding its module and its line in
//! that list (and in `choose`, when the browser or route should pick it).

pub mod classify;
pub mod endpoints;
pub mod error;
pub mod gate;
pub mod methods;
pub mod paths;
pub mod redirect;
pub mod state;

use std::collections::HashSet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, LOCATION, SET_COOKIE};
use http::{HeaderMap, Response, StatusCode};
use tracing::warn;

use crate::body::{empty, Body};
use crate::config::{Access, Config, DesktopMode, SameSite, Scope};
use crate::identity::{Audience, Signer};
use crate::metrics::metrics;
use crate::pages::Reply;
use crate::session::codec::CookieCodec;
use crate::session::{
    all_cookies, cookie_values, now_unix, session_cookie, ExtraClaims, Idp, Session, Store,
    StoreError,
};
use crate::wechat::{AppCredentials, WechatClient};

pub use error::SignInError;
use paths::PathMatcher;
use state::FlowState;

/// The machinery every sign-in method uses, built once per configuration (and again
/// on reload; the session store is shared between generations so nobody is signed
/// out). Its fields are this module's own: methods (below it) read them, the rest of
/// wxgate goes through the accessors.
pub struct Core {
    cfg: Arc<Config>,
    store: Arc<Store>,
    signer: Signer,
    codec: CookieCodec,
    wechat: WechatClient,
    /// The official account.
    app: AppCredentials,
    /// The website app of `desktop.mode = "qrconnect"`.
    website: Option<AppCredentials>,
    public: PathMatcher,
    api: PathMatcher,
    allowed: HashSet<String>,
    /// Users some route allows by its own `allowed_openids`: they may sign in too.
    allowed_on_routes: HashSet<String>,
    identity_header: HeaderName,
    /// public_url + "/_wxgate/callback", built once.
    redirect_uri: String,
    cookie_secure: bool,
    /// The account's services (`[account]`), if on.
    account: Option<crate::account::Account>,
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

/// The browser asking, read once from its request.
pub struct Browser<'a> {
    pub headers: &'a HeaderMap,
    pub user_agent: &'a str,
    /// WeChat's in-app browser, where WeChat's authorize URL works.
    pub in_wechat: bool,
    /// WeCom's in-app browser (phone or desktop app), where WeCom's OAuth link works.
    pub in_wecom: bool,
    /// A phone's or tablet's browser (it cannot scan its own screen).
    pub mobile: bool,
    pub reply: Reply,
    /// The visitor's address (shown, never used to decide access).
    pub client: IpAddr,
}

impl<'a> Browser<'a> {
    pub fn of(headers: &'a HeaderMap, client: IpAddr) -> Browser<'a> {
        let user_agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Browser {
            headers,
            user_agent,
            in_wechat: classify::is_wechat_browser(user_agent),
            in_wecom: classify::browser_of(user_agent) == classify::Browser::Wecom,
            mobile: classify::is_mobile_browser(user_agent),
            reply: Reply::of(headers),
            client,
        }
    }
}

/// What the route being visited asks of a visitor and of a sign-in (`routes::needs`
/// makes one from a `[[routes]]` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteNeeds<'a> {
    /// The scope a new sign-in asks for.
    pub scope: Scope,
    /// A scope the session must already have (a route's `scope`): a WeChat session
    /// with less goes to WeChat once more.
    pub requires: Option<Scope>,
    pub access: Access,
    /// The route's own allowlist; `None`: `access.allowed_openids`.
    pub allowed: Option<&'a HashSet<String>>,
    /// The identity token's `aud` here; `None`: `identity.audience`.
    pub audience: Option<Audience<'a>>,
    /// For a WeCom session: the route's `allowed_userids` and `allowed_departments`
    /// (both empty: every member `[wecom]` admits).
    pub allowed_userids: &'a [String],
    pub allowed_departments: &'a [u64],
}

impl RouteNeeds<'static> {
    /// What `[upstream]` needs: sign-in with the configured `wechat.scope`
    /// (`hub_client.scope` when signing in through a hub).
    pub fn of(cfg: &Config) -> RouteNeeds<'static> {
        RouteNeeds {
            scope: cfg
                .hub_client
                .as_ref()
                .map_or(cfg.wechat.scope, |h| h.scope),
            requires: None,
            access: Access::SignedIn,
            allowed: None,
            audience: None,
            allowed_userids: &[],
            allowed_departments: &[],
        }
    }
}

/// A sign-in to start.
pub struct Begin<'a> {
    pub browser: &'a Browser<'a>,
    /// The validated same-origin path to land on afterwards.
    pub rd: &'a str,
    /// Fresh starts already spent on this flow (at most one, never a loop).
    pub tries: u8,
    pub route: RouteNeeds<'a>,
}

/// A sign-in coming back to `/_wxgate/callback` with its proof, after the shared
/// checks: the state is this browser's, the flow is live and not completed.
pub struct Callback<'a> {
    pub browser: &'a Browser<'a>,
    pub query: &'a str,
    /// The provider's one-time code.
    pub code: &'a str,
    pub flow: &'a FlowState,
}

/// What a finished sign-in vouches for: the session and identity are made from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub idp: Idp,
    /// The app (appid) the subject belongs to.
    pub app: String,
    /// Who signed in (WeChat: the openid).
    pub subject: String,
    /// What the user granted.
    pub scope: Scope,
    pub unionid: Option<String>,
    pub nickname: Option<String>,
    pub headimgurl: Option<String>,
    /// The provider's tokens, kept to refresh the profile.
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    /// Claims the method adds to the identity.
    pub claims: ExtraClaims,
}

impl Verified {
    /// A WeChat user known by app and openid, with nothing else yet.
    pub fn wechat(app: impl Into<String>, openid: impl Into<String>, scope: Scope) -> Verified {
        Verified::from_session(Session::new(app, openid, scope))
    }

    /// What a session (another browser's, confirmed) vouches for.
    pub fn from_session(s: Session) -> Verified {
        Verified {
            idp: s.idp,
            app: s.appid,
            subject: s.openid,
            scope: s.scope,
            unionid: s.unionid,
            nickname: s.nickname,
            headimgurl: s.headimgurl,
            access_token: s.access_token,
            refresh_token: s.refresh_token,
            claims: s.claims,
        }
    }

    /// A session for it: no id and no times yet ([`Core::create_session`] sets them).
    pub fn into_session(self) -> Session {
        Session {
            unionid: self.unionid,
            nickname: self.nickname,
            headimgurl: self.headimgurl,
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            idp: self.idp,
            claims: self.claims,
            ..Session::new(self.app, self.subject, self.scope)
        }
    }
}

/// A request to a URL a method answers itself (under `/_wxgate/`).
pub struct OwnRequest<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub browser: &'a Browser<'a>,
}

/// One way of signing a browser in. A method is a peer of the others: it starts a
/// sign-in, finishes it (from the shared callback, or from its own confirmation URLs),
/// and says what it verified; the [`Core`] does the rest.
pub trait Method: Sized + Send + Sync {
    /// The method's name in flow cookies (which method finishes a callback).
    const NAME: &'static str;
    /// Suffixes of `session.cookie_name` naming the method's own browser cookies,
    /// which never reach the upstream.
    const COOKIES: &'static [&'static str] = &[];

    fn new(core: &Core) -> Self;

    /// State carried over a configuration reload.
    fn keep_from(&mut self, _previous: &Self) {}

    /// Starts a sign-in for this browser: a redirect or a page.
    fn start(&self, core: &Core, begin: &Begin<'_>) -> impl Future<Output = Response<Body>> + Send;

    /// Finishes a sign-in this method started, from the shared callback.
    fn finish(
        &self,
        core: &Core,
        callback: &Callback<'_>,
    ) -> impl Future<Output = Result<Verified, SignInError>> + Send;

    /// Whether a `/_wxgate/...` path is one of this method's own URLs.
    fn serves(&self, _path: &str) -> bool {
        false
    }

    /// Answers one of [`Method::serves`]'s URLs.
    fn serve(
        &self,
        _core: &Core,
        req: &OwnRequest<'_>,
    ) -> impl Future<Output = Response<Body>> + Send {
        let reply = req.browser.reply;
        async move { crate::pages::not_found(reply) }
    }
}

impl Core {
    pub fn new(cfg: Arc<Config>, store: Arc<Store>) -> Result<Core, BuildError> {
        let public_url = cfg.public().clone();
        let issuer = format!("{}/_wxgate", public_url.origin);
        let method_claims: &[&str] = if cfg.wecom.is_some() {
            crate::identity::WECOM_CLAIMS
        } else if cfg.hub_client.is_some() {
            crate::identity::HUB_CLIENT_CLAIMS
        } else {
            &[]
        };
        let signer = Signer::from_config(&cfg.identity, &cfg.session.secret_bytes, issuer)?
            .also_claiming(method_claims);
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
        Ok(Core {
            public: PathMatcher::new(&cfg.access.public_paths)
                .map_err(|e| BuildError::Other(format!("access.public_paths: {e}")))?,
            api: PathMatcher::new(&cfg.access.api_paths)
                .map_err(|e| BuildError::Other(format!("access.api_paths: {e}")))?,
            allowed: cfg.access.allowed_openids.iter().cloned().collect(),
            allowed_on_routes: cfg
                .routes
                .iter()
                .flat_map(|r| r.allowed_openids.iter().cloned())
                .collect(),
            app: AppCredentials {
                appid: cfg.wechat.appid.clone(),
                secret: cfg.wechat.secret.clone(),
            },
            website,
            redirect_uri: format!("{}/_wxgate/callback", public_url.origin),
            cookie_secure: cfg.cookie_secure(),
            account: crate::account::Account::from_config(&cfg, &wechat, store.clone()),
            identity_header,
            signer,
            codec,
            wechat,
            store,
            cfg,
        })
    }

    pub fn cfg(&self) -> &Config {
        &self.cfg
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn account(&self) -> Option<&crate::account::Account> {
        self.account.as_ref()
    }

    pub fn identity_header(&self) -> &HeaderName {
        &self.identity_header
    }

    /// What a reload carries over from the generation it replaces.
    pub fn keep_from(&mut self, previous: &Core) {
        if let (Some(new), Some(old)) = (self.account.as_mut(), previous.account.as_ref()) {
            new.keep_from(old);
        }
    }

    /// The session this request carries, if any. A store failure is an error (503), not
    /// "no session": sending a signed-in user to WeChat because Redis blinked would burn
    /// codes and loop.
    pub async fn session_of(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(Session, String)>, SignInError> {
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
                Err(SignInError::StoreUnavailable)
            }
            None => Ok(None),
        }
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
            Reply::Json,
            Some(serde_json::json!({ "login_url": login_url })),
        )
    }

    /// The same-origin URL that starts a sign-in returning to `rd`.
    pub fn start_url(&self, rd: &str) -> String {
        self.start_url_scoped(rd, None)
    }

    /// As [`Core::start_url`], asking for `scope` (`&scope=` last, where
    /// `/_wxgate/start` looks for it).
    pub fn start_url_scoped(&self, rd: &str, scope: Option<Scope>) -> String {
        let mut url = format!(
            "/_wxgate/start?rd={}",
            percent_encoding::utf8_percent_encode(rd, COMPONENT)
        );
        if let Some(s) = scope {
            url.push_str("&scope=");
            url.push_str(s.as_str());
        }
        url
    }

    /// 401 JSON for a signed-in API client whose session lacks `scope`: where a
    /// browser gets it.
    pub fn scope_required_json(&self, rd: &str, scope: Scope) -> Response<Body> {
        let n = crate::pages::Notice {
            status: StatusCode::UNAUTHORIZED,
            code: "scope_required",
            title_zh: "需要更多授权",
            title_en: "More authorization required",
            detail_zh: "此请求需要您的微信资料（昵称和头像）。".into(),
            detail: "This request needs your WeChat profile (nickname and avatar).".into(),
            retry: None,
        };
        let sign_in = self.start_url_scoped(rd, Some(scope));
        crate::pages::respond_with(
            &n,
            Reply::Json,
            Some(serde_json::json!({ "scope": scope.as_str(), "sign_in": sign_in })),
        )
    }

    /// Where a finished sign-in sends the browser: a 302 to `rd`. With
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

    /// A 302 to a provider's authorization URL carrying a fresh state bound to this
    /// browser by a flow cookie; `location` builds the URL from the state. `method` is
    /// the name of the method that will finish the flow.
    pub fn redirect_with_flow(
        &self,
        headers: &HeaderMap,
        rd: &str,
        tries: u8,
        method: &str,
        location: impl FnOnce(&str) -> String,
    ) -> Response<Body> {
        self.redirect_with_flow_scoped(headers, rd, tries, method, None, location)
    }

    /// As [`Core::redirect_with_flow`], the flow remembering `scope`, the scope asked
    /// for beyond `wechat.scope` (a fresh start asks the same; a refusal knows it).
    pub fn redirect_with_flow_scoped(
        &self,
        headers: &HeaderMap,
        rd: &str,
        tries: u8,
        method: &str,
        scope: Option<Scope>,
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
            m: method.to_string(),
            w: false,
            s: scope,
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

    /// A Set-Cookie value for a method's own browser cookie (`session.cookie_name` +
    /// `suffix`), sealed, SameSite=Lax.
    pub fn browser_cookie(&self, suffix: &str, value: &str, ttl: Duration) -> String {
        let name = format!("{}{suffix}", self.cfg.session.cookie_name);
        let sealed = self.codec.seal(&name, value);
        session_cookie(&name, &sealed, self.cookie_secure, SameSite::Lax, Some(ttl))
    }

    /// The value of a method's own browser cookie, if this browser carries a valid one.
    pub fn browser_cookie_of(&self, headers: &HeaderMap, suffix: &str) -> Option<String> {
        let name = format!("{}{suffix}", self.cfg.session.cookie_name);
        let found = cookie_values(headers, &name).find_map(|v| self.codec.open(&name, v));
        found
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

    /// Whether a user may use a route: its own allowlist when it has one,
    /// `access.allowed_openids` otherwise.
    pub fn is_allowed_on(&self, route: &RouteNeeds<'_>, openid: &str) -> bool {
        match route.allowed {
            Some(only) => only.contains(openid),
            None => self.is_allowed(openid),
        }
    }

    /// Whether a user may sign in at all: allowed on `[upstream]` or on some route.
    pub fn is_allowed_anywhere(&self, openid: &str) -> bool {
        self.is_allowed(openid) || self.allowed_on_routes.contains(openid)
    }

    /// Whether a stored session may pass on a route under the rules of now (a reload
    /// may have changed them): the route's allowlist or `access.allowed_openids`, and
    /// for a WeCom session `[wecom]`'s own rules, then the route's `allowed_userids`
    /// and `allowed_departments`.
    pub fn admits(&self, session: &Session, route: &RouteNeeds<'_>) -> Result<(), SignInError> {
        if !self.is_allowed_on(route, &session.openid) {
            return Err(SignInError::NotAllowed);
        }
        if let (Idp::Wecom, Some(w)) = (session.idp, &self.cfg.wecom) {
            crate::wecom::member::admit_claims(
                &session.claims,
                w.members_only,
                &w.allowed_departments,
            )
            .map_err(SignInError::Wecom)?;
            // Signed in to the organisation, but this app may be for some of it only.
            if !crate::wecom::member::route_allows_claims(
                &session.claims,
                route.allowed_userids,
                route.allowed_departments,
            ) {
                return Err(SignInError::NotAllowed);
            }
        }
        Ok(())
    }

    /// The identity's claims from outside the session (the account's `subscribe`).
    pub async fn identity_extra(&self, session: &Session) -> crate::identity::Extra {
        match &self.account {
            Some(a) => a.identity_extra(session).await,
            None => crate::identity::Extra::default(),
        }
    }

    /// Adds the identity header (and the plain convenience headers) for a session;
    /// `audience`: a route's `aud` (None: `identity.audience`).
    pub async fn attach_identity(
        &self,
        headers: &mut HeaderMap,
        session: &Session,
        audience: Option<Audience<'_>>,
    ) -> Result<(), SignInError> {
        let extra = self.identity_extra(session).await;
        let token = match audience {
            Some(aud) => self.signer.token_for_audience(session, &extra, aud),
            None => self.signer.token_with(session, &extra),
        }
        .map_err(|e| SignInError::Internal(e.to_string()))?;
        headers.insert(self.identity_header.clone(), token);
        if self.cfg.identity.plain_headers {
            for (name, value) in plain_headers(session, "x-wxgate-") {
                headers.insert(name, value);
            }
        }
        Ok(())
    }

    /// Starts a new session: a new id (never the browser's old one), stored, and its
    /// Set-Cookie value.
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
            .inc(crate::metrics::labels::SessionStore(self.cfg.session.store));
        Ok((session, self.session_cookie(&ticket)))
    }

    /// Turns what a method verified into this browser's new session: `allowed_openids`
    /// enforced, the browser's previous session ended (fixation defence), a new one
    /// stored. Returns the session and its Set-Cookie value.
    pub async fn establish(
        &self,
        headers: &HeaderMap,
        verified: Verified,
    ) -> Result<(Session, String), SignInError> {
        if !self.is_allowed_anywhere(&verified.subject) {
            warn!(openid = %verified.subject, "sign-in refused: not in access.allowed_openids (nor a route's)");
            return Err(SignInError::NotAllowed);
        }
        if let Ok(Some((old, ticket))) = self.session_of(headers).await {
            let _ = self.store.delete(&ticket, &old).await;
        }
        self.create_session(verified.into_session())
            .await
            .map_err(|e| {
                warn!(error = %e, "could not store a new session");
                SignInError::StoreUnavailable
            })
    }
}

/// Whether a cookie is the session's or a flow's (the methods' own are named by them).
pub fn is_core_cookie(base: &str, name: &str) -> bool {
    name == base || state::state_of_cookie(base, name).is_some()
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
