//! Sealing cookie values: encrypted and authenticated (AES-256-GCM, the cookie's name
//! as associated data), with key rotation.
//!
//! The wire format is the `cookie` crate's private jar (base64 with padding of
//! nonce(12) || ciphertext || tag(16), keyed by `Key::encryption()`), so cookies sealed
//! by earlier versions still open. The AEAD keys are set up once here instead of per
//! call, and opening allocates only the decoded buffer that becomes the value: this
//! runs on every signed-in request.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::prelude::{Engine, BASE64_STANDARD};
use cookie::Key;

const TAG_LEN: usize = 16;

/// Seals with the current secret; opens with the current or any previous one, so a
/// secret can be rotated without signing everybody out.
#[derive(Clone)]
pub struct CookieCodec {
    /// The current key first, then the previous ones.
    keys: std::sync::Arc<[LessSafeKey]>,
}

/// `Key::derive_from` needs at least 32 bytes; config validation ensures that, but a
/// shorter secret is stretched through SHA-256 rather than panicking.
fn key_of(secret: &[u8]) -> LessSafeKey {
    let key = if secret.len() >= 32 {
        Key::derive_from(secret)
    } else {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
        Key::derive_from(digest.as_ref())
    };
    // `Key::encryption()` is always 32 bytes, exactly an AES-256 key.
    let unbound = UnboundKey::new(&AES_256_GCM, key.encryption())
        .unwrap_or_else(|_| unreachable!("a 32-byte key is a valid AES-256-GCM key"));
    LessSafeKey::new(unbound)
}

impl CookieCodec {
    pub fn new(secret: &[u8], previous: &[Vec<u8>]) -> CookieCodec {
        let keys: Vec<LessSafeKey> = std::iter::once(secret)
            .chain(previous.iter().map(Vec::as_slice))
            .map(key_of)
            .collect();
        CookieCodec { keys: keys.into() }
    }

    /// The value to put in a cookie called `name`.
    pub fn seal(&self, name: &str, value: &str) -> String {
        let mut data = vec![0u8; NONCE_LEN + value.len() + TAG_LEN];
        let (nonce, rest) = data.split_at_mut(NONCE_LEN);
        if aws_lc_rs::rand::fill(nonce).is_err() {
            // Without a random nonce nothing may be sealed; an empty value opens to
            // nothing, so the browser is simply not signed in.
            return String::new();
        }
        let nonce = match Nonce::try_assume_unique_for_key(nonce) {
            Ok(n) => n,
            Err(_) => return String::new(),
        };
        let (in_out, tag_out) = rest.split_at_mut(value.len());
        in_out.copy_from_slice(value.as_bytes());
        match self.keys[0].seal_in_place_separate_tag(nonce, Aad::from(name.as_bytes()), in_out) {
            Ok(tag) => tag_out.copy_from_slice(tag.as_ref()),
            Err(_) => return String::new(),
        }
        BASE64_STANDARD.encode(&data)
    }

    /// The original value, or None when `sealed` was not sealed by one of our keys for
    /// a cookie of this name (tampered, truncated, other key, other name).
    pub fn open(&self, name: &str, sealed: &str) -> Option<String> {
        let data = BASE64_STANDARD.decode(sealed).ok()?;
        if data.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = data[..NONCE_LEN].try_into().ok()?;
        let (last, earlier) = self.keys.split_last()?;
        // Decryption works in place; keep the ciphertext for the next key unless this
        // is the last one to try (the usual case: one key).
        for key in earlier {
            let mut copy = data.clone();
            if let Some(value) = open_with(key, name, nonce, &mut copy) {
                return Some(value);
            }
        }
        let mut data = data;
        open_with(last, name, nonce, &mut data)
    }

    /// Length of `seal(name, value)` for a value of `value_len` bytes: nonce (12) +
    /// value + tag (16), base64 with padding.
    pub fn sealed_len(value_len: usize) -> usize {
        (NONCE_LEN + value_len + TAG_LEN).div_ceil(3) * 4
    }
}

/// Opens `data` (nonce || ciphertext || tag) in place and turns the buffer into the value.
fn open_with(
    key: &LessSafeKey,
    name: &str,
    nonce: [u8; NONCE_LEN],
    data: &mut Vec<u8>,
) -> Option<String> {
    let nonce = Nonce::assume_unique_for_key(nonce);
    let len = key
        .open_within(nonce, Aad::from(name.as_bytes()), data, NONCE_LEN..)
        .ok()?
        .len();
    data.truncate(len);
    String::from_utf8(std::mem::take(data)).ok()
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

    /// Cookies sealed by earlier versions (the `cookie` crate's private jar) still
    /// open, and theirs open ours: the format is the same.
    #[test]
    fn the_wire_format_is_the_cookie_crates_private_jar() {
        use cookie::{Cookie, CookieJar};
        let codec = CookieCodec::new(CURRENT, &[]);
        let key = Key::derive_from(CURRENT);
        for value in ["", "v", "a ticket value with some length to it"] {
            let mut jar = CookieJar::new();
            jar.private_mut(&key)
                .add(Cookie::new("_wxgate", value.to_owned()));
            let by_crate = jar.get("_wxgate").unwrap().value().to_owned();
            assert_eq!(codec.open("_wxgate", &by_crate).as_deref(), Some(value));

            let ours = codec.seal("_wxgate", value);
            let opened = CookieJar::new()
                .private(&key)
                .decrypt(Cookie::new("_wxgate", ours))
                .map(|c| c.value().to_owned());
            assert_eq!(opened.as_deref(), Some(value));
        }
    }

    #[test]
    fn a_value_sealed_before_a_rotation_still_opens() {
        let sealed = CookieCodec::new(OLD, &[]).seal("_wxgate", "ticket");
        let rotated = CookieCodec::new(CURRENT, &[OLD.to_vec()]);
        assert_eq!(rotated.open("_wxgate", &sealed).as_deref(), Some("ticket"));
        let fresh = rotated.seal("_wxgate", "ticket");
        assert_eq!(rotated.open("_wxgate", &fresh).as_deref(), Some("ticket"));
        assert_eq!(CookieCodec::new(OLD, &[]).open("_wxgate", &fresh), None);
    }
}
