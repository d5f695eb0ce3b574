//! The knobs over HTTP, for people driving `wxgate mock-wechat` from other languages.
//! Parameters go in the query string; answers are `text/plain` or JSON.
//!
//! | request | effect |
//! |---|---|
//! | `POST /mock/inject?endpoint=E&errcode=N[&times=T]` | next T (default 1) calls to E answer errcode N |
//! | `POST /mock/latency?endpoint=E&ms=N` | calls to E wait N ms (0 = none) |
//! | `POST /mock/broken?endpoint=E&kind=K` | K: `html`, `garbage`, `http500`, `close_mid_body` |
//! | `POST /mock/clear[?endpoint=E]` | remove the knobs of E (or of every endpoint) |
//! | `GET /mock/calls[?endpoint=E]` | calls received: a number, or a JSON object of all |
//! | `POST /mock/code?user=U[&scope=S][&appid=A]` | a code as if U consented (text) |
//! | `POST /mock/expire_codes` | every issued code is now older than its lifetime |
//! | `POST /mock/expire_tokens` | every access token is now expired |
//! | `POST /mock/revoke?user=U` | U's refresh tokens are revoked (42007) |
//! | `GET /mock/users` | the test users with their openids and unionids (JSON) |
//! | `GET /mock/account_tokens` | every account token handed out: endpoint, expires_in, new, forced, ms_ago (JSON) |
//! | `POST /mock/expire_account_tokens` | every account token is now expired (42001) |
//! | `POST /mock/reset_quotas` | a new day for the daily quotas |
//! | `GET /mock/avatar/U.svg` | U's generated avatar |
//!
//! Endpoints E: `access_token`, `refresh_token`, `auth`, `userinfo`, `token`,
//! `stable_token`, `getticket`, `user_info`, `getcallbackip` (errcodes and broken
//! bodies), and `authorize`, `consent`, `qrconnect`, `qrconnect_confirm`,
//! `jssdk_verify` (latency and broken bodies).

use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::wire::{html_escape, parse_query};
use super::{Broken, MockWechat};
use crate::body::{full, Body};

fn reply(status: StatusCode, ctype: &'static str, body: String) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    reply(status, "text/plain; charset=utf-8", body.into())
}

fn bad(msg: &str) -> Response<Body> {
    text(StatusCode::BAD_REQUEST, format!("{msg}\n"))
}

pub(super) async fn handle(mock: MockWechat, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().trim_start_matches("/mock/").to_owned();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let param = |name: &str| super::wire::param(&query, name);
    let post = req.method() == Method::POST;
    let ok = || text(StatusCode::OK, "ok\n");
    if let Some(user) = path
        .strip_prefix("avatar/")
        .and_then(|p| p.strip_suffix(".svg"))
    {
        return avatar(&mock, user);
    }
    match (path.as_str(), post) {
        ("inject", true) => {
            let (Some(endpoint), Some(Ok(errcode))) =
                (param("endpoint"), param("errcode").map(str::parse::<i64>))
            else {
                return bad("need endpoint and a numeric errcode");
            };
            let Ok(times) = param("times").unwrap_or("1").parse::<u32>() else {
                return bad("times must be a number");
            };
            mock.inject(endpoint, errcode, times);
            ok()
        }
        ("latency", true) => {
            let (Some(endpoint), Some(Ok(ms))) =
                (param("endpoint"), param("ms").map(str::parse::<u64>))
            else {
                return bad("need endpoint and ms");
            };
            mock.set_latency(endpoint, Duration::from_millis(ms));
            ok()
        }
        ("broken", true) => {
            let (Some(endpoint), Some(Some(kind))) =
                (param("endpoint"), param("kind").map(Broken::parse))
            else {
                return bad("need endpoint and kind=html|garbage|http500|close_mid_body");
            };
            mock.set_broken(endpoint, kind);
            ok()
        }
        ("clear", true) => {
            mock.clear(param("endpoint"));
            ok()
        }
        ("calls", false) => match param("endpoint") {
            Some(e) => text(StatusCode::OK, format!("{}\n", mock.calls(e))),
            None => {
                let calls = mock.state().calls.clone();
                reply(StatusCode::OK, "application/json", json!(calls).to_string())
            }
        },
        ("code", true) => {
            let Some(user) = param("user") else {
                return bad("need user");
            };
            let scope = param("scope").unwrap_or("snsapi_base");
            let appid = param("appid").unwrap_or(&mock.config().appid);
            text(StatusCode::OK, mock.issue_code(user, scope, appid))
        }
        ("expire_codes", true) => {
            mock.expire_codes();
            ok()
        }
        ("expire_tokens", true) => {
            mock.expire_access_tokens();
            ok()
        }
        ("expire_account_tokens", true) => {
            mock.expire_account_tokens();
            ok()
        }
        ("reset_quotas", true) => {
            mock.reset_quotas();
            ok()
        }
        ("account_tokens", false) => {
            let now = std::time::Instant::now();
            let issues: Vec<_> = mock
                .token_issues()
                .iter()
                .map(|i| {
                    json!({
                        "endpoint": i.endpoint,
                        "expires_in": i.expires_in,
                        "new": i.new,
                        "forced": i.forced,
                        "ms_ago": now.duration_since(i.at).as_millis() as u64,
                    })
                })
                .collect();
            reply(
                StatusCode::OK,
                "application/json",
                json!(issues).to_string(),
            )
        }
        ("revoke", true) => {
            let Some(user) = param("user") else {
                return bad("need user");
            };
            mock.revoke_refresh_tokens(user);
            ok()
        }
        ("users", false) => {
            let c = mock.config();
            let users: Vec<_> = c
                .users
                .iter()
                .map(|u| {
                    json!({
                        "key": u.key,
                        "nickname": u.nickname,
                        "openid": mock.openid(&u.key, &c.appid),
                        "website_openid": mock.openid(&u.key, &c.website_appid),
                        "unionid": mock.unionid(&u.key),
                        "snapshot": u.snapshot,
                    })
                })
                .collect();
            reply(
                StatusCode::OK,
                "application/json",
                json!({"appid": c.appid, "website_appid": c.website_appid, "users": users})
                    .to_string(),
            )
        }
        (
            "inject"
            | "latency"
            | "broken"
            | "clear"
            | "code"
            | "expire_codes"
            | "expire_tokens"
            | "expire_account_tokens"
            | "reset_quotas"
            | "revoke",
            false,
        ) => text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n"),
        ("calls" | "users" | "account_tokens", true) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n")
        }
        _ => text(StatusCode::NOT_FOUND, "unknown knob; see GET /\n"),
    }
}

/// A round avatar with the nickname's first letter, so the demo shows a picture.
fn avatar(mock: &MockWechat, key: &str) -> Response<Body> {
    let Some(user) = mock.user(key) else {
        return text(StatusCode::NOT_FOUND, "no such user\n");
    };
    let initial: String = user.nickname.chars().take(1).collect();
    let hue = user
        .key
        .bytes()
        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32))
        % 360;
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"132\" height=\"132\" viewBox=\"0 0 132 132\">\
         <rect width=\"132\" height=\"132\" rx=\"12\" fill=\"hsl({hue},60%,55%)\"/>\
         <text x=\"66\" y=\"86\" font-size=\"60\" text-anchor=\"middle\" fill=\"#fff\" \
         font-family=\"sans-serif\">{}</text></svg>",
        html_escape(&initial)
    );
    reply(StatusCode::OK, "image/svg+xml", svg)
}
