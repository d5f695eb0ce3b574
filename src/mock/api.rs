//! The four `sns` calls as WeChat answers them: always HTTP 200 and `text/plain`,
//! errors as `{"errcode":N,"errmsg":"... rid: ..."}`.

use std::time::Instant;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::wire::parse_query;
use super::{
    random_token, AccessGrant, Broken, Fault, MockWechat, RefreshGrant, ACCESS_TOKEN_TTL,
    REFRESH_TOKEN_TTL,
};
use crate::body::{full, Body, BoxError};

/// WeChat's words for the codes the mock answers with.
pub fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40003 => "invalid openid",
        40097 => "invalid args",
        40013 => "invalid appid",
        40029 => "invalid code",
        40030 => "invalid refresh_token",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40164 => "invalid ip, not in whitelist",
        41001 => "access_token missing",
        41008 => "missing code",
        42001 => "access_token expired",
        42002 => "refresh_token expired",
        42003 => "code expired",
        42007 => "access_token and refresh_token exception",
        43001 => "require GET method",
        43002 => "require POST method",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        47001 => "data format error",
        48001 => "api unauthorized",
        _ => "mock error",
    }
}

/// A request id in WeChat's shape: `rid: 6543a1b2-1d2e3f4a-5b6c7d8e`.
pub(super) fn error_body(errcode: i64) -> Value {
    let r = random_token(24).to_ascii_lowercase();
    json!({
        "errcode": errcode,
        "errmsg": format!("{}, rid: {}-{}-{}", errmsg(errcode), &r[..8], &r[8..16], &r[16..]),
    })
}

fn text_plain(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

fn answer(result: Result<Value, i64>) -> Response<Body> {
    wechat_json(&result.unwrap_or_else(error_body))
}

/// An answer as WeChat sends every one: HTTP 200, `text/plain`, errors included.
pub(super) fn wechat_json(value: &Value) -> Response<Body> {
    text_plain(StatusCode::OK, value.to_string())
}

pub(super) fn broken(kind: Broken) -> Response<Body> {
    match kind {
        Broken::Html => {
            let mut r = text_plain(
                StatusCode::OK,
                "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>",
            );
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            r
        }
        Broken::Garbage => text_plain(StatusCode::OK, &b"\x00\xff\xfe{\"errc0de:: not json"[..]),
        Broken::Http500 => text_plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "<html><body>500 Internal Server Error</body></html>",
        ),
        Broken::CloseMidBody => {
            // Half a token answer, then an error: hyper drops the connection short of
            // the promised Content-Length. The yield lets hyper flush the head and the
            // first bytes before the error, so the cut is mid-body, not before it.
            let head = stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(
                b"{\"access_token\":\"ACCESS",
            )))]);
            let cut = stream::once(async {
                tokio::task::yield_now().await;
                Err::<Frame<Bytes>, BoxError>("connection closed mid-body".into())
            });
            let body = StreamBody::new(head.chain(cut)).boxed_unsync();
            let mut r = Response::new(body);
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("180"));
            r
        }
    }
}

pub(super) async fn handle(
    mock: MockWechat,
    req: Request<Incoming>,
    endpoint: &'static str,
) -> Response<Body> {
    match mock.enter(endpoint).await {
        Some(Fault::Broken(b)) => return broken(b),
        Some(Fault::Errcode(code)) => return answer(Err(code)),
        None => {}
    }
    if req.method() != Method::GET {
        return answer(Err(43001));
    }
    let query = parse_query(req.uri().query().unwrap_or(""));
    let param = |name: &str| super::wire::param(&query, name).unwrap_or("");
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    answer(match endpoint {
        "access_token" => mock.exchange(
            param("appid"),
            param("secret"),
            param("code"),
            param("grant_type"),
        ),
        "refresh_token" => {
            mock.refresh(param("appid"), param("refresh_token"), param("grant_type"))
        }
        "auth" => mock
            .access(param("access_token"), param("openid"))
            .map(|_| json!({"errcode": 0, "errmsg": "ok"})),
        _ => mock.userinfo(param("access_token"), param("openid"), &host),
    })
}

impl MockWechat {
    pub(super) fn secret_of(&self, appid: &str) -> Option<&str> {
        let c = &self.inner.config;
        if appid == c.appid {
            Some(&c.secret)
        } else if appid == c.website_appid {
            Some(&c.website_secret)
        } else {
            None
        }
    }

