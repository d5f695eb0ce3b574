//! The URLs wxgate answers itself: `/_wxgate/*` and WeChat's `MP_verify_*.txt` files.

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use std::net::IpAddr;

use http::{HeaderMap, Method, Response, StatusCode, Uri};
use tracing::{error, info, warn};

use super::{classify, redirect, state, Auth, AuthError};
use crate::admin::metrics::metrics;
use crate::body::{full, Body};
use crate::session::{now_unix, Session};
use crate::wechat::{ErrorKind, OAuthToken, WechatError};

/// Serves a `/_wxgate/*` request. `trusted`: the peer is in server.trusted_proxies.
pub async fn handle(
    auth: &Auth,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    trusted: bool,
    client: IpAddr,
) -> Response<Body> {
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let get_like = method == Method::GET || method == Method::HEAD;
    match path {
        "/_wxgate/start" if get_like => start(auth, query, headers, client).await,
        "/_wxgate/callback" if get_like => callback(auth, query, headers, client).await,
        "/_wxgate/sign_out" if get_like || method == Method::POST => {
            sign_out(auth, query, headers).await
        }
        "/_wxgate/userinfo" if get_like => userinfo(auth, headers).await,
        "/_wxgate/auth" => forward_auth(auth, headers, trusted).await,
        "/_wxgate/jwks.json" if get_like => {
            let doc = auth.signer.jwks();
            cached_json(headers, doc.body.clone(), &doc.etag)
        }
        "/_wxgate/.well-known/openid-configuration" if get_like => {
            let body = match &auth.hub {
                Some(hub) => hub.discovery(),
                None => auth.signer.openid_configuration(),
            };
            let etag = format!("\"{:x}\"", fxhash(&body));
            cached_json(headers, body, &etag)
        }
        "/_wxgate/jssdk/config" if get_like => {
            crate::account::jssdk::config(auth.account.as_ref(), query).await
        }
        "/_wxgate/jssdk.js" if get_like && auth.account.is_some() => {
            crate::account::jssdk::script(headers)
        }
        p if p.starts_with("/_wxgate/scan/") => {
            crate::desktop::handle(auth, method, uri, headers).await
        }
        "/_wxgate/start"
        | "/_wxgate/callback"
        | "/_wxgate/userinfo"
        | "/_wxgate/jwks.json"
        | "/_wxgate/sign_out"
        | "/_wxgate/jssdk/config"
        | "/_wxgate/.well-known/openid-configuration" => not_allowed(),
        _ => crate::pages::not_found(classify::wants_json(headers)),
    }
}

/// `GET /MP_verify_xxx.txt`: WeChat's domain ownership check.
pub fn verify_file(auth: &Auth, path: &str) -> Option<Response<Body>> {
    let name = path.strip_prefix('/')?;
    let content = auth.cfg.wechat.verify_files.get(name)?;
    let mut resp = Response::new(full(content.clone()));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Some(resp)
}

async fn start(auth: &Auth, query: &str, headers: &HeaderMap, client: IpAddr) -> Response<Body> {
    let rd = start_rd(query)
        .and_then(|rd| redirect::safe_return_path(&rd))
        .unwrap_or_else(|| "/".to_string());
    match auth.session_of(headers).await {
        Ok(Some(_)) => super::redirect(&rd),
        Ok(None) => auth.begin(headers, &rd, 0, client).await,
        Err(e) => e.response(classify::wants_json(headers), None),
    }
}

