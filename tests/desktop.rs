//! Signing in from a computer: the scan-to-sign-in QR flow, the website app's
//! qrconnect, and the "open in WeChat" page, over real HTTP against the mock WeChat.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wxgate::config::Config;
use wxgate::mock::{self, MockConfig, MockWechat};

pub const CHROME_ON_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
pub const SAFARI_ON_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";

// ---------------------------------------------------------------- harness

struct Env {
    mock: MockWechat,
    mock_addr: SocketAddr,
    addr: SocketAddr,
    _upstream: common::Upstream,
    _stop: oneshot::Sender<()>,
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    fn mock_url(&self, path: &str) -> String {
        format!("http://{}{}", self.mock_addr, path)
    }
    fn appid(&self) -> String {
        self.mock.config().appid.clone()
    }
    fn website_appid(&self) -> String {
        self.mock.config().website_appid.clone()
    }
}

/// Mock WeChat + echo upstream + wxgate (public_paths = [], snsapi_userinfo), with the
/// public listener bound first so public_url names its real port.
async fn start(mode: &str, ticket_ttl: &str) -> Env {
    let (mock_addr, mock) = mock::spawn(MockConfig::default()).await.unwrap();
    let upstream = common::start_upstream().await;
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = public.local_addr().unwrap();
    let c = mock.config();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://{addr}"
[upstream]
url = "http://{up}"
[wechat]
appid = "{appid}"
secret = "{secret}"
scope = "snsapi_userinfo"
authorize_url = "http://{mock_addr}/connect/oauth2/authorize"
qrconnect_url = "http://{mock_addr}/connect/qrconnect"
api_base_url = "http://{mock_addr}"
[session]
secret = "0123456789abcdef0123456789abcdef-test-only"
[desktop]
mode = "{mode}"
website_appid = "{wappid}"
website_secret = "{wsecret}"
ticket_ttl = "{ticket_ttl}"
[access]
public_paths = []
"#,
        up = upstream.addr,
        appid = c.appid,
        secret = c.secret,
        wappid = c.website_appid,
        wsecret = c.website_secret,
    );
    let mut config: Config = toml::from_str(&text).expect("test config parses");
    config.base_dir = Path::new(".").to_path_buf();
    let problems = config.resolve(&BTreeMap::<String, String>::new());
    // The expiry test uses a ticket lifetime shorter than `wxgate check` allows, so
    // that expiry is observed in seconds; every other problem is a test bug.
    let problems: Vec<_> = problems
        .into_iter()
        .filter(|p| !format!("{p:?}").contains("desktop.ticket_ttl"))
        .collect();
    assert!(problems.is_empty(), "test config: {problems:?}");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(wxgate::run(
        config,
        wxgate::Listeners { public, admin },
        async move {
            let _ = stopped.await;
        },
    ));
    Env {
        mock,
        mock_addr,
        addr,
        _upstream: upstream,
        _stop: stop,
    }
}

/// A browser: its own cookie jar and User-Agent; never follows redirects by itself.
struct Browser {
    client: reqwest::Client,
    ua: &'static str,
    jar: Vec<(String, String)>,
}

struct Page {
    status: u16,
    location: Option<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Browser {
    fn new(ua: &'static str) -> Self {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            ua,
            jar: Vec::new(),
        }
    }
    fn desktop() -> Self {
        Self::new(CHROME_ON_WINDOWS)
    }
    fn phone() -> Self {
        Self::new(mock::PHONE_USER_AGENT)
    }

    async fn request(&mut self, method: reqwest::Method, url: &str, json: bool) -> Page {
        let cookies = self
            .jar
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut req = self
            .client
            .request(method, url)
            .header("user-agent", self.ua)
            .header("cookie", cookies);
        if json {
            req = req.header("accept", "application/json");
        }
        let resp = req.send().await.expect("answer");
        for sc in resp.headers().get_all("set-cookie") {
            let sc = sc.to_str().unwrap();
            let (n, v) = sc.split(';').next().unwrap().split_once('=').unwrap();
            self.jar.retain(|(k, _)| k != n);
            if !sc.contains("Max-Age=0") {
                self.jar.push((n.to_string(), v.to_string()));
            }
        }
        Page {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string()),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }
    async fn get(&mut self, url: &str) -> Page {
        self.request(reqwest::Method::GET, url, false).await
    }
    async fn get_json(&mut self, url: &str) -> Page {
        self.request(reqwest::Method::GET, url, true).await
    }
    async fn post(&mut self, url: &str) -> Page {
        self.request(reqwest::Method::POST, url, false).await
    }
    /// Follows redirects, resolving wxgate's relative ones against `base`.
    async fn follow(&mut self, base: &str, url: &str) -> Page {
        let mut url = url.to_string();
        for _ in 0..10 {
            let p = self.get(&url).await;
            match &p.location {
                Some(l) if l.starts_with('/') => url = format!("{base}{l}"),
                Some(l) => url = l.clone(),
                None => return p,
            }
        }
        panic!("redirect loop from {url}");
    }
}

