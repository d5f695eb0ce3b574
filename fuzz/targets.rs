//! The fuzz targets' bodies, shared by the cargo-fuzz binaries (`fuzz_targets/*.rs`,
//! nightly) and the stable smoke test (`tests/it/fuzz_smoke.rs`). Each takes arbitrary
//! bytes, must never panic, and asserts the invariants of what it exercises.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wxgate::config::{from_toml, Config};
use wxgate::proxy::fuzzing::{keeps_trailer, read_response_bytes, ReadResponse};
use wxgate::session::{now_unix, CookieCodec, Store};
use wxgate::signin::paths::normalize_path;
use wxgate::signin::redirect::safe_return_path;
use wxgate::signin::{state, Core as Auth};
use wxgate::wechat::{parse_response, UserInfo};

/// A validated `rd` is a same-origin path, free of controls, and a fixed point.
pub fn rd(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let Some(out) = safe_return_path(&input) else {
        return;
    };
    assert!(out.starts_with('/'), "{input:?} -> {out:?}");
    assert!(
        !out.starts_with("//") && !out.contains('\\'),
        "{input:?} -> {out:?}"
    );
    assert!(
        !out.chars().any(char::is_control),
        "{input:?} -> {out:?}: a control character"
    );
    assert_eq!(
        safe_return_path(&out).as_deref(),
        Some(out.as_str()),
        "{input:?} -> {out:?} does not re-validate to itself"
    );
}

/// A normalised path is absolute, has no empty or dot segment, and is a fixed point.
pub fn path(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let Some(out) = normalize_path(&input) else {
        return;
    };
    assert!(out.starts_with('/'), "{input:?} -> {out:?}");
    for bad in ["//", "/./", "/../"] {
        assert!(!out.contains(bad), "{input:?} -> {out:?} contains {bad}");
    }
    assert!(
        !out.ends_with("/.") && !out.ends_with("/.."),
        "{input:?} -> {out:?}"
    );
    // Normalising again may decode once more (an escape the first pass produced), but
    // must never refuse or move across a slash.
    let again = normalize_path(&out);
    assert!(
        again.is_some(),
        "{input:?} -> {out:?} is refused on a second pass"
    );
}

/// A fixed, valid configuration with the cookie session store, built once.
fn auth() -> &'static Auth {
    static AUTH: OnceLock<Auth> = OnceLock::new();
    AUTH.get_or_init(|| {
        let text = r#"
[server]
public_url = "https://app.example.com"
[upstream]
url = "http://127.0.0.1:3000"
[wechat]
appid = "wx0000000000000000"
secret = "fuzz-secret"
[session]
store = "cookie"
secret = "0123456789abcdef0123456789abcdef-fuzz-only"
"#;
        let cfg = from_toml(text, Path::new("."), &BTreeMap::<String, String>::new())
            .expect("the fixed config is valid");
        let store = poll_once(Store::from_config(&cfg.session))
            .expect("the cookie store is ready at once")
            .expect("the cookie store opens");
        Auth::new(Arc::new(cfg), Arc::new(store)).expect("auth builds")
    })
}

fn codec() -> CookieCodec {
    CookieCodec::new(b"0123456789abcdef0123456789abcdef-fuzz-only", &[])
}

/// The memory and cookie stores never wait; anything else here would be a bug.
fn poll_once<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

fn cookie_header(value: &[u8]) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(http::header::COOKIE, HeaderValue::from_bytes(value).ok()?);
    Some(h)
}

/// Session cookies: an arbitrary Cookie header, and an arbitrary ticket inside an
/// authentic seal (the compact session parse), read the way every request is.
pub fn session_cookie(data: &[u8]) {
    let auth = auth();
    let name = auth.cfg().session.cookie_name.clone();
    if let Some(h) = cookie_header(data) {
        let got = poll_once(auth.session_of(&h)).expect("the cookie store never waits");
        if let Ok(Some((s, _))) = got {
            assert!(s.expires_at > now_unix());
        }
    }

    let ticket = String::from_utf8_lossy(data);
    let sealed = codec().seal(&name, &ticket);
    assert_eq!(
        codec().open(&name, &sealed).as_deref(),
        Some(&*ticket),
        "seal/open round trip"
    );
    assert_eq!(codec().open("other", &sealed), None, "bound to its name");
    let h = cookie_header(format!("{name}={sealed}").as_bytes()).expect("sealed is ASCII");
    let got = poll_once(auth.session_of(&h)).expect("the cookie store never waits");
    if let Ok(Some((s, t))) = got {
        assert_eq!(t, ticket);
        assert!(s.expires_at > now_unix());
    }
}

