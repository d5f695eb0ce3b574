//! The hub: wxgate at the WeChat-authorized domain as an OpenID Connect provider for
//! other apps. Each test is a story of PRODUCT.md's "Hub" section, told over real
//! sockets against the mock WeChat: an app signing a user in with PKCE, a second app
//! needing no second WeChat round trip, every misuse of a code refused, no
//! redirect_uri but the registered one ever redirected to, and a real OIDC client
//! (oauth2-proxy) signing a user in.

use std::time::Duration;

use crate::support::wechat::{picking_mock, url_param, verify, Browser, Platform};
use crate::support::{http1_client, proxy, send, Answer, Gate};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Request, StatusCode};
use serde_json::Value;
use wxgate::config::file::{self, HubClient, HubConfig};
use wxgate::config::{Config, Scope};
use wxgate::hub::pkce;

const SECRET: &str = "hub-client-secret-0123456789abcdef-test";
const OTHER_SECRET: &str = "hub-other-secret-0123456789abcdef-test!";
const CRM_CB: &str = "https://crm.example.com/_wxgate/callback";
const WIKI_CB: &str = "https://wiki.example.com/_wxgate/callback";
const VERIFIER: &str = "a-verifier-of-forty-three-characters-or-more-0123";

/// Registers an app with the hub.
fn client(c: &mut file::Config, id: &str, secret: &str, redirect_uris: &[&str], scope: Scope) {
    c.hub
        .get_or_insert_with(HubConfig::default)
        .clients
        .push(HubClient {
            client_id: id.into(),
            client_secret: secret.into(),
            redirect_uris: redirect_uris.iter().map(|s| s.to_string()).collect(),
            scope,
            ..HubClient::default()
        });
}

/// The mock WeChat and a hub with two apps: `crm` (profile allowed) and `wiki` (base).
struct Rig {
    hub: Gate,
    platform: Platform,
}

async fn rig() -> Rig {
    rig_then(|_| {}).await
}

/// As [`rig`]; `test_only` changes the validated config (a code lifetime short
/// enough to watch it expire).
async fn rig_then(test_only: impl FnOnce(&mut Config)) -> Rig {
    let platform = Platform::start(picking_mock()).await;
    let hub = proxy()
        .wechat(&platform)
        .tweak(|c| {
            client(c, "crm", SECRET, &[CRM_CB], Scope::UserInfo);
            client(c, "wiki", OTHER_SECRET, &[WIKI_CB], Scope::Base);
        })
        .test_only(test_only)
        .run()
        .await;
    Rig { hub, platform }
}

/// An authorization request as an app builds it.
fn authorize_path(client_id: &str, redirect_uri: &str, scope: &str, extra: &str) -> String {
    format!(
        "/_wxgate/oidc/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope={}&state=st-{client_id}&nonce=n-{client_id}&code_challenge={}&code_challenge_method=S256{extra}",
        enc(redirect_uri),
        enc(scope),
        pkce::s256(VERIFIER)
    )
}

fn enc(s: &str) -> String {
    wxgate::hub::params::form_encode(s)
}

fn location(a: &Answer) -> String {
    assert_eq!(a.status, StatusCode::FOUND, "a redirect: {}", a.text());
    a.header("location").expect("Location").to_string()
}

impl Rig {
    /// The phone signs `user` in at the hub for an app: the hub's own WeChat sign-in
    /// when it has no session yet, then the code at the app's redirect_uri. Returns
    /// that redirect.
    async fn code_redirect(&self, phone: &mut Browser, user: &str, authorize: &str) -> String {
        let mut loc = location(&phone.get(authorize).await);
        if loc.starts_with(&self.hub.mock_url("/connect/oauth2/authorize")) {
            let callback = phone.consent(&loc, user, "allow").await;
            let resume = location(&phone.get(&callback).await);
            assert!(
                resume.starts_with("/_wxgate/oidc/authorize?resume="),
                "{resume}"
            );
            loc = location(&phone.get(&resume).await);
        }
        loc
    }

    /// As [`Rig::code_redirect`], the code taken out of it.
    async fn code(&self, phone: &mut Browser, user: &str, authorize: &str) -> String {
        let back = self.code_redirect(phone, user, authorize).await;
        url_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"))
    }

    async fn token(&self, how: ClientAuth<'_>, fields: &[(&str, &str)]) -> Answer {
        token_request(&self.hub, how, fields).await
    }
}

enum ClientAuth<'a> {
    Basic(&'a str, &'a str),
    Post(&'a str, &'a str),
}

async fn token_request(hub: &Gate, how: ClientAuth<'_>, fields: &[(&str, &str)]) -> Answer {
    let mut all: Vec<(&str, &str)> = fields.to_vec();
    let mut req = Request::post(hub.url("/_wxgate/oidc/token"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    match how {
        ClientAuth::Basic(id, secret) => {
            use base64::Engine as _;
            let pair = format!("{}:{}", enc(id), enc(secret));
            let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
            req = req.header(AUTHORIZATION, format!("Basic {b64}"));
        }
        ClientAuth::Post(id, secret) => {
            all.push(("client_id", id));
            all.push(("client_secret", secret));
        }
    }
    let body = all
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    send(
        &http1_client(),
        req.body(crate::support::body(body)).unwrap(),
    )
    .await
}

fn redeem_fields<'a>(code: &'a str, redirect_uri: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", VERIFIER),
    ]
}

async fn userinfo(hub: &Gate, access_token: &str) -> Answer {
    let req = Request::get(hub.url("/_wxgate/oidc/userinfo"))
        .header(AUTHORIZATION, format!("Bearer {access_token}"))
        .body(wxgate::body::empty())
        .unwrap();
    send(&http1_client(), req).await
}

/// The id_token verified as an app does, from the hub's JWKS alone.
async fn verified(hub: &Gate, id_token: &str, client_id: &str) -> Value {
    let jwks = crate::support::get(&hub.url("/_wxgate/jwks.json")).await;
    verify(id_token, &jwks.text(), &hub.issuer(), client_id)
        .unwrap_or_else(|e| panic!("the id_token does not verify: {e}"))
}

