//! Sessions: who is signed in, and where that is kept.
//!
//! The browser's session cookie holds an opaque *ticket*; a store turns a ticket back
//! into a [`Session`]. What the ticket contains depends on the store (an id for memory,
//! the whole encrypted session for cookie, id + per-session key for redis), so the rest
//! of wxgate never looks inside it.

pub mod codec;
mod compact;
pub mod cookie_store;
pub mod cookies;
mod ephemeral;
pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{Scope, SessionConfig, StoreKind};
use crate::metrics::labels::{Op, StoreOp};
use crate::metrics::metrics;

pub use codec::CookieCodec;
pub use cookie_store::CookieStore;
pub use cookies::{all_cookies, clear_cookie, cookie_values, session_cookie};
pub use memory::MemoryStore;
pub use redis::RedisStore;

/// Who vouched for a session's user: the provider a sign-in method asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Idp {
    /// WeChat web authorization (in-app browser, QR scan, qrconnect).
    #[default]
    Wechat,
    /// WeCom (enterprise WeChat).
    Wecom,
    /// Another wxgate, signing in on this one's behalf.
    Hub,
}

impl Idp {
    pub fn as_str(self) -> &'static str {
        match self {
            Idp::Wechat => "wechat",
            Idp::Wecom => "wecom",
            Idp::Hub => "hub",
        }
    }

    pub fn is_wechat(&self) -> bool {
        *self == Idp::Wechat
    }

    /// Whether a session from here can be taken back for WeChat's profile: WeChat's
    /// own, or a hub's (which asks WeChat for it). A WeCom member has no such scope.
    pub fn can_ask_for_profile(self) -> bool {
        matches!(self, Idp::Wechat | Idp::Hub)
    }
}

/// Claims a sign-in method adds to the identity beyond the common ones (WeCom's
/// `corpid`, a hub's claims...), by name.
pub type ExtraClaims = std::collections::BTreeMap<String, serde_json::Value>;

/// A signed-in user, as the store keeps it. Sessions stored before `idp` and `claims`
/// existed decode as WeChat sessions without extra claims.
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
    /// Who vouched for `openid` (the subject).
    #[serde(default, skip_serializing_if = "Idp::is_wechat")]
    pub idp: Idp,
    /// What the sign-in method adds to the identity's claims.
    #[serde(default, skip_serializing_if = "ExtraClaims::is_empty")]
    pub claims: ExtraClaims,
}

impl Session {
    /// A session for a WeChat user with nothing else known yet: no id (the store's
    /// caller gives it one at sign-in), no profile, no tokens, no times.
    pub fn new(appid: impl Into<String>, openid: impl Into<String>, scope: Scope) -> Session {
        Session {
            id: String::new(),
            appid: appid.into(),
            openid: openid.into(),
            unionid: None,
            scope,
            nickname: None,
            headimgurl: None,
            access_token: None,
            refresh_token: None,
            created_at: 0,
            profile_at: 0,
            expires_at: 0,
            idp: Idp::Wechat,
            claims: ExtraClaims::new(),
        }
    }
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
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::random::bytes(32))
}

/// Why a store could not answer. Every variant means "no answer", never "no session":
/// the caller answers 503 rather than sending a signed-in user back to WeChat.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("session store timed out")]
    Timeout,
    #[error("operation not supported by this session store")]
    Unsupported,
    #[error("session store returned corrupt data")]
    Corrupt,
}

/// A store that cannot be opened at start, as one line: the key naming where it is,
/// then what went wrong (the store's message names the address, once).
pub fn open_problem(cfg: &SessionConfig, e: &StoreError) -> String {
    let key = match cfg.store {
        StoreKind::Redis if !cfg.redis_cluster_urls.is_empty() => "session.redis_cluster_urls",
        StoreKind::Redis => "session.redis_url",
        _ => "session.store",
    };
    match e {
        StoreError::Unavailable(m) => format!("{key}: {m}"),
        other => format!("{key}: {other}"),
    }
}

