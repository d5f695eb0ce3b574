//! The account's own services, end to end against the mock WeChat: the apps' backends
//! get the account's one access_token from the admin listener (and report a refused
//! one), pages get JS-SDK signatures, the identity says whether the user follows the
//! account — and when WeChat will not hand out a token, the backends get a clear 503
//! while sign-in goes on. Then three replicas on one real Redis, restarted and
//! reloaded under load, fetching only what the token's expiry schedule needs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::wechat::{identity_of, picking_mock, Platform};
use crate::support::{proxy, Gate};
use http::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use wxgate::config::file::{self, AccountConfig};
use wxgate::config::{Config, Dur, StoreKind, TokenMode};
use wxgate::mock::{Broken, MockConfig, MockWechat};

/// The bearer the apps' backends present.
const BEARER: &str = "backend-bearer-0123456789abcdef0123456789";

fn account(mode: TokenMode) -> AccountConfig {
    AccountConfig {
        token: mode,
        token_endpoint_secret: BEARER.into(),
        ..AccountConfig::default()
    }
}

/// A wxgate with `[account]` in front of the platform.
async fn gate(platform: &Platform, account: AccountConfig) -> Gate {
    proxy()
        .wechat(platform)
        .tweak(move |c| c.account = Some(account))
        .run()
        .await
}

/// What an app's backend does: asks wxgate for the token, uses it, and reports it
/// when WeChat refuses it.
struct Backend {
    http: reqwest::Client,
    admin: String,
}

impl Backend {
    fn of(admin: SocketAddr) -> Backend {
        Backend {
            http: reqwest::Client::new(),
            admin: format!("http://{admin}"),
        }
    }

    /// `GET /account/token` with `bearer`: status and JSON.
    async fn token_with(
        &self,
        bearer: Option<&str>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.get(format!("{}/account/token", self.admin));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.expect("admin answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (status, json, headers)
    }

    /// The token, which must be handed out.
    async fn token(&self) -> String {
        let (status, json, _) = self.token_with(Some(BEARER)).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// `POST /account/token/invalidate` for `refused`: the replacement.
    async fn report(&self, refused: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}/account/token/invalidate", self.admin))
            .bearer_auth(BEARER)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "access_token": refused }).to_string())
            .send()
            .await
            .expect("admin answers");
        let status = resp.status();
        (
            status,
            serde_json::from_str(&resp.text().await.unwrap()).unwrap(),
        )
    }
}

/// The account's credentials as the mock knows them.
fn app(mock: &MockWechat) -> wxgate::wechat::AppCredentials {
    wxgate::wechat::AppCredentials {
        appid: mock.config().appid.clone(),
        secret: mock.config().secret.clone(),
    }
}

fn wechat_client(platform: &Platform) -> wxgate::wechat::WechatClient {
    wxgate::wechat::WechatClient::new(
        &format!("http://{}", platform.mock_addr),
        Duration::from_secs(5),
    )
    .unwrap()
}

// ---------------------------------------------------------------- the token endpoint

#[tokio::test]
async fn a_backend_gets_the_accounts_one_token_from_the_admin_listener_only() {
    let platform = Platform::start(picking_mock()).await;
    let gate = gate(&platform, account(TokenMode::Stable)).await;
    let backend = Backend::of(gate.admin);

    let (status, body, headers) = backend.token_with(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, _) = backend.token_with(Some("not-the-secret")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body, headers) = backend.token_with(Some(BEARER)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let token = body["access_token"].as_str().unwrap();
    let expires_in = body["expires_in"].as_u64().unwrap();
    assert!((7100..=7200).contains(&expires_in), "{body}");
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["access_token", "expires_in"]
    );
    assert_eq!(
        platform.mock.token_status(token),
        Ok(platform.mock.config().appid.clone()),
        "WeChat accepts it"
    );
    for _ in 0..5 {
        assert_eq!(backend.token().await, token, "one token, held");
    }
    assert_eq!(platform.mock.calls("stable_token"), 1);
    assert_eq!(
        platform.mock.calls("token"),
        0,
        "stable mode never fetches a classic token"
    );

    // The public listener has no such endpoint: the path is the app's, behind sign-in.
    let public = reqwest::Client::new()
        .get(gate.url("/account/token"))
        .bearer_auth(BEARER)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), StatusCode::UNAUTHORIZED);
    assert!(!public.text().await.unwrap().contains(token));
}