/// The value of `attr="..."` after the first `marker` in `html`, unescaped.
fn attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let at = html.find(marker)?;
    let rest = &html[at..];
    let start = rest.find(&format!("{attr}=\""))? + attr.len() + 2;
    let end = rest[start..].find('"')? + start;
    Some(rest[start..end].replace("&amp;", "&"))
}

fn scan_url_of(page: &Page) -> String {
    attr_after(&page.body, "id=\"wxgate-qr\"", "data-scan-url")
        .expect("the QR page names its scan URL")
}

fn ticket_of(scan_url: &str) -> String {
    scan_url.rsplit('/').next().unwrap().to_string()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1.split('#').next()?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .unwrap()
                .into_owned()
        })
    })
}

/// The phone opens the scan URL in WeChat, consents on the mock as `user` (or refuses),
/// and comes back to wxgate: the confirmation page (or the refusal).
async fn phone_scans(
    env: &Env,
    phone: &mut Browser,
    scan_url: &str,
    user: &str,
    allow: bool,
) -> Page {
    let first = phone.get(scan_url).await;
    let Some(authorize) = first
        .location
        .clone()
        .filter(|l| l.contains("/connect/oauth2/authorize"))
    else {
        // Already signed in on this phone: straight to the confirmation.
        return first;
    };
    let consent = phone.get(&authorize).await;
    assert_eq!(consent.status, 200, "the mock shows its consent page");
    let form = [
        ("appid", query_param(&authorize, "appid").unwrap()),
        (
            "redirect_uri",
            query_param(&authorize, "redirect_uri").unwrap(),
        ),
        ("scope", query_param(&authorize, "scope").unwrap()),
        ("state", query_param(&authorize, "state").unwrap()),
        ("user", user.to_string()),
        ("action", if allow { "allow" } else { "refuse" }.to_string()),
    ];
    let resp = phone
        .client
        .post(env.mock_url("/connect/oauth2/consent"))
        .header("user-agent", phone.ua)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&form))
        .send()
        .await
        .unwrap();
    let callback = resp.headers()["location"].to_str().unwrap().to_string();
    phone.follow(&env.url(""), &callback).await
}

