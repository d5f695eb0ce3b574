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
         </head><body>{body}<p class=\"note\">模拟微信平台 · Mock WeChat platform (wxgate)</p></body></html>",
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
        format!("<p>错误码 · Error code {}</p>", r.code())
    };
    let mut resp = html_page(
        StatusCode::OK,
        "微信网页授权 · WeChat authorization",
        &format!(
            "<h1>{}</h1><h2>{}</h2>{code}",
            html_escape(r.message()),
            html_escape(r.message_en())
        ),
    );
    resp.headers_mut()
        .insert("x-mock-wechat-error", HeaderValue::from_static(r.name()));
    resp
}

/// WeChat's answer to its authorize link opened outside WeChat.
fn not_in_wechat() -> Response<Body> {
    let mut resp = html_page(
        StatusCode::OK,
        "微信网页授权 · WeChat authorization",
        "<h1>请在微信客户端打开链接</h1><h2>Please open this link in WeChat</h2>",
    );
    resp.headers_mut().insert(
        "x-mock-wechat-error",
        HeaderValue::from_static("not_wechat"),
    );
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
        return not_in_wechat();
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
            (true, _) => " （快照页用户 · snapshot page user）",
            (false, true) => " (unionid)",
            _ => "",
        };
        users.push_str(&format!(
            "<label><input type=\"radio\" name=\"user\" value=\"{key}\"{checked}> \
             <span translate=\"no\">{nick}</span>{tags} \
             <span class=\"note\" translate=\"no\">{key}</span></label>",
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
    let (action, heading, heading_en, intro, allow) = match kind {
        LinkKind::OAuth2 => (
            "/connect/oauth2/consent",
            "授权登录",
            "Sign in with WeChat",
            if link.scope == "snsapi_userinfo" {
                "该网页申请获得你的昵称、头像<br>This page asks for your nickname and avatar"
            } else {
                "该网页申请获得你的身份<br>This page asks for your identity"
            },
            "允许 Allow",
        ),
        LinkKind::QrConnect => (
            "/connect/qrconnect/confirm",
            "微信登录",
            "WeChat sign-in",
            "<div class=\"qr\"></div>使用微信扫一扫登录<br>Scan with WeChat to sign in",
            "模拟扫码 Simulate scanning",
        ),
    };
    html_page(
        StatusCode::OK,
        &format!("{heading} · {heading_en}"),
        &format!(
            "<h1>{heading}</h1><h2>{heading_en}</h2><p>{intro}</p><form method=\"post\" action=\"{action}\">{fields}\
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
        return post_only();
    }
    let Some(form) = read_body(req).await else {
        return unreadable_form();
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
        return unknown_user();
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
            "<li translate=\"no\">{} <code>{}</code>: openid <code>{}</code></li>",
            html_escape(&u.nickname),
            html_escape(&u.key),
            mock.openid(&u.key, &c.appid)
        ));
    }
    html_page(
        StatusCode::OK,
        "模拟微信 · Mock WeChat",
        &format!(
            "<h1>模拟微信平台</h1><h2>Mock WeChat platform</h2>\
             <p>公众号 · Official account: appid <code>{}</code><br>网站应用 · Website app: appid <code>{}</code></p>\
             <p>测试用户 · Test users:</p><ul>{users}</ul><p>控制接口 · Knobs: <code>/mock/users</code>, <code>/mock/calls</code>, \
             <code>POST /mock/inject</code>, <code>/mock/latency</code>, <code>/mock/broken</code>, \
             <code>/mock/clear</code>, <code>/mock/code</code>, <code>/mock/expire_codes</code>, \
             <code>/mock/expire_tokens</code>, <code>/mock/revoke</code>, \
             <code>/mock/account_tokens</code>, <code>/mock/expire_account_tokens</code>, \
             <code>/mock/reset_quotas</code>. JS-SDK: <code>/mock/jweixin.js</code>.</p>\
             <p>企业微信 · WeCom: corp_id <code>{}</code>, agent_id <code>{}</code>; \
             <code>/wwlogin/sso/login</code>, <code>/mock/wecom/users</code>, <code>POST /mock/wecom/as</code>, \
             <code>/mock/wecom/scan</code>, <code>/mock/wecom/expire_tokens</code>.</p>",
            html_escape(&c.appid),
            html_escape(&c.website_appid),
            html_escape(&c.wecom.corp_id),
            html_escape(&c.wecom.agent_id),
        ),
    )
}

fn post_only() -> Response<Body> {
    html_page(
        StatusCode::METHOD_NOT_ALLOWED,
        "405",
        "<h1>只接受 POST</h1><h2>POST only</h2>",
    )
}

fn unreadable_form() -> Response<Body> {
    html_page(
        StatusCode::BAD_REQUEST,
        "400",
        "<h1>表单无法读取</h1><h2>Unreadable form</h2>",
    )
}

fn unknown_user() -> Response<Body> {
    html_page(
        StatusCode::BAD_REQUEST,
        "400",
        "<h1>没有这个测试用户</h1><h2>Unknown test user</h2>",
    )
}

/// Every page the mock shows a browser, for the test that reads them all.
#[cfg(test)]
pub(crate) fn every_page(mock: &MockWechat) -> Vec<(String, Response<Body>)> {
    use super::wire::Refusal as R;
    let link = |scope: &str| AuthorizeRequest {
        appid: mock.config().appid.clone(),
        redirect_uri: "http://127.0.0.1/_wxgate/callback".into(),
        scope: scope.into(),
        state: "abc".into(),
        force_popup: false,
    };
    let mut pages = vec![
        ("index".to_string(), index(mock)),
        ("not found".into(), not_found()),
        ("post only".into(), post_only()),
        ("unreadable form".into(), unreadable_form()),
        ("unknown user".into(), unknown_user()),
        (
            "consent base".into(),
            consent_page(mock, &link("snsapi_base"), LinkKind::OAuth2),
        ),
        (
            "consent userinfo".into(),
            consent_page(mock, &link("snsapi_userinfo"), LinkKind::OAuth2),
        ),
        (
            "qrconnect".into(),
            consent_page(mock, &link("snsapi_login"), LinkKind::QrConnect),
        ),
        ("not in wechat".into(), not_in_wechat()),
    ];
    for r in [
        R::LinkInvalid,
        R::RedirectDomain,
        R::Scope,
        R::OpenPlatformAppid,
        R::Appid,
        R::RedirectUri,
        R::State,
    ] {
        pages.push((format!("refusal {}", r.name()), refusal_page(r)));
    }
    pages
}

pub(super) fn not_found() -> Response<Body> {
    html_page(
        StatusCode::NOT_FOUND,
        "404",
        "<h1>页面不存在</h1><h2>404 Not Found</h2>",
    )
}
