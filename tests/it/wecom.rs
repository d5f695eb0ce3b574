//! WeCom (企业微信) sign-in, end to end against the mock WeCom: members inside the WeCom
//! app (its User-Agent, a plain HTTP client), non-members and departments refused
//! with pages, the corp token recovered once when it expires mid-flight, consented
//! private details, WeCom's errcodes as pages. The desktop browser's web-login QR is
//! in `browser.rs` (headless Chromium).

use crate::support::process::Wxgate;
use crate::support::redis_server::RedisServer;
use crate::support::wechat::{
    assert_page, identity_of, url_param, Browser, Platform, SESSION_COOKIE, SESSION_SECRET,
};
use crate::support::{proxy, scratch_dir, Answer, Gate};
use http::StatusCode;
use serde_json::{json, Value};
use wxgate::config::file::{Config, WecomConfig};
use wxgate::config::WecomScope;
use wxgate::mock::{MockConfig, MockWechat, WecomMockConfig};

/// WeCom's in-app browser on an iPhone: `wxwork/` and `MicroMessenger/` both.
pub const WECOM_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 wxwork/4.1.0 MicroMessenger/7.0.1 Language/zh ColorScheme/Light";
/// WeCom's desktop app on Windows: its own browser.
pub const WECOM_DESKTOP_UA: &str = "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/86.0.4240.198 Safari/537.36 NetType/WIFI MicroMessenger/7.0.20.1781(0x6700143B) WindowsWechat(0x63090a13) wxwork/4.1.0 (MicroMessenger/6.2) WeChat/2.0.4";
pub const CHROME_ON_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// The mock with WeCom callbacks to 127.0.0.1 only.
pub fn mock_config() -> MockConfig {
    MockConfig {
        wecom: WecomMockConfig {
            trusted_domains: vec!["127.0.0.1".into()],
            ..WecomMockConfig::default()
        },
        ..MockConfig::default()
    }
}

/// `[wecom]` instead of `[wechat]`, pointed at the mock.
pub fn wecom_sign_in(c: &mut Config, mock: &MockWechat) {
    let m = &mock.config().wecom;
    let base = c.wechat.api_base_url.clone();
    c.wechat = Default::default();
    c.wecom = Some(WecomConfig {
        corp_id: m.corp_id.clone(),
        agent_id: m.agent_id.clone(),
        secret: m.secret.clone(),
        authorize_url: format!("{base}/connect/oauth2/authorize"),
        sso_url: format!("{base}/wwlogin/sso/login"),
        api_base_url: base,
        ..WecomConfig::default()
    });
}

async fn start(tweak: impl FnOnce(&mut WecomConfig)) -> (Platform, Gate) {
    let platform = Platform::start(mock_config()).await;
    let gate = proxy()
        .wechat(&platform)
        .tweak(|c| {
            wecom_sign_in(c, &platform.mock);
            tweak(c.wecom.as_mut().expect("wecom"));
        })
        .run()
        .await;
    (platform, gate)
}

/// The in-app link exactly as WeCom documents it; returns its state.
fn assert_wecom_link(gate: &Gate, platform: &Platform, location: &str, scope: &str) -> String {
    let w = &platform.mock.config().wecom;
    let redirect_uri = format!("{}/_wxgate/callback", gate.origin)
        .replace(':', "%3A")
        .replace('/', "%2F");
    let prefix = format!(
        "http://{}/connect/oauth2/authorize?appid={}&redirect_uri={redirect_uri}&response_type=code&scope={scope}&state=",
        platform.mock_addr, w.corp_id
    );
    let rest = location
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("not WeCom's link:\n  {location}\nexpected\n  {prefix}"));
    let (state, tail) = rest.split_once('&').expect("agentid after state");
    assert_eq!(
        tail,
        format!("agentid={}#wechat_redirect", w.agent_id),
        "{location}"
    );
    state.to_string()
}

/// The upstream's echo after a whole sign-in from `path`, and the claims it verified.
async fn signed_in(gate: &Gate, browser: &mut Browser, path: &str) -> (Value, Value) {
    let a = browser.follow(path).await;
    assert_eq!(a.status, StatusCode::OK, "at the app: {}", a.text());
    let echo = a.json();
    let claims = gate.verify(&identity_of(&echo)).await;
    (echo, claims)
}

