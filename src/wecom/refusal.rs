//! Every way a WeCom sign-in can be refused, and the one place each becomes a page or
//! JSON, in WeCom's words (企业微信), like the WeChat sign-in's own refusals.

use http::{Response, StatusCode};

use super::error::{ErrorKind, WecomError};
use crate::body::Body;
use crate::pages::{respond_with, Notice, Reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WecomRefusal {
    #[error("not a member of the organisation")]
    NotMember,
    #[error("the member's departments are not allowed")]
    DepartmentNotAllowed,
    #[error("the member is outside the app's visible range (60011)")]
    OutOfRange,
    #[error("the code was refused twice (40029)")]
    CodeRejected,
    #[error("redirect_uri's domain is not the app's trusted domain (50001)")]
    RedirectNotTrusted,
    #[error("this server's address is not on the app's trusted IP list (60020)")]
    IpNotTrusted,
    #[error("WeCom refused the app's credentials")]
    Misconfigured,
    #[error("WeCom is busy")]
    Busy,
    #[error("WeCom's frequency limit was reached")]
    Quota,
    #[error("WeCom could not be reached")]
    Unavailable,
    #[error("WeCom returned an unexpected error")]
    Other,
    /// A computer's browser with `desktop.mode = "off"`.
    #[error("sign-in works only inside the WeCom app here")]
    OpenInWecom,
}

impl WecomRefusal {
    /// What a failed call means for the member in front of the page. A refused code is
    /// the flow's to retry once before it comes to this.
    pub fn from_error(e: &WecomError) -> Self {
        match e.kind() {
            ErrorKind::InvalidCode | ErrorKind::TicketInvalid => Self::CodeRejected,
            ErrorKind::OutOfRange | ErrorKind::NoSuchUser => Self::OutOfRange,
            ErrorKind::RedirectNotTrusted => Self::RedirectNotTrusted,
            ErrorKind::IpNotTrusted => Self::IpNotTrusted,
            ErrorKind::Misconfigured | ErrorKind::TokenRejected => Self::Misconfigured,
            ErrorKind::Busy => Self::Busy,
            ErrorKind::Quota => Self::Quota,
            ErrorKind::Unavailable => Self::Unavailable,
            ErrorKind::Other => Self::Other,
        }
    }

    /// How `wxgate_signins_total` counts it: the same text as [`WecomRefusal::code`].
    pub fn outcome(self) -> crate::metrics::labels::Signin {
        use crate::metrics::labels::Signin as O;
        match self {
            Self::NotMember => O::NotAMember,
            Self::DepartmentNotAllowed => O::DepartmentNotAllowed,
            Self::OutOfRange => O::NotInVisibleRange,
            Self::CodeRejected => O::CodeRejected,
            Self::RedirectNotTrusted => O::RedirectUriNotTrusted,
            Self::IpNotTrusted => O::IpNotTrusted,
            Self::Misconfigured => O::Misconfigured,
            Self::Busy => O::WecomBusy,
            Self::Quota => O::WecomQuota,
            Self::Unavailable => O::WecomUnavailable,
            Self::Other => O::WecomError,
            Self::OpenInWecom => O::OpenInWecom,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::NotMember => "not_a_member",
            Self::DepartmentNotAllowed => "department_not_allowed",
            Self::OutOfRange => "not_in_visible_range",
            Self::CodeRejected => "code_rejected",
            Self::RedirectNotTrusted => "redirect_uri_not_trusted",
            Self::IpNotTrusted => "ip_not_trusted",
            Self::Misconfigured => "misconfigured",
            Self::Busy => "wecom_busy",
            Self::Quota => "wecom_quota",
            Self::Unavailable => "wecom_unavailable",
            Self::Other => "wecom_error",
            Self::OpenInWecom => "open_in_wecom",
        }
    }

    /// The page (or JSON). `retry`: a same-origin URL that starts over, offered where
    /// trying again can help.
    pub fn response(self, reply: Reply, retry: Option<String>) -> Response<Body> {
        use StatusCode as S;
        let (status, zh, en, detail_zh, detail, retryable): (S, &str, &str, &str, &str, bool) = match self {
            Self::NotMember => (S::FORBIDDEN, "仅限本企业成员", "For members of this organisation only",
                "您登录的企业微信账号不是本企业的成员。请用本企业的企业微信账号打开。",
                "The WeCom account you signed in with is not a member of this organisation. Open this with your organisation's WeCom account.", false),
            Self::DepartmentNotAllowed => (S::FORBIDDEN, "您所在的部门无权访问", "Your department has no access",
                "此应用只对部分部门开放。请向它的管理员申请。",
                "This application is open to some departments only. Ask its administrator for access.", false),
            Self::OutOfRange => (S::FORBIDDEN, "您不在此应用的可见范围内", "You are outside this app's visible range",
                "企业微信没有把此应用开放给您。请管理员在管理后台把您加入应用的可见范围。",
                "WeCom has not opened this app to you. An administrator can add you to the app's visible range in the admin console.", false),
            Self::CodeRejected => (S::BAD_REQUEST, "授权已过期", "The WeCom authorization has expired",
                "企业微信连续两次没有接受登录码。请重试。",
                "WeCom did not accept the sign-in code twice in a row. Please try again.", true),
            Self::RedirectNotTrusted => (S::INTERNAL_SERVER_ERROR, "服务配置错误：可信域名", "Sign-in is misconfigured: trusted domain",
                "此网站的域名不是企业微信应用的可信域名（错误码 50001）。原因已记录在日志中，供管理员查看。",
                "This site's domain is not the WeCom app's trusted domain (errcode 50001). The administrator has been notified in the logs.", false),
            Self::IpNotTrusted => (S::INTERNAL_SERVER_ERROR, "服务配置错误：可信 IP", "Sign-in is misconfigured: trusted IP",
                "此服务器的地址不在企业微信应用的可信 IP 列表中（错误码 60020）。原因已记录在日志中，供管理员查看。",
                "This server's address is not on the WeCom app's trusted IP list (errcode 60020). The administrator has been notified in the logs.", false),
            Self::Misconfigured => (S::INTERNAL_SERVER_ERROR, "服务配置错误", "Sign-in is misconfigured",
                "企业微信拒绝了此应用的凭据。原因已记录在日志中，供管理员查看。",
                "WeCom refused this application's credentials. The administrator has been notified in the logs.", false),
            Self::Busy => (S::SERVICE_UNAVAILABLE, "企业微信繁忙", "WeCom is busy",
                "企业微信要求稍后再试。请过一会儿重试。",
                "WeCom asked us to try again later. Please retry in a moment.", true),
            Self::Quota => (S::SERVICE_UNAVAILABLE, "登录服务繁忙", "Sign-in is temporarily unavailable",
                "此应用调用企业微信的次数暂时用完了。请稍后重试。",
                "This application has reached WeCom's call limit for now. Please retry later.", true),
            Self::Unavailable => (S::SERVICE_UNAVAILABLE, "无法连接企业微信", "WeCom cannot be reached",
                "暂时无法连接企业微信完成登录。请过一会儿重试。",
                "We could not reach WeCom to complete your sign-in. Please retry in a moment.", true),
            Self::Other => (S::BAD_GATEWAY, "企业微信返回错误", "WeCom returned an error",
                "企业微信未能完成登录。请重试。",
                "WeCom could not complete the sign-in. Please try again.", true),
            Self::OpenInWecom => (S::OK, "请在企业微信中打开", "Please open this in WeCom",
                "此应用只能在企业微信中登录。请把链接发到企业微信里打开。",
                "This application signs you in inside the WeCom app only. Send the link to yourself in WeCom and open it there.", false),
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

    /// Every refusal, for the test that reads every page.
    pub const ALL: [WecomRefusal; 12] = [
        Self::NotMember,
        Self::DepartmentNotAllowed,
        Self::OutOfRange,
        Self::CodeRejected,
        Self::RedirectNotTrusted,
        Self::IpNotTrusted,
        Self::Misconfigured,
        Self::Busy,
        Self::Quota,
        Self::Unavailable,
        Self::Other,
        Self::OpenInWecom,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_is_counted_under_the_code_its_json_names() {
        use WecomRefusal as R;
        for r in [
            R::NotMember,
            R::DepartmentNotAllowed,
            R::OutOfRange,
            R::CodeRejected,
            R::RedirectNotTrusted,
            R::IpNotTrusted,
            R::Misconfigured,
            R::Busy,
            R::Quota,
            R::Unavailable,
            R::Other,
            R::OpenInWecom,
        ] {
            assert_eq!(r.outcome().as_str(), r.code(), "{r:?}");
        }
    }

    fn api(errcode: i64) -> WecomError {
        WecomError::Api {
            endpoint: "wecom_getuserinfo",
            errcode,
            errmsg: String::new(),
            hint: None,
        }
    }

    #[test]
    fn wecoms_errcodes_get_their_pages() {
        let cases: &[(i64, WecomRefusal, u16)] = &[
            (50001, WecomRefusal::RedirectNotTrusted, 500),
            (60020, WecomRefusal::IpNotTrusted, 500),
            (40029, WecomRefusal::CodeRejected, 400),
            (40001, WecomRefusal::Misconfigured, 500),
            (42001, WecomRefusal::Misconfigured, 500),
            (60011, WecomRefusal::OutOfRange, 403),
            (-1, WecomRefusal::Busy, 503),
            (45009, WecomRefusal::Quota, 503),
            (99999, WecomRefusal::Other, 502),
        ];
        for (code, want, status) in cases {
            let got = WecomRefusal::from_error(&api(*code));
            assert_eq!(got, *want, "{code}");
            assert_eq!(
                got.response(Reply::Page, None).status().as_u16(),
                *status,
                "{code}"
            );
        }
        let down = WecomError::Timeout {
            endpoint: "wecom_gettoken",
        };
        assert_eq!(WecomRefusal::from_error(&down), WecomRefusal::Unavailable);
    }

    #[tokio::test]
    async fn only_refusals_that_may_pass_offer_to_try_again() {
        use http_body_util::BodyExt as _;
        for r in WecomRefusal::ALL {
            let resp = r.response(Reply::Page, Some("/_wxgate/start?rd=/x".into()));
            let page = resp.into_body().collect().await.unwrap().to_bytes();
            let offered = String::from_utf8_lossy(&page).contains("/_wxgate/start?rd=/x");
            let may_pass = matches!(
                r,
                WecomRefusal::CodeRejected
                    | WecomRefusal::Busy
                    | WecomRefusal::Quota
                    | WecomRefusal::Unavailable
                    | WecomRefusal::Other
            );
            assert_eq!(offered, may_pass, "{r:?}");
        }
    }
}
