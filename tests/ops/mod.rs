//! What the operating tests share: a browser inside WeChat (cookie jar, redirects walked
//! one by one), wxgate embedded in front of the echo upstream with the mock WeChat as
//! its platform, a wxgate child process, and finding system programs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use wxgate::config::Config;
use wxgate::mock::{self, MockConfig, MockWechat};

use crate::common::{start_upstream, Upstream};

pub const IN_WECHAT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN";

// ---------------------------------------------------------------- system programs

/// A program on PATH (and in the sbin folders, where Debian puts nginx). When it is
/// missing: a loud skip, or a failure under CI.
pub fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    let found = dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file());
    if found.is_none() {
        skip(&format!("{name} not found"));
    }
    found
}

/// Skips loudly, except under CI where a missing prerequisite is a failure.
pub fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set and this test cannot run: {why}");
    }
    eprintln!("\n*** SKIPPED: {why} ***\n");
}

// ---------------------------------------------------------------- the browser

/// A phone browser inside WeChat: keeps cookies (by name; every server here is one
/// site) and walks redirects itself so each hop can be looked at.
pub struct Browser {
    client: reqwest::Client,
    jar: Mutex<BTreeMap<String, String>>,
    /// (origin in links, origin to connect to): for a wxgate whose public_url names a
    /// host that does not resolve.
    alias: Option<(String, String)>,
}

