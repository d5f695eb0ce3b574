//! Every page and JSON error body wxgate writes itself, from one small template, so a
//! refusal looks the same whichever module refuses.
//!
//! Pages are bilingual (Chinese first: most visitors arrive from WeChat), carry no stack
//! traces or secrets, and offer a "try again" link when trying again can help.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::{full, Body};

/// What a page says. `code` is a stable machine-readable name, also the JSON `error`.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    pub status: StatusCode,
    pub code: &'a str,
    pub title_zh: &'a str,
    pub title_en: &'a str,
    /// The explanation in Chinese, then in English (also the JSON `detail`).
    pub detail_zh: String,
    pub detail: String,
    /// A same-origin link that starts over (e.g. `/_wxgate/start?rd=/x`).
    pub retry: Option<String>,
}

/// How wxgate answers a client itself: a bilingual page for a browser, JSON for an API
/// client. Decided once per request ([`Reply::of`]) and handed to whoever answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Page,
    Json,
}

impl Reply {
    /// The reply mode a request asks for (see [`wants_json`]).
    pub fn of(headers: &HeaderMap) -> Reply {
        if wants_json(headers) {
            Reply::Json
        } else {
            Reply::Page
        }
    }

    pub fn is_json(self) -> bool {
        self == Reply::Json
    }
}

/// Whether the client wants a JSON answer rather than a page: an XHR, or an `Accept`
/// that lists JSON and not HTML. The one rule for every answer wxgate writes itself,
/// sign-in refusals and proxy errors alike.
pub fn wants_json(headers: &HeaderMap) -> bool {
    let xhr = headers
        .get_all("x-requested-with")
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
    if xhr {
        return true;
    }
    let mut json = false;
    let mut html = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            // `q=0` means "not acceptable": it does not list the type.
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if refused {
                continue;
            }
            match media.as_str() {
                "text/html" | "application/xhtml+xml" => html = true,
                "application/json" => json = true,
                m if m.starts_with("application/") && m.ends_with("+json") => json = true,
                _ => {}
            }
        }
    }
    json && !html
}

/// HTML for browsers, JSON for API clients.
pub fn respond(n: &Notice<'_>, reply: Reply) -> Response<Body> {
    respond_with(n, reply, None)
}

