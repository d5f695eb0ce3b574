//! The whole WeChat sign-in, end to end: a phone (WeChat's browser) in front of a
//! running wxgate, the mock WeChat platform and the echo upstream, each test one of
//! the user stories in PRODUCT.md's "Sign-in behaviour users rely on".

use std::ops::Deref;
use std::time::Duration;

use crate::support::wechat::{
    assert_page, identity_of, picking_mock, query_param, Browser, Platform,
};
use crate::support::{proxy, seen, send, Answer, Gate};
use http::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use http::{Method, Request, StatusCode};
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;
use wxgate::config::file::Config;
use wxgate::config::{Dur, Scope, StoreKind};
use wxgate::mock::MockWechat;

// ---------------------------------------------------------------- the rig

/// The mock WeChat, the echo upstream and one wxgate between them, all on loopback.
/// Derefs to the wxgate.
struct Rig {
    gate: Gate,
    platform: Platform,
}

impl Deref for Rig {
    type Target = Gate;
    fn deref(&self) -> &Gate {
        &self.gate
    }
}

/// Starts the rig; `tweak` adjusts wxgate's config (the mock is up already, so
/// its openids can be named).
async fn rig(tweak: impl FnOnce(&mut Config, &MockWechat)) -> Rig {
    let platform = Platform::start(picking_mock()).await;
    let gate = proxy()
        .wechat(&platform)
        .tweak(|c| tweak(c, &platform.mock))
        .run()
        .await;
    Rig { gate, platform }
}

impl Rig {
    fn mock(&self) -> &MockWechat {
        &self.platform.mock
    }

    fn openid(&self, user: &str) -> String {
        self.platform.openid(user)
    }

    fn access_token_calls(&self) -> u64 {
        self.mock().calls("access_token")
    }
}

/// A fresh browser holding a copy of the session cookie `cookie`: someone who kept it.
fn browser_with_session(rig: &Rig, cookie: &str) -> Browser {
    let mut browser = rig.phone();
    browser.set_cookie("_wxgate", cookie);
    browser
}

/// Verifies a token as an upstream would, knowing only wxgate's JWKS URL; returns
/// its claims.
async fn verify(rig: &Rig, token: &str) -> Value {
    rig.gate.verify(token).await
}

fn base() -> impl FnOnce(&mut Config, &MockWechat) {
    |_, _| {}
}

fn userinfo_scope() -> impl FnOnce(&mut Config, &MockWechat) {
    |c, _| c.wechat.scope = Scope::UserInfo
}

// ---------------------------------------------------------------- happy paths