fn assert_oauth_error(a: &Answer, status: StatusCode, error: &str) {
    assert_eq!(a.status, status, "{}", a.text());
    assert_eq!(a.json()["error"], error, "{}", a.text());
    assert!(a.json()["error_description"].is_string(), "{}", a.text());
    assert_eq!(a.header("cache-control"), Some("no-store"));
}

// ---------------------------------------------------------------- stories

#[tokio::test]
async fn an_app_signs_a_user_in_through_the_hub_and_gets_the_identity_claims() {
    let rig = rig().await;
    let mut phone = rig.hub.phone();
    let back = rig
        .code_redirect(
            &mut phone,
            "alice",
            &authorize_path("crm", CRM_CB, "openid", ""),
        )
        .await;
    // The app's own address, its state echoed, the hub named (RFC 9207).
    assert!(back.starts_with(&format!("{CRM_CB}?code=")), "{back}");
    assert_eq!(url_param(&back, "state").as_deref(), Some("st-crm"));
    assert_eq!(url_param(&back, "iss"), Some(rig.hub.issuer()));
    let code = url_param(&back, "code").unwrap();

    let a = rig
        .token(
            ClientAuth::Basic("crm", SECRET),
            &redeem_fields(&code, CRM_CB),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.header("cache-control"), Some("no-store"));
    let t = a.json();
    // Exactly the hub's own tokens: no WeChat token, no refresh token.
    let mut keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_in",
            "id_token",
            "scope",
            "token_type"
        ]
    );
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "openid");

    let claims = verified(&rig.hub, t["id_token"].as_str().unwrap(), "crm").await;
    let openid = rig.platform.openid("alice");
    assert_eq!(claims["sub"], openid.as_str());
    assert_eq!(claims["openid"], openid.as_str());
    assert_eq!(claims["aud"], "crm");
    assert_eq!(claims["azp"], "crm");
    assert_eq!(claims["nonce"], "n-crm");
    assert_eq!(claims["scope"], "snsapi_base");
    assert_eq!(claims["appid"], rig.hub.appid.as_str());
    assert!(claims.get("nickname").is_none(), "{claims}");

    let info = userinfo(&rig.hub, t["access_token"].as_str().unwrap()).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.text());
    assert_eq!(info.json()["sub"], openid.as_str());
    assert!(info.json().get("aud").is_none(), "{}", info.text());
    let wrong = userinfo(&rig.hub, "not-a-token").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
}

