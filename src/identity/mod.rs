//! The identity header: the JWT that tells the upstream who the visitor is, the keys
//! that sign it, and the documents (JWKS, OpenID discovery) that let the upstream
//! verify it.
//!
//! A [`Signer`] is built once per configuration (and again on reload); it is cheap to
//! clone and safe to share. Tokens are compact JWS signed with aws-lc-rs key pairs
//! parsed once at start-up; `jsonwebtoken` (or any JOSE library) verifies them from
//! the published JWKS alone.

mod cache;
mod claims;
mod keys;

pub use claims::{Extra, HUB_CLIENT_CLAIMS, WECOM_CLAIMS};
pub use keys::KeySource;

use std::sync::Arc;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http::HeaderValue;
use serde_json::{json, Value};

use crate::config::{Algorithm, IdentityConfig};
use crate::metrics::metrics;
use crate::session::{now_unix, Session};

use cache::TokenCache;
use claims::{claims, Stamp, CLAIMS_SUPPORTED};
use keys::{alg_name, SigningKey};

/// The most tokens kept; beyond it, stale ones are dropped first.
const CACHE_CAPACITY: usize = 100_000;

/// A cached token is not handed out in its last minute, so the upstream never gets one
/// about to expire in flight (short TTLs keep at least half their life).
const REFRESH_MARGIN_SECS: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A configuration problem, reported as `key: message` like every config problem.
    #[error("{key}: {message}")]
    Key { key: &'static str, message: String },
    #[error("identity token signing: {0}")]
    Crypto(&'static str),
}

/// The published key set and its entity tag, computed once.
#[derive(Debug, Clone)]
pub struct JwksDoc {
    pub body: Bytes,
    /// A quoted strong ETag, ready for the `ETag` header.
    pub etag: String,
}

/// A token's `aud` other than `identity.audience`: a route's, numbered so that each
/// route's tokens are cached apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audience<'a> {
    /// The route's place in the table.
    pub slot: u32,
    pub name: &'a str,
}

/// Signs identity tokens. Cheap to clone: everything lives behind one `Arc`.
#[derive(Clone)]
pub struct Signer {
    inner: Arc<Inner>,
}