#[tokio::test]
async fn a_snsapi_base_sign_in_reaches_the_app_with_a_verifiable_identity() {
    let rig = rig(base()).await;
    let mut phone = rig.phone();
    phone.sign_in(&rig, "alice").await;

    let page = phone.get("/orders/42?tab=items").await;
    assert_eq!(page.status, StatusCode::OK);
    let echo = page.json();
    assert_eq!(echo["uri"], "/orders/42?tab=items");
    let claims = verify(&rig, &identity_of(&echo)).await;
    let openid = rig.openid("alice");
    assert_eq!(claims["sub"], openid.as_str());
    assert_eq!(claims["openid"], openid.as_str());
    assert_eq!(claims["appid"], rig.appid.as_str());
    assert_eq!(claims["scope"], "snsapi_base");
    assert_eq!(
        claims["unionid"],
        rig.mock().unionid("alice").unwrap().as_str()
    );
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    assert!(claims["jti"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(claims["sid"].as_str().is_some_and(|s| !s.is_empty()));
    for absent in ["nickname", "headimgurl", "name", "picture"] {
        assert!(claims.get(absent).is_none(), "{absent} in a base token");
    }

    let me = phone.get("/_wxgate/userinfo").await;
    assert_eq!(me.status, StatusCode::OK);
    let me = me.json();
    assert_eq!(me["openid"], openid.as_str());
    assert_eq!(me["sid"], claims["sid"]);
}

#[tokio::test]
async fn a_snsapi_userinfo_sign_in_carries_the_profile_in_the_identity() {
    let rig = rig(userinfo_scope()).await;
    let mut phone = rig.phone();
    phone.sign_in(&rig, "bob").await;

    let echo = phone.get("/orders/42?tab=items").await.json();
    let claims = verify(&rig, &identity_of(&echo)).await;
    assert_eq!(claims["sub"], rig.openid("bob").as_str());
    assert_eq!(claims["scope"], "snsapi_userinfo");
    assert_eq!(claims["nickname"], "王小明 🐼");
    assert_eq!(claims["name"], "王小明 🐼");
    let avatar = claims["headimgurl"].as_str().unwrap();
    assert!(avatar.ends_with("/mock/avatar/bob.svg"), "{avatar}");
    assert_eq!(claims["picture"], avatar);
    assert!(claims.get("unionid").is_none(), "bob has no unionid");

    let me = phone.get("/_wxgate/userinfo").await.json();
    assert_eq!(me["nickname"], "王小明 🐼");
}

#[tokio::test]
async fn oidc_libraries_find_the_keys_and_can_cache_them() {
    let rig = rig(base()).await;
    let conf = crate::support::get(&rig.url("/_wxgate/.well-known/openid-configuration")).await;
    assert_eq!(conf.status, StatusCode::OK);
    let conf = conf.json();
    assert_eq!(conf["issuer"], format!("{}/_wxgate", rig.origin).as_str());
    assert_eq!(
        conf["jwks_uri"],
        format!("{}/_wxgate/jwks.json", rig.origin).as_str()
    );

    let jwks = crate::support::get(&rig.url("/_wxgate/jwks.json")).await;
    assert!(jwks
        .header("cache-control")
        .is_some_and(|c| c.contains("max-age")));
    let etag = jwks.header("etag").expect("ETag").to_string();
    let req = Request::get(rig.url("/_wxgate/jwks.json"))
        .header("if-none-match", &etag)
        .body(wxgate::body::empty())
        .unwrap();
    let again = send(&crate::support::http1_client(), req).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
}

#[tokio::test]
async fn the_user_lands_on_the_page_first_asked_for_without_wechats_code_and_state() {
    let rig = rig(base()).await;
    let mut phone = rig.phone();
    phone
        .sign_in_at(
            &rig,
            "alice",
            "/a/b?x=1&y=%E4%BD%A0",
            "/a/b?x=1&y=%E4%BD%A0",
        )
        .await;

    let mut other = rig.phone();
    other
        .sign_in_at(&rig, "bob", "/report?code=old&x=2&state=zzz", "/report?x=2")
        .await;
}

// ---------------------------------------------------------------- WeChat's errors

/// Starts a sign-in and answers WeChat's consent: the callback URL, not yet opened.
async fn pending_callback(rig: &Rig, phone: &mut Browser, user: &str) -> String {
    let authorize = phone.begin(rig, "/orders/42?tab=items").await;
    phone.consent(&authorize, user, "allow").await
}

/// Starts alice's sign-in on a rig set up by `tweak`, lets `wechat` change how the
/// mock platform behaves, then opens the callback: the rig, the phone and wxgate's
/// answer to the callback.
async fn callback_when(
    tweak: impl FnOnce(&mut Config, &MockWechat),
    wechat: impl FnOnce(&MockWechat),
) -> (Rig, Browser, Answer) {
    let rig = rig(tweak).await;
    let mut phone = rig.phone();
    let callback = pending_callback(&rig, &mut phone, "alice").await;
    wechat(rig.mock());
    let a = phone.get(&callback).await;
    (rig, phone, a)
}

/// Has WeChat answer `api` with `errcode` the next `times` times.
fn answering(api: &'static str, errcode: i64, times: u32) -> impl FnOnce(&MockWechat) {
    move |mock| mock.inject(api, errcode, times)
}

/// `a` must send the phone to WeChat for a fresh authorization; alice consents
/// again: the new callback URL, not yet opened.
async fn consent_to_fresh_authorization(rig: &Rig, phone: &mut Browser, a: &Answer) -> String {
    assert_eq!(a.status, StatusCode::FOUND, "{}", a.text());
    let fresh = a.header("location").unwrap().to_string();
    rig.assert_authorize_link(&fresh);
    phone.consent(&fresh, "alice", "allow").await
}

#[tokio::test]
async fn an_invalid_or_expired_code_gets_one_fresh_authorization_then_succeeds() {
    for errcode in [40029, 42003] {
        let (rig, mut phone, a) =
            callback_when(base(), answering("access_token", errcode, 1)).await;
        assert_eq!(a.status, StatusCode::FOUND, "{errcode}");
        let callback = consent_to_fresh_authorization(&rig, &mut phone, &a).await;
        let a = phone.get(&callback).await;
        assert_eq!(a.status, StatusCode::FOUND, "{errcode}");
        assert_eq!(a.header("location"), Some("/orders/42?tab=items"));
        assert_eq!(rig.access_token_calls(), 2);
    }
}

#[tokio::test]
async fn a_code_refused_twice_is_an_error_page_never_a_loop() {
    for errcode in [40029, 42003] {
        let (rig, mut phone, a) =
            callback_when(base(), answering("access_token", errcode, 2)).await;
        let callback = consent_to_fresh_authorization(&rig, &mut phone, &a).await;
        let a = phone.get(&callback).await;
        assert_page(&a, StatusCode::BAD_REQUEST, "/_wxgate/start?rd=");
        assert!(phone.cookie("_wxgate").is_none());
        assert_eq!(rig.access_token_calls(), 2);
    }
}

#[tokio::test]
async fn a_used_code_with_a_session_goes_on_to_the_page() {
    let rig = rig(base()).await;
    let mut phone = rig.phone();
    // Tab 1 waits on WeChat's callback while tab 2 signs in.
    let tab1 = pending_callback(&rig, &mut phone, "alice").await;
    phone.sign_in(&rig, "alice").await;
    let session = phone.cookie("_wxgate");

    rig.mock().inject("access_token", 40163, 1);
    let a = phone.get(&tab1).await;
    assert_eq!(a.status, StatusCode::FOUND);
    assert_eq!(a.header("location"), Some("/orders/42?tab=items"));
    assert_eq!(phone.cookie("_wxgate"), session, "the session is kept");
    assert_eq!(phone.get("/x").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_used_code_without_a_session_gets_one_fresh_authorization() {
    let (rig, mut phone, a) = callback_when(base(), answering("access_token", 40163, 2)).await;
    let callback = consent_to_fresh_authorization(&rig, &mut phone, &a).await;
    // ...and only one: a second "used" answer is a page.
    assert_page(
        &phone.get(&callback).await,
        StatusCode::BAD_REQUEST,
        "Try again",
    );
}

#[tokio::test]
async fn a_busy_platform_is_retried_and_the_sign_in_completes() {
    let (rig, _, a) = callback_when(base(), answering("access_token", -1, 2)).await;
    assert_eq!(a.status, StatusCode::FOUND, "{}", a.text());
    assert_eq!(a.header("location"), Some("/orders/42?tab=items"));
    assert_eq!(rig.access_token_calls(), 3);
}

#[tokio::test]
async fn a_platform_that_stays_busy_gets_a_503_page() {
    let (rig, phone, a) = callback_when(base(), answering("access_token", -1, 10)).await;
    assert_page(&a, StatusCode::SERVICE_UNAVAILABLE, "WeChat is busy");
    assert!(a.header("retry-after").is_some());
    assert_eq!(rig.access_token_calls(), 3, "three attempts, then give up");
    assert!(phone.cookie("_wxgate").is_none());
}

#[tokio::test]
async fn a_spent_quota_gets_a_503_page_without_retries() {
    for errcode in [45009, 45011] {
        let (rig, _, a) = callback_when(base(), answering("access_token", errcode, 1)).await;
        assert_page(
            &a,
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is temporarily unavailable",
        );
        assert_eq!(rig.access_token_calls(), 1, "{errcode}");
    }
}

#[tokio::test]
async fn refused_credentials_are_a_misconfiguration_page() {
    for errcode in [40001, 40125, 40013] {
        let (_, phone, a) = callback_when(base(), answering("access_token", errcode, 1)).await;
        assert_page(&a, StatusCode::INTERNAL_SERVER_ERROR, "misconfigured");
        assert!(phone.cookie("_wxgate").is_none(), "{errcode}");
    }
}

/// The callback, opened as `callback_when` does, is answered with the 503 page
/// that says WeChat cannot be reached.
async fn assert_wechat_cannot_be_reached(
    tweak: impl FnOnce(&mut Config, &MockWechat),
    wechat: impl FnOnce(&MockWechat),
) {
    let (_, _, a) = callback_when(tweak, wechat).await;
    assert_page(
        &a,
        StatusCode::SERVICE_UNAVAILABLE,
        "WeChat cannot be reached",
    );
}

#[tokio::test]
async fn a_wechat_api_that_cannot_be_reached_gets_a_503_page() {
    let dead = crate::support::dead_address().await;
    assert_wechat_cannot_be_reached(
        move |c, _| c.wechat.api_base_url = format!("http://{dead}"),
        |_| {},
    )
    .await;
}

#[tokio::test]
async fn a_wechat_api_slower_than_the_timeout_gets_a_503_page() {
    assert_wechat_cannot_be_reached(
        |c, _| c.wechat.timeout = Dur(Duration::from_millis(200)),
        |mock| mock.set_latency("access_token", Duration::from_millis(2000)),
    )
    .await;
}

// ---------------------------------------------------------------- the state

#[tokio::test]
async fn a_repeated_callback_lands_on_the_page_without_redeeming_another_code() {
    let rig = rig(base()).await;
    let mut phone = rig.phone();
    let callback = phone
        .sign_in_at(
            &rig,
            "alice",
            "/orders/42?tab=items",
            "/orders/42?tab=items",
        )
        .await;
    assert_eq!(rig.access_token_calls(), 1);

    // Refresh / back button: the same callback URL again.
    let a = phone.get(&callback).await;
    assert_eq!(a.status, StatusCode::FOUND);
    assert_eq!(a.header("location"), Some("/orders/42?tab=items"));

    // Android WeChat's double callback: a second code for the same state.
    let state = query_param(callback.split_once('?').unwrap().1, "state").unwrap();
    let code = rig.mock().issue_code("alice", "snsapi_base", &rig.appid);
    let a = phone
        .get(&format!("/_wxgate/callback?code={code}&state={state}"))
        .await;
    assert_eq!(a.status, StatusCode::FOUND);
    assert_eq!(a.header("location"), Some("/orders/42?tab=items"));
    assert_eq!(rig.access_token_calls(), 1, "no second code redeemed");
    assert_eq!(phone.get("/orders/42").await.status, StatusCode::OK);
}

#[tokio::test]
async fn several_tabs_can_sign_in_at_once_in_any_order() {
    let rig = rig(base()).await;
    let mut phone = rig.phone();
    let mut callbacks = Vec::new();
    for tab in 1..=3 {
        let authorize = phone.begin(&rig, &format!("/tab/{tab}")).await;
        callbacks.push((tab, phone.consent(&authorize, "alice", "allow").await));
    }
    assert_eq!(phone.flow_cookies().len(), 3);
    for (tab, callback) in callbacks.iter().rev() {
        let a = phone.get(callback).await;
        assert_eq!(a.status, StatusCode::FOUND, "tab {tab}: {}", a.text());
        assert_eq!(a.header("location"), Some(format!("/tab/{tab}").as_str()));
    }
    assert_eq!(rig.access_token_calls(), 3);
    assert_eq!(phone.get("/tab/1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn flows_in_flight_are_bounded_and_the_oldest_is_dropped() {
    let rig = rig(base()).await;
    let mut phone = rig.phone();
    let mut authorizes = Vec::new();
    for tab in 1..=6 {
        authorizes.push(phone.begin(&rig, &format!("/tab/{tab}")).await);
        assert!(
            phone.flow_cookies().len() <= 4,
            "{:?}",
            phone.flow_cookies()
        );
    }
    assert_eq!(phone.flow_cookies().len(), 4);

    let oldest = phone.consent(&authorizes[0], "alice", "allow").await;
    assert_page(
        &phone.get(&oldest).await,
        StatusCode::BAD_REQUEST,
        "no longer valid",
    );
    assert_eq!(rig.access_token_calls(), 0);
    let newest = phone.consent(&authorizes[5], "alice", "allow").await;
    let a = phone.get(&newest).await;
    assert_eq!(a.header("location"), Some("/tab/6"));
}

#[tokio::test]
async fn a_callback_whose_state_this_browser_did_not_start_is_refused() {
    let rig = rig(base()).await;
    let mut phone = rig.phone();
    let callback = pending_callback(&rig, &mut phone, "alice").await;
    let (_, query) = callback.split_once('?').unwrap();
    let code = query_param(query, "code").unwrap();
    let state = query_param(query, "state").unwrap();

    // Another browser (a shared link, a login CSRF).
    let mut stranger = rig.phone();
    assert_page(
        &stranger.get(&callback).await,
        StatusCode::BAD_REQUEST,
        "no longer valid",
    );
    // A tampered state.
    let mut tampered = state.clone();
    let last = if tampered.ends_with('A') { "B" } else { "A" };
    tampered.replace_range(tampered.len() - 1.., last);
    assert_page(
        &phone
            .get(&format!("/_wxgate/callback?code={code}&state={tampered}"))
            .await,
        StatusCode::BAD_REQUEST,
        "no longer valid",
    );
    // No state, or one WeChat would never send.
    for q in [format!("code={code}"), format!("code={code}&state=a-b")] {
        assert_page(
            &phone.get(&format!("/_wxgate/callback?{q}")).await,
            StatusCode::BAD_REQUEST,
            "Invalid request",
        );
    }
    // A flow cookie whose sealed value was tampered with.
    let name = format!("_wxgate_st_{state}");
    let sealed = phone.cookie(&name).unwrap();
    let mut forged = sealed.clone().into_bytes();
    forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
    phone.set_cookie(&name, std::str::from_utf8(&forged).unwrap());
    assert_page(
        &phone.get(&callback).await,
        StatusCode::BAD_REQUEST,
        "no longer valid",
    );
    assert_eq!(rig.access_token_calls(), 0, "the code was never redeemed");

    // The genuine browser still completes.
    phone.set_cookie(&name, &sealed);
    assert_eq!(phone.get(&callback).await.status, StatusCode::FOUND);
}

#[tokio::test]
async fn a_signed_in_browser_on_a_forgotten_callback_goes_home_without_redeeming_the_code() {
    let rig = rig(base()).await;
    let mut phone = rig.phone();
    phone.sign_in(&rig, "alice").await;
    let calls = rig.access_token_calls();
    // Back to a callback whose flow this browser no longer remembers (its state cookie
    // expired), or that someone planted: not an error page, not a new sign-in.
    let a = phone
        .get("/_wxgate/callback?code=planted0code&state=ForgottenState0001")
        .await;
    assert_eq!(a.status, StatusCode::FOUND);
    assert_eq!(a.header("location"), Some("/"));
    assert_eq!(
        rig.access_token_calls(),
        calls,
        "the code was never redeemed"
    );
    // Still signed in as alice, not as whoever the planted code belonged to.
    let echo = phone.get("/who").await;
    assert_eq!(echo.status, StatusCode::OK);
    let claims = rig.verify(&identity_of(&echo.json())).await;
    assert_eq!(
        claims["openid"],
        rig.mock().openid("alice", &rig.mock().config().appid)
    );
}

// ---------------------------------------------------------------- refusals

#[tokio::test]
async fn a_snapshot_page_user_is_asked_to_open_the_full_page_and_not_signed_in() {
    let rig = rig(userinfo_scope()).await;
    let mut phone = rig.phone();
    let callback = pending_callback(&rig, &mut phone, "snapshot").await;
    let a = phone.get(&callback).await;
    assert_page(&a, StatusCode::FORBIDDEN, "Please open the full page");
    assert!(phone.cookie("_wxgate").is_none());
    // Still signed out: the page is not forwarded with the virtual openid.
    let again = phone.get("/orders/42?tab=items").await;
    assert_eq!(again.status, StatusCode::FOUND);
    rig.assert_authorize_link(again.header("location").unwrap());
}

#[tokio::test]
async fn refused_consent_shows_a_page_with_a_retry_link() {
    let rig = rig(userinfo_scope()).await;
    let mut phone = rig.phone();
    let authorize = phone.begin(&rig, "/orders/42?tab=items").await;
    let callback = phone.consent(&authorize, "alice", "refuse").await;
    assert!(!callback.contains("code="));
    let a = phone.get(&callback).await;
    assert_page(
        &a,
        StatusCode::FORBIDDEN,
        "href=\"/_wxgate/start?rd=%2Forders%2F42%3Ftab%3Ditems\"",
    );
    assert!(phone.cookie("_wxgate").is_none());
    assert_eq!(rig.access_token_calls(), 0);

    // "Try again" starts over and returns to the same page.
    let retry = phone
        .get("/_wxgate/start?rd=%2Forders%2F42%3Ftab%3Ditems")
        .await;
    assert_eq!(retry.status, StatusCode::FOUND);
    let callback = phone
        .consent(retry.header("location").unwrap(), "alice", "allow")
        .await;
    let a = phone.get(&callback).await;
    assert_eq!(a.header("location"), Some("/orders/42?tab=items"));
}

#[tokio::test]
async fn users_outside_allowed_openids_get_a_403_page() {
    let rig =
        rig(|c, mock| c.access.allowed_openids = vec![mock.openid("alice", &mock.config().appid)])
            .await;
    let mut bob = rig.phone();
    let callback = pending_callback(&rig, &mut bob, "bob").await;
    assert_page(
        &bob.get(&callback).await,
        StatusCode::FORBIDDEN,
        "Access denied",
    );
    assert!(bob.cookie("_wxgate").is_none());

    let mut alice = rig.phone();
    alice.sign_in(&rig, "alice").await;
    assert_eq!(alice.get("/orders/1").await.status, StatusCode::OK);
}

// ---------------------------------------------------------------- sessions

#[tokio::test]
async fn signing_out_ends_the_session_in_the_store_not_only_in_the_browser() {
    for method in [Method::GET, Method::POST] {
        let rig = rig(|c, _| c.access.api_paths = vec!["/api/*".into()]).await;
        let mut phone = rig.phone();
        let stolen = phone.sign_in(&rig, "alice").await;

        let out = phone
            .request(method.clone(), "/_wxgate/sign_out?rd=/bye", &[], None)
            .await;
        assert_eq!(out.status, StatusCode::FOUND, "{method}");
        assert_eq!(out.header("location"), Some("/bye"));
        assert!(phone.cookie("_wxgate").is_none(), "the browser forgot it");

        // Someone who kept a copy of the cookie gets nothing.
        let mut replay = browser_with_session(&rig, &stolen);
        let a = replay.get("/orders/42").await;
        assert_eq!(a.status, StatusCode::FOUND);
        rig.assert_authorize_link(a.header("location").unwrap());
        replay.set_cookie("_wxgate", &stolen);
        let api = replay.get("/api/orders").await;
        assert_eq!(api.status, StatusCode::UNAUTHORIZED);
        assert!(api.json()["login_url"].is_string());
    }
}

#[tokio::test]
async fn sign_out_never_redirects_off_site() {
    let rig = rig(base()).await;
    let mut phone = rig.phone();
    phone.sign_in(&rig, "alice").await;
    for rd in [
        "//evil.example/",
        "https://evil.example/",
        "/%5Cevil.example",
        "%2F%2Fevil.example",
        "/\\evil.example",
    ] {
        let a = phone
            .get(&format!(
                "/_wxgate/sign_out?rd={}",
                utf8_percent_encode(rd, NON_ALPHANUMERIC)
            ))
            .await;
        assert!(
            a.header("location")
                .is_none_or(|l| l.starts_with('/') && !l.starts_with("//") && !l.contains('\\')),
            "{rd} → {:?}",
            a.header("location")
        );
        assert_eq!(a.status, StatusCode::OK, "{rd}");
        assert!(a.text().contains("You are signed out"));
    }
}

#[tokio::test]
async fn every_sign_in_gets_a_new_session_id_and_ends_the_previous_one() {
    let rig = rig(base()).await;
    let mut phone = rig.phone();
    // Two tabs started signed out; each completes a sign-in in the same browser.
    let first = pending_callback(&rig, &mut phone, "alice").await;
    let second = pending_callback(&rig, &mut phone, "alice").await;
    assert_eq!(phone.get(&first).await.status, StatusCode::FOUND);
    let cookie1 = phone.cookie("_wxgate").unwrap();
    let sid1 = verify(&rig, &identity_of(&phone.get("/p").await.json())).await["sid"].clone();

    assert_eq!(phone.get(&second).await.status, StatusCode::FOUND);
    let cookie2 = phone.cookie("_wxgate").unwrap();
    let sid2 = verify(&rig, &identity_of(&phone.get("/p").await.json())).await["sid"].clone();
    assert_ne!(cookie1, cookie2);
    assert_ne!(sid1, sid2, "the session id rotates at sign-in");

    let mut old = browser_with_session(&rig, &cookie1);
    let a = old.get("/p").await;
    assert_eq!(
        a.status,
        StatusCode::FOUND,
        "the first cookie no longer works"
    );
}

#[tokio::test]
async fn the_cookie_store_signs_in_and_honours_sign_out() {
    let rig = rig(|c, _| c.session.store = StoreKind::Cookie).await;
    let mut phone = rig.phone();
    let stolen = phone.sign_in(&rig, "alice").await;
    let echo = phone.get("/orders/42").await.json();
    let claims = verify(&rig, &identity_of(&echo)).await;
    assert_eq!(claims["sub"], rig.openid("alice").as_str());

    let out = phone.get("/_wxgate/sign_out").await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(out.text().contains("Your session has ended"));
    let mut replay = browser_with_session(&rig, &stolen);
    let a = replay.get("/orders/42").await;
    assert_eq!(
        a.status,
        StatusCode::FOUND,
        "a signed-out cookie is refused"
    );
}

#[tokio::test]
async fn an_old_profile_is_refreshed_with_the_refresh_token() {
    let rig = rig(|c, _| {
        c.wechat.scope = Scope::UserInfo;
        c.session.refresh_interval = Dur(Duration::from_secs(2));
    })
    .await;
    let mut phone = rig.phone();
    phone.sign_in(&rig, "alice").await;
    assert_eq!(phone.get("/p").await.status, StatusCode::OK);
    assert_eq!(rig.mock().calls("refresh_token"), 0, "the profile is fresh");

    // The refresh interval is wall-clock time: there is no event to wait for.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let a = phone.get("/p").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(rig.mock().calls("refresh_token"), 1);
    let claims = verify(&rig, &identity_of(&a.json())).await;
    assert_eq!(claims["nickname"], "Alice 🌸");
    assert_eq!(phone.get("/p").await.status, StatusCode::OK);
    assert_eq!(rig.mock().calls("refresh_token"), 1, "once per interval");
}

#[tokio::test]
async fn a_revoked_wechat_grant_ends_the_session_at_the_next_refresh() {
    let rig = rig(|c, _| {
        c.wechat.scope = Scope::UserInfo;
        c.session.refresh_interval = Dur(Duration::from_secs(1));
    })
    .await;
    let mut phone = rig.phone();
    let cookie = phone.sign_in(&rig, "alice").await;
    rig.mock().revoke_refresh_tokens("alice");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let a = phone.get("/p").await;
    assert_eq!(a.status, StatusCode::FOUND, "{}", a.text());
    rig.assert_authorize_link(a.header("location").unwrap());
    assert_eq!(rig.mock().calls("refresh_token"), 1);
    // The session is gone from the store, not only skipped once.
    let mut replay = browser_with_session(&rig, &cookie);
    assert_eq!(replay.get("/p").await.status, StatusCode::FOUND);
}

// ---------------------------------------------------------------- what reaches the app

#[tokio::test]
async fn spoofed_identity_headers_and_wxgate_cookies_never_reach_the_app() {
    let rig = rig(|c, _| c.access.public_paths = vec!["/static/*".into()]).await;
    let mut signed_in = rig.phone();
    signed_in.sign_in(&rig, "alice").await;
    let mut signed_out = rig.phone();
    signed_out.set_cookie("_wxgate_st_abc", "x");
    signed_in.set_cookie("app_cookie", "kept");
    signed_out.set_cookie("app_cookie", "kept");

    let spoofs = [
        ("X-Wxgate-Jwt-Assertion", "forged"),
        ("x-wxgate-jwt-assertion", "forged2"),
        ("X_Wxgate_Jwt_Assertion", "forged3"),
        ("x_wxgate_jwt-assertion", "forged4"),
        ("x-wxgate-openid", "oAdmin"),
        ("X_WXGATE_NICKNAME", "admin"),
    ];
    for (who, path) in [
        ("signed in", "/orders/1"),
        ("signed in", "/static/a.js"),
        ("signed out", "/static/a.js"),
    ] {
        let browser = if who == "signed in" {
            &mut signed_in
        } else {
            &mut signed_out
        };
        let a = browser.request(Method::GET, path, &spoofs, None).await;
        assert_eq!(a.status, StatusCode::OK, "{who} {path}");
        let echo = a.json();
        let names: Vec<String> = echo["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                p[0].as_str()
                    .unwrap()
                    .to_ascii_lowercase()
                    .replace('_', "-")
            })
            .collect();
        let wx: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("x-wxgate-"))
            .collect();
        if who == "signed in" {
            // A public path too: wxgate's own header, never the client's.
            assert_eq!(wx, ["x-wxgate-jwt-assertion"], "{path}: only wxgate's own");
            let claims = verify(&rig, &identity_of(&echo)).await;
            assert_eq!(claims["sub"], rig.openid("alice").as_str());
        } else {
            assert!(wx.is_empty(), "{path}: {wx:?}");
        }
        let cookies = seen(&echo, "cookie").join("; ");
        assert!(cookies.contains("app_cookie=kept"), "{cookies}");
        assert!(!cookies.contains("_wxgate"), "{cookies}");
    }
}

#[tokio::test]
async fn a_public_page_greets_a_signed_in_user_and_serves_everyone_else_anonymously() {
    let rig = rig(|c, mock| {
        c.access.public_paths = vec!["/".into(), "/static/*".into()];
        c.access.allowed_openids = vec![mock.openid("alice", &mock.config().appid)];
    })
    .await;

    // Signed out: served, no sign-in, no identity.
    let mut visitor = rig.phone();
    let home = visitor.get("/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.text());
    assert!(seen(&home.json(), "x-wxgate-jwt-assertion").is_empty());

    // Signed in: the same public page carries who it is.
    let mut alice = rig.phone();
    alice.sign_in(&rig, "alice").await;
    let home = alice.get("/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.text());
    let claims = verify(&rig, &identity_of(&home.json())).await;
    assert_eq!(claims["sub"], rig.openid("alice").as_str());

    // A cookie that opens no session (ended, forged) is no reason to refuse a public page.
    let mut stale = browser_with_session(&rig, "not-a-sealed-session");
    let page = stale.get("/static/app.css").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(seen(&page.json(), "x-wxgate-jwt-assertion").is_empty());
}

/// Method, path and headers of a request an API client makes.
type ApiCase = (
    Method,
    &'static str,
    &'static [(&'static str, &'static str)],
);

#[tokio::test]
async fn api_requests_without_a_session_get_401_json_with_a_login_url() {
    let rig = rig(|c, _| {
        c.access.api_paths = vec!["/api/*".into()];
        c.access.public_paths = vec!["/static/*".into(), "/healthz".into()];
    })
    .await;
    let mut phone = rig.phone();
    let cases: [ApiCase; 4] = [
        (Method::GET, "/api/orders?page=2", &[]),
        (
            Method::GET,
            "/orders",
            &[("x-requested-with", "XMLHttpRequest")],
        ),
        (Method::GET, "/orders", &[("accept", "application/json")]),
        (Method::POST, "/orders", &[]),
    ];
    for (method, path, headers) in cases {
        let a = phone.request(method.clone(), path, headers, None).await;
        assert_eq!(
            a.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} {headers:?}"
        );
        assert!(a.header("location").is_none());
        assert!(a
            .header(CONTENT_TYPE.as_str())
            .is_some_and(|c| c.starts_with("application/json")));
        let login = a.json()["login_url"].as_str().unwrap().to_string();
        let rd = query_param(login.split_once('?').unwrap().1, "rd").unwrap();
        assert!(login.starts_with("/_wxgate/start?rd="), "{login}");
        assert_eq!(rd, path, "{login}");
    }
    // A page navigation that accepts HTML goes to WeChat.
    let nav = phone
        .request(
            Method::GET,
            "/orders",
            &[(ACCEPT.as_str(), "text/html,*/*")],
            None,
        )
        .await;
    assert_eq!(nav.status, StatusCode::FOUND);

    // Public paths need no session...
    for path in ["/static/app.js", "/healthz", "/static/a/../b.css"] {
        assert_eq!(phone.get(path).await.status, StatusCode::OK, "{path}");
    }
    // ...but climbing out of them does not make a path public.
    for path in [
        "/static/../admin",
        "/static/%2e%2e/admin",
        "/static/./../admin",
    ] {
        let a = phone.get(path).await;
        assert_eq!(a.status, StatusCode::FOUND, "{path} must not be public");
        rig.assert_authorize_link(a.header(LOCATION.as_str()).unwrap());
    }
}

#[tokio::test]
async fn plain_headers_carry_the_openid_and_a_percent_encoded_nickname() {
    let rig = rig(|c, _| {
        c.wechat.scope = Scope::UserInfo;
        c.identity.plain_headers = true;
    })
    .await;
    let mut phone = rig.phone();
    phone.sign_in(&rig, "alice").await;
    // A spoofed copy is replaced, not added to.
    let echo = phone
        .request(Method::GET, "/p", &[("x-wxgate-openid", "oAdmin")], None)
        .await
        .json();
    assert_eq!(seen(&echo, "x-wxgate-openid"), [rig.openid("alice")]);
    assert_eq!(
        seen(&echo, "x-wxgate-unionid"),
        [rig.mock().unionid("alice").unwrap()]
    );
    let nick = seen(&echo, "x-wxgate-nickname");
    assert_eq!(nick.len(), 1);
    assert!(nick[0].is_ascii(), "{nick:?}");
    assert_eq!(
        percent_decode_str(&nick[0]).decode_utf8().unwrap(),
        "Alice 🌸"
    );
}

// ---------------------------------------------------------------- forward-auth

async fn forward_auth(browser: &mut Browser, uri: &str, json: bool) -> Answer {
    let mut headers = vec![
        ("x-forwarded-uri", uri),
        ("x-forwarded-host", "app.example"),
    ];
    if json {
        headers.push(("accept", "application/json"));
    }
    browser
        .request(Method::GET, "/_wxgate/auth", &headers, None)
        .await
}

#[tokio::test]
async fn forward_auth_answers_an_ingress_for_signed_in_and_signed_out_users() {
    let rig = rig(|c, _| c.server.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    let mut phone = rig.phone();
    phone.sign_in(&rig, "alice").await;
    let a = forward_auth(&mut phone, "/orders/7?x=1", false).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(
        a.header("x-auth-request-openid"),
        Some(rig.openid("alice").as_str())
    );
    let claims = verify(&rig, a.header("x-wxgate-jwt-assertion").unwrap()).await;
    assert_eq!(claims["sub"], rig.openid("alice").as_str());

    let mut stranger = rig.phone();
    let a = forward_auth(&mut stranger, "/orders/7?x=1", true).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.json()["login_url"],
        "/_wxgate/start?rd=%2Forders%2F7%3Fx%3D1"
    );
    let page = forward_auth(&mut stranger, "/orders/7", false).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.text().contains("/_wxgate/start?rd=%2Forders%2F7"));
}

#[tokio::test]
async fn forward_auth_ignores_the_original_url_from_an_untrusted_peer() {
    let rig = rig(base()).await;
    let mut stranger = rig.phone();
    let a = forward_auth(&mut stranger, "/orders/7", true).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json()["login_url"], "/_wxgate/start?rd=%2F");
}

// ---------------------------------------------------------------- the domain check

#[tokio::test]
async fn wechats_domain_check_file_is_served_without_sign_in() {
    let rig = rig(|c, _| {
        c.wechat
            .verify_files
            .insert("MP_verify_abc123XYZ.txt".into(), "abc123XYZ".into());
    })
    .await;
    let mut phone = rig.phone();
    let a = phone.get("/MP_verify_abc123XYZ.txt").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), "abc123XYZ");
    // Other names are ordinary protected paths.
    assert_eq!(
        phone.get("/MP_verify_other.txt").await.status,
        StatusCode::FOUND
    );
}

#[tokio::test]
async fn a_refreshed_profile_is_kept_in_the_cookie_store_too() {
    let rig = rig(|c, _| {
        c.session.store = StoreKind::Cookie;
        c.wechat.scope = Scope::UserInfo;
        c.session.refresh_interval = Dur(Duration::from_secs(2));
    })
    .await;
    let mut phone = rig.phone();
    phone.sign_in(&rig, "alice").await;
    // The refresh interval is wall-clock time: there is no event to wait for.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for _ in 0..3 {
        let a = phone.get("/p").await;
        assert_eq!(a.status, StatusCode::OK);
        let claims = verify(&rig, &identity_of(&a.json())).await;
        assert_eq!(claims["nickname"], "Alice 🌸");
    }
    // The session lives in the cookie: the refreshed one must be handed back, or
    // every request would ask WeChat again.
    assert_eq!(rig.mock().calls("refresh_token"), 1, "once per interval");
}

#[tokio::test]
async fn a_profile_wechat_cannot_give_gets_a_clear_page_and_no_session() {
    let (rig, phone, a) = callback_when(userinfo_scope(), answering("userinfo", -1, 10)).await;
    assert_page(&a, StatusCode::SERVICE_UNAVAILABLE, "WeChat is busy");
    assert_eq!(
        rig.mock().calls("userinfo"),
        3,
        "retried like any busy call"
    );
    assert!(phone.cookie("_wxgate").is_none());
}
