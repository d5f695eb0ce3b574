//! Every way a sign-in can be refused, and the one place each becomes a page or JSON.

use http::{Response, StatusCode};

use crate::body::Body;
use crate::pages::{respond_with, Notice, Reply};

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the state of this sign-in does not match this browser")]
    StateMismatch,
    /// Why, in Chinese and in English.
    #[error("the sign-in request is malformed: {1}")]
    BadRequest(&'static str, &'static str),
    #[error("the user declined to authorize")]
    ConsentRefused,
    #[error("the user did not share the WeChat profile a page needs")]
    ProfileRefused,
    #[error("the page needs the WeChat profile, which only WeChat's browser can grant")]
    ProfileOnlyInWechat,
    #[error("WeChat snapshot-page user (virtual openid)")]
    SnapshotUser,
    #[error("openid not in access.allowed_openids")]
    NotAllowed,
    #[error("the authorization code could not be used twice over")]
    CodeRejected,
    /// A method's finish: the provider no longer takes this code (invalid or expired).
    /// One fresh start per flow may help; after that it is [`SignInError::CodeRejected`].
    #[error("the authorization code is invalid or expired")]
    CodeStale,
    /// A method's finish: the code was already redeemed (a double callback). A browser
    /// already signed in lands; otherwise as [`SignInError::CodeStale`].
    #[error("the authorization code was already used")]
    CodeUsed,
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
    /// Signing in through a hub failed (it has its own pages).
    #[error("{0}")]
    Hub(crate::hub_client::HubClientError),
    /// A WeCom sign-in refused, in WeCom's words (its pages live with WeCom's client).
    #[error("{0}")]
    Wecom(crate::wecom::WecomRefusal),
}

