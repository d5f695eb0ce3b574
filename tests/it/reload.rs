//! `wxgate serve` as operators run it: a process with a config file, SIGHUP to reload
//! it while users keep browsing, SIGTERM to stop without cutting a request short.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::support::process::Wxgate;
use crate::support::wechat::{self, WalkingBrowser};
use crate::support::{start_upstream, Upstream};
use serde_json::Value;
use wxgate::mock::{self, MockConfig, MockWechat};

const PUBLIC: &str = "http://wxgate.test";

/// A config file in its own folder, the mock WeChat and the echo upstream.
struct Site {
    dir: PathBuf,
    upstream: Upstream,
    mock_addr: std::net::SocketAddr,
    mock: MockWechat,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.mock.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Site {
    async fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wxgate-reload-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (mock_addr, mock) = mock::spawn(MockConfig::default()).await.expect("mock");
        Self {
            dir,
            upstream: start_upstream().await,
            mock_addr,
            mock,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("wxgate.toml")
    }

    /// Writes the config file: `extra` goes at the end (an `[identity]` or `[access]`
    /// section).
    fn write_config(&self, extra: &str) {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"{PUBLIC}\"\nshutdown_timeout = \"10s\"\n\
[admin]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://{}\"\n\
[session]\nsecret = \"0123456789abcdef0123456789abcdef-reload\"\n{}{extra}\n",
            self.upstream.addr,
            wechat::wechat_toml(self.mock_addr, &self.mock),
        );
        std::fs::write(self.config_path(), text).expect("write config");
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).expect("write file");
    }

    fn alice(&self) -> String {
        self.mock.openid("alice", &self.mock.config().appid)
    }

    /// Starts `wxgate serve -c FILE`; returns it with a browser pointed at it.
    async fn serve(&self) -> (Wxgate, WalkingBrowser, String) {
        let config = self.config_path();
        let wxgate = Wxgate::spawn(&["serve", "-c", config.to_str().expect("utf-8 path")]);
        let (public, _admin) = wxgate.listening().await;
        let base = format!("http://{public}");
        (
            wxgate,
            WalkingBrowser::new().with_alias(PUBLIC, &base),
            base,
        )
    }
}

/// Waits for the log line of an applied reload (after line `from`); returns its kid.
async fn reloaded(wxgate: &Wxgate, from: usize) -> (String, usize) {
    let (line, next) = wxgate
        .wait_for(from, |v| {
            v["fields"]["message"] == "reload: configuration applied"
        })
        .await;
    let kid = line["fields"]["kid"].as_str().expect("kid").to_string();
    (kid, next)
}

#[tokio::test]
async fn signing_keys_rotate_on_sighup_while_a_signed_in_client_keeps_browsing() {
    let site = Site::new("rotate").await;
    let (_, old_pem) = wxgate::identity::keygen();
    let (_, new_pem) = wxgate::identity::keygen();
    site.write("signing.pem", &old_pem);
    site.write_config("[identity]\nsigning_key_file = \"signing.pem\"\n");
    let (wxgate, browser, base) = site.serve().await;
    let pages = wechat::sign_in(&browser, PUBLIC, "/").await;
    let old_kid = wechat::kid_of(&wechat::identity_of(&pages.last().unwrap().json()));

    // A client keeps requesting with its session while the key changes under it.
    let stop = Arc::new(AtomicBool::new(false));
    let browsing = Arc::new(tokio::sync::Notify::new());
    let client = {
        let (stop, cookie, url) = (
            stop.clone(),
            browser.cookie_header(),
            format!("{base}/feed"),
        );
        let browsing = browsing.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut seen: Vec<Result<String, String>> = Vec::new();
            // Bounded: the reload is seen long before this many requests.
            for _ in 0..5000 {
                // The last request starts after the test said stop, so after the reload.
                let last = stop.load(Ordering::SeqCst);
                let answer = http.get(&url).header("cookie", &cookie).send().await;
                let kid = match answer {
                    Ok(r) if r.status() == 200 => match r.text().await {
                        Ok(body) => Ok(wechat::kid_of(&wechat::identity_of(
                            &serde_json::from_str(&body).expect("echo JSON"),
                        ))),
                        Err(e) => Err(e.to_string()),
                    },
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                seen.push(kid);
                browsing.notify_one();
                if last {
                    break;
                }
            }
            seen
        })
    };

    browsing.notified().await;
    // The new key signs; the old one stays published for tokens already issued.
    site.write("signing.pem", &format!("{new_pem}\n{old_pem}"));
    wxgate.signal("HUP");
    let (new_kid, _) = reloaded(&wxgate, 0).await;
    assert_ne!(new_kid, old_kid);
    // Let the client get at least one answer signed with the new key, then stop it.
    let after = browser.get(&format!("{PUBLIC}/after")).await.json();
    assert_eq!(wechat::kid_of(&wechat::identity_of(&after)), new_kid);
    stop.store(true, Ordering::SeqCst);
    let seen = client.await.expect("client task");

    let failures: Vec<&String> = seen.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "failed requests during reload: {failures:?}"
    );
    assert!(seen.len() > 1, "the client kept requesting");
    let kids: Vec<&String> = seen.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(kids[0], &old_kid, "the old key signed before the reload");
    let first_new = kids
        .iter()
        .position(|k| **k == new_kid)
        .expect("the client got tokens signed with the new key");
    assert!(
        kids[first_new..].iter().all(|k| **k == new_kid),
        "once rotated, only the new key signs: {kids:?}"
    );

    let jwks = browser
        .get(&format!("{PUBLIC}/_wxgate/jwks.json"))
        .await
        .json();
    let published: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(published, vec![new_kid.as_str(), old_kid.as_str()]);
    // The session outlived the reload (memory store).
    let again = browser.get(&format!("{PUBLIC}/still-signed-in")).await;
    assert_eq!(again.status, 200);
}

