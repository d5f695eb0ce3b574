//! The in-process session store: sessions live in this process only (lost on restart,
//! not shared between replicas). The ticket is the session id.
//!
//! Kept compact because it holds every live session: an entry is the id's 128-bit hash
//! as key, the expiry, an insertion number and the session packed into one byte
//! string (one allocation), so a base-scope session costs a few hundred bytes. The
//! packing is length-prefixed rather than JSON: every signed-in request unpacks it.
//!
//! Behind a read-write lock: every signed-in request reads, and a session is written
//! at most once a minute (the sliding expiry). Under a mutex, a worker descheduled
//! while holding it made the other worker wait in the kernel for it: the benchmark's
//! p99 at 16 connections was several times its p50 from that alone.

use std::collections::{HashMap, VecDeque};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::compact::needs_write;
use super::ephemeral::Ephemeral;
use super::{now_unix, ExtraClaims, Idp, Session, StoreError};
use crate::config::Scope;

/// Expired sessions are swept at most this often, on a write.
const SWEEP_EVERY_SECS: u64 = 60;

pub struct MemoryStore {
    max_sessions: usize,
    inner: RwLock<Inner>,
    pub(super) ephemeral: Ephemeral,
}

struct Entry {
    /// Insertion number: matches the `order` item that still stands for this entry.
    seq: u64,
    expires_at: u64,
    /// The session without its id, packed.
    data: Box<[u8]>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<u128, Entry>,
    /// Oldest first. Items whose entry was since removed or rewritten are skipped.
    order: VecDeque<(u128, u64)>,
    by_openid: HashMap<Box<str>, Vec<u128>>,
    next_seq: u64,
    last_sweep: u64,
}

/// The map key of a ticket. A hash rather than the ticket itself: fixed size, no
/// allocation, and a memory dump does not hold usable tickets.
fn key_of(ticket: &str) -> u128 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ticket.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d.as_ref()[..16]);
    u128::from_le_bytes(k)
}

/// Marks an absent optional field in [`pack`].
const ABSENT: u32 = u32::MAX;

/// The session without its id: scope (1 byte), created/profile/expires (u64 LE), then
/// appid, openid, unionid, nickname, headimgurl, access_token, refresh_token, each as a
/// u32 LE length (or [`ABSENT`]) followed by its bytes. A session from another provider
/// than WeChat, or with extra claims, then has the provider (1 byte) and the claims as
/// JSON (a string as above); a WeChat session without extra claims stops before them.
fn pack(s: &Session) -> Box<[u8]> {
    let tail = (!s.idp.is_wechat() || !s.claims.is_empty())
        .then(|| serde_json::to_string(&s.claims).unwrap_or_default());
    let strings: [Option<&str>; 7] = [
        Some(&s.appid),
        Some(&s.openid),
        s.unionid.as_deref(),
        s.nickname.as_deref(),
        s.headimgurl.as_deref(),
        s.access_token.as_deref(),
        s.refresh_token.as_deref(),
    ];
    let len = 1
        + 24
        + strings
            .iter()
            .map(|f| 4 + f.map_or(0, str::len))
            .sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.push(match s.scope {
        Scope::Base => 0,
        Scope::UserInfo => 1,
    });
    for n in [s.created_at, s.profile_at, s.expires_at] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    for f in strings {
        match f {
            // Fields come from WeChat and are far below 4 GB; a larger one would
            // not fit the length prefix and is left out rather than corrupting the rest.
            Some(v) if v.len() < ABSENT as usize => {
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v.as_bytes());
            }
            _ => out.extend_from_slice(&ABSENT.to_le_bytes()),
        }
    }
    if let Some(claims) = tail {
        out.push(match s.idp {
            Idp::Wechat => 0,
            Idp::Wecom => 1,
            Idp::Hub => 2,
        });
        out.extend_from_slice(&(claims.len() as u32).to_le_bytes());
        out.extend_from_slice(claims.as_bytes());
    }
    out.into_boxed_slice()
}

