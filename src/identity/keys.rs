//! Signing keys: reading PEM blocks, deriving a key from the session secret when none
//! is configured, signing, and describing each public key as a JWK named by its
//! RFC 7638 thumbprint.
//!
//! Keys are parsed once into aws-lc-rs key pairs and kept, so signing a token never
//! re-parses DER.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use aws_lc_rs::{agreement, digest, hkdf, hmac};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};

use super::IdentityError;
use crate::config::Algorithm;

/// The config key every key problem is reported under.
const KEY_FILE: &str = "identity.signing_key_file";

/// HS256 secrets shorter than the hash output are refused (RFC 7518 §3.2).
const MIN_HMAC_SECRET: usize = 32;

/// Where the signing key came from, so start-up can warn when it was not configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// From `identity.signing_key_file` / `signing_key` / `WXGATE_SIGNING_KEY`.
    Configured,
    /// Derived from `session.secret`: replicas sharing the secret agree on it.
    Derived,
    /// Random, for this process only (RS256 keys cannot be derived cheaply).
    Generated,
}

/// An asymmetric key pair: its public half is published.
pub(crate) enum Pair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

enum Material {
    Pair(Pair),
    Hmac(Box<hmac::Key>),
}

/// The public members of a key, as RFC 7638 names them (base64url values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicJwk {
    Ec { x: String, y: String },
    Okp { x: String },
    Rsa { n: String, e: String },
    Oct { k: String },
}

impl PublicJwk {
    /// The canonical JSON of RFC 7638 §3: required members only, sorted, no spaces.
    /// Every value is base64url, so nothing needs escaping.
    pub(crate) fn canonical(&self) -> String {
        match self {
            PublicJwk::Ec { x, y } => {
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            PublicJwk::Okp { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            PublicJwk::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
            PublicJwk::Oct { k } => format!(r#"{{"k":"{k}","kty":"oct"}}"#),
        }
    }

    pub(crate) fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, self.canonical().as_bytes()))
    }

    /// The JWKS entry; None for a shared secret, which is never published.
    pub(crate) fn to_jwk(&self, kid: &str, alg: Algorithm) -> Option<Value> {
        let alg = alg_name(alg);
        Some(match self {
            PublicJwk::Ec { x, y } => json!({
                "kty": "EC", "crv": "P-256", "x": x, "y": y,
                "kid": kid, "use": "sig", "alg": alg,
            }),
            PublicJwk::Okp { x } => json!({
                "kty": "OKP", "crv": "Ed25519", "x": x,
                "kid": kid, "use": "sig", "alg": alg,
            }),
            PublicJwk::Rsa { n, e } => json!({
                "kty": "RSA", "n": n, "e": e,
                "kid": kid, "use": "sig", "alg": alg,
            }),
            PublicJwk::Oct { .. } => return None,
        })
    }
}

pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::RS256 => "RS256",
        Algorithm::HS256 => "HS256",
    }
}

/// One key of the set: the first one signs, every asymmetric one is published.
pub(crate) struct SigningKey {
    pub alg: Algorithm,
    pub kid: String,
    pub public: PublicJwk,
    material: Material,
}

impl SigningKey {
    fn new(pair: Pair) -> Result<Self, IdentityError> {
        let (alg, public) = match &pair {
            Pair::Es256(k) => {
                let point = k.public_key().as_ref();
                // An uncompressed SEC1 point: 0x04 || x || y.
                if point.len() != 65 || point[0] != 4 {
                    return Err(IdentityError::Crypto(
                        "unexpected P-256 public key encoding",
                    ));
                }
                let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
                let y = URL_SAFE_NO_PAD.encode(&point[33..]);
                (Algorithm::ES256, PublicJwk::Ec { x, y })
            }
            Pair::EdDsa(k) => (
                Algorithm::EdDSA,
                PublicJwk::Okp {
                    x: URL_SAFE_NO_PAD.encode(k.public_key().as_ref()),
                },
            ),
            Pair::Rs256(k) => {
                let p = k.public_key();
                (
                    Algorithm::RS256,
                    PublicJwk::Rsa {
                        n: URL_SAFE_NO_PAD.encode(p.modulus().big_endian_without_leading_zero()),
                        e: URL_SAFE_NO_PAD.encode(p.exponent().big_endian_without_leading_zero()),
                    },
                )
            }
        };
        let kid = public.thumbprint();
        Ok(SigningKey {
            alg,
            kid,
            public,
            material: Material::Pair(pair),
        })
    }