#[tokio::test]
async fn without_a_bearer_secret_the_token_is_not_handed_out() {
    let platform = Platform::start(picking_mock()).await;
    let gate = gate(
        &platform,
        AccountConfig {
            token_endpoint_secret: String::new(),
            ..account(TokenMode::Stable)
        },
    )
    .await;
    let (status, body, _) = Backend::of(gate.admin).token_with(Some(BEARER)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "token_endpoint_off");
    assert_eq!(platform.mock.calls("stable_token"), 0);
}

#[tokio::test]
async fn reports_of_a_refused_stable_token_make_one_renewal_and_no_needless_force() {
    let platform = Platform::start(picking_mock()).await;
    let gate = gate(&platform, account(TokenMode::Stable)).await;
    let backend = Backend::of(gate.admin);
    let first = backend.token().await;

    // Someone with the secret forces a new stable token: wxgate's is refused from now on.
    let forced = wechat_client(&platform)
        .stable_token(&app(&platform.mock), true)
        .await
        .unwrap();
    assert_eq!(platform.mock.token_status(&first), Err(40001));

    let calls = platform.mock.calls("stable_token");
    let reports = futures_util::future::join_all((0..10).map(|_| backend.report(&first))).await;
    for (status, body) in &reports {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(
            body["access_token"],
            forced.access_token.as_str(),
            "WeChat's current one"
        );
    }
    assert_eq!(
        platform.mock.calls("stable_token"),
        calls + 1,
        "ten reports, one ordinary fetch"
    );
    let forced_by_wxgate = platform
        .mock
        .token_issues()
        .iter()
        .filter(|i| i.forced)
        .count();
    assert_eq!(
        forced_by_wxgate, 1,
        "only the outside force: WeChat already had a new one"
    );
    assert_eq!(backend.token().await, forced.access_token);

    // A report about a token that was replaced long ago changes nothing.
    let (status, body) = backend.report(&first).await;
    assert_eq!(
        (status, body["access_token"].as_str()),
        (StatusCode::OK, Some(forced.access_token.as_str()))
    );
    assert_eq!(platform.mock.calls("stable_token"), calls + 1);
}

#[tokio::test]
async fn a_stable_token_refused_while_wechat_still_hands_it_out_is_forced_once() {
    let platform = Platform::start(picking_mock()).await;
    let gate = gate(&platform, account(TokenMode::Stable)).await;
    let backend = Backend::of(gate.admin);
    let first = backend.token().await;
    let reports = futures_util::future::join_all((0..5).map(|_| backend.report(&first))).await;
    let replacement = reports[0].1["access_token"].as_str().unwrap().to_string();
    assert_ne!(replacement, first);
    for (status, body) in &reports {
        assert_eq!(
            (*status, body["access_token"].as_str()),
            (StatusCode::OK, Some(replacement.as_str()))
        );
    }
    let issues = platform.mock.token_issues();
    assert_eq!(issues.iter().filter(|i| i.forced).count(), 1, "{issues:?}");
    assert_eq!(platform.mock.token_status(&first), Err(40001));
    assert!(platform.mock.token_status(&replacement).is_ok());

    // Refused again at once: WeChat would not force again within 30 s; wxgate does not
    // ask, and answers with what there is.
    let (status, body) = backend.report(&replacement).await;
    assert_eq!(
        (status, body["access_token"].as_str()),
        (StatusCode::OK, Some(replacement.as_str()))
    );
    assert_eq!(
        platform
            .mock
            .token_issues()
            .iter()
            .filter(|i| i.forced)
            .count(),
        1
    );
}

