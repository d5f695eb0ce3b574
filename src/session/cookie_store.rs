//! The cookie session store: the whole session, in compact form, is the ticket, so
//! the browser carries it (sealed by [`CookieCodec`]) and no server keeps state.
//!
//! What cannot live in the browser lives in this process: sign-outs and revocations
//! (a set of revoked session ids and openids, kept until every cookie they cover has
//! expired), the ephemeral values and the locks. They are per process: with several
//! replicas, a sign-out is only seen by the replica that handled it. Use the Redis
//! store when that matters.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::codec::CookieCodec;
use super::compact::{decode, encode, needs_write};
use super::ephemeral::Ephemeral;
use super::{now_unix, Session, StoreError};
use crate::config::SessionConfig;

/// Browsers keep cookies up to 4096 bytes, counted over name, value and attributes.
pub const MAX_COOKIE_BYTES: usize = 4096;
/// Room kept for "; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=…".
const ATTRIBUTES_RESERVE: usize = 100;

pub struct CookieStore {
    cookie_name: String,
    ttl: u64,
    revoked: Mutex<Revoked>,
    pub(super) ephemeral: Ephemeral,
}

#[derive(Default)]
struct Revoked {
    /// Session id → until when the revocation must be remembered.
    ids: HashMap<String, u64>,
    /// openid → (sessions created at or before this are ended, remembered until).
    openids: HashMap<String, (u64, u64)>,
}

impl Revoked {
    fn reap(&mut self, now: u64) {
        self.ids.retain(|_, until| *until > now);
        self.openids.retain(|_, (_, until)| *until > now);
    }

    fn covers(&self, s: &Session) -> bool {
        self.ids.contains_key(&s.id)
            || self
                .openids
                .get(&s.openid)
                .is_some_and(|(before, _)| s.created_at <= *before)
    }
}

impl CookieStore {
    pub fn new(cfg: &SessionConfig) -> CookieStore {
        CookieStore {
            cookie_name: cfg.cookie_name.clone(),
            ttl: cfg.ttl.get().as_secs(),
            revoked: Mutex::new(Revoked::default()),
            ephemeral: Ephemeral::default(),
        }
    }

    fn revoked(&self) -> MutexGuard<'_, Revoked> {
        // Each critical section leaves the maps consistent: a poisoned lock is usable.
        self.revoked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A revocation outlives every cookie it covers: once revoked, a session is never
    /// touched again, so none of its cookies expires later than a TTL from now.
    fn remember_until(&self) -> u64 {
        now_unix().saturating_add(self.ttl)
    }

    /// The ticket for `s`, small enough that the sealed cookie fits a browser's limit.
    /// Dropped first when too long: the access_token (refreshed from the
    /// refresh_token when needed), then the avatar URL, then the nickname is shortened.
    fn ticket_for(&self, s: &Session) -> Result<String, StoreError> {
        let fits = |t: &str| {
            self.cookie_name.len() + 1 + CookieCodec::sealed_len(t.len()) + ATTRIBUTES_RESERVE
                <= MAX_COOKIE_BYTES
        };
        let ticket = encode(s, true);
        if fits(&ticket) {
            return Ok(ticket);
        }
        let mut s = s.clone();
        s.access_token = None;
        let ticket = encode(&s, true);
        if fits(&ticket) {
            return Ok(ticket);
        }
        s.headimgurl = None;
        while let Some(nick) = s.nickname.take() {
            let keep = nick.chars().count() / 2;
            s.nickname = Some(nick);
            let ticket = encode(&s, true);
            if fits(&ticket) {
                return Ok(ticket);
            }
            s.nickname = Some(
                s.nickname
                    .iter()
                    .flat_map(|n| n.chars())
                    .take(keep)
                    .collect(),
            )
            .filter(|n: &String| !n.is_empty());
        }
        let ticket = encode(&s, true);
        // Only absurd ids or tokens get here: no WeChat value is that long.
        fits(&ticket)
            .then_some(ticket)
            .ok_or(StoreError::Unsupported)
    }

