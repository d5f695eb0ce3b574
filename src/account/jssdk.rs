//! JS-SDK signatures: `GET /_wxgate/jssdk/config?url=` answers what `wx.config` needs
//! for a page, and `GET /_wxgate/jssdk.js` is a small script that asks for it and calls
//! `wx.config` for the current page.
//!
//! The signature is WeChat's: `sha1("jsapi_ticket=T&noncestr=N&timestamp=TS&url=U")`,
//! keys in that order, the URL exactly as the page has it up to any `#`. Signatures are
//! made only for pages on `account.jssdk_hosts`: the ticket is the account's, and a
//! signature for someone else's page would let that page use the account's JS-SDK.

use aws_lc_rs::digest;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::json;

use super::error::AccountError;
use super::Account;
use crate::body::{empty, full, Body};

/// The script, as served (see the file for how a page uses it).
pub const SCRIPT: &str = include_str!("jssdk.js");

/// WeChat's JS-SDK signature (lowercase hex SHA-1).
pub fn signature(ticket: &str, nonce: &str, timestamp: u64, url: &str) -> String {
    let text = format!("jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={url}");
    let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The page URL as the JS-SDK signs it (everything before `#`) and its host (lowercase,
/// no port), or why it cannot be signed.
pub fn page_url(raw: &str) -> Result<(&str, String), &'static str> {
    let url = raw.split('#').next().unwrap_or_default();
    if url.is_empty() {
        return Err("url is required: the page's location.href");
    }
    if url.len() > 4096 {
        return Err("url is too long");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("url has spaces or control characters");
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return Err("url must be an http:// or https:// URL");
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains(['@', '\\']) {
        return Err("url has no usable host");
    }
    let host = match authority.strip_prefix('[') {
        // [v6]:port
        Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or_default()),
        None => authority.split(':').next().unwrap_or_default().to_string(),
    };
    if host.is_empty() || host == "[]" {
        return Err("url has no usable host");
    }
    Ok((url, host.to_ascii_lowercase()))
}

/// Whether `host` matches one of `patterns` (exact, or `*.example.com`: one or more
/// labels under example.com, not example.com itself).
pub fn host_allowed(host: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => p == host,
    })
}

/// A nonce for one signature: 16 characters of `[A-Za-z0-9]`.
fn nonce() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    crate::random::bytes(16)
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// `GET /_wxgate/jssdk/config?url=`.
pub async fn config(account: Option<&Account>, query: &str) -> Response<Body> {
    match make_config(account, query).await {
        Ok(v) => crate::pages::json_response(StatusCode::OK, &v),
        Err(e) => e.response(false),
    }
}

async fn make_config(
    account: Option<&Account>,
    query: &str,
) -> Result<serde_json::Value, AccountError> {
    let account = account.ok_or(AccountError::Off)?;
    let raw = crate::query::param(query, "url").unwrap_or_default();
    let (url, host) = page_url(&raw).map_err(|m| AccountError::BadRequest(m.into()))?;
    if !host_allowed(&host, &account.jssdk_hosts) {
        return Err(AccountError::HostNotAllowed(host));
    }
    let ticket = account.ticket.get().await?;
    let timestamp = crate::session::now_unix();
    let nonce = nonce();
    Ok(json!({
        "appId": account.appid,
        "timestamp": timestamp,
        "nonceStr": nonce,
        "signature": signature(&ticket.value, &nonce, timestamp, url),
    }))
}

/// `GET /_wxgate/jssdk.js`.
pub fn script(headers: &HeaderMap) -> Response<Body> {
    // The script changes only with the binary.
    const ETAG_VALUE: &str = concat!("\"jssdk-", env!("CARGO_PKG_VERSION"), "\"");
    let matches = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == ETAG_VALUE));
    let mut resp = if matches {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(full(SCRIPT))
    };
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(ETAG, HeaderValue::from_static(ETAG_VALUE));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_wechats_documented_example() {
        // The worked example of WeChat's JS-SDK documentation (附录1).
        let got = signature(
            "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
            "Wm3WZYTPz0wzccnW",
            1414587457,
            "http://mp.weixin.qq.com?params=value",
        );
        assert_eq!(got, "0f9de62fce790f9a083d5c99e95740ceb90c27ed");
    }

    #[test]
    fn page_urls_are_signed_without_their_fragment_and_kept_as_written() {
        let ok: &[(&str, &str, &str)] = &[
            (
                "http://mp.weixin.qq.com?params=value",
                "http://mp.weixin.qq.com?params=value",
                "mp.weixin.qq.com",
            ),
            (
                "https://App.Example.com:8443/a/b?x=1&y=%20#/route?z",
                "https://App.Example.com:8443/a/b?x=1&y=%20",
                "app.example.com",
            ),
            (
                "HTTPS://app.example.com/",
                "HTTPS://app.example.com/",
                "app.example.com",
            ),
            (
                "http://127.0.0.1:8080/p",
                "http://127.0.0.1:8080/p",
                "127.0.0.1",
            ),
            ("http://[::1]:8080/p", "http://[::1]:8080/p", "[::1]"),
        ];
        for (raw, url, host) in ok {
            assert_eq!(page_url(raw), Ok((*url, host.to_string())), "{raw}");
        }
        let bad = [
            "",
            "#only-a-fragment",
            "javascript:alert(1)",
            "ftp://app.example.com/",
            "//app.example.com/",
            "https:///path",
            "https://user@evil.example/@app.example.com",
            "https://app.example.com/a b",
            "https://app.example.com/\r\nx",
            "https://[]/",
        ];
        for raw in bad {
            assert!(page_url(raw).is_err(), "{raw:?} accepted");
        }
    }

    #[test]
    fn hosts_match_exactly_or_under_a_wildcard_domain() {
        let patterns = vec![
            "app.example.com".to_string(),
            "*.shop.example.com".to_string(),
        ];
        let cases = [
            ("app.example.com", true),
            ("example.com", false),
            ("evil-app.example.com", false),
            ("a.shop.example.com", true),
            ("a.b.shop.example.com", true),
            ("shop.example.com", false),
            ("xshop.example.com", false),
            ("app.example.com.evil", false),
        ];
        for (host, want) in cases {
            assert_eq!(host_allowed(host, &patterns), want, "{host}");
        }
    }

    #[test]
    fn nonces_are_sixteen_alphanumerics_and_differ() {
        let (a, b) = (nonce(), nonce());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
