//! Signing in from a computer: the scan-to-sign-in QR flow, the website app's
//! qrconnect, and the "open in WeChat" page, over real HTTP against the mock WeChat.

use std::time::Duration;

use crate::support::harness::Site;
use crate::support::wechat::{identity_of, url_param, Browser};
use crate::support::{proxy, Answer};
use serde_json::Value;
use wxgate::config::{DesktopMode, Dur};

pub const CHROME_ON_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
pub const SAFARI_ON_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
pub const CHROME_ON_ANDROID: &str = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
pub const SAFARI_ON_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";

// ---------------------------------------------------------------- harness

/// Mock WeChat + echo upstream + wxgate (sign-in required, snsapi_userinfo) with
/// desktop sign-in in `mode`. `ticket_ttl` may be shorter than `wxgate check` allows,
/// so that expiry is observed in seconds.
async fn start(mode: DesktopMode, ticket_ttl: Duration) -> Site {
    proxy()
        .desktop(mode)
        .test_only(|c| c.desktop.ticket_ttl = Dur(ticket_ttl))
        .run_site()
        .await
}

const TWO_MINUTES: Duration = Duration::from_secs(120);

async fn start_qr() -> Site {
    start(DesktopMode::Qr, TWO_MINUTES).await
}

fn desktop_browser(env: &Site) -> Browser {
    env.browser(CHROME_ON_WINDOWS)
}

fn website_appid(env: &Site) -> String {
    env.mock.config().website_appid.clone()
}

/// The value of `attr="..."` after the first `marker` in `html`, unescaped.
fn attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let at = html.find(marker)?;
    let rest = &html[at..];
    let start = rest.find(&format!("{attr}=\""))? + attr.len() + 2;
    let end = rest[start..].find('"')? + start;
    Some(rest[start..end].replace("&amp;", "&"))
}

fn scan_url_of(page: &Answer) -> String {
    attr_after(&page.text(), "id=\"wxgate-qr\"", "data-scan-url")
        .expect("the QR page names its scan URL")
}

fn ticket_of(scan_url: &str) -> String {
    scan_url.rsplit('/').next().unwrap().to_string()
}

/// The phone opens the scan URL in WeChat, consents on the mock as `user` (or refuses),
/// and comes back to wxgate: the confirmation page (or the refusal).
async fn phone_scans(phone: &mut Browser, scan_url: &str, user: &str, allow: bool) -> Answer {
    let first = phone.get(scan_url).await;
    let Some(authorize) = first
        .header("location")
        .filter(|l| l.contains("/connect/oauth2/authorize"))
        .map(str::to_string)
    else {
        // Already signed in on this phone: straight to the confirmation.
        return first;
    };
    let action = if allow { "allow" } else { "refuse" };
    let callback = phone.consent(&authorize, user, action).await;
    phone.follow(&callback).await
}

fn confirm_url(env: &Site, confirm_page: &Answer, which: &str) -> String {
    let body = confirm_page.text();
    let marker = format!("/_wxgate/scan/{which}/");
    let at = body.find(&marker).expect("the page has the form");
    let end = body[at..].find('"').unwrap() + at;
    env.url(&body[at..end].replace("&amp;", "&"))
}

async fn status(env: &Site, b: &mut Browser, ticket: &str) -> Answer {
    b.get_json(&env.url(&format!("/_wxgate/scan/status/{ticket}")))
        .await
}

/// The desktop asks for `path` and gets the QR page: (page, scan URL, ticket).
async fn qr_page(env: &Site, desktop: &mut Browser, path: &str) -> (Answer, String, String) {
    let page = desktop.get(&env.url(path)).await;
    let scan_url = scan_url_of(&page);
    let ticket = ticket_of(&scan_url);
    (page, scan_url, ticket)
}

/// The QR page's browser comes back for its ticket once the phone has answered.
async fn done(env: &Site, b: &mut Browser, ticket: &str) -> Answer {
    b.get(&env.url(&format!("/_wxgate/scan/done/{ticket}")))
        .await
}