async fn callback(auth: &Auth, query: &str, headers: &HeaderMap, client: IpAddr) -> Response<Body> {
    let json = classify::wants_json(headers);
    let Some(state) = query_param(query, "state").filter(|s| state::is_valid_state(s)) else {
        metrics().signins.inc(&["bad_request"]);
        return AuthError::BadRequest(
            "回调中没有有效的 state 参数。",
            "The callback has no valid state.",
        )
        .response(json, Some(auth.start_url("/")));
    };
    // The state is checked before anything else, and before the code is redeemed.
    let Some(flow) = auth
        .flow_of(headers, &state)
        .filter(|f| !f.expired(now_unix()) || f.d)
    else {
        // A signed-in browser coming back to an old callback (back button, a refresh
        // after the completed flow was forgotten) goes home; the code is never redeemed,
        // so a planted callback cannot swap whose session this browser has.
        if let Ok(Some(_)) = auth.session_of(headers).await {
            metrics().signins.inc(&["repeat_callback"]);
            return auth.land("/");
        }
        metrics().signins.inc(&["state_mismatch"]);
        warn!("callback with a state this browser did not start (or an expired one)");
        return AuthError::StateMismatch.response(json, Some(auth.start_url("/")));
    };
    let flow_cookie = state::cookie_name(&auth.cfg.session.cookie_name, &state);
    let retry = Some(auth.start_url(&flow.rd));

    if flow.d {
        // A second callback for a completed flow: never redeem another code.
        return match auth.session_of(headers).await {
            Ok(Some(_)) => {
                metrics().signins.inc(&["repeat_callback"]);
                auth.land(&flow.rd)
            }
            Ok(None) => auth.begin(headers, &flow.rd, 1, client).await,
            Err(e) => e.response(json, None),
        };
    }

    let Some(code) = query_param(query, "code").filter(|c| !c.is_empty() && c.len() <= 512) else {
        // WeChat sends `?state=` without a code when the user refused.
        metrics().signins.inc(&["refused"]);
        let mut resp = AuthError::ConsentRefused.response(json, retry);
        auth.push_cookie(&mut resp, &auth.clear_cookie_value(&flow_cookie));
        return resp;
    };

    if let Some(hub) = &auth.hub_client {
        let result = match hub.finish(query, &code, &state).await {
            Ok(session) => establish(auth, headers, session).await,
            Err(e) => {
                warn!(error = %e, "sign-in through the hub failed");
                metrics().signins.inc(&[e.code()]);
                let mut resp = e.response(json, retry);
                auth.push_cookie(&mut resp, &auth.clear_cookie_value(&flow_cookie));
                return resp;
            }
        };
        return signed_in(auth, result, flow, &flow_cookie, json, retry);
    }

    let app = if flow.w {
        auth.website.as_ref().unwrap_or(&auth.app)
    } else {
        &auth.app
    };
    let token = match auth.wechat.exchange_code(app, &code).await {
        Ok(t) => t,
        Err(e) => return code_failed(auth, headers, &flow, &flow_cookie, e).await,
    };
    let result = complete(auth, headers, &token, app.appid.clone()).await;
    signed_in(auth, result, flow, &flow_cookie, json, retry)
}

/// The end of a callback: the browser lands with its new session, or gets the page.
fn signed_in(
    auth: &Auth,
    result: Result<(Session, String), AuthError>,
    flow: state::FlowState,
    flow_cookie: &str,
    json: bool,
    retry: Option<String>,
) -> Response<Body> {
    match result {
        Ok((session, cookie)) => {
            info!(openid = %session.openid, scope = %session.scope, "signed in");
            metrics().signins.inc(&["success"]);
            let mut resp = auth.land(&flow.rd);
            auth.push_cookie(&mut resp, &cookie);
            let done = state::FlowState { d: true, ..flow };
            auth.push_cookie(
                &mut resp,
                &auth.flow_cookie(flow_cookie, &done, state::DONE_TTL_SECS),
            );
            resp
        }
        Err(e) => {
            metrics().signins.inc(&[e.code()]);
            let mut resp = e.response(json, retry);
            auth.push_cookie(&mut resp, &auth.clear_cookie_value(flow_cookie));
            resp
        }
    }
}