#[tokio::test]
async fn a_member_signs_in_inside_the_wecom_app_and_the_app_sees_userid_and_departments() {
    let (platform, gate) = start(|_| {}).await;
    let mut phone = gate.browser(WECOM_UA);
    let first = phone.get("/orders/7?tab=open").await;
    assert_eq!(first.status, StatusCode::FOUND, "{}", first.text());
    let link = first.header("location").unwrap().to_string();
    assert_wecom_link(&gate, &platform, &link, "snsapi_base");

    let (echo, claims) = signed_in(&gate, &mut phone, &link).await;
    assert_eq!(echo["uri"], "/orders/7?tab=open");
    for (claim, want) in [
        ("idp", json!("wecom")),
        ("sub", json!("zhangsan")),
        ("userid", json!("zhangsan")),
        ("corpid", json!(platform.mock.config().wecom.corp_id)),
        ("department", json!([1, 2])),
        ("name", json!("张三")),
    ] {
        assert_eq!(claims[claim], want, "{claim} in {claims}");
    }
    // A userid or CorpID never passes for WeChat's openid or appid.
    for absent in ["openid", "appid", "scope", "unionid"] {
        assert!(claims.get(absent).is_none(), "{absent} in {claims}");
    }

    // The session holds: the next page goes straight to the app, as the same member.
    let again = phone.get("/orders/8").await;
    assert_eq!(again.status, StatusCode::OK);
    let claims = gate.verify(&identity_of(&again.json())).await;
    assert_eq!(claims["userid"], "zhangsan");
    let me = phone.get("/_wxgate/userinfo").await.json();
    assert_eq!(me["department"], json!([1, 2]), "{me}");
}

#[tokio::test]
async fn the_wecom_desktop_apps_own_browser_gets_the_in_app_flow() {
    let (platform, gate) = start(|_| {}).await;
    platform.mock.wecom_sign_in_as("lisi");
    let mut desktop_app = gate.browser(WECOM_DESKTOP_UA);
    let first = desktop_app.get("/").await;
    let link = first.header("location").expect("a redirect").to_string();
    assert_wecom_link(&gate, &platform, &link, "snsapi_base");
    let (_, claims) = signed_in(&gate, &mut desktop_app, &link).await;
    assert_eq!(claims["sub"], "lisi");
    assert_eq!(claims["department"], json!([3]));
}

#[tokio::test]
async fn a_non_member_is_refused_with_a_page() {
    let (platform, gate) = start(|_| {}).await;
    platform.mock.wecom_sign_in_as("guest");
    let mut phone = gate.browser(WECOM_UA);
    let a = phone.follow("/private").await;
    assert_page(
        &a,
        StatusCode::FORBIDDEN,
        "For members of this organisation only",
    );
    assert!(a.text().contains("仅限本企业成员"), "{}", a.text());
    assert!(!phone.has_session());
    assert_eq!(
        platform.mock.calls("wecom_user_get"),
        0,
        "no member to look up"
    );
}

#[tokio::test]
async fn with_members_only_off_a_visitor_signs_in_by_openid() {
    let (platform, gate) = start(|w| w.members_only = false).await;
    platform.mock.wecom_sign_in_as("guest");
    let mut phone = gate.browser(WECOM_UA);
    let (_, claims) = signed_in(&gate, &mut phone, "/").await;
    let openid = platform.mock.wecom_openid("guest");
    assert_eq!(claims["sub"], openid.as_str());
    assert_eq!(claims["openid"], openid.as_str());
    assert_eq!(claims["idp"], "wecom");
    assert!(
        claims["external_userid"]
            .as_str()
            .unwrap()
            .starts_with("wm"),
        "{claims}"
    );
    assert!(
        claims.get("userid").is_none() && claims.get("department").is_none(),
        "{claims}"
    );
}