#[tokio::test]
async fn a_refused_classic_token_is_replaced_by_one_new_fetch() {
    let platform = Platform::start(picking_mock()).await;
    let gate = gate(&platform, account(TokenMode::Classic)).await;
    let backend = Backend::of(gate.admin);
    let first = backend.token().await;
    assert_eq!(platform.mock.calls("token"), 1);
    let reports = futures_util::future::join_all((0..8).map(|_| backend.report(&first))).await;
    let second = reports[0].1["access_token"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert!(reports
        .iter()
        .all(|(s, b)| *s == StatusCode::OK && b["access_token"] == second.as_str()));
    assert_eq!(platform.mock.calls("token"), 2, "eight reports, one fetch");
    assert_eq!(platform.mock.calls("stable_token"), 0);
    // WeChat's five minutes of overlap: both work for now.
    assert!(platform.mock.token_status(&first).is_ok());
    assert!(platform.mock.token_status(&second).is_ok());
}

#[tokio::test]
async fn bad_invalidation_requests_are_told_what_to_send() {
    let platform = Platform::start(picking_mock()).await;
    let gate = gate(&platform, account(TokenMode::Stable)).await;
    let http = reqwest::Client::new();
    let url = gate.admin_url("/account/token/invalidate");
    let cases = [
        (Some(BEARER), "{}", StatusCode::BAD_REQUEST),
        (Some(BEARER), "access_token=", StatusCode::BAD_REQUEST),
        (None, r#"{"access_token":"x"}"#, StatusCode::UNAUTHORIZED),
    ];
    for (bearer, body, want) in cases {
        let mut req = http.post(&url).body(body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), want, "{body}");
        let json: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert!(json["detail"].as_str().is_some(), "{json}");
    }
    let get = http.get(&url).bearer_auth(BEARER).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::BAD_REQUEST);
    assert_eq!(platform.mock.calls("stable_token"), 0);
}

// ---------------------------------------------------------------- WeChat refusing

#[tokio::test]
async fn when_wechat_will_not_hand_out_a_token_backends_get_503_with_errcode_and_rid_and_sign_in_goes_on(
) {
    let platform = Platform::start(picking_mock()).await;
    // A one-second renewal window: after a failure, nobody asks WeChat again for a
    // tenth of it (100 ms) instead of a second.
    let gate = gate(
        &platform,
        AccountConfig {
            refresh_ahead: Dur(Duration::from_secs(1)),
            ..account(TokenMode::Stable)
        },
    )
    .await;
    let backend = Backend::of(gate.admin);
    let pause = Duration::from_millis(150);

    // Quota reached, then WeChat down, then its HTML error page.
    let mock = &platform.mock;
    type Breaker<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Breaker, Option<i64>)> = vec![
        (
            "quota",
            Box::new(|| mock.inject("stable_token", 45009, 1)),
            Some(45009),
        ),
        (
            "down",
            Box::new(|| mock.set_broken("stable_token", Broken::CloseMidBody)),
            None,
        ),
        (
            "html",
            Box::new(|| mock.set_broken("stable_token", Broken::Html)),
            None,
        ),
    ];
    for (name, break_it, errcode) in cases {
        break_it();
        let calls = mock.calls("stable_token");
        let (status, body, headers) = backend.token_with(Some(BEARER)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{name}: {body}");
        assert_eq!(body["errcode"].as_i64(), errcode, "{name}: {body}");
        assert_eq!(body["rid"].is_string(), errcode.is_some(), "{name}: {body}");
        assert!(headers.contains_key("retry-after"), "{name}");
        // Asked again at once: the same answer, without asking WeChat again.
        let (again, body_again, _) = backend.token_with(Some(BEARER)).await;
        assert_eq!(
            (again, &body_again["errcode"]),
            (status, &body["errcode"]),
            "{name}"
        );
        assert_eq!(mock.calls("stable_token"), calls + 1, "{name}: one fetch");
        mock.clear(Some("stable_token"));
        // The pause after a failure is time itself passing; nothing announces its end.
        tokio::time::sleep(pause).await;
    }

    // Meanwhile a user signs in and reaches the app as usual.
    mock.inject("stable_token", 45009, 1000);
    let mut phone = gate.phone();
    phone.sign_in(&gate, "alice").await;
    let page = phone.get("/orders/42").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let claims = gate.verify(&identity_of(&page.json())).await;
    assert_eq!(claims["openid"], platform.openid("alice").as_str());
    mock.clear(None);
    tokio::time::sleep(pause).await;
    assert_eq!(
        backend.token_with(Some(BEARER)).await.0,
        StatusCode::OK,
        "back once WeChat is"
    );
}