/// What to do when WeChat refuses a code (WECHAT.md's table).
async fn code_failed(
    auth: &Auth,
    headers: &HeaderMap,
    flow: &state::FlowState,
    flow_cookie: &str,
    e: WechatError,
) -> Response<Body> {
    let json = classify::wants_json(headers);
    let retry = Some(auth.start_url(&flow.rd));
    let fresh = |auth: &Auth| {
        // One fresh authorization per flow, then a page: never a loop.
        let mut resp = auth.authorize_redirect(headers, &flow.rd, flow.r + 1, flow.w);
        auth.push_cookie(&mut resp, &auth.clear_cookie_value(flow_cookie));
        resp
    };
    let outcome = match e.kind() {
        ErrorKind::CodeUsed => match auth.session_of(headers).await {
            Ok(Some(_)) => {
                metrics().signins.inc(&["repeat_callback"]);
                return auth.land(&flow.rd);
            }
            _ if flow.r == 0 => {
                metrics().signins.inc(&["fresh_authorization"]);
                return fresh(auth);
            }
            _ => AuthError::CodeRejected,
        },
        ErrorKind::InvalidCode | ErrorKind::CodeExpired if flow.r == 0 => {
            metrics().signins.inc(&["fresh_authorization"]);
            return fresh(auth);
        }
        ErrorKind::InvalidCode | ErrorKind::CodeExpired => AuthError::CodeRejected,
        ErrorKind::Busy => AuthError::WechatBusy,
        ErrorKind::Quota => {
            error!(error = %e, rid = e.rid().unwrap_or(""), "WeChat API quota reached: sign-ins fail until it resets");
            AuthError::WechatQuota
        }
        ErrorKind::Misconfigured => {
            error!(error = %e, rid = e.rid().unwrap_or(""), "WeChat refused the credentials: check wechat.secret / wechat.appid");
            AuthError::Misconfigured
        }
        ErrorKind::Unavailable => AuthError::WechatUnavailable,
        _ => AuthError::WechatOther,
    };
    metrics().signins.inc(&[outcome.code()]);
    let mut resp = outcome.response(json, retry);
    auth.push_cookie(&mut resp, &auth.clear_cookie_value(flow_cookie));
    resp
}

/// Turns WeChat's token into a session: snapshot users refused, profile fetched for
/// snsapi_userinfo, allowed_openids enforced, the browser's previous session ended.
async fn complete(
    auth: &Auth,
    headers: &HeaderMap,
    token: &OAuthToken,
    appid: String,
) -> Result<(Session, String), AuthError> {
    if token.is_snapshotuser {
        return Err(AuthError::SnapshotUser);
    }
    let userinfo_scope = token.scopes.iter().any(|s| s == "snsapi_userinfo")
        || (auth.cfg.wechat.scope == crate::config::Scope::UserInfo && token.scopes.is_empty());
    let scope = if userinfo_scope {
        crate::config::Scope::UserInfo
    } else {
        crate::config::Scope::Base
    };
    let mut session = Session {
        unionid: token.unionid.clone(),
        ..Session::new(appid, token.openid.clone(), scope)
    };
    if userinfo_scope {
        let info = auth
            .wechat
            .userinfo(&token.access_token, &token.openid, &auth.cfg.wechat.lang)
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::Unavailable => AuthError::WechatUnavailable,
                ErrorKind::Busy => AuthError::WechatBusy,
                ErrorKind::Quota => AuthError::WechatQuota,
                _ => AuthError::WechatOther,
            })?;
        session.nickname = Some(info.nickname);
        session.headimgurl = Some(info.headimgurl).filter(|s| !s.is_empty());
        session.unionid = session.unionid.or(info.unionid);
        session.access_token = Some(token.access_token.clone());
        session.refresh_token = Some(token.refresh_token.clone());
    }
    establish(auth, headers, session).await
}

/// A verified user becomes a session: allowed_openids enforced, the browser's previous
/// session ended, a new one stored.
async fn establish(
    auth: &Auth,
    headers: &HeaderMap,
    session: Session,
) -> Result<(Session, String), AuthError> {
    if !auth.is_allowed(&session.openid) {
        warn!(openid = %session.openid, "sign-in refused: not in access.allowed_openids");
        return Err(AuthError::NotAllowed);
    }
    // Fixation defence: whatever session this browser had ends; the new one has a new id.
    if let Ok(Some((old, ticket))) = auth.session_of(headers).await {
        let _ = auth.store.delete(&ticket, &old).await;
    }
    auth.create_session(session).await.map_err(|e| {
        warn!(error = %e, "could not store a new session");
        AuthError::StoreUnavailable
    })
}

