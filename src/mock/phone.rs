//! `/mock/phone`: a stand-in for WeChat's in-app browser, so a desktop browser can play
//! the phone side of wxgate's scan-to-sign-in in the demo.
//!
//! `GET /mock/phone?url=<scan URL>&user=<test user>` fetches the scan URL server-side
//! with a WeChat User-Agent and its own cookie jar, answers the authorize link for the
//! chosen test user (as if they consented), follows the callback back to the scan URL
//! and shows wxgate's confirmation page with its forms pointed at
//! `POST /mock/phone/submit`, which replays them with the same jar. The jar travels in
//! the form's URL: this is a demo tool with no state of its own.

use http::{header, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;

use super::wire::{callback_location, check_link, html_escape, parse_query};
use super::{LinkKind, MockWechat};
use crate::body::Body;

/// WeChat 8 on an iPhone, as the scanning phone.
pub const PHONE_USER_AGENT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) \
AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x18002c2d) \
NetType/WIFI Language/zh_CN";

/// Redirects followed at most (scan → authorize → callback → scan is three).
const MAX_HOPS: usize = 8;

const ENC: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, ENC).to_string()
}

fn page(status: StatusCode, body: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>模拟手机 · Mock phone</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:28em;margin:2em auto;padding:0 1em}}\
.note{{color:#888;font-size:.85em}}</style></head><body>{body}\
<p class=\"note\">模拟微信：模拟的手机 · Mock WeChat: simulated phone</p></body></html>"
    );
    crate::pages::html_response(status, html)
}

// The phone's own pages, named so that every one of them can be rendered in a test.
const START: &str =
    "<h1>模拟手机</h1><h2>Simulated phone</h2><form method=\"get\" action=\"/mock/phone\">\
<p><input name=\"url\" size=\"50\" placeholder=\"http://…/_wxgate/scan/s/…\"></p>\
<p><button>扫码 · Scan</button></p></form>";
const NOT_A_SCAN_URL: &str = "<h1>不是 wxgate 的扫码地址</h1><h2>Not a wxgate scan URL</h2>";
const NO_CLIENT: &str = "<h1>无法创建 HTTP 客户端</h1><h2>No HTTP client</h2>";
const TOO_MANY_REDIRECTS: &str = "<h1>重定向次数过多</h1><h2>Too many redirects</h2>";
const POST_ONLY: &str = "<h1>只接受 POST</h1><h2>POST only</h2>";
const NO_TARGET: &str = "<h1>缺少目标地址</h1><h2>No target</h2>";

fn unreachable(e: &reqwest::Error) -> Response<Body> {
    page(
        StatusCode::BAD_GATEWAY,
        &format!(
            "<h1>无法连接 wxgate</h1><h2>Could not reach wxgate</h2><p class=\"code\" translate=\"no\">{}</p>",
            html_escape(&e.to_string())
        ),
    )
}

fn refused(r: super::Refusal) -> Response<Body> {
    page(
        StatusCode::BAD_GATEWAY,
        &format!(
            "<h1>{}</h1><h2>{}</h2>",
            html_escape(r.message()),
            html_escape(r.message_en())
        ),
    )
}

fn which_user(links: &str) -> Response<Body> {
    page(
        StatusCode::OK,
        &format!(
            "<h1>用哪个微信用户扫码？</h1><h2>Scan as which WeChat user?</h2><ul>{links}</ul>"
        ),
    )
}

/// Every page of the simulated phone, for the test that reads them all.
#[cfg(test)]
pub(crate) fn every_page(links: &str) -> Vec<(&'static str, Response<Body>)> {
    vec![
        ("phone start", page(StatusCode::OK, START)),
        (
            "phone not a scan url",
            page(StatusCode::BAD_REQUEST, NOT_A_SCAN_URL),
        ),
        (
            "phone no client",
            page(StatusCode::INTERNAL_SERVER_ERROR, NO_CLIENT),
        ),
        (
            "phone too many redirects",
            page(StatusCode::LOOP_DETECTED, TOO_MANY_REDIRECTS),
        ),
        (
            "phone post only",
            page(StatusCode::METHOD_NOT_ALLOWED, POST_ONLY),
        ),
        ("phone no target", page(StatusCode::BAD_REQUEST, NO_TARGET)),
        ("phone refused", refused(super::Refusal::RedirectDomain)),
        ("phone which user", which_user(links)),
    ]
}

fn param(query: &[(String, String)], name: &str) -> Option<String> {
    super::wire::param(query, name).map(str::to_string)
}

/// Only wxgate scan URLs over http(s): the mock fetches nothing else on anyone's behalf.
fn scan_url_ok(url: &str) -> Option<Uri> {
    let u: Uri = url.parse().ok()?;
    let scheme_ok = matches!(u.scheme_str(), Some("http") | Some("https"));
    (scheme_ok && u.host().is_some() && u.path().starts_with("/_wxgate/scan/")).then_some(u)
}

fn origin(u: &Uri) -> String {
    format!(
        "{}://{}",
        u.scheme_str().unwrap_or("http"),
        u.authority().map(|a| a.as_str()).unwrap_or_default()
    )
}

fn client() -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .ok()
}

