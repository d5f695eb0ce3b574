//! The URLs wxgate answers itself: `/_wxgate/*` and WeChat's `MP_verify_*.txt` files.
//! The shared callback checks the state and the flow, hands the proof to the method
//! that started the flow, and turns what it verified into a session.

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use std::net::IpAddr;

use http::{HeaderMap, Method, Response, StatusCode, Uri};
use tracing::{info, warn};

use super::gate::SignIn;
use super::methods::Methods;
use super::{redirect, state, Browser, Callback, OwnRequest, RouteNeeds, SignInError};
use crate::body::{full, Body};
use crate::config::{Access, Scope};
use crate::metrics::metrics;
use crate::pages::Reply;
use crate::query::param as query_param;
use crate::session::now_unix;

/// Serves a `/_wxgate/*` request. `trusted`: the peer is in server.trusted_proxies.
/// `forwarded`: for forward-auth, what the route of the request asked about needs.
pub async fn handle(
    signin: &SignIn,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    trusted: bool,
    client: IpAddr,
    forwarded: &RouteNeeds<'_>,
) -> Response<Body> {
    let core = &signin.core;
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let get_like = method == Method::GET || method == Method::HEAD;
    let browser = Browser::of(headers, client);
    match path {
        "/_wxgate/start" if get_like => start(signin, query, &browser).await,
        "/_wxgate/callback" if get_like => callback(signin, query, &browser).await,
        "/_wxgate/sign_out" if get_like || method == Method::POST => {
            sign_out(signin, query, headers).await
        }
        "/_wxgate/userinfo" if get_like => userinfo(signin, headers).await,
        "/_wxgate/auth" => forward_auth(signin, headers, trusted, forwarded).await,
        "/_wxgate/jwks.json" if get_like => {
            let doc = core.signer.jwks();
            cached_json(headers, doc.body.clone(), &doc.etag)
        }
        "/_wxgate/.well-known/openid-configuration" if get_like => {
            let body = core.signer.openid_configuration();
            let etag = format!("\"{:x}\"", fxhash(&body));
            cached_json(headers, body, &etag)
        }
        "/_wxgate/jssdk/config" if get_like => {
            crate::account::jssdk::config(core.account.as_ref(), query).await
        }
        "/_wxgate/jssdk.js" if get_like && core.account.is_some() => {
            crate::account::jssdk::script(headers)
        }
        "/_wxgate/start"
        | "/_wxgate/callback"
        | "/_wxgate/userinfo"
        | "/_wxgate/jwks.json"
        | "/_wxgate/sign_out"
        | "/_wxgate/jssdk/config"
        | "/_wxgate/.well-known/openid-configuration" => not_allowed(),
        p => match signin.methods.owner_of(p) {
            Some(id) => {
                let req = OwnRequest {
                    method,
                    uri,
                    browser: &browser,
                };
                signin.methods.serve(id, core, &req).await
            }
            None => crate::pages::not_found(browser.reply),
        },
    }
}

/// `GET /MP_verify_xxx.txt`: WeChat's domain ownership check.
pub fn verify_file(signin: &SignIn, path: &str) -> Option<Response<Body>> {
    let name = path.strip_prefix('/')?;
    let cfg = &signin.core.cfg;
    let content = match &cfg.wecom {
        Some(w) => w.verify_files.get(name)?,
        None => cfg.wechat.verify_files.get(name)?,
    };
    let mut resp = Response::new(full(content.clone()));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Some(resp)
}