/// Whether `b` is signed out (userinfo answers 401).
async fn signed_out(env: &Site, b: &mut Browser) -> bool {
    b.get_json(&env.url("/_wxgate/userinfo")).await.status == 401
}

async fn who(env: &Site, b: &mut Browser) -> Value {
    let p = b.get_json(&env.url("/_wxgate/userinfo")).await;
    assert_eq!(p.status, 200, "signed in: {}", p.text());
    p.json()
}

/// The identity JWT the upstream received, verified as the upstream would.
async fn identity_claims(env: &Site, echo: &Value) -> Value {
    env.verify(&identity_of(echo)).await
}

// ---------------------------------------------------------------- qr

#[tokio::test]
async fn a_computer_signs_in_by_scanning_and_confirming_on_the_phone() {
    let env = start_qr().await;
    let mut desktop = desktop_browser(&env);
    let (page, scan_url, ticket) = qr_page(&env, &mut desktop, "/orders/42?tab=open").await;
    assert_eq!(
        page.status, 200,
        "a desktop browser gets the QR page, not WeChat"
    );
    assert!(page.text().contains("<svg"), "an inline SVG QR code");
    assert!(
        page.text().contains("id=\"wxgate-code\""),
        "a short code for typing"
    );
    assert!(
        page.text().contains("/_wxgate/scan/status/"),
        "the page polls its status"
    );
    assert_eq!(env.mock.calls("authorize"), 0);
    assert!(
        scan_url.starts_with(&env.url("/_wxgate/scan/s/")),
        "{scan_url}"
    );
    assert_eq!(
        status(&env, &mut desktop, &ticket).await.json()["status"],
        "pending"
    );

    let mut phone = env.phone();
    let confirm = phone_scans(&mut phone, &scan_url, "alice", true).await;
    assert_eq!(confirm.status, 200, "{}", confirm.text());
    assert!(
        confirm.text().contains("Chrome 120"),
        "names the waiting browser"
    );
    assert!(confirm.text().contains("Windows"), "and its OS");
    assert!(
        confirm.text().contains(&env.addr.to_string()),
        "and the site"
    );
    assert!(confirm.text().contains("UTC"), "and the time");
    assert_eq!(
        status(&env, &mut desktop, &ticket).await.json()["status"],
        "scanned"
    );

    let answer = phone.post(&confirm_url(&env, &confirm, "confirm")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("x-wxgate-scan"), Some("confirmed"));

    let st = status(&env, &mut desktop, &ticket).await.json();
    assert_eq!(st["status"], "confirmed");
    let done = desktop.get(&env.url(st["next"].as_str().unwrap())).await;
    assert_eq!(done.status, 302);
    assert_eq!(
        done.header("location"),
        Some("/orders/42?tab=open"),
        "lands where it first asked"
    );

    let upstream = desktop.get(&env.url("/orders/42?tab=open")).await;
    assert_eq!(upstream.status, 200);
    let echo: Value = upstream.json();
    let claims = identity_claims(&env, &echo).await;
    assert_eq!(claims["openid"], env.mock.openid("alice", &env.appid));
    assert_eq!(claims["nickname"], "Alice 🌸");

    let d = who(&env, &mut desktop).await;
    let p = who(&env, &mut phone).await;
    assert_eq!(d["openid"], p["openid"], "the same WeChat user");
    assert_ne!(d["sid"], p["sid"], "but the computer has its own session");
}

/// The short code a waiting page shows, and the scan URL it stands for.
fn typed_code_of(page: &Answer) -> (String, String) {
    let body = page.text();
    let at = body.find("id=\"wxgate-code\"").expect("a code to type");
    let s = body[at..].find('>').unwrap() + at + 1;
    let e = body[s..].find('<').unwrap() + s;
    let scan = attr_after(&body, "id=\"wxgate-code\"", "data-scan-url").expect("its scan URL");
    (body[s..e].to_string(), scan)
}

