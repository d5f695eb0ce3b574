//! A real browser signs in from a computer: headless Chromium loads a protected page,
//! gets the scan-to-sign-in page, the phone (played over HTTP with WeChat's User-Agent
//! through the mock) confirms, and the same browser tab ends up on the app's page as
//! the signed-in user without anyone reloading it.
//!
//! Chromium is driven over the DevTools protocol with a minimal hand-written WebSocket
//! client (no extra dependency). Needs `chromium` on PATH: skipped loudly when missing,
//! a failure when `CI` is set. On failure a screenshot is saved under
//! `target/browser-artifacts/`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use wxgate::config::Config;
use wxgate::mock::{self, MockConfig, MockWechat};

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------- wxgate + mock

struct Env {
    mock: MockWechat,
    mock_addr: SocketAddr,
    addr: SocketAddr,
    _upstream: common::Upstream,
    _stop: oneshot::Sender<()>,
}

async fn start() -> Env {
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
api_base_url = "http://{mock_addr}"
[session]
secret = "0123456789abcdef0123456789abcdef-test-only"
[desktop]
mode = "qr"
[access]
public_paths = []
"#,
        up = upstream.addr,
        appid = c.appid,
        secret = c.secret,
    );
    let mut config: Config = toml::from_str(&text).expect("test config parses");
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
    Env {
        mock,
        mock_addr,
        addr,
        _upstream: upstream,
        _stop: stop,
    }
}

// ---------------------------------------------------------------- chromium

/// A headless Chromium with a fresh profile; killed (by its pid) and its profile
/// removed on drop.
struct Chromium {
    child: Child,
    profile: PathBuf,
    ws_url: String,
}

impl Chromium {
    fn launch(program: &Path) -> Chromium {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let profile =
            std::env::temp_dir().join(format!("wxgate-chromium-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1000,1200",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // Chromium announces its DevTools endpoint on stderr.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            }
        });
        let ws_url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium prints its DevTools URL");
        Chromium {
            child,
            profile,
            ws_url,
        }
    }

    /// The DevTools WebSocket URL of the first page (the about:blank tab).
    async fn page_ws_url(&self) -> String {
        let http = self
            .ws_url
            .replacen("ws://", "http://", 1)
            .split("/devtools/")
            .next()
            .unwrap()
            .to_string();
        for _ in 0..100 {
            let text = reqwest::get(format!("{http}/json/list"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let list: Value = serde_json::from_str(&text).unwrap();
            if let Some(page) = list
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["type"] == "page")
            {
                return page["webSocketDebuggerUrl"].as_str().unwrap().to_string();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromium has no page target");
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

// ---------------------------------------------------------------- a minimal CDP client

/// The client side of RFC 6455 over a TcpStream: masked text frames out, frames in
/// (fragmented messages joined, pings answered), enough for the DevTools protocol.
struct Cdp {
    stream: TcpStream,
    next_id: u64,
}

impl Cdp {
    async fn connect(ws_url: &str) -> Cdp {
        let rest = ws_url.strip_prefix("ws://").expect("ws URL");
        let (authority, path) = rest.split_at(rest.find('/').unwrap());
        let mut stream = TcpStream::connect(authority).await.unwrap();
        let key =
            base64::engine::general_purpose::STANDARD.encode(wxgate::config::random_bytes(16));
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        // Read the handshake answer byte by byte so no frame bytes are consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.unwrap());
        }
        let head = String::from_utf8_lossy(&head);
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "websocket upgrade: {head}"
        );
        Cdp { stream, next_id: 0 }
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut frame = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len < 65536 {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = wxgate::config::random_bytes(4);
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await.unwrap();
    }

    /// The next complete text message.
    async fn read_message(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let b0 = self.stream.read_u8().await.unwrap();
            let b1 = self.stream.read_u8().await.unwrap();
            let fin = b0 & 0x80 != 0;
            let opcode = b0 & 0x0f;
            let mut len = (b1 & 0x7f) as u64;
            if len == 126 {
                len = self.stream.read_u16().await.unwrap() as u64;
            } else if len == 127 {
                len = self.stream.read_u64().await.unwrap();
            }
            let mut mask = [0u8; 4];
            if b1 & 0x80 != 0 {
                self.stream.read_exact(&mut mask).await.unwrap();
            }
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload).await.unwrap();
            if b1 & 0x80 != 0 {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            match opcode {
                0x9 => self.send_frame(0xA, &payload).await,
                0x8 => panic!("chromium closed the DevTools connection"),
                0x1 | 0x0 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).unwrap();
                    }
                }
                _ => {}
            }
        }
    }

