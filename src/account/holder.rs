//! One value every replica shares (the account's access_token, the jsapi_ticket): kept
//! in the session store, renewed ahead of its expiry, and fetched from WeChat once
//! however many callers and replicas want a new one at the same moment.
//!
//! The rules, in order:
//! - a fresh value is handed out as it is;
//! - a value in its renewal window (`ahead` before it expires) is still good: the first
//!   caller to notice renews it while everyone else keeps using it;
//! - no value, an expired one, or the one a caller saw refused (40001): callers wait.
//!   In this process they queue behind one renewal; across replicas the store's lock
//!   lets one replica fetch while the others read what it stored.
//!
//! The store is the memory store's map for one process, Redis for replicas (sealed
//! there like every ephemeral value). Each process also keeps the last value it read
//! for a second, so a busy JS-SDK endpoint does not ask Redis every time.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::AccountError;
use crate::session::{Store, StoreError};

/// What a holder's callers hear when it has nothing to give: the account's services
/// and the WeCom corp token each have their own error type.
pub(crate) trait HolderError: Clone + From<StoreError> + std::fmt::Display {
    /// Another replica held the renewal lock for its whole lifetime.
    fn busy() -> Self;
}

impl HolderError for AccountError {
    fn busy() -> Self {
        AccountError::Busy
    }
}

/// A copy read from the store is used this long before it is read again.
const RECHECK: Duration = Duration::from_secs(1);
/// How often a caller with nothing usable looks whether another replica stored a value.
const POLL: Duration = Duration::from_millis(50);
/// A value this close to its expiry is not handed out: the caller could not use it.
const EXPIRY_MARGIN_MS: u64 = 1_000;
/// Renewals made because a caller saw the value refused are this far apart at least
/// (WeChat ignores a forced stable-token renewal sooner than 30 s after the last one).
const REFUSAL_GAP_MS: u64 = 30_000;

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What the store keeps. Times are Unix milliseconds: replicas share them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    #[serde(rename = "v")]
    pub value: String,
    /// When WeChat stops accepting it (as far as its `expires_in` told).
    #[serde(rename = "x")]
    pub expires_at: u64,
    /// When it is renewed.
    #[serde(rename = "d")]
    pub due_at: u64,
    /// The last renewal made because a caller saw the value refused.
    #[serde(rename = "r", default)]
    pub refused_at: u64,
}

// The value is a credential: `{:?}` shows only its times.
impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("due_at", &self.due_at)
            .field("refused_at", &self.refused_at)
            .finish()
    }
}

/// Where a value stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    Fresh,
    /// Still good, and time to renew it.
    Due,
    Expired,
}

impl Record {
    /// A value WeChat just handed out, valid `expires_in` seconds from `now`.
    ///
    /// Renewed `ahead` before it expires, but never sooner than `min_gap` from now: a
    /// stable token asked for a moment before its last five minutes comes back
    /// unchanged, and must not be asked for again on every call.
    pub fn new(value: String, expires_in: u64, now: u64, ahead: Duration) -> Record {
        let expires_at = now.saturating_add(expires_in.saturating_mul(1000));
        let ahead_ms = millis(ahead);
        let due_at = expires_at
            .saturating_sub(ahead_ms)
            .max(now.saturating_add(min_gap_ms(ahead_ms)));
        Record {
            value,
            expires_at,
            due_at,
            refused_at: 0,
        }
    }

    pub fn freshness(&self, now: u64) -> Freshness {
        if now.saturating_add(EXPIRY_MARGIN_MS) >= self.expires_at {
            Freshness::Expired
        } else if now >= self.due_at {
            Freshness::Due
        } else {
            Freshness::Fresh
        }
    }