#[tokio::test]
async fn a_phone_outside_wechat_is_asked_to_open_the_page_in_wechat_or_type_the_code() {
    let env = start_qr().await;
    for ua in [SAFARI_ON_IPHONE, CHROME_ON_ANDROID] {
        let mut mobile = env.browser(ua);
        let page = mobile.get(&env.url("/orders/7?x=1")).await;
        assert_eq!(page.status, 200, "{ua}");
        let text = page.text();
        assert!(text.contains("Open this page in WeChat"), "{ua}: {text}");
        assert!(
            !text.contains("<svg"),
            "{ua}: no QR code to scan with itself"
        );
        assert_eq!(
            attr_after(&text, "id=\"wxgate-link\"", "value"),
            Some(env.url("/orders/7?x=1")),
            "{ua}: the link to copy is the page asked for"
        );
        assert!(text.contains("id=\"wxgate-copy\""), "{ua}: a copy button");
        assert!(text.contains("navigator.clipboard"), "{ua}");
    }
    assert_eq!(env.mock.calls("authorize"), 0, "never sent to WeChat");

    // The typed code signs this phone browser in, confirmed from WeChat.
    let mut mobile = env.browser(SAFARI_ON_IPHONE);
    let page = mobile.get(&env.url("/orders/7?x=1")).await;
    let (code, scan_url) = typed_code_of(&page);
    let mut wechat = env.phone();
    let typed = wechat
        .get(&env.url(&format!("/_wxgate/scan/c?code={code}")))
        .await;
    assert_eq!(typed.status, 302, "{}", typed.text());
    assert_eq!(env.url(typed.header("location").unwrap()), scan_url);
    let confirm = phone_scans(&mut wechat, &scan_url, "alice", true).await;
    assert!(confirm.text().contains("Safari"), "{}", confirm.text());
    wechat.post(&confirm_url(&env, &confirm, "confirm")).await;
    let ticket = ticket_of(&scan_url);
    let st = status(&env, &mut mobile, &ticket).await.json();
    assert_eq!(st["status"], "confirmed");
    let done = mobile.get(&env.url(st["next"].as_str().unwrap())).await;
    assert_eq!(done.header("location"), Some("/orders/7?x=1"));
    let echo: Value = mobile.get(&env.url("/orders/7?x=1")).await.json();
    let claims = identity_claims(&env, &echo).await;
    assert_eq!(claims["openid"], env.mock.openid("alice", &env.appid));

    // A computer keeps the QR code.
    let mut desktop = desktop_browser(&env);
    let page = desktop.get(&env.url("/orders/7")).await;
    assert!(page.text().contains("<svg"));
    assert!(!page.text().contains("id=\"wxgate-copy\""));
}

#[tokio::test]
async fn the_phone_reuses_its_session_and_can_type_the_code_instead_of_scanning() {
    let env = start_qr().await;
    let mut phone = env.phone();
    let mut d1 = desktop_browser(&env);
    let first = d1.get(&env.url("/a")).await;
    let c1 = phone_scans(&mut phone, &scan_url_of(&first), "bob", true).await;
    phone.post(&confirm_url(&env, &c1, "confirm")).await;
    let authorizations = env.mock.calls("consent");

    // A second computer: the phone types the short code instead of scanning.
    let mut d2 = env.browser(SAFARI_ON_MAC);
    let second = d2.get(&env.url("/b")).await;
    let code = {
        let body = second.text();
        let at = body.find("id=\"wxgate-code\"").unwrap();
        let s = body[at..].find('>').unwrap() + at + 1;
        let e = body[s..].find('<').unwrap() + s;
        body[s..e].to_string()
    };
    let typed = phone
        .get(&env.url(&format!(
            "/_wxgate/scan/c?code={}",
            code.to_lowercase().replace('-', "")
        )))
        .await;
    assert_eq!(typed.status, 302);
    assert_eq!(
        env.url(typed.header("location").unwrap()),
        scan_url_of(&second)
    );
    let c2 = phone.follow(typed.header("location").unwrap()).await;
    assert_eq!(c2.status, 200);
    assert!(c2.text().contains("Safari"), "{}", c2.text());
    assert_eq!(
        env.mock.calls("consent"),
        authorizations,
        "no second WeChat authorization"
    );

    let wrong = phone.get(&env.url("/_wxgate/scan/c?code=ZZZZ-ZZZZ")).await;
    assert_eq!(wrong.status, 200);
    assert!(wrong.text().contains("unknown or has expired"));
}