    fn hmac(secret: &[u8]) -> Self {
        let public = PublicJwk::Oct {
            k: URL_SAFE_NO_PAD.encode(secret),
        };
        SigningKey {
            alg: Algorithm::HS256,
            kid: public.thumbprint(),
            public,
            material: Material::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret))),
        }
    }

    /// The JWS signature over `input` (`header.payload`), in JWS form (ES256: r || s).
    pub(crate) fn sign(&self, input: &[u8]) -> Result<Vec<u8>, IdentityError> {
        match &self.material {
            Material::Pair(Pair::Es256(k)) => k
                .sign(&SystemRandom::new(), input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| IdentityError::Crypto("ES256 signing failed")),
            Material::Pair(Pair::EdDsa(k)) => Ok(k.sign(input).as_ref().to_vec()),
            Material::Pair(Pair::Rs256(k)) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input, &mut sig)
                    .map_err(|_| IdentityError::Crypto("RS256 signing failed"))?;
                Ok(sig)
            }
            Material::Hmac(k) => Ok(hmac::sign(k, input).as_ref().to_vec()),
        }
    }
}

/// One PEM block: its label ("PRIVATE KEY") and DER bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PemBlock {
    pub label: String,
    pub der: Vec<u8>,
}

/// Splits PEM text into its blocks, in order. Text outside blocks is ignored, as
/// `openssl` does (it may hold comments or `EC PARAMETERS`, which are skipped below).
pub(crate) fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, String> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if current.is_some() {
                return Err(format!("BEGIN {label} inside another PEM block"));
            }
            current = Some((label.to_string(), String::new()));
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            let Some((begun, b64)) = current.take() else {
                return Err(format!("END {label} without BEGIN"));
            };
            if begun.as_str() != label {
                return Err(format!("BEGIN {begun} ends with END {label}"));
            }
            let der = STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| format!("PEM block {} is not valid base64: {e}", blocks.len() + 1))?;
            blocks.push(PemBlock { label: begun, der });
        } else if let Some((_, b64)) = current.as_mut() {
            b64.push_str(line);
        }
    }
    if let Some((label, _)) = current {
        return Err(format!("PEM block {label} has no END line"));
    }
    Ok(blocks)
}

/// Reads every private key in `pem`. The first must be of `alg` (it signs); later ones
/// may be of any asymmetric type, so a rotation can also change the algorithm.
pub(crate) fn load_pem_keys(pem: &str, alg: Algorithm) -> Result<Vec<SigningKey>, IdentityError> {
    let bad = |m: String| IdentityError::Key {
        key: KEY_FILE,
        message: m,
    };
    if alg == Algorithm::HS256 {
        if pem.contains("-----BEGIN ") {
            return Err(bad(
                "is a PEM key but identity.algorithm is HS256, which takes a secret text".into(),
            ));
        }
        let secret = pem.trim();
        if secret.len() < MIN_HMAC_SECRET {
            return Err(bad(format!(
                "the HS256 secret must be at least {MIN_HMAC_SECRET} bytes"
            )));
        }
        return Ok(vec![SigningKey::hmac(secret.as_bytes())]);
    }
    let blocks = pem_blocks(pem).map_err(bad)?;
    let mut keys = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let n = i + 1;
        match block.label.as_str() {
            "EC PARAMETERS" => continue,
            "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => {}
            "ENCRYPTED PRIVATE KEY" => {
                return Err(bad(format!(
                    "key {n} is encrypted; give an unencrypted PKCS#8 key"
                )))
            }
            other => {
                return Err(bad(format!(
                    "PEM block {n} is a {other}, not a private key"
                )))
            }
        }
        let pair = parse_private_key(&block.label, &block.der).ok_or_else(|| {
            bad(format!(
                "key {n} is not a P-256, Ed25519 or RSA (2048+ bits) private key"
            ))
        })?;
        let key = SigningKey::new(pair)?;
        if keys.is_empty() && key.alg != alg {
            return Err(bad(format!(
                "the first key is {} but identity.algorithm is {}",
                key_kind(key.alg),
                alg_name(alg)
            )));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(bad("holds no PEM private key".into()));
    }
    Ok(keys)
}