/// As [`respond`], with extra JSON fields (e.g. `login_url`) merged in.
pub fn respond_with(
    n: &Notice<'_>,
    reply: Reply,
    extra: Option<serde_json::Value>,
) -> Response<Body> {
    let (body, ctype) = if reply.is_json() {
        let mut v = serde_json::json!({
            "error": n.code,
            "message": n.title_en,
            "detail": n.detail,
            "message_zh": n.title_zh,
            "detail_zh": n.detail_zh,
        });
        if let (Some(serde_json::Value::Object(extra)), Some(obj)) = (extra, v.as_object_mut()) {
            obj.extend(extra);
        }
        (Bytes::from(v.to_string()), "application/json")
    } else {
        (Bytes::from(html(n)), "text/html; charset=utf-8")
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = n.status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

pub fn html(n: &Notice<'_>) -> String {
    let retry = match &n.retry {
        Some(href) => format!(
            "<p><a class=\"btn\" href=\"{}\">重试 · Try again</a></p>",
            escape(href)
        ),
        None => String::new(),
    };
    page(
        &format!("{} · {}", n.title_zh, n.title_en),
        &format!(
            "<h1>{}</h1><h2>{}</h2><p>{}<br>{}</p>{retry}<p class=\"code\" translate=\"no\">{} · {}</p>",
            escape(n.title_zh),
            escape(n.title_en),
            escape(&n.detail_zh),
            escape(&n.detail),
            n.status.as_u16(),
            escape(n.code),
        ),
    )
}

/// An HTML document as a response: UTF-8, never cached (every page wxgate and its mock
/// write is about one visitor at one moment).
pub fn html_response(status: StatusCode, html: String) -> Response<Body> {
    let mut resp = Response::new(full(html));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A JSON document as a response, never cached.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The 404 of wxgate's own URLs.
pub fn not_found(reply: Reply) -> Response<Body> {
    respond(
        &Notice {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            title_zh: "页面不存在",
            title_en: "Not found",
            detail_zh: "wxgate 没有这个页面。".into(),
            detail: "wxgate has no such page.".into(),
            retry: None,
        },
        reply,
    )
}

/// A page that moves on to `href` by itself (meta refresh), with a button for
/// browsers that do not follow it. Used where a 302 cannot be: an auth service whose
/// non-2xx answer the ingress shows as is, or a hop that must be same-site.
pub fn moving_on(
    status: StatusCode,
    title_zh: &str,
    title_en: &str,
    button: &str,
    href: &str,
) -> Response<Body> {
    let href = escape(href);
    let inner = format!(
        "<h1>{}</h1><h2>{}</h2><p><a class=\"btn\" href=\"{href}\">{}</a></p>",
        escape(title_zh),
        escape(title_en),
        escape(button)
    );
    let html = page(&format!("{title_zh} · {title_en}"), &inner).replacen(
        "<head>",
        &format!("<head><meta http-equiv=\"refresh\" content=\"0;url={href}\">"),
        1,
    );
    html_response(status, html)
}

/// The shared page frame: inline CSS, no external assets, mobile-first.
pub fn page(title: &str, inner: &str) -> String {
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body><main>{inner}</main></body></html>",
        escape(title)
    )
}

const STYLE: &str = "body{font-family:-apple-system,BlinkMacSystemFont,'PingFang SC','Microsoft YaHei',sans-serif;background:#f5f5f5;color:#222;margin:0}\
main{max-width:32rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:12px;box-shadow:0 1px 4px rgba(0,0,0,.08)}\
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1rem;font-weight:normal;color:#666;margin:0 0 1rem}\
.btn{display:inline-block;background:#07c160;color:#fff;padding:.6rem 1.4rem;border-radius:6px;text-decoration:none;border:0;font-size:1rem;cursor:pointer}\
.btn.secondary{background:#eee;color:#333}.code{color:#999;font-size:.8rem}table{border-collapse:collapse}td{padding:.2rem .6rem;border-bottom:1px solid #eee;word-break:break-all}";

/// HTML-escapes text for element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod every_page;

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn json_is_wanted_by_xhr_or_an_accept_without_html() {
        let table: &[(&[(&str, &str)], bool)] = &[
            (&[], false),
            (&[("x-requested-with", "XMLHttpRequest")], true),
            (&[("x-requested-with", "xmlhttprequest")], true),
            (&[("accept", "application/json")], true),
            (&[("accept", "application/json, text/plain, */*")], true),
            (&[("accept", "application/problem+json")], true),
            (
                &[(
                    "accept",
                    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                )],
                false,
            ),
            (&[("accept", "text/html, application/json")], false),
            (
                &[("accept", "application/json"), ("accept", "text/html")],
                false,
            ),
            (&[("accept", "application/json, text/html;q=0")], true),
            (&[("accept", "application/json;q=0")], false),
            (&[("accept", "*/*")], false),
            (&[("accept", "application/jsonp")], false),
        ];
        for (pairs, want) in table {
            assert_eq!(wants_json(&headers(pairs)), *want, "headers={pairs:?}");
        }
    }

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn html_pages_escape_details_and_json_carries_the_code() {
        let n = Notice {
            status: StatusCode::BAD_GATEWAY,
            code: "upstream_unreachable",
            title_zh: "应用暂时无法访问",
            title_en: "The application is unreachable",
            detail_zh: "<script>".into(),
            detail: "<script>".into(),
            retry: Some("/x?a=1&b=2".into()),
        };
        let page = html(&n);
        assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"));
        assert!(page.contains("href=\"/x?a=1&amp;b=2\""));
        let resp = respond(&n, Reply::Json);
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    }
}