/// The configured session store. An enum rather than a trait object: three known
/// stores, no boxing of every future on the request path.
pub enum Store {
    Memory(MemoryStore),
    Cookie(CookieStore),
    Redis(RedisStore),
}

/// Runs one operation on whichever store this is, counting it in the metrics.
macro_rules! dispatch {
    ($self:ident, $op:ident, |$s:ident| $call:expr) => {{
        let started = Instant::now();
        let result = match $self {
            Store::Memory($s) => $call.await,
            Store::Cookie($s) => $call.await,
            Store::Redis($s) => $call.await,
        };
        $self.record(Op::$op, started, result.is_err());
        result
    }};
}

/// Ephemeral values and locks: in Redis for the Redis store; in process memory for the
/// memory and cookie stores (one replica), where they are the same code.
macro_rules! ephemeral {
    ($self:ident, $op:ident, |$e:ident| $local:expr, |$r:ident| $remote:expr) => {{
        let started = Instant::now();
        let result = match $self {
            Store::Memory(st) => {
                let $e = &st.ephemeral;
                Ok($local)
            }
            Store::Cookie(st) => {
                let $e = &st.ephemeral;
                Ok($local)
            }
            Store::Redis($r) => $remote.await,
        };
        $self.record(Op::$op, started, result.is_err());
        result
    }};
}

impl Store {
    /// The store for a program without server worker threads (the CLI, tests).
    pub async fn from_config(cfg: &SessionConfig) -> Result<Store, StoreError> {
        Self::open(cfg, 0).await
    }

    /// The store for a server with `workers` worker threads (the Redis store keeps a
    /// connection for each).
    pub async fn open(cfg: &SessionConfig, workers: usize) -> Result<Store, StoreError> {
        Ok(match cfg.store {
            StoreKind::Memory => Store::Memory(MemoryStore::new(cfg.max_sessions)),
            StoreKind::Cookie => Store::Cookie(CookieStore::new(cfg)),
            StoreKind::Redis => Store::Redis(RedisStore::connect(cfg, workers).await?),
        })
    }

    pub fn kind(&self) -> StoreKind {
        match self {
            Store::Memory(_) => StoreKind::Memory,
            Store::Cookie(_) => StoreKind::Cookie,
            Store::Redis(_) => StoreKind::Redis,
        }
    }

    fn record(&self, op: Op, started: Instant, failed: bool) {
        let labels = StoreOp(self.kind(), op);
        let m = metrics();
        m.store_ops.inc(labels);
        if failed {
            m.store_errors.inc(labels);
        }
        m.store_duration.observe(labels, started.elapsed());
    }

    /// Stores a new session; returns its ticket (the session cookie's value before sealing).
    pub async fn save(&self, s: &Session) -> Result<String, StoreError> {
        dispatch!(self, Save, |st| st.save(s))
    }

    /// The session a ticket names; None when unknown, expired or revoked.
    pub async fn load(&self, ticket: &str) -> Result<Option<Session>, StoreError> {
        dispatch!(self, Load, |st| st.load(ticket))
    }

    /// Writes `s` (a later expiry, a refreshed profile) back. A change of expiry alone by
    /// less than a minute is skipped, so busy sessions do not write on every request.
    /// Some(new ticket) when the browser's cookie must be re-issued.
    pub async fn touch(&self, ticket: &str, s: &Session) -> Result<Option<String>, StoreError> {
        dispatch!(self, Touch, |st| st.touch(ticket, s))
    }