#[tokio::test]
async fn a_member_outside_the_allowed_departments_is_refused_with_a_page() {
    let (platform, gate) = start(|w| w.allowed_departments = vec![3]).await;
    // zhangsan is in departments 1 and 2.
    let mut phone = gate.browser(WECOM_UA);
    let a = phone.follow("/").await;
    assert_page(&a, StatusCode::FORBIDDEN, "Your department has no access");
    assert!(!phone.has_session());
    // lisi is in 3.
    platform.mock.wecom_sign_in_as("lisi");
    let mut other = gate.browser(WECOM_UA);
    let (_, claims) = signed_in(&gate, &mut other, "/").await;
    assert_eq!(claims["userid"], "lisi");
}

#[tokio::test]
async fn a_member_outside_the_apps_visible_range_gets_a_page() {
    let (platform, gate) = start(|_| {}).await;
    platform.mock.wecom_sign_in_as("wangwu");
    let mut phone = gate.browser(WECOM_UA);
    let a = phone.follow("/").await;
    assert_page(&a, StatusCode::FORBIDDEN, "You are outside this app");
}

#[tokio::test]
async fn a_corp_token_that_expires_mid_flight_is_renewed_once_and_the_sign_in_goes_on() {
    let (platform, gate) = start(|_| {}).await;
    let mut first = gate.browser(WECOM_UA);
    signed_in(&gate, &mut first, "/").await;
    assert_eq!(platform.mock.calls("wecom_gettoken"), 1);

    // The token wxgate holds is still fresh by its clock, expired by WeCom's.
    platform.mock.expire_wecom_tokens();
    let mut second = gate.browser(WECOM_UA);
    let (_, claims) = signed_in(&gate, &mut second, "/").await;
    assert_eq!(claims["userid"], "zhangsan");
    assert_eq!(platform.mock.calls("wecom_gettoken"), 2, "renewed once");
    // getuserinfo: first sign-in, then 42001 and the retry; user/get: one each.
    assert_eq!(platform.mock.calls("wecom_getuserinfo"), 3);
    assert_eq!(platform.mock.calls("wecom_user_get"), 2);

    // WeCom refusing the new token too: a page, not a loop of renewals.
    platform.mock.inject("wecom_getuserinfo", 42001, 2);
    let mut third = gate.browser(WECOM_UA);
    let a = third.follow("/").await;
    assert_page(
        &a,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Sign-in is misconfigured",
    );
    assert_eq!(platform.mock.calls("wecom_gettoken"), 2);
}

#[tokio::test]
async fn a_refused_code_gets_one_fresh_authorization_then_a_page() {
    let (platform, gate) = start(|_| {}).await;
    let mut phone = gate.browser(WECOM_UA);
    let link = phone
        .get("/a")
        .await
        .header("location")
        .unwrap()
        .to_string();
    let state = url_param(&link, "state").unwrap();

    let a = phone
        .get(&format!("/_wxgate/callback?code=forged&state={state}"))
        .await;
    assert_eq!(
        a.status,
        StatusCode::FOUND,
        "a fresh authorization: {}",
        a.text()
    );
    let again = a.header("location").unwrap().to_string();
    let state2 = assert_wecom_link(&gate, &platform, &again, "snsapi_base");
    assert_ne!(state2, state);

    let b = phone
        .get(&format!("/_wxgate/callback?code=forged&state={state2}"))
        .await;
    assert_page(
        &b,
        StatusCode::BAD_REQUEST,
        "The WeCom authorization has expired",
    );
    assert_eq!(platform.mock.calls("wecom_getuserinfo"), 2);
}

#[tokio::test]
async fn wecoms_setup_errors_get_pages_naming_what_to_fix() {
    let cases: &[(&str, i64, StatusCode, &str)] = &[
        (
            "wecom_gettoken",
            60020,
            StatusCode::INTERNAL_SERVER_ERROR,
            "trusted IP",
        ),
        (
            "wecom_getuserinfo",
            50001,
            StatusCode::INTERNAL_SERVER_ERROR,
            "trusted domain",
        ),
        (
            "wecom_gettoken",
            40001,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in is misconfigured",
        ),
        (
            "wecom_getuserinfo",
            -1,
            StatusCode::SERVICE_UNAVAILABLE,
            "WeCom is busy",
        ),
    ];
    for (endpoint, errcode, status, words) in cases {
        // Each on its own: a failed token fetch is remembered for a moment.
        let (platform, gate) = start(|_| {}).await;
        // -1 is retried twice before it is an answer.
        let times = if *errcode == -1 { 3 } else { 1 };
        platform.mock.inject(endpoint, *errcode, times);
        let mut phone = gate.browser(WECOM_UA);
        let a: Answer = phone.follow("/").await;
        assert_page(&a, *status, words);
    }
}