#[tokio::test]
async fn a_server_off_the_ip_whitelist_is_told_so_with_wechats_errcode_and_rid() {
    let platform = Platform::start(MockConfig {
        ip_whitelist: vec!["10.0.0.1".parse().unwrap()],
        ..picking_mock()
    })
    .await;
    let gate = gate(&platform, account(TokenMode::Classic)).await;
    let (status, body, _) = Backend::of(gate.admin).token_with(Some(BEARER)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["errcode"], 40164);
    assert!(
        body["rid"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    assert!(
        body["wechat_error"].as_str().unwrap().contains("127.0.0.1"),
        "the operator sees which address to add: {body}"
    );
    // The JS-SDK endpoint, on the public listener, says why without WeChat's message.
    let page =
        crate::support::get(&gate.url("/_wxgate/jssdk/config?url=http%3A%2F%2F127.0.0.1%2F")).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    let json = page.json();
    assert_eq!(json["errcode"], 40164);
    assert!(json.get("wechat_error").is_none(), "{json}");
}

// ---------------------------------------------------------------- JS-SDK

/// `/_wxgate/jssdk/config` for `page`.
async fn jssdk_config(gate: &Gate, page: &str) -> crate::support::Answer {
    let url: String =
        percent_encoding::utf8_percent_encode(page, percent_encoding::NON_ALPHANUMERIC).to_string();
    crate::support::get(&gate.url(&format!("/_wxgate/jssdk/config?url={url}"))).await
}

#[tokio::test]
async fn pages_on_the_allowed_hosts_get_signatures_wechat_accepts() {
    let platform = Platform::start(picking_mock()).await;
    let gate = gate(&platform, account(TokenMode::Stable)).await;
    let page = format!("{}/shop/item?id=7&from=share", gate.origin);

    let with_fragment = format!("{page}#/detail");
    let answers =
        futures_util::future::join_all((0..20).map(|_| jssdk_config(&gate, &with_fragment))).await;
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let c = a.json();
        let keys: BTreeSet<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["appId", "nonceStr", "signature", "timestamp"])
        );
        // Signed for the URL without its fragment, as WeChat's client checks it.
        let checked = platform.mock.check_jssdk_config(
            c["appId"].as_str().unwrap(),
            &c["timestamp"].to_string(),
            c["nonceStr"].as_str().unwrap(),
            c["signature"].as_str().unwrap(),
            &page,
        );
        assert_eq!(checked, Ok(()), "{c}");
    }
    assert_eq!(
        platform.mock.calls("getticket"),
        1,
        "twenty pages, one ticket"
    );
    assert_eq!(platform.mock.calls("stable_token"), 1);

    let cases = [
        (
            "https://evil.example/phish",
            StatusCode::FORBIDDEN,
            "url_not_allowed",
        ),
        (
            "javascript:alert(1)",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        ("", StatusCode::BAD_REQUEST, "bad_request"),
    ];
    for (url, status, code) in cases {
        let a = jssdk_config(&gate, url).await;
        assert_eq!(a.status, status, "{url}: {}", a.text());
        assert_eq!(a.json()["error"], code, "{url}");
    }

    let script = crate::support::get(&gate.url("/_wxgate/jssdk.js")).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script
        .header("content-type")
        .unwrap()
        .starts_with("application/javascript"));
    assert!(script.text().contains("wx.config"));
}