#[tokio::test]
async fn client_secret_post_works_as_well_as_basic() {
    let rig = rig().await;
    let mut phone = rig.hub.phone();
    let code = rig
        .code(
            &mut phone,
            "alice",
            &authorize_path("wiki", WIKI_CB, "openid", ""),
        )
        .await;
    let a = rig
        .token(
            ClientAuth::Post("wiki", OTHER_SECRET),
            &redeem_fields(&code, WIKI_CB),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    verified(&rig.hub, a.json()["id_token"].as_str().unwrap(), "wiki").await;
}

#[tokio::test]
async fn a_second_app_signs_in_without_another_wechat_round_trip() {
    let rig = rig().await;
    let mut phone = rig.hub.phone();
    rig.code(
        &mut phone,
        "alice",
        &authorize_path("crm", CRM_CB, "openid", ""),
    )
    .await;
    assert_eq!(rig.platform.mock.calls("access_token"), 1);
    // The hub remembers its user: the second app's request gets a code at once.
    let back = location(
        &phone
            .get(&authorize_path("wiki", WIKI_CB, "openid", ""))
            .await,
    );
    assert!(back.starts_with(&format!("{WIKI_CB}?code=")), "{back}");
    assert_eq!(
        rig.platform.mock.calls("access_token"),
        1,
        "no second WeChat code"
    );
    let code = url_param(&back, "code").unwrap();
    let a = rig
        .token(
            ClientAuth::Basic("wiki", OTHER_SECRET),
            &redeem_fields(&code, WIKI_CB),
        )
        .await;
    let claims = verified(&rig.hub, a.json()["id_token"].as_str().unwrap(), "wiki").await;
    assert_eq!(claims["sub"], rig.platform.openid("alice").as_str());
}

#[tokio::test]
async fn profile_asks_wechat_for_snsapi_userinfo_only_for_a_client_allowed_it() {
    let rig = rig().await;
    let mut phone = rig.hub.phone();
    // wiki may not have a profile: a base sign-in, no nickname.
    let code = rig
        .code(
            &mut phone,
            "bob",
            &authorize_path("wiki", WIKI_CB, "openid profile", ""),
        )
        .await;
    let a = rig
        .token(
            ClientAuth::Basic("wiki", OTHER_SECRET),
            &redeem_fields(&code, WIKI_CB),
        )
        .await;
    assert_eq!(a.json()["scope"], "openid");
    let claims = verified(&rig.hub, a.json()["id_token"].as_str().unwrap(), "wiki").await;
    assert_eq!(claims["scope"], "snsapi_base");
    assert!(claims.get("nickname").is_none());

    // A computer holding that base session gets a base code for crm at once: outside
    // WeChat's browser there is no asking WeChat for more (and no loop trying).
    let mut computer = rig.hub.browser(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    );
    let cookie = phone
        .cookie(crate::support::wechat::SESSION_COOKIE)
        .unwrap();
    computer.set_cookie(crate::support::wechat::SESSION_COOKIE, &cookie);
    let back = location(
        &computer
            .get(&authorize_path("crm", CRM_CB, "openid profile", ""))
            .await,
    );
    let code = url_param(&back, "code").expect("a code at once");
    let a = rig
        .token(
            ClientAuth::Basic("crm", SECRET),
            &redeem_fields(&code, CRM_CB),
        )
        .await;
    assert_eq!(a.json()["scope"], "openid");

    // crm may: the base session is not enough, WeChat is asked for the profile.
    let first = location(
        &phone
            .get(&authorize_path("crm", CRM_CB, "openid profile", ""))
            .await,
    );
    assert!(first.contains("scope=snsapi_userinfo"), "{first}");
    let callback = phone.consent(&first, "bob", "allow").await;
    let resume = location(&phone.get(&callback).await);
    let back = location(&phone.get(&resume).await);
    let code = url_param(&back, "code").unwrap();
    let a = rig
        .token(
            ClientAuth::Basic("crm", SECRET),
            &redeem_fields(&code, CRM_CB),
        )
        .await;
    assert_eq!(a.json()["scope"], "openid profile");
    let claims = verified(&rig.hub, a.json()["id_token"].as_str().unwrap(), "crm").await;
    assert_eq!(claims["scope"], "snsapi_userinfo");
    assert_eq!(claims["nickname"], "王小明 🐼");
    assert_eq!(claims["name"], "王小明 🐼");
}

#[tokio::test]
async fn every_misuse_of_a_code_is_refused() {
    let rig = rig_then(|c| c.hub.as_mut().unwrap().code_ttl = Duration::from_secs(1)).await;
    let mut phone = rig.hub.phone();
    let crm = authorize_path("crm", CRM_CB, "openid", "");
    let basic = || ClientAuth::Basic("crm", SECRET);

    // Code replay: the second redemption fails and revokes what the first one got.
    let code = rig.code(&mut phone, "alice", &crm).await;
    let first = rig.token(basic(), &redeem_fields(&code, CRM_CB)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let access = first.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(userinfo(&rig.hub, &access).await.status, StatusCode::OK);
    let replay = rig.token(basic(), &redeem_fields(&code, CRM_CB)).await;
    assert_oauth_error(&replay, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(
        userinfo(&rig.hub, &access).await.status,
        StatusCode::UNAUTHORIZED,
        "the replay revoked the first access token"
    );

    // PKCE mismatch, and no verifier at all.
    let code = rig.code(&mut phone, "alice", &crm).await;
    let mut fields = redeem_fields(&code, CRM_CB);
    fields[3].1 = "another-verifier-of-forty-three-characters-or-more";
    assert_oauth_error(
        &rig.token(basic(), &fields).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    let code = rig.code(&mut phone, "alice", &crm).await;
    let mut fields = redeem_fields(&code, CRM_CB);
    fields.pop();
    assert_oauth_error(
        &rig.token(basic(), &fields).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    // A wrong client secret, and an unknown client: 401 invalid_client.
    let code = rig.code(&mut phone, "alice", &crm).await;
    let wrong = rig
        .token(
            ClientAuth::Basic("crm", "not-the-secret-0123456789abcdef-0123"),
            &redeem_fields(&code, CRM_CB),
        )
        .await;
    assert_oauth_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(wrong.header("www-authenticate").is_some());
    let wrong = rig
        .token(
            ClientAuth::Post("crm", "nope"),
            &redeem_fields(&code, CRM_CB),
        )
        .await;
    assert_oauth_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_client");
    // The right secret still redeems it: a failed authentication takes nothing.
    let right = rig.token(basic(), &redeem_fields(&code, CRM_CB)).await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.text());

    // Another client's code (with its own good credentials).
    let code = rig.code(&mut phone, "alice", &crm).await;
    let other = rig
        .token(
            ClientAuth::Basic("wiki", OTHER_SECRET),
            &redeem_fields(&code, CRM_CB),
        )
        .await;
    assert_oauth_error(&other, StatusCode::BAD_REQUEST, "invalid_grant");
    // ...which is burnt for its own client too.
    let own = rig.token(basic(), &redeem_fields(&code, CRM_CB)).await;
    assert_oauth_error(&own, StatusCode::BAD_REQUEST, "invalid_grant");

    // A redirect_uri other than the authorization request's.
    let code = rig.code(&mut phone, "alice", &crm).await;
    let moved = rig
        .token(
            basic(),
            &redeem_fields(&code, "https://crm.example.com/other"),
        )
        .await;
    assert_oauth_error(&moved, StatusCode::BAD_REQUEST, "invalid_grant");

    // An expired code (this hub's codes live 1 s instead of 60).
    let code = rig.code(&mut phone, "alice", &crm).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let late = rig.token(basic(), &redeem_fields(&code, CRM_CB)).await;
    assert_oauth_error(&late, StatusCode::BAD_REQUEST, "invalid_grant");

    // Not a code grant at all.
    let code = rig.code(&mut phone, "alice", &crm).await;
    let mut fields = redeem_fields(&code, CRM_CB);
    fields[0].1 = "password";
    assert_oauth_error(
        &rig.token(basic(), &fields).await,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    );

    // Operators see the replay.
    let metrics = crate::support::get(&rig.hub.admin_url("/metrics"))
        .await
        .text();
    assert!(
        metrics.contains(r#"wxgate_hub_requests_total{endpoint="token",outcome="replay_revoked"}"#),
        "{metrics}"
    );
}

/// redirect_uris that are not the registered one byte for byte, each a known way
/// around a looser check.
const REDIRECT_CORPUS: &[&str] = &[
    // prefix and suffix
    "https://crm.example.com/_wxgate/callbac",
    "https://crm.example.com/_wxgate/callback/",
    "https://crm.example.com/_wxgate/callbackevil",
    "https://crm.example.com/_wxgate/callback?next=https://evil.example/",
    "https://crm.example.com.evil.example/_wxgate/callback",
    "https://evil.example/https://crm.example.com/_wxgate/callback",
    // user info
    "https://crm.example.com@evil.example/_wxgate/callback",
    "https://evil.example@crm.example.com/_wxgate/callback",
    // backslash
    "https://crm.example.com\\@evil.example/_wxgate/callback",
    "https:\\\\crm.example.com/_wxgate/callback",
    // encoded
    "https://crm.example.com/_wxgate%2Fcallback",
    "https%3A%2F%2Fcrm.example.com%2F_wxgate%2Fcallback",
    "https://crm.example.com%2F@evil.example/_wxgate/callback",
    "https://crm.example.com/_wxgate/callback%0d%0aLocation:%20https://evil.example/",
    // IDNA and look-alikes
    "https://crm.exаmple.com/_wxgate/callback",
    "https://crm.xn--exmple-4nf.com/_wxgate/callback",
    "https://CRM.EXAMPLE.COM/_wxgate/callback",
    "https://crm.example.com\u{FF0F}_wxgate/callback",
    // port
    "https://crm.example.com:443/_wxgate/callback",
    "https://crm.example.com:8443/_wxgate/callback",
    "http://crm.example.com/_wxgate/callback",
    // path traversal
    "https://crm.example.com/_wxgate/callback/../../evil",
    "https://crm.example.com/other/../_wxgate/callback",
    "https://crm.example.com//_wxgate/callback",
    // fragment
    "https://crm.example.com/_wxgate/callback#",
    "https://crm.example.com/_wxgate/callback#@evil.example",
    // scheme-relative and none
    "//crm.example.com/_wxgate/callback",
    "",
];

#[tokio::test]
async fn a_redirect_uri_not_registered_exactly_gets_a_page_at_the_hub_never_a_redirect() {
    let rig = rig().await;
    let mut phone = rig.hub.phone();
    // Signed in at the hub first: a session must not make any of them pass either.
    rig.code(
        &mut phone,
        "alice",
        &authorize_path("crm", CRM_CB, "openid", ""),
    )
    .await;
    for uri in REDIRECT_CORPUS {
        let path = authorize_path("crm", uri, "openid", "");
        for a in [phone.get(&path).await, rig.hub.phone().get(&path).await] {
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri:?}: {}", a.text());
            assert!(a.header("location").is_none(), "{uri:?} redirected");
            assert!(a.text().contains("redirect_uri"), "{uri:?}: {}", a.text());
        }
    }
    // Another client's registered URI is not this client's.
    let a = phone
        .get(&authorize_path("crm", WIKI_CB, "openid", ""))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.header("location").is_none());
    // An unknown client: a page too.
    let a = phone
        .get(&authorize_path("nobody", CRM_CB, "openid", ""))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.header("location").is_none());
}

#[tokio::test]
async fn once_the_app_is_known_its_mistakes_go_back_to_it_with_its_state() {
    let rig = rig().await;
    let mut phone = rig.hub.phone();
    let no_pkce = authorize_path("crm", CRM_CB, "openid", "").replace(
        "&code_challenge_method=S256",
        "&code_challenge_method=plain",
    );
    let back = location(&phone.get(&no_pkce).await);
    assert!(
        back.starts_with(&format!("{CRM_CB}?error=invalid_request")),
        "{back}"
    );
    assert_eq!(url_param(&back, "state").as_deref(), Some("st-crm"));
    // prompt=none without a hub session: login_required, no WeChat.
    let back = location(
        &phone
            .get(&authorize_path("crm", CRM_CB, "openid", "&prompt=none"))
            .await,
    );
    assert_eq!(url_param(&back, "error").as_deref(), Some("login_required"));
    assert_eq!(rig.platform.mock.calls("access_token"), 0);
}

#[tokio::test]
async fn discovery_names_the_hubs_endpoints_under_the_existing_issuer() {
    let rig = rig().await;
    let a = crate::support::get(&rig.hub.url("/_wxgate/.well-known/openid-configuration")).await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.json();
    let iss = rig.hub.issuer();
    assert_eq!(doc["issuer"], iss.as_str());
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
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
}

// ---------------------------------------------------------------- a real OIDC client

/// oauth2-proxy, as `go install github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6` leaves
/// it: on PATH, in $GOBIN, or in $GOPATH/bin (~/go/bin by default). A loud skip (a
/// failure under CI) when it is nowhere.
fn oauth2_proxy() -> Option<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    dirs.extend(std::env::var_os("GOBIN").map(Into::into));
    if let Some(gopath) = std::env::var_os("GOPATH") {
        dirs.extend(std::env::split_paths(&gopath).map(|p| p.join("bin")));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(std::path::Path::new(&home).join("go/bin"));
    }
    let found = dirs
        .into_iter()
        .map(|d| d.join("oauth2-proxy"))
        .find(|p| p.is_file());
    if found.is_none() {
        crate::support::skip::skip(
            "oauth2-proxy not found (go install github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6)",
        );
    }
    found
}

/// A child process ended (by its pid, through the handle) when the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn free_port() -> u16 {
    crate::support::dead_address().await.port()
}