#[tokio::test]
async fn with_snsapi_privateinfo_the_member_consents_and_the_details_are_claimed() {
    let (platform, gate) = start(|w| w.scope = WecomScope::PrivateInfo).await;
    let mut phone = gate.browser(WECOM_UA);
    let link = phone
        .get("/me")
        .await
        .header("location")
        .unwrap()
        .to_string();
    assert_wecom_link(&gate, &platform, &link, "snsapi_privateinfo");
    let page = phone.get(link.split('#').next().unwrap()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("wecom_consent"), "{}", page.text());
    let field = |name: &str| {
        let text = page.text();
        let marker = format!("name=\"{name}\" value=\"");
        let start = text.find(&marker).unwrap() + marker.len();
        let end = text[start..].find('"').unwrap() + start;
        text[start..end].replace("&amp;", "&")
    };
    let fields = [
        ("redirect_uri", field("redirect_uri")),
        ("scope", field("scope")),
        ("state", field("state")),
        ("action", "allow".to_string()),
    ];
    let consent = gate.mock_url("/connect/oauth2/wecom_consent");
    let a = phone.post_form(&consent, &fields).await;
    let callback = a.header("location").expect("back to wxgate").to_string();
    let (_, claims) = signed_in(&gate, &mut phone, &callback).await;
    assert_eq!(claims["userid"], "zhangsan");
    assert_eq!(claims["email"], "zhangsan@corp.example");
    assert_eq!(claims["phone_number"], "13800000001");
    assert_eq!(claims["picture"], "https://wework.qpic.cn/mock/zhangsan/0");
    assert_eq!(platform.mock.calls("wecom_getuserdetail"), 1);

    // OIDC libraries learn the claims from the discovery document: it names each one.
    let discovery = phone
        .get("/_wxgate/.well-known/openid-configuration")
        .await
        .json();
    let supported = discovery["claims_supported"].as_array().unwrap();
    for claim in claims.as_object().unwrap().keys() {
        assert!(
            supported.contains(&json!(claim)),
            "{claim} missing from {supported:?}"
        );
    }
}

#[tokio::test]
async fn a_computers_browser_is_sent_to_wecoms_web_login_and_the_phones_scan_signs_it_in() {
    let (platform, gate) = start(|_| {}).await;
    let mut computer = gate.browser(CHROME_ON_WINDOWS);
    let a = computer.get("/report?q=1").await;
    assert_eq!(a.status, StatusCode::FOUND, "{}", a.text());
    let link = a.header("location").unwrap().to_string();
    let w = &platform.mock.config().wecom;
    let redirect_uri = format!("{}/_wxgate/callback", gate.origin)
        .replace(':', "%3A")
        .replace('/', "%2F");
    let prefix = format!(
        "http://{}/wwlogin/sso/login?login_type=CorpApp&appid={}&agentid={}&redirect_uri={redirect_uri}&state=",
        platform.mock_addr, w.corp_id, w.agent_id
    );
    assert!(link.starts_with(&prefix), "{link}\n{prefix}");

    let qr = computer.get(&link).await;
    assert_eq!(qr.status, StatusCode::OK);
    let text = qr.text();
    let at = text.find("data-key=\"").expect("the QR names its login") + 10;
    let key = &text[at..at + text[at..].find('"').unwrap()];
    // Nothing yet: the page waits.
    let waiting = computer
        .get(&gate.mock_url(&format!("/wwlogin/sso/status?key={key}")))
        .await
        .json();
    assert_eq!(waiting["status"], "pending");
    // The phone scans as lisi and confirms; the page's next look moves on.
    let mut phone = gate.browser(WECOM_UA);
    let scanned = phone
        .post(&gate.mock_url(&format!("/mock/wecom/scan?key={key}&user=lisi")))
        .await;
    assert_eq!(scanned.status, StatusCode::OK, "{}", scanned.text());
    let status = computer
        .get(&gate.mock_url(&format!("/wwlogin/sso/status?key={key}")))
        .await
        .json();
    assert_eq!(status["status"], "confirmed");
    let callback = status["location"].as_str().unwrap().to_string();
    let (echo, claims) = signed_in(&gate, &mut computer, &callback).await;
    assert_eq!(echo["uri"], "/report?q=1");
    assert_eq!(claims["userid"], "lisi");
    assert_eq!(claims["department"], json!([3]));
}

