use super::*;
use crate::config::{HubClient, HubConfig};

const CB: &str = "https://crm.example.com/_wxgate/callback";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn hub(max: Scope) -> Hub {
    let cfg = HubConfig {
        clients: vec![HubClient {
            client_id: "crm".into(),
            client_secret: "x".repeat(32),
            redirect_uris: vec![CB.into(), "http://127.0.0.1:4180/oauth2/callback".into()],
            scope: max,
        }],
        code_ttl: crate::config::CODE_TTL,
    };
    let identity = crate::config::IdentityConfig::default();
    let signer = Signer::from_config(
        &identity,
        &[7u8; 32],
        "https://auth.example.com/_wxgate".into(),
    )
    .unwrap();
    Hub::new(&cfg, &signer, std::time::Duration::from_secs(300))
}

use crate::identity::Signer;

fn enc(s: &str) -> String {
    super::super::params::form_encode(s)
}

/// A good request with `redirect_uri` = `uri`, then `extra` pairs (raw).
fn query(uri: &str, extra: &str) -> String {
    format!(
        "response_type=code&client_id=crm&redirect_uri={}&scope=openid&state=xyz&nonce=n-1&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        enc(uri)
    )
}

fn checked(q: &str, max: Scope) -> Result<Checked, Refusal> {
    check(&hub(max), &Params::parse(q))
}

#[test]
fn a_good_request_is_kept_with_its_state_nonce_and_scope() {
    let c = checked(&query(CB, ""), Scope::Base).unwrap();
    assert_eq!(
        c.pending,
        Pending {
            client_id: "crm".into(),
            redirect_uri: CB.into(),
            state: Some("xyz".into()),
            nonce: Some("n-1".into()),
            code_challenge: CHALLENGE.into(),
            scope: Scope::Base,
        }
    );
    assert!(!c.prompt_none);
}

#[test]
fn profile_means_snsapi_userinfo_only_as_far_as_the_client_may_go() {
    let q = query(CB, "").replace("scope=openid", "scope=openid%20profile%20email");
    assert_eq!(
        checked(&q, Scope::UserInfo).unwrap().pending.scope,
        Scope::UserInfo
    );
    assert_eq!(checked(&q, Scope::Base).unwrap().pending.scope, Scope::Base);
    assert_eq!(
        checked(&query(CB, ""), Scope::UserInfo)
            .unwrap()
            .pending
            .scope,
        Scope::Base
    );
}

/// redirect_uris that are not the registered one byte for byte, each a known way
/// around a looser check. None may be redirected to.
#[test]
fn a_redirect_uri_that_is_not_exactly_registered_gets_a_page_never_a_redirect() {
    let corpus = [
        // prefix and suffix
        "https://crm.example.com/_wxgate/callbac",
        "https://crm.example.com/_wxgate/callback/",
        "https://crm.example.com/_wxgate/callback/../../evil",
        "https://crm.example.com/_wxgate/callbackevil",
        "https://crm.example.com/_wxgate/callback?x=1",
        "https://crm.example.com/_wxgate/callback.evil.example/",
        "https://crm.example.com.evil.example/_wxgate/callback",
        "https://evil.example/https://crm.example.com/_wxgate/callback",
        // user info
        "https://crm.example.com@evil.example/_wxgate/callback",
        "https://crm.example.com:443@evil.example/_wxgate/callback",
        "https://evil.example@crm.example.com/_wxgate/callback",
        // backslash
        "https://crm.example.com\\@evil.example/_wxgate/callback",
        "https://evil.example\\crm.example.com/_wxgate/callback",
        "https:\\\\crm.example.com/_wxgate/callback",
        // encoded
        "https://crm.example.com/_wxgate%2Fcallback",
        "https://crm.example.com/%5Fwxgate/callback",
        "https%3A%2F%2Fcrm.example.com%2F_wxgate%2Fcallback",
        "https://crm.example.com%2F@evil.example/_wxgate/callback",
        "https://crm.example.com/_wxgate/callback%00",
        "https://crm.example.com/_wxgate/callback%0d%0aSet-Cookie:x=1",
        // IDNA and look-alikes
        "https://crm.exаmple.com/_wxgate/callback",
        "https://crm.xn--exmple-4nf.com/_wxgate/callback",
        "https://CRM.example.com/_wxgate/callback",
        "https://crm.example.com\u{FF0F}_wxgate/callback",
        "https://crm。example。com/_wxgate/callback",
        // port
        "https://crm.example.com:443/_wxgate/callback",
        "https://crm.example.com:8443/_wxgate/callback",
        "http://crm.example.com/_wxgate/callback",
        "http://127.0.0.1:4181/oauth2/callback",
        "http://localhost:4180/oauth2/callback",
        // path traversal
        "https://crm.example.com/_wxgate/callback/..",
        "https://crm.example.com/_wxgate/./callback",
        "https://crm.example.com/other/../_wxgate/callback",
        "https://crm.example.com//_wxgate/callback",
        // fragment
        "https://crm.example.com/_wxgate/callback#",
        "https://crm.example.com/_wxgate/callback#@evil.example",
        // scheme
        "HTTPS://crm.example.com/_wxgate/callback",
        "javascript://crm.example.com/_wxgate/callback%0aalert(1)",
        "//crm.example.com/_wxgate/callback",
        "",
    ];
    for uri in corpus {
        let got = checked(&query(uri, ""), Scope::Base);
        assert_eq!(
            got,
            Err(Refusal::Page(PageError::BadRedirectUri)),
            "{uri:?}"
        );
    }
    // Missing, or given twice (even once rightly).
    let q = query(CB, "").replace(&format!("redirect_uri={}&", enc(CB)), "");
    assert_eq!(
        checked(&q, Scope::Base),
        Err(Refusal::Page(PageError::BadRedirectUri))
    );
    let twice = query(CB, &format!("&redirect_uri={}", enc(CB)));
    assert_eq!(
        checked(&twice, Scope::Base),
        Err(Refusal::Page(PageError::Repeated("redirect_uri")))
    );
}

