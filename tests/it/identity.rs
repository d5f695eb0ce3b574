//! The identity header as an upstream sees it: a JWT it can verify with nothing but
//! the key set wxgate publishes.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{Ed25519KeyPair, RsaKeyPair};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use serde_json::Value;

use wxgate::admin::metrics::metrics;
use wxgate::config::{Algorithm, Dur, IdentityConfig, Scope};
use wxgate::identity::{keygen, KeySource, Signer};
use wxgate::session::{new_session_id, now_unix, Session};

const ISSUER: &str = "https://app.example.com/_wxgate";
const AUDIENCE: &str = "http://127.0.0.1:3000";
const SESSION_SECRET: &[u8] = b"the session secret shared by every replica";

fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

fn ed25519_pem() -> String {
    pem(Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .unwrap()
        .as_ref())
}

fn rsa_pem() -> String {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let der: Pkcs8V1Der = pair.as_der().unwrap();
    pem(der.as_ref())
}

fn signer(alg: Algorithm, key: Option<String>) -> Signer {
    let cfg = IdentityConfig {
        algorithm: alg,
        audience: AUDIENCE.into(),
        ttl: Dur::secs(300),
        signing_key_pem: key,
        ..IdentityConfig::default()
    };
    Signer::from_config(&cfg, SESSION_SECRET, ISSUER.into()).unwrap()
}

fn userinfo_session() -> Session {
    let now = now_unix();
    Session {
        id: new_session_id(),
        appid: "wx0000000000000000".into(),
        openid: "oUser123".into(),
        unionid: Some("uUnion456".into()),
        scope: Scope::UserInfo,
        nickname: Some("微信用户".into()),
        headimgurl: Some("https://thirdwx.qlogo.cn/avatar/0".into()),
        access_token: Some("at".into()),
        refresh_token: Some("rt".into()),
        created_at: now,
        profile_at: now,
        expires_at: now + 3600,
        ..Session::new("", "", Scope::UserInfo)
    }
}

/// Verifies `token` the way an upstream would: from the published JWKS only.
fn verify_with_published_keys(signer: &Signer, token: &str) -> Value {
    let jwks: JwkSet = serde_json::from_slice(&signer.jwks().body).unwrap();
    let header = decode_header(token).unwrap();
    let kid = header.kid.expect("the header names its key");
    let jwk = jwks.find(&kid).expect("the signing key is published");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    decode::<Value>(token, &key, &validation).unwrap().claims
}

#[test]
fn an_upstream_verifies_the_token_with_only_the_published_jwks_for_every_public_key_algorithm() {
    let cases = [
        (
            "ES256 configured",
            Algorithm::ES256,
            Some(keygen().1),
            "ES256",
        ),
        ("ES256 derived", Algorithm::ES256, None, "ES256"),
        (
            "EdDSA configured",
            Algorithm::EdDSA,
            Some(ed25519_pem()),
            "EdDSA",
        ),
        ("EdDSA derived", Algorithm::EdDSA, None, "EdDSA"),
        (
            "RS256 configured",
            Algorithm::RS256,
            Some(rsa_pem()),
            "RS256",
        ),
    ];
    for (name, alg, key, alg_name) in cases {
        let signer = signer(alg, key);
        let session = userinfo_session();
        let token = signer.token_for(&session).unwrap();
        let token = token.to_str().unwrap();
        let claims = verify_with_published_keys(&signer, token);

        assert_eq!(decode_header(token).unwrap().typ.as_deref(), Some("JWT"));
        let jwks: Value = serde_json::from_slice(&signer.jwks().body).unwrap();
        assert_eq!(jwks["keys"][0]["alg"], alg_name, "{name}");
        assert_eq!(claims["iss"], ISSUER, "{name}");
        assert_eq!(claims["aud"], AUDIENCE, "{name}");
        assert_eq!(claims["sub"], "oUser123", "{name}");
        assert_eq!(claims["openid"], "oUser123", "{name}");
        assert_eq!(claims["unionid"], "uUnion456", "{name}");
        assert_eq!(claims["scope"], "snsapi_userinfo", "{name}");
        assert_eq!(claims["name"], "微信用户", "{name}");
        assert_eq!(claims["picture"], "https://thirdwx.qlogo.cn/avatar/0");
        let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
        assert_eq!(exp.unwrap() - iat.unwrap(), 300, "{name}");
        assert!(exp.unwrap() > now_unix(), "{name}");
    }
}

#[test]
fn hs256_publishes_no_key_and_verifies_with_the_shared_secret() {
    let secret = "a shared secret that is long enough for HS256";
    let signer = signer(Algorithm::HS256, Some(secret.into()));
    let jwks: JwkSet = serde_json::from_slice(&signer.jwks().body).unwrap();
    assert!(jwks.keys.is_empty(), "a shared secret is never published");

    let token = signer.token_for(&userinfo_session()).unwrap();
    let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let claims = decode::<Value>(
        token.to_str().unwrap(),
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "oUser123");
}

#[test]
fn a_token_signed_by_another_key_is_refused_by_the_published_jwks() {
    let ours = signer(Algorithm::ES256, Some(keygen().1));
    let theirs = signer(Algorithm::ES256, Some(keygen().1));
    let forged = theirs.token_for(&userinfo_session()).unwrap();
    let jwks: JwkSet = serde_json::from_slice(&ours.jwks().body).unwrap();
    let jwk = &jwks.keys[0];
    let mut validation = Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[AUDIENCE]);
    let result = decode::<Value>(
        forged.to_str().unwrap(),
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    );
    assert!(result.is_err());
}

#[test]
fn a_second_request_reuses_the_identical_token_and_counts_it_as_cached() {
    let signer = signer(Algorithm::ES256, None);
    assert_eq!(signer.key_source(), KeySource::Derived);
    let session = userinfo_session();
    let cached_before = metrics().identity_tokens.get(&["cached"]);
    let first = signer.token_for(&session).unwrap();
    let second = signer.token_for(&session).unwrap();
    assert_eq!(first, second);
    assert!(metrics().identity_tokens.get(&["cached"]) > cached_before);
}

#[test]
fn a_refreshed_profile_gets_a_new_token_with_the_new_profile() {
    let signer = signer(Algorithm::ES256, None);
    let mut session = userinfo_session();
    let first = signer.token_for(&session).unwrap();
    session.profile_at += 1;
    session.nickname = Some("新昵称".into());
    let second = signer.token_for(&session).unwrap();
    assert_ne!(first, second);
    let claims = verify_with_published_keys(&signer, second.to_str().unwrap());
    assert_eq!(claims["nickname"], "新昵称");
}

#[test]
fn discovery_leads_an_oidc_library_to_the_jwks() {
    let signer = signer(Algorithm::ES256, None);
    let doc: Value = serde_json::from_slice(&signer.openid_configuration()).unwrap();
    assert_eq!(doc["issuer"], ISSUER);
    assert_eq!(doc["jwks_uri"], format!("{ISSUER}/jwks.json"));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    let etag = signer.jwks().etag;
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(signer.jwks().etag, etag, "computed once, stable");
}
