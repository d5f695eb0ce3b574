//! WeChat's answers read as data: the error type, its classification per WeChat's error
//! table, the request id buried in `errmsg`, and the body parser that trusts neither
//! the status line nor the Content-Type.

use serde::de::DeserializeOwned;

/// A failed call to the WeChat API.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WechatError {
    #[error("wechat {endpoint}: errcode {errcode}: {errmsg}")]
    Api {
        endpoint: &'static str,
        errcode: i64,
        errmsg: String,
        rid: Option<String>,
    },
    #[error("wechat {endpoint}: timed out")]
    Timeout { endpoint: &'static str },
    #[error("wechat {endpoint}: unreachable: {detail}")]
    Unreachable {
        endpoint: &'static str,
        detail: String,
    },
    #[error("wechat {endpoint}: bad response (HTTP {status}): {detail}")]
    BadResponse {
        endpoint: &'static str,
        status: u16,
        detail: String,
    },
}

/// What a caller should do about an error, per WeChat's error-code table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 40029: forged, other appid's, or reused code.
    InvalidCode,
    /// 40163: the code was already exchanged (refresh, back button, double callback).
    CodeUsed,
    /// 42003: the code is older than five minutes.
    CodeExpired,
    /// -1: the platform is busy.
    Busy,
    /// 45009 / 45011: daily or per-minute quota reached.
    Quota,
    /// 40001 / 40125 / 40013: wrong secret or appid.
    Misconfigured,
    /// 40030 / 42002 / 42007: the refresh token is invalid, expired or revoked.
    RefreshEnded,
    /// 48001: the token's scope does not allow this call.
    Unauthorized,
    /// 40164: this server's address is not on the account's IP whitelist.
    IpNotWhitelisted,
    /// No usable answer: timeout, connection failure, or a body that is not WeChat's.
    Unavailable,
    Other,
}

impl ErrorKind {
    pub fn from_errcode(errcode: i64) -> Self {
        match errcode {
            40029 => Self::InvalidCode,
            40163 => Self::CodeUsed,
            42003 => Self::CodeExpired,
            -1 => Self::Busy,
            45009 | 45011 => Self::Quota,
            40001 | 40125 | 40013 => Self::Misconfigured,
            40030 | 42002 | 42007 => Self::RefreshEnded,
            48001 => Self::Unauthorized,
            40164 => Self::IpNotWhitelisted,
            _ => Self::Other,
        }
    }
}