fn key_kind(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "an EC P-256 key (ES256)",
        Algorithm::EdDSA => "an Ed25519 key (EdDSA)",
        Algorithm::RS256 => "an RSA key (RS256)",
        Algorithm::HS256 => "a secret (HS256)",
    }
}

/// Recognises the key type by trying each parser: PKCS#8 for all, plus the
/// traditional SEC1 (`EC PRIVATE KEY`) and PKCS#1 (`RSA PRIVATE KEY`) forms.
fn parse_private_key(label: &str, der: &[u8]) -> Option<Pair> {
    if label == "RSA PRIVATE KEY" {
        return RsaKeyPair::from_der(der).ok().map(Pair::Rs256);
    }
    if let Ok(k) = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
        return Some(Pair::Es256(k));
    }
    if label == "EC PRIVATE KEY" {
        return None;
    }
    if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
        return Some(Pair::EdDsa(k));
    }
    RsaKeyPair::from_pkcs8(der).ok().map(Pair::Rs256)
}

/// 32 bytes from HKDF-SHA256 over the session secret, separated by `info`.
pub(crate) fn hkdf32(secret: &[u8], info: &[u8]) -> Result<[u8; 32], IdentityError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"wxgate identity v1").extract(secret);
    let mut out = [0u8; 32];
    prk.expand(&[info], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| IdentityError::Crypto("HKDF expansion failed"))?;
    Ok(out)
}

/// The key used when none is configured: derived from the session secret (so every
/// replica sharing it signs with the same key), except RS256 which is generated.
pub(crate) fn default_key(
    alg: Algorithm,
    session_secret: &[u8],
) -> Result<(SigningKey, KeySource), IdentityError> {
    match alg {
        Algorithm::ES256 => Ok((
            SigningKey::new(Pair::Es256(derive_p256(session_secret)?))?,
            KeySource::Derived,
        )),
        Algorithm::EdDSA => {
            let seed = hkdf32(session_secret, b"EdDSA signing key")?;
            let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
                .map_err(|_| IdentityError::Crypto("Ed25519 seed rejected"))?;
            Ok((SigningKey::new(Pair::EdDsa(pair))?, KeySource::Derived))
        }
        Algorithm::HS256 => {
            let secret = hkdf32(session_secret, b"HS256 signing key")?;
            Ok((SigningKey::hmac(&secret), KeySource::Derived))
        }
        Algorithm::RS256 => {
            let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| IdentityError::Crypto("RSA key generation failed"))?;
            Ok((SigningKey::new(Pair::Rs256(pair))?, KeySource::Generated))
        }
    }
}

/// A P-256 key whose scalar comes from HKDF. A 32-byte string is a valid scalar unless
/// it is zero or not below the group order (odds about 2^-32), so a counter retries.
fn derive_p256(secret: &[u8]) -> Result<EcdsaKeyPair, IdentityError> {
    for counter in 0u8..=255 {
        let scalar = hkdf32(
            secret,
            &[b"ES256 signing key ".as_slice(), &[counter]].concat(),
        )?;
        let Ok(private) = agreement::PrivateKey::from_private_key(&agreement::ECDH_P256, &scalar)
        else {
            continue;
        };
        let public = private
            .compute_public_key()
            .map_err(|_| IdentityError::Crypto("P-256 public key computation failed"))?;
        return EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &scalar,
            public.as_ref(),
        )
        .map_err(|_| IdentityError::Crypto("derived P-256 key rejected"));
    }
    Err(IdentityError::Crypto("no valid P-256 scalar derived"))
}

