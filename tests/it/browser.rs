//! A real browser signs in from a computer: headless Chromium loads a protected page,
//! gets the scan-to-sign-in page, the phone (played over HTTP with WeChat's User-Agent
//! through the mock) confirms, and the same browser tab ends up on the app's page as
//! the signed-in user without anyone reloading it. And a page of the app configures
//! WeChat's JS-SDK through `/_wxgate/jssdk.js`, its signature checked by the mock's
//! stand-in for WeChat's client, also after an iPhone single-page app moved on. And a
//! computer signs in with WeCom's web-login QR, scanned by the simulated phone.
//!
//! Chromium is driven over the DevTools protocol with a minimal hand-written WebSocket
//! client (no extra dependency). Needs `chromium` on PATH: skipped loudly when missing,
//! a failure when `CI` is set. On failure a screenshot is saved under
//! `target/browser-artifacts/`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::harness::Site;
use crate::support::skip::program;
use crate::support::wechat::verify;
use crate::support::wechat::Platform;
use crate::support::{proxy, Gate};
use base64::Engine;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wxgate::config::DesktopMode;

// ---------------------------------------------------------------- wxgate + mock

/// Mock WeChat + echo upstream + wxgate with scan-to-sign-in for computers.
async fn start() -> Site {
    proxy().desktop(DesktopMode::Qr).run_site().await
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
        let key = base64::engine::general_purpose::STANDARD.encode(wxgate::random::bytes(16));
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
        let mask = wxgate::random::bytes(4);
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
    let expected =
        wxgate::signin::methods::desktop::qr_svg(&scan_url).ok_or("scan URL does not fit a QR")?;
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
    let jwt = crate::support::seen(&echo, "x-wxgate-jwt-assertion")
        .pop()
        .ok_or("the app got no identity header")?;
    // Verified as the app would, from wxgate's JWKS.
    let jwks = crate::support::get(&env.url("/_wxgate/jwks.json"))
        .await
        .text();
    let claims = verify(&jwt, &jwks, &env.issuer(), &env.audience())?;
    let bob = env.platform.openid("bob");
    if claims["openid"] != bob.as_str() {
        return Err(format!("signed in as {} instead of bob", claims["openid"]));
    }
    Ok(())
}

// ---------------------------------------------------------------- JS-SDK in a real page

/// WeChat's in-app browser on an iPhone.
const IPHONE_WECHAT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN";

/// An app page that loads the mock's jweixin and wxgate's `/_wxgate/jssdk.js`, and
/// notes what `wx` says in `window.readyCount` / `window.lastError`.
fn shop_page(mock: std::net::SocketAddr) -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>shop</title>
<script src="http://{mock}/mock/jweixin.js"></script>
<script src="/_wxgate/jssdk.js" data-js-api-list="scanQRCode,updateAppMessageShareData"></script>
<script>
window.readyCount = 0; window.lastError = "";
wx.ready(function () {{
  wx.checkJsApi({{ jsApiList: ["scanQRCode"], success: function (r) {{
    window.readyCount++; document.title = "ready:" + r.checkResult.scanQRCode; }} }});
}});
wx.error(function (e) {{ window.lastError = e.errMsg; document.title = "error:" + e.errMsg; }});
</script></head><body><h1>shop</h1></body></html>"#
    )
}

#[tokio::test]
async fn a_real_page_gets_wx_configured_and_wechats_check_accepts_the_signature() {
    let Some(chromium) = program("chromium") else {
        return;
    };
    // The app: pages that use the JS-SDK.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    let mock_config = wxgate::mock::MockConfig {
        js_safe_domains: vec!["127.0.0.1".into()],
        ..wxgate::mock::MockConfig::default()
    };
    let platform = crate::support::wechat::Platform::start(mock_config).await;
    let page = shop_page(platform.mock_addr);
    crate::support::serve_http1(listener, move |_req| {
        let page = page.clone();
        async move {
            let mut r = http::Response::new(wxgate::body::full(page));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
    });
    let gate = proxy()
        .wechat(&platform)
        .tweak(move |c| {
            c.upstream.url = format!("http://{app}");
            c.access.public_paths = vec!["/shop/*".into()];
            c.account = Some(wxgate::config::file::AccountConfig::default());
        })
        .run()
        .await;

    let browser = Chromium::launch(&chromium);
    let mut cdp = Cdp::connect(&browser.page_ws_url().await).await;
    cdp.call("Page.enable", json!({})).await;
    let outcome = js_sdk_story(&gate, &platform.mock, &mut cdp).await;
    if let Err(e) = outcome {
        let shot = cdp
            .screenshot("js_sdk_config")
            .await
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "no screenshot".into());
        panic!("{e} (screenshot: {shot})");
    }
}

