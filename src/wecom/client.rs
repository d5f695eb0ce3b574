//! The four WeCom API calls a sign-in needs: `cgi-bin/gettoken` (the corp token),
//! `cgi-bin/auth/getuserinfo` (code → member or visitor), `cgi-bin/user/get` (name,
//! departments) and `cgi-bin/auth/getuserdetail` (private details, with consent).
//! Owns retries of a busy platform, the call metrics and one log line per failure.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::{ErrorKind, WecomError};
use crate::metrics::labels::{Errcode, WechatCall, WechatEndpoint};
use crate::metrics::metrics;
use crate::wechat::{encode_component, parse_response};

/// Waits before the 2nd and 3rd attempts when WeCom answers -1 (busy).
const BUSY_BACKOFF: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(400)];

/// The corp access_token as `gettoken` hands it out.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct CorpToken {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: u64,
}

impl std::fmt::Debug for CorpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorpToken")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Who a code belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visitor {
    /// A member of the organisation. `user_ticket` comes with snsapi_privateinfo for
    /// members in the app's visible range, and lives 30 minutes.
    Member {
        userid: String,
        user_ticket: Option<String>,
    },
    /// Someone WeCom knows but who is not a member (another organisation's member, a
    /// WeChat user): an openid, and an external_userid when they are a customer contact.
    NonMember {
        openid: String,
        external_userid: Option<String>,
    },
}

#[derive(Deserialize)]
struct RawVisitor {
    // The older `user/getuserinfo` said `UserId` / `OpenId`: both spellings are read.
    #[serde(default, alias = "UserId")]
    userid: Option<String>,
    #[serde(default)]
    user_ticket: Option<String>,
    #[serde(default, alias = "OpenId")]
    openid: Option<String>,
    #[serde(default)]
    external_userid: Option<String>,
}

/// What `user/get` says of a member (only what a sign-in uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MemberInfo {
    pub userid: String,
    /// Apps made by third parties get the userid here instead of a name.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub department: Vec<u64>,
}

/// What `auth/getuserdetail` says with the member's consent. Apps created after
/// 2022-06-20 get these only here, no longer from `user/get`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PrivateInfo {
    #[serde(default)]
    pub userid: String,
    /// "0" unknown, "1" male, "2" female.
    #[serde(default)]
    pub gender: String,
    #[serde(default)]
    pub avatar: String,
    #[serde(default)]
    pub qr_code: String,
    #[serde(default)]
    pub mobile: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub biz_mail: String,
    #[serde(default)]
    pub address: String,
}

/// Client for WeCom's API. Cheap to clone (one connection pool).
#[derive(Clone, Debug)]
pub struct WecomClient {
    http: reqwest::Client,
    base: String,
}

