//! Caddy in front of the app, asking wxgate about every request (`forward_auth`), with
//! the Caddyfile we ship in deploy/Caddyfile: the test runs that very file, only the
//! site address and the two upstream addresses changed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::harness::Site;
use crate::support::proxy;
use crate::support::skip;
use crate::support::wechat::{self, WalkingBrowser};

/// A running Caddy; killed (by pid) when dropped.
struct Caddy {
    child: Child,
    base: String,
    dir: PathBuf,
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Caddy {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("caddy.log")).unwrap_or_default()
    }
}

/// A loopback port nothing listens on right now (Caddy binds it itself).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr").port()
}

/// The shipped Caddyfile with this test's addresses; everything else as shipped.
fn caddyfile(port: u16, wxgate: SocketAddr, app: SocketAddr) -> String {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/Caddyfile"))
            .expect("deploy/Caddyfile");
    for placeholder in ["app.example.com {", "wxgate:8080", "app:80"] {
        assert!(
            shipped.contains(placeholder),
            "deploy/Caddyfile no longer has {placeholder:?}: update this test"
        );
    }
    // Global options: no admin API, logs to a file; the site on plain http (no ACME).
    format!(
        "{{\n\tadmin off\n}}\n{}",
        shipped
            .replace("app.example.com {", &format!("http://127.0.0.1:{port} {{"))
            .replace("wxgate:8080", &wxgate.to_string())
            .replace("app:80", &app.to_string())
    )
}

/// Starts Caddy in front of `gate` (wxgate) and its echo upstream, on `port`.
async fn start_caddy(port: u16, gate: &Site) -> Option<Caddy> {
    let caddy = skip::program("caddy")?;
    let dir = std::env::temp_dir().join(format!("wxgate-caddy-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("Caddyfile");
    std::fs::write(&file, caddyfile(port, gate.addr, gate.upstream.addr)).expect("write Caddyfile");
    let log = std::fs::File::create(dir.join("caddy.log")).expect("log file");
    let child = Command::new(caddy)
        .arg("run")
        .arg("--config")
        .arg(&file)
        .arg("--adapter")
        .arg("caddyfile")
        // Caddy keeps state under $HOME / XDG folders: this test's own.
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("caddy starts");
    let mut caddy = Caddy {
        child,
        base: format!("http://127.0.0.1:{port}"),
        dir,
    };
    // Ready once its port accepts connections.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(caddy);
        }
        if let Ok(Some(status)) = caddy.child.try_wait() {
            panic!("caddy exited ({status}): {}", caddy.log());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "caddy did not listen: {}",
            caddy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// wxgate behind Caddy: public_url is Caddy's address, Caddy is a trusted proxy.
async fn world() -> Option<(Site, Caddy)> {
    let port = free_port();
    let gate = proxy()
        .public_url(&format!("http://127.0.0.1:{port}"))
        .config(
            r#"
            [server]
            trusted_proxies = ["127.0.0.1/32"]
            "#,
        )
        .run_site()
        .await;
    let caddy = start_caddy(port, &gate).await?;
    Some((gate, caddy))
}

/// Every header the app saw, as (lowercase name, value).
fn headers_seen(echo: &serde_json::Value) -> Vec<(String, String)> {
    echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap_or_default().to_ascii_lowercase(),
                p[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Signs in through Caddy: Caddy shows wxgate's 401 page (which moves on to the
/// sign-in by itself); the browser follows it to WeChat and back to `path`.
async fn sign_in(browser: &WalkingBrowser, caddy: &Caddy, path: &str) -> serde_json::Value {
    let first = browser.get(&caddy.url(path)).await;
    assert_eq!(first.status, 401, "{}", first.body);
    let start = format!(
        "/_wxgate/start?rd={}",
        wxgate::wechat::encode_component(path)
    );
    assert!(
        first
            .body
            .contains(&format!("url={}", start.replace('&', "&amp;"))),
        "the page moves on to {start}: {}",
        first.body
    );
    let pages = browser.walk(&caddy.url(&start), |_| false).await;
    let last = pages.last().expect("a page");
    assert_eq!(last.status, 200, "signed in and at the app: {}", last.body);
    last.json()
}

#[tokio::test]
async fn after_sign_in_the_app_behind_caddy_gets_a_verifiable_identity_and_no_placeholder() {
    let Some((gate, caddy)) = world().await else {
        return;
    };
    let browser = WalkingBrowser::new();
    let echo = sign_in(&browser, &caddy, "/orders/42?tab=items").await;
    assert_eq!(echo["uri"], "/orders/42?tab=items");

    let token = wechat::identity_of(&echo);
    let jwks = browser.get(&caddy.url("/_wxgate/jwks.json")).await;
    assert_eq!(jwks.status, 200);
    let claims = wechat::verify(&token, &jwks.body, &gate.issuer(), &gate.audience())
        .expect("the identity header verifies with the published keys");
    let alice = gate.mock.openid("alice", &gate.mock.config().appid);
    assert_eq!(claims["sub"], alice.as_str());
    assert_eq!(
        crate::support::seen(&echo, "x-auth-request-openid"),
        vec![alice.clone()]
    );
    // snsapi_base has no nickname: nothing may stand in for it.
    for (name, value) in headers_seen(&echo) {
        assert!(
            !value.contains("{http.") && !value.contains("{rp."),
            "a Caddy placeholder reached the app: {name}: {value}"
        );
    }

    // The next request is let through by forward_auth alone.
    let again = browser.get(&caddy.url("/next")).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["uri"], "/next");
    wechat::identity_of(&again.json());
}

#[tokio::test]
async fn identity_headers_a_client_makes_up_never_reach_the_app_behind_caddy() {
    let Some((gate, caddy)) = world().await else {
        return;
    };
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let spoofs: &[(&str, &str)] = &[
        ("X-Wxgate-Jwt-Assertion", forged),
        ("X_Wxgate_Jwt_Assertion", forged),
        ("x-wxgate-openid", "admin"),
        ("X-Auth-Request-Openid", "admin"),
        ("X-Auth-Request-Nickname", "admin"),
    ];

    // Without a session the app is never reached.
    let anonymous = WalkingBrowser::new();
    let page = anonymous.get_with(&caddy.url("/admin"), spoofs).await;
    assert_eq!(page.status, 401, "{}", page.body);

    let browser = WalkingBrowser::new();
    sign_in(&browser, &caddy, "/").await;
    let echo = browser.get_with(&caddy.url("/admin"), spoofs).await.json();
    let alice = gate.mock.openid("alice", &gate.mock.config().appid);
    let token = wechat::identity_of(&echo);
    assert_ne!(token, forged);
    let jwks = browser.get(&caddy.url("/_wxgate/jwks.json")).await.body;
    let claims = wechat::verify(&token, &jwks, &gate.issuer(), &gate.audience()).expect("genuine");
    assert_eq!(claims["sub"], alice.as_str());
    assert_eq!(
        crate::support::seen(&echo, "x-auth-request-openid"),
        vec![alice]
    );
    let seen = headers_seen(&echo);
    assert!(
        !seen.iter().any(|(n, _)| n.contains('_')),
        "underscore spellings are dropped: {seen:?}"
    );
    assert!(
        !seen.iter().any(|(_, v)| v == "admin" || v == forged),
        "no made-up value reached the app: {seen:?}"
    );
}
