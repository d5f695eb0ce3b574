//! The real WeChat client against the built-in mock platform: every errcode path the
//! proxy depends on, transport failures, and WeChat's strict authorize page.

use std::time::Duration;

use wxgate::admin::metrics::metrics;
use wxgate::mock::{self, Broken, MockConfig, MockWechat};
use wxgate::wechat::{
    authorize_url, qrconnect_url, AppCredentials, ErrorKind, OAuthToken, Scope, WechatClient,
    WechatError,
};

const IN_WECHAT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN";
const DESKTOP: &str = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0";
const CALLBACK: &str = "https://app.example.com/_wxgate/callback";

struct World {
    base: String,
    mock: MockWechat,
    client: WechatClient,
    browser: reqwest::Client,
}

impl World {
    async fn start() -> Self {
        Self::with(MockConfig::default(), Duration::from_secs(5)).await
    }

    async fn with(config: MockConfig, timeout: Duration) -> Self {
        let (addr, mock) = mock::spawn(config).await.expect("mock starts");
        let base = format!("http://{addr}");
        let client = WechatClient::new(&base, timeout).expect("client builds");
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("browser builds");
        Self {
            base,
            mock,
            client,
            browser,
        }
    }

    fn app(&self) -> AppCredentials {
        let c = self.mock.config();
        AppCredentials {
            appid: c.appid.clone(),
            secret: c.secret.clone(),
        }
    }

    fn website(&self) -> AppCredentials {
        let c = self.mock.config();
        AppCredentials {
            appid: c.website_appid.clone(),
            secret: c.website_secret.clone(),
        }
    }

    fn authorize(&self, scope: Scope, state: &str) -> String {
        self.authorize_to(CALLBACK, scope, state, false)
    }

    /// The official account's authorize link back to `redirect_uri`.
    fn authorize_to(&self, redirect_uri: &str, scope: Scope, state: &str, popup: bool) -> String {
        authorize_url(
            &format!("{}/connect/oauth2/authorize", self.base),
            &self.app().appid,
            redirect_uri,
            scope,
            state,
            popup,
        )
    }

    async fn get(&self, url: &str, ua: &str) -> reqwest::Response {
        self.browser
            .get(url)
            .header("user-agent", ua)
            .send()
            .await
            .expect("mock answers")
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", wxgate::wechat::encode_component(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.browser
            .post(format!("{}{path}", self.base))
            .header("user-agent", IN_WECHAT)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("mock answers")
    }

    /// The user's answer on a consent page at `path` (`allow` or `refuse`), for
    /// `appid`, back to CALLBACK.
    async fn consent(
        &self,
        path: &str,
        appid: &str,
        scope: &str,
        state: &str,
        action: &str,
    ) -> reqwest::Response {
        self.post_form(
            path,
            &[
                ("appid", appid),
                ("redirect_uri", CALLBACK),
                ("scope", scope),
                ("state", state),
                ("user", "alice"),
                ("action", action),
            ],
        )
        .await
    }

    async fn code(&self, user: &str, scope: &str) -> String {
        self.mock.issue_code(user, scope, &self.app().appid)
    }

    /// The official account redeems `code`.
    async fn exchange(&self, code: &str) -> Result<OAuthToken, WechatError> {
        self.client.exchange_code(&self.app(), code).await
    }

    /// A fresh code of `user`'s for `scope`, redeemed: WeChat's token.
    async fn sign_in(&self, user: &str, scope: &str) -> OAuthToken {
        let code = self.code(user, scope).await;
        self.exchange(&code).await.unwrap()
    }

    /// Redeems a fresh code of alice's with the official account's appid and a wrong
    /// `secret`: the code and the error.
    async fn exchange_with_secret(&self, secret: &str) -> (String, WechatError) {
        let code = self.code("alice", "snsapi_base").await;
        let bad_secret = AppCredentials {
            secret: secret.into(),
            ..self.app()
        };
        let err = self
            .client
            .exchange_code(&bad_secret, &code)
            .await
            .unwrap_err();
        (code, err)
    }

    /// Redeems a fresh code of alice's while WeChat answers the token endpoint with
    /// `errcode` the next `times` times.
    async fn exchange_while_token_endpoint_answers(
        &self,
        errcode: i64,
        times: u32,
    ) -> Result<OAuthToken, WechatError> {
        let code = self.code("alice", "snsapi_base").await;
        self.mock.inject("access_token", errcode, times);
        self.exchange(&code).await
    }

