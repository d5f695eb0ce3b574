//! The Redis session store: sessions shared by every replica, surviving restarts.
//!
//! A Redis dump must not reveal who is signed in, so nothing readable about a user is
//! stored in clear:
//! - the ticket (what the caller seals into the cookie) is `id.key`, where `key` is 32
//!   random bytes made for this session and never sent to Redis;
//! - `{prefix}s:{id}` holds the session, AES-256-GCM-sealed under that key with the id as
//!   associated data, expiring with the session (`EX`, sliding on `touch`);
//! - `{prefix}u:{hmac(openid)}` is the set of that user's session ids, for revocation;
//!   the openid is HMAC'd under a key derived from the session secret;
//! - `{prefix}e:{key}` (ephemeral values, sealed under a secret-derived key) and
//!   `{prefix}l:{key}` (locks) are short-lived.
//!
//! `count` SCANs `{prefix}s:*`: O(number of keys in the database), in batches of 1000,
//! each bounded by `redis_timeout`. It serves the `sessions count` command, not requests,
//! so exactness is preferred to keeping a counter that expiring keys would skew.
//!
//! In Redis Cluster a session key and its user index usually live in different slots.
//! Rather than forcing a user's keys into one slot (which would need the index tag in
//! the ticket), commands for different slots are sent concurrently: still one round
//! trip of latency, though not one pipeline.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use redis::aio::ConnectionManager;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, Value};
use tokio::sync::OnceCell;

use super::compact::{decode, encode, needs_write};
use super::{now_unix, Session, StoreError};
use crate::config::{redact_url, SessionConfig};
use crate::random::bytes as random_bytes;

const KEY_LEN: usize = 32;
/// Session ids are 32 random bytes in base64url (43 characters); anything far from that
/// is not one of ours and never reaches Redis as part of a key name.
const MAX_ID_LEN: usize = 128;
/// A user index holding more ids than this is pruned of expired sessions on save, so
/// users who sign in every day do not grow it without bound.
const PRUNE_INDEX_ABOVE: usize = 64;
const SCAN_BATCH: usize = 1000;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub struct RedisStore {
    conn: Conn,
    prefix: String,
    timeout: Duration,
    /// Keeps a user index alive for a session TTL beyond the session that extended it,
    /// so an older session with a later expiry is still found by revocation.
    ttl: u64,
    /// Boxed: the key schedules would make every `Store` as large as this variant.
    keys: Box<Keys>,
    cache: Option<Cache>,
    /// Sessions whose sliding expiry is being written (hashes of their tickets).
    sliding: Arc<Mutex<HashSet<u128>>>,
}

/// A slide in flight: the session is out of [`RedisStore::sliding`] again when this is
/// dropped, however the write ended.
pub struct Sliding {
    set: Arc<Mutex<HashSet<u128>>>,
    key: u128,
}

impl Drop for Sliding {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

struct Keys {
    openid: hmac::Key,
    ephemeral: LessSafeKey,
}

enum Conn {
    /// Reconnects by itself after Redis comes back. One connection per server worker
    /// thread (each connects on its first use there, so its task lives on that thread
    /// and a request's round trip never leaves it), and one for everything else.
    Single {
        shared: ConnectionManager,
        per_worker: Vec<ConnectionManager>,
    },
    /// Connected on first use, so a replica can start while the cluster is unreachable.
    Cluster(Box<Cluster>),
}

/// The connection for the calling thread: its worker's, or the shared one (a clone is a
/// handle to the same connection).
fn for_this_thread(
    shared: &ConnectionManager,
    per_worker: &[ConnectionManager],
) -> ConnectionManager {
    crate::workers::current()
        .and_then(|w| per_worker.get(w))
        .unwrap_or(shared)
        .clone()
}

struct Cluster {
    client: ClusterClient,
    conn: OnceCell<ClusterConnection>,
}

impl Cluster {
    async fn connection(&self) -> Result<ClusterConnection, RedisError> {
        self.conn
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

fn map_err(e: RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else {
        StoreError::Unavailable(e.to_string())
    }
}

/// `s` with Redis glob metacharacters escaped, for SCAN MATCH.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The id and per-session key a ticket carries; None for anything we did not issue.
fn parse_ticket(ticket: &str) -> Option<(&str, [u8; KEY_LEN])> {
    let (id, key) = ticket.split_once('.')?;
    if id.is_empty()
        || id.len() > MAX_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let key: [u8; KEY_LEN] = B64.decode(key).ok()?.try_into().ok()?;
    Some((id, key))
}

fn aead_key(key: &[u8]) -> Option<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, key)
        .ok()
        .map(LessSafeKey::new)
}

/// nonce ‖ ciphertext ‖ tag. A random nonce: a key seals a handful of values at most.
fn seal(key: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let nonce_bytes: [u8; NONCE_LEN] = random_bytes(NONCE_LEN).try_into().unwrap_or([0; NONCE_LEN]);
    let mut out = plain.to_vec();
    // Fails only for inputs beyond AES-GCM's 64 GiB limit.
    if key
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad),
            &mut out,
        )
        .is_err()
    {
        return vec![];
    }
    let mut sealed = nonce_bytes.to_vec();
    sealed.append(&mut out);
    sealed
}

