//! Every way a sign-in can be refused, and the one place each becomes a page or JSON.

use http::{Response, StatusCode};

use crate::body::Body;
use crate::pages::{respond_with, Notice};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the state of this sign-in does not match this browser")]
    StateMismatch,
    #[error("the sign-in request is malformed: {0}")]
    BadRequest(&'static str),
    #[error("the user declined to authorize")]
    ConsentRefused,
    #[error("WeChat snapshot-page user (virtual openid)")]
    SnapshotUser,
    #[error("openid not in access.allowed_openids")]
    NotAllowed,
    #[error("the authorization code could not be used twice over")]
    CodeRejected,
    #[error("WeChat is busy")]
    WechatBusy,
    #[error("WeChat quota reached")]
    WechatQuota,
    #[error("WeChat could not be reached")]
    WechatUnavailable,
    #[error("wxgate is misconfigured for WeChat")]
    Misconfigured,
    #[error("WeChat returned an unexpected error")]
    WechatOther,
    #[error("the session store is unavailable")]
    StoreUnavailable,
    #[error("too many sign-ins in progress")]
    SigninsBusy,
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::StateMismatch => "state_mismatch",
            AuthError::BadRequest(_) => "bad_request",
            AuthError::ConsentRefused => "consent_refused",
            AuthError::SnapshotUser => "snapshot_user",
            AuthError::NotAllowed => "access_denied",
            AuthError::CodeRejected => "code_rejected",
            AuthError::WechatBusy => "wechat_busy",
            AuthError::WechatQuota => "wechat_quota",
            AuthError::WechatUnavailable => "wechat_unavailable",
            AuthError::Misconfigured => "misconfigured",
            AuthError::WechatOther => "wechat_error",
            AuthError::StoreUnavailable => "session_store_unavailable",
            AuthError::SigninsBusy => "signins_busy",
            AuthError::Internal(_) => "internal_error",
        }
    }

    /// The page (or JSON) for this refusal. `retry` is a same-origin URL that starts over.
    pub fn response(&self, json: bool, retry: Option<String>) -> Response<Body> {
        use StatusCode as S;
        let (status, zh, en, detail, retryable): (S, &str, &str, String, bool) = match self {
            AuthError::StateMismatch => (S::BAD_REQUEST, "登录已失效", "This sign-in link is no longer valid",
                "The sign-in was started in another browser or has expired. Please start again.".into(), true),
            AuthError::BadRequest(why) => (S::BAD_REQUEST, "请求无效", "Invalid request", (*why).to_string(), true),
            AuthError::ConsentRefused => (S::FORBIDDEN, "您已取消授权", "You declined to sign in with WeChat",
                "This application needs your WeChat authorization to let you in.".into(), true),
            AuthError::SnapshotUser => (S::FORBIDDEN, "请使用完整服务", "Please open the full page",
                "You are viewing a WeChat snapshot page. Tap \u{201c}使用完整服务\u{201d} (use full service) at the bottom, then sign in again.".into(), true),
            AuthError::NotAllowed => (S::FORBIDDEN, "无权访问", "Access denied",
                "Your WeChat account is not allowed to use this application. Ask its administrator for access.".into(), false),
            AuthError::CodeRejected => (S::BAD_REQUEST, "授权已过期", "The WeChat authorization has expired",
                "WeChat did not accept the sign-in code twice in a row. Please try again.".into(), true),
            AuthError::WechatBusy => (S::SERVICE_UNAVAILABLE, "微信繁忙", "WeChat is busy",
                "WeChat asked us to try again later. Please retry in a moment.".into(), true),
            AuthError::WechatQuota => (S::SERVICE_UNAVAILABLE, "登录服务繁忙", "Sign-in is temporarily unavailable",
                "The WeChat sign-in quota of this application is used up for now. Please retry later.".into(), true),
            AuthError::WechatUnavailable => (S::SERVICE_UNAVAILABLE, "无法连接微信", "WeChat cannot be reached",
                "We could not reach WeChat to complete your sign-in. Please retry in a moment.".into(), true),
            AuthError::Misconfigured => (S::INTERNAL_SERVER_ERROR, "服务配置错误", "Sign-in is misconfigured",
                "WeChat refused this application's credentials. The administrator has been notified in the logs.".into(), false),
            AuthError::WechatOther => (S::BAD_GATEWAY, "微信返回错误", "WeChat returned an error",
                "WeChat could not complete the sign-in. Please try again.".into(), true),
            AuthError::StoreUnavailable => (S::SERVICE_UNAVAILABLE, "登录服务暂时不可用", "Sign-in service temporarily unavailable",
                "Your session cannot be checked right now. Please retry in a moment; you will not need to sign in again.".into(), false),
            AuthError::SigninsBusy => (S::SERVICE_UNAVAILABLE, "登录人数过多", "Too many sign-ins in progress",
                "Too many people are signing in from computers right now. Please retry in a moment.".into(), true),
            AuthError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "内部错误", "Internal error",
                "Something went wrong on our side.".into(), true),
        };
        let n = Notice {
            status,
            code: self.code(),
            title_zh: zh,
            title_en: en,
            detail,
            retry: if retryable { retry } else { None },
        };
        let mut resp = respond_with(&n, json, None);
        if status == S::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("5"),
            );
        }
        resp
    }
}