#[tokio::test]
async fn js_sdk_hosts_can_be_listed_and_the_urls_are_gone_without_account() {
    let platform = Platform::start(picking_mock()).await;
    let listed = gate(
        &platform,
        AccountConfig {
            jssdk_hosts: vec!["*.example.com".into()],
            ..account(TokenMode::Stable)
        },
    )
    .await;
    assert_eq!(
        jssdk_config(&listed, "https://shop.example.com/a")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        jssdk_config(&listed, "https://example.com/a").await.status,
        StatusCode::FORBIDDEN
    );
    let own = format!("{}/a", listed.origin);
    assert_eq!(
        jssdk_config(&listed, &own).await.status,
        StatusCode::FORBIDDEN,
        "the list replaces the default"
    );

    let without = proxy().wechat(&platform).run().await;
    let own = format!("{}/a", without.origin);
    assert_eq!(
        jssdk_config(&without, &own).await.status,
        StatusCode::NOT_FOUND
    );
    let admin = crate::support::get(&without.admin_url("/account/token")).await;
    assert_eq!(admin.status, StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------- the subscribe claim

#[tokio::test]
async fn the_identity_says_whether_the_user_follows_the_account() {
    let platform = Platform::start(picking_mock()).await;
    let gate = gate(
        &platform,
        AccountConfig {
            subscribe_claim: true,
            ..account(TokenMode::Stable)
        },
    )
    .await;
    for (user, follows) in [("alice", 1), ("bob", 0)] {
        let mut phone = gate.phone();
        phone.sign_in(&gate, user).await;
        for _ in 0..3 {
            let page = phone.get("/orders/42").await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text());
            let claims = gate.verify(&identity_of(&page.json())).await;
            assert_eq!(claims["subscribe"], follows, "{user}: {claims}");
        }
        let info = phone.get_json("/_wxgate/userinfo").await;
        assert_eq!(info.json()["subscribe"], follows, "{user}");
    }
    assert_eq!(
        platform.mock.calls("user_info"),
        2,
        "asked once per user, then remembered"
    );

    // WeChat not answering: the claim is left out, the user gets in.
    platform.mock.inject("user_info", -1, 100);
    let mut phone = gate.phone();
    phone.sign_in(&gate, "carol").await;
    let page = phone.get("/orders/42").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let claims = gate.verify(&identity_of(&page.json())).await;
    assert!(claims.get("subscribe").is_none(), "{claims}");
}

// ---------------------------------------------------------------- never logged

#[tokio::test]
async fn the_token_and_the_bearer_never_reach_the_log_even_at_debug_level() {
    let (mock_addr, mock) = wxgate::mock::spawn(MockConfig::default()).await.unwrap();
    let dir = crate::support::scratch_dir("account-log");
    let file = dir.join("wxgate.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n{}\
             [account]\ntoken_endpoint_secret = \"{BEARER}\"\nrefresh_ahead = \"1s\"\n",
            crate::support::wechat::wechat_toml(mock_addr, &mock)
        ),
    )
    .unwrap();
    let wxgate = crate::support::process::Wxgate::spawn_logging(
        &["serve", "-c", file.to_str().unwrap()],
        "debug",
    );
    let (public, admin) = wxgate.listening().await;
    let backend = Backend::of(admin);
    // Every path that logs: a failed fetch (logged with WeChat's rid), a refused token
    // (a forced renewal), a ticket fetch that finds the token refused.
    mock.inject("stable_token", 45009, 1);
    assert_eq!(
        backend.token_with(Some(BEARER)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Nobody asks again within a tenth of the renewal window (100 ms here).
    tokio::time::sleep(Duration::from_millis(150)).await;
    let first = backend.token().await;
    let (_, replaced) = backend.report(&first).await;
    let second = replaced["access_token"].as_str().unwrap().to_string();
    mock.inject("getticket", 40001, 1);
    let page = wxgate::wechat::encode_component("http://127.0.0.1/p");
    let signed =
        crate::support::get(&format!("http://{public}/_wxgate/jssdk/config?url={page}")).await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.text());
    // The last thing logged: the ticket's renewal. Then everything is in.
    wxgate
        .wait_for(0, |v| v["fields"]["value"] == "jsapi_ticket")
        .await;
    wxgate
        .wait_for(0, |v| v["fields"]["errcode"] == 45009)
        .await;
    let log = wxgate.log().join("\n");
    assert!(log.contains("renewed"), "renewals are logged");
    let secret = mock.config().secret.clone();
    for (what, value) in [
        ("first token", first.as_str()),
        ("second token", second.as_str()),
        ("bearer", BEARER),
        ("app secret", secret.as_str()),
    ] {
        assert!(!log.contains(value), "the {what} is in the log");
    }
    mock.stop();
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------- reload

/// A wxgate that takes reloads, as SIGHUP gives them.
struct Reloadable {
    public: SocketAddr,
    admin: SocketAddr,
    reload: mpsc::Sender<Config>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), wxgate::app::AppError>>,
}

impl Reloadable {
    async fn start(config: Config) -> Reloadable {
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (public_addr, admin_addr) = (public.local_addr().unwrap(), admin.local_addr().unwrap());
        let (reload, reloads) = mpsc::channel(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(wxgate::run_with_reload(
            config,
            wxgate::Listeners { public, admin },
            async move {
                let _ = stopped.await;
            },
            reloads,
        ));
        Reloadable {
            public: public_addr,
            admin: admin_addr,
            reload,
            stop: Some(stop),
            done,
        }
    }

    /// Stops it and waits until it has (in-flight requests finished).
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.done.await.expect("run task").expect("clean stop");
    }
}

/// A resolved config for the mock at `mock_addr`, `public_url` http://127.0.0.1, with
/// `[account]` (stable tokens) and then `tweak`.
fn config(
    mock_addr: SocketAddr,
    mock: &MockWechat,
    tweak: impl FnOnce(&mut file::Config),
) -> Config {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n{}\
         [session]\nsecret = \"account-tests-0123456789abcdef0123456789\"\n",
        crate::support::wechat::wechat_toml(mock_addr, mock)
    );
    let mut c: file::Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    c.account = Some(account(TokenMode::Stable));
    tweak(&mut c);
    c.check(Path::new("."), &BTreeMap::<String, String>::new())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_reload_keeps_the_token_with_the_memory_store() {
    let (mock_addr, mock) = wxgate::mock::spawn(MockConfig::default()).await.unwrap();
    let gate = Reloadable::start(config(mock_addr, &mock, |_| {})).await;
    let backend = Backend::of(gate.admin);
    let token = backend.token().await;

    // A reload that changes the JS-SDK hosts: applied, and the token stays.
    let other = "https://shop.example.com/";
    let url = format!(
        "http://{}/_wxgate/jssdk/config?url={}",
        gate.public,
        wxgate::wechat::encode_component(other)
    );
    assert_eq!(
        crate::support::get(&url).await.status,
        StatusCode::FORBIDDEN
    );
    gate.reload
        .send(config(mock_addr, &mock, |c| {
            c.account.as_mut().unwrap().jssdk_hosts = vec!["shop.example.com".into()];
        }))
        .await
        .unwrap();
    // The reload applies in the background: its effect is what there is to wait for.
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::support::get(&url).await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "the reload was not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(backend.token().await, token);
    assert_eq!(mock.calls("stable_token"), 1, "no fetch for the reload");
    gate.stop().await;
    mock.stop();
}

// ---------------------------------------------------------------- three replicas on Redis

/// The token's life in the replica test: WeChat's 7200 s / 300 s scaled down so that
/// renewals happen every few seconds.
const TTL: Duration = Duration::from_secs(12);
const AHEAD: Duration = Duration::from_secs(4);
/// How long the backends keep asking while replicas restart and reload: a minute, five
/// token lifetimes.
const LOAD: Duration = Duration::from_secs(60);

/// Where the backends find each replica: (public, admin), None while it restarts.
type Directory = Arc<Mutex<Vec<Option<(SocketAddr, SocketAddr)>>>>;

/// What the backends saw.
#[derive(Default)]
struct Seen {
    tokens: BTreeSet<String>,
    answers: u64,
    /// Anything but a 200 with a token WeChat accepted, or a JS-SDK signature it refused.
    failures: Vec<String>,
    last_request: Option<Instant>,
}

#[tokio::test]
async fn three_replicas_on_redis_fetch_only_what_the_expiry_schedule_needs_through_restarts_and_reloads(
) {
    let Some(redis) = crate::support::redis_server::RedisServer::start() else {
        return;
    };
    // Classic tokens: every fetch ends the previous token after the overlap, so a
    // replica fetching on its own would break the others' tokens (40001).
    let (mock_addr, mock) = wxgate::mock::spawn(MockConfig {
        token_ttl: TTL,
        token_overlap: AHEAD,
        ticket_ttl: TTL,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let session_secret = wxgate::identity::keygen().0;
    let redis_url = redis.url();
    let make = |jssdk_host: &str| {
        let host = jssdk_host.to_string();
        let secret = session_secret.clone();
        let redis_url = redis_url.clone();
        config(mock_addr, &mock, move |c| {
            c.session.store = StoreKind::Redis;
            c.session.redis_url = redis_url;
            c.session.secret = secret;
            let a = c.account.as_mut().unwrap();
            a.token = TokenMode::Classic;
            a.refresh_ahead = Dur(AHEAD);
            a.jssdk_hosts = vec!["127.0.0.1".into(), host];
        })
    };
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Some(Reloadable::start(make("a.example.com")).await));
    }
    // Where the backends find the replicas (None while one restarts).
    let up: Directory = Arc::new(Mutex::new(
        replicas
            .iter()
            .map(|r| r.as_ref().map(|r| (r.public, r.admin)))
            .collect(),
    ));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let started = Instant::now();
    let loaders: Vec<_> = (0..4)
        .map(|n| {
            let (up, seen, mock) = (up.clone(), seen.clone(), mock.clone());
            tokio::spawn(async move { backend_load(n, up, seen, mock, started + LOAD).await })
        })
        .collect();

    // Rolling restarts and reloads while the backends keep asking.
    let plan: [(u64, usize, bool); 12] = [
        (4, 0, true),
        (8, 1, false),
        (12, 2, true),
        (17, 1, true),
        (21, 0, false),
        (25, 2, false),
        (30, 1, true),
        (34, 0, true),
        (39, 2, false),
        (43, 2, true),
        (48, 1, false),
        (53, 0, true),
    ];
    for (at, i, restart) in plan {
        tokio::time::sleep_until((started + Duration::from_secs(at)).into()).await;
        if restart {
            up.lock().unwrap()[i] = None;
            replicas[i].take().unwrap().stop().await;
            let r = Reloadable::start(make("a.example.com")).await;
            up.lock().unwrap()[i] = Some((r.public, r.admin));
            replicas[i] = Some(r);
        } else {
            let r = replicas[i].as_ref().unwrap();
            r.reload.send(make("b.example.com")).await.unwrap();
        }
    }
    for l in loaders {
        l.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());

    assert!(
        seen.failures.is_empty(),
        "{} failures, first: {:?}",
        seen.failures.len(),
        seen.failures.first()
    );
    assert!(seen.answers > 1000, "under load: {} answers", seen.answers);
    let issues: Vec<_> = mock.token_issues();
    assert!(issues.iter().all(|i| i.endpoint == "token"));
    // Every fetch came due: none earlier than its predecessor's renewal point (on the
    // mock's own clock), whatever restarted or reloaded meanwhile ...
    for pair in issues.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= TTL - AHEAD,
            "a fetch {gap:?} after the previous one: {issues:?}"
        );
        // ... and in time, before the previous token ran out under load.
        assert!(
            gap < TTL,
            "the token was not renewed before it expired: {issues:?}"
        );
    }
    // ... each one reached the backends (none wasted) ...
    assert_eq!(seen.tokens.len(), issues.len(), "{issues:?}");
    // ... and the last one was not due before the load ended.
    let last_due = issues.last().unwrap().at + TTL - AHEAD;
    assert!(seen.last_request.unwrap() < last_due + Duration::from_secs(1));
    assert!(
        issues.len() >= (LOAD.as_secs() / TTL.as_secs()) as usize,
        "{issues:?}"
    );
    assert!(mock.calls("getticket") >= 1);
    // What Redis holds is sealed: a dump does not give the token away.
    let mut raw = redis.client();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    assert!(keys.iter().any(|k| k.contains("access_token")), "{keys:?}");
    for key in &keys {
        if let Ok(v) = redis::cmd("GET").arg(key).query::<Vec<u8>>(&mut raw) {
            for token in &seen.tokens {
                let found = v.windows(token.len()).any(|w| w == token.as_bytes());
                assert!(!found, "a token in clear at {key}");
            }
        }
    }
    eprintln!(
        "replicas: {} answers, {} token fetches ({} s of load, token {:?} renewed {:?} ahead), {} getticket",
        seen.answers,
        issues.len(),
        LOAD.as_secs(),
        TTL,
        AHEAD,
        mock.calls("getticket")
    );
    for r in replicas.into_iter().flatten() {
        r.stop().await;
    }
    mock.stop();
}