async fn start(signin: &SignIn, query: &str, browser: &Browser<'_>) -> Response<Body> {
    let (query, scope) = split_scope(query);
    let rd = start_rd(query)
        .and_then(|rd| redirect::safe_return_path(&rd))
        .unwrap_or_else(|| "/".to_string());
    let default = RouteNeeds::of(signin.core.cfg());
    match signin.core.session_of(browser.headers).await {
        // `scope=snsapi_userinfo` asks for the profile even with a base session.
        Ok(Some((s, _)))
            if scope == Some(Scope::UserInfo)
                && s.scope != Scope::UserInfo
                && s.idp.can_ask_for_profile() =>
        {
            signin.escalate(browser, &rd, Scope::UserInfo).await
        }
        Ok(Some(_)) => super::redirect(&rd),
        Ok(None) => {
            let route = RouteNeeds {
                scope: scope.unwrap_or(default.scope),
                ..default
            };
            signin.begin_for(browser, &rd, 0, &route).await
        }
        Err(e) => e.response(browser.reply, None),
    }
}

/// `&scope=` at the end of a start URL (or `scope=` first), taken off before `rd`,
/// which may be written unencoded and then takes the rest of the query.
fn split_scope(query: &str) -> (&str, Option<Scope>) {
    for scope in [Scope::UserInfo, Scope::Base] {
        let name = scope.as_str();
        if let Some(rest) = query.strip_suffix(&format!("&scope={name}")) {
            return (rest, Some(scope));
        }
        if let Some(rest) = query.strip_prefix(&format!("scope={name}&")) {
            return (rest, Some(scope));
        }
        if query == format!("scope={name}") {
            return ("", Some(scope));
        }
    }
    (query, None)
}