/// One answer, body read.
pub struct Page {
    pub url: String,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.url, self.body))
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client builds"),
            jar: Mutex::new(BTreeMap::new()),
            alias: None,
        }
    }

    /// Links to `public` are fetched from `actual` instead.
    pub fn with_alias(mut self, public: &str, actual: &str) -> Self {
        self.alias = Some((public.to_string(), actual.to_string()));
        self
    }

    pub fn cookie_header(&self) -> String {
        let jar = self.jar.lock().unwrap();
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One GET, no redirect followed.
    pub async fn get(&self, url: &str) -> Page {
        self.get_with(url, &[]).await
    }

    /// One GET with extra headers, no redirect followed.
    pub async fn get_with(&self, url: &str, extra: &[(&str, &str)]) -> Page {
        let target = match &self.alias {
            Some((public, actual)) if url.starts_with(public.as_str()) => {
                format!("{actual}{}", &url[public.len()..])
            }
            _ => url.to_string(),
        };
        let mut req = self
            .client
            .get(&target)
            .header("user-agent", IN_WECHAT)
            .header("accept", "text/html,application/xhtml+xml");
        let cookies = self.cookie_header();
        if !cookies.is_empty() {
            req = req.header("cookie", cookies);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {target}: {e}"));
        self.keep_cookies(resp.headers());
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Page {
            url: url.to_string(),
            status,
            headers,
            body,
        }
    }

    fn keep_cookies(&self, headers: &reqwest::header::HeaderMap) {
        let mut jar = self.jar.lock().unwrap();
        for v in headers.get_all("set-cookie") {
            let Ok(v) = v.to_str() else { continue };
            let mut attrs = v.split(';');
            let Some((name, value)) = attrs.next().and_then(|nv| nv.trim().split_once('=')) else {
                continue;
            };
            let gone =
                value.is_empty() || attrs.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if gone {
                jar.remove(name);
            } else {
                jar.insert(name.to_string(), value.to_string());
            }
        }
    }

    /// GETs `url` and follows redirects (relative ones against the current page) until
    /// a page that is not a redirect, or `stop_at` matches a Location.
    pub async fn walk(&self, url: &str, stop_at: impl Fn(&str) -> bool) -> Vec<Page> {
        let mut pages = Vec::new();
        let mut next = url.to_string();
        for _ in 0..10 {
            let page = self.get(&next).await;
            let location = (300..400)
                .contains(&page.status)
                .then(|| page.header("location").map(str::to_string))
                .flatten();
            pages.push(page);
            let Some(loc) = location else {
                return pages;
            };
            // The fragment (#wechat_redirect) is never sent by a browser.
            let loc = loc.split('#').next().unwrap_or_default().to_string();
            let absolute = if loc.starts_with('/') {
                let origin_end = next
                    .find("://")
                    .and_then(|s| next[s + 3..].find('/').map(|p| p + s + 3))
                    .unwrap_or(next.len());
                format!("{}{loc}", &next[..origin_end])
            } else {
                loc
            };
            if stop_at(&absolute) {
                return pages;
            }
            next = absolute;
        }
        panic!("more than 10 redirects from {url}");
    }
}

// ---------------------------------------------------------------- embedded wxgate

/// The mock's app as a `[wechat]` section (snsapi_base: silent inside WeChat).
pub fn wechat_toml(mock_addr: SocketAddr, mock: &MockWechat) -> String {
    format!(
        "[wechat]\nappid = \"{}\"\nsecret = \"{}\"\nauthorize_url = \"http://{mock_addr}/connect/oauth2/authorize\"\napi_base_url = \"http://{mock_addr}\"\n",
        mock.config().appid,
        mock.config().secret
    )
}

/// wxgate embedded in this process, signing in against the mock WeChat.
pub struct Gate {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub public_url: String,
    pub upstream: Upstream,
    pub mock: MockWechat,
    pub mock_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Gate {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }
    pub fn issuer(&self) -> String {
        format!("{}/_wxgate", self.public_url)
    }
    pub fn audience(&self) -> String {
        format!("http://{}", self.upstream.addr)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.mock.stop();
    }
}

/// Starts the mock WeChat, the echo upstream and wxgate (sign-in required everywhere).
/// `public_url`: the origin browsers use (default: wxgate's own address); `tweak`
/// adjusts the config before it is resolved.
pub async fn start_gate(public_url: Option<String>, tweak: impl FnOnce(&mut Config)) -> Gate {
    let (mock_addr, mock) = mock::spawn(MockConfig::default())
        .await
        .expect("mock starts");
    let upstream = start_upstream().await;
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = public.local_addr().unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let public_url = public_url.unwrap_or_else(|| format!("http://{addr}"));
    let text = format!(
        "[server]\nlisten = \"{addr}\"\npublic_url = \"{public_url}\"\n[admin]\nlisten = \"{admin_addr}\"\n[upstream]\nurl = \"http://{}\"\n[session]\nsecret = \"0123456789abcdef0123456789abcdef-test-only\"\n{}",
        upstream.addr,
        wechat_toml(mock_addr, &mock)
    );
    let mut config: Config = toml::from_str(&text).expect("test config parses");
    tweak(&mut config);
    config.base_dir = Path::new(".").to_path_buf();
    let problems = config.resolve(&BTreeMap::<String, String>::new());
    assert!(problems.is_empty(), "test config: {problems:?}");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(wxgate::run(
        config,
        wxgate::Listeners { public, admin },
        async move {
            let _ = stopped.await;
        },
    ));
    Gate {
        addr,
        admin: admin_addr,
        public_url,
        upstream,
        mock,
        mock_addr,
        stop: Some(stop),
    }
}

/// Signs the browser in through `base` (wxgate or whatever is in front of it) by asking
/// for `path`; returns every hop, the last one the app's answer.
pub async fn sign_in(browser: &Browser, base: &str, path: &str) -> Vec<Page> {
    let pages = browser.walk(&format!("{base}{path}"), |_| false).await;
    let last = pages.last().expect("at least one page");
    assert_eq!(last.status, 200, "signed in and at the app: {}", last.body);
    pages
}

/// The identity header the echo upstream saw in `echo` (its JSON answer).
pub fn identity_seen(echo: &Value) -> String {
    let seen = crate::common::seen(echo, "x-wxgate-jwt-assertion");
    assert_eq!(seen.len(), 1, "exactly one identity header: {echo}");
    seen[0].clone()
}

/// Verifies `token` as an upstream would, from the JWKS only; returns the claims.
pub fn verify(token: &str, jwks: &str, issuer: &str, audience: &str) -> Result<Value, String> {
    let jwks: JwkSet = serde_json::from_str(jwks).map_err(|e| e.to_string())?;
    let header = decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or("kid not in the JWKS")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    decode::<Value>(token, &key, &validation)
        .map(|t| t.claims)
        .map_err(|e| e.to_string())
}

/// The `kid` a token names.
pub fn kid_of(token: &str) -> String {
    decode_header(token)
        .expect("a JWT header")
        .kid
        .expect("a kid")
}

// ---------------------------------------------------------------- wxgate as a child

/// `wxgate` run as its own process; stderr lines are collected as they come.
pub struct Wxgate {
    child: Option<Child>,
    pid: u32,
    lines: Arc<Mutex<Vec<String>>>,
    new_line: Arc<Notify>,
}

impl Wxgate {
    /// Starts `wxgate ARGS...` (JSON logs).
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wxgate"))
            .arg("--log-format")
            .arg("json")
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wxgate starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let new_line = Arc::new(Notify::new());
        let stderr = child.stderr.take().expect("piped stderr");
        let (l, n) = (lines.clone(), new_line.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line);
                n.notify_waiters();
            }
            // The pipe closed: the process is gone; wake waiters so they can fail.
            l.lock().unwrap().push(String::new());
            n.notify_waiters();
        });
        Self {
            pid: child.id(),
            child: Some(child),
            lines,
            new_line,
        }
    }

    pub fn pid(&self) -> String {
        self.pid.to_string()
    }

    /// Sends a signal (`HUP`, `TERM`) with the system's `kill`.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid())
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Lines logged so far, parsed as JSON (every line must be JSON).
    pub fn json_lines(&self) -> Vec<Value> {
        self.log()
            .iter()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Waits (up to 20 s) for the `n`th log line (0-based, counting from `from`) that
    /// matches; returns it and the index after it.
    pub async fn wait_for(&self, from: usize, what: impl Fn(&Value) -> bool) -> (Value, usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let notified = self.new_line.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let lines = self.log();
            for (i, line) in lines.iter().enumerate().skip(from) {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    if what(&v) {
                        return (v, i + 1);
                    }
                }
            }
            if lines.last().is_some_and(|l| l.is_empty()) {
                panic!("wxgate exited; its log:\n{}", lines.join("\n"));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no such log line in time; the log:\n{}", lines.join("\n"));
            }
        }
    }

    /// Waits for "wxgate listening" and returns (public, admin) addresses.
    pub async fn listening(&self) -> (SocketAddr, SocketAddr) {
        let (line, _) = self
            .wait_for(0, |v| v["fields"]["message"] == "wxgate listening")
            .await;
        let addr = |k: &str| -> SocketAddr {
            let s = line["fields"][k].as_str().unwrap_or_default();
            s.trim_start_matches("Some(")
                .trim_end_matches(')')
                .parse()
                .unwrap_or_else(|_| panic!("{k} address in {line}"))
        };
        (addr("public"), addr("admin"))
    }

    /// Waits for the process to exit (up to 20 s).
    pub async fn exit_status(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("not yet waited for");
        let waited = tokio::task::spawn_blocking(move || child.wait());
        match tokio::time::timeout(Duration::from_secs(20), waited).await {
            Ok(Ok(Ok(status))) => status,
            _ => panic!(
                "wxgate did not exit in time; its log:\n{}",
                self.log().join("\n")
            ),
        }
    }
}

impl Drop for Wxgate {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