#[tokio::test]
async fn a_cancelled_sign_in_signs_nobody_in_and_says_so_on_both_sides() {
    let env = start_qr().await;
    let mut desktop = desktop_browser(&env);
    let (_, scan_url, ticket) = qr_page(&env, &mut desktop, "/x").await;
    let mut phone = env.phone();
    let confirm = phone_scans(&mut phone, &scan_url, "alice", true).await;
    let answer = phone.post(&confirm_url(&env, &confirm, "cancel")).await;
    assert_eq!(answer.header("x-wxgate-scan"), Some("cancelled_now"));
    assert_eq!(
        status(&env, &mut desktop, &ticket).await.json()["status"],
        "cancelled"
    );
    let done = done(&env, &mut desktop, &ticket).await;
    assert_eq!(done.status, 410);
    assert!(done.text().contains("Cancelled on the phone"));
    assert!(
        done.text().contains("/_wxgate/start?rd=%2Fx"),
        "one click to start over"
    );
    assert!(signed_out(&env, &mut desktop).await);
    // Confirming after cancelling changes nothing.
    let late = phone.post(&confirm_url(&env, &confirm, "confirm")).await;
    assert_eq!(late.header("x-wxgate-scan"), Some("cancelled"));
}

#[tokio::test]
async fn an_expired_code_cannot_be_scanned_and_the_page_offers_a_new_one() {
    let env = start(DesktopMode::Qr, Duration::from_secs(1)).await;
    let mut desktop = desktop_browser(&env);
    let (page, scan_url, ticket) = qr_page(&env, &mut desktop, "/x").await;
    assert!(
        page.text().contains("id=\"wxgate-renew\""),
        "a renew button, shown on expiry"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status(&env, &mut desktop, &ticket).await.json()["status"] != "expired" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ticket never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut phone = env.phone();
    let scanned = phone.get(&scan_url).await;
    assert_eq!(scanned.status, 410);
    assert_eq!(scanned.header("x-wxgate-scan"), Some("expired"));
    assert_eq!(
        env.mock.calls("authorize"),
        0,
        "no WeChat authorization for a dead code"
    );
    let done = done(&env, &mut desktop, &ticket).await;
    assert_eq!(done.status, 410);
    assert!(done.text().contains("This code has expired"));
}

#[tokio::test]
async fn a_completed_code_cannot_be_used_again() {
    let env = start_qr().await;
    let mut desktop = desktop_browser(&env);
    let (_, scan_url, ticket) = qr_page(&env, &mut desktop, "/x").await;
    let mut phone = env.phone();
    let confirm = phone_scans(&mut phone, &scan_url, "alice", true).await;
    phone.post(&confirm_url(&env, &confirm, "confirm")).await;
    let done_url = env.url(&format!("/_wxgate/scan/done/{ticket}"));
    assert_eq!(desktop.get(&done_url).await.status, 302);

    let again = desktop.get(&done_url).await;
    assert_eq!(again.status, 410);
    assert!(again.text().contains("already been used"));
    let rescan = phone.get(&scan_url).await;
    assert_eq!(rescan.header("x-wxgate-scan"), Some("used"));
    let reconfirm = phone.post(&confirm_url(&env, &confirm, "confirm")).await;
    assert_eq!(reconfirm.header("x-wxgate-scan"), Some("used"));
}

#[tokio::test]
async fn a_leaked_ticket_cannot_be_completed_from_another_browser() {
    let env = start_qr().await;
    let mut victim = desktop_browser(&env);
    let (_, scan_url, ticket) = qr_page(&env, &mut victim, "/x").await;
    let mut attacker = desktop_browser(&env);
    // The attacker has a QR page of their own, hence a nonce cookie of their own.
    attacker.get(&env.url("/y")).await;

    let mut phone = env.phone();
    let confirm = phone_scans(&mut phone, &scan_url, "alice", true).await;
    phone.post(&confirm_url(&env, &confirm, "confirm")).await;

    let peek = status(&env, &mut attacker, &ticket).await;
    assert_eq!(peek.status, 403);
    assert_eq!(peek.json()["status"], "wrong_browser");
    let stolen = done(&env, &mut attacker, &ticket).await;
    assert_eq!(stolen.status, 403);
    assert!(signed_out(&env, &mut attacker).await);

    // The browser that showed the code still completes.
    let done = done(&env, &mut victim, &ticket).await;
    assert_eq!(done.status, 302);
    assert_eq!(
        who(&env, &mut victim).await["openid"],
        env.mock.openid("alice", &env.appid)
    );

    // A forged or missing confirmation token does nothing.
    let mut other_phone = env.phone();
    let page2 = desktop_browser(&env).get(&env.url("/z")).await;
    let c2 = phone_scans(&mut other_phone, &scan_url_of(&page2), "bob", true).await;
    let forged = confirm_url(&env, &c2, "confirm");
    let forged = format!("{}?csrf=AAAA", forged.split('?').next().unwrap());
    assert_eq!(
        other_phone.post(&forged).await.header("x-wxgate-scan"),
        Some("forbidden")
    );
}

#[tokio::test]
async fn a_phone_that_refuses_consent_signs_nobody_in() {
    let env = start_qr().await;
    let mut desktop = desktop_browser(&env);
    let (_, scan_url, ticket) = qr_page(&env, &mut desktop, "/x").await;
    let mut phone = env.phone();
    let refused = phone_scans(&mut phone, &scan_url, "alice", false).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains(&format!("scan%2Fs%2F{ticket}")),
        "try again leads back to the scan"
    );
    assert_eq!(
        status(&env, &mut desktop, &ticket).await.json()["status"],
        "pending"
    );
    assert!(signed_out(&env, &mut desktop).await);
    assert!(signed_out(&env, &mut phone).await);
}