    /// Sends a command and returns its result (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.send_frame(0x1, msg.as_bytes()).await;
        loop {
            let answer: Value = serde_json::from_str(&self.read_message().await).unwrap();
            if answer["id"] == id {
                if let Some(e) = answer.get("error") {
                    panic!("{method}: {e}");
                }
                return answer["result"].clone();
            }
        }
    }

    /// Evaluates `expr` in the page; its value (JSON-serialisable).
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true }),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Re-evaluates `expr` until it is a non-empty string (bounded).
    async fn wait_for(&mut self, expr: &str, what: &str) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.eval(expr).await.as_str().filter(|s| !s.is_empty()) {
                return Ok(s.to_string());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("timed out waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn screenshot(&mut self, name: &str) -> Option<PathBuf> {
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str()?)
            .ok()?;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).ok()?;
        Some(path)
    }
}

// ---------------------------------------------------------------- the story

#[tokio::test]
async fn a_desktop_browser_signs_in_by_scanning_its_qr_code_with_a_phone() {
    let Some(chromium) = find_on_path("chromium") else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium not found on PATH (required when CI is set)");
        }
        eprintln!("SKIPPED: chromium not found");
        return;
    };
    let env = start().await;
    let browser = Chromium::launch(&chromium);
    let mut cdp = Cdp::connect(&browser.page_ws_url().await).await;
    cdp.call("Page.enable", json!({})).await;
    let outcome = sign_in(&env, &mut cdp).await;
    if let Err(e) = outcome {
        let shot = cdp
            .screenshot("desktop_qr_sign_in")
            .await
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "no screenshot".into());
        panic!("{e} (screenshot: {shot})");
    }
}

async fn sign_in(env: &Env, cdp: &mut Cdp) -> Result<(), String> {
    let target = format!("http://{}/orders/42?tab=open", env.addr);
    cdp.call("Page.navigate", json!({ "url": target })).await;

    // The QR page, as the browser rendered it. The scan URL is read from the QR's data
    // attribute (no QR decoder without new dependencies); the drawn code is checked to
    // be a real QR symbol of the right size for that URL.
    let scan_url = cdp
        .wait_for(
            "(document.getElementById('wxgate-qr')||{dataset:{}}).dataset.scanUrl||''",
            "the QR page",
        )
        .await?;
    if !scan_url.starts_with(&format!("http://{}/_wxgate/scan/s/", env.addr)) {
        return Err(format!("unexpected scan URL {scan_url}"));
    }
    let drawn = cdp
        .eval("(function(){var s=document.querySelector('#wxgate-qr svg');if(!s)return '';var r=s.getBoundingClientRect();return r.width+'x'+r.height;})()")
        .await;
    let drawn = drawn.as_str().unwrap_or_default().to_string();
    let size: f64 = drawn
        .split('x')
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0.0);
    if size < 200.0 {
        return Err(format!(
            "the QR code is not drawn at a scannable size: {drawn}"
        ));
    }
    // The same URL through the same encoder gives the same modules: comparing the drawn
    // path with it proves the code on screen is the scan URL's.
    let expected = wxgate::desktop::qr_svg(&scan_url).ok_or("scan URL does not fit a QR")?;
    let expected_d = expected
        .split(" d=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .ok_or("the encoder drew no path")?;
    let drawn_d = cdp
        .eval("(document.querySelector('#wxgate-qr svg path')||{getAttribute:function(){return ''}}).getAttribute('d')")
        .await;
    if drawn_d.as_str() != Some(expected_d) {
        return Err("the QR code on screen is not the scan URL's".into());
    }

    // The phone: WeChat's User-Agent, through the mock's simulated phone, as bob.
    let phone = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let confirm_page = phone
        .get(format!(
            "http://{}/mock/phone?url={}&user=bob",
            env.mock_addr,
            enc(&scan_url)
        ))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    if !confirm_page.contains("HeadlessChrome") && !confirm_page.contains("Chrome") {
        return Err(format!(
            "the phone is not told which browser: {confirm_page}"
        ));
    }
    let at = confirm_page
        .find("/mock/phone/submit?")
        .ok_or("no confirm form on the phone")?;
    let end = confirm_page[at..].find('"').ok_or("bad form")? + at;
    let submit = confirm_page[at..end].replace("&amp;", "&");
    let answer = phone
        .post(format!("http://{}{submit}", env.mock_addr))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    if !answer.contains("Confirmed") {
        return Err(format!("the phone did not confirm: {answer}"));
    }

    // The waiting tab notices by itself and lands on the app as bob.
    let shown = cdp
        .wait_for(
            "location.pathname==='/orders/42'&&document.body&&!document.getElementById('wxgate-qr')?(document.querySelector('pre')||document.body).innerText:''",
            "the app's page after sign-in",
        )
        .await?;
    let echo: Value = serde_json::from_str(&shown)
        .map_err(|e| format!("not the upstream's page ({e}): {shown}"))?;
    if echo["uri"] != "/orders/42?tab=open" {
        return Err(format!("landed on {}", echo["uri"]));
    }
    let jwt = common::seen(&echo, "x-wxgate-jwt-assertion")
        .pop()
        .ok_or("the app got no identity header")?;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap_or_default())
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let bob = env.mock.openid("bob", &env.mock.config().appid);
    if claims["openid"] != bob.as_str() {
        return Err(format!("signed in as {} instead of bob", claims["openid"]));
    }
    Ok(())
}
