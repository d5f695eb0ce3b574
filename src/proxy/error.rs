//! Why a request could not be forwarded, and the one place that turns it into a
//! response and a metric label.

use http::{Response, StatusCode};

use crate::body::Body;
use crate::metrics::labels::UpstreamError;
use crate::pages::{respond, Notice, Reply};

/// An error from below, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What caused a failure: the text the logs show (the whole chain on one line) and,
/// when an error said so, that error itself as the [`source`](std::error::Error::source).
#[derive(Debug)]
pub struct Cause {
    text: String,
    source: Option<BoxError>,
}

impl Cause {
    /// An error, shown with its whole chain of sources.
    pub fn new(e: impl Into<BoxError>) -> Cause {
        let source = e.into();
        Cause {
            text: error_chain(&*source),
            source: Some(source),
        }
    }

    /// An error, shown as `text`.
    pub fn with_text(text: impl Into<String>, e: impl Into<BoxError>) -> Cause {
        Cause {
            text: text.into(),
            source: Some(e.into()),
        }
    }
}

impl From<&str> for Cause {
    fn from(text: &str) -> Cause {
        Cause {
            text: text.into(),
            source: None,
        }
    }
}

impl From<String> for Cause {
    fn from(text: String) -> Cause {
        Cause { text, source: None }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// `e`, then each of its sources, joined by ": ".
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Built at start-up from `upstream.url`.
    #[error("invalid upstream URL: {0}")]
    Config(String),
    #[error("request body larger than the {limit} bytes allowed")]
    BodyTooLarge { limit: u64 },
    /// The client's body was malformed (chunked framing) or cut off mid-way.
    #[error("invalid request body from the client: {0}")]
    ClientBody(#[source] Cause),
    /// The client stopped sending its body for longer than `server.body_timeout`.
    #[error("the client's request body sent nothing for {0:?}")]
    ClientBodyTimeout(std::time::Duration),
    #[error("upstream did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("cannot connect to the upstream: {0}")]
    Connect(#[source] Cause),
    /// Refused, reset or closed mid-exchange, or spoke invalid HTTP.
    #[error("the upstream connection failed: {0}")]
    Upstream(#[source] Cause),
    #[error("cannot build the upstream request: {0}")]
    Request(#[source] Cause),
}

impl ProxyError {
    /// The `kind` label of `wxgate_upstream_errors_total`.
    pub fn label(&self) -> UpstreamError {
        match self {
            ProxyError::Config(_) | ProxyError::Request(_) => UpstreamError::Internal,
            ProxyError::BodyTooLarge { .. } => UpstreamError::BodyTooLarge,
            ProxyError::ClientBody(_) => UpstreamError::ClientBody,
            ProxyError::ClientBodyTimeout(_) => UpstreamError::ClientBodyTimeout,
            ProxyError::Timeout(_) => UpstreamError::Timeout,
            ProxyError::Connect(_) => UpstreamError::Connect,
            ProxyError::Upstream(_) => UpstreamError::Reset,
        }
    }

    /// The label's text (logs, pages).
    pub fn kind(&self) -> &'static str {
        self.label().as_str()
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Config(_) | ProxyError::Request(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::ClientBodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Connect(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The page (or JSON, for API clients) the visitor sees. Upstream details stay in
    /// the log: they would tell a visitor about the internal network.
    pub fn to_response(&self, reply: Reply) -> Response<Body> {
        let (code, title_zh, title_en, detail_zh, detail) = match self {
            ProxyError::BodyTooLarge { limit } => (
                "body_too_large",
                "请求内容过大",
                "Request body too large",
                format!("请求内容超过了本站接受的 {limit} 字节。"),
                format!("The request body is larger than the {limit} bytes this site accepts."),
            ),
            ProxyError::ClientBody(_) => (
                "bad_request_body",
                "请求内容无效",
                "Invalid request body",
                "请求内容格式有误或不完整。".to_string(),
                "The request body was malformed or incomplete.".to_string(),
            ),
            ProxyError::ClientBodyTimeout(_) => (
                "request_timeout",
                "请求超时",
                "Request timeout",
                "请求内容中途停止发送。".to_string(),
                "The request body stopped arriving.".to_string(),
            ),
            ProxyError::Timeout(_) => (
                "upstream_timeout",
                "应用响应超时",
                "The application took too long to answer",
                "请稍后再试。".to_string(),
                "Please try again in a moment.".to_string(),
            ),
            ProxyError::Connect(_) | ProxyError::Upstream(_) => (
                "upstream_unreachable",
                "应用暂时无法访问",
                "The application is unreachable",
                "请稍后再试。".to_string(),
                "Please try again in a moment.".to_string(),
            ),
            ProxyError::Config(_) | ProxyError::Request(_) => (
                "internal_error",
                "内部错误",
                "Internal error",
                "请求无法转发。".to_string(),
                "The request could not be forwarded.".to_string(),
            ),
        };
        let notice = Notice {
            status: self.status(),
            code,
            title_zh,
            title_en,
            detail_zh,
            detail,
            retry: None,
        };
        respond(&notice, reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_its_status_and_label() {
        let table = [
            (ProxyError::BodyTooLarge { limit: 1 }, 413, "body_too_large"),
            (
                ProxyError::Timeout(std::time::Duration::from_secs(1)),
                504,
                "timeout",
            ),
            (ProxyError::Connect("refused".into()), 502, "connect"),
            (
                ProxyError::ClientBodyTimeout(std::time::Duration::from_secs(1)),
                408,
                "client_body_timeout",
            ),
            (ProxyError::Upstream("reset".into()), 502, "reset"),
            (ProxyError::Request("bad".into()), 500, "internal"),
        ];
        for (e, status, kind) in table {
            assert_eq!(e.status().as_u16(), status, "{e}");
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(e.to_response(Reply::Page).status().as_u16(), status);
        }
    }

    #[test]
    fn a_failure_keeps_the_error_that_caused_it_as_its_source() {
        use std::error::Error as _;
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = ProxyError::Connect(Cause::new(refused));
        assert_eq!(e.to_string(), "cannot connect to the upstream: refused");
        let cause = e.source().expect("the cause");
        let io = cause.source().expect("the io error");
        assert_eq!(
            io.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        // A cause that is only words has no source.
        assert!(ProxyError::Upstream("reset".into())
            .source()
            .and_then(|c| c.source())
            .is_none());
    }
}
