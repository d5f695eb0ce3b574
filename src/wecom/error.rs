//! WeCom's answers read as data: the error type, what each errcode asks of wxgate, and
//! the request id WeCom buries in `errmsg` (`hint: [...]`), which its support asks for.
//!
//! The body itself is read by the WeChat client's parser: WeCom shares WeChat's wire
//! habits (errors with HTTP 200, `errcode`/`errmsg` beside the fields).

use crate::wechat::WechatError;

/// A failed call to WeCom's API.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WecomError {
    #[error("wecom {endpoint}: errcode {errcode}: {errmsg}")]
    Api {
        endpoint: &'static str,
        errcode: i64,
        errmsg: String,
        /// WeCom's request id, from `errmsg`'s `hint: [...]`.
        hint: Option<String>,
    },
    #[error("wecom {endpoint}: timed out")]
    Timeout { endpoint: &'static str },
    #[error("wecom {endpoint}: unreachable: {detail}")]
    Unreachable {
        endpoint: &'static str,
        detail: String,
    },
    #[error("wecom {endpoint}: bad response (HTTP {status}): {detail}")]
    BadResponse {
        endpoint: &'static str,
        status: u16,
        detail: String,
    },
}

/// What an errcode asks of wxgate (WeCom's global error-code table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 40029 (also a code used twice: WeCom has no separate "used"), 41008 missing code.
    InvalidCode,
    /// 40014 malformed / 42001 expired access_token: fetch a new one, once.
    TokenRejected,
    /// -1: busy.
    Busy,
    /// 45009 / 45033 / 45011: frequency or concurrency limit.
    Quota,
    /// 40001 / 40091 secret, 40013 CorpID, 40056 AgentId, 48002 API forbidden to the app.
    Misconfigured,
    /// 50001: redirect_uri's domain is not the app's trusted domain.
    RedirectNotTrusted,
    /// 60020: this server's address is not on the app's trusted IP list.
    IpNotTrusted,
    /// 60011: the member is outside the app's visible range.
    OutOfRange,
    /// 60111 / 46004: no such member.
    NoSuchUser,
    /// 40093 / 40129: the user_ticket is invalid or older than 30 minutes.
    TicketInvalid,
    /// No usable answer.
    Unavailable,
    Other,
}

impl ErrorKind {
    pub fn from_errcode(errcode: i64) -> Self {
        match errcode {
            40029 | 41008 => Self::InvalidCode,
            40014 | 42001 => Self::TokenRejected,
            -1 => Self::Busy,
            45009 | 45011 | 45033 => Self::Quota,
            40001 | 40091 | 40013 | 40056 | 48002 => Self::Misconfigured,
            50001 => Self::RedirectNotTrusted,
            60020 => Self::IpNotTrusted,
            60011 => Self::OutOfRange,
            60111 | 46004 => Self::NoSuchUser,
            40093 | 40129 => Self::TicketInvalid,
            _ => Self::Other,
        }
    }
}

impl WecomError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Api { errcode, .. } => ErrorKind::from_errcode(*errcode),
            _ => ErrorKind::Unavailable,
        }
    }

    pub fn errcode(&self) -> Option<i64> {
        match self {
            Self::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// WeCom's request id, when it gave one.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Self::Api { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }

    pub fn endpoint(&self) -> &'static str {
        match self {
            Self::Api { endpoint, .. }
            | Self::Timeout { endpoint }
            | Self::Unreachable { endpoint, .. }
            | Self::BadResponse { endpoint, .. } => endpoint,
        }
    }

    /// The corp access_token passed to a call is not (or no longer) good.
    pub fn token_rejected(&self) -> bool {
        self.kind() == ErrorKind::TokenRejected
    }

    /// The `errcode` metric label.
    pub fn metric_label(&self) -> crate::metrics::labels::Errcode {
        use crate::metrics::labels::Errcode;
        match self {
            Self::Api { errcode, .. } => Errcode::Code(*errcode),
            Self::Timeout { .. } | Self::Unreachable { .. } => Errcode::Transport,
            Self::BadResponse { .. } => Errcode::BadResponse,
        }
    }
}