async fn callback(signin: &SignIn, query: &str, browser: &Browser<'_>) -> Response<Body> {
    let core = &signin.core;
    let (headers, reply) = (browser.headers, browser.reply);
    let Some(state) = query_param(query, "state").filter(|s| state::is_valid_state(s)) else {
        metrics()
            .signins
            .inc(crate::metrics::labels::Signin::BadRequest);
        return SignInError::BadRequest(
            "回调中没有有效的 state 参数。",
            "The callback has no valid state.",
        )
        .response(reply, Some(core.start_url("/")));
    };
    // The state is checked before anything else, and before the code is redeemed.
    let Some((flow, id)) = core
        .flow_of(headers, &state)
        .filter(|f| !f.expired(now_unix()) || f.d)
        .and_then(|f| Methods::of_flow(&f).map(|id| (f, id)))
    else {
        // A signed-in browser coming back to an old callback (back button, a refresh
        // after the completed flow was forgotten) goes home; the code is never redeemed,
        // so a planted callback cannot swap whose session this browser has.
        if let Ok(Some(_)) = core.session_of(headers).await {
            metrics()
                .signins
                .inc(crate::metrics::labels::Signin::RepeatCallback);
            return core.land("/");
        }
        metrics()
            .signins
            .inc(crate::metrics::labels::Signin::StateMismatch);
        warn!("callback with a state this browser did not start (or an expired one)");
        return SignInError::StateMismatch.response(reply, Some(core.start_url("/")));
    };
    let flow_cookie = state::cookie_name(&core.cfg.session.cookie_name, &state);
    let retry = Some(core.start_url(&flow.rd));
    let refused = |e: &SignInError| {
        metrics().signins.inc(e.outcome());
        let mut resp = e.response(reply, retry.clone());
        core.push_cookie(&mut resp, &core.clear_cookie_value(&flow_cookie));
        resp
    };

    if flow.d {
        // A second callback for a completed flow: never redeem another code.
        return match core.session_of(headers).await {
            Ok(Some(_)) => {
                metrics()
                    .signins
                    .inc(crate::metrics::labels::Signin::RepeatCallback);
                core.land(&flow.rd)
            }
            Ok(None) => signin.begin(browser, &flow.rd, 1).await,
            Err(e) => e.response(reply, None),
        };
    }

    let Some(code) = query_param(query, "code").filter(|c| !c.is_empty() && c.len() <= 512) else {
        // WeChat sends `?state=` without a code when the user refused.
        metrics()
            .signins
            .inc(crate::metrics::labels::Signin::Refused);
        // Asked for the profile on top of a session: the session stays, and a page
        // says what is missing (its link asks again only if the user chooses to).
        let (refusal, retry) = match (flow.s, core.session_of(headers).await) {
            (Some(Scope::UserInfo), Ok(Some(_))) => (
                SignInError::ProfileRefused,
                Some(core.start_url_scoped(&flow.rd, flow.s)),
            ),
            _ => (SignInError::ConsentRefused, retry.clone()),
        };
        let mut resp = refusal.response(reply, retry);
        core.push_cookie(&mut resp, &core.clear_cookie_value(&flow_cookie));
        return resp;
    };

    let cb = Callback {
        browser,
        query,
        code: &code,
        flow: &flow,
    };
    let verified = match signin.methods.finish(id, core, &cb).await {
        Ok(v) => v,
        Err(e @ (SignInError::CodeUsed | SignInError::CodeStale)) => {
            // A code a second callback already redeemed: this browser may be signed in.
            if matches!(e, SignInError::CodeUsed) {
                if let Ok(Some(_)) = core.session_of(headers).await {
                    metrics()
                        .signins
                        .inc(crate::metrics::labels::Signin::RepeatCallback);
                    return core.land(&flow.rd);
                }
            }
            if flow.r > 0 {
                return refused(&SignInError::CodeRejected);
            }
            // One fresh start per flow, then a page: never a loop.
            metrics()
                .signins
                .inc(crate::metrics::labels::Signin::FreshAuthorization);
            let scope = flow.s.unwrap_or(RouteNeeds::of(&core.cfg).scope);
            let mut resp = signin.start(id, browser, &flow.rd, flow.r + 1, scope).await;
            core.push_cookie(&mut resp, &core.clear_cookie_value(&flow_cookie));
            return resp;
        }
        Err(e) => return refused(&e),
    };
    // Asked for the profile on top of a session and given less (a hub that may not
    // give this app the profile): the session stays and a page says what is missing,
    // as when the user declines it at WeChat. Landing would ask again: a loop.
    if flow.s == Some(Scope::UserInfo) && verified.scope != Scope::UserInfo {
        if let Ok(Some(_)) = core.session_of(headers).await {
            return refused(&SignInError::ProfileRefused);
        }
    }
    match core.establish(headers, verified).await {
        Ok((session, cookie)) => {
            info!(openid = %session.openid, scope = %session.scope, "signed in");
            metrics()
                .signins
                .inc(crate::metrics::labels::Signin::Success);
            let mut resp = core.land(&flow.rd);
            core.push_cookie(&mut resp, &cookie);
            let done = state::FlowState { d: true, ..flow };
            core.push_cookie(
                &mut resp,
                &core.flow_cookie(&flow_cookie, &done, state::DONE_TTL_SECS),
            );
            resp
        }
        Err(e) => refused(&e),
    }
}

async fn sign_out(signin: &SignIn, query: &str, headers: &HeaderMap) -> Response<Body> {
    let core = &signin.core;
    let reply = Reply::of(headers);
    let rd = query_param(query, "rd").and_then(|rd| redirect::safe_return_path(&rd));
    let mut ended = false;
    let name = &core.cfg.session.cookie_name;
    for sealed in crate::session::cookie_values(headers, name) {
        let Some(ticket) = core.codec.open(name, sealed) else {
            continue;
        };
        match core.store.load(&ticket).await {
            Ok(Some(s)) => {
                if let Err(e) = core.store.delete(&ticket, &s).await {
                    warn!(error = %e, "sign-out could not reach the session store");
                    return SignInError::StoreUnavailable.response(reply, None);
                }
                metrics()
                    .sessions_ended
                    .inc(crate::metrics::labels::SessionEnded::SignOut);
                ended = true;
            }
            Ok(None) => {}
            Err(_) => return SignInError::StoreUnavailable.response(reply, None),
        }
    }
    let mut resp = match rd {
        Some(rd) => super::redirect(&rd),
        None => signed_out_page(ended, reply),
    };
    core.push_cookie(&mut resp, &core.clear_cookie_value(name));
    resp
}

