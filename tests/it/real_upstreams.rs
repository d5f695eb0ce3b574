//! wxgate in front of real upstream servers that read requests their own way:
//! hypercorn (Python's ASGI server, which honours an h2c upgrade as it comes) and
//! PHP's built-in server (which names headers as CGI does: `X.Wxgate.Openid` becomes
//! `HTTP_X_WXGATE_OPENID`). What reaches them is what an app behind wxgate would see.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::corpus::{header_names, Removed};
use crate::support::raw::{read_response, RawResponse};
use crate::support::skip::{program, skip};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

fn support(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/support")
        .join(file)
}

/// A server started as a child process, killed when dropped.
struct Server {
    addr: SocketAddr,
    _child: Child,
}

/// Starts `cmd` and waits (at most 20 s) for a line of its output naming the
/// `http://127.0.0.1:PORT` it listens on.
async fn start(mut cmd: Command) -> Server {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("the server starts");
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let find = async {
        let mut seen = String::new();
        loop {
            let line = tokio::select! {
                l = out.next_line() => l,
                l = err.next_line() => l,
            };
            let Ok(Some(line)) = line else {
                panic!("the server exited before it listened:\n{seen}");
            };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(at) = line.find("http://127.0.0.1:") {
                let port: String = line[at + 17..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                return port.parse::<u16>().expect("a port");
            }
        }
    };
    let port = tokio::time::timeout(Duration::from_secs(20), find)
        .await
        .expect("the server said where it listens within 20 s");
    // The rest of its output is drained so it never blocks on a full pipe.
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Ok(Some(_)) = out.next_line() => {}
                Ok(Some(_)) = err.next_line() => {}
                else => return,
            }
        }
    });
    Server {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _child: child,
    }
}

/// hypercorn serving `tests/it/support/asgi_echo.py`, or None (a loud skip) without it.
async fn hypercorn() -> Option<Server> {
    let python = program("python3")?;
    let has = std::process::Command::new(&python)
        .args(["-c", "import hypercorn"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        skip("hypercorn not installed (pip install -r tests/it/support/requirements.txt)");
        return None;
    }
    let mut cmd = Command::new(python);
    cmd.args(["-m", "hypercorn", "--bind", "127.0.0.1:0", "asgi_echo:app"])
        .current_dir(support(""))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    Some(start(cmd).await)
}

/// PHP's built-in server running `tests/it/support/server_vars.php`, or None.
async fn php() -> Option<Server> {
    let php = program("php")?;
    let mut cmd = Command::new(php);
    cmd.args(["-S", "127.0.0.1:0"])
        .arg(support("server_vars.php"));
    Some(start(cmd).await)
}

async fn exchange(tcp: &mut TcpStream, request: &str) -> RawResponse {
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    read_response(tcp, &mut buf).await.expect("a response")
}

fn json(resp: &RawResponse) -> Value {
    serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("JSON ({e}): {}", String::from_utf8_lossy(&resp.body)))
}

#[tokio::test]
async fn an_h2c_upgrade_is_forwarded_as_a_plain_request_to_an_upstream_that_would_honour_it() {
    let Some(upstream) = hypercorn().await else {
        return;
    };
    let proxy = crate::support::proxy()
        .tweak(|c| {
            c.upstream.url = format!("http://{}", upstream.addr);
            c.access.public_paths = vec!["/public/*".into()];
        })
        .run()
        .await;

    // hypercorn answers this with 101 and HTTP/2 on the socket when it gets it.
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let resp = exchange(
        &mut tcp,
        "GET /public/x HTTP/1.1\r\nHost: app\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200, "never switched to h2c: {}", resp.head);
    let seen = json(&resp);
    assert_eq!(seen["http_version"], "1.1");
    let names: Vec<String> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap().to_ascii_lowercase())
        .collect();
    for hop in ["upgrade", "http2-settings", "connection"] {
        assert!(
            !names.iter().any(|n| n == hop),
            "{hop} reached hypercorn: {names:?}"
        );
    }

    // The connection is still wxgate's HTTP/1.1: a protected path is wxgate's to
    // answer, not a tunnel's.
    let resp = exchange(
        &mut tcp,
        "GET /private HTTP/1.1\r\nHost: app\r\nAccept: application/json\r\n\
         X-Wxgate-Openid: forged\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 401, "{}", resp.head);
    assert_eq!(json(&resp)["error"], "unauthenticated", "{}", resp.head);
}

/// A WebSocket text frame as a client sends it (masked).
fn ws_client_text(text: &str) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test]
async fn a_websocket_still_tunnels_to_a_real_server() {
    let Some(upstream) = hypercorn().await else {
        return;
    };
    let proxy = crate::support::proxy()
        .tweak(|c| c.upstream.url = format!("http://{}", upstream.addr))
        .run()
        .await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(
        b"GET /chat HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    // The head byte by byte: what follows it is the tunnel's.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tcp.read_exact(&mut b).await.expect("the 101 head");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    tcp.write_all(&ws_client_text("hello through wxgate"))
        .await
        .unwrap();
    let mut echo = [0u8; 22];
    tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut echo))
        .await
        .expect("an echo within 10 s")
        .unwrap();
    assert_eq!(echo[..2], [0x81, 20]);
    assert_eq!(&echo[2..], b"hello through wxgate");
}

