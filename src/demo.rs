//! `wxgate demo`: the mock WeChat, a small app that shows the verified identity, and
//! the proxy in front of it, all on loopback — the whole product without a WeChat account.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::body::{full, Body};
use crate::pages::{escape, page};

/// Where the demo's mock WeChat is, and what it is called.
pub struct DemoMock {
    /// The mock's own loopback address: wxgate calls its API there, server to server.
    pub api: SocketAddr,
    pub appid: String,
    pub secret: String,
}

/// The browser-facing paths of the mock (WeChat's authorize and consent pages, the
/// simulated phone), served on the demo's one public port through the demo app, so a
/// phone or another computer needs to reach that port only. The mock's control knobs
/// (`/mock/inject` and the rest) stay on loopback.
pub const MOCK_PUBLIC_PATHS: &[&str] = &[
    "/connect/*",
    "/wwlogin/*",
    "/mock/phone",
    "/mock/phone/submit",
    "/mock/jweixin.js",
    "/mock/jssdk/verify",
];

/// The config the demo runs with: everything pointed at the built-in mock, the browser
/// pages of the mock on `public_url` itself, a fresh session secret and signing key.
pub fn demo_config_toml(
    listen: SocketAddr,
    public_url: &str,
    admin: SocketAddr,
    upstream: SocketAddr,
    mock: &DemoMock,
) -> String {
    let (secret, pem) = crate::identity::keygen();
    let public_paths = MOCK_PUBLIC_PATHS
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[server]
listen = "{listen}"
public_url = "{public_url}"
[admin]
listen = "{admin}"
[upstream]
url = "http://{upstream}"
[wechat]
appid = "{appid}"
secret = "{wechat_secret}"
scope = "snsapi_userinfo"
authorize_url = "{public_url}/connect/oauth2/authorize"
qrconnect_url = "{public_url}/connect/qrconnect"
api_base_url = "http://{api}"
[session]
secret = "{secret}"
[identity]
signing_key = """
{pem}"""
[desktop]
mode = "qr"
[access]
public_paths = [{public_paths}]
[account]
subscribe_claim = true
"#,
        appid = mock.appid,
        wechat_secret = mock.secret,
        api = mock.api,
    )
}

/// The demo's config with WeCom instead of WeChat: the mock's organisation, its in-app
/// OAuth page and web-login QR on `public_url`, its API on loopback.
pub fn demo_wecom_config_toml(
    listen: SocketAddr,
    public_url: &str,
    admin: SocketAddr,
    upstream: SocketAddr,
    api: SocketAddr,
    wecom: &crate::mock::WecomMockConfig,
) -> String {
    let (secret, pem) = crate::identity::keygen();
    let public_paths = MOCK_PUBLIC_PATHS
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[server]
listen = "{listen}"
public_url = "{public_url}"
[admin]
listen = "{admin}"
[upstream]
url = "http://{upstream}"
[wecom]
corp_id = "{corp_id}"
agent_id = "{agent_id}"
secret = "{corp_secret}"
scope = "snsapi_privateinfo"
authorize_url = "{public_url}/connect/oauth2/authorize"
sso_url = "{public_url}/wwlogin/sso/login"
api_base_url = "http://{api}"
[session]
secret = "{secret}"
[identity]
signing_key = """
{pem}"""
[access]
public_paths = [{public_paths}]
"#,
        corp_id = wecom.corp_id,
        agent_id = wecom.agent_id,
        corp_secret = wecom.secret,
    )
}

/// One app of `wxgate demo --hub`: a wxgate on its own origin that signs in through
/// the demo's wxgate (the hub), in front of its own demo app.
pub struct DemoApp {
    /// Its client_id at the hub.
    pub name: String,
    pub listen: SocketAddr,
    pub public_url: String,
    pub admin: SocketAddr,
    pub upstream: SocketAddr,
    /// The client secret it shares with the hub.
    pub secret: String,
}

/// The hub's `[[hub.clients]]` for the demo's apps, appended to [`demo_config_toml`].
pub fn demo_hub_clients_toml<'a>(apps: impl IntoIterator<Item = &'a DemoApp>) -> String {
    let mut out = String::from("[hub]\n");
    for app in apps {
        out.push_str(&format!(
            "[[hub.clients]]\nclient_id = \"{}\"\nclient_secret = \"{}\"\nredirect_uris = [\"{}/_wxgate/callback\"]\nscope = \"snsapi_userinfo\"\n",
            app.name, app.secret, app.public_url
        ));
    }
    out
}

/// An app's config: no `[wechat]`, `[hub_client]` naming the hub, its own session
/// cookie (every origin of the demo shares one host, and a browser's cookies do not
/// tell ports apart).
pub fn demo_app_config_toml(app: &DemoApp, hub_issuer: &str) -> String {
    let (secret, pem) = crate::identity::keygen();
    format!(
        r#"
[server]
listen = "{listen}"
public_url = "{public_url}"
workers = 1
[admin]
listen = "{admin}"
[upstream]
url = "http://{upstream}"
[session]
secret = "{secret}"
cookie_name = "_wxgate_{name}"
[identity]
signing_key = """
{pem}"""
[hub_client]
issuer = "{hub_issuer}"
client_id = "{name}"
client_secret = "{client_secret}"
scope = "snsapi_userinfo"
"#,
        listen = app.listen,
        public_url = app.public_url,
        admin = app.admin,
        upstream = app.upstream,
        name = app.name,
        client_secret = app.secret,
    )
}

