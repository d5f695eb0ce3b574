//! The gate in front of the upstream: who a request belongs to, whether it may pass,
//! and starting a sign-in (by the chosen method) when it may not.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use http::{HeaderMap, Method as HttpMethod, Response};
use tracing::{info, warn};

use super::methods::{choose, MethodId, Methods};
use super::{classify, redirect, Begin, BuildError, Core, RouteNeeds, SignInError};
use crate::body::Body;
use crate::config::{Access, Config, Scope};
use crate::metrics::metrics;
use crate::session::{now_unix, Idp, Session, Store};
use crate::signin::Browser;

/// The sign-in of one configuration: the shared machinery and every method's value.
pub struct SignIn {
    pub core: Core,
    pub methods: Methods,
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

impl SignIn {
    pub fn new(cfg: Arc<Config>, store: Arc<Store>) -> Result<SignIn, BuildError> {
        let core = Core::new(cfg, store)?;
        let methods = Methods::new(&core);
        Ok(SignIn { core, methods })
    }

    /// What a reload carries over from the generation it replaces (the account's
    /// tokens, the count of QR pages shown...).
    pub fn keep_from(&mut self, previous: &SignIn) {
        self.core.keep_from(&previous.core);
        self.methods.keep_from(&previous.methods);
    }

    /// wxgate's own cookies, which never reach the upstream: the session, the flow
    /// cookies and the methods' own.
    pub fn is_own_cookie(base: &str, name: &str) -> bool {
        super::is_core_cookie(base, name) || Methods::is_method_cookie(base, name)
    }

    /// Begins a sign-in for a browser navigation, by the method chosen for this browser
    /// and route. `tries` counts fresh starts already spent on this flow.
    pub async fn begin(&self, browser: &Browser<'_>, rd: &str, tries: u8) -> Response<Body> {
        self.begin_for(browser, rd, tries, &RouteNeeds::of(self.core.cfg()))
            .await
    }

    /// As [`SignIn::begin`], for what a route needs (the scope to ask for).
    pub async fn begin_for(
        &self,
        browser: &Browser<'_>,
        rd: &str,
        tries: u8,
        route: &RouteNeeds<'_>,
    ) -> Response<Body> {
        let id = choose(browser, route, self.core.cfg());
        self.start(id, browser, rd, tries, route.scope).await
    }

    /// Starts a sign-in by a given method, asking for `scope`.
    pub async fn start(
        &self,
        id: MethodId,
        browser: &Browser<'_>,
        rd: &str,
        tries: u8,
        scope: Scope,
    ) -> Response<Body> {
        let begin = Begin {
            browser,
            rd,
            tries,
            route: RouteNeeds {
                scope,
                ..RouteNeeds::of(self.core.cfg())
            },
        };
        self.methods.start(id, &self.core, &begin).await
    }

    /// Takes a signed-in browser whose session lacks `scope` to WeChat once more for
    /// it. Only WeChat's browser can grant the profile: another gets a page saying
    /// so, never a sign-in that could not help (and would loop).
    pub async fn escalate(&self, browser: &Browser<'_>, rd: &str, scope: Scope) -> Response<Body> {
        if !browser.in_wechat {
            return SignInError::ProfileOnlyInWechat.response(browser.reply, None);
        }
        metrics()
            .denied
            .inc(crate::metrics::labels::Denied::ScopeEscalation);
        // Through a hub, the hub asks WeChat for the profile (its own sign-in, in this
        // same browser) and answers with a code carrying it.
        let id = if self.core.cfg().hub_client.is_some() {
            MethodId::Hub
        } else {
            MethodId::WechatInApp
        };
        self.start(id, browser, rd, 0, scope).await
    }

    /// The session a request to a public path carries, if any: a public page may greet
    /// a signed-in user, so it gets the identity too. Nothing here may refuse the
    /// request: no cookie costs no lookup, and a store that is down (or a user outside
    /// `allowed_openids`) means "serve it anonymously".
    async fn public_session(&self, headers: &HeaderMap, route: &RouteNeeds<'_>) -> Option<Session> {
        let core = &self.core;
        crate::session::cookie_values(headers, &core.cfg.session.cookie_name).next()?;
        match core.session_of(headers).await {
            Ok(Some((session, _))) if core.admits(&session, route).is_ok() => Some(session),
            // session_of has logged the store's failure.
            Ok(_) | Err(_) => None,
        }
    }