async fn js_sdk_story(
    gate: &crate::support::Gate,
    mock: &wxgate::mock::MockWechat,
    cdp: &mut Cdp,
) -> Result<(), String> {
    let settled = "document.title.indexOf(':') > 0 ? document.title : ''";
    // A page opened from a shared link, with a fragment the signature leaves out.
    cdp.call(
        "Page.navigate",
        json!({ "url": gate.url("/shop/item?id=7&from=share#reviews") }),
    )
    .await;
    let title = cdp.wait_for(settled, "wx.ready or wx.error").await?;
    if title != "ready:true" {
        return Err(format!("wx.config was not accepted: {title}"));
    }
    if mock.calls("jssdk_verify") == 0 {
        return Err("the mock never checked the signature".into());
    }

    // WeChat's check is real: a signature for another URL is refused in the page ...
    cdp.eval(
        "fetch('/_wxgate/jssdk/config?url=' + encodeURIComponent(location.origin + '/elsewhere'))\
         .then(function (r) { return r.json(); }).then(function (c) {\
           wx.config({ appId: c.appId, timestamp: c.timestamp, nonceStr: c.nonceStr,\
                       signature: c.signature, jsApiList: [] }); })",
    )
    .await;
    let refused = cdp.wait_for("window.lastError", "wx.error").await?;
    if refused != "config:invalid signature" {
        return Err(format!("a wrong signature was not refused: {refused}"));
    }

    // ... and on an iPhone, a single-page app that moved on with pushState is still
    // signed for the URL it landed on, which is what iOS WeChat checks.
    cdp.call(
        "Emulation.setUserAgentOverride",
        json!({ "userAgent": IPHONE_WECHAT }),
    )
    .await;
    cdp.call(
        "Page.navigate",
        json!({ "url": gate.url("/shop/landing?from=timeline") }),
    )
    .await;
    let title = cdp.wait_for(settled, "wx.ready on the iPhone").await?;
    if title != "ready:true" {
        return Err(format!("iPhone: wx.config was not accepted: {title}"));
    }
    cdp.eval(
        "history.pushState({}, '', '/shop/cart?step=2'); window.readyCount = 0;\
         wxgate.jssdk.configure();",
    )
    .await;
    let after = cdp
        .wait_for(
            "window.lastError ? 'error:' + window.lastError : (window.readyCount > 0 ? 'ready' : '')",
            "wx.ready after pushState",
        )
        .await?;
    if after != "ready" {
        return Err(format!("iPhone after pushState: {after}"));
    }
    let signed_for = cdp.eval("wxgate.jssdk.url()").await;
    if signed_for.as_str() != Some(gate.url("/shop/landing?from=timeline").as_str()) {
        return Err(format!("iPhone signs {signed_for}, not the landing URL"));
    }
    Ok(())
}

// ---------------------------------------------------------------- WeCom's web login

/// Mock WeChat with its WeCom organisation + echo upstream + wxgate with `[wecom]`.
async fn start_wecom() -> (Platform, Gate) {
    let platform = Platform::start(crate::wecom::mock_config()).await;
    let gate = proxy()
        .wechat(&platform)
        .tweak(|c| crate::wecom::wecom_sign_in(c, &platform.mock))
        .run()
        .await;
    (platform, gate)
}

#[tokio::test]
async fn a_desktop_browser_signs_in_with_wecoms_web_login_qr_scanned_by_the_phone() {
    let Some(chromium) = program("chromium") else {
        return;
    };
    let (platform, gate) = start_wecom().await;
    let browser = Chromium::launch(&chromium);
    let mut cdp = Cdp::connect(&browser.page_ws_url().await).await;
    cdp.call("Page.enable", json!({})).await;
    let outcome = wecom_story(&gate, &platform.mock, &mut cdp).await;
    if let Err(e) = outcome {
        let shot = cdp
            .screenshot("wecom_web_login")
            .await
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "no screenshot".into());
        panic!("{e} (screenshot: {shot})");
    }
}

async fn wecom_story(
    gate: &Gate,
    mock: &wxgate::mock::MockWechat,
    cdp: &mut Cdp,
) -> Result<(), String> {
    cdp.call(
        "Page.navigate",
        json!({ "url": gate.url("/orders/42?tab=open") }),
    )
    .await;
    // WeCom's web-login page, as the browser rendered it: the login its QR stands for.
    let key = cdp
        .wait_for(
            "(document.getElementById('wecom-qr')||{dataset:{}}).dataset.key||''",
            "WeCom's web-login QR",
        )
        .await?;
    let at = cdp.eval("location.href").await;
    let at = at.as_str().unwrap_or_default();
    if !at.starts_with(&gate.mock_url("/wwlogin/sso/login?login_type=CorpApp&")) {
        return Err(format!("not WeCom's web login: {at}"));
    }
    // The member's phone scans it and confirms.
    if !mock.wecom_scan(&key, "lisi") {
        return Err("the phone could not scan the login shown".into());
    }
    // The waiting page moves on by itself and lands on the app as lisi.
    let shown = cdp
        .wait_for(
            "location.pathname==='/orders/42'&&document.body?(document.querySelector('pre')||document.body).innerText:''",
            "the app's page after the scan",
        )
        .await?;
    let echo: Value = serde_json::from_str(&shown)
        .map_err(|e| format!("not the upstream's page ({e}): {shown}"))?;
    if echo["uri"] != "/orders/42?tab=open" {
        return Err(format!("landed on {}", echo["uri"]));
    }
    let jwt = crate::support::seen(&echo, "x-wxgate-jwt-assertion")
        .pop()
        .ok_or("the app got no identity header")?;
    let jwks = crate::support::get(&gate.url("/_wxgate/jwks.json"))
        .await
        .text();
    let claims = verify(&jwt, &jwks, &gate.issuer(), &gate.audience())?;
    if claims["idp"] != "wecom" || claims["userid"] != "lisi" || claims["department"] != json!([3])
    {
        return Err(format!("not lisi of department 3 via WeCom: {claims}"));
    }
    Ok(())
}