impl WechatError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Api { errcode, .. } => ErrorKind::from_errcode(*errcode),
            Self::Timeout { .. } | Self::Unreachable { .. } | Self::BadResponse { .. } => {
                ErrorKind::Unavailable
            }
        }
    }

    /// WeChat's request id, the one thing its support asks for.
    pub fn rid(&self) -> Option<&str> {
        match self {
            Self::Api { rid, .. } => rid.as_deref(),
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

    /// WeChat's errcode, when it answered with one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Self::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// The account's access_token passed to a `cgi-bin` call is not (or no longer)
    /// good: 40001 (overwritten by a newer fetch elsewhere), 40014 (malformed), 42001
    /// (expired). For the token fetch itself 40001 means a wrong secret instead.
    pub fn token_rejected(&self) -> bool {
        matches!(self.errcode(), Some(40001 | 40014 | 42001))
    }

    /// The `errcode` metric label: the code itself, or how the call failed to get one.
    /// The `errcode` label of `wxgate_wechat_api_calls_total`.
    pub fn errcode_label(&self) -> crate::metrics::labels::Errcode {
        use crate::metrics::labels::Errcode;
        match self {
            Self::Api { errcode, .. } => Errcode::Code(*errcode),
            Self::Timeout { .. } | Self::Unreachable { .. } => Errcode::Transport,
            Self::BadResponse { .. } => Errcode::BadResponse,
        }
    }
}

/// The request id at the end of an `errmsg`: `rid: 6543a1b2-1d2e3f4a-5b6c7d8e` or
/// `hints: [ req_id: AbC123 ]`.
pub fn extract_rid(errmsg: &str) -> Option<String> {
    for marker in ["rid:", "req_id:"] {
        let mut from = 0;
        while let Some(pos) = errmsg[from..].find(marker) {
            let start = from + pos;
            from = start + marker.len();
            // "grid:" is not a rid; the marker must start a word.
            let starts_word = errmsg[..start]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_');
            if !starts_word {
                continue;
            }
            let id: String = errmsg[from..]
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if !id.is_empty() {
                return Some(id);
            }
        }
    }
    None
}

#[derive(serde::Deserialize)]
struct ErrorFields {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

/// Reads one WeChat API answer. WeChat reports errors with HTTP 200 and often labels
/// JSON as `text/plain`, so only the status class and the body itself are trusted:
/// a non-2xx status, HTML, or anything not a JSON object is `BadResponse`, and a
/// non-zero `errcode` is `Api` whatever else the body holds.
pub fn parse_response<T: DeserializeOwned>(
    endpoint: &'static str,
    status: u16,
    body: &[u8],
) -> Result<T, WechatError> {
    let bad = |detail: String| WechatError::BadResponse {
        endpoint,
        status,
        detail,
    };
    if !(200..300).contains(&status) {
        return Err(bad(format!("HTTP status {status}: {}", snippet(body))));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("not JSON ({e}): {}", snippet(body))))?;
    if !value.is_object() {
        return Err(bad(format!("not a JSON object: {}", snippet(body))));
    }
    let fields: ErrorFields = serde_json::from_value(value.clone())
        .map_err(|e| bad(format!("malformed errcode/errmsg: {e}")))?;
    if fields.errcode != 0 {
        return Err(WechatError::Api {
            endpoint,
            errcode: fields.errcode,
            rid: extract_rid(&fields.errmsg),
            errmsg: fields.errmsg,
        });
    }
    serde_json::from_value(value).map_err(|e| bad(format!("unexpected fields: {e}")))
}

/// A short, printable head of a body for logs (never the whole page).
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rid_is_found_in_every_form_wechat_uses() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "invalid code, rid: 6543a1b2-1d2e3f4a-5b6c7d8e",
                Some("6543a1b2-1d2e3f4a-5b6c7d8e"),
            ),
            ("code been used, rid: abc-def", Some("abc-def")),
            ("system error rid:xyz", Some("xyz")),
            (
                "invalid credential, hints: [ req_id: GE3aB5yFe-Xyz ]",
                Some("GE3aB5yFe-Xyz"),
            ),
            ("ok", None),
            ("", None),
            ("grid: 12 cells", None),
            ("rid: ", None),
        ];
        for (msg, want) in cases {
            assert_eq!(extract_rid(msg).as_deref(), *want, "{msg:?}");
        }
    }

    #[test]
    fn errcodes_are_classified_per_wechats_table() {
        let cases: &[(i64, ErrorKind)] = &[
            (40029, ErrorKind::InvalidCode),
            (40163, ErrorKind::CodeUsed),
            (42003, ErrorKind::CodeExpired),
            (-1, ErrorKind::Busy),
            (45009, ErrorKind::Quota),
            (45011, ErrorKind::Quota),
            (40001, ErrorKind::Misconfigured),
            (40125, ErrorKind::Misconfigured),
            (40013, ErrorKind::Misconfigured),
            (40030, ErrorKind::RefreshEnded),
            (42002, ErrorKind::RefreshEnded),
            (42007, ErrorKind::RefreshEnded),
            (48001, ErrorKind::Unauthorized),
            (40164, ErrorKind::IpNotWhitelisted),
            (40003, ErrorKind::Other),
        ];
        for (code, kind) in cases {
            let err = WechatError::Api {
                endpoint: "access_token",
                errcode: *code,
                errmsg: String::new(),
                rid: None,
            };
            assert_eq!(err.kind(), *kind, "{code}");
        }
        for err in [
            WechatError::Timeout { endpoint: "auth" },
            WechatError::Unreachable {
                endpoint: "auth",
                detail: "refused".into(),
            },
            WechatError::BadResponse {
                endpoint: "auth",
                status: 502,
                detail: String::new(),
            },
        ] {
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        }
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Token {
        openid: String,
    }

    #[test]
    fn bodies_are_judged_by_content_not_by_headers() {
        enum Want {
            Value(&'static str),
            Api(i64, Option<&'static str>),
            Bad,
        }
        let cases: &[(u16, &str, Want)] = &[
            (200, r#"{"openid":"o1"}"#, Want::Value("o1")),
            (
                200,
                r#"{"errcode":0,"errmsg":"ok","openid":"o2"}"#,
                Want::Value("o2"),
            ),
            (
                200,
                r#"{"errcode":40163,"errmsg":"code been used, rid: 1-2"}"#,
                Want::Api(40163, Some("1-2")),
            ),
            (
                200,
                r#"{"errcode":-1,"errmsg":"system error"}"#,
                Want::Api(-1, None),
            ),
            (200, "<html><body>502 Bad Gateway</body></html>", Want::Bad),
            (200, "\u{0}\u{1}garbage", Want::Bad),
            (200, "[1,2]", Want::Bad),
            (200, r#"{"errcode":"x"}"#, Want::Bad),
            (200, r#"{"nothing":1}"#, Want::Bad),
            (500, r#"{"openid":"o1"}"#, Want::Bad),
            (302, "", Want::Bad),
        ];
        for (status, body, want) in cases {
            let got = parse_response::<Token>("access_token", *status, body.as_bytes());
            match (want, got) {
                (Want::Value(id), Ok(v)) => assert_eq!(v.openid, *id),
                (
                    Want::Api(code, rid),
                    Err(WechatError::Api {
                        errcode, rid: r, ..
                    }),
                ) => {
                    assert_eq!((errcode, r.as_deref()), (*code, *rid), "{body}")
                }
                (Want::Bad, Err(WechatError::BadResponse { status: s, .. })) => {
                    assert_eq!(s, *status)
                }
                (_, got) => panic!("{status} {body:?}: unexpected {got:?}"),
            }
        }
    }
}
