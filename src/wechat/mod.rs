//! The WeChat platform client: the web-authorization links (pure, in `url`), the four
//! `sns` API calls, the account-level `cgi-bin` calls (`cgi`), and what their answers
//! mean (`error`). Owns retries of a busy platform, the WeChat call metrics, and the
//! one log line per failed call.

mod cgi;
mod error;
mod url;

pub use self::cgi::{AccountToken, JsapiTicket};
pub use self::error::{extract_rid, parse_response, ErrorKind, WechatError};
pub use self::url::{authorize_url, encode_component, is_valid_state, parse_scopes, qrconnect_url};
pub use crate::config::Scope;

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::metrics::metrics;

/// An official account (or website application) as WeChat knows it.
#[derive(Clone)]
pub struct AppCredentials {
    pub appid: String,
    pub secret: String,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("appid", &self.appid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A web-authorization token: per user, good only for `sns/userinfo` and `sns/auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthToken {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub openid: String,
    pub scopes: Vec<String>,
    /// A snapshot-page user: the openid is virtual and must never be bound to anyone.
    pub is_snapshotuser: bool,
    pub unionid: Option<String>,
}

impl OAuthToken {
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| s == scope.as_str())
    }
}

#[derive(Deserialize)]
struct RawToken {
    access_token: String,
    #[serde(default)]
    expires_in: u64,
    #[serde(default)]
    refresh_token: String,
    openid: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    is_snapshotuser: i64,
    #[serde(default)]
    unionid: Option<String>,
}

impl From<RawToken> for OAuthToken {
    fn from(r: RawToken) -> Self {
        Self {
            access_token: r.access_token,
            expires_in: r.expires_in,
            refresh_token: r.refresh_token,
            openid: r.openid,
            scopes: parse_scopes(&r.scope),
            is_snapshotuser: r.is_snapshotuser == 1,
            unionid: r.unionid.filter(|u| !u.is_empty()),
        }
    }
}

/// The profile `sns/userinfo` returns. Since late 2021 `sex` is 0 and the region
/// fields are empty; nicknames hold any Unicode, emoji included.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    pub openid: String,
    #[serde(default)]
    pub nickname: String,
    #[serde(default)]
    pub sex: i64,
    #[serde(default)]
    pub province: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub country: String,
    #[serde(default)]
    pub headimgurl: String,
    #[serde(default)]
    pub privilege: Vec<String>,
    #[serde(default)]
    pub unionid: Option<String>,
}

#[derive(Deserialize)]
struct Ack {}

/// Waits before the 2nd and 3rd attempts when WeChat answers -1 (busy).
const BUSY_BACKOFF: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(400)];

/// Client for WeChat's `sns` API. Cheap to clone (one connection pool).
#[derive(Clone, Debug)]
pub struct WechatClient {
    http: reqwest::Client,
    base: String,
}

impl WechatClient {
    /// `api_base_url` is `https://api.weixin.qq.com` in production, a mock in tests.
    pub fn new(api_base_url: &str, timeout: Duration) -> Result<Self, WechatError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wxgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WechatError::Unreachable {
                endpoint: "client",
                detail: e.without_url().to_string(),
            })?;
        Ok(Self {
            http,
            base: api_base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Step 2: trades the code from the callback for a token.
    pub async fn exchange_code(
        &self,
        app: &AppCredentials,
        code: &str,
    ) -> Result<OAuthToken, WechatError> {
        let raw: RawToken = self
            .call(
                "access_token",
                "/sns/oauth2/access_token",
                &[
                    ("appid", &app.appid),
                    ("secret", &app.secret),
                    ("code", code),
                    ("grant_type", "authorization_code"),
                ],
            )
            .await?;
        Ok(raw.into())
    }

    /// Step 3: a fresh access token from a refresh token (no secret needed).
    pub async fn refresh(
        &self,
        appid: &str,
        refresh_token: &str,
    ) -> Result<OAuthToken, WechatError> {
        let raw: RawToken = self
            .call(
                "refresh_token",
                "/sns/oauth2/refresh_token",
                &[
                    ("appid", appid),
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                ],
            )
            .await?;
        Ok(raw.into())
    }

    /// Step 4: the profile (snsapi_userinfo tokens only; a base token gets 48001).
    pub async fn userinfo(
        &self,
        access_token: &str,
        openid: &str,
        lang: &str,
    ) -> Result<UserInfo, WechatError> {
        self.call(
            "userinfo",
            "/sns/userinfo",
            &[
                ("access_token", access_token),
                ("openid", openid),
                ("lang", lang),
            ],
        )
        .await
    }

    /// Whether an access token is still valid for this openid.
    pub async fn check(&self, access_token: &str, openid: &str) -> Result<(), WechatError> {
        let _: Ack = self
            .call(
                "auth",
                "/sns/auth",
                &[("access_token", access_token), ("openid", openid)],
            )
            .await?;
        Ok(())
    }

    /// One GET with busy retries; counts every attempt and logs a failure once.
    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, WechatError> {
        self.call_with(endpoint, path, query, None).await
    }

    /// As [`WechatClient::call`]; with a `json` body it is a POST (`cgi-bin/stable_token`).
    async fn call_with<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        query: &[(&str, &str)],
        json: Option<&serde_json::Value>,
    ) -> Result<T, WechatError> {
        let mut attempt = 0;
        loop {
            let result = self.attempt(endpoint, path, query, json).await;
            match result {
                Err(e) if e.kind() == ErrorKind::Busy && attempt < BUSY_BACKOFF.len() => {
                    tracing::debug!(
                        endpoint,
                        rid = e.rid(),
                        attempt,
                        "wechat busy (-1), retrying"
                    );
                    tokio::time::sleep(BUSY_BACKOFF[attempt]).await;
                    attempt += 1;
                }
                Err(e) => {
                    log_failure(&e);
                    return Err(e);
                }
                Ok(v) => return Ok(v),
            }
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        query: &[(&str, &str)],
        json: Option<&serde_json::Value>,
    ) -> Result<T, WechatError> {
        let started = Instant::now();
        let result = self.fetch(endpoint, path, query, json).await;
        let m = metrics();
        m.wechat_duration.observe(
            crate::metrics::labels::WechatEndpoint(endpoint),
            started.elapsed(),
        );
        match &result {
            Ok(_) => m.wechat_calls.inc(crate::metrics::labels::WechatCall(
                crate::metrics::labels::WechatEndpoint(endpoint),
                crate::metrics::labels::Errcode::Ok,
            )),
            Err(e) => m.wechat_calls.inc(crate::metrics::labels::WechatCall(
                crate::metrics::labels::WechatEndpoint(endpoint),
                e.errcode_label(),
            )),
        }
        result
    }

    async fn fetch<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        query: &[(&str, &str)],
        json: Option<&serde_json::Value>,
    ) -> Result<T, WechatError> {
        // Query strings carry the secret, the code or the account's token: errors are
        // stripped of their URL.
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                WechatError::Timeout { endpoint }
            } else {
                WechatError::Unreachable {
                    endpoint,
                    detail: error_chain(&e.without_url()),
                }
            }
        };
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query_string(query));
        }
        let request = match json {
            Some(body) => self
                .http
                .post(url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string()),
            None => self.http.get(url),
        };
        let resp = request.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => return Err(WechatError::Timeout { endpoint }),
            Err(e) => {
                return Err(WechatError::BadResponse {
                    endpoint,
                    status,
                    detail: format!("body cut short: {}", error_chain(&e.without_url())),
                })
            }
        };
        parse_response(endpoint, status, &body)
    }
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Configuration and quota problems need an operator; the rest are a user's bad luck.
fn log_failure(e: &WechatError) {
    let endpoint = e.endpoint();
    match e {
        WechatError::Api {
            errcode,
            errmsg,
            rid,
            ..
        } => {
            let rid = rid.as_deref().unwrap_or("-");
            if e.token_rejected() && cgi::USES_ACCOUNT_TOKEN.contains(&endpoint) {
                tracing::warn!(
                    endpoint,
                    errcode,
                    errmsg,
                    rid,
                    "wechat refused the account's access_token; it is renewed once"
                );
                return;
            }
            match e.kind() {
                ErrorKind::Misconfigured => tracing::error!(
                    endpoint,
                    errcode,
                    errmsg,
                    rid,
                    "wechat refused the credentials: check wechat.secret / wechat.appid"
                ),
                ErrorKind::Quota => {
                    tracing::error!(endpoint, errcode, errmsg, rid, "wechat API quota reached")
                }
                ErrorKind::IpNotWhitelisted => tracing::error!(
                    endpoint,
                    errcode,
                    errmsg,
                    rid,
                    "this server's address is not on the account's IP whitelist: add it in the MP console"
                ),
                ErrorKind::Unauthorized => tracing::error!(
                    endpoint,
                    errcode,
                    errmsg,
                    rid,
                    "wechat API unauthorized for this token's scope: check wechat.scope"
                ),
                _ => tracing::warn!(endpoint, errcode, errmsg, rid, "wechat API error"),
            }
        }
        other => tracing::warn!(endpoint, error = %other, "wechat API unavailable"),
    }
}
