//! Why a sign-in through the hub failed, and the page each reason gets.

use http::{Response, StatusCode};

use crate::body::Body;
use crate::pages::{respond, Notice, Reply};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubClientError {
    /// The hub did not answer, or answered 5xx.
    #[error("the sign-in hub cannot be reached: {0}")]
    Unreachable(String),
    /// The hub's discovery document or keys are not what a hub publishes.
    #[error("the sign-in hub's metadata: {0}")]
    Discovery(String),
    /// The hub refused the code (expired, used): trying again helps.
    #[error("the sign-in hub refused the code: {0}")]
    Refused(String),
    /// The hub refused this wxgate's client credentials.
    #[error("the sign-in hub refused hub_client.client_id / client_secret ({0})")]
    Misconfigured(String),
    #[error("the sign-in hub's id_token: {0}")]
    BadIdToken(String),
}

impl HubClientError {
    /// An RFC 6749 §5.2 error code from the token endpoint.
    pub fn refused(error: &str) -> HubClientError {
        match error {
            "invalid_client" | "unauthorized_client" => HubClientError::Misconfigured(error.into()),
            other => HubClientError::Refused(other.into()),
        }
    }

    /// How the sign-in ended, for `wxgate_signins_total`.
    pub fn outcome(&self) -> crate::metrics::labels::Signin {
        use crate::metrics::labels::Signin as O;
        match self {
            HubClientError::Unreachable(_) => O::HubUnavailable,
            HubClientError::Discovery(_) | HubClientError::Misconfigured(_) => O::Misconfigured,
            HubClientError::Refused(_) => O::CodeRejected,
            HubClientError::BadIdToken(_) => O::HubBadAnswer,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            HubClientError::Unreachable(_) => "hub_unavailable",
            HubClientError::Discovery(_) | HubClientError::Misconfigured(_) => "misconfigured",
            HubClientError::Refused(_) => "code_rejected",
            HubClientError::BadIdToken(_) => "hub_bad_answer",
        }
    }

    /// The page (or JSON); `retry` starts the sign-in over.
    pub fn response(&self, reply: Reply, retry: Option<String>) -> Response<Body> {
        use StatusCode as S;
        let (status, title_zh, title_en, detail_zh, detail, retryable) = match self {
            HubClientError::Unreachable(_) => (
                S::SERVICE_UNAVAILABLE,
                "登录中心暂时无法访问",
                "The sign-in hub is unavailable",
                "请稍后再试。",
                "Please try again in a moment.",
                true,
            ),
            HubClientError::Refused(_) => (
                S::BAD_REQUEST,
                "登录已过期",
                "This sign-in has expired",
                "登录中心没有接受这次登录。请重试。",
                "The sign-in hub did not accept this sign-in. Please try again.",
                true,
            ),
            HubClientError::Discovery(_) | HubClientError::Misconfigured(_) => (
                S::INTERNAL_SERVER_ERROR,
                "登录配置有误",
                "Sign-in is misconfigured",
                "此应用与登录中心的配置不一致。请联系管理员。",
                "This application and its sign-in hub do not agree on their configuration. Please tell the administrator.",
                false,
            ),
            HubClientError::BadIdToken(_) => (
                S::BAD_GATEWAY,
                "登录无法验证",
                "The sign-in could not be verified",
                "登录中心的答复没有通过验证。请重试。",
                "The sign-in hub's answer did not verify. Please try again.",
                true,
            ),
        };
        respond(
            &Notice {
                status,
                code: self.code(),
                title_zh,
                title_en,
                detail_zh: detail_zh.into(),
                detail: detail.into(),
                retry: retry.filter(|_| retryable),
            },
            reply,
        )
    }
}