/// Waits until `url` answers 200 (a child server finished starting).
async fn until_up(url: &str, child: &mut Child) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(url).send().await {
            if r.status() == reqwest::StatusCode::OK {
                return;
            }
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("{url}: the server exited ({status})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not come up");
}

#[tokio::test]
async fn oauth2_proxy_signs_a_user_in_through_the_hub_and_its_upstream_sees_them() {
    let Some(bin) = oauth2_proxy() else { return };
    // The mock consents silently for its first user (snsapi_base inside WeChat).
    let platform = Platform::start(wxgate::mock::MockConfig {
        authorized_hosts: vec!["127.0.0.1".into()],
        ..wxgate::mock::MockConfig::default()
    })
    .await;
    // oauth2-proxy's address first: its callback is what the hub registers.
    let port = free_port().await;
    let o2p = format!("http://127.0.0.1:{port}");
    let callback = format!("{o2p}/oauth2/callback");
    let hub = proxy()
        .wechat(&platform)
        .tweak(|c| client(c, "o2p", SECRET, &[&callback], Scope::Base))
        .run()
        .await;
    let mut child = Child(
        std::process::Command::new(bin)
            .args([
                "--provider=oidc",
                &format!("--oidc-issuer-url={}", hub.issuer()),
                "--client-id=o2p",
                &format!("--client-secret={SECRET}"),
                &format!("--redirect-url={callback}"),
                &format!("--upstream=http://{}/", platform.upstream.addr),
                &format!("--http-address=127.0.0.1:{port}"),
                "--cookie-secret=0123456789abcdef0123456789abcdef",
                "--cookie-secure=false",
                "--email-domain=*",
                // A WeChat user has no e-mail address: the openid names them.
                "--oidc-email-claim=sub",
                "--scope=openid",
                "--code-challenge-method=S256",
                "--insecure-oidc-skip-nonce=false",
                "--skip-provider-button=true",
                "--pass-authorization-header=true",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("oauth2-proxy starts"),
    );
    until_up(&format!("{o2p}/ping"), &mut child).await;

    let browser = crate::support::wechat::WalkingBrowser::new();
    let pages = browser
        .walk(&format!("{o2p}/orders/42?tab=items"), |_| false)
        .await;
    let hops: Vec<&str> = pages.iter().map(|p| p.url.as_str()).collect();
    let last = pages.last().unwrap();
    assert_eq!(last.status, 200, "hops {hops:#?}: {}", last.body);
    let echo = last.json();
    assert_eq!(echo["uri"], "/orders/42?tab=items");
    let openid = platform.openid("alice");
    assert_eq!(
        crate::support::seen(&echo, "x-forwarded-user"),
        std::slice::from_ref(&openid),
        "{echo}"
    );
    // The id_token oauth2-proxy got and passes on verifies against the hub's keys.
    let bearer = crate::support::seen(&echo, "authorization");
    let id_token = bearer[0]
        .strip_prefix("Bearer ")
        .expect("a bearer id_token");
    let claims = verified(&hub, id_token, "o2p").await;
    assert_eq!(claims["sub"], openid.as_str());
    assert!(
        claims["nonce"].is_string(),
        "oauth2-proxy's nonce echoed: {claims}"
    );

    // WeChat's code went to the hub only; the app saw the hub's own code.
    let wechat_callback = hops
        .iter()
        .find(|u| u.contains("/_wxgate/callback?"))
        .expect("the hub's WeChat callback");
    let wechat_code = url_param(wechat_callback, "code").unwrap();
    let app_callback = hops
        .iter()
        .find(|u| u.starts_with(&callback))
        .expect("oauth2-proxy's callback");
    assert!(!app_callback.contains(&wechat_code), "{app_callback}");
    assert!(
        hops.iter().all(|u| u.starts_with(&hub.origin)
            || u.starts_with(&o2p)
            || u.starts_with(&hub.mock_url("/"))),
        "{hops:#?}"
    );
    assert_eq!(platform.mock.calls("access_token"), 1);
}

// ---------------------------------------------------------------- wxgates signing in through the hub

/// A wxgate that signs in through the hub at `issuer` as `client_id`, on an already bound listener:
/// no `[wechat]` of its own, its own session cookie name (all of them share 127.0.0.1,
/// where a browser's cookies do not tell ports apart).
async fn start_app(
    listener: tokio::net::TcpListener,
    issuer: &str,
    upstream: std::net::SocketAddr,
    client_id: &str,
    cookie: &str,
) -> tokio::sync::oneshot::Sender<()> {
    start_app_with(listener, issuer, upstream, client_id, cookie, "").await
}

/// As [`start_app`], with more of the file after it (`[[routes]]`).
async fn start_app_with(
    listener: tokio::net::TcpListener,
    issuer: &str,
    upstream: std::net::SocketAddr,
    client_id: &str,
    cookie: &str,
    more: &str,
) -> tokio::sync::oneshot::Sender<()> {
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "{origin}"
[admin]
listen = "127.0.0.1:1"
[upstream]
url = "http://{upstream}"
[session]
secret = "{secret}"
cookie_name = "{cookie}"
[hub_client]
issuer = "{issuer}"
client_id = "{client_id}"
client_secret = "{SECRET}"
{more}
"#,
        secret = crate::support::wechat::SESSION_SECRET,
    );
    let config = wxgate::config::from_toml(
        &text,
        std::path::Path::new("."),
        &std::collections::BTreeMap::<String, String>::new(),
    )
    .expect("a hub client needs no [wechat]");
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(wxgate::run(
        config,
        wxgate::Listeners {
            public: listener,
            admin,
        },
        async move {
            let _ = stopped.await;
        },
    ));
    stop
}

#[tokio::test]
async fn two_wxgates_on_two_origins_sign_in_through_one_hub_with_one_wechat_authorization() {
    // The mock consents silently for its first user (snsapi_base inside WeChat).
    let platform = Platform::start(wxgate::mock::MockConfig {
        authorized_hosts: vec!["127.0.0.1".into()],
        ..wxgate::mock::MockConfig::default()
    })
    .await;
    // The apps' addresses first: their callbacks are what the hub registers.
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (a_origin, b_origin) = (
        format!("http://{}", a.local_addr().unwrap()),
        format!("http://{}", b.local_addr().unwrap()),
    );
    let (a_cb, b_cb) = (
        format!("{a_origin}/_wxgate/callback"),
        format!("{b_origin}/_wxgate/callback"),
    );
    let hub = proxy()
        .wechat(&platform)
        .tweak(|c| {
            client(c, "app-a", SECRET, &[&a_cb], Scope::Base);
            client(c, "app-b", SECRET, &[&b_cb], Scope::Base);
        })
        .run()
        .await;
    let upstream = platform.upstream.addr;
    let _a = start_app(a, &hub.issuer(), upstream, "app-a", "_app_a").await;
    let _b = start_app(b, &hub.issuer(), upstream, "app-b", "_app_b").await;

    let browser = crate::support::wechat::WalkingBrowser::new();
    let openid = platform.openid("alice");
    for (origin, path) in [(&a_origin, "/orders/42"), (&b_origin, "/wiki/home")] {
        let pages = browser.walk(&format!("{origin}{path}"), |_| false).await;
        let hops: Vec<&str> = pages.iter().map(|p| p.url.as_str()).collect();
        let last = pages.last().unwrap();
        assert_eq!(last.status, 200, "hops {hops:#?}: {}", last.body);
        let echo = last.json();
        assert_eq!(echo["uri"], path);
        // The app's own identity header: its issuer, its keys, the hub's user.
        let token = crate::support::wechat::identity_of(&echo);
        let jwks = crate::support::get(&format!("{origin}/_wxgate/jwks.json")).await;
        let claims = verify(
            &token,
            &jwks.text(),
            &format!("{origin}/_wxgate"),
            &format!("http://{upstream}"),
        )
        .unwrap_or_else(|e| panic!("{origin}'s identity header: {e}"));
        assert_eq!(claims["sub"], openid.as_str());
        assert_eq!(claims["appid"], hub.appid.as_str());
        assert_eq!(claims["idp"], "hub");
        // The way there went through the hub.
        assert!(
            hops.iter()
                .any(|h| h.starts_with(&hub.url("/_wxgate/oidc/authorize"))),
            "{hops:#?}"
        );
        // And the app's own endpoints work as ever.
        let me = browser.get(&format!("{origin}/_wxgate/userinfo")).await;
        assert_eq!(me.json()["sub"], openid.as_str());
    }
    assert_eq!(
        platform.mock.calls("access_token"),
        1,
        "the second app needed no second WeChat authorization"
    );
}

#[tokio::test]
async fn a_computer_signing_in_at_a_hub_client_is_sent_to_the_hub_which_shows_the_qr_page() {
    let platform = Platform::start(picking_mock()).await;
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a_origin = format!("http://{}", a.local_addr().unwrap());
    let a_cb = format!("{a_origin}/_wxgate/callback");
    let hub = proxy()
        .wechat(&platform)
        .tweak(|c| client(c, "app-a", SECRET, &[&a_cb], Scope::Base))
        .run()
        .await;
    let _a = start_app(a, &hub.issuer(), platform.upstream.addr, "app-a", "_app_a").await;
    let desktop = crate::support::wechat::WalkingBrowser::new().with_user_agent(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    );
    let pages = desktop.walk(&format!("{a_origin}/orders"), |_| false).await;
    let last = pages.last().unwrap();
    assert!(
        last.url.starts_with(&hub.url("/_wxgate/oidc/authorize")),
        "{}",
        last.url
    );
    assert_eq!(last.status, 200);
    assert!(
        last.body.contains("/_wxgate/scan/"),
        "the hub's QR page: {}",
        last.body
    );
}

// ---------------------------------------------------------------- wxgate demo --hub

/// The value of `attr="..."` after the first `marker` in `html`, unescaped.
fn attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let at = html.find(marker)?;
    let rest = &html[at..];
    let start = rest.find(&format!("{attr}=\""))? + attr.len() + 2;
    let end = rest[start..].find('"')? + start;
    Some(rest[start..end].replace("&amp;", "&"))
}