async fn sign_out(auth: &Auth, query: &str, headers: &HeaderMap) -> Response<Body> {
    let rd = query_param(query, "rd").and_then(|rd| redirect::safe_return_path(&rd));
    let mut ended = false;
    let name = &auth.cfg.session.cookie_name;
    for sealed in crate::session::cookie_values(headers, name) {
        let Some(ticket) = auth.codec.open(name, sealed) else {
            continue;
        };
        match auth.store.load(&ticket).await {
            Ok(Some(s)) => {
                if let Err(e) = auth.store.delete(&ticket, &s).await {
                    warn!(error = %e, "sign-out could not reach the session store");
                    return AuthError::StoreUnavailable
                        .response(classify::wants_json(headers), None);
                }
                metrics().sessions_ended.inc(&["sign_out"]);
                ended = true;
            }
            Ok(None) => {}
            Err(_) => {
                return AuthError::StoreUnavailable.response(classify::wants_json(headers), None)
            }
        }
    }
    let mut resp = match rd {
        Some(rd) => super::redirect(&rd),
        None => signed_out_page(ended, classify::wants_json(headers)),
    };
    auth.push_cookie(&mut resp, &auth.clear_cookie_value(name));
    resp
}

async fn userinfo(auth: &Auth, headers: &HeaderMap) -> Response<Body> {
    match auth.session_of(headers).await {
        Ok(Some((s, _))) => {
            let extra = auth.identity_extra(&s).await;
            crate::pages::json_response(StatusCode::OK, &auth.signer.claims_with(&s, &extra))
        }
        Ok(None) => auth.unauthorized_json("/"),
        Err(e) => e.response(true, None),
    }
}

/// Forward-auth for nginx `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`.
async fn forward_auth(auth: &Auth, headers: &HeaderMap, trusted: bool) -> Response<Body> {
    let rd = if trusted {
        original_path(headers)
    } else {
        None
    }
    .unwrap_or_else(|| "/".to_string());
    match auth.session_of(headers).await {
        Ok(Some((s, _))) if auth.is_allowed(&s.openid) => {
            let mut resp = Response::new(crate::body::empty());
            *resp.status_mut() = StatusCode::ACCEPTED;
            if let Err(e) = auth.attach_identity(resp.headers_mut(), &s).await {
                return e.response(true, None);
            }
            for (n, v) in super::plain_headers(&s, "x-auth-request-") {
                resp.headers_mut().insert(n, v);
            }
            resp
        }
        Ok(Some(_)) => AuthError::NotAllowed.response(classify::wants_json(headers), None),
        Ok(None) if classify::wants_json(headers) => auth.unauthorized_json(&rd),
        // Traefik and Caddy show the auth service's non-2xx answer to the browser as is:
        // a page that moves on to the sign-in by itself. nginx ignores this body and
        // redirects through its own `error_page 401`.
        Ok(None) => sign_in_page(&auth.start_url(&rd)),
        Err(e) => e.response(classify::wants_json(headers), None),
    }
}

/// After a sign-out without somewhere to go.
pub(crate) fn signed_out_page(ended: bool, json: bool) -> Response<Body> {
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
        json,
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
        true,
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

/// A query parameter, percent-decoded ('+' is a space, as in forms). First one wins.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != name {
            return None;
        }
        let v = v.replace('+', " ");
        percent_encoding::percent_decode_str(&v)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    })
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
    fn query_params_are_decoded_once() {
        let q = "rd=%2Fa%3Fb%3D1&code=abc&state=S&x=a+b&rd=/second";
        assert_eq!(query_param(q, "rd").as_deref(), Some("/a?b=1"));
        assert_eq!(query_param(q, "code").as_deref(), Some("abc"));
        assert_eq!(query_param(q, "x").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param("rd=%252F", "rd").as_deref(), Some("%2F"));
    }

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