#[test]
fn an_unknown_client_gets_a_page_even_with_a_registered_uri() {
    for q in [
        query(CB, "").replace("client_id=crm", "client_id=other"),
        query(CB, "").replace("client_id=crm", "client_id=CRM"),
        query(CB, "").replace("client_id=crm&", ""),
    ] {
        assert_eq!(
            checked(&q, Scope::Base),
            Err(Refusal::Page(PageError::UnknownClient)),
            "{q}"
        );
    }
}

#[test]
fn other_mistakes_go_back_to_the_app_with_its_state() {
    let cases = [
        (
            "response_type=code",
            "response_type=token",
            "unsupported_response_type",
        ),
        ("response_type=code&", "", "invalid_request"),
        ("scope=openid", "scope=profile", "invalid_scope"),
        (
            "code_challenge_method=S256",
            "code_challenge_method=plain",
            "invalid_request",
        ),
        ("&code_challenge_method=S256", "", "invalid_request"),
        (
            &format!("code_challenge={CHALLENGE}&"),
            "",
            "invalid_request",
        ),
        (CHALLENGE, "short", "invalid_request"),
        ("nonce=n-1", "nonce=n-1&nonce=n-2", "invalid_request"),
    ];
    for (from, to, error) in cases {
        let q = query(CB, "").replace(from, to);
        match checked(&q, Scope::Base) {
            Err(Refusal::Redirect {
                redirect_uri,
                state,
                error: e,
            }) => {
                assert_eq!(redirect_uri, CB, "{q}");
                assert_eq!(state.as_deref(), Some("xyz"), "{q}");
                assert_eq!(e.error, error, "{q}");
            }
            other => panic!("{q}: {other:?}"),
        }
    }
}

#[test]
fn prompt_none_is_noted() {
    assert!(
        checked(&query(CB, "&prompt=none"), Scope::Base)
            .unwrap()
            .prompt_none
    );
}

#[test]
fn the_return_path_after_the_hubs_sign_in_is_a_valid_rd() {
    let rd = format!("/_wxgate/oidc/authorize?resume={}", state::new_state());
    assert_eq!(
        crate::signin::redirect::safe_return_path(&rd),
        Some(rd.clone())
    );
    assert_eq!(crate::signin::redirect::strip_code_and_state(&rd), rd);
}

#[test]
fn discovery_names_the_hubs_endpoints() {
    let doc: serde_json::Value = serde_json::from_slice(&hub(Scope::Base).discovery()).unwrap();
    let iss = "https://auth.example.com/_wxgate";
    assert_eq!(doc["issuer"], iss);
    assert_eq!(doc["jwks_uri"], format!("{iss}/jwks.json"));
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{iss}/oidc/authorize")
    );
    assert_eq!(doc["token_endpoint"], format!("{iss}/oidc/token"));
    assert_eq!(doc["userinfo_endpoint"], format!("{iss}/oidc/userinfo"));
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
}
