//! `GET /_wxgate/oidc/authorize`: the authorization code flow's first leg.
//!
//! The request is checked in an order that decides where an error may go: first the
//! client and its exact redirect_uri (anything wrong: a page here, never a redirect),
//! then everything else (wrong: an error sent to that redirect_uri with the app's
//! state). A visitor without a hub session signs in by today's flow first; the
//! checked request waits in the store meanwhile, and the sign-in returns to it.

use std::net::IpAddr;

use http::{HeaderMap, Response};
use tracing::{info, warn};

use super::error::{no_store, PageError, RedirectError};
use super::grants::{for_app, CodeGrant, Grants, Pending};
use super::params::{with_query, Params};
use super::{covers, narrower, Hub};
use crate::body::Body;
use crate::config::Scope;
use crate::metrics::labels::{HubEndpoint, HubRequest};
use crate::metrics::metrics;
use crate::pages::Reply;
use crate::session::{now_unix, Session};
use crate::signin::gate::SignIn;
use crate::signin::{state, Browser, RouteNeeds};

/// Longest `state` and `nonce` echoed: they travel in a Location header and a token.
const MAX_ECHOED: usize = 1024;

/// Why a request is refused, and so where the refusal goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A page at the hub: the client or its redirect_uri is not known good.
    Page(PageError),
    /// Back to the app's registered redirect_uri, with its state.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: RedirectError,
    },
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub pending: Pending,
    /// `prompt=none`: answer without any sign-in page, or with `login_required`.
    pub prompt_none: bool,
}