/// The session [`pack`] packed, with `id` as its id; None for bytes it did not write.
fn unpack(data: &[u8], id: &str) -> Option<Session> {
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = data.split_at_checked(n)?;
        *data = rest;
        Some(head)
    }
    fn u64_of(data: &mut &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(take(data, 8)?.try_into().ok()?))
    }
    fn string(data: &mut &[u8]) -> Option<Option<String>> {
        let len = u32::from_le_bytes(take(data, 4)?.try_into().ok()?);
        if len == ABSENT {
            return Some(None);
        }
        let bytes = take(data, len as usize)?;
        Some(Some(std::str::from_utf8(bytes).ok()?.to_owned()))
    }
    let mut data = data;
    let scope = match take(&mut data, 1)?[0] {
        0 => Scope::Base,
        1 => Scope::UserInfo,
        _ => return None,
    };
    let (created_at, profile_at, expires_at) =
        (u64_of(&mut data)?, u64_of(&mut data)?, u64_of(&mut data)?);
    let mut session = Session {
        id: id.to_owned(),
        scope,
        created_at,
        profile_at,
        expires_at,
        appid: string(&mut data)??,
        openid: string(&mut data)??,
        unionid: string(&mut data)?,
        nickname: string(&mut data)?,
        headimgurl: string(&mut data)?,
        access_token: string(&mut data)?,
        refresh_token: string(&mut data)?,
        idp: Idp::Wechat,
        claims: ExtraClaims::new(),
    };
    if !data.is_empty() {
        session.idp = match take(&mut data, 1)?[0] {
            0 => Idp::Wechat,
            1 => Idp::Wecom,
            2 => Idp::Hub,
            _ => return None,
        };
        session.claims = serde_json::from_str(&string(&mut data)??).ok()?;
    }
    Some(session)
}

impl Inner {
    fn insert(&mut self, key: u128, s: &Session) {
        self.remove(key);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(
            key,
            Entry {
                seq,
                expires_at: s.expires_at,
                data: pack(s),
            },
        );
        self.order.push_back((key, seq));
        let ids = self.by_openid.entry(s.openid.as_str().into()).or_default();
        ids.push(key);
    }

    fn remove(&mut self, key: u128) -> Option<Entry> {
        let entry = self.map.remove(&key)?;
        if let Some(s) = unpack(&entry.data, "") {
            if let Some(ids) = self.by_openid.get_mut(s.openid.as_str()) {
                ids.retain(|k| *k != key);
                if ids.is_empty() {
                    self.by_openid.remove(s.openid.as_str());
                }
            }
        }
        Some(entry)
    }

    fn evict_beyond(&mut self, max: usize) {
        while self.map.len() > max {
            let Some((key, seq)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&key).is_some_and(|e| e.seq == seq) {
                self.remove(key);
            }
        }
        // Stale order items pile up when sessions are deleted or rewritten: rebuild once
        // they outnumber live entries, keeping the queue within twice the map.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(k, seq)| map.get(k).is_some_and(|e| e.seq == *seq));
        }
    }

    fn sweep(&mut self, now: u64) {
        if now.saturating_sub(self.last_sweep) < SWEEP_EVERY_SECS {
            return;
        }
        self.last_sweep = now;
        let expired: Vec<u128> = self
            .map
            .iter()
            .filter(|(_, e)| e.expires_at <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            self.remove(key);
        }
    }
}

impl MemoryStore {
    /// Keeps at most `max_sessions`, dropping the oldest beyond it.
    pub fn new(max_sessions: usize) -> MemoryStore {
        MemoryStore {
            max_sessions: max_sessions.max(1),
            inner: RwLock::new(Inner::default()),
            ephemeral: Ephemeral::default(),
        }
    }

