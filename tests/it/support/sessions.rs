//! Session records for the session-store tests.

use wxgate::config::Scope;
use wxgate::session::{new_session_id, now_unix, Session};

/// A fresh snsapi_userinfo session for `openid`, live for an hour, with tokens of
/// WeChat's usual length.
pub fn session(openid: &str, unionid: Option<&str>, nickname: &str) -> Session {
    let now = now_unix();
    Session {
        id: new_session_id(),
        appid: "wx1234567890abcdef".into(),
        openid: openid.into(),
        unionid: unionid.map(str::to_string),
        scope: Scope::UserInfo,
        nickname: Some(nickname.into()),
        headimgurl: Some("https://thirdwx.qlogo.cn/mmopen/vi_32/abc/132".into()),
        access_token: Some("ACCESS".repeat(18)),
        refresh_token: Some("REFRESH".repeat(15)),
        created_at: now,
        profile_at: now,
        expires_at: now + 3600,
        ..Session::new("", "", Scope::UserInfo)
    }
}