    fn exchange(&self, appid: &str, secret: &str, code: &str, grant: &str) -> Result<Value, i64> {
        let expected = self.secret_of(appid).ok_or(40013)?;
        if secret != expected {
            return Err(40125);
        }
        if grant != "authorization_code" {
            return Err(40002);
        }
        if code.is_empty() {
            return Err(41008);
        }
        let grant = {
            let mut s = self.state();
            let g = s.codes.get_mut(code).ok_or(40029)?;
            // A code issued to another app is, to this app, a forged one.
            if g.appid != appid {
                return Err(40029);
            }
            if g.used {
                return Err(40163);
            }
            if Instant::now() >= g.expires_at {
                return Err(42003);
            }
            g.used = true;
            g.clone()
        };
        let user = self.user(&grant.user).ok_or(40029)?.clone();
        let openid = self.openid(&user.key, appid);
        let (access_token, refresh_token) =
            self.grant_tokens(appid, &user.key, &openid, &grant.scope);
        let mut body = json!({
            "access_token": access_token,
            "expires_in": ACCESS_TOKEN_TTL.as_secs(),
            "refresh_token": refresh_token,
            "openid": openid,
            "scope": wire_scope(&grant.scope),
        });
        if user.snapshot {
            body["is_snapshotuser"] = json!(1);
        }
        if let Some(u) = self.unionid(&user.key) {
            body["unionid"] = json!(u);
        }
        Ok(body)
    }

    fn grant_tokens(&self, appid: &str, user: &str, openid: &str, scope: &str) -> (String, String) {
        let access = random_token(64);
        let refresh = random_token(64);
        let now = Instant::now();
        let mut s = self.state();
        s.access.insert(
            access.clone(),
            AccessGrant {
                user: user.into(),
                openid: openid.into(),
                scope: scope.into(),
                expires_at: now + ACCESS_TOKEN_TTL,
            },
        );
        s.refresh.insert(
            refresh.clone(),
            RefreshGrant {
                appid: appid.into(),
                user: user.into(),
                scope: scope.into(),
                expires_at: now + REFRESH_TOKEN_TTL,
                revoked: false,
            },
        );
        (access, refresh)
    }

    fn refresh(&self, appid: &str, refresh_token: &str, grant: &str) -> Result<Value, i64> {
        self.secret_of(appid).ok_or(40013)?;
        if grant != "refresh_token" {
            return Err(40002);
        }
        let r = {
            let s = self.state();
            let r = s.refresh.get(refresh_token).ok_or(40030)?;
            if r.appid != appid {
                return Err(40030);
            }
            if r.revoked {
                return Err(42007);
            }
            if Instant::now() >= r.expires_at {
                return Err(42002);
            }
            r.clone()
        };
        let openid = self.openid(&r.user, appid);
        let access = random_token(64);
        self.state().access.insert(
            access.clone(),
            AccessGrant {
                user: r.user.clone(),
                openid: openid.clone(),
                scope: r.scope.clone(),
                expires_at: Instant::now() + ACCESS_TOKEN_TTL,
            },
        );
        Ok(json!({
            "access_token": access,
            "expires_in": ACCESS_TOKEN_TTL.as_secs(),
            "refresh_token": refresh_token,
            "openid": openid,
            "scope": wire_scope(&r.scope),
        }))
    }

    fn access(&self, token: &str, openid: &str) -> Result<AccessGrant, i64> {
        let s = self.state();
        let g = s.access.get(token).ok_or(40001)?;
        if Instant::now() >= g.expires_at {
            return Err(42001);
        }
        if g.openid != openid {
            return Err(40003);
        }
        Ok(g.clone())
    }

    fn userinfo(&self, token: &str, openid: &str, host: &str) -> Result<Value, i64> {
        let g = self.access(token, openid)?;
        if g.scope == "snsapi_base" {
            return Err(48001);
        }
        let user = self.user(&g.user).ok_or(40003)?;
        let headimgurl = if user.snapshot {
            String::new()
        } else if user.headimgurl.is_empty() {
            format!("http://{host}/mock/avatar/{}.svg", user.key)
        } else {
            user.headimgurl.clone()
        };
        let mut body = json!({
            "openid": g.openid,
            "nickname": user.nickname,
            "sex": 0,
            "language": "",
            "city": "",
            "province": "",
            "country": "",
            "headimgurl": headimgurl,
            "privilege": [],
        });
        if let Some(u) = self.unionid(&user.key) {
            body["unionid"] = json!(u);
        }
        Ok(body)
    }
}

/// WeChat returns the userinfo scope with a trailing comma.
fn wire_scope(scope: &str) -> String {
    if scope == "snsapi_userinfo" {
        "snsapi_userinfo,".into()
    } else {
        scope.into()
    }
}

/// Reads a small request body (consent forms, knobs).
pub(super) async fn read_body(req: Request<Incoming>) -> Option<String> {
    let limited = http_body_util::Limited::new(req.into_body(), 64 * 1024);
    let bytes = limited.collect().await.ok()?.to_bytes();
    String::from_utf8(bytes.to_vec()).ok()
}