/// Checks an authorization request against the registered clients (pure).
pub fn check(hub: &Hub, params: &Params) -> Result<Checked, Refusal> {
    let one = |name: &'static str| {
        params
            .one(name)
            .map_err(|_| Refusal::Page(PageError::Repeated(name)))
    };
    let client_id = one("client_id")?;
    let redirect_uri = one("redirect_uri")?;
    let Some(client) = client_id.and_then(|id| hub.clients.get(id)) else {
        return Err(Refusal::Page(PageError::UnknownClient));
    };
    let Some(redirect_uri) = redirect_uri.filter(|u| client.allows_redirect(u)) else {
        return Err(Refusal::Page(PageError::BadRedirectUri));
    };
    // From here on the app hears about what is wrong, at its own address.
    let state = params.one("state").ok().flatten().map(str::to_string);
    let refuse = |error: &'static str, description: &'static str| Refusal::Redirect {
        redirect_uri: redirect_uri.to_string(),
        state: state.clone().filter(|s| s.len() <= MAX_ECHOED),
        error: RedirectError::new(error, description),
    };
    if params.is_undecodable() {
        return Err(refuse("invalid_request", "a parameter is not valid UTF-8"));
    }
    let other = |name: &'static str| {
        params
            .one(name)
            .map_err(|_| refuse("invalid_request", "a parameter is given more than once"))
    };
    let (state, nonce) = (other("state")?, other("nonce")?);
    if state.is_some_and(|s| s.len() > MAX_ECHOED) || nonce.is_some_and(|n| n.len() > MAX_ECHOED) {
        return Err(refuse(
            "invalid_request",
            "state and nonce are limited to 1024 bytes",
        ));
    }
    if other("request")?.is_some() || other("request_uri")?.is_some() {
        return Err(refuse(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    match other("response_type")? {
        Some("code") => {}
        None => return Err(refuse("invalid_request", "response_type is required")),
        Some(_) => {
            return Err(refuse(
                "unsupported_response_type",
                "only the authorization code flow (response_type=code) is supported",
            ))
        }
    }
    if other("response_mode")?.is_some_and(|m| m != "query") {
        return Err(refuse(
            "invalid_request",
            "only response_mode=query is supported",
        ));
    }
    let scopes: Vec<&str> = other("scope")?.unwrap_or("").split(' ').collect();
    if !scopes.contains(&"openid") {
        return Err(refuse("invalid_scope", "scope must include openid"));
    }
    // Scopes the hub does not know (email, offline_access...) are ignored, as OpenID
    // Connect asks; profile is granted only as far as the client may go.
    let wanted = if scopes.contains(&"profile") {
        Scope::UserInfo
    } else {
        Scope::Base
    };
    let Some(challenge) = other("code_challenge")? else {
        return Err(refuse(
            "invalid_request",
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        ));
    };
    if other("code_challenge_method")? != Some("S256") {
        return Err(refuse(
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    if !super::pkce::is_challenge(challenge) {
        return Err(refuse(
            "invalid_request",
            "code_challenge is not a base64url SHA-256 digest",
        ));
    }
    let prompt = other("prompt")?.unwrap_or("");
    Ok(Checked {
        pending: Pending {
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.to_string(),
            state: state.map(str::to_string),
            nonce: nonce.map(str::to_string),
            code_challenge: challenge.to_string(),
            scope: narrower(wanted, client.max_scope),
        },
        prompt_none: prompt.split(' ').any(|p| p == "none"),
    })
}

pub async fn authorize(
    signin: &SignIn,
    hub: &Hub,
    query: &str,
    headers: &HeaderMap,
    client_ip: IpAddr,
) -> Response<Body> {
    let json = Reply::of(headers);
    let params = Params::parse(query);
    let grants = Grants {
        store: signin.core.store(),
    };
    match params.one("resume") {
        Err(_) => return PageError::Repeated("resume").response(json),
        Ok(Some(id)) => return resume(signin, hub, &grants, id, headers).await,
        Ok(None) => {}
    }
    let checked = match check(hub, &params) {
        Ok(c) => c,
        Err(Refusal::Page(e)) => {
            warn!(error = %e, "hub: authorization request refused with a page");
            metrics()
                .hub
                .inc(HubRequest(HubEndpoint::Authorize, e.code()));
            return e.response(json);
        }
        Err(Refusal::Redirect {
            redirect_uri,
            state,
            error,
        }) => {
            info!(
                error = error.error,
                detail = error.description,
                "hub: authorization request refused"
            );
            metrics()
                .hub
                .inc(HubRequest(HubEndpoint::Authorize, error.error));
            return error_redirect(hub, &redirect_uri, state.as_deref(), &error);
        }
    };
    let p = checked.pending;
    let browser = Browser::of(headers, client_ip);
    match signin.core.session_of(headers).await {
        Err(_) => PageError::StoreUnavailable.response(json),
        // Outside WeChat's browser a sign-in cannot ask WeChat for more (the phone that
        // scans signs in as configured): the session is what the app gets.
        Ok(Some((s, _))) if covers(s.scope, p.scope) || !browser.in_wechat => {
            issue(signin, hub, &grants, &p, &s, json).await
        }
        Ok(session) if checked.prompt_none => {
            let error = if session.is_some() {
                RedirectError::new(
                    "consent_required",
                    "the profile needs the user's consent on WeChat",
                )
            } else {
                RedirectError::new("login_required", "the user is not signed in at the hub")
            };
            error_redirect(hub, &p.redirect_uri, p.state.as_deref(), &error)
        }
        Ok(_) => {
            // The hub's own sign-in, exactly today's, returning to this request.
            let id = match grants.put_pending(&p).await {
                Ok(id) => id,
                Err(e) => {
                    warn!(error = %e, "hub: cannot keep an authorization request");
                    return PageError::StoreUnavailable.response(json);
                }
            };
            let rd = format!("/_wxgate/oidc/authorize?resume={id}");
            metrics()
                .hub
                .inc(HubRequest(HubEndpoint::Authorize, "sign_in"));
            let route = RouteNeeds {
                scope: p.scope,
                ..RouteNeeds::of(signin.core.cfg())
            };
            signin.begin_for(&browser, &rd, 0, &route).await
        }
    }
}

/// Back from the hub's own sign-in: the user now has a hub session (whatever scope
/// WeChat granted is what the app gets: no second round trip, no loop).
async fn resume(
    signin: &SignIn,
    hub: &Hub,
    grants: &Grants<'_>,
    id: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let json = Reply::of(headers);
    if !state::is_valid_state(id) {
        return PageError::ResumeExpired.response(json);
    }
    let p = match grants.pending(id).await {
        Ok(Some(p)) => p,
        Ok(None) => return PageError::ResumeExpired.response(json),
        Err(_) => return PageError::StoreUnavailable.response(json),
    };
    // A reload may have removed the client or its redirect_uri meanwhile.
    match hub.clients.get(&p.client_id) {
        None => return PageError::UnknownClient.response(json),
        Some(c) if !c.allows_redirect(&p.redirect_uri) => {
            return PageError::BadRedirectUri.response(json)
        }
        Some(_) => {}
    }
    match signin.core.session_of(headers).await {
        Ok(Some((s, _))) => issue(signin, hub, grants, &p, &s, json).await,
        Ok(None) => PageError::SignInIncomplete.response(json),
        Err(_) => PageError::StoreUnavailable.response(json),
    }
}

/// A code for the app, sent to its redirect_uri.
async fn issue(
    signin: &SignIn,
    hub: &Hub,
    grants: &Grants<'_>,
    p: &Pending,
    s: &Session,
    json: Reply,
) -> Response<Body> {
    if !signin.core.is_allowed(&s.openid) {
        let error = RedirectError::new("access_denied", "this WeChat user is not allowed");
        return error_redirect(hub, &p.redirect_uri, p.state.as_deref(), &error);
    }
    let grant = CodeGrant {
        client_id: p.client_id.clone(),
        redirect_uri: p.redirect_uri.clone(),
        code_challenge: p.code_challenge.clone(),
        nonce: p.nonce.clone(),
        session: for_app(s, narrower(p.scope, s.scope)),
        expires_at: now_unix() + hub.code_ttl.as_secs().max(1),
    };
    let code = match grants.put_code(&grant, hub.code_ttl).await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "hub: cannot store a code");
            return PageError::StoreUnavailable.response(json);
        }
    };
    info!(client = %p.client_id, openid = %s.openid, scope = %grant.session.scope, "hub: code issued");
    metrics()
        .hub
        .inc(HubRequest(HubEndpoint::Authorize, "code_issued"));
    let mut params = vec![("code", code.as_str())];
    if let Some(st) = &p.state {
        params.push(("state", st));
    }
    // RFC 9207: the app can tell which provider answered.
    params.push(("iss", hub.issuer.as_str()));
    no_store(crate::signin::redirect(&with_query(
        &p.redirect_uri,
        &params,
    )))
}

fn error_redirect(
    hub: &Hub,
    redirect_uri: &str,
    state: Option<&str>,
    e: &RedirectError,
) -> Response<Body> {
    let mut params = vec![("error", e.error), ("error_description", e.description)];
    if let Some(st) = state {
        params.push(("state", st));
    }
    params.push(("iss", hub.issuer.as_str()));
    no_store(crate::signin::redirect(&with_query(redirect_uri, &params)))
}

#[cfg(test)]
mod tests;