async fn userinfo(signin: &SignIn, headers: &HeaderMap) -> Response<Body> {
    let core = &signin.core;
    match core.session_of(headers).await {
        Ok(Some((s, _))) => {
            let extra = core.identity_extra(&s).await;
            crate::pages::json_response(StatusCode::OK, &core.signer.claims_with(&s, &extra))
        }
        Ok(None) => core.unauthorized_json("/"),
        Err(e) => e.response(Reply::Json, None),
    }
}

/// Forward-auth for nginx `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`,
/// as the route of the original request says (its access, allowlist and audience).
async fn forward_auth(
    signin: &SignIn,
    headers: &HeaderMap,
    trusted: bool,
    route: &RouteNeeds<'_>,
) -> Response<Body> {
    let core = &signin.core;
    let reply = match route.access {
        Access::Api => Reply::Json,
        _ => Reply::of(headers),
    };
    let rd = if trusted {
        original_path(headers)
    } else {
        None
    }
    .unwrap_or_else(|| "/".to_string());
    let public = route.access == Access::Public;
    let session = match core.session_of(headers).await {
        // The rules of now, on this route: a public route serves a session it does not
        // admit anonymously.
        Ok(s) => s
            .map(|(s, _)| {
                let admitted = core.admits(&s, route);
                (s, admitted)
            })
            .filter(|(_, admitted)| !public || admitted.is_ok()),
        // A public route is served whatever the store says.
        Err(_) if public => None,
        Err(e) => return e.response(reply, None),
    };
    match session {
        // A route needing the profile, a WeChat session without it: as the gate does.
        Some((s, Ok(())))
            if !public
                && route.requires == Some(Scope::UserInfo)
                && s.scope != Scope::UserInfo
                && s.idp.can_ask_for_profile() =>
        {
            if reply.is_json() {
                core.scope_required_json(&rd, Scope::UserInfo)
            } else {
                sign_in_page(&core.start_url_scoped(&rd, Some(Scope::UserInfo)))
            }
        }
        Some((s, Ok(()))) => {
            let mut resp = Response::new(crate::body::empty());
            *resp.status_mut() = StatusCode::ACCEPTED;
            if let Err(e) = core
                .attach_identity(resp.headers_mut(), &s, route.audience)
                .await
            {
                return e.response(Reply::Json, None);
            }
            for (n, v) in super::plain_headers(&s, "x-auth-request-") {
                resp.headers_mut().insert(n, v);
            }
            resp
        }
        Some((_, Err(refused))) => refused.response(reply, None),
        None if public => {
            let mut resp = Response::new(crate::body::empty());
            *resp.status_mut() = StatusCode::ACCEPTED;
            resp
        }
        None if reply.is_json() => core.unauthorized_json(&rd),
        // Traefik and Caddy show the auth service's non-2xx answer to the browser as is:
        // a page that moves on to the sign-in by itself. nginx ignores this body and
        // redirects through its own `error_page 401`.
        None => sign_in_page(&core.start_url(&rd)),
    }
}

/// The original request forward-auth asks about, as its ingress reports it: its host
/// (`X-Forwarded-Host`, or an absolute `X-Original-URL`'s) and its normalised path.
/// Only asked of trusted peers.
pub fn original_request(headers: &HeaderMap) -> Option<(Option<String>, String)> {
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let path = original_path(headers)?;
    let path = super::paths::normalize_path(&path)?;
    // A chain of proxies appends: the first is what the client asked for.
    let host = match get("x-forwarded-host") {
        Some(h) => h.split(',').next().map(|h| h.trim().to_string()),
        None => get("x-original-url")
            .and_then(|u| u.parse::<Uri>().ok())
            .and_then(|u| u.authority().map(|a| a.as_str().to_string())),
    };
    Some((host, path))
}

