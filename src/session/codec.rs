//! Sealing cookie values: encrypted and authenticated (AES-256-GCM via the `cookie`
//! crate's private jar, the cookie's name as associated data), with key rotation.

use cookie::{Cookie, CookieJar, Key};

/// Seals with the current secret; opens with the current or any previous one, so a
/// secret can be rotated without signing everybody out.
#[derive(Clone)]
pub struct CookieCodec {
    current: Key,
    previous: Vec<Key>,
}

/// `Key::derive_from` needs at least 32 bytes; config validation ensures that, but a
/// shorter secret is stretched through SHA-256 rather than panicking.
fn key_of(secret: &[u8]) -> Key {
    if secret.len() >= 32 {
        Key::derive_from(secret)
    } else {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
        Key::derive_from(digest.as_ref())
    }
}

impl CookieCodec {
    pub fn new(secret: &[u8], previous: &[Vec<u8>]) -> CookieCodec {
        CookieCodec {
            current: key_of(secret),
            previous: previous.iter().map(|s| key_of(s)).collect(),
        }
    }

    /// The value to put in a cookie called `name`.
    pub fn seal(&self, name: &str, value: &str) -> String {
        let mut jar = CookieJar::new();
        jar.private_mut(&self.current)
            .add(Cookie::new(name.to_owned(), value.to_owned()));
        jar.get(name)
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    }

    /// The original value, or None when `sealed` was not sealed by one of our keys for
    /// a cookie of this name (tampered, truncated, other key, other name).
    pub fn open(&self, name: &str, sealed: &str) -> Option<String> {
        let jar = CookieJar::new();
        std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find_map(|key| {
                jar.private(key)
                    .decrypt(Cookie::new(name.to_owned(), sealed.to_owned()))
                    .map(|c| c.value().to_owned())
            })
    }

    /// Length of `seal(name, value)` for a value of `value_len` bytes: nonce (12) +
    /// value + tag (16), base64 with padding.
    pub fn sealed_len(value_len: usize) -> usize {
        (12 + value_len + 16).div_ceil(3) * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURRENT: &[u8] = b"current secret, thirty-two bytes or more";
    const OLD: &[u8] = b"previous secret, also thirty-two bytes long";

    #[test]
    fn a_sealed_value_opens_only_intact_under_its_name_and_our_keys() {
        let codec = CookieCodec::new(CURRENT, &[]);
        let sealed = codec.seal("_wxgate", "ticket value");
        assert_eq!(
            codec.open("_wxgate", &sealed).as_deref(),
            Some("ticket value")
        );
        assert!(!sealed.contains("ticket"), "the value is encrypted");

        let mut flipped = sealed.clone().into_bytes();
        flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        let table: &[(&str, &str, &str)] = &[
            ("tampered", "_wxgate", &flipped),
            ("truncated", "_wxgate", &sealed[..sealed.len() - 4]),
            ("empty", "_wxgate", ""),
            ("plain text", "_wxgate", "ticket value"),
            ("other cookie name", "_wxgate_state", &sealed),
        ];
        for (case, name, value) in table {
            assert_eq!(codec.open(name, value), None, "{case}");
        }
        let other = CookieCodec::new(OLD, &[]);
        assert_eq!(other.open("_wxgate", &sealed), None, "other key");
    }

    #[test]
    fn sealed_len_predicts_the_sealed_length() {
        let codec = CookieCodec::new(CURRENT, &[]);
        for n in [0, 1, 2, 3, 100, 2999] {
            assert_eq!(
                codec.seal("n", &"x".repeat(n)).len(),
                CookieCodec::sealed_len(n),
                "{n}"
            );
        }
    }

    #[test]
    fn a_short_secret_does_not_panic() {
        let codec = CookieCodec::new(b"short", &[]);
        assert_eq!(codec.open("n", &codec.seal("n", "v")).as_deref(), Some("v"));
    }
}