    /// Whole seconds left, for `expires_in` answers.
    pub fn expires_in(&self, now: u64) -> u64 {
        self.expires_at.saturating_sub(now) / 1000
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A tenth of the renewal window, at most ten seconds.
fn min_gap_ms(ahead_ms: u64) -> u64 {
    (ahead_ms / 10).min(10_000)
}

/// What a caller needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want<'a> {
    /// Any good value.
    Any,
    /// A good value other than this one, which WeChat refused (40001/42001).
    Not(&'a str),
}

/// Whether `rec` can be handed to a caller that wants `want`.
pub(crate) fn usable(rec: Option<&Record>, want: Want<'_>, now: u64) -> bool {
    match rec {
        None => false,
        Some(r) if r.freshness(now) == Freshness::Expired => false,
        Some(r) => match want {
            Want::Any => true,
            Want::Not(bad) => r.value != bad,
        },
    }
}

fn fresh(rec: Option<&Record>, want: Want<'_>, now: u64) -> bool {
    usable(rec, want, now) && rec.is_some_and(|r| r.freshness(now) == Freshness::Fresh)
}

/// What a fetch is asked to do.
pub(crate) struct Renewal {
    /// The value a caller saw refused, if that is why.
    pub refused: Option<String>,
}

/// What a fetch brought back.
pub(crate) struct Fetched {
    pub value: String,
    pub expires_in: u64,
}

/// One shared value. Cheap to share behind an `Arc`.
pub(crate) struct Holder<E = AccountError> {
    /// "access_token" or "jsapi_ticket": for logs.
    pub name: &'static str,
    key: String,
    lock: String,
    store: Arc<Store>,
    ahead: Duration,
    /// How long the lock is held at most, and callers wait for another replica.
    lock_ttl: Duration,
    local: Mutex<Option<(Instant, Record)>>,
    /// One renewal at a time in this process; waiting callers queue here.
    renewing: tokio::sync::Mutex<()>,
    /// The last failed renewal: callers that queued behind it get its error instead of
    /// trying again one after another, and nobody tries again for a short pause.
    failure: Mutex<Option<(Instant, E)>>,
}

impl<E: HolderError> Holder<E> {
    pub fn new(
        name: &'static str,
        key: String,
        store: Arc<Store>,
        ahead: Duration,
        lock_ttl: Duration,
    ) -> Self {
        Holder {
            name,
            lock: format!("{key}:lock"),
            key,
            store,
            ahead,
            lock_ttl,
            local: Mutex::new(None),
            renewing: tokio::sync::Mutex::new(()),
            failure: Mutex::new(None),
        }
    }

    /// A good value, renewed with `fetch` when needed (see the module's rules).
    pub async fn get<F, Fut>(&self, want: Want<'_>, fetch: F) -> Result<Record, E>
    where
        F: Fn(Renewal) -> Fut,
        Fut: Future<Output = Result<Fetched, E>>,
    {
        let asked = Instant::now();
        let now = now_ms();
        let good = self
            .read(true)
            .await?
            .filter(|r| usable(Some(r), want, now));
        let recent_failure = self.failure_since(asked.checked_sub(self.pause()).unwrap_or(asked));
        let _renewing = match (&good, recent_failure) {
            (Some(r), _) if r.freshness(now) == Freshness::Fresh => return Ok(r.clone()),
            // The last try failed a moment ago: the current value serves meanwhile, and
            // without one the caller hears why rather than asking WeChat again at once.
            (Some(r), Some(_)) => return Ok(r.clone()),
            (None, Some(e)) => return Err(e),
            // Someone here is renewing it: the current value serves meanwhile.
            (Some(r), None) => match self.renewing.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(r.clone()),
            },
            (None, None) => {
                let guard = self.renewing.lock().await;
                // The renewal this caller queued behind failed: its error is the answer.
                if let Some(e) = self.failure_since(asked) {
                    return Err(e);
                }
                guard
            }
        };
        match self.renew(want, &fetch).await {
            Ok(r) => {
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(r)
            }
            Err(e) => {
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), e.clone()));
                // A failed renewal of a value that is still good is not the caller's
                // problem yet: keep serving it, try again a little later.
                match good.filter(|r| usable(Some(r), want, now_ms())) {
                    Some(r) => {
                        tracing::warn!(value = self.name, error = %e, "renewal failed; the current one serves until it expires");
                        Ok(r)
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// The last failure, if it happened at or after `since`.
    fn failure_since(&self, since: Instant) -> Option<E> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(at, _)| *at >= since)
            .map(|(_, e)| e.clone())
    }

    /// How long after a failed renewal nobody in this process tries again: a tenth of
    /// the renewal window, between 100 ms and 1 s.
    fn pause(&self) -> Duration {
        Duration::from_millis((millis(self.ahead) / 10).clamp(100, 1000))
    }

    /// Renews (holding `renewing`): reads the store again, takes the store's lock or
    /// waits for whoever holds it.
    async fn renew<F, Fut>(&self, want: Want<'_>, fetch: &F) -> Result<Record, E>
    where
        F: Fn(Renewal) -> Fut,
        Fut: Future<Output = Result<Fetched, E>>,
    {
        // Whoever held `renewing` before may just have stored a new value.
        let mut rec = self.read(false).await?;
        if let Some(r) = rec.as_ref().filter(|r| fresh(Some(r), want, now_ms())) {
            return Ok(r.clone());
        }
        let deadline = Instant::now() + self.lock_ttl;
        loop {
            if self.store.try_lock(&self.lock, self.lock_ttl).await? {
                let outcome = self.fetch_and_store(want, fetch).await;
                if let Err(e) = self.store.unlock(&self.lock).await {
                    // It lapses by itself after lock_ttl.
                    tracing::warn!(value = self.name, error = %e, "could not release the renewal lock");
                }
                return outcome;
            }
            // Another replica is renewing. A good value serves meanwhile; without one,
            // look again shortly (the store has no way to announce the new value).
            if let Some(r) = rec.filter(|r| usable(Some(r), want, now_ms())) {
                return Ok(r);
            }
            if Instant::now() >= deadline {
                return Err(E::busy());
            }
            tokio::time::sleep(POLL).await;
            rec = self.read(false).await?;
        }
    }

    /// Holding the store's lock: reads once more (another replica may have renewed
    /// between our read and the lock), fetches, stores.
    async fn fetch_and_store<F, Fut>(&self, want: Want<'_>, fetch: &F) -> Result<Record, E>
    where
        F: Fn(Renewal) -> Fut,
        Fut: Future<Output = Result<Fetched, E>>,
    {
        let current = self.read(false).await?;
        if let Some(r) = current.as_ref().filter(|r| fresh(Some(r), want, now_ms())) {
            return Ok(r.clone());
        }
        let refused = match want {
            Want::Not(bad) if current.as_ref().is_some_and(|c| c.value == bad) => Some(bad),
            _ => None,
        };
        if let (Some(_), Some(c)) = (refused, &current) {
            if now_ms().saturating_sub(c.refused_at) < REFUSAL_GAP_MS {
                // Renewed for a refusal moments ago and refused again: WeChat would not
                // force another so soon (and allows 20 a day). The caller gets what
                // there is rather than a loop of renewals.
                tracing::warn!(
                    value = self.name,
                    "refused again within 30 s of a renewal made for a refusal; not renewing again yet"
                );
                return Ok(c.clone());
            }
        }
        let fetched = fetch(Renewal {
            refused: refused.map(str::to_string),
        })
        .await?;
        let now = now_ms();
        let mut rec = Record::new(fetched.value, fetched.expires_in, now, self.ahead);
        rec.refused_at = match (refused, &current) {
            (Some(_), _) => now,
            (None, Some(c)) => c.refused_at,
            (None, None) => 0,
        };
        let ttl = Duration::from_millis(rec.expires_at.saturating_sub(now));
        let encoded = serde_json::to_vec(&rec).map_err(|_| E::busy())?;
        self.store.put_ephemeral(&self.key, &encoded, ttl).await?;
        self.remember(&rec);
        tracing::info!(
            value = self.name,
            expires_in = fetched.expires_in,
            on_refusal = refused.is_some(),
            "renewed"
        );
        Ok(rec)
    }

    /// The value: this process's copy when `local_ok` and read within `RECHECK`, else
    /// the store's. With the store unreachable a good local copy still serves.
    async fn read(&self, local_ok: bool) -> Result<Option<Record>, E> {
        let local = self.local_copy();
        if local_ok {
            if let Some((read_at, rec)) = &local {
                if read_at.elapsed() < RECHECK {
                    return Ok(Some(rec.clone()));
                }
            }
        }
        match self.store.get_ephemeral(&self.key).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<Record>(&bytes) {
                Ok(rec) => {
                    self.remember(&rec);
                    Ok(Some(rec))
                }
                Err(_) => Ok(None),
            },
            Ok(None) => Ok(None),
            Err(e) => match local {
                Some((_, rec)) if usable(Some(&rec), Want::Any, now_ms()) => Ok(Some(rec)),
                _ => Err(e.into()),
            },
        }
    }

    fn local_copy(&self) -> Option<(Instant, Record)> {
        self.local.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn remember(&self, rec: &Record) {
        *self.local.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), rec.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AHEAD: Duration = Duration::from_secs(300);

    #[test]
    fn a_value_is_renewed_ahead_of_expiry_but_not_again_at_once() {
        let now = 1_000_000;
        let cases = [
            (
                "a new token: renewed five minutes early",
                7200,
                now + 6_900_000,
            ),
            (
                "a stable token handed out again, 10 min left",
                600,
                now + 300_000,
            ),
            (
                "already in its last five minutes: not before 10 s",
                290,
                now + 10_000,
            ),
            ("shorter than the window itself", 60, now + 10_000),
        ];
        for (name, expires_in, due) in cases {
            let r = Record::new("t".into(), expires_in, now, AHEAD);
            assert_eq!(r.due_at, due, "{name}");
            assert_eq!(r.expires_at, now + expires_in * 1000, "{name}");
        }
        // Short test lifetimes scale the gap down with the window.
        let r = Record::new("t".into(), 2, now, Duration::from_secs(3));
        assert_eq!(r.due_at, now + 300);
    }

    #[test]
    fn freshness_follows_the_clock() {
        let r = Record::new("t".into(), 7200, 0, AHEAD);
        let cases = [
            (0, Freshness::Fresh),
            (6_899_999, Freshness::Fresh),
            (6_900_000, Freshness::Due),
            (7_198_999, Freshness::Due),
            (7_199_000, Freshness::Expired),
            (9_000_000, Freshness::Expired),
        ];
        for (now, want) in cases {
            assert_eq!(r.freshness(now), want, "at {now}");
        }
        assert_eq!(r.expires_in(7_000_500), 199);
        assert_eq!(r.expires_in(8_000_000), 0);
    }

    #[test]
    fn a_refused_value_is_never_handed_out_again() {
        let r = Record::new("old".into(), 7200, 0, AHEAD);
        let cases = [
            ("nothing stored", None, Want::Any, 0, false),
            ("good", Some(&r), Want::Any, 0, true),
            ("due is still good", Some(&r), Want::Any, 7_000_000, true),
            ("expired", Some(&r), Want::Any, 7_500_000, false),
            ("the refused one", Some(&r), Want::Not("old"), 0, false),
            (
                "another than the refused one",
                Some(&r),
                Want::Not("older"),
                0,
                true,
            ),
        ];
        for (name, rec, want, now, ok) in cases {
            assert_eq!(usable(rec, want, now), ok, "{name}");
        }
        assert!(fresh(Some(&r), Want::Any, 0));
        assert!(!fresh(Some(&r), Want::Any, 7_000_000), "due is not fresh");
    }

    #[test]
    fn records_show_no_value_in_debug_output() {
        let r = Record::new("SECRET-TOKEN".into(), 7200, 0, AHEAD);
        let shown = format!("{r:?}");
        assert!(!shown.contains("SECRET-TOKEN"), "{shown}");
    }

    fn fetched(v: &str) -> Result<Fetched, AccountError> {
        Ok(Fetched {
            value: v.into(),
            expires_in: 7200,
        })
    }

    fn holder(store: Arc<Store>) -> Holder<AccountError> {
        Holder::new(
            "access_token",
            "account:test".into(),
            store,
            AHEAD,
            Duration::from_secs(5),
        )
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let store = Arc::new(Store::Memory(crate::session::MemoryStore::new(10)));
        let h = holder(store);
        let fetches = std::sync::atomic::AtomicU32::new(0);
        let fetch = |_: Renewal| {
            let n = fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                tokio::task::yield_now().await;
                fetched(&format!("t{n}"))
            }
        };
        let got = futures_util::future::join_all((0..20).map(|_| h.get(Want::Any, fetch))).await;
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        for g in got {
            assert_eq!(g.unwrap().value, "t0");
        }
        // A caller that saw t0 refused gets a new one; a late report of t0 does not
        // fetch again.
        let r = h.get(Want::Not("t0"), fetch).await.unwrap();
        assert_eq!(r.value, "t1");
        assert!(r.refused_at > 0);
        let r = h.get(Want::Not("t0"), fetch).await.unwrap();
        assert_eq!(r.value, "t1");
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn callers_queued_behind_a_failed_renewal_share_its_error_instead_of_retrying() {
        let store = Arc::new(Store::Memory(crate::session::MemoryStore::new(10)));
        let h = holder(store);
        let fetches = std::sync::atomic::AtomicU32::new(0);
        let fail = |_: Renewal| {
            fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {
                tokio::task::yield_now().await;
                Err(AccountError::Busy)
            }
        };
        let got = futures_util::future::join_all((0..10).map(|_| h.get(Want::Any, fail))).await;
        assert!(got.iter().all(|g| matches!(g, Err(AccountError::Busy))));
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Within the pause after it, a new caller hears the same without a fetch.
        assert!(h.get(Want::Any, fail).await.is_err());
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_renewal_keeps_serving_a_good_value_and_reports_a_missing_one() {
        let store = Arc::new(Store::Memory(crate::session::MemoryStore::new(10)));
        let h = holder(store);
        let fail = |_: Renewal| async { Err(AccountError::Busy) };
        assert!(matches!(
            h.get(Want::Any, fail).await,
            Err(AccountError::Busy)
        ));
        // A value already in its renewal window: the failure is absorbed.
        *h.failure.lock().unwrap() = None;
        let now = now_ms();
        let mut due = Record::new("due".into(), 200, now, AHEAD);
        due.due_at = now;
        h.store
            .put_ephemeral(
                &h.key,
                &serde_json::to_vec(&due).unwrap(),
                Duration::from_secs(200),
            )
            .await
            .unwrap();
        let r = h.get(Want::Any, fail).await.unwrap();
        assert_eq!(r.value, "due");
    }
}
