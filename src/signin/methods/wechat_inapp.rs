//! WeChat's in-app browser: a 302 to WeChat's authorize URL for the official account,
//! back on `/_wxgate/callback` with a code redeemed for the user's openid (and, for
//! snsapi_userinfo, the profile).

use http::{HeaderMap, Response};
use tracing::error;

use crate::body::Body;
use crate::config::Scope;
use crate::signin::{Begin, Callback, Core, Method, SignInError, Verified};
use crate::wechat::{AppCredentials, ErrorKind};

pub struct WechatInApp;

impl Method for WechatInApp {
    const NAME: &'static str = "wechat";

    fn new(_core: &Core) -> Self {
        WechatInApp
    }

    async fn start(&self, core: &Core, begin: &Begin<'_>) -> Response<Body> {
        let b = begin;
        authorize_scoped(core, b.browser.headers, b.rd, b.tries, b.route.scope)
    }

    async fn finish(&self, core: &Core, callback: &Callback<'_>) -> Result<Verified, SignInError> {
        redeem(core, &core.app, callback.code).await
    }
}

/// A 302 to WeChat's authorize URL with a fresh state bound to this browser, finished
/// by this method. (The desktop QR sign-in sends the phone here too.)
pub fn authorize(core: &Core, headers: &HeaderMap, rd: &str, tries: u8) -> Response<Body> {
    authorize_scoped(core, headers, rd, tries, core.cfg.wechat.scope)
}

/// As [`authorize`], asking WeChat for `scope` (a route's or a hub app's).
pub fn authorize_scoped(
    core: &Core,
    headers: &HeaderMap,
    rd: &str,
    tries: u8,
    scope: Scope,
) -> Response<Body> {
    let wechat = &core.cfg.wechat;
    core.redirect_with_flow(headers, rd, tries, WechatInApp::NAME, |state| {
        crate::wechat::authorize_url(
            &wechat.authorize_url,
            &wechat.appid,
            &core.redirect_uri,
            scope,
            state,
            wechat.force_popup,
        )
    })
}

/// Redeems a web-authorization code of `app` (the official account, or the website
/// app of qrconnect): snapshot-page users refused, the profile fetched for
/// snsapi_userinfo. What WeChat's refusals mean follows WECHAT.md's table.
pub async fn redeem(
    core: &Core,
    app: &AppCredentials,
    code: &str,
) -> Result<Verified, SignInError> {
    let token = core
        .wechat
        .exchange_code(app, code)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::CodeUsed => SignInError::CodeUsed,
            ErrorKind::InvalidCode | ErrorKind::CodeExpired => SignInError::CodeStale,
            ErrorKind::Busy => SignInError::WechatBusy,
            ErrorKind::Quota => {
                error!(error = %e, rid = e.rid().unwrap_or(""), "WeChat API quota reached: sign-ins fail until it resets");
                SignInError::WechatQuota
            }
            ErrorKind::Misconfigured => {
                error!(error = %e, rid = e.rid().unwrap_or(""), "WeChat refused the credentials: check wechat.secret / wechat.appid");
                SignInError::Misconfigured
            }
            ErrorKind::Unavailable => SignInError::WechatUnavailable,
            _ => SignInError::WechatOther,
        })?;
    if token.is_snapshotuser {
        return Err(SignInError::SnapshotUser);
    }
    let userinfo_scope = token.scopes.iter().any(|s| s == "snsapi_userinfo")
        || (core.cfg.wechat.scope == Scope::UserInfo && token.scopes.is_empty());
    let scope = if userinfo_scope {
        Scope::UserInfo
    } else {
        Scope::Base
    };
    let mut verified = Verified {
        unionid: token.unionid.clone(),
        ..Verified::wechat(app.appid.clone(), token.openid.clone(), scope)
    };
    if userinfo_scope {
        let info = core
            .wechat
            .userinfo(&token.access_token, &token.openid, &core.cfg.wechat.lang)
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::Unavailable => SignInError::WechatUnavailable,
                ErrorKind::Busy => SignInError::WechatBusy,
                ErrorKind::Quota => SignInError::WechatQuota,
                _ => SignInError::WechatOther,
            })?;
        verified.nickname = Some(info.nickname);
        verified.headimgurl = Some(info.headimgurl).filter(|s| !s.is_empty());
        verified.unionid = verified.unionid.or(info.unionid);
        verified.access_token = Some(token.access_token.clone());
        verified.refresh_token = Some(token.refresh_token.clone());
    }
    Ok(verified)
}
