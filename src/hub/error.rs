//! Every refusal of the hub, and the one place each becomes an answer:
//! - at the authorize endpoint, before the client and its redirect_uri are known good,
//!   a page at the hub ([`PageError`]): never a redirect, so a forged request cannot
//!   make the hub send anyone anywhere;
//! - after that, the error sent back to the app's redirect_uri (RFC 6749 §4.1.2.1,
//!   [`RedirectError`]);
//! - at the token endpoint, RFC 6749 §5.2 JSON ([`TokenError`]); at userinfo, RFC 6750
//!   §3.1 ([`UserinfoError`]).

use http::header::{HeaderValue, CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use serde_json::json;

use crate::body::Body;
use crate::pages::{respond, Notice, Reply};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("unknown or missing client_id")]
    UnknownClient,
    #[error("redirect_uri is missing or not registered for this client")]
    BadRedirectUri,
    #[error("a parameter is given twice: {0}")]
    Repeated(&'static str),
    #[error("the pending sign-in is unknown or expired")]
    ResumeExpired,
    #[error("the sign-in at the hub did not complete")]
    SignInIncomplete,
    #[error("the session store is unavailable")]
    StoreUnavailable,
}

impl PageError {
    pub fn code(&self) -> &'static str {
        match self {
            PageError::UnknownClient => "unknown_client",
            PageError::BadRedirectUri => "invalid_redirect_uri",
            PageError::Repeated(_) => "invalid_request",
            PageError::ResumeExpired => "sign_in_expired",
            PageError::SignInIncomplete => "sign_in_incomplete",
            PageError::StoreUnavailable => "session_store_unavailable",
        }
    }

    pub fn response(&self, reply: Reply) -> Response<Body> {
        use StatusCode as S;
        let (status, title_zh, title_en, detail_zh, detail) = match self {
            PageError::UnknownClient => (
                S::BAD_REQUEST,
                "未知的应用",
                "Unknown application",
                "发起登录的应用没有在此登录中心登记。".to_string(),
                "The application that sent you here is not registered with this sign-in hub."
                    .to_string(),
            ),
            PageError::BadRedirectUri => (
                S::BAD_REQUEST,
                "回调地址无效",
                "Invalid return address",
                "应用提供的回调地址（redirect_uri）没有登记，登录中心不会把您送往那里。".to_string(),
                "The application's return address (redirect_uri) is not registered, so the hub will not send you there."
                    .to_string(),
            ),
            PageError::Repeated(name) => (
                S::BAD_REQUEST,
                "请求无效",
                "Invalid request",
                format!("参数 {name} 出现了不止一次。"),
                format!("The parameter {name} is given more than once."),
            ),
            PageError::ResumeExpired => (
                S::BAD_REQUEST,
                "登录已过期",
                "This sign-in has expired",
                "请回到应用重新登录。".to_string(),
                "Please go back to the application and sign in again.".to_string(),
            ),
            PageError::SignInIncomplete => (
                S::BAD_REQUEST,
                "登录未完成",
                "The sign-in did not complete",
                "登录中心没有收到您的登录。请确认浏览器允许 Cookie，然后回到应用重新登录。".to_string(),
                "The hub did not receive your sign-in. Check that this browser accepts cookies, then sign in again from the application."
                    .to_string(),
            ),
            PageError::StoreUnavailable => (
                S::SERVICE_UNAVAILABLE,
                "服务暂时不可用",
                "Temporarily unavailable",
                "登录服务暂时无法访问会话存储。请稍后再试。".to_string(),
                "The sign-in service cannot reach its session store right now. Please try again shortly."
                    .to_string(),
            ),
        };
        no_store(respond(
            &Notice {
                status,
                code: self.code(),
                title_zh,
                title_en,
                detail_zh,
                detail,
                retry: None,
            },
            reply,
        ))
    }
}

/// An error the app hears about at its redirect_uri (with its `state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectError {
    /// RFC 6749 §4.1.2.1 / OpenID Connect Core §3.1.2.6 error code.
    pub error: &'static str,
    pub description: &'static str,
}

impl RedirectError {
    pub const fn new(error: &'static str, description: &'static str) -> Self {
        Self { error, description }
    }
}

/// RFC 6749 §5.2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    #[error("invalid_client: {0}")]
    InvalidClient(&'static str),
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error("the session store is unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient(_) => "invalid_client",
            TokenError::InvalidGrant(_) => "invalid_grant",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::Unavailable => "temporarily_unavailable",
            TokenError::Internal => "server_error",
        }
    }

    pub fn response(&self) -> Response<Body> {
        let (status, description) = match self {
            TokenError::InvalidRequest(d) => (StatusCode::BAD_REQUEST, *d),
            TokenError::InvalidClient(d) => (StatusCode::UNAUTHORIZED, *d),
            TokenError::InvalidGrant(d) => (StatusCode::BAD_REQUEST, *d),
            TokenError::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "grant_type must be authorization_code",
            ),
            TokenError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the session store is unavailable; try again shortly",
            ),
            TokenError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        };
        let body = json!({ "error": self.code(), "error_description": description });
        let mut resp = no_store(crate::pages::json_response(status, &body));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"wxgate\""),
            );
        }
        resp
    }
}

/// RFC 6750 §3.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserinfoError {
    #[error("no access token")]
    Missing,
    #[error("the access token is unknown, expired or revoked")]
    InvalidToken,
    #[error("the session store is unavailable")]
    Unavailable,
}

impl UserinfoError {
    pub fn response(&self) -> Response<Body> {
        let (status, challenge, body) = match self {
            UserinfoError::Missing => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"wxgate\"",
                json!({ "error": "invalid_request", "error_description": "send the access token as Authorization: Bearer" }),
            ),
            UserinfoError::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"wxgate\", error=\"invalid_token\"",
                json!({ "error": "invalid_token", "error_description": "the access token is unknown, expired or revoked" }),
            ),
            UserinfoError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "",
                json!({ "error": "temporarily_unavailable", "error_description": "the session store is unavailable; try again shortly" }),
            ),
        };
        let mut resp = no_store(crate::pages::json_response(status, &body));
        if !challenge.is_empty() {
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        resp
    }
}

/// Nothing the hub answers about codes and tokens may be cached (RFC 6749 §5.1).
pub fn no_store(mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}