#[tokio::test]
async fn two_computers_scanned_at_once_each_get_the_right_user() {
    let env = start_qr().await;
    let (mut d1, mut d2) = (desktop_browser(&env), env.browser(SAFARI_ON_MAC));
    let (p1, p2) = (
        d1.get(&env.url("/one")).await,
        d2.get(&env.url("/two")).await,
    );
    let (s1, s2) = (scan_url_of(&p1), scan_url_of(&p2));
    assert_ne!(s1, s2);
    let (mut alice, mut bob) = (env.phone(), env.phone());
    let (c1, c2) = tokio::join!(
        phone_scans(&mut alice, &s1, "alice", true),
        phone_scans(&mut bob, &s2, "bob", true)
    );
    // Bob confirms first.
    bob.post(&confirm_url(&env, &c2, "confirm")).await;
    alice.post(&confirm_url(&env, &c1, "confirm")).await;
    let (t1, t2) = (ticket_of(&s1), ticket_of(&s2));
    let done1 = done(&env, &mut d1, &t1).await;
    let done2 = done(&env, &mut d2, &t2).await;
    assert_eq!(done1.header("location"), Some("/one"));
    assert_eq!(done2.header("location"), Some("/two"));
    assert_eq!(
        who(&env, &mut d1).await["openid"],
        env.mock.openid("alice", &env.appid)
    );
    assert_eq!(
        who(&env, &mut d2).await["openid"],
        env.mock.openid("bob", &env.appid)
    );

    // A second phone cannot answer a code another phone has scanned.
    let p3 = desktop_browser(&env).get(&env.url("/three")).await;
    let mut carol = env.phone();
    phone_scans(&mut alice, &scan_url_of(&p3), "alice", true).await;
    let late = phone_scans(&mut carol, &scan_url_of(&p3), "carol", true).await;
    assert_eq!(late.header("x-wxgate-scan"), Some("scanned_elsewhere"));
}