fn form_body(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn confirm_url(env: &Env, confirm_page: &Page, which: &str) -> String {
    let marker = format!("/_wxgate/scan/{which}/");
    let at = confirm_page
        .body
        .find(&marker)
        .expect("the page has the form");
    let end = confirm_page.body[at..].find('"').unwrap() + at;
    env.url(&confirm_page.body[at..end].replace("&amp;", "&"))
}

async fn status(env: &Env, b: &mut Browser, ticket: &str) -> Page {
    b.get_json(&env.url(&format!("/_wxgate/scan/status/{ticket}")))
        .await
}

async fn who(env: &Env, b: &mut Browser) -> Value {
    let p = b.get_json(&env.url("/_wxgate/userinfo")).await;
    assert_eq!(p.status, 200, "signed in: {}", p.body);
    p.json()
}

/// The identity JWT the upstream received, decoded (the signature is tested elsewhere).
fn identity_claims(echo: &Value) -> Value {
    let jwt = common::seen(echo, "x-wxgate-jwt-assertion")
        .pop()
        .expect("the upstream got the identity header");
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

// ---------------------------------------------------------------- qr

#[tokio::test]
async fn a_computer_signs_in_by_scanning_and_confirming_on_the_phone() {
    let env = start("qr", "2m").await;
    let mut desktop = Browser::desktop();
    let page = desktop.get(&env.url("/orders/42?tab=open")).await;
    assert_eq!(
        page.status, 200,
        "a desktop browser gets the QR page, not WeChat"
    );
    assert!(page.body.contains("<svg"), "an inline SVG QR code");
    assert!(
        page.body.contains("id=\"wxgate-code\""),
        "a short code for typing"
    );
    assert!(
        page.body.contains("/_wxgate/scan/status/"),
        "the page polls its status"
    );
    assert_eq!(env.mock.calls("authorize"), 0);
    let scan_url = scan_url_of(&page);
    assert!(
        scan_url.starts_with(&env.url("/_wxgate/scan/s/")),
        "{scan_url}"
    );
    let ticket = ticket_of(&scan_url);
    assert_eq!(
        status(&env, &mut desktop, &ticket).await.json()["status"],
        "pending"
    );

    let mut phone = Browser::phone();
    let confirm = phone_scans(&env, &mut phone, &scan_url, "alice", true).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(
        confirm.body.contains("Chrome 120"),
        "names the waiting browser"
    );
    assert!(confirm.body.contains("Windows"), "and its OS");
    assert!(confirm.body.contains(&env.addr.to_string()), "and the site");
    assert!(confirm.body.contains("UTC"), "and the time");
    assert_eq!(
        status(&env, &mut desktop, &ticket).await.json()["status"],
        "scanned"
    );

    let answer = phone.post(&confirm_url(&env, &confirm, "confirm")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("x-wxgate-scan"), Some("confirmed"));

    let st = status(&env, &mut desktop, &ticket).await.json();
    assert_eq!(st["status"], "confirmed");
    let done = desktop.get(&env.url(st["next"].as_str().unwrap())).await;
    assert_eq!(done.status, 302);
    assert_eq!(
        done.location.as_deref(),
        Some("/orders/42?tab=open"),
        "lands where it first asked"
    );

    let upstream = desktop.get(&env.url("/orders/42?tab=open")).await;
    assert_eq!(upstream.status, 200);
    let echo: Value = serde_json::from_str(&upstream.body).unwrap();
    let claims = identity_claims(&echo);
    assert_eq!(claims["openid"], env.mock.openid("alice", &env.appid()));
    assert_eq!(claims["nickname"], "Alice 🌸");

    let d = who(&env, &mut desktop).await;
    let p = who(&env, &mut phone).await;
    assert_eq!(d["openid"], p["openid"], "the same WeChat user");
    assert_ne!(d["sid"], p["sid"], "but the computer has its own session");
}

#[tokio::test]
async fn the_phone_reuses_its_session_and_can_type_the_code_instead_of_scanning() {
    let env = start("qr", "2m").await;
    let mut phone = Browser::phone();
    let mut d1 = Browser::desktop();
    let first = d1.get(&env.url("/a")).await;
    let c1 = phone_scans(&env, &mut phone, &scan_url_of(&first), "bob", true).await;
    phone.post(&confirm_url(&env, &c1, "confirm")).await;
    let authorizations = env.mock.calls("consent");

    // A second computer: the phone types the short code instead of scanning.
    let mut d2 = Browser::new(SAFARI_ON_MAC);
    let second = d2.get(&env.url("/b")).await;
    let code = {
        let at = second.body.find("id=\"wxgate-code\"").unwrap();
        let s = second.body[at..].find('>').unwrap() + at + 1;
        let e = second.body[s..].find('<').unwrap() + s;
        second.body[s..e].to_string()
    };
    let typed = phone
        .get(&env.url(&format!(
            "/_wxgate/scan/c?code={}",
            code.to_lowercase().replace('-', "")
        )))
        .await;
    assert_eq!(typed.status, 302);
    assert_eq!(
        env.url(typed.location.as_deref().unwrap()),
        scan_url_of(&second)
    );
    let c2 = phone
        .follow(&env.url(""), &env.url(typed.location.as_deref().unwrap()))
        .await;
    assert_eq!(c2.status, 200);
    assert!(c2.body.contains("Safari"), "{}", c2.body);
    assert_eq!(
        env.mock.calls("consent"),
        authorizations,
        "no second WeChat authorization"
    );

    let wrong = phone.get(&env.url("/_wxgate/scan/c?code=ZZZZ-ZZZZ")).await;
    assert_eq!(wrong.status, 200);
    assert!(wrong.body.contains("unknown or has expired"));
}

#[tokio::test]
async fn a_cancelled_sign_in_signs_nobody_in_and_says_so_on_both_sides() {
    let env = start("qr", "2m").await;
    let mut desktop = Browser::desktop();
    let page = desktop.get(&env.url("/x")).await;
    let ticket = ticket_of(&scan_url_of(&page));
    let mut phone = Browser::phone();
    let confirm = phone_scans(&env, &mut phone, &scan_url_of(&page), "alice", true).await;
    let answer = phone.post(&confirm_url(&env, &confirm, "cancel")).await;
    assert_eq!(answer.header("x-wxgate-scan"), Some("cancelled_now"));
    assert_eq!(
        status(&env, &mut desktop, &ticket).await.json()["status"],
        "cancelled"
    );
    let done = desktop
        .get(&env.url(&format!("/_wxgate/scan/done/{ticket}")))
        .await;
    assert_eq!(done.status, 410);
    assert!(done.body.contains("Cancelled on the phone"));
    assert!(
        done.body.contains("/_wxgate/start?rd=%2Fx"),
        "one click to start over"
    );
    assert_eq!(
        desktop.get_json(&env.url("/_wxgate/userinfo")).await.status,
        401
    );
    // Confirming after cancelling changes nothing.
    let late = phone.post(&confirm_url(&env, &confirm, "confirm")).await;
    assert_eq!(late.header("x-wxgate-scan"), Some("cancelled"));
}

#[tokio::test]
async fn an_expired_code_cannot_be_scanned_and_the_page_offers_a_new_one() {
    let env = start("qr", "1s").await;
    let mut desktop = Browser::desktop();
    let page = desktop.get(&env.url("/x")).await;
    assert!(
        page.body.contains("id=\"wxgate-renew\""),
        "a renew button, shown on expiry"
    );
    let scan_url = scan_url_of(&page);
    let ticket = ticket_of(&scan_url);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status(&env, &mut desktop, &ticket).await.json()["status"] != "expired" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ticket never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut phone = Browser::phone();
    let scanned = phone.get(&scan_url).await;
    assert_eq!(scanned.status, 410);
    assert_eq!(scanned.header("x-wxgate-scan"), Some("expired"));
    assert_eq!(
        env.mock.calls("authorize"),
        0,
        "no WeChat authorization for a dead code"
    );
    let done = desktop
        .get(&env.url(&format!("/_wxgate/scan/done/{ticket}")))
        .await;
    assert_eq!(done.status, 410);
    assert!(done.body.contains("This code has expired"));
}

#[tokio::test]
async fn a_completed_code_cannot_be_used_again() {
    let env = start("qr", "2m").await;
    let mut desktop = Browser::desktop();
    let page = desktop.get(&env.url("/x")).await;
    let scan_url = scan_url_of(&page);
    let ticket = ticket_of(&scan_url);
    let mut phone = Browser::phone();
    let confirm = phone_scans(&env, &mut phone, &scan_url, "alice", true).await;
    phone.post(&confirm_url(&env, &confirm, "confirm")).await;
    let done_url = env.url(&format!("/_wxgate/scan/done/{ticket}"));
    assert_eq!(desktop.get(&done_url).await.status, 302);

    let again = desktop.get(&done_url).await;
    assert_eq!(again.status, 410);
    assert!(again.body.contains("already been used"));
    let rescan = phone.get(&scan_url).await;
    assert_eq!(rescan.header("x-wxgate-scan"), Some("used"));
    let reconfirm = phone.post(&confirm_url(&env, &confirm, "confirm")).await;
    assert_eq!(reconfirm.header("x-wxgate-scan"), Some("used"));
}

#[tokio::test]
async fn a_leaked_ticket_cannot_be_completed_from_another_browser() {
    let env = start("qr", "2m").await;
    let mut victim = Browser::desktop();
    let page = victim.get(&env.url("/x")).await;
    let scan_url = scan_url_of(&page);
    let ticket = ticket_of(&scan_url);
    let mut attacker = Browser::desktop();
    // The attacker has a QR page of their own, hence a nonce cookie of their own.
    attacker.get(&env.url("/y")).await;

    let mut phone = Browser::phone();
    let confirm = phone_scans(&env, &mut phone, &scan_url, "alice", true).await;
    phone.post(&confirm_url(&env, &confirm, "confirm")).await;

    let peek = status(&env, &mut attacker, &ticket).await;
    assert_eq!(peek.status, 403);
    assert_eq!(peek.json()["status"], "wrong_browser");
    let stolen = attacker
        .get(&env.url(&format!("/_wxgate/scan/done/{ticket}")))
        .await;
    assert_eq!(stolen.status, 403);
    assert_eq!(
        attacker
            .get_json(&env.url("/_wxgate/userinfo"))
            .await
            .status,
        401
    );

    // The browser that showed the code still completes.
    let done = victim
        .get(&env.url(&format!("/_wxgate/scan/done/{ticket}")))
        .await;
    assert_eq!(done.status, 302);
    assert_eq!(
        who(&env, &mut victim).await["openid"],
        env.mock.openid("alice", &env.appid())
    );

    // A forged or missing confirmation token does nothing.
    let mut other_phone = Browser::phone();
    let page2 = Browser::desktop().get(&env.url("/z")).await;
    let c2 = phone_scans(&env, &mut other_phone, &scan_url_of(&page2), "bob", true).await;
    let forged = confirm_url(&env, &c2, "confirm");
    let forged = format!("{}?csrf=AAAA", forged.split('?').next().unwrap());
    assert_eq!(
        other_phone.post(&forged).await.header("x-wxgate-scan"),
        Some("forbidden")
    );
}

#[tokio::test]
async fn a_phone_that_refuses_consent_signs_nobody_in() {
    let env = start("qr", "2m").await;
    let mut desktop = Browser::desktop();
    let page = desktop.get(&env.url("/x")).await;
    let scan_url = scan_url_of(&page);
    let ticket = ticket_of(&scan_url);
    let mut phone = Browser::phone();
    let refused = phone_scans(&env, &mut phone, &scan_url, "alice", false).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains(&format!("scan%2Fs%2F{ticket}")),
        "try again leads back to the scan"
    );
    assert_eq!(
        status(&env, &mut desktop, &ticket).await.json()["status"],
        "pending"
    );
    assert_eq!(
        desktop.get_json(&env.url("/_wxgate/userinfo")).await.status,
        401
    );
    assert_eq!(
        phone.get_json(&env.url("/_wxgate/userinfo")).await.status,
        401
    );
}

#[tokio::test]
async fn two_computers_scanned_at_once_each_get_the_right_user() {
    let env = start("qr", "2m").await;
    let (mut d1, mut d2) = (Browser::desktop(), Browser::new(SAFARI_ON_MAC));
    let (p1, p2) = (
        d1.get(&env.url("/one")).await,
        d2.get(&env.url("/two")).await,
    );
    let (s1, s2) = (scan_url_of(&p1), scan_url_of(&p2));
    assert_ne!(s1, s2);
    let (mut alice, mut bob) = (Browser::phone(), Browser::phone());
    let (c1, c2) = tokio::join!(
        phone_scans(&env, &mut alice, &s1, "alice", true),
        phone_scans(&env, &mut bob, &s2, "bob", true)
    );
    // Bob confirms first.
    bob.post(&confirm_url(&env, &c2, "confirm")).await;
    alice.post(&confirm_url(&env, &c1, "confirm")).await;
    let (t1, t2) = (ticket_of(&s1), ticket_of(&s2));
    let done1 = d1.get(&env.url(&format!("/_wxgate/scan/done/{t1}"))).await;
    let done2 = d2.get(&env.url(&format!("/_wxgate/scan/done/{t2}"))).await;
    assert_eq!(done1.location.as_deref(), Some("/one"));
    assert_eq!(done2.location.as_deref(), Some("/two"));
    assert_eq!(
        who(&env, &mut d1).await["openid"],
        env.mock.openid("alice", &env.appid())
    );
    assert_eq!(
        who(&env, &mut d2).await["openid"],
        env.mock.openid("bob", &env.appid())
    );

    // A second phone cannot answer a code another phone has scanned.
    let p3 = Browser::desktop().get(&env.url("/three")).await;
    let mut carol = Browser::phone();
    phone_scans(&env, &mut alice, &scan_url_of(&p3), "alice", true).await;
    let late = phone_scans(&env, &mut carol, &scan_url_of(&p3), "carol", true).await;
    assert_eq!(late.header("x-wxgate-scan"), Some("scanned_elsewhere"));
}

#[tokio::test]
async fn the_mocks_simulated_phone_completes_a_sign_in_for_the_demo() {
    let env = start("qr", "2m").await;
    let mut desktop = Browser::desktop();
    let page = desktop.get(&env.url("/demo")).await;
    let simulate = attr_after(&page.body, "id=\"wxgate-simulate\"", "href")
        .expect("a simulate-the-phone link while WeChat is the mock");
    assert!(
        simulate.starts_with(&env.mock_url("/mock/phone?url=")),
        "{simulate}"
    );

    let mut tab = Browser::desktop();
    let pick = tab.get(&simulate).await;
    assert!(
        pick.body.contains("user=bob"),
        "the phone page offers the test users"
    );
    let confirm = tab.get(&format!("{simulate}&user=bob")).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(confirm.body.contains("Chrome 120"));
    let submit = attr_after(&confirm.body, "id=\"wxgate-request\"", "action").unwrap();
    assert!(submit.starts_with("/mock/phone/submit?"), "{submit}");
    let answer = tab.post(&env.mock_url(&submit)).await;
    assert!(answer.body.contains("Confirmed"), "{}", answer.body);

    let ticket = ticket_of(&scan_url_of(&page));
    assert_eq!(
        desktop
            .get(&env.url(&format!("/_wxgate/scan/done/{ticket}")))
            .await
            .status,
        302
    );
    assert_eq!(
        who(&env, &mut desktop).await["openid"],
        env.mock.openid("bob", &env.appid())
    );
}

#[tokio::test]
async fn inside_wechat_the_normal_authorization_is_used_not_the_qr() {
    let env = start("qr", "2m").await;
    let mut phone = Browser::phone();
    let p = phone.get(&env.url("/x")).await;
    assert_eq!(p.status, 302);
    assert!(p.location.unwrap().contains("/connect/oauth2/authorize"));
}

// ---------------------------------------------------------------- qrconnect, off

#[tokio::test]
async fn qrconnect_signs_a_computer_in_with_the_website_apps_identity() {
    let env = start("qrconnect", "2m").await;
    let mut desktop = Browser::desktop();
    let first = desktop.get(&env.url("/reports")).await;
    assert_eq!(first.status, 302);
    let link = first.location.unwrap();
    assert!(
        link.starts_with(&env.mock_url("/connect/qrconnect?")),
        "{link}"
    );
    assert_eq!(query_param(&link, "appid").unwrap(), env.website_appid());
    assert_eq!(query_param(&link, "scope").unwrap(), "snsapi_login");
    assert_eq!(desktop.get(&link).await.status, 200, "the mock's QR page");
    let resp = desktop
        .client
        .post(env.mock_url("/connect/qrconnect/confirm"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("appid", query_param(&link, "appid").unwrap()),
            ("redirect_uri", query_param(&link, "redirect_uri").unwrap()),
            ("scope", "snsapi_login".to_string()),
            ("state", query_param(&link, "state").unwrap()),
            ("user", "alice".to_string()),
            ("action", "allow".to_string()),
        ]))
        .send()
        .await
        .unwrap();
    let callback = resp.headers()["location"].to_str().unwrap().to_string();
    let landed = desktop.get(&callback).await;
    assert_eq!(landed.location.as_deref(), Some("/reports"));
    let page = desktop.get(&env.url("/reports")).await;
    let echo: Value = serde_json::from_str(&page.body).unwrap();
    let claims = identity_claims(&echo);
    assert_eq!(
        claims["appid"],
        env.website_appid(),
        "the website app issued this openid"
    );
    assert_eq!(
        claims["openid"],
        env.mock.openid("alice", &env.website_appid())
    );
    assert_ne!(claims["openid"], env.mock.openid("alice", &env.appid()));
    assert_eq!(
        claims["unionid"],
        env.mock.unionid("alice").unwrap(),
        "the same person everywhere"
    );

    // Inside WeChat the official account still signs in; same unionid, other openid.
    let mut phone = Browser::phone();
    let a = phone.get(&env.url("/reports")).await.location.unwrap();
    assert!(a.contains("/connect/oauth2/authorize"));
    let code = env
        .mock
        .issue_code("alice", "snsapi_userinfo", &env.appid());
    let state = query_param(&a, "state").unwrap();
    phone
        .get(&env.url(&format!("/_wxgate/callback?code={code}&state={state}")))
        .await;
    let me = who(&env, &mut phone).await;
    assert_eq!(me["appid"], env.appid());
    assert_eq!(me["unionid"], claims["unionid"]);
}

#[tokio::test]
async fn with_desktop_sign_in_off_a_computer_is_asked_to_open_the_page_in_wechat() {
    let env = start("off", "2m").await;
    let mut desktop = Browser::desktop();
    let page = desktop.get(&env.url("/orders/7?x=1")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Please open this page in WeChat"));
    assert!(page.body.contains("<svg"));
    assert_eq!(
        scan_url_of(&page),
        env.url("/orders/7?x=1"),
        "the QR is this page's URL"
    );
    assert_eq!(
        env.mock.calls("authorize"),
        0,
        "never sent to WeChat's authorize page"
    );
    let scan = desktop.get(&env.url("/_wxgate/scan/s/abc")).await;
    assert_eq!(scan.status, 404, "no scan flow when it is off");
}
