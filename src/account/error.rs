//! Every way an account service can fail, and the one place each becomes JSON.

use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::body::Body;
use crate::pages::{respond_with, Notice, Reply};
use crate::session::StoreError;
use crate::wechat::WechatError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AccountError {
    /// WeChat answered with an errcode, or not at all.
    #[error("{0}")]
    Wechat(#[from] WechatError),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Another replica held the renewal lock for its whole lifetime.
    #[error("another replica is renewing and has not finished")]
    Busy,
    /// `[account]` is absent or `token = "off"`.
    #[error("the account services are off")]
    Off,
    /// No `account.token_endpoint_secret`: the token is not handed out.
    #[error("the token endpoint is off")]
    EndpointOff,
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} is not in account.jssdk_hosts")]
    HostNotAllowed(String),
}

impl AccountError {
    pub fn code(&self) -> &'static str {
        match self {
            AccountError::Wechat(e) if e.errcode().is_some() => "wechat_error",
            AccountError::Wechat(_) => "wechat_unavailable",
            AccountError::Store(_) => "store_unavailable",
            AccountError::Busy => "renewal_busy",
            AccountError::Off => "account_services_off",
            AccountError::EndpointOff => "token_endpoint_off",
            AccountError::Unauthorized => "unauthorized",
            AccountError::BadRequest(_) => "bad_request",
            AccountError::HostNotAllowed(_) => "url_not_allowed",
        }
    }

    /// The JSON answer. `operator`: the admin listener, where WeChat's own message (it
    /// may name this server's address) is shown too; the public listener gets the
    /// errcode and the request id only.
    pub fn response(&self, operator: bool) -> Response<Body> {
        use StatusCode as S;
        let (status, zh, en, detail_zh, detail): (S, &str, &str, String, String) = match self {
            AccountError::Wechat(e) => (
                S::SERVICE_UNAVAILABLE,
                "微信没有发放公众号的凭证",
                "WeChat did not hand out the account's credential",
                match e.errcode() {
                    Some(code) => format!("微信返回错误码 {code}。"),
                    None => "无法连接微信。".into(),
                },
                match e.errcode() {
                    Some(code) => format!("WeChat answered errcode {code}"),
                    None => "WeChat could not be reached".into(),
                },
            ),
            AccountError::Store(_) => (
                S::SERVICE_UNAVAILABLE,
                "会话存储不可用",
                "The session store is unavailable",
                "暂时无法读取共享的凭证。".into(),
                "The shared token cannot be read right now.".into(),
            ),
            AccountError::Busy => (
                S::SERVICE_UNAVAILABLE,
                "其他副本正在更新凭证",
                "Renewal in progress elsewhere",
                "另一个副本正在更新凭证，请稍后重试。".into(),
                "Another replica is renewing the credential. Retry in a moment.".into(),
            ),
            AccountError::Off => (
                S::NOT_FOUND,
                "公众号服务未开启",
                "Account services are off",
                "在 [account] 中设置 token = \"stable\" 或 \"classic\" 以开启。".into(),
                "Set [account] token = \"stable\" or \"classic\" to enable them.".into(),
            ),
            AccountError::EndpointOff => (
                S::NOT_FOUND,
                "凭证接口未开启",
                "The token endpoint is off",
                "设置 account.token_endpoint_secret 后，后端才能取得凭证。".into(),
                "Set account.token_endpoint_secret to hand the token to backends.".into(),
            ),
            AccountError::Unauthorized => (
                S::UNAUTHORIZED,
                "需要 Bearer 令牌",
                "Bearer token required",
                "请发送 Authorization: Bearer <account.token_endpoint_secret>。".into(),
                "Send Authorization: Bearer <account.token_endpoint_secret>.".into(),
            ),
            AccountError::BadRequest(why) => (
                S::BAD_REQUEST,
                "请求无效",
                "Bad request",
                format!("请求无效：{why}"),
                why.clone(),
            ),
            AccountError::HostNotAllowed(host) => (
                S::FORBIDDEN,
                "不允许的网址",
                "URL not allowed",
                format!("{host} 不在 account.jssdk_hosts 中。"),
                format!("{host} is not in account.jssdk_hosts."),
            ),
        };
        let mut extra = json!({});
        if let AccountError::Wechat(e) = self {
            extra["errcode"] = json!(e.errcode());
            extra["rid"] = json!(e.rid());
            if operator {
                extra["wechat_error"] = json!(e.to_string());
            }
        }
        let n = Notice {
            status,
            code: self.code(),
            title_zh: zh,
            title_en: en,
            detail_zh,
            detail,
            retry: None,
        };
        let mut resp = respond_with(&n, Reply::Json, Some(extra));
        match status {
            S::SERVICE_UNAVAILABLE => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            S::UNAUTHORIZED => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"wxgate\""),
                );
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn json_of(resp: Response<Body>) -> (StatusCode, serde_json::Value) {
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn wechat_failures_are_503_with_errcode_and_rid() {
        let quota = AccountError::Wechat(WechatError::Api {
            endpoint: "token",
            errcode: 45009,
            errmsg: "reach max api daily quota limit, rid: 1-2-3".into(),
            rid: Some("1-2-3".into()),
        });
        let (status, body) = json_of(quota.response(true)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "wechat_error");
        assert_eq!(body["errcode"], 45009);
        assert_eq!(body["rid"], "1-2-3");
        assert!(body["wechat_error"].as_str().unwrap().contains("quota"));
        let (_, public) = json_of(quota.response(false)).await;
        assert_eq!(public["errcode"], 45009);
        assert!(public.get("wechat_error").is_none(), "{public}");

        let down = AccountError::Wechat(WechatError::Timeout { endpoint: "token" });
        let (status, body) = json_of(down.response(true)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "wechat_unavailable");
        assert_eq!(body["errcode"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn each_refusal_has_its_status() {
        let cases = [
            (AccountError::Unauthorized, StatusCode::UNAUTHORIZED),
            (AccountError::EndpointOff, StatusCode::NOT_FOUND),
            (AccountError::Off, StatusCode::NOT_FOUND),
            (
                AccountError::BadRequest("x".into()),
                StatusCode::BAD_REQUEST,
            ),
            (
                AccountError::HostNotAllowed("evil.example".into()),
                StatusCode::FORBIDDEN,
            ),
            (AccountError::Busy, StatusCode::SERVICE_UNAVAILABLE),
        ];
        for (e, want) in cases {
            let resp = e.response(false);
            assert_eq!(resp.status(), want, "{e}");
            if want == StatusCode::UNAUTHORIZED {
                assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
            }
        }
    }
}