#[tokio::test]
async fn the_hub_demo_signs_a_phone_in_at_two_apps_with_one_wechat_consent() {
    let demo =
        crate::support::process::Wxgate::spawn(&["demo", "--hub", "--listen", "127.0.0.1:0"]);
    let (line, _) = demo
        .wait_for(0, |v| v["fields"]["message"] == "wxgate demo --hub")
        .await;
    let url = |k: &str| line["fields"][k].as_str().unwrap().to_string();
    let (hub, crm, wiki) = (url("hub"), url("crm"), url("wiki"));
    assert!(crm != hub && wiki != hub && crm != wiki, "{line}");

    // At the first app, the phone goes through the hub to WeChat's consent page.
    let phone = crate::support::wechat::WalkingBrowser::new();
    let pages = phone
        .walk(&format!("{crm}/"), |u| {
            u.contains("/connect/oauth2/authorize")
        })
        .await;
    let authorize = pages
        .last()
        .unwrap()
        .header("location")
        .unwrap()
        .to_string();
    assert!(
        authorize.starts_with(&format!("{hub}/connect/oauth2/authorize?")),
        "{authorize}"
    );
    let consent = phone.get(authorize.split('#').next().unwrap()).await;
    let field =
        |name: &str| attr_after(&consent.body, &format!("name=\"{name}\""), "value").unwrap();
    let back = phone
        .post_form(
            &format!("{hub}/connect/oauth2/consent"),
            &[
                ("appid", &field("appid")),
                ("redirect_uri", &field("redirect_uri")),
                ("scope", &field("scope")),
                ("state", &field("state")),
                ("user", "bob"),
                ("action", "allow"),
            ],
        )
        .await;
    let callback = back
        .header("location")
        .expect("back to the hub")
        .to_string();
    assert!(
        callback.starts_with(&format!("{hub}/_wxgate/callback?")),
        "{callback}"
    );
    for (start, origin) in [(callback, &crm), (format!("{wiki}/"), &wiki)] {
        // The second app: straight through the hub, no consent page.
        let pages = phone.walk(&start, |_| false).await;
        let app = pages.last().unwrap();
        assert!(
            app.url.starts_with(origin.as_str()),
            "{} is not {origin}",
            app.url
        );
        assert_eq!(app.status, 200, "{}", app.body);
        assert!(app.body.contains("王小明"), "{}", app.body);
        assert!(
            app.body.contains("The identity header was verified"),
            "{}",
            app.body
        );
    }
}