impl SignInError {
    /// How `wxgate_signins_total` counts it (the same text as [`SignInError::code`]).
    pub fn outcome(&self) -> crate::metrics::labels::Signin {
        use crate::metrics::labels::Signin as O;
        match self {
            SignInError::StateMismatch => O::StateMismatch,
            SignInError::BadRequest(..) => O::BadRequest,
            SignInError::ConsentRefused => O::ConsentRefused,
            SignInError::ProfileRefused => O::ProfileRefused,
            SignInError::ProfileOnlyInWechat => O::ScopeRequired,
            SignInError::SnapshotUser => O::SnapshotUser,
            SignInError::NotAllowed => O::AccessDenied,
            SignInError::CodeRejected | SignInError::CodeStale | SignInError::CodeUsed => {
                O::CodeRejected
            }
            SignInError::WechatBusy => O::WechatBusy,
            SignInError::WechatQuota => O::WechatQuota,
            SignInError::WechatUnavailable => O::WechatUnavailable,
            SignInError::Misconfigured => O::Misconfigured,
            SignInError::WechatOther => O::WechatError,
            SignInError::StoreUnavailable => O::SessionStoreUnavailable,
            SignInError::SigninsBusy => O::SigninsBusy,
            SignInError::Internal(_) => O::InternalError,
            SignInError::Hub(e) => e.outcome(),
            SignInError::Wecom(r) => r.outcome(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            SignInError::StateMismatch => "state_mismatch",
            SignInError::BadRequest(..) => "bad_request",
            SignInError::ConsentRefused => "consent_refused",
            SignInError::ProfileRefused => "profile_refused",
            SignInError::ProfileOnlyInWechat => "scope_required",
            SignInError::SnapshotUser => "snapshot_user",
            SignInError::NotAllowed => "access_denied",
            SignInError::CodeRejected | SignInError::CodeStale | SignInError::CodeUsed => {
                "code_rejected"
            }
            SignInError::WechatBusy => "wechat_busy",
            SignInError::WechatQuota => "wechat_quota",
            SignInError::WechatUnavailable => "wechat_unavailable",
            SignInError::Misconfigured => "misconfigured",
            SignInError::WechatOther => "wechat_error",
            SignInError::StoreUnavailable => "session_store_unavailable",
            SignInError::SigninsBusy => "signins_busy",
            SignInError::Internal(_) => "internal_error",
            SignInError::Hub(e) => e.code(),
            SignInError::Wecom(r) => r.code(),
        }
    }

    /// The page (or JSON) for this refusal. `retry` is a same-origin URL that starts over.
    pub fn response(&self, reply: Reply, retry: Option<String>) -> Response<Body> {
        if let SignInError::Hub(e) = self {
            return e.response(reply, retry);
        }
        use StatusCode as S;
        let (status, zh, en, detail_zh, detail, retryable): (S, &str, &str, &str, &str, bool) = match self {
            SignInError::StateMismatch => (S::BAD_REQUEST, "登录已失效", "This sign-in link is no longer valid",
                "这次登录是在另一个浏览器中开始的，或者已经过期。请重新开始。",
                "The sign-in was started in another browser or has expired. Please start again.", true),
            SignInError::BadRequest(zh_why, why) => (S::BAD_REQUEST, "请求无效", "Invalid request", zh_why, why, true),
            SignInError::ConsentRefused => (S::FORBIDDEN, "您已取消授权", "You declined to sign in with WeChat",
                "此应用需要您的微信授权才能让您进入。",
                "This application needs your WeChat authorization to let you in.", true),
            SignInError::ProfileRefused => (S::FORBIDDEN, "您未分享微信资料", "You did not share your WeChat profile",
                "您仍然处于登录状态，但此页面需要您的微信昵称和头像。",
                "You are still signed in, but this page needs your WeChat nickname and avatar.", true),
            SignInError::ProfileOnlyInWechat => (S::FORBIDDEN, "请在微信中打开", "Please open this page in WeChat",
                "此页面需要您的微信昵称和头像，只能在微信中授权。请在微信中打开此链接。",
                "This page needs your WeChat nickname and avatar, which can only be shared from inside WeChat. Please open this link in WeChat.", false),
            SignInError::SnapshotUser => (S::FORBIDDEN, "请使用完整服务", "Please open the full page",
                "您正在浏览微信的快照页。请点击底部的\u{201c}使用完整服务\u{201d}，然后重新登录。",
                "You are viewing a WeChat snapshot page. Tap \u{201c}使用完整服务\u{201d} (use full service) at the bottom, then sign in again.", true),
            SignInError::NotAllowed => (S::FORBIDDEN, "无权访问", "Access denied",
                "您的微信账号无权使用此应用。请向它的管理员申请。",
                "Your WeChat account is not allowed to use this application. Ask its administrator for access.", false),
            SignInError::CodeRejected | SignInError::CodeStale | SignInError::CodeUsed => (S::BAD_REQUEST, "授权已过期", "The WeChat authorization has expired",
                "微信连续两次没有接受登录码。请重试。",
                "WeChat did not accept the sign-in code twice in a row. Please try again.", true),
            SignInError::WechatBusy => (S::SERVICE_UNAVAILABLE, "微信繁忙", "WeChat is busy",
                "微信要求稍后再试。请过一会儿重试。",
                "WeChat asked us to try again later. Please retry in a moment.", true),
            SignInError::WechatQuota => (S::SERVICE_UNAVAILABLE, "登录服务繁忙", "Sign-in is temporarily unavailable",
                "此应用的微信登录次数暂时用完了。请稍后重试。",
                "The WeChat sign-in quota of this application is used up for now. Please retry later.", true),
            SignInError::WechatUnavailable => (S::SERVICE_UNAVAILABLE, "无法连接微信", "WeChat cannot be reached",
                "暂时无法连接微信完成登录。请过一会儿重试。",
                "We could not reach WeChat to complete your sign-in. Please retry in a moment.", true),
            SignInError::Misconfigured => (S::INTERNAL_SERVER_ERROR, "服务配置错误", "Sign-in is misconfigured",
                "微信拒绝了此应用的凭据。原因已记录在日志中，供管理员查看。",
                "WeChat refused this application's credentials. The administrator has been notified in the logs.", false),
            SignInError::WechatOther => (S::BAD_GATEWAY, "微信返回错误", "WeChat returned an error",
                "微信未能完成登录。请重试。",
                "WeChat could not complete the sign-in. Please try again.", true),
            SignInError::StoreUnavailable => (S::SERVICE_UNAVAILABLE, "登录服务暂时不可用", "Sign-in service temporarily unavailable",
                "暂时无法验证您的登录状态。请过一会儿重试，不需要重新登录。",
                "Your session cannot be checked right now. Please retry in a moment; you will not need to sign in again.", false),
            SignInError::SigninsBusy => (S::SERVICE_UNAVAILABLE, "登录人数过多", "Too many sign-ins in progress",
                "现在从电脑登录的人太多了。请过一会儿重试。",
                "Too many people are signing in from computers right now. Please retry in a moment.", true),
            // WeCom's refusals have their pages with WeCom's client.
            SignInError::Wecom(r) => return r.response(reply, retry),
            SignInError::Internal(_) | SignInError::Hub(_) => (S::INTERNAL_SERVER_ERROR, "内部错误", "Internal error",
                "我们这边出了问题。",
                "Something went wrong on our side.", true),
        };
        let n = Notice {
            status,
            code: self.code(),
            title_zh: zh,
            title_en: en,
            detail_zh: detail_zh.into(),
            detail: detail.into(),
            retry: if retryable { retry } else { None },
        };
        let mut resp = respond_with(&n, reply, None);
        if status == S::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("5"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_counted_under_its_own_code() {
        for e in [
            SignInError::StateMismatch,
            SignInError::BadRequest("", ""),
            SignInError::ConsentRefused,
            SignInError::SnapshotUser,
            SignInError::NotAllowed,
            SignInError::CodeRejected,
            SignInError::CodeStale,
            SignInError::CodeUsed,
            SignInError::WechatBusy,
            SignInError::WechatQuota,
            SignInError::WechatUnavailable,
            SignInError::Misconfigured,
            SignInError::WechatOther,
            SignInError::StoreUnavailable,
            SignInError::SigninsBusy,
            SignInError::Internal("x".into()),
        ] {
            assert_eq!(e.outcome().as_str(), e.code(), "{e}");
        }
    }
}