#[tokio::test]
async fn the_mocks_simulated_phone_completes_a_sign_in_for_the_demo() {
    let env = start_qr().await;
    let mut desktop = desktop_browser(&env);
    let page = desktop.get(&env.url("/demo")).await;
    let simulate = attr_after(&page.text(), "id=\"wxgate-simulate\"", "href")
        .expect("a simulate-the-phone link while WeChat is the mock");
    assert!(
        simulate.starts_with(&env.mock_url("/mock/phone?url=")),
        "{simulate}"
    );

    let mut tab = desktop_browser(&env);
    let pick = tab.get(&simulate).await;
    assert!(
        pick.text().contains("user=bob"),
        "the phone page offers the test users"
    );
    let confirm = tab.get(&format!("{simulate}&user=bob")).await;
    assert_eq!(confirm.status, 200, "{}", confirm.text());
    assert!(confirm.text().contains("Chrome 120"));
    let submit = attr_after(&confirm.text(), "id=\"wxgate-request\"", "action").unwrap();
    assert!(submit.starts_with("/mock/phone/submit?"), "{submit}");
    let answer = tab.post(&env.mock_url(&submit)).await;
    assert!(answer.text().contains("Confirmed"), "{}", answer.text());

    let ticket = ticket_of(&scan_url_of(&page));
    assert_eq!(done(&env, &mut desktop, &ticket).await.status, 302);
    assert_eq!(
        who(&env, &mut desktop).await["openid"],
        env.mock.openid("bob", &env.appid)
    );
}

#[tokio::test]
async fn beyond_max_tickets_new_qr_pages_are_refused_and_the_waiting_ones_still_work() {
    let env = proxy()
        .desktop(DesktopMode::Qr)
        .test_only(|c| c.desktop.max_tickets = 2)
        .run_site()
        .await;
    let mut first = desktop_browser(&env);
    let (_, scan_url, ticket) = qr_page(&env, &mut first, "/one").await;
    let mut second = desktop_browser(&env);
    let (page, _, _) = qr_page(&env, &mut second, "/two").await;
    assert_eq!(page.status, 200, "two QR pages fit the budget");

    let mut third = desktop_browser(&env);
    let refused = third.get(&env.url("/three")).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.text().contains("Too many sign-ins in progress"),
        "{}",
        refused.text()
    );
    assert!(refused.header("retry-after").is_some());
    assert!(
        !refused.text().contains("data-scan-url") && refused.header("set-cookie").is_none(),
        "a refused page shows no ticket and sets nothing"
    );
    assert!(
        refused.text().contains("/_wxgate/start?rd=%2Fthree"),
        "a retry button back to the page asked for: {}",
        refused.text()
    );

    // The pages already shown are not affected: the first one completes.
    let mut phone = env.phone();
    let confirm = phone_scans(&mut phone, &scan_url, "alice", true).await;
    assert_eq!(confirm.status, 200, "{}", confirm.text());
    let answer = phone.post(&confirm_url(&env, &confirm, "confirm")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let landed = done(&env, &mut first, &ticket).await;
    assert_eq!(landed.status, 302, "{}", landed.text());
    assert_eq!(
        who(&env, &mut first).await["openid"],
        env.mock.openid("alice", &env.appid)
    );
}

