//! The pages a browser sees on the mock: WeChat's authorize and qrconnect links, the
//! consent forms standing in for the phone's popup, and WeChat's refusal pages.

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::api::{broken, read_body};
use super::wire::{
    callback_location, check_link, check_request, html_escape, location_value, parse_query,
};
use super::{AuthorizeRequest, Fault, LinkKind, MockWechat, Refusal};
use crate::body::{full, Body};

fn html_page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let page = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:28em;\
         margin:2em auto;padding:0 1em;color:#222}}h1{{font-size:1.3em}}\
         .note{{color:#888;font-size:.85em}}label{{display:block;margin:.5em 0}}\
         button{{font-size:1em;padding:.5em 1.2em;margin:.5em .5em 0 0}}\
         .allow{{background:#07c160;color:#fff;border:0;border-radius:4px}}\
         .qr{{width:10em;height:10em;border:4px solid #222;margin:1em 0;\
         background:repeating-linear-gradient(45deg,#222 0 6px,#fff 6px 12px)}}</style>\
         </head><body>{body}<p class=\"note\">Mock WeChat platform (wxgate)</p></body></html>",
        title = html_escape(title),
    );
    crate::pages::html_response(status, page)
}

/// WeChat shows its refusals as ordinary pages (HTTP 200); a name for the refusal is
/// also in a header so tests and scripts need not read Chinese.
fn refusal_page(r: Refusal) -> Response<Body> {
    let code = if r.code() == 0 {
        String::new()
    } else {
        format!("<p>错误码 {}</p>", r.code())
    };
    let mut resp = html_page(
        StatusCode::OK,
        "微信网页授权",
        &format!("<h1>{}</h1>{code}", html_escape(r.message())),
    );
    resp.headers_mut()
        .insert("x-mock-wechat-error", HeaderValue::from_static(r.name()));
    resp
}

fn redirect(location: &str) -> Response<Body> {
    let mut resp = Response::new(full(""));
    *resp.status_mut() = StatusCode::FOUND;
    match HeaderValue::from_str(&location_value(location)) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
            resp
        }
        Err(_) => refusal_page(Refusal::RedirectUri),
    }
}

fn is_wechat(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.contains("MicroMessenger"))
}

/// `GET /connect/oauth2/authorize` and `GET /connect/qrconnect`.
pub(super) async fn authorize(
    mock: MockWechat,
    req: Request<Incoming>,
    kind: LinkKind,
) -> Response<Body> {
    let endpoint = match kind {
        LinkKind::OAuth2 => "authorize",
        LinkKind::QrConnect => "qrconnect",
    };
    if let Some(Fault::Broken(b)) = mock.enter(endpoint).await {
        return broken(b);
    }
    // The `#wechat_redirect` fragment is never sent by a browser, so only the query
    // can be checked here; the client's link builder is tested for the fragment.
    let link = match check_link(req.uri().query().unwrap_or(""), kind, mock.config()) {
        Ok(link) => link,
        Err(r) => return refusal_page(r),
    };
    if kind == LinkKind::OAuth2 && !is_wechat(&req) {
        let mut resp = html_page(
            StatusCode::OK,
            "微信网页授权",
            "<h1>请在微信客户端打开链接</h1><p>Please open this link in WeChat.</p>",
        );
        resp.headers_mut().insert(
            "x-mock-wechat-error",
            HeaderValue::from_static("not_wechat"),
        );
        return resp;
    }
    let config = mock.config();
    // WeChat authorizes snsapi_base silently: no popup unless forcePopup asks for one.
    if kind == LinkKind::OAuth2
        && link.scope == "snsapi_base"
        && config.auto_consent
        && !link.force_popup
    {
        if let Some(first) = config.users.first() {
            let code = mock.issue_code(&first.key, &link.scope, &link.appid);
            return redirect(&callback_location(
                &link.redirect_uri,
                Some(&code),
                &link.state,
            ));
        }
    }
    consent_page(&mock, &link, kind)
}

fn consent_page(mock: &MockWechat, link: &AuthorizeRequest, kind: LinkKind) -> Response<Body> {
    let mut users = String::new();
    for (i, u) in mock.config().users.iter().enumerate() {
        let tags = match (u.snapshot, u.has_unionid) {
            (true, _) => " (snapshot page user)",
            (false, true) => " (unionid)",
            _ => "",
        };
        users.push_str(&format!(
            "<label><input type=\"radio\" name=\"user\" value=\"{key}\"{checked}> {nick}{tags} \
             <span class=\"note\">{key}</span></label>",
            key = html_escape(&u.key),
            nick = html_escape(&u.nickname),
            checked = if i == 0 { " checked" } else { "" },
        ));
    }
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            html_escape(value)
        )
    };
    let fields = [
        hidden("appid", &link.appid),
        hidden("redirect_uri", &link.redirect_uri),
        hidden("scope", &link.scope),
        hidden("state", &link.state),
    ]
    .concat();
    let (action, heading, intro, allow) = match kind {
        LinkKind::OAuth2 => (
            "/connect/oauth2/consent",
            "授权登录",
            if link.scope == "snsapi_userinfo" {
                "该网页申请获得你的昵称、头像 (nickname and avatar)"
            } else {
                "该网页申请获得你的身份 (your identity)"
            },
            "允许 Allow",
        ),
        LinkKind::QrConnect => (
            "/connect/qrconnect/confirm",
            "微信登录",
            "<div class=\"qr\"></div>使用微信扫一扫登录 (scan with WeChat)",
            "模拟扫码 Simulate scanning",
        ),
    };
    html_page(
        StatusCode::OK,
        heading,
        &format!(
            "<h1>{heading}</h1><p>{intro}</p><form method=\"post\" action=\"{action}\">{fields}\
             {users}<button class=\"allow\" name=\"action\" value=\"allow\">{allow}</button>\
             <button name=\"action\" value=\"refuse\">拒绝 Refuse</button></form>"
        ),
    )
}

