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

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::wechat::{desktop_sign_in, program, start_site, verify, Site};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wxgate::config::DesktopMode;

// ---------------------------------------------------------------- wxgate + mock

/// Mock WeChat + echo upstream + wxgate with scan-to-sign-in for computers.
async fn start() -> Site {
    start_site(
        None,
        |c, mock| desktop_sign_in(c, mock, DesktopMode::Qr),
        |_| {},
    )
    .await
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
    let Some(chromium) = program("chromium") else {
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

async fn sign_in(env: &Site, cdp: &mut Cdp) -> Result<(), String> {
    let target = env.url("/orders/42?tab=open");
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
    if !scan_url.starts_with(&env.url("/_wxgate/scan/s/")) {
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
    let mut phone = env.phone();
    let scan = utf8_percent_encode(&scan_url, NON_ALPHANUMERIC);
    let confirm_page = phone
        .get(&env.mock_url(&format!("/mock/phone?url={scan}&user=bob")))
        .await
        .text();
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
    let answer = phone.post(&env.mock_url(&submit)).await.text();
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
    // Verified as the app would, from wxgate's JWKS.
    let jwks = common::get(&env.url("/_wxgate/jwks.json")).await.text();
    let claims = verify(&jwt, &jwks, &env.issuer(), &env.audience())?;
    let bob = env.platform.openid("bob");
    if claims["openid"] != bob.as_str() {
        return Err(format!("signed in as {} instead of bob", claims["openid"]));
    }
    Ok(())
}
