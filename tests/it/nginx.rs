//! Plain nginx in front of the app, asking wxgate about every request (`auth_request`),
//! with the configuration we ship in deploy/nginx/wxgate-auth.conf: the test runs that
//! very file, only its ports, certificates and log paths changed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::harness::Site;
use crate::support::proxy;
use crate::support::skip;
use crate::support::wechat::{self, sign_in, WalkingBrowser};

/// A running nginx; killed (by pid) when dropped.
struct Nginx {
    child: Child,
    base: String,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Nginx {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

/// A loopback port nothing listens on right now (nginx binds it itself).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr").port()
}

/// The shipped server block with this test's addresses; everything else as shipped.
fn server_block(port: u16, wxgate: SocketAddr, app: SocketAddr) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/wxgate-auth.conf"),
    )
    .expect("deploy/nginx/wxgate-auth.conf");
    let mut out = String::new();
    let mut replaced = 0;
    for line in shipped.lines() {
        let code = line.split('#').next().unwrap_or_default().trim();
        let line = match code {
            "server 127.0.0.1:8080;" => {
                replaced += 1;
                format!("    server {wxgate};")
            }
            "server 127.0.0.1:3000;" => {
                replaced += 1;
                format!("    server {app};")
            }
            "listen 443 ssl http2;" => {
                replaced += 1;
                format!("    listen 127.0.0.1:{port};")
            }
            c if c.starts_with("ssl_certificate") => continue,
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert_eq!(
        replaced, 3,
        "the deploy file's wxgate, app and listen lines changed: update this test"
    );
    out
}

/// Starts nginx in front of `gate` (wxgate) and its echo upstream, on `port`.
async fn start_nginx(port: u16, gate: &Site) -> Option<Nginx> {
    let nginx = skip::program("nginx")?;
    let dir = std::env::temp_dir().join(format!("wxgate-nginx-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
events {{ worker_connections 128; }}\n\
http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{}\n}}\n",
        server_block(port, gate.addr, gate.upstream.addr)
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
    let child = Command::new(nginx)
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx starts");
    let mut nginx = Nginx {
        child,
        base: format!("http://127.0.0.1:{port}"),
        dir,
    };
    // nginx says nothing when it is ready: it is once its port accepts connections.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(nginx);
        }
        if let Ok(Some(status)) = nginx.child.try_wait() {
            panic!("nginx exited ({status}): {}", nginx.error_log());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nginx did not listen: {}",
            nginx.error_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// wxgate behind nginx: public_url is nginx's address, nginx is a trusted proxy.
async fn world() -> Option<(Site, Nginx)> {
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
    let nginx = start_nginx(port, &gate).await?;
    Some((gate, nginx))
}

#[tokio::test]
async fn an_unauthenticated_wechat_browser_is_sent_through_nginx_to_wechats_authorize_page() {
    let Some((gate, nginx)) = world().await else {
        return;
    };
    let browser = WalkingBrowser::new();
    let mock = format!("http://{}/", gate.mock_addr);
    let pages = browser
        .walk(&nginx.url("/orders/42?tab=items"), |loc| {
            loc.starts_with(&mock)
        })
        .await;

    // nginx's error_page 401 → /_wxgate/start → WeChat's authorize URL.
    let first = &pages[0];
    assert_eq!(first.status, 302);
    assert_eq!(
        first.header("location"),
        Some(nginx.url("/_wxgate/start?rd=/orders/42?tab=items").as_str())
    );
    let to_wechat = pages.last().unwrap();
    let location = to_wechat.header("location").unwrap_or_default();
    let expected = format!(
        "http://{}/connect/oauth2/authorize?appid={}&redirect_uri={}&response_type=code&scope=snsapi_base&state=",
        gate.mock_addr,
        gate.mock.config().appid,
        wxgate::wechat::encode_component(&nginx.url("/_wxgate/callback")),
    );
    assert!(location.starts_with(&expected), "{location}");
    assert!(location.ends_with("#wechat_redirect"), "{location}");
    assert_eq!(gate.mock.calls("access_token"), 0, "nothing redeemed yet");
}

#[tokio::test]
async fn after_sign_in_the_app_behind_nginx_gets_a_verified_identity_at_the_original_url() {
    let Some((gate, nginx)) = world().await else {
        return;
    };
    let browser = WalkingBrowser::new();
    let pages = sign_in(&browser, &nginx.base, "/orders/42?tab=items&page=2").await;
    let echo = pages.last().unwrap().json();

    // Back where the user was going, query and all, without code or state.
    assert_eq!(echo["uri"], "/orders/42?tab=items&page=2");

    let token = wechat::identity_of(&echo);
    let jwks = browser.get(&nginx.url("/_wxgate/jwks.json")).await;
    assert_eq!(jwks.status, 200);
    let claims = wechat::verify(&token, &jwks.body, &gate.issuer(), &gate.audience())
        .expect("the identity header verifies with the published keys");
    let alice = gate.mock.openid("alice", &gate.mock.config().appid);
    assert_eq!(claims["sub"], alice.as_str());
    assert_eq!(
        crate::support::seen(&echo, "x-auth-request-openid"),
        vec![alice.clone()]
    );

    // The next request is let through by the sub-request alone.
    let again = browser.get(&nginx.url("/next")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["uri"], "/next");
}

#[tokio::test]
async fn identity_headers_a_client_makes_up_never_reach_the_app_behind_nginx() {
    let Some((gate, nginx)) = world().await else {
        return;
    };
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let spoofs: &[(&str, &str)] = &[
        ("X-Wxgate-Jwt-Assertion", forged),
        ("X_Wxgate_Jwt_Assertion", forged),
        ("x-wxgate-openid", "admin"),
        ("X-Auth-Request-Openid", "admin"),
    ];

    // Without a session the request is sent to sign in; the app sees nothing.
    let anonymous = WalkingBrowser::new();
    let page = anonymous.get_with(&nginx.url("/admin"), spoofs).await;
    assert_eq!(page.status, 302, "{}", page.body);
    assert!(page
        .header("location")
        .unwrap_or_default()
        .contains("/_wxgate/start"));

    // Signed in, the app sees wxgate's values only.
    let browser = WalkingBrowser::new();
    sign_in(&browser, &nginx.base, "/").await;
    let echo = browser.get_with(&nginx.url("/admin"), spoofs).await.json();
    let alice = gate.mock.openid("alice", &gate.mock.config().appid);
    let token = wechat::identity_of(&echo);
    assert_ne!(token, forged);
    let jwks = browser.get(&nginx.url("/_wxgate/jwks.json")).await.body;
    let claims = wechat::verify(&token, &jwks, &gate.issuer(), &gate.audience()).expect("genuine");
    assert_eq!(claims["sub"], alice.as_str());
    assert_eq!(
        crate::support::seen(&echo, "x-auth-request-openid"),
        vec![alice]
    );
    let names: Vec<String> = echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|p| p[0].as_str().unwrap_or_default().to_ascii_lowercase())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains('_')),
        "underscore spellings are dropped: {names:?}"
    );
    assert!(!names.contains(&"x-wxgate-openid".to_string()), "{names:?}");
    let values: Vec<&str> = echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter_map(|p| p[1].as_str())
        .collect();
    assert!(
        !values.iter().any(|v| *v == "admin" || *v == forged),
        "no made-up value reached the app: {values:?}"
    );
}