fn open(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = body.to_vec();
    let plain = key.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?;
    Some(plain.to_vec())
}

/// Seconds from now until `expires_at`; None once it has passed.
fn remaining(expires_at: u64) -> Option<u64> {
    expires_at.checked_sub(now_unix()).filter(|secs| *secs > 0)
}

/// Milliseconds for PX/EX arguments: at least 1, as Redis refuses 0.
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// In-process copy of loaded sessions, keyed by a hash of the whole ticket so a ticket
/// with a wrong key never hits an entry.
struct Cache {
    ttl: Duration,
    map: Mutex<HashMap<u128, (Instant, Session)>>,
}

fn ticket_hash(ticket: &str) -> u128 {
    let d = digest::digest(&digest::SHA256, ticket.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d.as_ref()[..16]);
    u128::from_le_bytes(k)
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, HashMap<u128, (Instant, Session)>> {
        // Every critical section leaves the map consistent: a poisoned lock is usable.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, ticket: &str) -> Option<Session> {
        let map = self.lock();
        match map.get(&ticket_hash(ticket)) {
            Some((until, s)) if *until > Instant::now() && s.expires_at > now_unix() => {
                Some(s.clone())
            }
            _ => None,
        }
    }

    fn put(&self, ticket: &str, s: &Session) {
        let now = Instant::now();
        let mut map = self.lock();
        // Entries are dropped only when looked up or here: sweeping once the map is
        // large keeps it bounded by the sessions seen within one cache TTL.
        if map.len() >= 4096 && map.len().is_power_of_two() {
            map.retain(|_, (until, _)| *until > now);
        }
        map.insert(ticket_hash(ticket), (now + self.ttl, s.clone()));
    }

    fn remove(&self, ticket: &str) {
        self.lock().remove(&ticket_hash(ticket));
    }

    fn remove_openid(&self, openid: &str) {
        self.lock().retain(|_, (_, s)| s.openid != openid);
    }
}