/// The shared body parser speaks WeChat; the same failure said in WeCom's words.
impl From<WechatError> for WecomError {
    fn from(e: WechatError) -> Self {
        match e {
            WechatError::Api {
                endpoint,
                errcode,
                errmsg,
                ..
            } => WecomError::Api {
                endpoint,
                errcode,
                hint: extract_hint(&errmsg),
                errmsg,
            },
            WechatError::Timeout { endpoint } => WecomError::Timeout { endpoint },
            WechatError::Unreachable { endpoint, detail } => {
                WecomError::Unreachable { endpoint, detail }
            }
            WechatError::BadResponse {
                endpoint,
                status,
                detail,
            } => WecomError::BadResponse {
                endpoint,
                status,
                detail,
            },
        }
    }
}

/// The request id in an `errmsg` such as `invalid code, hint: [1722233100_23_2d3b...],
/// from ip: 1.2.3.4, more info at https://open.work.weixin.qq.com/devtool/query?e=40029`.
pub fn extract_hint(errmsg: &str) -> Option<String> {
    let start = errmsg.find("hint: [")? + "hint: [".len();
    let id: String = errmsg[start..]
        .chars()
        .take_while(|c| *c != ']')
        .take(128)
        .collect();
    let id = id.trim();
    (!id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    .then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_id_is_read_from_wecom_hints() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "invalid code, hint: [1722233100_23_2d3b0b2b7a9e8c2f], from ip: 1.2.3.4, more info at https://open.work.weixin.qq.com/devtool/query?e=40029",
                Some("1722233100_23_2d3b0b2b7a9e8c2f"),
            ),
            ("access_token expired, hint: [abc-12], from ip: ::1", Some("abc-12")),
            ("ok", None),
            ("hint: []", None),
            ("hint: [<script>]", None),
            ("no closing hint: [abc", Some("abc")),
        ];
        for (msg, want) in cases {
            assert_eq!(extract_hint(msg).as_deref(), *want, "{msg:?}");
        }
    }

    #[test]
    fn errcodes_are_classified_per_wecoms_table() {
        let cases: &[(i64, ErrorKind)] = &[
            (40029, ErrorKind::InvalidCode),
            (41008, ErrorKind::InvalidCode),
            (40014, ErrorKind::TokenRejected),
            (42001, ErrorKind::TokenRejected),
            (-1, ErrorKind::Busy),
            (45009, ErrorKind::Quota),
            (45033, ErrorKind::Quota),
            (40001, ErrorKind::Misconfigured),
            (40013, ErrorKind::Misconfigured),
            (40056, ErrorKind::Misconfigured),
            (50001, ErrorKind::RedirectNotTrusted),
            (60020, ErrorKind::IpNotTrusted),
            (60011, ErrorKind::OutOfRange),
            (60111, ErrorKind::NoSuchUser),
            (40129, ErrorKind::TicketInvalid),
            (12345, ErrorKind::Other),
        ];
        for (code, kind) in cases {
            assert_eq!(ErrorKind::from_errcode(*code), *kind, "{code}");
        }
    }

    #[test]
    fn a_wechat_shaped_failure_becomes_a_wecom_one_with_its_hint() {
        let e: WecomError = WechatError::Api {
            endpoint: "wecom_getuserinfo",
            errcode: 42001,
            errmsg: "access_token expired, hint: [h-1], from ip: 127.0.0.1".into(),
            rid: None,
        }
        .into();
        assert!(e.token_rejected());
        assert_eq!(e.hint(), Some("h-1"));
        assert_eq!(e.errcode(), Some(42001));
        let e: WecomError = WechatError::Timeout {
            endpoint: "wecom_gettoken",
        }
        .into();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(e.metric_label().text(), "transport");
    }
}
