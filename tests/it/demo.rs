//! `wxgate demo` as a newcomer meets it: one command, one port, and every sign-in works
//! through that port alone (the mock WeChat's pages and the simulated phone included),
//! so it can be opened from another machine with `--listen 0.0.0.0:PORT --public-url`.

use std::net::SocketAddr;

use crate::support::process::{run_wxgate, Wxgate};
use crate::support::wechat::WalkingBrowser;

const CHROME_ON_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// A loopback port nothing listens on right now (the demo binds it itself).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr").port()
}

/// Every absolute URL in `html`'s `href`/`action`/`src` attributes, and a Location.
fn urls_in(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "action=\"", "src=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            let url = rest[..end].replace("&amp;", "&");
            if url.starts_with("http") {
                out.push(url);
            }
        }
    }
    out
}

/// The value of `attr="..."` after the first `marker` in `html`, unescaped.
fn attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let at = html.find(marker)?;
    let rest = &html[at..];
    let start = rest.find(&format!("{attr}=\""))? + attr.len() + 2;
    let end = rest[start..].find('"')? + start;
    Some(rest[start..end].replace("&amp;", "&"))
}

/// Starts `wxgate demo ARGS` and waits until it serves.
async fn demo(args: &[&str]) -> (Wxgate, SocketAddr) {
    let mut all = vec!["demo"];
    all.extend_from_slice(args);
    let demo = Wxgate::spawn(&all);
    let (public, _) = demo.listening().await;
    (demo, public)
}