impl WecomClient {
    /// `api_base_url` is `https://qyapi.weixin.qq.com` in production, a mock in tests.
    pub fn new(api_base_url: &str, timeout: Duration) -> Result<Self, WecomError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wxgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WecomError::Unreachable {
                endpoint: "client",
                detail: e.without_url().to_string(),
            })?;
        Ok(Self {
            http,
            base: api_base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// `GET cgi-bin/gettoken?corpid=&corpsecret=`.
    pub async fn gettoken(&self, corp_id: &str, secret: &str) -> Result<CorpToken, WecomError> {
        self.call(
            "wecom_gettoken",
            "/cgi-bin/gettoken",
            &[("corpid", corp_id), ("corpsecret", secret)],
            None,
        )
        .await
    }

    /// `GET cgi-bin/auth/getuserinfo?access_token=&code=`: whose code it is.
    pub async fn getuserinfo(&self, token: &str, code: &str) -> Result<Visitor, WecomError> {
        let endpoint = "wecom_getuserinfo";
        let raw: RawVisitor = self
            .call(
                endpoint,
                "/cgi-bin/auth/getuserinfo",
                &[("access_token", token), ("code", code)],
                None,
            )
            .await?;
        let present = |v: Option<String>| v.filter(|s| !s.is_empty());
        match (present(raw.userid), present(raw.openid)) {
            (Some(userid), _) => Ok(Visitor::Member {
                userid,
                user_ticket: present(raw.user_ticket),
            }),
            (None, Some(openid)) => Ok(Visitor::NonMember {
                openid,
                external_userid: present(raw.external_userid),
            }),
            (None, None) => {
                let e = WecomError::BadResponse {
                    endpoint,
                    status: 200,
                    detail: "neither userid nor openid".into(),
                };
                log_failure(&e);
                Err(e)
            }
        }
    }

    /// `GET cgi-bin/user/get?access_token=&userid=`.
    pub async fn user_get(&self, token: &str, userid: &str) -> Result<MemberInfo, WecomError> {
        self.call(
            "wecom_user_get",
            "/cgi-bin/user/get",
            &[("access_token", token), ("userid", userid)],
            None,
        )
        .await
    }

    /// `POST cgi-bin/auth/getuserdetail?access_token=` with `{"user_ticket":...}`.
    pub async fn getuserdetail(
        &self,
        token: &str,
        user_ticket: &str,
    ) -> Result<PrivateInfo, WecomError> {
        let body = serde_json::json!({ "user_ticket": user_ticket });
        self.call(
            "wecom_getuserdetail",
            "/cgi-bin/auth/getuserdetail",
            &[("access_token", token)],
            Some(&body),
        )
        .await
    }

    /// One call with busy retries; counts every attempt and logs a failure once.
    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        query: &[(&str, &str)],
        json: Option<&serde_json::Value>,
    ) -> Result<T, WecomError> {
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let result = self.fetch(endpoint, path, query, json).await;
            let m = metrics();
            let call = WechatEndpoint(endpoint);
            m.wechat_duration.observe(call, started.elapsed());
            match &result {
                Ok(_) => m.wechat_calls.inc(WechatCall(call, Errcode::Ok)),
                Err(e) => m.wechat_calls.inc(WechatCall(call, e.metric_label())),
            }
            match result {
                Err(e) if e.kind() == ErrorKind::Busy && attempt < BUSY_BACKOFF.len() => {
                    tracing::debug!(
                        endpoint,
                        hint = e.hint(),
                        attempt,
                        "wecom busy (-1), retrying"
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

    async fn fetch<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        query: &[(&str, &str)],
        json: Option<&serde_json::Value>,
    ) -> Result<T, WecomError> {
        // Query strings carry the secret, the code or the corp token: errors are
        // stripped of their URL.
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                WecomError::Timeout { endpoint }
            } else {
                WecomError::Unreachable {
                    endpoint,
                    detail: error_chain(&e.without_url()),
                }
            }
        };
        let query = query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode_component(v)))
            .collect::<Vec<_>>()
            .join("&");
        let url = format!("{}{path}?{query}", self.base);
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
            Err(e) if e.is_timeout() => return Err(WecomError::Timeout { endpoint }),
            Err(e) => {
                return Err(WecomError::BadResponse {
                    endpoint,
                    status,
                    detail: format!("body cut short: {}", error_chain(&e.without_url())),
                })
            }
        };
        parse_response(endpoint, status, &body).map_err(WecomError::from)
    }
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

/// Setup problems need an operator, and WeCom's console tells what to fix; the rest
/// are a member's bad luck. Every line carries WeCom's request id.
fn log_failure(e: &WecomError) {
    let endpoint = e.endpoint();
    let WecomError::Api {
        errcode,
        errmsg,
        hint,
        ..
    } = e
    else {
        tracing::warn!(endpoint, error = %e, "wecom API unavailable");
        return;
    };
    let hint = hint.as_deref().unwrap_or("-");
    match e.kind() {
        ErrorKind::TokenRejected => tracing::warn!(
            endpoint, errcode, errmsg, hint,
            "wecom refused the corp access_token; it is renewed once"
        ),
        ErrorKind::Misconfigured => tracing::error!(
            endpoint, errcode, errmsg, hint,
            "wecom refused the app's credentials: check wecom.corp_id / wecom.agent_id / wecom.secret"
        ),
        ErrorKind::IpNotTrusted => tracing::error!(
            endpoint, errcode, errmsg, hint,
            "this server's address is not on the app's trusted IP list (企业可信IP): add it in WeCom's admin console"
        ),
        ErrorKind::RedirectNotTrusted => tracing::error!(
            endpoint, errcode, errmsg, hint,
            "server.public_url's host is not the app's trusted domain (可信域名): set it in WeCom's admin console"
        ),
        ErrorKind::Quota => tracing::error!(endpoint, errcode, errmsg, hint, "wecom API frequency limit reached"),
        _ => tracing::warn!(endpoint, errcode, errmsg, hint, "wecom API error"),
    }
}
