//! Browsers outside WeChat (a PC's Chrome, a phone's Safari). WeChat's authorize URL
//! only says "open this in WeChat" there, so they are never sent to it.

use http::{HeaderMap, Method, Response, StatusCode, Uri};

use crate::auth::Auth;
use crate::body::Body;
use crate::config::DesktopMode;

/// A navigation from a non-WeChat browser that needs a sign-in.
pub async fn begin(auth: &Auth, headers: &HeaderMap, rd: &str) -> Response<Body> {
    match auth.cfg.desktop.mode {
        DesktopMode::Qrconnect => auth.authorize_redirect(headers, rd, 0, true),
        DesktopMode::Qr | DesktopMode::Off => open_in_wechat(auth, rd),
    }
}

/// `/_wxgate/scan/...`.
pub async fn handle(
    _auth: &Auth,
    _method: &Method,
    _uri: &Uri,
    headers: &HeaderMap,
) -> Response<Body> {
    crate::pages::respond(
        &crate::pages::Notice {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            title_zh: "页面不存在",
            title_en: "Not found",
            detail: "No such sign-in page.".into(),
            retry: None,
        },
        crate::auth::classify::wants_json(headers),
    )
}

/// "Open this page in WeChat", with a QR code of the page to scan.
pub fn open_in_wechat(auth: &Auth, rd: &str) -> Response<Body> {
    let url = format!("{}{}", auth.cfg.public().origin, rd);
    let svg = qr_svg(&url).unwrap_or_default();
    let inner = format!(
        "<h1>请在微信中打开</h1><h2>Please open this page in WeChat</h2>\
<p>用微信扫一扫下面的二维码，在微信中继续。<br>Scan this code with WeChat to continue there.</p>\
<div class=\"qr\">{svg}</div><p class=\"code\">{}</p>",
        crate::pages::escape(&url)
    );
    let mut resp = Response::new(crate::body::full(crate::pages::page(
        "请在微信中打开 · Open in WeChat",
        &inner,
    )));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// An inline SVG QR code (no external assets).
pub fn qr_svg(data: &str) -> Option<String> {
    let code =
        qrcode::QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(220, 220)
            .quiet_zone(true)
            .build(),
    )
}
