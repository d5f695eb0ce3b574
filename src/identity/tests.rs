use super::*;
use crate::config::{Dur, Scope};

const SECRET: &[u8] = b"a session secret of at least 32 bytes";
const ISSUER: &str = "https://app.example.com/_wxgate";

fn config(alg: Algorithm, pem: Option<String>) -> IdentityConfig {
    IdentityConfig {
        algorithm: alg,
        audience: "http://127.0.0.1:3000".into(),
        ttl: Dur::secs(300),
        signing_key_pem: pem,
        ..IdentityConfig::default()
    }
}

fn session(id: &str) -> Session {
    Session {
        id: id.into(),
        expires_at: u64::MAX,
        ..Session::new("wxappid", "o-user", Scope::Base)
    }
}

/// The JSON of one part of a compact JWS.
fn part(token: &HeaderValue, i: usize) -> Value {
    let text = token.to_str().unwrap();
    let b64 = text.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap()
}

fn jwks_kids(s: &Signer) -> Vec<String> {
    let doc: Value = serde_json::from_slice(&s.jwks().body).unwrap();
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn with_several_keys_the_first_signs_and_all_are_published() {
    let (_, first) = keygen();
    let (_, second) = keygen();
    let signer = Signer::from_config(
        &config(Algorithm::ES256, Some(format!("{first}\n{second}"))),
        SECRET,
        ISSUER.into(),
    )
    .unwrap();
    let only_second = Signer::from_config(
        &config(Algorithm::ES256, Some(second)),
        SECRET,
        ISSUER.into(),
    )
    .unwrap();
    assert_eq!(signer.key_source(), KeySource::Configured);
    let kids = jwks_kids(&signer);
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[0], signer.kid());
    assert_eq!(kids[1], only_second.kid());
    let token = signer.token_for(&session("multi")).unwrap();
    assert_eq!(part(&token, 0)["kid"], signer.kid());
}

#[test]
fn without_a_key_replicas_sharing_the_secret_sign_with_the_same_key() {
    let a = Signer::from_config(&config(Algorithm::ES256, None), SECRET, ISSUER.into()).unwrap();
    let b = Signer::from_config(&config(Algorithm::ES256, None), SECRET, ISSUER.into()).unwrap();
    assert_eq!(a.key_source(), KeySource::Derived);
    assert_eq!(a.kid(), b.kid());
    assert_eq!(a.jwks().body, b.jwks().body);
    assert_eq!(a.jwks().etag, b.jwks().etag);
}

#[test]
fn rs256_without_a_key_generates_one_and_says_so() {
    let s = Signer::from_config(&config(Algorithm::RS256, None), SECRET, ISSUER.into()).unwrap();
    assert_eq!(s.key_source(), KeySource::Generated);
    assert_eq!(jwks_kids(&s), [s.kid()]);
}

#[test]
fn hs256_publishes_an_empty_key_set() {
    let s = Signer::from_config(
        &config(Algorithm::HS256, Some("x".repeat(40))),
        SECRET,
        ISSUER.into(),
    )
    .unwrap();
    assert_eq!(&s.jwks().body[..], br#"{"keys":[]}"#);
    let token = s.token_for(&session("hs")).unwrap();
    assert_eq!(part(&token, 0)["alg"], "HS256");
}

#[test]
fn the_header_names_type_algorithm_and_key() {
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::HS256] {
        let s = Signer::from_config(&config(alg, None), SECRET, ISSUER.into()).unwrap();
        let header = part(&s.token_for(&session("h")).unwrap(), 0);
        assert_eq!(
            header,
            json!({"alg": alg_name(alg), "kid": s.kid(), "typ": "JWT"})
        );
    }
}

#[test]
fn sid_is_stable_per_session_and_not_the_session_id() {
    let s = Signer::from_config(&config(Algorithm::ES256, None), SECRET, ISSUER.into()).unwrap();
    let other_secret = Signer::from_config(
        &config(Algorithm::ES256, None),
        b"another secret",
        ISSUER.into(),
    )
    .unwrap();
    let a = s.claims(&session("session-a"));
    let a2 = s.claims(&session("session-a"));
    let b = s.claims(&session("session-b"));
    assert_eq!(a["sid"], a2["sid"]);
    assert_ne!(a["sid"], b["sid"]);
    assert_ne!(a["sid"], other_secret.claims(&session("session-a"))["sid"]);
    assert_ne!(a["sid"], "session-a");
    assert_eq!(a["sid"].as_str().unwrap().len(), 22);
    assert_ne!(a["jti"], a2["jti"], "every token has its own id");
}

#[test]
fn exp_minus_iat_is_the_configured_ttl() {
    let s = Signer::from_config(&config(Algorithm::ES256, None), SECRET, ISSUER.into()).unwrap();
    let c = s.claims(&session("ttl"));
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 300);
    assert_eq!(c["iss"], ISSUER);
    assert_eq!(c["aud"], "http://127.0.0.1:3000");
}

#[test]
fn a_cached_token_is_replaced_in_the_last_minute_before_it_expires() {
    let s = Signer::from_config(&config(Algorithm::ES256, None), SECRET, ISSUER.into()).unwrap();
    let sess = session("refresh");
    let t0 = 1_700_000_000;
    let first = s.token_at(&sess, &Extra::default(), None, t0).unwrap();
    let cases = [
        ("well before expiry", t0 + 100, true),
        ("just before the last minute", t0 + 239, true),
        ("in the last minute", t0 + 240, false),
    ];
    for (name, now, same) in cases {
        // Each case starts from the first token's cache entry.
        s.inner.cache.put(
            &sess.id,
            super::cache::SignedFor {
                audience: 0,
                profile_at: sess.profile_at,
                variant: 0,
            },
            t0 + 240,
            first.clone(),
            t0,
        );
        assert_eq!(
            s.token_at(&sess, &Extra::default(), None, now).unwrap() == first,
            same,
            "{name}"
        );
    }
}

#[test]
fn discovery_points_oidc_libraries_at_the_keys() {
    let s = Signer::from_config(&config(Algorithm::EdDSA, None), SECRET, ISSUER.into()).unwrap();
    let doc: Value = serde_json::from_slice(&s.openid_configuration()).unwrap();
    assert_eq!(doc["issuer"], ISSUER);
    assert_eq!(doc["jwks_uri"], format!("{ISSUER}/jwks.json"));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["EdDSA"])
    );
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    assert!(doc["claims_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("openid")));
}

#[test]
fn keygen_gives_a_usable_secret_and_es256_key() {
    let (secret, pem) = keygen();
    assert_eq!(STANDARD.decode(&secret).unwrap().len(), 32);
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let s =
        Signer::from_config(&config(Algorithm::ES256, Some(pem)), SECRET, ISSUER.into()).unwrap();
    assert_eq!(s.algorithm(), Algorithm::ES256);
    assert_ne!(keygen().0, secret);
}