struct Inner {
    /// The first key signs; all asymmetric ones are published.
    keys: Vec<SigningKey>,
    /// base64url of the JOSE header, the same for every token of this signer.
    header_b64: String,
    source: KeySource,
    issuer: String,
    audience: String,
    subject: crate::config::Subject,
    ttl: u64,
    sid_key: hmac::Key,
    cache: TokenCache,
    jwks: JwksDoc,
    discovery: Bytes,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm())
            .field("kid", &self.kid())
            .field("source", &self.inner.source)
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Builds the signer from `[identity]`: `cfg.signing_key_pem` is the resolved key
    /// text (PEM blocks, or the HS256 secret); without one a key is derived from
    /// `session_secret`. `issuer` is public_url + "/_wxgate".
    pub fn from_config(
        cfg: &IdentityConfig,
        session_secret: &[u8],
        issuer: String,
    ) -> Result<Signer, IdentityError> {
        let alg = cfg.algorithm;
        let (keys, source) = match cfg
            .signing_key_pem
            .as_deref()
            .filter(|p| !p.trim().is_empty())
        {
            Some(pem) => (keys::load_pem_keys(pem, alg)?, KeySource::Configured),
            None => {
                let (key, source) = keys::default_key(alg, session_secret)?;
                (vec![key], source)
            }
        };
        let header = json!({"alg": alg_name(alg), "kid": keys[0].kid, "typ": "JWT"});
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        let sid_key = hmac::Key::new(
            hmac::HMAC_SHA256,
            &keys::hkdf32(session_secret, b"session id claim")?,
        );
        let jwks = jwks_doc(&keys);
        let discovery = discovery_doc(&issuer, alg, &[]);
        Ok(Signer {
            inner: Arc::new(Inner {
                keys,
                header_b64,
                source,
                issuer,
                audience: cfg.audience.clone(),
                subject: cfg.subject,
                ttl: cfg.ttl.get().as_secs().max(1),
                sid_key,
                cache: TokenCache::new(CACHE_CAPACITY),
                jwks,
                discovery,
            }),
        })
    }

    pub fn key_source(&self) -> KeySource {
        self.inner.source
    }

    pub fn algorithm(&self) -> Algorithm {
        self.inner.keys[0].alg
    }

    /// The `kid` of the signing key (its RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.inner.keys[0].kid
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The identity header's value for this session: a cached token while it is fresh
    /// for this session and profile, else a newly signed one.
    pub fn token_for(&self, s: &Session) -> Result<HeaderValue, IdentityError> {
        self.token_with(s, &Extra::default())
    }

    /// As [`Signer::token_for`], with claims from outside the session.
    pub fn token_with(&self, s: &Session, extra: &Extra) -> Result<HeaderValue, IdentityError> {
        self.token_at(s, extra, None, now_unix())
    }

    /// As [`Signer::token_with`], for a route with its own `aud`.
    pub fn token_for_audience(
        &self,
        s: &Session,
        extra: &Extra,
        audience: Audience<'_>,
    ) -> Result<HeaderValue, IdentityError> {
        self.token_at(s, extra, Some(audience), now_unix())
    }

    fn token_at(
        &self,
        s: &Session,
        extra: &Extra,
        audience: Option<Audience<'_>>,
        now: u64,
    ) -> Result<HeaderValue, IdentityError> {
        let inner = &self.inner;
        let variant = extra.variant();
        let signed_for = cache::SignedFor {
            audience: audience.map_or(0, |a| a.slot.saturating_add(1)),
            profile_at: s.profile_at,
            variant,
        };
        if let Some(token) = inner.cache.get(&s.id, signed_for, now) {
            metrics()
                .identity_tokens
                .inc(crate::metrics::labels::TokenSource::Cached);
            return Ok(token);
        }
        let aud = audience.map_or(inner.audience.as_str(), |a| a.name);
        let token = self.sign(&self.claims_for(s, extra, aud, now))?;
        let margin = REFRESH_MARGIN_SECS.min(inner.ttl / 2);
        let fresh_until = now + inner.ttl - margin;
        inner
            .cache
            .put(&s.id, signed_for, fresh_until, token.clone(), now);
        metrics()
            .identity_tokens
            .inc(crate::metrics::labels::TokenSource::Signed);
        Ok(token)
    }

    /// The claims a token signed now would carry (for `/_wxgate/userinfo`).
    pub fn claims(&self, s: &Session) -> Value {
        self.claims_with(s, &Extra::default())
    }

    /// As [`Signer::claims`], with claims from outside the session.
    pub fn claims_with(&self, s: &Session, extra: &Extra) -> Value {
        self.claims_at(s, extra, now_unix())
    }

    fn claims_at(&self, s: &Session, extra: &Extra, now: u64) -> Value {
        self.claims_for(s, extra, &self.inner.audience, now)
    }

    fn claims_for(&self, s: &Session, extra: &Extra, aud: &str, now: u64) -> Value {
        let jti = URL_SAFE_NO_PAD.encode(crate::random::bytes(16));
        let sid = self.sid(&s.id);
        claims(
            s,
            &Stamp {
                iss: &self.inner.issuer,
                aud,
                iat: now,
                ttl: self.inner.ttl,
                sid: &sid,
                jti: &jti,
                subject: self.inner.subject,
            },
            extra,
        )
    }

    /// A stable id for the session that cannot be turned back into the session id
    /// (which is a bearer credential in the memory and redis stores).
    fn sid(&self, session_id: &str) -> String {
        let tag = hmac::sign(&self.inner.sid_key, session_id.as_bytes());
        let mut sid = URL_SAFE_NO_PAD.encode(tag.as_ref());
        sid.truncate(22);
        sid
    }

    fn sign(&self, claims: &Value) -> Result<HeaderValue, IdentityError> {
        let inner = &self.inner;
        let payload = serde_json::to_vec(claims)
            .map_err(|_| IdentityError::Crypto("claims are not serialisable"))?;
        let mut token = String::with_capacity(inner.header_b64.len() + payload.len() * 4 / 3 + 360);
        token.push_str(&inner.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = inner.keys[0].sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        HeaderValue::try_from(token)
            .map_err(|_| IdentityError::Crypto("token is not a header value"))
    }

    /// A JWT of `claims` signed with the identity key (the hub's id_tokens).
    pub fn sign_claims(&self, claims: &Value) -> Result<String, IdentityError> {
        let token = self.sign(claims)?;
        token
            .to_str()
            .map(str::to_owned)
            .map_err(|_| IdentityError::Crypto("token is not text"))
    }

    /// The public keys as a JWKS (`/_wxgate/jwks.json`). Empty for HS256: a shared
    /// secret is never published.
    pub fn jwks(&self) -> JwksDoc {
        self.inner.jwks.clone()
    }

    /// The OpenID Provider metadata (`/_wxgate/.well-known/openid-configuration`).
    pub fn openid_configuration(&self) -> Bytes {
        self.inner.discovery.clone()
    }

    /// The same signer, its discovery document listing `claims` too: what a sign-in
    /// method other than WeChat's adds (`idp`, WeCom's `corpid`...). Called right after
    /// [`Signer::from_config`], while nothing else holds it.
    pub fn also_claiming(mut self, claims: &[&str]) -> Signer {
        let alg = self.algorithm();
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.discovery = discovery_doc(&inner.issuer, alg, claims);
        }
        self
    }
}

fn jwks_doc(keys: &[SigningKey]) -> JwksDoc {
    let published: Vec<Value> = keys
        .iter()
        .filter_map(|k| k.public.to_jwk(&k.kid, k.alg))
        .collect();
    let body = json!({ "keys": published }).to_string();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    let mut tag = URL_SAFE_NO_PAD.encode(digest.as_ref());
    tag.truncate(22);
    JwksDoc {
        body: Bytes::from(body),
        etag: format!("\"{tag}\""),
    }
}

fn discovery_doc(issuer: &str, alg: Algorithm, more_claims: &[&str]) -> Bytes {
    let claims: Vec<&str> = CLAIMS_SUPPORTED
        .iter()
        .chain(more_claims)
        .copied()
        .collect();
    let doc = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks.json"),
        "authorization_endpoint": format!("{issuer}/start"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [alg_name(alg)],
        "claims_supported": claims,
    });
    Bytes::from(doc.to_string())
}

/// A fresh session secret (base64 of 32 random bytes) and a fresh ES256 signing key
/// (PKCS#8 PEM), for `wxgate keygen`.
// Without a working system random source no key can be made: stopping is right.
#[allow(clippy::expect_used)]
pub fn keygen() -> (String, String) {
    let secret = STANDARD.encode(crate::random::bytes(32));
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .expect("P-256 key generation from the system random source");
    (secret, keys::to_pem("PRIVATE KEY", pkcs8.as_ref()))
}

#[cfg(test)]
mod tests;