    /// Who the request belongs to and whether it may pass, for every request that is
    /// not `/_wxgate/*`. `route`: what the route the request is for needs (its access,
    /// scope and allowlist); `access.public_paths` and `api_paths` apply on every route.
    pub async fn gate(
        &self,
        method: &HttpMethod,
        path_and_query: &str,
        normalized: &str,
        headers: &HeaderMap,
        client: IpAddr,
        route: &RouteNeeds<'_>,
    ) -> Gate {
        let core = &self.core;
        if route.access == Access::Public || core.public.matches(normalized) {
            return Gate::Forward {
                session: self.public_session(headers, route).await,
                set_cookie: None,
            };
        }
        let reply = crate::pages::Reply::of(headers);
        let session = match core.session_of(headers).await {
            Ok(s) => s,
            Err(e) => {
                metrics()
                    .denied
                    .inc(crate::metrics::labels::Denied::StoreUnavailable);
                return Gate::Respond(e.response(reply, None));
            }
        };
        if let Some((mut session, ticket)) = session {
            if let Err(e) = core.admits(&session, route) {
                metrics()
                    .denied
                    .inc(crate::metrics::labels::Denied::NotAllowed);
                return Gate::Respond(e.response(reply, None));
            }
            let mut ticket = ticket;
            let mut reissue = false;
            match self.maybe_refresh_profile(&mut session, &ticket).await {
                Refreshed::Ended => {
                    return self
                        .unauthenticated(method, path_and_query, normalized, headers, client, route)
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
            // A route needing the profile, and a WeChat session with only the openid:
            // once more to WeChat for it (a declined profile leaves this session and
            // shows a page: never a loop).
            if let Some(needed) = route.requires {
                if needed == Scope::UserInfo
                    && session.scope != Scope::UserInfo
                    && session.idp.can_ask_for_profile()
                {
                    let rd = redirect::safe_return_path(path_and_query)
                        .unwrap_or_else(|| "/".to_string());
                    if self.is_api(method, headers, normalized, route) {
                        metrics()
                            .denied
                            .inc(crate::metrics::labels::Denied::ScopeRequired);
                        return Gate::Respond(core.scope_required_json(&rd, needed));
                    }
                    let browser = Browser::of(headers, client);
                    return Gate::Respond(self.escalate(&browser, &rd, needed).await);
                }
            }
            let set_cookie = match self.slide(&session, &ticket).await {
                None if reissue => HeaderValue::from_str(&core.session_cookie(&ticket)).ok(),
                c => c,
            };
            return Gate::Forward {
                session: Some(session),
                set_cookie,
            };
        }
        self.unauthenticated(method, path_and_query, normalized, headers, client, route)
            .await
    }

    /// Whether a request gets JSON rather than a sign-in: an `api` route, or what
    /// `classify` calls an API request.
    fn is_api(
        &self,
        method: &HttpMethod,
        headers: &HeaderMap,
        normalized: &str,
        route: &RouteNeeds<'_>,
    ) -> bool {
        route.access == Access::Api
            || classify::is_api_request(method, headers, normalized, &self.core.api)
    }

    async fn unauthenticated(
        &self,
        method: &HttpMethod,
        path_and_query: &str,
        normalized: &str,
        headers: &HeaderMap,
        client: IpAddr,
        route: &RouteNeeds<'_>,
    ) -> Gate {
        let rd = redirect::safe_return_path(path_and_query).unwrap_or_else(|| "/".to_string());
        if self.is_api(method, headers, normalized, route) {
            metrics()
                .denied
                .inc(crate::metrics::labels::Denied::UnauthenticatedApi);
            return Gate::Respond(self.core.unauthorized_json(&rd));
        }
        let browser = Browser::of(headers, client);
        Gate::Respond(self.begin_for(&browser, &rd, 0, route).await)
    }

    /// Sliding expiry: at most once a minute, push the session's expiry forward in the
    /// store and re-issue the cookie so the browser keeps it as long.
    async fn slide(&self, session: &Session, ticket: &str) -> Option<HeaderValue> {
        let core = &self.core;
        let ttl = core.cfg.session.ttl.get().as_secs();
        let now = now_unix();
        if session.expires_at.saturating_add(60) > now.saturating_add(ttl) {
            return None;
        }
        let mut s = session.clone();
        s.expires_at = now + ttl;
        match core.store.slide(ticket, &s).await {
            Ok(new_ticket) => {
                let t = new_ticket.as_deref().unwrap_or(ticket);
                HeaderValue::from_str(&core.session_cookie(t)).ok()
            }
            Err(e) => {
                // The session is still valid: serve the request, slide next time.
                warn!(error = %e, "could not extend a session's expiry");
                None
            }
        }
    }

    /// Refreshes a WeChat snsapi_userinfo profile older than `session.refresh_interval`.
    async fn maybe_refresh_profile(&self, session: &mut Session, ticket: &str) -> Refreshed {
        let core = &self.core;
        let interval = core.cfg.session.refresh_interval.get().as_secs();
        let now = now_unix();
        if session.idp != Idp::Wechat
            || session.scope != crate::config::Scope::UserInfo
            || now.saturating_sub(session.profile_at) < interval
        {
            return Refreshed::Unchanged;
        }
        let Some(refresh_token) = session.refresh_token.clone() else {
            return Refreshed::Unchanged;
        };
        let lock = format!("refresh:{}", session.id);
        // Another request or replica is refreshing this session: serve the current profile.
        if !core
            .store
            .try_lock(&lock, Duration::from_secs(30))
            .await
            .unwrap_or(false)
        {
            return Refreshed::Unchanged;
        }
        // This request may have loaded the session just before another one finished
        // refreshing it and released the lock: look again before spending the token.
        if let Ok(Some(current)) = core.store.load(ticket).await {
            if now.saturating_sub(current.profile_at) < interval {
                *session = current;
                let _ = core.store.unlock(&lock).await;
                return Refreshed::Unchanged;
            }
        }
        let result = self.refresh_profile(session, &refresh_token).await;
        let outcome = self.store_refreshed(session, ticket, result, now).await;
        // Only now: a request that loaded the session before the refreshed one was
        // stored must find the lock taken, or it would refresh a second time.
        let _ = core.store.unlock(&lock).await;
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
        let store = &self.core.store;
        match result {
            Ok(()) => {
                session.profile_at = now;
                match store.touch(ticket, session).await {
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
                let _ = store.delete(ticket, session).await;
                metrics()
                    .sessions_ended
                    .inc(crate::metrics::labels::SessionEnded::RefreshRevoked);
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
        let core = &self.core;
        let tok = core.wechat.refresh(&session.appid, refresh_token).await?;
        let info = core
            .wechat
            .userinfo(&tok.access_token, &tok.openid, &core.cfg.wechat.lang)
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
}