impl RedisStore {
    /// Connects to `redis_url`, or to the cluster when `redis_cluster_urls` is set.
    /// Unreachable Redis fails here only with `redis_required_at_start`; otherwise the
    /// store starts and connects once Redis answers.
    pub async fn connect(cfg: &SessionConfig, workers: usize) -> Result<RedisStore, StoreError> {
        let connect_timeout = cfg.redis_connect_timeout.get();
        let timeout = cfg.redis_timeout.get();
        let (conn, address) = if cfg.redis_cluster_urls.is_empty() {
            let address = redact_url(&cfg.redis_url);
            let client = redis::Client::open(cfg.redis_url.as_str()).map_err(|e| {
                StoreError::Unavailable(format!("invalid redis url {address}: {e}"))
            })?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(timeout))
                // Short backoff: after Redis returns, sessions work again within a second.
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_secs(1));
            let manager = || {
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .map_err(|e| StoreError::Unavailable(format!("redis at {address}: {e}")))
            };
            let shared = manager()?;
            let per_worker = (0..workers).map(|_| manager()).collect::<Result<_, _>>()?;
            (Conn::Single { shared, per_worker }, address)
        } else {
            let address = cfg
                .redis_cluster_urls
                .iter()
                .map(|u| redact_url(u))
                .collect::<Vec<_>>()
                .join(", ");
            let client = ClusterClient::builder(cfg.redis_cluster_urls.iter().map(String::as_str))
                .connection_timeout(connect_timeout)
                .response_timeout(timeout)
                .build()
                .map_err(|e| {
                    StoreError::Unavailable(format!("invalid redis cluster {address}: {e}"))
                })?;
            let conn = Conn::Cluster(Box::new(Cluster {
                client,
                conn: OnceCell::new(),
            }));
            (conn, address)
        };

        let secret = &cfg.secret_bytes;
        let openid_key = hmac::Key::new(
            hmac::HMAC_SHA256,
            hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, secret),
                b"wxgate redis openid index",
            )
            .as_ref(),
        );
        let ephemeral_key = aead_key(
            hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, secret),
                b"wxgate redis ephemeral values",
            )
            .as_ref(),
        )
        .ok_or_else(|| StoreError::Unavailable("cannot derive the ephemeral key".into()))?;
        let cache_ttl = cfg.cache_ttl.get();
        let store = RedisStore {
            conn,
            prefix: cfg.redis_prefix.clone(),
            timeout,
            ttl: cfg.ttl.get().as_secs(),
            keys: Box::new(Keys {
                openid: openid_key,
                ephemeral: ephemeral_key,
            }),
            cache: (!cache_ttl.is_zero()).then(|| Cache {
                ttl: cache_ttl,
                map: Mutex::default(),
            }),
            sliding: Arc::default(),
        };

        let reached = tokio::time::timeout(connect_timeout, store.ping_unbounded()).await;
        let problem = match reached {
            Ok(Ok(())) => return Ok(store),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "no answer within {}",
                crate::config::format_duration(connect_timeout)
            ),
        };
        if cfg.redis_required_at_start {
            return Err(StoreError::Unavailable(format!(
                "cannot reach Redis at {address}: {problem} (is it running there? session.redis_required_at_start = false starts wxgate without it)"
            )));
        }
        tracing::warn!(%address, %problem, "redis unreachable at start; will keep trying");
        Ok(store)
    }

    fn session_key(&self, id: &str) -> String {
        format!("{}s:{id}", self.prefix)
    }

    fn index_key(&self, openid: &str) -> String {
        let tag = hmac::sign(&self.keys.openid, openid.as_bytes());
        format!("{}u:{}", self.prefix, B64.encode(&tag.as_ref()[..16]))
    }

    fn ephemeral_key_name(&self, key: &str) -> String {
        format!("{}e:{key}", self.prefix)
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{}l:{key}", self.prefix)
    }

    /// One command, bounded by `redis_timeout`.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let run = async {
            match &self.conn {
                Conn::Single { shared, per_worker } => {
                    cmd.query_async(&mut for_this_thread(shared, per_worker))
                        .await
                }
                Conn::Cluster(c) => cmd.query_async(&mut c.connection().await?).await,
            }
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(result) => result.map_err(map_err),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// Commands grouped by the slot they touch; the replies, in the same grouping.
    /// One pipeline on a single Redis, one per group (sent concurrently) in a cluster.
    async fn pipelines(&self, groups: &[Vec<Cmd>]) -> Result<Vec<Vec<Value>>, StoreError> {
        let run = async {
            match &self.conn {
                Conn::Single { shared, per_worker } => {
                    let mut pipe = Pipeline::new();
                    for cmd in groups.iter().flatten() {
                        pipe.add_command(cmd.clone());
                    }
                    let mut replies: std::vec::IntoIter<Value> = pipe
                        .query_async::<Vec<Value>>(&mut for_this_thread(shared, per_worker))
                        .await?
                        .into_iter();
                    Ok(groups
                        .iter()
                        .map(|g| replies.by_ref().take(g.len()).collect())
                        .collect())
                }
                Conn::Cluster(c) => {
                    let conn = c.connection().await?;
                    let sends = groups.iter().map(|g| {
                        let mut pipe = Pipeline::new();
                        for cmd in g {
                            pipe.add_command(cmd.clone());
                        }
                        let mut conn = conn.clone();
                        async move { pipe.query_async::<Vec<Value>>(&mut conn).await }
                    });
                    futures_util::future::try_join_all(sends).await
                }
            }
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(result) => result.map_err(map_err),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    async fn ping_unbounded(&self) -> Result<(), RedisError> {
        let cmd = redis::cmd("PING");
        match &self.conn {
            Conn::Single { shared, per_worker } => {
                cmd.query_async::<()>(&mut for_this_thread(shared, per_worker))
                    .await
            }
            Conn::Cluster(c) => cmd.query_async::<()>(&mut c.connection().await?).await,
        }
    }

    /// SET of the sealed session with its remaining TTL, and the user index kept for
    /// as long; `xx` only overwrites a session that still exists.
    fn write_cmds(
        &self,
        id: &str,
        key: &LessSafeKey,
        s: &Session,
        secs: u64,
        xx: bool,
    ) -> Vec<Vec<Cmd>> {
        let value = seal(key, id.as_bytes(), encode(s, false).as_bytes());
        let mut set = redis::cmd("SET");
        set.arg(self.session_key(id)).arg(value).arg("EX").arg(secs);
        if xx {
            set.arg("XX");
        }
        let index = self.index_key(&s.openid);
        let mut sadd = redis::cmd("SADD");
        sadd.arg(&index).arg(id);
        let mut expire = redis::cmd("EXPIRE");
        expire.arg(&index).arg(secs.saturating_add(self.ttl));
        let mut scard = redis::cmd("SCARD");
        scard.arg(&index);
        vec![vec![set], vec![sadd, expire, scard]]
    }

    /// Drops ids of expired sessions from a user's index.
    async fn prune_index(&self, openid: &str) -> Result<(), StoreError> {
        let index = self.index_key(openid);
        let ids: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(&index)).await?;
        let groups: Vec<Vec<Cmd>> = ids
            .iter()
            .map(|id| vec![redis::cmd("EXISTS").arg(self.session_key(id)).clone()])
            .collect();
        let exists = self.pipelines(&groups).await?;
        let gone: Vec<&String> = ids
            .iter()
            .zip(exists)
            .filter(|(_, reply)| matches!(reply.first(), Some(Value::Int(0))))
            .map(|(id, _)| id)
            .collect();
        if !gone.is_empty() {
            self.query::<()>(redis::cmd("SREM").arg(&index).arg(gone))
                .await?;
        }
        Ok(())
    }

    pub async fn save(&self, s: &Session) -> Result<String, StoreError> {
        let key_bytes = random_bytes(KEY_LEN);
        let ticket = format!("{}.{}", s.id, B64.encode(&key_bytes));
        if parse_ticket(&ticket).is_none() {
            // An id we would refuse to load: storing it would only leave garbage.
            return Err(StoreError::Unsupported);
        }
        // Already expired: nothing to keep, and the ticket will find nothing.
        let Some(secs) = remaining(s.expires_at) else {
            return Ok(ticket);
        };
        let key = aead_key(&key_bytes).ok_or(StoreError::Corrupt)?;
        let replies = self
            .pipelines(&self.write_cmds(&s.id, &key, s, secs, false))
            .await?;
        let index_len = replies
            .get(1)
            .and_then(|g| g.last())
            .and_then(|v| usize::from_redis_value(v.clone()).ok())
            .unwrap_or(0);
        if index_len > PRUNE_INDEX_ABOVE {
            // The session is saved; a failed prune only delays the cleanup.
            if let Err(e) = self.prune_index(&s.openid).await {
                tracing::debug!(error = %e, "pruning a user's session index failed");
            }
        }
        if let Some(cache) = &self.cache {
            cache.put(&ticket, s);
        }
        Ok(ticket)
    }

    /// The session under a ticket, read and opened without the cache.
    async fn fetch(&self, ticket: &str) -> Result<Option<(Session, LessSafeKey)>, StoreError> {
        let Some((id, key_bytes)) = parse_ticket(ticket) else {
            return Ok(None);
        };
        let key = aead_key(&key_bytes).ok_or(StoreError::Corrupt)?;
        let sealed: Option<Vec<u8>> = self
            .query(redis::cmd("GET").arg(self.session_key(id)))
            .await?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        // Does not open: a ticket with the right id and a forged key.
        let Some(plain) = open(&key, id.as_bytes(), &sealed) else {
            return Ok(None);
        };
        let s = std::str::from_utf8(&plain)
            .ok()
            .and_then(|text| decode(text, Some(id)))
            .ok_or(StoreError::Corrupt)?;
        Ok((s.expires_at > now_unix()).then_some((s, key)))
    }

    pub async fn load(&self, ticket: &str) -> Result<Option<Session>, StoreError> {
        if let Some(s) = self.cache.as_ref().and_then(|c| c.get(ticket)) {
            return Ok(Some(s));
        }
        let found = self.fetch(ticket).await?.map(|(s, _)| s);
        if let (Some(cache), Some(s)) = (&self.cache, &found) {
            cache.put(ticket, s);
        }
        Ok(found)
    }

    /// Marks a slide of this session as in flight; None when one already is.
    pub(super) fn begin_slide(&self, ticket: &str) -> Option<Sliding> {
        let key = ticket_hash(ticket);
        let mut set = self.sliding.lock().unwrap_or_else(|e| e.into_inner());
        set.insert(key).then(|| Sliding {
            set: self.sliding.clone(),
            key,
        })
    }

    /// Never re-issues the cookie: the ticket does not change.
    pub async fn touch(&self, ticket: &str, s: &Session) -> Result<Option<String>, StoreError> {
        let Some((old, key)) = self.fetch(ticket).await? else {
            // Deleted or revoked meanwhile: do not bring it back.
            return Ok(None);
        };
        if !needs_write(&old, s) {
            return Ok(None);
        }
        let Some(secs) = remaining(s.expires_at) else {
            return self.delete(ticket, &old).await.map(|()| None);
        };
        let mut groups = self.write_cmds(&old.id, &key, s, secs, true);
        if old.openid != s.openid {
            groups.push(vec![redis::cmd("SREM")
                .arg(self.index_key(&old.openid))
                .arg(&old.id)
                .clone()]);
        }
        self.pipelines(&groups).await?;
        if let Some(cache) = &self.cache {
            cache.put(ticket, s);
        }
        Ok(None)
    }

    pub async fn delete(&self, ticket: &str, s: &Session) -> Result<(), StoreError> {
        if let Some(cache) = &self.cache {
            cache.remove(ticket);
        }
        let id = parse_ticket(ticket).map_or(s.id.as_str(), |(id, _)| id);
        let groups = [
            vec![redis::cmd("DEL").arg(self.session_key(id)).clone()],
            vec![redis::cmd("SREM")
                .arg(self.index_key(&s.openid))
                .arg(id)
                .clone()],
        ];
        self.pipelines(&groups).await.map(drop)
    }

    /// Ends every session of the user, on every replica (those with a cache see it
    /// within `cache_ttl`); returns how many were live.
    pub async fn revoke_openid(&self, openid: &str) -> Result<usize, StoreError> {
        if let Some(cache) = &self.cache {
            cache.remove_openid(openid);
        }
        let index = self.index_key(openid);
        let ids: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(&index)).await?;
        let mut del_index = redis::cmd("DEL");
        del_index.arg(&index);
        if ids.is_empty() {
            return self.query::<()>(&del_index).await.map(|()| 0);
        }
        let mut del_sessions = redis::cmd("DEL");
        for id in &ids {
            del_sessions.arg(self.session_key(id));
        }
        // Not one pipeline: in a cluster the session keys span slots, which only a lone
        // DEL is split for. Sent together, they still share a round trip.
        let (ended, ()) = tokio::try_join!(
            self.query::<usize>(&del_sessions),
            self.query::<()>(&del_index)
        )?;
        Ok(ended)
    }

    /// Live sessions, by SCAN (see the module notes for the cost). Unsupported on a
    /// cluster, where every primary would have to be scanned.
    pub async fn count(&self) -> Result<usize, StoreError> {
        if matches!(self.conn, Conn::Cluster(_)) {
            return Err(StoreError::Unsupported);
        }
        let pattern = format!("{}s:*", glob_escape(&self.prefix));
        let mut cursor = 0u64;
        let mut total = 0;
        loop {
            let (next, keys): (u64, Vec<Value>) = self
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_BATCH),
                )
                .await?;
            total += keys.len();
            if next == 0 {
                return Ok(total);
            }
            cursor = next;
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.query(&redis::cmd("PING")).await
    }

    pub async fn put_ephemeral(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let name = self.ephemeral_key_name(key);
        if ttl.is_zero() {
            return self.query(redis::cmd("DEL").arg(name)).await;
        }
        let sealed = seal(&self.keys.ephemeral, name.as_bytes(), value);
        self.query(
            redis::cmd("SET")
                .arg(&name)
                .arg(sealed)
                .arg("PX")
                .arg(millis(ttl)),
        )
        .await
    }

    fn open_ephemeral(
        &self,
        key: &str,
        sealed: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let name = self.ephemeral_key_name(key);
        open(&self.keys.ephemeral, name.as_bytes(), &sealed)
            .map(Some)
            .ok_or(StoreError::Corrupt)
    }

    pub async fn get_ephemeral(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let sealed = self
            .query(redis::cmd("GET").arg(self.ephemeral_key_name(key)))
            .await?;
        self.open_ephemeral(key, sealed)
    }

    pub async fn take_ephemeral(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let name = self.ephemeral_key_name(key);
        let sealed = match self.query(redis::cmd("GETDEL").arg(&name)).await {
            Err(StoreError::Unavailable(msg))
                if msg.to_ascii_lowercase().contains("unknown command") =>
            {
                // Redis before 6.2: the same atomic get-and-delete as a script.
                self.query(
                    redis::cmd("EVAL")
                        .arg(
                            "local v = redis.call('GET', KEYS[1]) \
                             if v then redis.call('DEL', KEYS[1]) end \
                             return v",
                        )
                        .arg(1)
                        .arg(&name),
                )
                .await?
            }
            other => other?,
        };
        self.open_ephemeral(key, sealed)
    }

    pub async fn try_lock(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(self.lock_key(key))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl)),
            )
            .await?;
        Ok(set.is_some())
    }

    pub async fn unlock(&self, key: &str) -> Result<(), StoreError> {
        self.query(redis::cmd("DEL").arg(self.lock_key(key))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_matched_literally_by_scan() {
        let table = [
            ("wxgate:", "wxgate:"),
            ("app*[1]?:", "app\\*\\[1\\]\\?:"),
            ("a\\b", "a\\\\b"),
        ];
        for (prefix, want) in table {
            assert_eq!(glob_escape(prefix), want, "{prefix}");
        }
    }

    #[test]
    fn only_tickets_we_issue_parse() {
        let key = B64.encode([7u8; KEY_LEN]);
        let table = [
            (format!("abc_-9.{key}"), true),
            (format!(".{key}"), false),
            (format!("a*b.{key}"), false),
            (format!("a b.{key}"), false),
            (format!("{}.{key}", "a".repeat(MAX_ID_LEN + 1)), false),
            (format!("abc.{key}x"), false),
            (format!("abc.{}", B64.encode([7u8; KEY_LEN - 1])), false),
            ("abc".to_owned(), false),
            (String::new(), false),
        ];
        for (ticket, ok) in table {
            assert_eq!(parse_ticket(&ticket).is_some(), ok, "{ticket:?}");
        }
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_id() {
        let key = aead_key(&[1; KEY_LEN]).unwrap();
        let other = aead_key(&[2; KEY_LEN]).unwrap();
        let sealed = seal(&key, b"id-1", b"secret");
        assert_eq!(
            open(&key, b"id-1", &sealed).as_deref(),
            Some(&b"secret"[..])
        );
        assert_eq!(open(&other, b"id-1", &sealed), None, "other key");
        assert_eq!(open(&key, b"id-2", &sealed), None, "moved to another id");
        assert_eq!(open(&key, b"id-1", &sealed[..5]), None, "truncated");
        assert_ne!(seal(&key, b"id-1", b"secret"), sealed, "fresh nonce");
    }

    #[test]
    fn ttls_sent_to_redis_are_never_zero() {
        let table = [
            (Duration::ZERO, 1),
            (Duration::from_micros(10), 1),
            (Duration::from_millis(1500), 1500),
        ];
        for (ttl, want) in table {
            assert_eq!(millis(ttl), want, "{ttl:?}");
        }
        assert_eq!(remaining(now_unix()), None);
        assert_eq!(remaining(0), None);
        assert!(remaining(now_unix() + 100).is_some_and(|s| (99..=100).contains(&s)));
    }
}