#[tokio::test]
async fn allowed_openids_and_public_paths_change_on_sighup() {
    let site = Site::new("access").await;
    site.write_config("");
    let (wxgate, browser, base) = site.serve().await;
    wechat::sign_in(&browser, PUBLIC, "/").await;
    let stranger = WalkingBrowser::new().with_alias(PUBLIC, &base);
    assert_eq!(
        stranger.get(&format!("{PUBLIC}/open/page")).await.status,
        302
    );

    site.write_config(&format!(
        "[access]\npublic_paths = [\"/open/*\"]\nallowed_openids = [\"{}-not-alice\"]\n",
        site.alice()
    ));
    wxgate.signal("HUP");
    let (_, next) = reloaded(&wxgate, 0).await;

    let open = stranger.get(&format!("{PUBLIC}/open/page")).await;
    assert_eq!(open.status, 200, "now public: {}", open.body);
    assert_eq!(open.json()["uri"], "/open/page");
    let refused = browser.get(&format!("{PUBLIC}/private")).await;
    assert_eq!(refused.status, 403, "alice is no longer allowed");

    // And back: alice allowed again, by name.
    site.write_config(&format!(
        "[access]\nallowed_openids = [\"{}\"]\n",
        site.alice()
    ));
    wxgate.signal("HUP");
    reloaded(&wxgate, next).await;
    assert_eq!(browser.get(&format!("{PUBLIC}/private")).await.status, 200);
    assert_eq!(
        stranger.get(&format!("{PUBLIC}/open/page")).await.status,
        302
    );
}

#[tokio::test]
async fn a_reload_does_not_reset_the_count_of_qr_pages_shown() {
    let site = Site::new("qr-budget").await;
    site.write_config("[desktop]\nmax_tickets = 1\n");
    let (wxgate, _browser, base) = site.serve().await;
    let desktop = reqwest::Client::new();
    let qr_page = || async {
        desktop
            .get(format!("{base}/orders"))
            .header(
                "user-agent",
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0",
            )
            .header("accept", "text/html")
            .send()
            .await
            .expect("wxgate answers")
            .status()
            .as_u16()
    };
    assert_eq!(qr_page().await, 200, "the first QR page is shown");
    assert_eq!(qr_page().await, 503, "max_tickets = 1");

    // Reloading (even to a larger budget) starts from the pages already shown.
    site.write_config("[desktop]\nmax_tickets = 2\n");
    wxgate.signal("HUP");
    reloaded(&wxgate, 0).await;
    assert_eq!(qr_page().await, 200, "one more fits in the new budget");
    assert_eq!(qr_page().await, 503, "the count survived the reload");
}

#[tokio::test]
async fn an_invalid_config_is_refused_with_a_log_line_and_the_old_one_keeps_serving() {
    let site = Site::new("invalid").await;
    site.write_config("");
    let (wxgate, browser, base) = site.serve().await;
    let pages = wechat::sign_in(&browser, PUBLIC, "/").await;
    let kid = wechat::kid_of(&wechat::identity_of(&pages.last().unwrap().json()));

    // A key file that does not exist, and everything public.
    site.write_config(
        "[identity]\nsigning_key_file = \"missing.pem\"\n[access]\npublic_paths = [\"/*\"]\n",
    );
    wxgate.signal("HUP");
    let (line, _) = wxgate
        .wait_for(0, |v| {
            v["level"] == "ERROR"
                && v["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("invalid"))
        })
        .await;
    let problems = line["fields"]["problems"].as_str().unwrap_or_default();
    assert!(problems.contains("identity.signing_key_file"), "{line}");

    // Still the old config: sign-in required, the same key signing.
    let stranger = WalkingBrowser::new().with_alias(PUBLIC, &base);
    assert_eq!(stranger.get(&format!("{PUBLIC}/open")).await.status, 302);
    let echo = browser.get(&format!("{PUBLIC}/after")).await.json();
    assert_eq!(wechat::kid_of(&wechat::identity_of(&echo)), kid);
    assert!(!wxgate
        .log()
        .iter()
        .any(|l| l.contains("reload: configuration applied")));
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_and_exits_zero() {
    let site = Site::new("term").await;
    site.write_config("[access]\npublic_paths = [\"/*\"]\n");
    let (mut wxgate, _, base) = site.serve().await;

    let slow = tokio::spawn(reqwest::get(format!("{base}/slow?ms=800")));
    site.upstream.slow_started.notified().await;
    wxgate.signal("TERM");
    let answer = slow
        .await
        .expect("task")
        .expect("the in-flight request is answered");
    assert_eq!(answer.status(), 200);
    let body = answer.text().await.expect("the whole body");
    let echo: Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(echo["uri"], "/slow?ms=800");

    let status = wxgate.exit_status().await;
    assert_eq!(status.code(), Some(0), "log:\n{}", wxgate.log().join("\n"));
}