/// Sends the corpus names removed `when` with a value of their own ("forged-N"),
/// then `extra`; returns what PHP read, and the values sent.
async fn php_reads(
    proxy: SocketAddr,
    when: &[Removed],
    extra: &str,
) -> (serde_json::Map<String, Value>, Vec<String>) {
    let mut request = String::from("GET /page HTTP/1.1\r\nHost: app\r\n");
    let mut forged = vec![];
    for (i, (removed, name)) in header_names().iter().enumerate() {
        if when.contains(removed) {
            let value = format!("forged-{i}");
            request.push_str(&format!("{name}: {value}\r\n"));
            forged.push(value);
        }
    }
    request.push_str(extra);
    request.push_str("Connection: close\r\n\r\n");
    let mut tcp = TcpStream::connect(proxy).await.unwrap();
    let resp = exchange(&mut tcp, &request).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    let Value::Object(vars) = json(&resp) else {
        panic!("an object: {}", String::from_utf8_lossy(&resp.body));
    };
    (vars, forged)
}

#[tokio::test]
async fn a_php_app_never_reads_a_lookalike_identity_or_routing_header() {
    let Some(upstream) = php().await else {
        return;
    };
    let proxy = crate::support::proxy()
        .tweak(|c| c.upstream.url = format!("http://{}", upstream.addr))
        .run()
        .await;
    let (vars, forged) = php_reads(proxy.addr, &[Removed::Always, Removed::Untrusted], "").await;
    let leaked: Vec<_> = vars
        .iter()
        .filter(|(_, v)| v.as_str().is_some_and(|v| forged.iter().any(|f| f == v)))
        .collect();
    assert!(leaked.is_empty(), "PHP read: {leaked:?}");
    assert!(
        !vars.contains_key("HTTP_X_WXGATE_OPENID"),
        "no openid without a sign-in: {vars:?}"
    );
    assert_eq!(
        vars["HTTP_X_FORWARDED_FOR"], "127.0.0.1",
        "the address is wxgate's word: {vars:?}"
    );
}

#[tokio::test]
async fn a_trusted_proxy_s_routing_headers_reach_php_as_sent_but_never_an_identity() {
    let Some(upstream) = php().await else {
        return;
    };
    let proxy = crate::support::proxy()
        .tweak(|c| {
            c.upstream.url = format!("http://{}", upstream.addr);
            c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        })
        .run()
        .await;
    let routing = "X-Original-URL: /from-ingress\r\nX-Real-IP: 203.0.113.7\r\n\
                   X-Forwarded-Port: 443\r\nX-Forwarded-Prefix: /app\r\n";
    let (vars, forged) = php_reads(proxy.addr, &[Removed::Always], routing).await;
    for (key, want) in [
        ("HTTP_X_ORIGINAL_URL", "/from-ingress"),
        ("HTTP_X_REAL_IP", "203.0.113.7"),
        ("HTTP_X_FORWARDED_PORT", "443"),
        ("HTTP_X_FORWARDED_PREFIX", "/app"),
    ] {
        assert_eq!(vars[key], want, "{vars:?}");
    }
    let identity_leaks: Vec<_> = vars
        .iter()
        .filter(|(k, v)| {
            k.contains("WXGATE") && v.as_str().is_some_and(|v| forged.iter().any(|f| f == v))
        })
        .collect();
    assert!(identity_leaks.is_empty(), "PHP read: {identity_leaks:?}");
}
