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

/// The config the demo runs with: everything pointed at the built-in mock.
pub fn demo_config_toml(
    listen: SocketAddr,
    admin: SocketAddr,
    upstream: SocketAddr,
    mock: SocketAddr,
    appid: &str,
    secret: &str,
) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
public_url = "http://{listen}"
[admin]
listen = "{admin}"
[upstream]
url = "http://{upstream}"
[wechat]
appid = "{appid}"
secret = "{secret}"
scope = "snsapi_userinfo"
authorize_url = "http://{mock}/connect/oauth2/authorize"
qrconnect_url = "http://{mock}/connect/qrconnect"
api_base_url = "http://{mock}"
[desktop]
mode = "qr"
[account]
subscribe_claim = true
"#
    )
}

/// The demo app: one page that verifies the identity header against wxgate's JWKS
/// (exactly what a real upstream would do) and shows the claims, and configures the
/// JS-SDK through wxgate with the mock's stand-in for WeChat's script at `jweixin_url`.
pub async fn serve_demo_app(
    listener: TcpListener,
    jwks_url: String,
    issuer: String,
    audience: String,
    jweixin_url: String,
) {
    let http = reqwest::Client::new();
    let ctx = Arc::new((http, jwks_url, issuer, audience, jweixin_url));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let ctx = ctx.clone();
                async move {
                    Ok::<_, Infallible>(
                        demo_page(&ctx.0, &ctx.1, &ctx.2, &ctx.3, &ctx.4, req).await,
                    )
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
    jweixin_url: &str,
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
    let inner = match verdict {
        Ok(claims) => {
            let mut rows = String::new();
            if let Some(obj) = claims.as_object() {
                for (k, v) in obj {
                    let v = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    rows.push_str(&format!(
                        "<tr><td>{}</td><td>{}</td></tr>",
                        escape(k),
                        escape(&v)
                    ));
                }
            }
            let name = claims
                .get("nickname")
                .and_then(|v| v.as_str())
                .unwrap_or("WeChat user");
            let avatar = claims
                .get("headimgurl")
                .and_then(|v| v.as_str())
                .map(|u| format!("<img src=\"{}\" width=\"64\" height=\"64\" alt=\"\" style=\"border-radius:8px\">", escape(u)))
                .unwrap_or_default();
            format!(
                "{avatar}<h1>你好，{}</h1><h2>Hello, {} — this is the demo app behind wxgate</h2>\
<p>The identity header was verified with wxgate's public keys (<code>/_wxgate/jwks.json</code>):</p>\
<table>{rows}</table>\
<p>JS-SDK (<code>/_wxgate/jssdk.js</code>): <b id=\"wx\">wx.config…</b></p>\
<script src=\"{}\"></script><script src=\"/_wxgate/jssdk.js\" data-js-api-list=\"scanQRCode\"></script>\
<script>wx.ready(function(){{document.getElementById('wx').textContent='wx.ready: signature accepted';}});\
wx.error(function(e){{document.getElementById('wx').textContent='wx.error: '+e.errMsg;}});</script>\
<p><a class=\"btn secondary\" href=\"/_wxgate/sign_out?rd=/\">退出 · Sign out</a></p>",
                escape(name),
                escape(name),
                escape(jweixin_url)
            )
        }
        Err(why) => format!("<h1>Identity not verified</h1><p>{}</p>", escape(&why)),
    };
    let mut resp = Response::new(full(page("wxgate demo app", &inner)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
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