    /// The sliding expiry: as [`Store::touch`] with a later `expires_at`, except that
    /// with Redis the write is made in the background, off the request's path, and
    /// once for every request of the session that asks while it is in flight (they
    /// all loaded the same expiry). Its failure is logged; the session stays valid and
    /// slides on a later request.
    pub async fn slide(
        self: &Arc<Self>,
        ticket: &str,
        s: &Session,
    ) -> Result<Option<String>, StoreError> {
        let Store::Redis(redis) = &**self else {
            return self.touch(ticket, s).await;
        };
        let Some(in_flight) = redis.begin_slide(ticket) else {
            return Ok(None);
        };
        let store = self.clone();
        let (ticket, s) = (ticket.to_owned(), s.clone());
        tokio::spawn(async move {
            let _in_flight = in_flight;
            if let Err(e) = store.touch(&ticket, &s).await {
                tracing::warn!(error = %e, "could not extend a session's expiry");
            }
        });
        // The Redis store never changes the ticket.
        Ok(None)
    }

    /// Sign-out: afterwards `load(ticket)` is None.
    pub async fn delete(&self, ticket: &str, s: &Session) -> Result<(), StoreError> {
        dispatch!(self, Delete, |st| st.delete(ticket, s))
    }

    /// Ends every session of a WeChat user; returns how many were ended (when known).
    pub async fn revoke_openid(&self, openid: &str) -> Result<usize, StoreError> {
        dispatch!(self, RevokeOpenid, |st| st.revoke_openid(openid))
    }

    /// Live sessions (stores that keep them server-side).
    pub async fn count(&self) -> Result<usize, StoreError> {
        dispatch!(self, Count, |st| st.count())
    }

    /// Readiness: can the store answer?
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, Ping, |st| st.ping())
    }

    /// A small short-lived value (sign-in flow markers, desktop QR tickets).
    pub async fn put_ephemeral(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        ephemeral!(self, PutEphemeral, |e| e.put(key, value, ttl), |r| r
            .put_ephemeral(key, value, ttl))
    }

    pub async fn get_ephemeral(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        ephemeral!(self, GetEphemeral, |e| e.get(key), |r| r.get_ephemeral(key))
    }

    /// Get and delete in one step: of two concurrent takes, exactly one gets the value.
    pub async fn take_ephemeral(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        ephemeral!(self, TakeEphemeral, |e| e.take(key), |r| r
            .take_ephemeral(key))
    }

    /// True when this caller now holds the lock; it lapses after `ttl` if never unlocked.
    pub async fn try_lock(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        ephemeral!(self, TryLock, |e| e.try_lock(key, ttl), |r| r
            .try_lock(key, ttl))
    }

    pub async fn unlock(&self, key: &str) -> Result<(), StoreError> {
        ephemeral!(self, Unlock, |e| e.unlock(key), |r| r.unlock(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[tokio::test]
    async fn every_operation_is_counted_by_store_and_op() {
        let store = Store::Memory(MemoryStore::new(10));
        let m = metrics();
        let labels = ["memory", "unlock"];
        let (ops, observed) = (m.store_ops.get(&labels), m.store_duration.count(&labels));
        store.unlock("k").await.unwrap();
        assert!(m.store_ops.get(&labels) > ops);
        assert!(m.store_duration.count(&labels) > observed);

        let cookie = Store::Cookie(CookieStore::new(&SessionConfig::default()));
        let labels = ["cookie", "count"];
        let errors = m.store_errors.get(&labels);
        assert_eq!(cookie.count().await, Err(StoreError::Unsupported));
        assert!(m.store_errors.get(&labels) > errors);
    }

    /// The proxy shares one store between tasks: its futures must be Send.
    #[test]
    fn store_futures_can_be_spawned() {
        let store = Store::Memory(MemoryStore::new(1));
        let s = compact::tests::base_session();
        let ttl = Duration::from_secs(1);
        assert_send(&store.save(&s));
        assert_send(&store.load("t"));
        assert_send(&store.touch("t", &s));
        assert_send(&store.delete("t", &s));
        assert_send(&store.revoke_openid("o"));
        assert_send(&store.count());
        assert_send(&store.ping());
        assert_send(&store.put_ephemeral("k", b"v", ttl));
        assert_send(&store.get_ephemeral("k"));
        assert_send(&store.take_ephemeral("k"));
        assert_send(&store.try_lock("k", ttl));
        assert_send(&store.unlock("k"));
    }
}