/// PEM text for DER bytes, wrapped at 64 columns as RFC 7468 asks.
pub(crate) fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 §3.1.
        let key = PublicJwk::Rsa {
            n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
            e: "AQAB".into(),
        };
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn canonical_members_are_sorted_per_key_type() {
        let cases = [
            (
                PublicJwk::Ec {
                    x: "X".into(),
                    y: "Y".into(),
                },
                r#"{"crv":"P-256","kty":"EC","x":"X","y":"Y"}"#,
            ),
            (
                PublicJwk::Okp { x: "X".into() },
                r#"{"crv":"Ed25519","kty":"OKP","x":"X"}"#,
            ),
            (
                PublicJwk::Rsa {
                    n: "N".into(),
                    e: "E".into(),
                },
                r#"{"e":"E","kty":"RSA","n":"N"}"#,
            ),
            (PublicJwk::Oct { k: "K".into() }, r#"{"k":"K","kty":"oct"}"#),
        ];
        for (key, want) in cases {
            assert_eq!(key.canonical(), want);
        }
    }

    #[test]
    fn pem_blocks_are_split_in_order_and_malformed_ones_refused() {
        let two = format!(
            "{}junk\n{}",
            to_pem("PRIVATE KEY", b"one"),
            to_pem("X", b"two")
        );
        assert_eq!(
            pem_blocks(&two).unwrap(),
            vec![
                PemBlock {
                    label: "PRIVATE KEY".into(),
                    der: b"one".to_vec()
                },
                PemBlock {
                    label: "X".into(),
                    der: b"two".to_vec()
                },
            ]
        );
        let bad = [
            "-----BEGIN A-----\nAAAA\n",
            "-----BEGIN A-----\nAAAA\n-----END B-----\n",
            "AAAA\n-----END A-----\n",
            "-----BEGIN A-----\n!!!!\n-----END A-----\n",
        ];
        for text in bad {
            assert!(pem_blocks(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn derived_keys_are_stable_for_a_secret_and_differ_between_secrets() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::HS256] {
            let (a, source) = default_key(alg, b"secret one, at least 32 bytes long").unwrap();
            let (b, _) = default_key(alg, b"secret one, at least 32 bytes long").unwrap();
            let (c, _) = default_key(alg, b"secret two, at least 32 bytes long").unwrap();
            assert_eq!(source, KeySource::Derived);
            assert_eq!(a.alg, alg);
            assert_eq!(a.kid, b.kid, "{alg:?}");
            assert_ne!(a.kid, c.kid, "{alg:?}");
        }
    }

    #[test]
    fn a_key_of_the_wrong_type_is_refused_naming_the_key_file() {
        let es256 = crate::identity::keygen().1;
        let ed = to_pem(
            "PRIVATE KEY",
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .unwrap()
                .as_ref(),
        );
        let cases = [
            (
                es256.as_str(),
                Algorithm::EdDSA,
                "identity.algorithm is EdDSA",
            ),
            (es256.as_str(), Algorithm::RS256, "is an EC P-256 key"),
            (ed.as_str(), Algorithm::ES256, "is an Ed25519 key"),
            (es256.as_str(), Algorithm::HS256, "takes a secret text"),
            ("too short", Algorithm::HS256, "at least 32 bytes"),
            ("not a pem", Algorithm::ES256, "holds no PEM private key"),
        ];
        for (pem, alg, want) in cases {
            let err = load_pem_keys(pem, alg).err().unwrap().to_string();
            assert!(err.starts_with("identity.signing_key_file: "), "{err}");
            assert!(err.contains(want), "{alg:?}: {err}");
        }
    }

    #[test]
    fn several_blocks_load_in_order_and_may_mix_types_after_the_first() {
        let first = crate::identity::keygen().1;
        let second = to_pem(
            "PRIVATE KEY",
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .unwrap()
                .as_ref(),
        );
        let keys = load_pem_keys(&format!("{first}{second}"), Algorithm::ES256).unwrap();
        let algs: Vec<_> = keys.iter().map(|k| k.alg).collect();
        assert_eq!(algs, [Algorithm::ES256, Algorithm::EdDSA]);
        assert_ne!(keys[0].kid, keys[1].kid);
    }
}