/// One backend: asks a replica for the token, uses it at WeChat, and now and then asks
/// for a JS-SDK signature and has WeChat's client check it; until `until`.
async fn backend_load(
    n: usize,
    up: Directory,
    seen: Arc<Mutex<Seen>>,
    mock: MockWechat,
    until: Instant,
) {
    let http = reqwest::Client::new();
    let mut turn = n;
    while Instant::now() < until {
        turn += 1;
        let target = up.lock().unwrap()[turn % 3];
        let Some((public, admin)) = target else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let began = Instant::now();
        let resp = http
            .get(format!("http://{admin}/account/token"))
            .bearer_auth(BEARER)
            .send()
            .await;
        // A replica stopping between the pick and the connect refuses the connection:
        // the backend moves on to another, as behind a load balancer.
        let Ok(resp) = resp else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let outcome = match serde_json::from_str::<Value>(&body) {
            Ok(v) if status == StatusCode::OK => match v["access_token"].as_str() {
                Some(t) => match mock.token_status(t) {
                    Ok(_) => Ok(t.to_string()),
                    Err(code) => Err(format!("WeChat answered {code} to the token")),
                },
                None => Err(format!("no token: {body}")),
            },
            _ => Err(format!("{status}: {body}")),
        };
        let signed = if turn % 5 == 0 {
            jssdk_check(&http, public, &mock).await
        } else {
            Ok(())
        };
        {
            let mut s = seen.lock().unwrap();
            s.answers += 1;
            s.last_request = Some(s.last_request.map_or(began, |l| l.max(began)));
            match outcome {
                Ok(t) => {
                    s.tokens.insert(t);
                }
                Err(e) => s.failures.push(e),
            }
            if let Err(e) = signed {
                s.failures.push(e);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn jssdk_check(
    http: &reqwest::Client,
    public: SocketAddr,
    mock: &MockWechat,
) -> Result<(), String> {
    let page = "http://127.0.0.1/landing?from=load";
    let Ok(resp) = http
        .get(format!(
            "http://{public}/_wxgate/jssdk/config?url={}",
            wxgate::wechat::encode_component(page)
        ))
        .send()
        .await
    else {
        return Ok(());
    };
    let body = resp.text().await.unwrap_or_default();
    let c: Value = serde_json::from_str(&body).map_err(|e| format!("jssdk: {e}: {body}"))?;
    mock.check_jssdk_config(
        c["appId"].as_str().unwrap_or_default(),
        &c["timestamp"].to_string(),
        c["nonceStr"].as_str().unwrap_or_default(),
        c["signature"].as_str().unwrap_or_default(),
        page,
    )
    .map_err(|e| format!("jssdk: {e}: {body}"))
}
