//! The signed-token cache: one token per session, reused while it is fresh so that
//! signing does not run on every forwarded request.
//!
//! Keyed by session id, one token per audience (each route may name its own); the
//! entry also remembers the `profile_at` it was signed for, so a refreshed profile
//! (new nickname or avatar) misses and gets a new token. Sharded
//! behind read-write locks: a hit takes one read lock and clones a `HeaderValue`
//! (a reference count), nothing else.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::RwLock;

use http::HeaderValue;

const SHARDS: usize = 16;

/// What a cached token was signed for: it is handed out only for the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SignedFor {
    /// 0: `identity.audience`; a route's number + 1.
    pub audience: u32,
    /// The session's `profile_at`.
    pub profile_at: u64,
    /// The extra claims ([`super::claims::Extra::variant`]).
    pub variant: u8,
}

struct Entry {
    signed_for: SignedFor,
    /// Unix seconds after which the token is not handed out again.
    fresh_until: u64,
    token: HeaderValue,
}

pub(crate) struct TokenCache {
    shards: Vec<RwLock<HashMap<String, Vec<Entry>>>>,
    hasher: RandomState,
    per_shard: usize,
}

impl TokenCache {
    /// A cache holding about `capacity` tokens at most.
    pub(crate) fn new(capacity: usize) -> Self {
        TokenCache {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, id: &str) -> &RwLock<HashMap<String, Vec<Entry>>> {
        &self.shards[self.hasher.hash_one(id) as usize % SHARDS]
    }

    pub(crate) fn get(&self, id: &str, signed_for: SignedFor, now: u64) -> Option<HeaderValue> {
        let map = self.shard(id).read().unwrap_or_else(|e| e.into_inner());
        map.get(id)?
            .iter()
            .find(|e| e.signed_for.audience == signed_for.audience)
            .filter(|e| e.signed_for == signed_for && now < e.fresh_until)
            .map(|e| e.token.clone())
    }

    pub(crate) fn put(
        &self,
        id: &str,
        signed_for: SignedFor,
        fresh_until: u64,
        token: HeaderValue,
        now: u64,
    ) {
        let mut map = self.shard(id).write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.per_shard && !map.contains_key(id) {
            map.retain(|_, es| es.iter().any(|e| now < e.fresh_until));
            // Still full of fresh tokens: forgetting them only costs a re-sign each.
            if map.len() >= self.per_shard {
                map.clear();
            }
        }
        let entry = Entry {
            signed_for,
            fresh_until,
            token,
        };
        let entries = map.entry(id.to_string()).or_default();
        match entries
            .iter_mut()
            .find(|e| e.signed_for.audience == signed_for.audience)
        {
            Some(e) => *e = entry,
            None => entries.push(entry),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sf(audience: u32, profile_at: u64, variant: u8) -> SignedFor {
        SignedFor {
            audience,
            profile_at,
            variant,
        }
    }

    fn hv(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    #[test]
    fn a_token_is_served_only_for_its_profile_and_while_fresh() {
        let c = TokenCache::new(100);
        c.put("sid", sf(0, 7, 1), 1000, hv("tok"), 0);
        c.put("sid", sf(3, 7, 1), 1000, hv("tok-route"), 0);
        let cases = [
            ("same profile, fresh", 7, 1, 999, Some(hv("tok"))),
            ("profile refreshed", 8, 1, 999, None),
            ("other extra claims", 7, 2, 999, None),
            ("no longer fresh", 7, 1, 1000, None),
        ];
        for (name, profile_at, variant, now, want) in cases {
            assert_eq!(
                c.get("sid", sf(0, profile_at, variant), now),
                want,
                "{name}"
            );
        }
        assert_eq!(c.get("other", sf(0, 7, 1), 0), None);
        assert_eq!(
            c.get("sid", sf(3, 7, 1), 999),
            Some(hv("tok-route")),
            "per audience"
        );
        assert_eq!(c.get("sid", sf(2, 7, 1), 999), None, "another audience");
    }

    #[test]
    fn a_full_cache_drops_stale_tokens_first_and_stays_bounded() {
        let c = TokenCache::new(SHARDS); // one entry per shard
        for i in 0..200 {
            c.put(&format!("s{i}"), sf(0, 0, 0), 10, hv("t"), 0);
        }
        assert!(c.len() <= SHARDS, "{}", c.len());
        let c = TokenCache::new(SHARDS * 2);
        // Find two ids in the same shard, fill it with one stale and one fresh entry.
        let ids: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
        let shard_of = |id: &str| c.hasher.hash_one(id) as usize % SHARDS;
        let same: Vec<&String> = ids
            .iter()
            .filter(|i| shard_of(i) == shard_of(&ids[0]))
            .take(3)
            .collect();
        c.put(same[0], sf(0, 0, 0), 5, hv("stale"), 0);
        c.put(same[1], sf(0, 0, 0), 100, hv("fresh"), 0);
        c.put(same[2], sf(0, 0, 0), 100, hv("new"), 50);
        assert_eq!(c.get(same[0], sf(0, 0, 0), 1), None, "stale entry dropped");
        assert_eq!(c.get(same[1], sf(0, 0, 0), 50), Some(hv("fresh")));
        assert_eq!(c.get(same[2], sf(0, 0, 0), 50), Some(hv("new")));
    }
}
