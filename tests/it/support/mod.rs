//! What the tests share: the echo upstream, small HTTP clients, and (in the
//! submodules) the one way to start a wxgate ([`harness`]), the mock WeChat side and
//! browsers ([`wechat`]), wxgate as a child process ([`process`]), raw HTTP/1
//! ([`raw`]), redis-server ([`redis_server`]) and skipping ([`skip`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use wxgate::body::{full, Body, BoxError};

pub mod corpus;
pub mod harness;
pub mod process;
pub mod raw;
pub mod redis_server;
pub mod sessions;
pub mod skip;
pub mod wechat;

pub use harness::{proxy, Gate};

// ---------------------------------------------------------------- echo upstream

/// The echo upstream. `slow_started` fires when a `/slow` request arrives, so a test
/// can act while it is in flight.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub slow_started: Arc<Notify>,
}

/// Starts the echo upstream: every request is answered with JSON describing it
/// (method, uri, version, headers in order, body length and SHA-256), except:
/// `/slow?ms=N` (waits first), `/big?bytes=N[&chunked=1]` (streams N zero bytes),
/// `/upload` (an echo: the body is counted as it streams), `/ws` (101, then echoes
/// raw bytes), `/reset` (announces 100 bytes, then fails: hyper drops the connection
/// before the head is flushed), `/trailers`, `/status/N`.
/// `?hop=1` adds connection-scoped response headers the proxy must remove.
pub async fn start_upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let slow_started = Arc::new(Notify::new());
    let notify = slow_started.clone();
    serve_http1(listener, move |req| echo(req, notify.clone()));
    Upstream { addr, slow_started }
}

/// Serves HTTP/1 (upgrades allowed) on `listener` in the background until the test
/// ends, every request answered by `handle`.
pub fn serve_http1<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let answer = handle(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                // Room for a client's 100 headers plus the ones wxgate adds.
                let _ = hyper::server::conn::http1::Builder::new()
                    .max_headers(200)
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
}

fn query_param(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| v.to_string())
    })
}

async fn echo(mut req: Request<Incoming>, slow: Arc<Notify>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/slow" {
        slow.notify_one();
        let ms = query_param(&req, "ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path == "/big" {
        let bytes = query_param(&req, "bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let chunked = query_param(&req, "chunked").is_some();
        return Response::new(
            Zeros {
                left: bytes,
                exact: !chunked,
            }
            .boxed_unsync(),
        );
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let mut resp = Response::new(full("status"));
        *resp.status_mut() = code.parse().unwrap_or(StatusCode::BAD_REQUEST);
        return resp;
    }
    if path == "/reset" {
        // 10 bytes of the 100 announced, then a failure: hyper drops the connection.
        let frames = vec![
            Ok(Frame::data(Bytes::from_static(b"0123456789"))),
            Err("reset".into()),
        ];
        let mut resp = Response::new(Frames(frames.into()).boxed_unsync());
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("100"));
        return resp;
    }
    if path == "/ws" {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(io) = on_upgrade.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(io));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut resp = Response::new(wxgate::body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        resp.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return resp;
    }
    if path == "/trailers" {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", HeaderValue::from_static("abc123"));
        let frames = vec![
            Ok(Frame::data(Bytes::from_static(b"payload"))),
            Ok(Frame::trailers(trailers)),
        ];
        let mut resp = Response::new(Frames(frames.into()).boxed_unsync());
        resp.headers_mut()
            .insert(header::TRAILER, HeaderValue::from_static("x-checksum"));
        return resp;
    }

    let hop = query_param(&req, "hop").is_some();
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let version = format!("{:?}", req.version());
    let headers: Vec<Value> = req
        .headers()
        .iter()
        .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();
    let mut body = req.into_body();
    let mut len: u64 = 0;
    let mut sha = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    len += d.len() as u64;
                    sha.update(d);
                }
            }
            Err(_) => break,
        }
    }
    let doc = json!({
        "method": method,
        "uri": uri,
        "version": version,
        "headers": headers,
        "body_len": len,
        "body_sha256": hex(sha.finish().as_ref()),
    });
    let mut resp = Response::new(full(doc.to_string()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if hop {
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("x-upstream-hop"),
        );
        h.insert("x-upstream-hop", HeaderValue::from_static("secret"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-end-to-end", HeaderValue::from_static("kept"));
    }
    resp
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref())
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// `left` zero bytes in 64 KiB frames, generated as they are read.
pub struct Zeros {
    pub left: u64,
    /// Announce the length (Content-Length) or not (chunked).
    pub exact: bool,
}

impl HttpBody for Zeros {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(ZEROS.len() as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            &ZEROS[..n as usize],
        )))))
    }
    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.left)
        } else {
            SizeHint::default()
        }
    }
}

/// A body of prepared frames (data, trailers, or a failure), with no announced
/// length.
struct Frames(std::collections::VecDeque<Result<Frame<Bytes>, BoxError>>);

impl HttpBody for Frames {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front())
    }
}

// ---------------------------------------------------------------- wxgate

/// The top of every test config: both listeners on loopback port 0, `public_url`,
/// the `upstream` URL and the mock's official account, ending in an open
/// `[session]` table for the caller to finish (it needs at least `secret`).
pub fn config_head(public_url: &str, upstream: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "{public_url}"
[admin]
listen = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[wechat]
appid = "wx0000000000000000"
secret = "test-app-secret"
[session]
"#
    )
}

/// The config [`harness::proxy`] starts from without WeChat, in front of the echo upstream at
/// `upstream`: every path public, so proxy tests need no sign-in. Also a file
/// `wxgate serve` accepts.
pub fn base_config(upstream: SocketAddr) -> String {
    config_head("http://127.0.0.1", &format!("http://{upstream}"))
        + r#"secret = "0123456789abcdef0123456789abcdef-test-only"
[access]
public_paths = ["/*"]
"#
}

/// A folder of its own below the system's temp folder for `name`'s files.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wxgate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// An address where nothing listens.
pub async fn dead_address() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

// ---------------------------------------------------------------- clients

pub type TestClient = Client<HttpConnector, Body>;

pub fn http1_client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// HTTP/2 with prior knowledge (h2c), as gRPC and some internal clients speak it.
pub fn h2c_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub fn body(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A full response, body collected.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn send(client: &TestClient, req: Request<Body>) -> Answer {
    let resp = client.request(req).await.expect("response");
    let (parts, b) = resp.into_parts();
    let collected = b.collect().await.expect("body");
    let trailers = collected.trailers().cloned();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}

pub async fn get(url: &str) -> Answer {
    let req = Request::get(url).body(wxgate::body::empty()).unwrap();
    send(&http1_client(), req).await
}

/// Every value the echo upstream saw for a header, in order.
pub fn seen(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|p| p[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .map(|p| p[1].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The process's peak resident memory (VmHWM), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
