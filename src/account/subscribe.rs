//! The `subscribe` claim: whether a signed-in user follows the official account, from
//! `cgi-bin/user/info`, remembered per user for `account.subscribe_ttl` in this
//! process (the answer is about the user, not a secret: no need to share it).
//!
//! A failed lookup never stands in the way of a request: the claim is left out, and
//! the user is asked about again after a short pause rather than on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::token::TokenHolder;

/// The most users remembered; beyond it, expired answers go first, then all.
const CAPACITY: usize = 100_000;
/// After a failed lookup, the user's requests go without the claim this long.
const FAILED_TTL: Duration = Duration::from_secs(10);

pub struct Subscriptions {
    ttl: Duration,
    lang: String,
    /// openid → (until, the answer; None: the lookup failed).
    answers: Mutex<HashMap<String, (Instant, Option<bool>)>>,
}

impl Subscriptions {
    pub fn new(ttl: Duration, lang: &str) -> Subscriptions {
        Subscriptions {
            ttl,
            lang: lang.to_string(),
            answers: Mutex::default(),
        }
    }

    /// Same TTL and language: remembered answers stay right.
    pub fn same_settings(&self, other: &Subscriptions) -> bool {
        self.ttl == other.ttl && self.lang == other.lang
    }

    /// Whether `openid` (of the account's appid) follows the account; None when
    /// WeChat could not say.
    pub async fn of(&self, token: &TokenHolder, openid: &str) -> Option<bool> {
        if let Some(answer) = self.remembered(openid) {
            return answer;
        }
        let wechat = token.wechat();
        let lang = self.lang.as_str();
        let looked_up = token
            .with_token(|t| async move { wechat.subscribed(&t, openid, lang).await })
            .await;
        let (answer, ttl) = match looked_up {
            Ok(s) => (Some(s), self.ttl),
            Err(e) => {
                tracing::warn!(error = %e, "subscribe status unavailable; the claim is left out for now");
                (None, FAILED_TTL.min(self.ttl))
            }
        };
        self.remember(openid, answer, ttl);
        answer
    }

    /// Some(answer) while one is remembered.
    fn remembered(&self, openid: &str) -> Option<Option<bool>> {
        let map = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        map.get(openid)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, answer)| *answer)
    }

    fn remember(&self, openid: &str, answer: Option<bool>, ttl: Duration) {
        let now = Instant::now();
        let mut map = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY && !map.contains_key(openid) {
            map.retain(|_, (until, _)| now < *until);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(openid.to_string(), (now + ttl, answer));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.answers.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_remembered_for_their_ttl_only() {
        let s = Subscriptions::new(Duration::from_secs(60), "zh_CN");
        assert_eq!(s.remembered("o1"), None);
        s.remember("o1", Some(true), Duration::from_secs(60));
        s.remember("o2", None, Duration::from_secs(60));
        s.remember("o3", Some(false), Duration::ZERO);
        assert_eq!(s.remembered("o1"), Some(Some(true)));
        assert_eq!(
            s.remembered("o2"),
            Some(None),
            "a failure is remembered too"
        );
        assert_eq!(s.remembered("o3"), None, "expired");
    }

    #[test]
    fn a_full_map_forgets_expired_answers_first_and_stays_bounded() {
        let s = Subscriptions::new(Duration::from_secs(60), "zh_CN");
        for i in 0..CAPACITY {
            s.remember(&format!("o{i}"), Some(true), Duration::ZERO);
        }
        s.remember("keep", Some(true), Duration::from_secs(60));
        assert_eq!(s.len(), 1, "expired answers dropped");
        assert_eq!(s.remembered("keep"), Some(Some(true)));
    }
}