#[tokio::test]
async fn inside_wechat_the_normal_authorization_is_used_not_the_qr() {
    let env = start_qr().await;
    let mut phone = env.phone();
    let p = phone.get(&env.url("/x")).await;
    assert_eq!(p.status, 302);
    assert!(p
        .header("location")
        .unwrap()
        .to_string()
        .contains("/connect/oauth2/authorize"));
}

// ---------------------------------------------------------------- qrconnect, off

#[tokio::test]
async fn qrconnect_signs_a_computer_in_with_the_website_apps_identity() {
    let env = start(DesktopMode::Qrconnect, TWO_MINUTES).await;
    let mut desktop = desktop_browser(&env);
    let first = desktop.get(&env.url("/reports")).await;
    assert_eq!(first.status, 302);
    let link = first.header("location").unwrap().to_string();
    assert!(
        link.starts_with(&env.mock_url("/connect/qrconnect?")),
        "{link}"
    );
    assert_eq!(url_param(&link, "appid").unwrap(), website_appid(&env));
    assert_eq!(url_param(&link, "scope").unwrap(), "snsapi_login");
    assert_eq!(desktop.get(&link).await.status, 200, "the mock's QR page");
    let resp = desktop
        .post_form(
            &env.mock_url("/connect/qrconnect/confirm"),
            &[
                ("appid", url_param(&link, "appid").unwrap()),
                ("redirect_uri", url_param(&link, "redirect_uri").unwrap()),
                ("scope", "snsapi_login".to_string()),
                ("state", url_param(&link, "state").unwrap()),
                ("user", "alice".to_string()),
                ("action", "allow".to_string()),
            ],
        )
        .await;
    let callback = resp.header("location").unwrap().to_string();
    let landed = desktop.get(&callback).await;
    assert_eq!(landed.header("location"), Some("/reports"));
    let page = desktop.get(&env.url("/reports")).await;
    let echo: Value = page.json();
    let claims = identity_claims(&env, &echo).await;
    assert_eq!(
        claims["appid"],
        website_appid(&env),
        "the website app issued this openid"
    );
    assert_eq!(
        claims["openid"],
        env.mock.openid("alice", &website_appid(&env))
    );
    assert_ne!(claims["openid"], env.mock.openid("alice", &env.appid));
    assert_eq!(
        claims["unionid"],
        env.mock.unionid("alice").unwrap(),
        "the same person everywhere"
    );

    // Inside WeChat the official account still signs in; same unionid, other openid.
    let mut phone = env.phone();
    let a = phone
        .get(&env.url("/reports"))
        .await
        .header("location")
        .unwrap()
        .to_string();
    assert!(a.contains("/connect/oauth2/authorize"));
    let code = env.mock.issue_code("alice", "snsapi_userinfo", &env.appid);
    let state = url_param(&a, "state").unwrap();
    phone
        .get(&env.url(&format!("/_wxgate/callback?code={code}&state={state}")))
        .await;
    let me = who(&env, &mut phone).await;
    assert_eq!(me["appid"], env.appid.as_str());
    assert_eq!(me["unionid"], claims["unionid"]);
}

#[tokio::test]
async fn with_desktop_sign_in_off_a_computer_is_asked_to_open_the_page_in_wechat() {
    let env = start(DesktopMode::Off, TWO_MINUTES).await;
    let mut desktop = desktop_browser(&env);
    let page = desktop.get(&env.url("/orders/7?x=1")).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Please open this page in WeChat"));
    assert!(page.text().contains("<svg"));
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

    // A phone outside WeChat cannot scan its own screen: it gets the link to copy.
    let mut mobile = env.browser(CHROME_ON_ANDROID);
    let page = mobile.get(&env.url("/orders/7?x=1")).await;
    assert!(page.text().contains("Please open this page in WeChat"));
    assert!(!page.text().contains("<svg"));
    assert_eq!(
        attr_after(&page.text(), "id=\"wxgate-link\"", "value"),
        Some(env.url("/orders/7?x=1"))
    );
}