/// Flow (state) cookies: the first line is the state, the rest the cookie value, both
/// read raw and as the JSON inside an authentic seal.
pub fn state_cookie(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (st, value) = text.split_once('\n').unwrap_or(("abc123", &text));
    let auth = auth();
    let base = auth.cfg().session.cookie_name.clone();

    if let Some(found) = state::state_of_cookie(&base, st) {
        assert!(state::is_valid_state(found));
        assert_eq!(state::cookie_name(&base, found), st);
    }
    if !state::is_valid_state(st) {
        return;
    }
    let name = state::cookie_name(&base, st);
    if let Some(h) = cookie_header(format!("{name}={value}").as_bytes()) {
        let _ = auth.flow_of(&h, st);
    }
    let sealed = codec().seal(&name, value);
    let h = cookie_header(format!("{name}={sealed}").as_bytes()).expect("sealed is ASCII");
    if let Some(flow) = auth.flow_of(&h, st) {
        let _ = flow.expired(now_unix());
        // A flow cookie moved to another state's name never opens there.
        let moved = format!("{st}x");
        let other = state::cookie_name(&base, &moved);
        let h = cookie_header(format!("{other}={sealed}").as_bytes()).expect("ASCII");
        assert!(
            auth.flow_of(&h, &moved).is_none(),
            "{st:?}: moved flow opened"
        );
    }
}

/// Configuration text: parsing and validation report problems, never panic.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let env = BTreeMap::<String, String>::new();
    let result: Result<Config, _> = from_toml(&text, Path::new("/nonexistent-fuzz-dir"), &env);
    if let Err(e) = result {
        assert!(
            !e.problems().is_empty(),
            "an error names at least one problem"
        );
    }
}

/// WeChat API answers: any status and body is an answer or a WechatError.
pub fn wechat_response(data: &[u8]) {
    let (status, body) = match data.split_first() {
        // The first byte picks a status: mostly 200, sometimes anything.
        Some((s, rest)) if *s < 200 => (200u16, rest),
        Some((s, rest)) => (u16::from(*s) * 2, rest),
        None => (200, data),
    };
    let _ = parse_response::<UserInfo>("userinfo", status, body);
    if let Ok(v) = parse_response::<serde_json::Value>("access_token", status, body) {
        assert!((200..300).contains(&status));
        assert!(v.is_object());
        let code = v.get("errcode").and_then(serde_json::Value::as_i64);
        assert!(
            code.is_none() || code == Some(0),
            "an errcode is an error: {v}"
        );
    }
}

/// An upstream's response (after one byte choosing GET or HEAD): whatever the inline
/// exchange reads from it, hyper's client reads the same (status, version, reason,
/// headers, body, trailers); the exchange may refuse what hyper reads (be stricter),
/// never read what hyper refuses.
pub fn h1_response(data: &[u8]) {
    let (head_request, raw) = match data.split_first() {
        Some((b, rest)) => (b & 1 == 1, rest),
        None => (false, data),
    };
    let Ok(ours) = read_response_bytes(raw, head_request) else {
        return;
    };
    match hyper_reads(raw, head_request) {
        Err(e) => panic!(
            "the inline exchange read a response hyper's client refuses ({e}): {:?} -> {ours:?}",
            String::from_utf8_lossy(raw)
        ),
        Ok(hypers) => {
            let ours = ReadResponse {
                reusable: false,
                ..ours
            };
            assert_eq!(ours, hypers, "{:?}", String::from_utf8_lossy(raw));
        }
    }
}

/// What hyper's HTTP/1 client reads from `raw`, sent by a server that closes the
/// connection after it. Trailers are compared as the exchange keeps them (it drops
/// the framing and routing fields a trailer may not change).
pub fn hyper_reads(raw: &[u8], head_request: bool) -> Result<ReadResponse, String> {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
    }
    RUNTIME.with(|rt| rt.block_on(hyper_exchange(raw.to_vec(), head_request)))
}

async fn hyper_exchange(raw: Vec<u8>, head_request: bool) -> Result<ReadResponse, String> {
    // Room for the whole answer: the server never waits for the client to read.
    let (client, mut server) = tokio::io::duplex(raw.len() + 4096);
    tokio::spawn(async move {
        let mut got = Vec::new();
        let mut b = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match server.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&b[..n]),
            }
        }
        let _ = server.write_all(&raw).await;
        let _ = server.shutdown().await;
    });
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let method = if head_request {
        http::Method::HEAD
    } else {
        http::Method::GET
    };
    let req = http::Request::builder()
        .method(method)
        .uri("/x")
        .header("host", "upstream")
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let reason = resp
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| r.as_bytes().to_vec());
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.map_err(|e| e.to_string())?;
    let pairs = |h: &HeaderMap, keep: fn(&http::HeaderName) -> bool| {
        h.iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect::<Vec<_>>()
    };
    Ok(ReadResponse {
        status: parts.status.as_u16(),
        version: parts.version,
        reason,
        headers: pairs(&parts.headers, |_| true),
        trailers: collected.trailers().map(|t| pairs(t, keeps_trailer)),
        body: collected.to_bytes().to_vec(),
        reusable: false,
    })
}
