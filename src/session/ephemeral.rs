//! Short-lived values and locks kept in process memory, for the stores without a
//! shared backend (memory, cookie): correct for a single replica only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::StoreError;

/// When full, expired values are looked for at most this often: reaping walks the
/// whole map, which must not happen on every refused request.
const FULL_REAP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(crate) struct Ephemeral {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    values: HashMap<String, (Instant, Vec<u8>)>,
    locks: HashMap<String, Instant>,
    /// Size of both maps after the last reap: reaping again once they have doubled
    /// keeps the cost amortised O(1) per write.
    reaped_at_len: usize,
    /// When `values` was last reaped because it was full.
    full_reap: Option<Instant>,
}

impl Inner {
    fn maybe_reap(&mut self, now: Instant) {
        let len = self.values.len() + self.locks.len();
        if len < 64 || len < 2 * self.reaped_at_len {
            return;
        }
        self.values.retain(|_, (deadline, _)| *deadline > now);
        self.locks.retain(|_, deadline| *deadline > now);
        self.reaped_at_len = self.values.len() + self.locks.len();
    }

    /// Room for one more value: after a reap, if the last one was long enough ago.
    fn has_room(&mut self, max: usize, now: Instant) -> bool {
        if self.values.len() < max {
            return true;
        }
        if self
            .full_reap
            .is_some_and(|at| now.duration_since(at) < FULL_REAP_INTERVAL)
        {
            return false;
        }
        self.full_reap = Some(now);
        self.values.retain(|_, (deadline, _)| *deadline > now);
        self.values.len() < max
    }
}

impl Ephemeral {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent, so a panic elsewhere
        // while holding the lock does not make them unusable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `value` under `key`. A new key is refused when `max` values are live
    /// (rewriting an existing one never is): anyone can have a QR page shown, and
    /// without a bound a stream of anonymous page views would grow memory for a whole
    /// ticket lifetime.
    pub(crate) fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        max: usize,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.maybe_reap(now);
        if let Some(slot) = inner.values.get_mut(key) {
            *slot = (now + ttl, value.to_vec());
            return Ok(());
        }
        if !inner.has_room(max, now) {
            return Err(StoreError::Full);
        }
        inner
            .values
            .insert(key.to_owned(), (now + ttl, value.to_vec()));
        Ok(())
    }

    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        let inner = self.lock();
        match inner.values.get(key) {
            Some((deadline, v)) if *deadline > Instant::now() => Some(v.clone()),
            _ => None,
        }
    }

    pub(crate) fn take(&self, key: &str) -> Option<Vec<u8>> {
        let (deadline, v) = self.lock().values.remove(key)?;
        (deadline > Instant::now()).then_some(v)
    }

    pub(crate) fn try_lock(&self, key: &str, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.maybe_reap(now);
        match inner.locks.get(key) {
            Some(deadline) if *deadline > now => false,
            _ => {
                inner.locks.insert(key.to_owned(), now + ttl);
                true
            }
        }
    }

    pub(crate) fn unlock(&self, key: &str) {
        self.lock().locks.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_values_and_locks_are_gone() {
        let e = Ephemeral::default();
        e.put("k", b"v", Duration::ZERO, 10).unwrap();
        assert_eq!(e.get("k"), None);
        assert_eq!(e.take("k"), None);
        assert!(e.try_lock("l", Duration::ZERO));
        assert!(
            e.try_lock("l", Duration::from_secs(60)),
            "a lapsed lock is free"
        );
        assert!(!e.try_lock("l", Duration::from_secs(60)));
    }

    #[test]
    fn reaping_drops_only_expired_entries() {
        let e = Ephemeral::default();
        e.put("keep", b"v", Duration::from_secs(60), 1000).unwrap();
        for i in 0..200 {
            e.put(&format!("gone{i}"), b"v", Duration::ZERO, 1000)
                .unwrap();
        }
        assert!(e.lock().values.len() < 200, "expired entries were reaped");
        assert_eq!(e.get("keep"), Some(b"v".to_vec()));
    }

    #[test]
    fn when_full_new_keys_are_refused_and_existing_ones_still_work() {
        let e = Ephemeral::default();
        let put = |k: &str, v: &[u8]| e.put(k, v, Duration::from_secs(3600), 3);
        for k in ["a", "b", "c"] {
            put(k, b"1").unwrap();
        }
        assert!(matches!(put("d", b"1"), Err(StoreError::Full)));
        assert_eq!(e.get("d"), None);
        put("a", b"2").expect("rewriting a value is not a new one");
        assert_eq!(e.get("a"), Some(b"2".to_vec()));
        assert_eq!(e.take("b"), Some(b"1".to_vec()));
        put("d", b"1").expect("a taken value frees its place");
        assert_eq!(e.get("d"), Some(b"1".to_vec()));
    }

    #[test]
    fn when_full_expired_values_make_room_at_most_once_a_second() {
        let e = Ephemeral::default();
        e.put("old", b"1", Duration::ZERO, 2).unwrap();
        e.put("live", b"1", Duration::from_secs(3600), 2).unwrap();
        e.put("new", b"1", Duration::from_secs(3600), 2)
            .expect("the expired value was reaped to make room");
        assert!(matches!(
            e.put("newer", b"1", Duration::from_secs(3600), 2),
            Err(StoreError::Full)
        ));
        assert_eq!(e.get("live"), Some(b"1".to_vec()));
        // A value that expires now is reaped only after the interval.
        e.take("new");
        e.put("short", b"1", Duration::ZERO, 2).unwrap();
        assert!(matches!(
            e.put("x", b"1", Duration::from_secs(3600), 2),
            Err(StoreError::Full)
        ));
        {
            let mut inner = e.lock();
            inner.full_reap = inner.full_reap.map(|t| t - FULL_REAP_INTERVAL);
        }
        e.put("x", b"1", Duration::from_secs(3600), 2)
            .expect("reaped again once the interval passed");
    }
}
