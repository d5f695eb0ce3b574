//! Short-lived values and locks kept in process memory, for the stores without a
//! shared backend (memory, cookie): correct for a single replica only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
}

impl Ephemeral {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent, so a panic elsewhere
        // while holding the lock does not make them unusable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn put(&self, key: &str, value: &[u8], ttl: Duration) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.maybe_reap(now);
        inner
            .values
            .insert(key.to_owned(), (now + ttl, value.to_vec()));
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
        e.put("k", b"v", Duration::ZERO);
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
        e.put("keep", b"v", Duration::from_secs(60));
        for i in 0..200 {
            e.put(&format!("gone{i}"), b"v", Duration::ZERO);
        }
        assert!(e.lock().values.len() < 200, "expired entries were reaped");
        assert_eq!(e.get("keep"), Some(b"v".to_vec()));
    }
}