/// name=value pairs, as a Cookie header carries them.
fn jar_header(jar: &[(String, String)]) -> String {
    jar.iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn parse_jar(s: &str) -> Vec<(String, String)> {
    s.split(';')
        .filter_map(|p| {
            let (n, v) = p.split_once('=')?;
            Some((n.trim().to_string(), v.trim().to_string()))
        })
        .filter(|(n, _)| !n.is_empty())
        .collect()
}

fn absorb(jar: &mut Vec<(String, String)>, resp: &reqwest::Response) {
    for sc in resp.headers().get_all(header::SET_COOKIE) {
        let Ok(sc) = sc.to_str() else { continue };
        let first = sc.split(';').next().unwrap_or_default();
        let Some((n, v)) = first.split_once('=') else {
            continue;
        };
        let (n, v) = (n.trim().to_string(), v.trim().to_string());
        let expired = sc.to_ascii_lowercase().contains("max-age=0");
        jar.retain(|(k, _)| *k != n);
        if !expired && !v.is_empty() {
            jar.push((n, v));
        }
    }
}

/// `GET /mock/phone`.
pub(super) async fn scan(mock: MockWechat, req: Request<Incoming>) -> Response<Body> {
    let query = parse_query(req.uri().query().unwrap_or(""));
    let Some(url) = param(&query, "url") else {
        return page(StatusCode::OK, START);
    };
    let Some(scan_uri) = scan_url_ok(&url) else {
        return page(StatusCode::BAD_REQUEST, NOT_A_SCAN_URL);
    };
    let Some(user) = param(&query, "user").filter(|u| mock.user(u).is_some()) else {
        let mut links = String::new();
        for u in &mock.config().users {
            links.push_str(&format!(
                "<li><a href=\"/mock/phone?url={}&amp;user={}\" translate=\"no\">{}</a> <span class=\"note\" translate=\"no\">{}</span></li>",
                enc(&url),
                enc(&u.key),
                html_escape(&u.nickname),
                html_escape(&u.key)
            ));
        }
        return which_user(&links);
    };
    let Some(client) = client() else {
        return page(StatusCode::INTERNAL_SERVER_ERROR, NO_CLIENT);
    };
    let mut jar: Vec<(String, String)> = Vec::new();
    let mut next = url.clone();
    for _ in 0..MAX_HOPS {
        let Ok(next_uri) = next.parse::<Uri>() else {
            break;
        };
        if next_uri.path() == "/connect/oauth2/authorize" {
            // The phone's WeChat consents for the chosen user.
            let link = match check_link(
                next_uri.query().unwrap_or(""),
                LinkKind::OAuth2,
                mock.config(),
            ) {
                Ok(l) => l,
                Err(r) => return refused(r),
            };
            let code = mock.issue_code(&user, &link.scope, &link.appid);
            next = callback_location(&link.redirect_uri, Some(&code), &link.state);
            continue;
        }
        let resp = match client
            .get(&next)
            .header(header::USER_AGENT, PHONE_USER_AGENT)
            .header(header::COOKIE, jar_header(&jar))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return unreachable(&e),
        };
        absorb(&mut jar, &resp);
        if resp.status().is_redirection() {
            let Some(loc) = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                break;
            };
            // Same-origin relative redirects are resolved against the scan URL's origin.
            next = if loc.starts_with('/') {
                format!("{}{loc}", origin(&scan_uri))
            } else {
                loc.split('#').next().unwrap_or_default().to_string()
            };
            continue;
        }
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::OK);
        let body = resp.text().await.unwrap_or_default();
        return page_through(status, &body, &origin(&scan_uri), &jar);
    }
    page(StatusCode::LOOP_DETECTED, TOO_MANY_REDIRECTS)
}

/// wxgate's page with each form's `action` sent through `/mock/phone/submit`.
fn page_through(
    status: StatusCode,
    body: &str,
    origin: &str,
    jar: &[(String, String)],
) -> Response<Body> {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.find("action=\"") {
        let (head, tail) = rest.split_at(i + "action=\"".len());
        out.push_str(head);
        let end = tail.find('"').unwrap_or(tail.len());
        let action = tail[..end].replace("&amp;", "&");
        if action.starts_with("/_wxgate/") {
            out.push_str(&format!(
                "/mock/phone/submit?to={}&amp;jar={}",
                enc(&format!("{origin}{action}")),
                enc(&jar_header(jar))
            ));
        } else {
            out.push_str(&tail[..end]);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    crate::pages::html_response(status, out)
}

/// `POST /mock/phone/submit?to=&jar=`: a form of the page above, replayed as the phone.
pub(super) async fn submit(req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::POST {
        return page(StatusCode::METHOD_NOT_ALLOWED, POST_ONLY);
    }
    let query = parse_query(req.uri().query().unwrap_or(""));
    let Some(to) = param(&query, "to") else {
        return page(StatusCode::BAD_REQUEST, NO_TARGET);
    };
    let Some(to_uri) = scan_url_ok(&to) else {
        return page(StatusCode::BAD_REQUEST, NOT_A_SCAN_URL);
    };
    let jar = parse_jar(&param(&query, "jar").unwrap_or_default());
    let Some(client) = client() else {
        return page(StatusCode::INTERNAL_SERVER_ERROR, NO_CLIENT);
    };
    match client
        .post(&to)
        .header(header::USER_AGENT, PHONE_USER_AGENT)
        .header(header::COOKIE, jar_header(&jar))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
    {
        Ok(resp) => {
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::OK);
            let body = resp.text().await.unwrap_or_default();
            page_through(status, &body, &origin(&to_uri), &jar)
        }
        Err(e) => unreachable(&e),
    }
}
