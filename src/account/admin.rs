//! The token for the apps' backends, on the admin listener only:
//!
//! - `GET /account/token` → `{"access_token","expires_in"}`;
//! - `POST /account/token/invalidate` with the token WeChat refused (40001/42001), as
//!   JSON `{"access_token":"..."}` or a form `access_token=...` → the replacement, in the
//!   same shape. Many reports about one token make one renewal; a report about a token
//!   already replaced just gets the current one.
//!
//! Both need `Authorization: Bearer <account.token_endpoint_secret>`.

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;

use super::error::AccountError;
use super::token::Held;
use super::Account;
use crate::body::Body;

/// An invalidation names one token: a few hundred bytes are plenty.
const MAX_BODY: usize = 4096;

/// Serves `/account/*` on the admin listener.
pub async fn handle(account: Option<&Account>, req: Request<Incoming>) -> Response<Body> {
    match answer(account, req).await {
        Ok(held) => crate::pages::json_response(
            StatusCode::OK,
            &json!({"access_token": held.value, "expires_in": held.expires_in}),
        ),
        Err(e) => e.response(true),
    }
}

async fn answer(account: Option<&Account>, req: Request<Incoming>) -> Result<Held, AccountError> {
    let account = account.ok_or(AccountError::Off)?;
    let path = req.uri().path();
    let method = req.method().clone();
    match (path, &method) {
        ("/account/token", &Method::GET | &Method::HEAD) => {
            authorize(account, req.headers())?;
            account.token.get().await
        }
        ("/account/token/invalidate", &Method::POST) => {
            authorize(account, req.headers())?;
            let refused = refused_token(req).await?;
            account.token.replace(&refused).await
        }
        ("/account/token", _) => Err(AccountError::BadRequest("use GET".into())),
        ("/account/token/invalidate", _) => Err(AccountError::BadRequest("use POST".into())),
        _ => Err(AccountError::BadRequest(format!(
            "no such endpoint: {path}"
        ))),
    }
}

/// Checks the bearer in constant time.
fn authorize(account: &Account, headers: &HeaderMap) -> Result<(), AccountError> {
    let secret = account
        .endpoint_secret
        .as_deref()
        .ok_or(AccountError::EndpointOff)?;
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or(AccountError::Unauthorized)?;
    aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), secret.as_bytes())
        .map_err(|_| AccountError::Unauthorized)
}

/// The credentials of `Authorization: Bearer <token>` (scheme without case).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn refused_token(req: Request<Incoming>) -> Result<String, AccountError> {
    let too_big = || AccountError::BadRequest(format!("the body must be under {MAX_BODY} bytes"));
    let body = http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| too_big())?
        .to_bytes();
    parse_refused(&body).ok_or_else(|| {
        AccountError::BadRequest(
            "name the token WeChat refused: {\"access_token\":\"...\"} or access_token=...".into(),
        )
    })
}

/// The token named by an invalidation body: JSON or a form.
fn parse_refused(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let token = if text.starts_with('{') {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()?
            .get("access_token")?
            .as_str()?
            .to_string()
    } else {
        crate::query::param(text, "access_token")?
    };
    let ok =
        !token.is_empty() && token.len() <= 1024 && token.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_credentials_are_read_like_rfc_6750() {
        let cases = [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("  Bearer   abc  ", Some("abc")),
            ("Basic abc", None),
            ("Bearer ", None),
            ("Bearer", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(bearer(value), want, "{value:?}");
        }
    }

    #[test]
    fn the_refused_token_comes_as_json_or_a_form() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"access_token":"T-1"}"#, Some("T-1")),
            (r#" {"access_token":"T-1","errcode":40001} "#, Some("T-1")),
            ("access_token=T%2D2", Some("T-2")),
            ("x=1&access_token=T3", Some("T3")),
            (r#"{"access_token":""}"#, None),
            (r#"{"access_token":7}"#, None),
            (r#"{"token":"T"}"#, None),
            ("access_token=a%20b", None),
            ("", None),
            ("\u{0}\u{1}", None),
        ];
        for (body, want) in cases {
            assert_eq!(parse_refused(body.as_bytes()).as_deref(), *want, "{body:?}");
        }
    }
}
