//! The sign-in `state`: a random token sent through WeChat and bound to the browser
//! that started the flow by a short-lived sealed cookie named after it.
//!
//! One cookie per flow (`<cookie_name>_st_<state>`) lets several tabs sign in at once;
//! the number kept is bounded so a browser cannot pile them up. The cookie name carries
//! the state and is authenticated by the sealing, so a cookie cannot be moved to another
//! state. After a successful callback the cookie is not deleted but marked done: a second
//! callback for the same state (WeChat's Android double callback, back, refresh) then
//! lands the user on the page again instead of redeeming another code.

use serde::{Deserialize, Serialize};

/// Flows in flight per browser; starting another drops the oldest.
pub const MAX_FLOWS: usize = 4;
/// How long a browser has to come back from WeChat (a code itself lives 5 minutes).
pub const FLOW_TTL_SECS: u64 = 600;
/// How long a completed flow is remembered for double callbacks.
pub const DONE_TTL_SECS: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    /// The validated same-origin return path.
    pub rd: String,
    /// Unix seconds the flow started.
    pub t: u64,
    /// Fresh authorizations already spent on this flow (at most one, never a loop).
    #[serde(default)]
    pub r: u8,
    /// The callback completed and a session was created.
    #[serde(default)]
    pub d: bool,
    /// The name of the sign-in method that started the flow, which finishes it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub m: String,
    /// Flows started before methods were named: started for the website app
    /// (qrconnect) rather than the official account. Read, never written.
    #[serde(default, skip_serializing)]
    pub w: bool,
}

impl FlowState {
    pub fn expired(&self, now: u64) -> bool {
        now.saturating_sub(self.t) > FLOW_TTL_SECS
    }
}

/// 32 random characters of `[A-Za-z0-9]` (WeChat allows at most 128).
pub fn new_state() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let bytes = crate::random::bytes(32);
    // 256 % 62 != 0: the slight bias is irrelevant for a 190-bit unguessable token.
    bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

pub fn is_valid_state(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub fn cookie_name(base: &str, state: &str) -> String {
    format!("{base}_st_{state}")
}

/// The state named by a flow cookie's name, if it is one.
pub fn state_of_cookie<'a>(base: &str, name: &'a str) -> Option<&'a str> {
    name.strip_prefix(base)?
        .strip_prefix("_st_")
        .filter(|s| is_valid_state(s))
}

/// Which flow cookies to drop so that a new one fits under [`MAX_FLOWS`]: unreadable
/// and expired first, then the oldest.
pub fn flows_to_drop(existing: &[(String, Option<FlowState>)], now: u64) -> Vec<String> {
    let mut drop: Vec<String> = Vec::new();
    let mut live: Vec<(&String, u64)> = Vec::new();
    for (name, st) in existing {
        match st {
            Some(s) if !s.expired(now) => live.push((name, s.t)),
            _ => drop.push(name.clone()),
        }
    }
    live.sort_by_key(|(_, t)| *t);
    let excess = (live.len() + 1).saturating_sub(MAX_FLOWS);
    drop.extend(live.iter().take(excess).map(|(n, _)| (*n).clone()));
    drop
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_long_random_and_only_alphanumeric() {
        let a = new_state();
        let b = new_state();
        assert_eq!(a.len(), 32);
        assert!(is_valid_state(&a));
        assert_ne!(a, b);
    }

    #[test]
    fn state_validation_follows_wechat() {
        for (s, ok) in [
            ("abc123", true),
            (&"a".repeat(128) as &str, true),
            (&"a".repeat(129), false),
            ("", false),
            ("a-b", false),
            ("a b", false),
            ("ä", false),
        ] {
            assert_eq!(is_valid_state(s), ok, "{s:?}");
        }
    }

    #[test]
    fn flow_cookie_names_round_trip() {
        let n = cookie_name("_wxgate", "abc");
        assert_eq!(n, "_wxgate_st_abc");
        assert_eq!(state_of_cookie("_wxgate", &n), Some("abc"));
        assert_eq!(state_of_cookie("_wxgate", "_wxgate"), None);
        assert_eq!(state_of_cookie("_wxgate", "_wxgate_st_a-b"), None);
        assert_eq!(state_of_cookie("_wxgate", "other_st_abc"), None);
    }

    #[test]
    fn starting_a_fifth_flow_drops_the_oldest_and_the_broken() {
        let now = 10_000;
        let flow = |t| {
            Some(FlowState {
                rd: "/".into(),
                t,
                r: 0,
                d: false,
                m: String::new(),
                w: false,
            })
        };
        let existing = vec![
            ("a".to_string(), flow(now - 10)),
            ("b".to_string(), flow(now - 50)),
            ("c".to_string(), None),
            ("d".to_string(), flow(now - 5000)),
            ("e".to_string(), flow(now - 20)),
            ("f".to_string(), flow(now - 1)),
        ];
        let mut dropped = flows_to_drop(&existing, now);
        dropped.sort();
        // c unreadable, d expired; of a, b, e, f (4 live) the oldest (b) makes room.
        assert_eq!(dropped, vec!["b", "c", "d"]);
        assert!(flows_to_drop(&existing[..2], now).is_empty());
    }
}
