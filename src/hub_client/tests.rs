use super::*;
use crate::identity::Signer;
use serde_json::json;

const ISS: &str = "https://auth.example.com/_wxgate";

fn client() -> HubClient {
    let cfg = HubClientConfig {
        issuer: ISS.into(),
        client_id: "crm".into(),
        client_secret: "s".repeat(32),
        scope: Scope::Base,
    };
    HubClient::new(
        &cfg,
        "https://crm.example.com/_wxgate/callback".into(),
        &[9u8; 32],
    )
    .unwrap()
}

fn hub_signer() -> Signer {
    let (_, pem) = crate::identity::keygen();
    let cfg = crate::config::IdentityConfig {
        signing_key_pem: Some(pem),
        ..crate::config::IdentityConfig::default()
    };
    Signer::from_config(&cfg, &[1u8; 32], ISS.into()).unwrap()
}

fn jwks(s: &Signer) -> JwkSet {
    serde_json::from_slice(&s.jwks().body).unwrap()
}

/// An id_token as the hub makes one.
fn id_token(s: &Signer, aud: &str, nonce: &str) -> String {
    let mut session = Session::new("wxapp", "o-alice", Scope::UserInfo);
    session.id = "sid".into();
    session.nickname = Some("Alice".into());
    session.unionid = Some("u-1".into());
    let mut c = s.claims(&session);
    c["aud"] = json!(aud);
    c["nonce"] = json!(nonce);
    s.sign_claims(&c).unwrap()
}

#[test]
fn the_hubs_id_token_verifies_only_for_this_client_and_this_flow() {
    let hub = hub_signer();
    let keys = jwks(&hub);
    let claims = verify_id_token(&id_token(&hub, "crm", "n1"), &keys, ISS, "crm", "n1").unwrap();
    assert_eq!(claims["sub"], "o-alice");
    assert_eq!(
        verify_id_token(&id_token(&hub, "crm", "n1"), &keys, ISS, "crm", "n2"),
        Err(IdTokenError::Nonce)
    );
    assert!(matches!(
        verify_id_token(&id_token(&hub, "wiki", "n1"), &keys, ISS, "crm", "n1"),
        Err(IdTokenError::Invalid(_))
    ));
    assert!(matches!(
        verify_id_token(
            &id_token(&hub, "crm", "n1"),
            &keys,
            "https://other/_wxgate",
            "crm",
            "n1"
        ),
        Err(IdTokenError::Invalid(_))
    ));
    // Another key (a forger's, or the hub's next one): unknown until the keys are fetched again.
    let other = hub_signer();
    assert_eq!(
        verify_id_token(&id_token(&other, "crm", "n1"), &keys, ISS, "crm", "n1"),
        Err(IdTokenError::UnknownKey)
    );
    // A tampered payload.
    let t = id_token(&hub, "crm", "n1");
    let mut parts: Vec<&str> = t.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(
        json!({"iss": ISS, "aud": "crm", "sub": "o-mallory", "exp": 4_000_000_000u64, "nonce": "n1"})
            .to_string(),
    );
    parts[1] = &forged;
    assert!(matches!(
        verify_id_token(&parts.join("."), &keys, ISS, "crm", "n1"),
        Err(IdTokenError::Invalid(_))
    ));
}

#[test]
fn the_session_is_the_hubs_user_with_the_profile_only_for_userinfo() {
    let hub = hub_signer();
    let claims =
        verify_id_token(&id_token(&hub, "crm", "n"), &jwks(&hub), ISS, "crm", "n").unwrap();
    let s = session_from_claims(&claims).unwrap();
    assert_eq!((s.appid.as_str(), s.openid.as_str()), ("wxapp", "o-alice"));
    assert_eq!(s.scope, Scope::UserInfo);
    assert_eq!(s.nickname.as_deref(), Some("Alice"));
    assert_eq!(s.unionid.as_deref(), Some("u-1"));
    assert_eq!(s.access_token, None);
    let base = session_from_claims(&json!({"sub": "o-b", "scope": "snsapi_base", "nickname": "x"}))
        .unwrap();
    assert_eq!(
        (base.openid.as_str(), base.scope, base.nickname),
        ("o-b", Scope::Base, None)
    );
    assert!(session_from_claims(&json!({"scope": "snsapi_base"})).is_err());
}

#[test]
fn the_authorize_url_carries_pkce_and_a_nonce_derived_from_the_state() {
    let c = client();
    let p = Provider {
        authorization_endpoint: format!("{ISS}/oidc/authorize"),
        token_endpoint: format!("{ISS}/oidc/token"),
        jwks: JwkSet { keys: vec![] },
        fetched: Instant::now(),
    };
    let url = c.authorize_url(&p, "STATE1", Scope::UserInfo);
    let (base, query) = url.split_once('?').unwrap();
    assert_eq!(base, format!("{ISS}/oidc/authorize"));
    let q = crate::hub::params::Params::parse(query);
    let get = |k| q.one(k).unwrap().unwrap().to_string();
    assert_eq!(get("response_type"), "code");
    assert_eq!(get("client_id"), "crm");
    assert_eq!(
        get("redirect_uri"),
        "https://crm.example.com/_wxgate/callback"
    );
    assert_eq!(get("scope"), "openid profile");
    assert_eq!(get("state"), "STATE1");
    assert_eq!(get("code_challenge_method"), "S256");
    let verifier = c.verifier("STATE1");
    assert!(crate::hub::pkce::verifies(
        &verifier,
        &get("code_challenge")
    ));
    assert_eq!(get("nonce"), c.nonce("STATE1"));
    assert_ne!(c.nonce("STATE1"), c.nonce("STATE2"));
    assert_ne!(c.verifier("STATE1"), c.nonce("STATE1"));
}