    /// POSTs to one of the mock's HTTP knobs.
    async fn knob(&self, path_and_query: &str) -> reqwest::Response {
        self.browser
            .post(format!("{}/mock/{path_and_query}", self.base))
            .send()
            .await
            .unwrap()
    }
}

async fn page_contains(resp: reqwest::Response, words: &str) -> bool {
    resp.text().await.unwrap().contains(words)
}

fn location(resp: &reqwest::Response) -> String {
    assert_eq!(resp.status(), 302, "expected a redirect");
    resp.headers()["location"]
        .to_str()
        .expect("ascii location")
        .to_owned()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).expect("absolute url");
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn errcode(result: Result<impl std::fmt::Debug, WechatError>) -> (i64, ErrorKind) {
    match result {
        Err(e @ WechatError::Api { errcode, .. }) => (errcode, e.kind()),
        other => panic!("expected a WeChat API error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_user_who_consents_is_sent_back_with_a_code_that_yields_a_profile() {
    let w = World::start().await;
    let page = w
        .get(&w.authorize(Scope::UserInfo, "st4te"), IN_WECHAT)
        .await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("action=\"/connect/oauth2/consent\""),
        "{html}"
    );

    let resp = w
        .consent(
            "/connect/oauth2/consent",
            &w.app().appid,
            "snsapi_userinfo",
            "st4te",
            "allow",
        )
        .await;
    let to = location(&resp);
    assert!(to.starts_with(&format!("{CALLBACK}?code=")), "{to}");
    assert_eq!(query_param(&to, "state").as_deref(), Some("st4te"));
    let code = query_param(&to, "code").unwrap();

    let token = w.exchange(&code).await.unwrap();
    assert_eq!(token.scopes, ["snsapi_userinfo"]);
    assert!(token.has_scope(Scope::UserInfo));
    assert_eq!(token.expires_in, 7200);
    assert!(!token.is_snapshotuser);
    assert_eq!(token.openid, w.mock.openid("alice", &w.app().appid));
    assert_eq!(token.unionid, w.mock.unionid("alice"));
    assert!(token.unionid.is_some());

    let me = w
        .client
        .userinfo(&token.access_token, &token.openid, "zh_CN")
        .await
        .unwrap();
    assert_eq!(me.nickname, "Alice 🌸");
    assert_eq!(me.openid, token.openid);
    assert_eq!(
        (me.sex, me.province.as_str(), me.city.as_str()),
        (0, "", "")
    );
    assert_eq!(me.unionid, token.unionid);
    assert!(
        me.headimgurl.contains("/mock/avatar/alice.svg"),
        "{}",
        me.headimgurl
    );
    w.client
        .check(&token.access_token, &token.openid)
        .await
        .unwrap();
}

#[tokio::test]
async fn snsapi_base_inside_wechat_is_silent_and_keeps_the_callbacks_fragment() {
    let w = World::start().await;
    let url = w.authorize_to(
        "https://app.example.com/cb?x=1#/spa",
        Scope::Base,
        "abc",
        false,
    );
    let to = location(&w.get(&url, IN_WECHAT).await);
    assert!(
        to.starts_with("https://app.example.com/cb?x=1&code="),
        "{to}"
    );
    assert!(to.ends_with("&state=abc#/spa"), "{to}");

    let first = w.mock.config().users[0].key.clone();
    let code = query_param(&to, "code").unwrap();
    let token = w.exchange(&code).await.unwrap();
    assert_eq!(token.openid, w.mock.openid(&first, &w.app().appid));
    assert_eq!(token.scopes, ["snsapi_base"]);
}

#[tokio::test]
async fn force_popup_shows_consent_even_for_snsapi_base() {
    let w = World::start().await;
    let url = w.authorize_to(CALLBACK, Scope::Base, "abc", true);
    let page = w.get(&url, IN_WECHAT).await;
    assert_eq!(page.status(), 200);
    assert!(page_contains(page, "/connect/oauth2/consent").await);
}

#[tokio::test]
async fn a_user_who_refuses_comes_back_with_state_and_no_code() {
    let w = World::start().await;
    let resp = w
        .consent(
            "/connect/oauth2/consent",
            &w.app().appid,
            "snsapi_userinfo",
            "xyz",
            "refuse",
        )
        .await;
    assert_eq!(location(&resp), format!("{CALLBACK}?state=xyz"));
}

#[tokio::test]
async fn a_browser_outside_wechat_is_told_to_open_the_link_in_wechat() {
    let w = World::start().await;
    let page = w.get(&w.authorize(Scope::Base, "s"), DESKTOP).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-mock-wechat-error"], "not_wechat");
    assert!(page_contains(page, "请在微信客户端打开链接").await);
}

#[tokio::test]
async fn the_authorize_page_refuses_links_wechat_would_refuse() {
    let config = MockConfig {
        authorized_hosts: vec!["app.example.com".into()],
        ..MockConfig::default()
    };
    let w = World::with(config, Duration::from_secs(5)).await;
    let appid = w.app().appid;
    let page = format!("{}/connect/oauth2/authorize", w.base);
    let cases = [
        (
            format!("{page}?redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&appid={appid}&response_type=code&scope=snsapi_base&state=s"),
            "该链接无法访问",
            "link_invalid",
        ),
        (
            format!("{page}?appid={appid}&redirect_uri=https%3A%2F%2Fother.example.com%2Fcb&response_type=code&scope=snsapi_base&state=s"),
            "redirect_uri 域名与后台配置不一致",
            "redirect_domain",
        ),
        (
            format!("{page}?appid={appid}&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&response_type=code&scope=snsapi_login&state=s"),
            "scope",
            "scope",
        ),
    ];
    for (url, words, name) in cases {
        let resp = w.get(&url, IN_WECHAT).await;
        assert_eq!(resp.status(), 200, "{url}");
        assert_eq!(resp.headers()["x-mock-wechat-error"], name, "{url}");
        let html = resp.text().await.unwrap();
        assert!(html.contains(words), "{url}: {html}");
        assert!(!html.contains("<form"), "{url}");
    }
    // The same link in the right order is accepted, even on a non-default port.
    let ok = w.authorize_to(
        "https://app.example.com:8443/cb",
        Scope::UserInfo,
        "s",
        false,
    );
    assert!(page_contains(w.get(&ok, IN_WECHAT).await, "<form").await);
    assert_eq!(w.mock.calls("authorize"), 4);
}

#[tokio::test]
async fn codes_are_single_use_and_short_lived() {
    let w = World::start().await;
    let code = w.code("bob", "snsapi_base").await;
    w.exchange(&code).await.unwrap();
    let reused = w.exchange(&code).await;
    assert_eq!(errcode(reused), (40163, ErrorKind::CodeUsed));

    let unknown = w.exchange("forged0123").await;
    assert_eq!(errcode(unknown), (40029, ErrorKind::InvalidCode));

    let old = w.code("bob", "snsapi_base").await;
    w.mock.expire_codes();
    let expired = w.exchange(&old).await;
    assert_eq!(errcode(expired), (42003, ErrorKind::CodeExpired));
}

#[tokio::test]
async fn a_code_for_one_app_is_invalid_for_the_other() {
    let w = World::start().await;
    let code = w.code("alice", "snsapi_base").await;
    let other = w.client.exchange_code(&w.website(), &code).await;
    assert_eq!(errcode(other), (40029, ErrorKind::InvalidCode));
}

#[tokio::test]
async fn wrong_credentials_are_a_misconfiguration_with_wechats_request_id() {
    let w = World::start().await;
    let (code, err) = w.exchange_with_secret("wrong").await;
    assert_eq!(err.kind(), ErrorKind::Misconfigured);
    assert!(
        matches!(err, WechatError::Api { errcode: 40125, .. }),
        "{err:?}"
    );
    let rid = err.rid().expect("errmsg carries a rid");
    assert_eq!(rid.split('-').count(), 3, "{rid}");

    let bad_appid = AppCredentials {
        appid: "wxnobody".into(),
        ..w.app()
    };
    let err = w.client.exchange_code(&bad_appid, &code).await;
    assert_eq!(errcode(err), (40013, ErrorKind::Misconfigured));
}

#[tokio::test]
async fn a_busy_platform_is_retried_until_it_answers() {
    let w = World::start().await;
    let before = metrics().wechat_calls.get(&["access_token", "-1"]);
    let token = w
        .exchange_while_token_endpoint_answers(-1, 2)
        .await
        .unwrap();
    assert_eq!(token.openid, w.mock.openid("alice", &w.app().appid));
    assert_eq!(w.mock.calls("access_token"), 3);
    assert!(metrics().wechat_calls.get(&["access_token", "-1"]) >= before + 2);
}

#[tokio::test]
async fn a_platform_busy_three_times_is_reported_busy() {
    let w = World::start().await;
    let err = w.exchange_while_token_endpoint_answers(-1, 3).await;
    assert_eq!(errcode(err), (-1, ErrorKind::Busy));
    assert_eq!(w.mock.calls("access_token"), 3);
}

#[tokio::test]
async fn quota_errors_are_not_retried() {
    let w = World::start().await;
    let err = w.exchange_while_token_endpoint_answers(45009, 1).await;
    assert_eq!(errcode(err), (45009, ErrorKind::Quota));
    assert_eq!(w.mock.calls("access_token"), 1);
}

#[tokio::test]
async fn a_slow_platform_times_out() {
    let w = World::with(MockConfig::default(), Duration::from_millis(150)).await;
    w.mock.set_latency("access_token", Duration::from_secs(2));
    let err = w.exchange("any").await.unwrap_err();
    assert!(
        matches!(
            err,
            WechatError::Timeout {
                endpoint: "access_token"
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn answers_that_are_not_wechats_json_are_bad_responses() {
    let w = World::start().await;
    for broken in [
        Broken::Html,
        Broken::Garbage,
        Broken::Http500,
        Broken::CloseMidBody,
    ] {
        w.mock.set_broken("access_token", broken);
        let code = w.code("alice", "snsapi_base").await;
        let err = w.exchange(&code).await.unwrap_err();
        assert!(
            matches!(err, WechatError::BadResponse { .. }),
            "{broken:?}: {err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{broken:?}");
    }
    w.mock.clear(Some("access_token"));
    let code = w.code("alice", "snsapi_base").await;
    w.exchange(&code).await.unwrap();
}

#[tokio::test]
async fn a_platform_that_is_not_listening_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = WechatClient::new(&format!("http://{addr}"), Duration::from_secs(2)).unwrap();
    let app = AppCredentials {
        appid: "wx".into(),
        secret: "s3cr3t-never-logged".into(),
    };
    let err = client.exchange_code(&app, "c0de").await.unwrap_err();
    assert!(matches!(err, WechatError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[tokio::test]
async fn a_base_token_cannot_read_the_profile() {
    let w = World::start().await;
    let token = w.sign_in("bob", "snsapi_base").await;
    let err = w
        .client
        .userinfo(&token.access_token, &token.openid, "zh_CN")
        .await;
    assert_eq!(errcode(err), (48001, ErrorKind::Unauthorized));
}

#[tokio::test]
async fn refresh_tokens_renew_access_until_revoked() {
    let w = World::start().await;
    let first = w.sign_in("bob", "snsapi_userinfo").await;
    w.mock.expire_access_tokens();
    let expired = w.client.check(&first.access_token, &first.openid).await;
    assert_eq!(errcode(expired).0, 42001);

    let renewed = w
        .client
        .refresh(&w.app().appid, &first.refresh_token)
        .await
        .unwrap();
    assert_ne!(renewed.access_token, first.access_token);
    assert_eq!(renewed.openid, first.openid);
    assert_eq!(renewed.scopes, ["snsapi_userinfo"]);
    w.client
        .check(&renewed.access_token, &renewed.openid)
        .await
        .unwrap();

    let before = metrics().wechat_calls.get(&["refresh_token", "42007"]);
    w.mock.revoke_refresh_tokens("bob");
    let revoked = w.client.refresh(&w.app().appid, &first.refresh_token).await;
    assert_eq!(errcode(revoked), (42007, ErrorKind::RefreshEnded));
    assert!(metrics().wechat_calls.get(&["refresh_token", "42007"]) > before);

    let unknown = w.client.refresh(&w.app().appid, "nope").await;
    assert_eq!(errcode(unknown), (40030, ErrorKind::RefreshEnded));
}

#[tokio::test]
async fn snapshot_page_users_are_flagged_with_a_virtual_openid() {
    let w = World::start().await;
    let token = w.sign_in("snapshot", "snsapi_userinfo").await;
    assert!(token.is_snapshotuser);
    assert_eq!(token.unionid, None);
    assert_ne!(
        token.openid,
        wxgate::mock::derive_id("openid", &[&w.app().appid, "snapshot"])
    );
}

#[tokio::test]
async fn the_website_app_sees_another_openid_but_the_same_unionid() {
    let w = World::start().await;
    let url = qrconnect_url(
        &format!("{}/connect/qrconnect", w.base),
        &w.website().appid,
        CALLBACK,
        "qr1",
    );
    let page = w.get(&url, DESKTOP).await;
    assert_eq!(page.status(), 200);
    assert!(page_contains(page, "/connect/qrconnect/confirm").await);
    let resp = w
        .consent(
            "/connect/qrconnect/confirm",
            &w.website().appid,
            "snsapi_login",
            "qr1",
            "allow",
        )
        .await;
    let code = query_param(&location(&resp), "code").unwrap();
    let web = w.client.exchange_code(&w.website(), &code).await.unwrap();
    assert_eq!(web.scopes, ["snsapi_login"]);

    let official = w.sign_in("alice", "snsapi_base").await;
    assert_ne!(web.openid, official.openid);
    assert_eq!(web.unionid, official.unionid);
    assert!(web.unionid.is_some());
}

#[tokio::test]
async fn knobs_work_over_http_for_other_languages() {
    let w = World::start().await;
    let knob = |path: &str| format!("{}/mock/{path}", w.base);
    let resp = w
        .knob("inject?endpoint=access_token&errcode=45011&times=1")
        .await;
    assert_eq!(resp.status(), 200);
    let code = w
        .knob("code?user=carol&scope=snsapi_base")
        .await
        .text()
        .await
        .unwrap();
    let err = w.exchange(&code).await;
    assert_eq!(errcode(err), (45011, ErrorKind::Quota));
    w.exchange(&code).await.unwrap();

    let calls = w.get(&knob("calls?endpoint=access_token"), DESKTOP).await;
    assert_eq!(calls.text().await.unwrap().trim(), "2");
    let users: serde_json::Value = w.get(&knob("users"), DESKTOP).await.json_value().await;
    assert_eq!(users["users"][0]["key"], "alice");
    let bad = w.knob("broken?endpoint=auth&kind=nonsense").await;
    assert_eq!(bad.status(), 400);
}

trait JsonValue {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

#[tokio::test]
async fn a_stopped_mock_finishes_and_stops_listening() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mock = MockWechat::new(MockConfig::default());
    let server = tokio::spawn(mock::serve(listener, mock.clone(), std::future::pending()));
    let index = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert!(index.text().await.unwrap().contains("wxmock0000000001"));

    mock.stop();
    server.await.expect("serve returns after stop()");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Collects what the client logs, for the one test that reads logs.
#[derive(Clone, Default)]
struct LogSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogSink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_failed_call_is_logged_once_with_errcode_and_rid_but_never_the_secret() {
    let sink = LogSink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // tokio::test runs on one thread, so the default covers every await below.
    let _guard = tracing::subscriber::set_default(subscriber);

    let w = World::start().await;
    let (code, err) = w
        .exchange_with_secret("s3cr3tvalue0000000000000000000")
        .await;
    let rid = err.rid().unwrap().to_owned();

    let logs = sink.text();
    assert_eq!(logs.matches("40125").count(), 1, "{logs}");
    assert!(logs.contains(&rid), "{logs}");
    assert!(
        logs.contains("check wechat.secret / wechat.appid"),
        "{logs}"
    );
    assert!(!logs.contains("s3cr3tvalue"), "{logs}");
    assert!(!logs.contains(&code), "{logs}");
}

// ---------------------------------------------------------------- the account's own API

impl World {
    /// A `cgi-bin` call an app's backend makes with the account's token: Ok, or the errcode.
    async fn use_token(&self, token: &str) -> Result<(), i64> {
        let text = self
            .browser
            .get(format!(
                "{}/cgi-bin/getcallbackip?access_token={token}",
                self.base
            ))
            .send()
            .await
            .expect("mock answers")
            .text()
            .await
            .expect("a body");
        let body: serde_json::Value =
            serde_json::from_str(&text).expect("JSON, whatever the Content-Type");
        match body["errcode"].as_i64() {
            None | Some(0) => Ok(()),
            Some(code) => Err(code),
        }
    }
}

fn code_of(e: &WechatError) -> Option<i64> {
    e.errcode()
}

#[tokio::test]
async fn a_classic_fetch_ends_the_previous_token_after_the_overlap() {
    // WeChat's five minutes of overlap: both tokens work.
    let w = World::start().await;
    let first = w.client.classic_token(&w.app()).await.unwrap();
    let second = w.client.classic_token(&w.app()).await.unwrap();
    assert_ne!(first.access_token, second.access_token);
    assert_eq!(first.expires_in, 7200);
    assert_eq!(w.use_token(&first.access_token).await, Ok(()));
    assert_eq!(w.use_token(&second.access_token).await, Ok(()));

    // With no overlap the earlier token is refused at once: what replicas that each
    // fetch their own token do to each other.
    let config = MockConfig {
        token_overlap: Duration::ZERO,
        ..MockConfig::default()
    };
    let w = World::with(config, Duration::from_secs(5)).await;
    let first = w.client.classic_token(&w.app()).await.unwrap();
    let second = w.client.classic_token(&w.app()).await.unwrap();
    assert_eq!(w.use_token(&first.access_token).await, Err(40001));
    assert_eq!(w.use_token(&second.access_token).await, Ok(()));
    w.mock.expire_account_tokens();
    assert_eq!(w.use_token(&second.access_token).await, Err(42001));
    assert_eq!(w.use_token("").await, Err(41001));
    assert_eq!(w.mock.calls("token"), 2);
}

#[tokio::test]
async fn a_stable_token_stays_the_same_until_its_last_minutes_and_is_independent() {
    let w = World::start().await;
    let a = w.client.stable_token(&w.app(), false).await.unwrap();
    let b = w.client.stable_token(&w.app(), false).await.unwrap();
    assert_eq!(
        a.access_token, b.access_token,
        "normal mode: the same token"
    );
    assert!(b.expires_in <= a.expires_in && b.expires_in > 7000);
    // A classic fetch does not touch it.
    let classic = w.client.classic_token(&w.app()).await.unwrap();
    assert_ne!(classic.access_token, a.access_token);
    assert_eq!(w.use_token(&a.access_token).await, Ok(()));

    // A token always in its last minutes: each call hands out a new one, the old one
    // keeps working until it expires.
    let config = MockConfig {
        token_ttl: Duration::from_secs(60),
        token_overlap: Duration::from_secs(60),
        ..MockConfig::default()
    };
    let w = World::with(config, Duration::from_secs(5)).await;
    let a = w.client.stable_token(&w.app(), false).await.unwrap();
    let b = w.client.stable_token(&w.app(), false).await.unwrap();
    assert_ne!(a.access_token, b.access_token);
    assert_eq!(w.use_token(&a.access_token).await, Ok(()));
    let issues = w.mock.token_issues();
    assert_eq!(issues.len(), 2);
    assert!(issues
        .iter()
        .all(|i| i.new && !i.forced && i.endpoint == "stable_token"));
}

#[tokio::test]
async fn force_refresh_ends_the_token_at_once_not_twice_in_30s_and_20_a_day() {
    let w = World::start().await;
    let a = w.client.stable_token(&w.app(), false).await.unwrap();
    let b = w.client.stable_token(&w.app(), true).await.unwrap();
    assert_ne!(a.access_token, b.access_token);
    assert_eq!(w.use_token(&a.access_token).await, Err(40001));
    // "Consecutive forced calls must be 30 s apart, or nothing is refreshed."
    let c = w.client.stable_token(&w.app(), true).await.unwrap();
    assert_eq!(c.access_token, b.access_token);

    let config = MockConfig {
        force_daily_quota: 1,
        force_interval: Duration::ZERO,
        ..MockConfig::default()
    };
    let w = World::with(config, Duration::from_secs(5)).await;
    w.client.stable_token(&w.app(), false).await.unwrap();
    w.client.stable_token(&w.app(), true).await.unwrap();
    let e = w.client.stable_token(&w.app(), true).await.unwrap_err();
    assert_eq!(code_of(&e), Some(45009));
    w.mock.reset_quotas();
    w.client.stable_token(&w.app(), true).await.unwrap();
}

#[tokio::test]
async fn token_fetches_are_refused_as_wechat_refuses_them() {
    let config = MockConfig {
        classic_daily_quota: 1,
        ..MockConfig::default()
    };
    let w = World::with(config, Duration::from_secs(5)).await;
    w.client.classic_token(&w.app()).await.unwrap();
    let quota = w.client.classic_token(&w.app()).await.unwrap_err();
    assert_eq!(code_of(&quota), Some(45009));
    assert_eq!(quota.kind(), ErrorKind::Quota);
    assert!(quota.rid().is_some(), "{quota}");

    let wrong = AppCredentials {
        secret: "wrong".into(),
        ..w.app()
    };
    let e = w.client.classic_token(&wrong).await.unwrap_err();
    assert_eq!(
        (code_of(&e), e.kind()),
        (Some(40125), ErrorKind::Misconfigured)
    );
    let e = w.client.stable_token(&wrong, false).await.unwrap_err();
    assert_eq!(code_of(&e), Some(40125));

    // A server not on the account's IP whitelist: WeChat names the address it saw.
    let config = MockConfig {
        ip_whitelist: vec!["10.0.0.1".parse().unwrap()],
        ..MockConfig::default()
    };
    let w = World::with(config, Duration::from_secs(5)).await;
    for e in [
        w.client.classic_token(&w.app()).await.unwrap_err(),
        w.client.stable_token(&w.app(), false).await.unwrap_err(),
    ] {
        assert_eq!(code_of(&e), Some(40164), "{e}");
        assert_eq!(e.kind(), ErrorKind::IpNotWhitelisted);
        assert!(e.to_string().contains("127.0.0.1"), "{e}");
        assert!(e.rid().is_some(), "{e}");
    }
}

#[tokio::test]
async fn the_ticket_and_user_info_need_a_good_token() {
    let w = World::start().await;
    let token = w.client.stable_token(&w.app(), false).await.unwrap();
    let ticket = w.client.jsapi_ticket(&token.access_token).await.unwrap();
    assert_eq!(ticket.expires_in, 7200);
    assert!(!ticket.ticket.is_empty());
    let e = w.client.jsapi_ticket("not-a-token").await.unwrap_err();
    assert!(e.token_rejected() && code_of(&e) == Some(40001), "{e}");

    let appid = w.app().appid;
    let alice = w.mock.openid("alice", &appid);
    let bob = w.mock.openid("bob", &appid);
    let t = &token.access_token;
    assert!(
        w.client.subscribed(t, &alice, "zh_CN").await.unwrap(),
        "alice follows"
    );
    assert!(
        !w.client.subscribed(t, &bob, "zh_CN").await.unwrap(),
        "bob does not"
    );
    let e = w
        .client
        .subscribed(t, "o-nobody", "zh_CN")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some(40003));
    w.mock.expire_account_tokens();
    let e = w.client.subscribed(t, &alice, "zh_CN").await.unwrap_err();
    assert!(e.token_rejected() && code_of(&e) == Some(42001), "{e}");
}

#[tokio::test]
async fn the_mock_checks_js_sdk_signatures_against_the_tickets_it_handed_out() {
    let config = MockConfig {
        js_safe_domains: vec!["app.example.com".into()],
        ..MockConfig::default()
    };
    let w = World::with(config, Duration::from_secs(5)).await;
    let token = w.client.stable_token(&w.app(), false).await.unwrap();
    let ticket = w
        .client
        .jsapi_ticket(&token.access_token)
        .await
        .unwrap()
        .ticket;
    let appid = w.app().appid;
    let url = "https://app.example.com/page?x=1";
    let sig = wxgate::account::jssdk::signature(&ticket, "nonce123", 1_700_000_000, url);
    let check = |app: &str, sig: &str, url: &str| {
        w.mock
            .check_jssdk_config(app, "1700000000", "nonce123", sig, url)
    };
    assert_eq!(check(&appid, &sig, url), Ok(()));
    assert_eq!(
        check(&appid, &sig, "https://app.example.com/page?x=2"),
        Err("config:invalid signature")
    );
    let other = wxgate::account::jssdk::signature("another-ticket", "nonce123", 1_700_000_000, url);
    assert_eq!(check(&appid, &other, url), Err("config:invalid signature"));
    assert_eq!(
        check(&appid, &sig, "https://evil.example.com/page?x=1"),
        Err("config:invalid url domain")
    );
    assert_eq!(check("wxother", &sig, url), Err("config:invalid appid"));
}