#[tokio::test]
async fn every_wecom_error_is_logged_with_wecoms_request_id() {
    let platform = Platform::start(mock_config()).await;
    let w = platform.mock.config().wecom.clone();
    let mock = platform.mock_addr;
    let dir = scratch_dir("wecom-log");
    let path = dir.join("wecom.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:1"
[admin]
listen = "127.0.0.1:0"
[upstream]
url = "http://{upstream}"
[wecom]
corp_id = "{corp}"
agent_id = "{agent}"
secret = "{secret}"
authorize_url = "http://{mock}/connect/oauth2/authorize"
sso_url = "http://{mock}/wwlogin/sso/login"
api_base_url = "http://{mock}"
[session]
secret = "{}"
"#,
            SESSION_SECRET,
            upstream = platform.upstream.addr,
            corp = w.corp_id,
            agent = w.agent_id,
            secret = w.secret,
        ),
    )
    .unwrap();
    let wxgate = Wxgate::spawn(&["serve", "-c", path.to_str().unwrap()]);
    let (public, _) = wxgate.listening().await;
    // The browser knows the site by its public_url; its requests reach the listener.
    let mut phone = Browser::new("http://127.0.0.1:1", WECOM_UA).via(&format!("http://{public}"));
    let link = phone.get("/").await.header("location").unwrap().to_string();
    let state = url_param(&link, "state").unwrap();

    // This server is not on the app's trusted IP list.
    platform.mock.inject("wecom_gettoken", 60020, 1);
    let code = platform.mock.issue_wecom_code("zhangsan", "snsapi_base");
    let a = phone
        .get(&format!("/_wxgate/callback?code={code}&state={state}"))
        .await;
    assert_page(&a, StatusCode::INTERNAL_SERVER_ERROR, "trusted IP");
    let (line, _) = wxgate
        .wait_for(0, |l| l["fields"]["errcode"] == 60020)
        .await;
    assert_eq!(line["level"], "ERROR", "{line}");
    let hint = line["fields"]["hint"].as_str().unwrap_or_default();
    assert!(!hint.is_empty() && hint != "-", "no request id: {line}");
    assert!(
        line["fields"]["errmsg"].as_str().unwrap().contains(hint),
        "{line}"
    );
    assert!(
        line["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("trusted IP"),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn with_the_cookie_store_a_members_claims_travel_in_the_cookie() {
    let platform = Platform::start(mock_config()).await;
    let gate = proxy()
        .wechat(&platform)
        .tweak(|c| {
            wecom_sign_in(c, &platform.mock);
            c.session.store = wxgate::config::StoreKind::Cookie;
        })
        .run()
        .await;
    let mut phone = gate.browser(WECOM_UA);
    signed_in(&gate, &mut phone, "/").await;
    // A later request: the session comes back from the cookie alone.
    let again = phone.get("/later").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    let claims = gate.verify(&identity_of(&again.json())).await;
    assert_eq!(claims["idp"], "wecom");
    assert_eq!(claims["userid"], "zhangsan");
    assert_eq!(claims["department"], json!([1, 2]));
    assert_eq!(claims["name"], "张三");
}

#[tokio::test]
async fn replicas_sharing_redis_fetch_the_corp_token_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let platform = Platform::start(mock_config()).await;
    let on_redis = |c: &mut Config| {
        wecom_sign_in(c, &platform.mock);
        c.session.store = wxgate::config::StoreKind::Redis;
        c.session.redis_url = redis.url();
    };
    let a = proxy().wechat(&platform).tweak(on_redis).run().await;
    let b = proxy().wechat(&platform).tweak(on_redis).run().await;
    platform.mock.wecom_sign_in_as("lisi");
    let (mut pa, mut pb) = (a.browser(WECOM_UA), b.browser(WECOM_UA));
    let ((_, ca), (_, cb)) = tokio::join!(signed_in(&a, &mut pa, "/"), signed_in(&b, &mut pb, "/"));
    assert_eq!(
        (ca["userid"].clone(), cb["userid"].clone()),
        (json!("lisi"), json!("lisi"))
    );
    assert_eq!(
        platform.mock.calls("wecom_gettoken"),
        1,
        "one token for both replicas"
    );
}