    // Each critical section leaves the maps consistent: a poisoned lock is usable.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn save(&self, s: &Session) -> Result<String, StoreError> {
        let mut inner = self.lock();
        inner.sweep(now_unix());
        inner.insert(key_of(&s.id), s);
        inner.evict_beyond(self.max_sessions);
        Ok(s.id.clone())
    }

    pub async fn load(&self, ticket: &str) -> Result<Option<Session>, StoreError> {
        let inner = self.read();
        Ok(match inner.map.get(&key_of(ticket)) {
            Some(e) if e.expires_at > now_unix() => unpack(&e.data, ticket),
            _ => None,
        })
    }

    /// Never re-issues the cookie: the ticket does not change.
    pub async fn touch(&self, ticket: &str, s: &Session) -> Result<Option<String>, StoreError> {
        let key = key_of(ticket);
        // Most touches change nothing worth writing: decided under the shared lock.
        match self.read().map.get(&key).map(|e| unpack(&e.data, ticket)) {
            None => return Ok(None),
            Some(None) => return Err(StoreError::Corrupt),
            Some(Some(old)) if !needs_write(&old, s) => return Ok(None),
            Some(Some(_)) => {}
        }
        // Looked at again under the exclusive lock: it may have changed in between.
        let mut inner = self.lock();
        let Some(entry) = inner.map.get_mut(&key) else {
            // Deleted or evicted meanwhile: do not bring it back.
            return Ok(None);
        };
        let Some(old) = unpack(&entry.data, ticket) else {
            return Err(StoreError::Corrupt);
        };
        if !needs_write(&old, s) {
            return Ok(None);
        }
        if old.openid == s.openid {
            entry.expires_at = s.expires_at;
            entry.data = pack(s);
        } else {
            inner.insert(key, s);
        }
        Ok(None)
    }

    pub async fn delete(&self, ticket: &str, _s: &Session) -> Result<(), StoreError> {
        self.lock().remove(key_of(ticket));
        Ok(())
    }

    pub async fn revoke_openid(&self, openid: &str) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let keys = inner.by_openid.remove(openid).unwrap_or_default();
        let now = now_unix();
        let mut ended = 0;
        for key in keys {
            if inner.map.remove(&key).is_some_and(|e| e.expires_at > now) {
                ended += 1;
            }
        }
        Ok(ended)
    }

    pub async fn count(&self) -> Result<usize, StoreError> {
        let now = now_unix();
        Ok(self
            .read()
            .map
            .values()
            .filter(|e| e.expires_at > now)
            .count())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::compact::tests::base_session;

    fn live(openid: &str) -> Session {
        let mut s = base_session();
        s.id = crate::session::new_session_id();
        s.openid = openid.into();
        s.expires_at = now_unix() + 3600;
        s
    }

    #[tokio::test]
    async fn beyond_max_sessions_the_oldest_is_dropped() {
        let store = MemoryStore::new(2);
        let (a, b, c) = (live("a"), live("b"), live("c"));
        for s in [&a, &b, &c] {
            store.save(s).await.unwrap();
        }
        assert_eq!(store.load(&a.id).await.unwrap(), None);
        assert_eq!(store.load(&b.id).await.unwrap(), Some(b));
        assert_eq!(store.load(&c.id).await.unwrap(), Some(c));
        assert_eq!(store.count().await.unwrap(), 2);
        assert!(
            !store.lock().by_openid.contains_key("a"),
            "index follows eviction"
        );
    }

    #[tokio::test]
    async fn expired_sessions_are_swept_on_a_later_write() {
        let store = MemoryStore::new(10);
        let mut old = live("a");
        old.expires_at = now_unix() - 1;
        store.save(&old).await.unwrap();
        store.lock().last_sweep = 0;
        store.save(&live("b")).await.unwrap();
        let inner = store.lock();
        assert_eq!(inner.map.len(), 1);
        assert!(!inner.by_openid.contains_key("a"));
    }

    #[tokio::test]
    async fn rewrites_and_deletes_do_not_grow_the_order_queue_without_bound() {
        let store = MemoryStore::new(10);
        let s = live("a");
        for _ in 0..1000 {
            store.save(&s).await.unwrap();
        }
        assert!(store.lock().order.len() <= 2 + 64);
        assert_eq!(store.count().await.unwrap(), 1);
    }

    /// Readers never wait for each other: a signed-in request can read its session
    /// while another worker is in the middle of reading one (or was descheduled there).
    #[tokio::test]
    async fn a_reader_holding_the_lock_does_not_block_loads_or_quiet_touches() {
        let store = MemoryStore::new(10);
        let s = live("a");
        store.save(&s).await.unwrap();
        let held = store.read();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let loaded = rt.block_on(store.load(&s.id)).unwrap();
                // The same expiry: nothing to write, so no exclusive lock either.
                let touched = rt.block_on(store.touch(&s.id, &s)).unwrap();
                done_tx.send((loaded, touched)).unwrap();
            });
            // A deadlock guard, not a timing assertion: an exclusive lock would make
            // the reader above wait until `held` is dropped, which is only after this.
            let got = done_rx.recv_timeout(std::time::Duration::from_secs(60));
            drop(held);
            assert_eq!(
                got.expect("a load waited for another reader"),
                (Some(s.clone()), None)
            );
        });
    }

    #[tokio::test]
    async fn a_touch_that_moves_the_expiry_is_written() {
        let store = MemoryStore::new(10);
        let s = live("a");
        store.save(&s).await.unwrap();
        let mut slid = s.clone();
        slid.expires_at += 120;
        assert_eq!(store.touch(&s.id, &slid).await.unwrap(), None);
        assert_eq!(store.load(&s.id).await.unwrap(), Some(slid));
        store.delete(&s.id, &s).await.unwrap();
        let mut later = s.clone();
        later.expires_at += 240;
        store.touch(&s.id, &later).await.unwrap();
        assert_eq!(store.load(&s.id).await.unwrap(), None, "not brought back");
    }

    #[test]
    fn a_session_survives_packing_and_garbage_does_not_unpack() {
        let mut s = base_session();
        assert_eq!(unpack(&pack(&s), &s.id), Some(s.clone()));
        s.scope = Scope::UserInfo;
        s.nickname = Some("小明 \"quoted\" 🌸".into());
        s.unionid = Some(String::new());
        s.headimgurl = Some("https://thirdwx.qlogo.cn/x/132".into());
        s.access_token = None;
        let packed = pack(&s);
        assert_eq!(unpack(&packed, &s.id), Some(s));
        for cut in [0, 1, 10, 25, 30, packed.len() - 1] {
            assert_eq!(unpack(&packed[..cut], "id"), None, "cut at {cut}");
        }
        let mut bad_scope = packed.to_vec();
        bad_scope[0] = 2;
        assert_eq!(unpack(&bad_scope, "id"), None);
    }

    #[test]
    fn a_session_from_another_provider_survives_packing() {
        let mut s = base_session();
        s.idp = Idp::Hub;
        s.claims
            .insert("groups".into(), serde_json::json!(["a", "b"]));
        let packed = pack(&s);
        assert_eq!(unpack(&packed, &s.id), Some(s));
        assert_eq!(unpack(&packed[..packed.len() - 1], "id"), None);
    }

    #[test]
    fn a_base_scope_session_costs_well_under_a_kilobyte() {
        let s = base_session();
        let data = pack(&s).len();
        // Map slot (key + entry + control byte, at 7/8 load), order item, openid index
        // slot, and allocator overhead for the data: generous upper bounds.
        let map_slot = (size_of::<u128>() + size_of::<Entry>() + 1) * 8 / 7;
        let order_item = size_of::<(u128, u64)>() * 2;
        let index =
            size_of::<u128>() * 2 + size_of::<(Box<str>, Vec<u128>)>() + s.openid.len() + 32;
        let total = data + 16 + map_slot + order_item + index;
        assert!(total < 700, "{total} bytes per session");
    }
}