/// After a sign-out without somewhere to go.
pub(crate) fn signed_out_page(ended: bool, reply: Reply) -> Response<Body> {
    let (detail_zh, detail) = if ended {
        ("您的会话已结束。", "Your session has ended.")
    } else {
        ("没有需要结束的会话。", "There was no session to end.")
    };
    crate::pages::respond(
        &crate::pages::Notice {
            status: StatusCode::OK,
            code: "signed_out",
            title_zh: "您已退出登录",
            title_en: "You are signed out",
            detail_zh: detail_zh.into(),
            detail: detail.into(),
            retry: Some("/".into()),
        },
        reply,
    )
}

pub(crate) fn sign_in_page(start: &str) -> Response<Body> {
    crate::pages::moving_on(
        StatusCode::UNAUTHORIZED,
        "请先登录",
        "Sign-in required",
        "用微信登录 · Sign in with WeChat",
        start,
    )
}

/// The original request's path and query as an ingress reports it, validated like any `rd`.
pub fn original_path(headers: &HeaderMap) -> Option<String> {
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    };
    let raw = get("x-original-url").or_else(|| get("x-forwarded-uri"))?;
    // X-Original-URL may be absolute ("https://host/path?q"); keep only path and query.
    let path = match raw.parse::<Uri>() {
        Ok(u) if u.scheme().is_some() => u.path_and_query().map(|p| p.as_str().to_string())?,
        _ => raw.to_string(),
    };
    redirect::safe_return_path(&path)
}

fn cached_json(headers: &HeaderMap, body: bytes::Bytes, etag: &str) -> Response<Body> {
    let matches = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if matches {
        let mut r = Response::new(crate::body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(full(body));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    };
    resp.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        resp.headers_mut().insert(ETAG, v);
    }
    resp
}

fn not_allowed() -> Response<Body> {
    let mut resp = crate::pages::respond(
        &crate::pages::Notice {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            title_zh: "请求方法不支持",
            title_en: "Method not allowed",
            detail_zh: "请使用 GET。".into(),
            detail: "Use GET.".into(),
            retry: None,
        },
        Reply::Json,
    );
    resp.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    resp
}

/// `rd` of `/_wxgate/start`. Plain nginx can only write `?rd=$request_uri`, unencoded, so
/// `/a?x=1&y=2` arrives as `rd=/a?x=1&y=2`: when `rd` comes first, the whole rest of the
/// query is its value (start takes no other parameter).
fn start_rd(query: &str) -> Option<String> {
    match query.strip_prefix("rd=") {
        Some(rest) => percent_encoding::percent_decode_str(&rest.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned()),
        None => query_param(query, "rd"),
    }
}

fn fxhash(b: &[u8]) -> u64 {
    // FNV-1a: an ETag only needs to change when the body does.
    b.iter().fold(0xcbf29ce484222325u64, |h, x| {
        (h ^ *x as u64).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_takes_an_unencoded_rd_whole() {
        assert_eq!(start_rd("rd=/a?x=1&y=2").as_deref(), Some("/a?x=1&y=2"));
        assert_eq!(
            start_rd("rd=%2Fa%3Fx%3D1%26y%3D2").as_deref(),
            Some("/a?x=1&y=2")
        );
        assert_eq!(start_rd("x=1&rd=/b").as_deref(), Some("/b"));
        assert_eq!(start_rd(""), None);
    }

    #[test]
    fn the_original_url_comes_from_ingress_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-original-url",
            HeaderValue::from_static("https://app.example.com/a/b?c=1"),
        );
        assert_eq!(original_path(&h).as_deref(), Some("/a/b?c=1"));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-uri", HeaderValue::from_static("/x?y"));
        assert_eq!(original_path(&h).as_deref(), Some("/x?y"));
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-uri",
            HeaderValue::from_static("//evil.example/"),
        );
        assert_eq!(original_path(&h), None);
    }
}