#[tokio::test]
async fn a_hub_that_cannot_be_reached_gets_a_clear_page_at_the_app_not_a_redirect() {
    let platform = Platform::start(picking_mock()).await;
    // A hub that is not there: its address, nothing listening.
    let gone = crate::support::dead_address().await;
    let issuer = format!("http://{gone}/_wxgate");
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", a.local_addr().unwrap());
    let _a = start_app(a, &issuer, platform.upstream.addr, "app-a", "_app_a").await;
    let page = crate::support::wechat::WalkingBrowser::new()
        .get(&format!("{origin}/orders"))
        .await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.header("location").is_none());
    assert!(page.body.contains("hub"), "{}", page.body);
}

// ---------------------------------------------------------------- replicas on Redis

#[tokio::test]
async fn on_redis_a_code_from_one_hub_replica_redeems_at_another_and_a_replay_there_revokes_it() {
    let Some(redis) = crate::support::redis_server::RedisServer::start() else {
        return;
    };
    let platform = Platform::start(picking_mock()).await;
    let (session_secret, signing_key) = wxgate::identity::keygen();
    let configure = |c: &mut file::Config| {
        c.session.store = wxgate::config::StoreKind::Redis;
        c.session.redis_url = redis.url();
        c.session.secret = session_secret.clone();
        c.identity.signing_key = signing_key.clone();
        client(c, "crm", SECRET, &[CRM_CB], Scope::UserInfo);
    };
    let a = proxy()
        .wechat(&platform)
        .tweak(|c| configure(c))
        .run()
        .await;
    // B answers for A's public name, as behind a load balancer.
    let b = proxy()
        .wechat(&platform)
        .public_url(&a.origin)
        .tweak(|c| configure(c))
        .run()
        .await;
    let rig = Rig { hub: a, platform };
    let mut phone = rig.hub.phone();
    let code = rig
        .code(
            &mut phone,
            "alice",
            &authorize_path("crm", CRM_CB, "openid", ""),
        )
        .await;

    let at_b = token_request(
        &b,
        ClientAuth::Basic("crm", SECRET),
        &redeem_fields(&code, CRM_CB),
    )
    .await;
    assert_eq!(at_b.status, StatusCode::OK, "{}", at_b.text());
    let access = at_b.json()["access_token"].as_str().unwrap().to_string();
    verified(&b, at_b.json()["id_token"].as_str().unwrap(), "crm").await;
    assert_eq!(userinfo(&rig.hub, &access).await.status, StatusCode::OK);

    let replay = rig
        .token(
            ClientAuth::Basic("crm", SECRET),
            &redeem_fields(&code, CRM_CB),
        )
        .await;
    assert_oauth_error(&replay, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(userinfo(&b, &access).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_hub_client_refuses_a_callback_naming_another_issuer_and_a_code_it_cannot_redeem() {
    let (platform, hub, a, origin) = hub_and_app_a(Scope::Base).await;
    let cb = format!("{origin}/_wxgate/callback");
    let _a = start_app(a, &hub.issuer(), platform.upstream.addr, "app-a", "_app_a").await;
    let browser = crate::support::wechat::WalkingBrowser::new();
    let callback = |pages: Vec<crate::support::wechat::Page>| {
        let last = pages.last().unwrap();
        let loc = last
            .header("location")
            .expect("the hub's redirect")
            .to_string();
        assert!(loc.starts_with(&cb), "{loc}");
        loc
    };
    // The mix-up defence (RFC 9207): an answer that names another provider.
    let pages = browser
        .walk(&format!("{origin}/orders"), |u| u.starts_with(&cb))
        .await;
    let back = callback(pages);
    let iss = format!("&iss={}", enc(&hub.issuer()));
    assert!(back.contains(&iss), "{back}");
    let forged = back.replace(&iss, &format!("&iss={}", enc("http://127.0.0.1:1/_wxgate")));
    let page = browser.get(&forged).await;
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(page.header("location").is_none());
    // A code the hub does not know: one fresh start at the hub, not a loop.
    let pages = browser
        .walk(&format!("{origin}/orders"), |u| u.starts_with(&cb))
        .await;
    let back = callback(pages);
    let code = url_param(&back, "code").unwrap();
    let bogus = back.replace(&code, "not-a-code-the-hub-issued");
    let again = browser.get(&bogus).await;
    assert_eq!(again.status, 302, "{}", again.body);
    assert!(
        again
            .header("location")
            .unwrap()
            .starts_with(&hub.url("/_wxgate/oidc/authorize")),
        "{:?}",
        again.header("location")
    );
    // Nobody was signed in at the app by either.
    let me = browser.get(&format!("{origin}/_wxgate/userinfo")).await;
    assert_eq!(me.status, 401, "{}", me.body);
}

#[tokio::test]
async fn a_computer_signs_in_at_the_hub_by_scanning_its_qr_code_and_the_app_gets_its_code() {
    let rig = rig().await;
    let mut computer = rig.hub.browser(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    );
    let page = computer
        .get(&authorize_path("crm", CRM_CB, "openid", ""))
        .await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "the hub's QR page: {}",
        page.text()
    );
    let scan_url =
        attr_after(&page.text(), "id=\"wxgate-qr\"", "data-scan-url").expect("a scan URL");
    let ticket = scan_url.rsplit('/').next().unwrap().to_string();

    // The phone scans, signs in at the hub through WeChat, and confirms.
    let mut phone = rig.hub.phone();
    let authorize = location(&phone.get(&scan_url).await);
    let callback = phone.consent(&authorize, "carol", "allow").await;
    let confirm = phone.follow(&callback).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text());
    let body = confirm.text();
    let at = body
        .find("/_wxgate/scan/confirm/")
        .expect("the confirm form");
    let end = body[at..].find('"').unwrap() + at;
    let answer = phone.post(&body[at..end].replace("&amp;", "&")).await;
    assert_eq!(
        answer.header("x-wxgate-scan"),
        Some("confirmed"),
        "{}",
        answer.text()
    );

    // The waiting computer collects its session and lands back on the app's request.
    let status = computer
        .get_json(&format!("/_wxgate/scan/status/{ticket}"))
        .await
        .json();
    let resume = location(&computer.get(status["next"].as_str().unwrap()).await);
    assert!(
        resume.starts_with("/_wxgate/oidc/authorize?resume="),
        "{resume}"
    );
    let back = location(&computer.get(&resume).await);
    assert!(back.starts_with(&format!("{CRM_CB}?code=")), "{back}");
    let code = url_param(&back, "code").unwrap();
    let a = rig
        .token(
            ClientAuth::Basic("crm", SECRET),
            &redeem_fields(&code, CRM_CB),
        )
        .await;
    let claims = verified(&rig.hub, a.json()["id_token"].as_str().unwrap(), "crm").await;
    assert_eq!(claims["sub"], rig.platform.openid("carol").as_str());
}

#[tokio::test]
async fn a_hub_clients_route_needing_the_profile_sends_a_base_session_back_through_the_hub_for_it()
{
    // Silent snsapi_base for the first user; the profile needs a consent page.
    let (platform, hub, a, origin) = hub_and_app_a(Scope::UserInfo).await;
    let upstream = platform.upstream.addr;
    let routes = format!(
        "[[routes]]\npath = \"/profile/*\"\nupstream = \"http://{upstream}\"\nscope = \"snsapi_userinfo\"\n"
    );
    let _a = start_app_with(a, &hub.issuer(), upstream, "app-a", "_app_a", &routes).await;

    // First the app's base pages: the hub signs the phone in with the openid only.
    let phone = crate::support::wechat::WalkingBrowser::new();
    let pages = phone.walk(&format!("{origin}/orders/1"), |_| false).await;
    let last = pages.last().unwrap();
    assert_eq!(last.status, 200, "{}", last.body);
    let claims = identity_claims(&last.json(), &origin, upstream).await;
    assert_eq!(claims["scope"], "snsapi_base");
    assert!(claims.get("nickname").is_none(), "{claims}");

    // Then the route needing the profile: back through the hub, which asks WeChat.
    let pages = phone.walk(&format!("{origin}/profile/me"), |_| false).await;
    let hops: Vec<&str> = pages.iter().map(|p| p.url.as_str()).collect();
    let asked = hops
        .iter()
        .find(|h| h.starts_with(&hub.url("/_wxgate/oidc/authorize")))
        .unwrap_or_else(|| panic!("not through the hub: {hops:#?}"));
    assert!(
        asked.contains("profile"),
        "the hub was asked for the profile: {asked}"
    );
    let consent = pages.last().unwrap();
    assert_eq!(consent.status, 200, "{hops:#?}");
    assert!(
        consent.url.contains("scope=snsapi_userinfo"),
        "WeChat was asked for the profile: {}",
        consent.url
    );
    let (base, query) = consent.url.split_once('?').unwrap();
    let field = |name: &str| url_param(&format!("?{query}"), name).unwrap_or_default();
    let given = phone
        .post_form(
            &base.replace("/connect/oauth2/authorize", "/connect/oauth2/consent"),
            &[
                ("appid", &field("appid")),
                ("redirect_uri", &field("redirect_uri")),
                ("scope", &field("scope")),
                ("state", &field("state")),
                ("user", "alice"),
                ("action", "allow"),
            ],
        )
        .await;
    assert_eq!(given.status, 302, "{}", given.body);
    let callback = given.header("location").unwrap().to_string();
    let pages = phone.walk(&callback, |_| false).await;
    let last = pages.last().unwrap();
    assert_eq!(last.status, 200, "{}", last.body);
    let echo = last.json();
    assert_eq!(echo["uri"], "/profile/me");
    let claims = identity_claims(&echo, &origin, upstream).await;
    assert_eq!(claims["scope"], "snsapi_userinfo");
    assert_eq!(claims["sub"], platform.openid("alice").as_str());
    assert!(claims["nickname"].is_string(), "{claims}");
}

/// The claims of the identity header an app's upstream saw, verified with its keys.
async fn identity_claims(echo: &Value, origin: &str, upstream: std::net::SocketAddr) -> Value {
    let token = crate::support::wechat::identity_of(echo);
    let jwks = crate::support::get(&format!("{origin}/_wxgate/jwks.json")).await;
    verify(
        &token,
        &jwks.text(),
        &format!("{origin}/_wxgate"),
        &format!("http://{upstream}"),
    )
    .unwrap_or_else(|e| panic!("{origin}'s identity header: {e}"))
}

/// The mock WeChat (consenting silently to snsapi_base for its first user), a hub with
/// one app, `app-a`, allowed `scope`, and the listener that app will be served on
/// (its origin is what the hub registers).
async fn hub_and_app_a(scope: Scope) -> (Platform, Gate, tokio::net::TcpListener, String) {
    let platform = Platform::start(wxgate::mock::MockConfig {
        authorized_hosts: vec!["127.0.0.1".into()],
        ..wxgate::mock::MockConfig::default()
    })
    .await;
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", a.local_addr().unwrap());
    let cb = format!("{origin}/_wxgate/callback");
    let hub = proxy()
        .wechat(&platform)
        .tweak(|c| client(c, "app-a", SECRET, &[&cb], scope))
        .run()
        .await;
    (platform, hub, a, origin)
}

#[tokio::test]
async fn a_route_needing_the_profile_that_the_hub_will_not_give_this_app_gets_a_page_not_a_loop() {
    // The hub lets app-a have the openid only: asked for the profile, it answers with less.
    let (platform, hub, a, origin) = hub_and_app_a(Scope::Base).await;
    let upstream = platform.upstream.addr;
    let routes = format!(
        "[[routes]]\npath = \"/profile/*\"\nupstream = \"http://{upstream}\"\nscope = \"snsapi_userinfo\"\n"
    );
    let _a = start_app_with(a, &hub.issuer(), upstream, "app-a", "_app_a", &routes).await;
    let phone = crate::support::wechat::WalkingBrowser::new();
    let pages = phone.walk(&format!("{origin}/orders/1"), |_| false).await;
    assert_eq!(pages.last().unwrap().status, 200);

    let pages = phone.walk(&format!("{origin}/profile/me"), |_| false).await;
    let hops: Vec<&str> = pages.iter().map(|p| p.url.as_str()).collect();
    let last = pages.last().unwrap();
    assert_eq!(last.status, 403, "{hops:#?}: {}", last.body);
    assert!(
        last.body.contains("You are still signed in"),
        "{}",
        last.body
    );
    // And the base session still serves the app's other pages.
    let pages = phone.walk(&format!("{origin}/orders/2"), |_| false).await;
    let last = pages.last().unwrap();
    assert_eq!(last.status, 200, "{}", last.body);
    let claims = identity_claims(&last.json(), &origin, upstream).await;
    assert_eq!(claims["scope"], "snsapi_base");
}