/// A computer signs in by the demo's "simulate the phone" link, every hop on `origin`.
async fn computer_signs_in(origin: &str) {
    let computer = WalkingBrowser::new().with_user_agent(CHROME_ON_WINDOWS);
    let page = computer.get(&format!("{origin}/orders/1")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let simulate = attr_after(&page.body, "id=\"wxgate-simulate\"", "href")
        .expect("the QR page links to the simulated phone");
    let ticket_url = attr_after(&page.body, "id=\"wxgate-qr\"", "data-scan-url").expect("scan URL");
    for url in urls_in(&page.body).iter().chain([&simulate, &ticket_url]) {
        assert!(url.starts_with(origin), "{url} is not on {origin}");
    }

    // The simulated phone: pick a user, then confirm, both on the demo's one port.
    let phone = WalkingBrowser::new().with_user_agent(CHROME_ON_WINDOWS);
    let pick = phone.get(&simulate).await;
    assert_eq!(pick.status, 200, "{}", pick.body);
    let as_alice = {
        let at = pick.body.find("user=alice").expect("a link for alice");
        let start = pick.body[..at].rfind('"').unwrap() + 1;
        let end = pick.body[at..].find('"').unwrap() + at;
        format!("{origin}{}", pick.body[start..end].replace("&amp;", "&"))
    };
    let confirm = phone.get(&as_alice).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(confirm.body.contains("wxgate-confirm"), "{}", confirm.body);
    let action = attr_after(&confirm.body, "<form", "action").expect("the confirm form");
    assert!(action.starts_with("/mock/phone/submit"), "{action}");
    let done = phone.post_form(&format!("{origin}{action}"), &[]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("The computer is now signing in"),
        "{}",
        done.body
    );

    // The waiting computer collects its sign-in and sees the demo app verify it.
    let ticket = ticket_url.rsplit('/').next().unwrap();
    let status = computer
        .get(&format!("{origin}/_wxgate/scan/status/{ticket}"))
        .await;
    assert_eq!(status.json()["status"], "confirmed", "{}", status.body);
    let pages = computer
        .walk(&format!("{origin}/_wxgate/scan/done/{ticket}"), |_| false)
        .await;
    let app = pages.last().unwrap();
    assert_eq!(app.status, 200, "{}", app.body);
    assert!(app.body.contains("Alice"), "{}", app.body);
    assert!(
        app.body.contains("The identity header was verified"),
        "{}",
        app.body
    );
}

/// A phone inside WeChat signs in: authorize and consent on the demo's port too.
async fn phone_signs_in(origin: &str) {
    let phone = WalkingBrowser::new();
    let first = phone.get(&format!("{origin}/")).await;
    assert_eq!(first.status, 302, "{}", first.body);
    let authorize = first.header("location").unwrap().to_string();
    assert!(
        authorize.starts_with(&format!("{origin}/connect/oauth2/authorize?")),
        "{authorize}"
    );
    let consent = phone.get(authorize.split('#').next().unwrap()).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let field =
        |name: &str| attr_after(&consent.body, &format!("name=\"{name}\""), "value").unwrap();
    let (appid, redirect_uri, scope, state) = (
        field("appid"),
        field("redirect_uri"),
        field("scope"),
        field("state"),
    );
    let back = phone
        .post_form(
            &format!("{origin}/connect/oauth2/consent"),
            &[
                ("appid", &appid),
                ("redirect_uri", &redirect_uri),
                ("scope", &scope),
                ("state", &state),
                ("user", "bob"),
                ("action", "allow"),
            ],
        )
        .await;
    assert_eq!(back.status, 302, "{}", back.body);
    let callback = back.header("location").unwrap().to_string();
    assert!(
        callback.starts_with(&format!("{origin}/_wxgate/callback?")),
        "{callback}"
    );
    let pages = phone.walk(&callback, |_| false).await;
    let app = pages.last().unwrap();
    assert_eq!(app.status, 200, "{}", app.body);
    assert!(app.body.contains("王小明"), "{}", app.body);
}

#[tokio::test]
async fn the_demo_signs_in_a_computer_and_a_phone_through_its_one_port() {
    let (demo, public) = demo(&["--listen", "127.0.0.1:0"]).await;
    let origin = format!("http://{public}");
    computer_signs_in(&origin).await;
    phone_signs_in(&origin).await;
    // Nothing to set up, nothing to warn about.
    let warnings: Vec<_> = demo
        .json_lines()
        .into_iter()
        .filter(|l| l["level"] == "WARN")
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[tokio::test]
async fn on_every_address_the_demo_serves_the_public_url_it_is_given() {
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    // Here the machine's other name is its loopback address.
    let public_url = format!("http://127.0.0.1:{port}");
    let (_demo, _) = demo(&["--listen", &listen, "--public-url", &public_url]).await;
    computer_signs_in(&public_url).await;
    phone_signs_in(&public_url).await;
}

#[test]
fn on_every_address_without_a_public_url_the_demo_says_what_to_add() {
    let out = run_wxgate(&["demo", "--listen", "0.0.0.0:1"]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("--public-url http://"), "{err}");
}

const WECOM_ON_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 wxwork/4.1.0 MicroMessenger/7.0.1 Language/zh";

#[tokio::test]
async fn the_wecom_demo_signs_in_a_computer_by_web_login_and_a_member_in_the_wecom_app() {
    let (_demo, public) = demo(&["--listen", "127.0.0.1:0", "--wecom"]).await;
    let origin = format!("http://{public}");

    // A computer: WeCom's web-login QR, on the demo's port, scanned by its button.
    let computer = WalkingBrowser::new().with_user_agent(CHROME_ON_WINDOWS);
    let pages = computer
        .walk(&format!("{origin}/orders/1"), |_| false)
        .await;
    let qr = pages.last().unwrap();
    assert_eq!(qr.status, 200, "{}", qr.body);
    assert!(
        qr.url
            .starts_with(&format!("{origin}/wwlogin/sso/login?login_type=CorpApp&")),
        "{}",
        qr.url
    );
    let key = attr_after(&qr.body, "id=\"wecom-qr\"", "data-key").expect("the login's key");
    let action = attr_after(&qr.body, "<form", "action").expect("the scan form");
    let back = computer
        .post_form(
            &format!("{origin}{action}"),
            &[("key", &key), ("user", "lisi")],
        )
        .await;
    assert_eq!(back.status, 302, "{}", back.body);
    let callback = back.header("location").unwrap().to_string();
    assert!(
        callback.starts_with(&format!("{origin}/_wxgate/callback?")),
        "{callback}"
    );
    let app = computer.walk(&callback, |_| false).await;
    let app = app.last().unwrap();
    assert_eq!(app.status, 200, "{}", app.body);
    assert!(app.body.contains("李四"), "{}", app.body);
    assert!(
        app.body.contains("The identity header was verified"),
        "{}",
        app.body
    );

    // A member inside the WeCom app: the OAuth link and the consent page on the port.
    let phone = WalkingBrowser::new().with_user_agent(WECOM_ON_IPHONE);
    let first = phone.get(&format!("{origin}/")).await;
    assert_eq!(first.status, 302, "{}", first.body);
    let authorize = first.header("location").unwrap().to_string();
    assert!(
        authorize.starts_with(&format!("{origin}/connect/oauth2/authorize?")),
        "{authorize}"
    );
    let consent = phone.get(authorize.split('#').next().unwrap()).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let field =
        |name: &str| attr_after(&consent.body, &format!("name=\"{name}\""), "value").unwrap();
    let (redirect_uri, scope, state) = (field("redirect_uri"), field("scope"), field("state"));
    let back = phone
        .post_form(
            &format!("{origin}/connect/oauth2/wecom_consent"),
            &[
                ("redirect_uri", &redirect_uri),
                ("scope", &scope),
                ("state", &state),
                ("action", "allow"),
            ],
        )
        .await;
    assert_eq!(back.status, 302, "{}", back.body);
    let pages = phone
        .walk(back.header("location").unwrap(), |_| false)
        .await;
    let app = pages.last().unwrap();
    assert_eq!(app.status, 200, "{}", app.body);
    assert!(app.body.contains("张三"), "{}", app.body);
    assert!(app.body.contains("zhangsan@corp.example"), "{}", app.body);
}