    pub async fn save(&self, s: &Session) -> Result<String, StoreError> {
        self.ticket_for(s)
    }

    pub async fn load(&self, ticket: &str) -> Result<Option<Session>, StoreError> {
        let Some(s) = decode(ticket, None) else {
            return Ok(None);
        };
        if s.expires_at <= now_unix() || self.revoked().covers(&s) {
            return Ok(None);
        }
        Ok(Some(s))
    }

    /// Some(new ticket) whenever something was written: the cookie is the store.
    pub async fn touch(&self, ticket: &str, s: &Session) -> Result<Option<String>, StoreError> {
        let Some(old) = self.load(ticket).await? else {
            return Ok(None);
        };
        if !needs_write(&old, s) {
            return Ok(None);
        }
        let mut s = s.clone();
        s.id = old.id;
        self.ticket_for(&s).map(Some)
    }

    pub async fn delete(&self, ticket: &str, s: &Session) -> Result<(), StoreError> {
        let until = self.remember_until();
        let now = now_unix();
        let mut revoked = self.revoked();
        revoked.reap(now);
        if let Some(t) = decode(ticket, None) {
            revoked.ids.insert(t.id, until);
        }
        revoked.ids.insert(s.id.clone(), until);
        Ok(())
    }

    /// Ends the user's sessions in this process only; returns 0, as nobody knows how
    /// many cookies are out there.
    pub async fn revoke_openid(&self, openid: &str) -> Result<usize, StoreError> {
        let now = now_unix();
        let until = self.remember_until();
        let mut revoked = self.revoked();
        revoked.reap(now);
        revoked.openids.insert(openid.to_owned(), (now, until));
        Ok(0)
    }

    pub async fn count(&self) -> Result<usize, StoreError> {
        Err(StoreError::Unsupported)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scope;
    use crate::session::compact::tests::base_session;

    fn store() -> CookieStore {
        CookieStore::new(&SessionConfig::default())
    }

    fn userinfo_session(nickname: &str) -> Session {
        let mut s = base_session();
        s.scope = Scope::UserInfo;
        s.unionid = Some("o6_bmasdasdsad6_2sgVt7hMZOPfL".into());
        s.nickname = Some(nickname.into());
        s.headimgurl = Some(format!(
            "https://thirdwx.qlogo.cn/mmopen/vi_32/{}/132",
            "Q".repeat(180)
        ));
        s.expires_at = now_unix() + 3600;
        s
    }

    #[tokio::test]
    async fn what_must_go_goes_in_order_access_token_avatar_then_nickname() {
        let st = store();
        // (nickname length in emoji, what is expected to survive)
        let table: &[(usize, bool, bool, bool)] = &[
            // emoji, keeps access_token, keeps avatar, keeps whole nickname
            (10, true, true, true),
            (600, false, true, true),
            (2000, false, false, false),
        ];
        for &(n, token, avatar, whole_nick) in table {
            let s = userinfo_session(&"🌸".repeat(n));
            let ticket = st.save(&s).await.unwrap();
            assert!(st.cookie_name.len() + 1 + CookieCodec::sealed_len(ticket.len()) + 100 <= 4096);
            let back = st.load(&ticket).await.unwrap().unwrap();
            assert_eq!(
                back.access_token.is_some(),
                token,
                "{n} emoji: access_token"
            );
            assert_eq!(back.headimgurl.is_some(), avatar, "{n} emoji: avatar");
            assert_eq!(
                back.nickname == s.nickname,
                whole_nick,
                "{n} emoji: nickname"
            );
            assert_eq!(
                back.refresh_token, s.refresh_token,
                "{n} emoji: refresh_token always kept"
            );
        }
    }

    #[tokio::test]
    async fn a_session_too_large_for_any_cookie_is_refused() {
        let mut s = base_session();
        s.refresh_token = Some("R".repeat(4000));
        assert_eq!(store().save(&s).await, Err(StoreError::Unsupported));
    }
}