#[tokio::test]
async fn a_session_from_before_the_departments_narrowed_gets_a_page_on_its_next_request() {
    let platform = Platform::start(mock_config()).await;
    let cookie_store = |c: &mut Config| c.session.store = wxgate::config::StoreKind::Cookie;
    // Two generations of one site's config, sharing the session secret: before and
    // after `allowed_departments` was set (as a reload would change it).
    let before = proxy()
        .wechat(&platform)
        .tweak(|c| {
            wecom_sign_in(c, &platform.mock);
            cookie_store(c);
        })
        .run()
        .await;
    let after = proxy()
        .wechat(&platform)
        .tweak(|c| {
            wecom_sign_in(c, &platform.mock);
            cookie_store(c);
            c.wecom.as_mut().unwrap().allowed_departments = vec![3];
        })
        .run()
        .await;
    let mut phone = before.browser(WECOM_UA);
    signed_in(&before, &mut phone, "/").await;
    let session = phone.cookie(SESSION_COOKIE).unwrap();

    // zhangsan (departments 1 and 2) comes back with that session.
    let mut same_phone = after.browser(WECOM_UA);
    same_phone.set_cookie(SESSION_COOKIE, &session);
    let a = same_phone.get("/orders").await;
    assert_page(&a, StatusCode::FORBIDDEN, "Your department has no access");
    let api = same_phone.get_json("/_wxgate/auth").await;
    assert_eq!(api.status, StatusCode::FORBIDDEN, "{}", api.text());
    assert_eq!(api.json()["error"], "department_not_allowed");
}

#[tokio::test]
async fn a_member_outside_a_routes_departments_gets_a_page_there_and_goes_on_elsewhere() {
    let platform = Platform::start(mock_config()).await;
    // The HR app under /hr/* is for department 3 and for wangfang by name; the rest of
    // the site is for every member.
    let routes: Config = toml::from_str(&format!(
        r#"
[[routes]]
path = "/hr/*"
upstream = "http://{}"
allowed_departments = [3]
allowed_userids = ["wangfang"]
"#,
        platform.upstream.addr
    ))
    .expect("routes parse");
    let gate = proxy()
        .wechat(&platform)
        .tweak(|c| {
            wecom_sign_in(c, &platform.mock);
            c.routes = routes.routes;
        })
        .run()
        .await;

    // zhangsan (departments 1 and 2) signs in on the main app...
    let mut phone = gate.browser(WECOM_UA);
    let (_, claims) = signed_in(&gate, &mut phone, "/").await;
    assert_eq!(claims["department"], json!([1, 2]));
    // ...is refused on the HR app with a page, signed in all the same...
    let hr = phone.get("/hr/payroll").await;
    assert_page(&hr, StatusCode::FORBIDDEN, "Access denied");
    assert!(phone.has_session());
    let api = phone.get_json("/hr/api/payroll").await;
    assert_eq!(api.status, StatusCode::FORBIDDEN, "{}", api.text());
    assert_eq!(api.json()["error"], "access_denied");
    // ...and goes on elsewhere.
    let elsewhere = phone.get("/orders/8").await;
    assert_eq!(elsewhere.status, StatusCode::OK, "{}", elsewhere.text());

    // lisi (department 3) is let into the HR app.
    platform.mock.wecom_sign_in_as("lisi");
    let mut other = gate.browser(WECOM_UA);
    let (echo, claims) = signed_in(&gate, &mut other, "/hr/payroll").await;
    assert_eq!(echo["uri"], "/hr/payroll");
    assert_eq!(claims["userid"], "lisi");
}