/// The demo app: the mock's browser pages (see [`MOCK_PUBLIC_PATHS`]), and one page
/// that verifies the identity header against wxgate's JWKS (exactly what a real
/// upstream would do), shows the claims and configures the JS-SDK through wxgate with
/// the mock's stand-in for WeChat's script.
pub async fn serve_demo_app(
    listener: TcpListener,
    mock: crate::mock::MockWechat,
    jwks_url: String,
    issuer: String,
    audience: String,
) {
    let http = reqwest::Client::new();
    let ctx = Arc::new((http, jwks_url, issuer, audience, mock));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let ctx = ctx.clone();
                async move {
                    let path = req.uri().path();
                    let mock_page = path.starts_with("/connect/")
                        || path.starts_with("/wwlogin/")
                        || path == "/mock/phone"
                        || path == "/mock/phone/submit"
                        || path == "/mock/jweixin.js"
                        || path == "/mock/jssdk/verify";
                    let resp = if mock_page {
                        crate::mock::handle(ctx.4.clone(), req).await
                    } else {
                        demo_page(&ctx.0, &ctx.1, &ctx.2, &ctx.3, req).await
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn demo_page(
    http: &reqwest::Client,
    jwks_url: &str,
    issuer: &str,
    audience: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let token = req
        .headers()
        .get("x-wxgate-jwt-assertion")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let verdict = match token {
        None => Err("no identity header: this request did not come through wxgate".to_string()),
        Some(t) => verify(http, jwks_url, issuer, audience, &t).await,
    };
    let inner = demo_html(verdict);
    let mut resp = Response::new(full(page("演示应用 · wxgate demo app", &inner)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// The demo app's page: the verified claims, or why there are none.
pub(crate) fn demo_html(verdict: Result<serde_json::Value, String>) -> String {
    match verdict {
        Ok(claims) => {
            let mut rows = String::new();
            if let Some(obj) = claims.as_object() {
                for (k, v) in obj {
                    let v = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    rows.push_str(&format!(
                        "<tr><td translate=\"no\">{}</td><td translate=\"no\">{}</td></tr>",
                        escape(k),
                        escape(&v)
                    ));
                }
            }
            let name = claims
                .get("nickname")
                .or_else(|| claims.get("name"))
                .or_else(|| claims.get("sub"))
                .and_then(|v| v.as_str())
                .unwrap_or("WeChat user");
            // The JS-SDK is an official account's: a WeCom sign-in has none to show.
            let jssdk = if claims.get("idp").and_then(|v| v.as_str()) == Some("wecom") {
                ""
            } else {
                "<p>JS-SDK（<code>/_wxgate/jssdk.js</code>）· JS-SDK (<code>/_wxgate/jssdk.js</code>): <b id=\"wx\">wx.config…</b></p>\
<script src=\"/mock/jweixin.js\"></script><script src=\"/_wxgate/jssdk.js\" data-js-api-list=\"scanQRCode\"></script>\
<script>wx.ready(function(){document.getElementById('wx').textContent='wx.ready：签名已通过 · signature accepted';});\
wx.error(function(e){document.getElementById('wx').textContent='wx.error：'+e.errMsg;});</script>"
            };
            let avatar = claims
                .get("headimgurl")
                .and_then(|v| v.as_str())
                .map(|u| format!("<img src=\"{}\" width=\"64\" height=\"64\" alt=\"\" style=\"border-radius:8px\">", escape(u)))
                .unwrap_or_default();
            format!(
                "{avatar}<h1>你好，<span translate=\"no\">{name}</span></h1>\
<h2>Hello, <span translate=\"no\">{name}</span>: this is the demo app behind wxgate</h2>\
<p>身份头已用 wxgate 的公钥验证（<code>/_wxgate/jwks.json</code>），其中的声明如下：<br>\
The identity header was verified with wxgate's public keys (<code>/_wxgate/jwks.json</code>); its claims:</p>\
<table>{rows}</table>{jssdk}\
<p><a class=\"btn secondary\" href=\"/_wxgate/sign_out?rd=/\">退出 · Sign out</a></p>",
                name = escape(name),
            )
        }
        Err(why) => format!(
            "<h1>身份未验证</h1><h2>Identity not verified</h2>\
<p>身份头缺失或无法验证：这个请求可能没有经过 wxgate。<br>\
The identity header is missing or does not verify: this request may not have come through wxgate.</p>\
<p class=\"code\" translate=\"no\">{}</p>",
            escape(&why)
        ),
    }
}

async fn verify(
    http: &reqwest::Client,
    jwks_url: &str,
    issuer: &str,
    audience: &str,
    token: &str,
) -> Result<serde_json::Value, String> {
    let jwks: jsonwebtoken::jwk::JwkSet = http
        .get(jwks_url)
        .send()
        .await
        .map_err(|e| format!("cannot fetch JWKS: {e}"))?
        .json_body()
        .await?;
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| format!("bad token header: {e}"))?;
    let kid = header.kid.ok_or("token has no kid")?;
    let jwk = jwks.find(&kid).ok_or("kid not in the JWKS")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| format!("verification failed: {e}"))
}

trait JsonBody {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> Result<T, String>;
}

impl JsonBody for reqwest::Response {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> Result<T, String> {
        let bytes = self.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }
}