/// `POST /connect/oauth2/consent` and `POST /connect/qrconnect/confirm`: the user's
/// answer, turned into WeChat's callback.
pub(super) async fn consent(
    mock: MockWechat,
    req: Request<Incoming>,
    kind: LinkKind,
) -> Response<Body> {
    let endpoint = match kind {
        LinkKind::OAuth2 => "consent",
        LinkKind::QrConnect => "qrconnect_confirm",
    };
    if let Some(Fault::Broken(b)) = mock.enter(endpoint).await {
        return broken(b);
    }
    if req.method() != Method::POST {
        return html_page(StatusCode::METHOD_NOT_ALLOWED, "405", "<h1>POST only</h1>");
    }
    let Some(form) = read_body(req).await else {
        return html_page(StatusCode::BAD_REQUEST, "400", "<h1>unreadable form</h1>");
    };
    let form = parse_query(&form);
    let get = |name: &str| {
        super::wire::param(&form, name)
            .unwrap_or_default()
            .to_string()
    };
    let link = AuthorizeRequest {
        appid: get("appid"),
        redirect_uri: get("redirect_uri"),
        scope: get("scope"),
        state: get("state"),
        force_popup: false,
    };
    // The form comes back from the browser: check it again so it is no open redirect.
    if let Err(r) = check_request(&link, kind, mock.config()) {
        return refusal_page(r);
    }
    if get("action") == "refuse" {
        return redirect(&callback_location(&link.redirect_uri, None, &link.state));
    }
    let user = get("user");
    if mock.user(&user).is_none() {
        return html_page(StatusCode::BAD_REQUEST, "400", "<h1>unknown test user</h1>");
    }
    let code = mock.issue_code(&user, &link.scope, &link.appid);
    redirect(&callback_location(
        &link.redirect_uri,
        Some(&code),
        &link.state,
    ))
}

pub(super) fn index(mock: &MockWechat) -> Response<Body> {
    let c = mock.config();
    let mut users = String::new();
    for u in &c.users {
        users.push_str(&format!(
            "<li>{} <code>{}</code>: openid <code>{}</code></li>",
            html_escape(&u.nickname),
            html_escape(&u.key),
            mock.openid(&u.key, &c.appid)
        ));
    }
    html_page(
        StatusCode::OK,
        "Mock WeChat",
        &format!(
            "<h1>Mock WeChat platform</h1><p>appid <code>{}</code>, website appid <code>{}</code></p>\
             <ul>{users}</ul><p>Knobs: <code>/mock/users</code>, <code>/mock/calls</code>, \
             <code>POST /mock/inject</code>, <code>/mock/latency</code>, <code>/mock/broken</code>, \
             <code>/mock/clear</code>, <code>/mock/code</code>, <code>/mock/expire_codes</code>, \
             <code>/mock/expire_tokens</code>, <code>/mock/revoke</code>, \
             <code>/mock/account_tokens</code>, <code>/mock/expire_account_tokens</code>, \
             <code>/mock/reset_quotas</code>. JS-SDK: <code>/mock/jweixin.js</code>.</p>",
            html_escape(&c.appid),
            html_escape(&c.website_appid),
        ),
    )
}

pub(super) fn not_found() -> Response<Body> {
    html_page(StatusCode::NOT_FOUND, "404", "<h1>404 Not Found</h1>")
}
