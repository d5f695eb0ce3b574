//! Sessions: who is signed in, and where that is kept.
//!
//! The browser's session cookie holds an opaque *ticket*; a store turns a ticket back
//! into a [`Session`]. What the ticket contains depends on the store (an id for memory,
//! the whole encrypted session for cookie, id + per-session key for redis), so the rest
//! of wxgate never looks inside it.

use serde::{Deserialize, Serialize};

use crate::config::Scope;

/// A signed-in WeChat user, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Random, unguessable; new at every sign-in (fixation defence). Never sent to the
    /// upstream as is: the `sid` claim is a hash of it.
    pub id: String,
    /// The appid that issued `openid` (the official account, or the website app for
    /// qrconnect sign-ins).
    pub appid: String,
    pub openid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headimgurl: Option<String>,
    /// WeChat's web authorization tokens, kept to refresh snsapi_userinfo profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds when the profile (nickname, avatar) was last fetched from WeChat.
    pub profile_at: u64,
    /// Unix seconds; sliding: moved forward as the session is used.
    pub expires_at: u64,
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh random session id (32 bytes, base64url).
pub fn new_session_id() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::config::random_bytes(32))
}
