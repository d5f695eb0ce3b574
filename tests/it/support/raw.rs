//! Below HTTP clients: an upstream that records exactly the requests that reached it,
//! a raw HTTP/1 response reader (head bytes as sent), and a capture of this test
//! binary's log.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use wxgate::body::full;
use wxgate::config::file::Config;

use super::{proxy, serve_http1, Gate};

// ---------------------------------------------------------------- recording upstream

/// One request as the upstream parsed it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query.
    pub target: String,
    pub headers: HeaderMap,
    /// The whole body, or why reading it failed (the proxy aborted it).
    pub body: Result<Bytes, String>,
}

/// An upstream that answers every request with 200 "recorded" and keeps what it saw.
/// `arrived` fires when a request head arrives (before its body is read).
#[derive(Clone)]
pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    pub arrived: Arc<Notify>,
}

impl Recorder {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests whose body arrived whole: what the upstream would act on.
    pub fn complete(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.body.is_ok()).collect()
    }

    pub fn targets(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.target).collect()
    }
}

pub async fn start_recorder() -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rec = Recorder {
        addr,
        seen: Arc::default(),
        arrived: Arc::new(Notify::new()),
    };
    let shared = rec.clone();
    serve_http1(listener, move |req: Request<Incoming>| {
        let rec = shared.clone();
        async move {
            rec.arrived.notify_one();
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .map_err(|e| e.to_string());
            rec.seen.lock().unwrap().push(Seen {
                target: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                headers: parts.headers,
                body,
            });
            Response::new(full("recorded"))
        }
    });
    rec
}

/// wxgate (every path public) in front of a [`Recorder`].
pub async fn proxy_to_recorder(tweak: impl FnOnce(&mut Config)) -> (Gate, Recorder) {
    let rec = start_recorder().await;
    let url = format!("http://{}", rec.addr);
    let proxy = proxy()
        .tweak(move |c| {
            c.upstream.url = url;
            tweak(c);
        })
        .run()
        .await;
    (proxy, rec)
}

// ---------------------------------------------------------------- raw HTTP/1

/// A response read off the wire, head bytes kept as they were sent.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Reads one response (Content-Length, chunked, or until close). None when the
/// connection closed (or reset) before a complete head arrived.
pub async fn read_response(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<RawResponse> {
    let (status, head, headers, head_len) = loop {
        let mut parsed = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut parsed);
        if let Ok(httparse::Status::Complete(n)) = resp.parse(buf) {
            let headers: Vec<(String, Vec<u8>)> = resp
                .headers
                .iter()
                .map(|h| (h.name.to_string(), h.value.to_vec()))
                .collect();
            let status = resp.code.unwrap_or(0);
            break (
                status,
                String::from_utf8_lossy(&buf[..n]).into_owned(),
                headers,
                n,
            );
        }
        if !fill(tcp, buf).await {
            return None;
        }
    };
    buf.drain(..head_len);
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
    };
    let body = if status == 304 || status == 204 || (100..200).contains(&status) {
        Vec::new()
    } else if let Some(len) = find("content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
        while buf.len() < len {
            if !fill(tcp, buf).await {
                break;
            }
        }
        buf.drain(..len.min(buf.len())).collect()
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(tcp, buf).await
    } else {
        while fill(tcp, buf).await {}
        std::mem::take(buf)
    };
    Some(RawResponse {
        status,
        head,
        headers,
        body,
    })
}

async fn read_chunked(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find_crlf(buf) else {
            if !fill(tcp, buf).await {
                return body;
            }
            continue;
        };
        let size_line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        while buf.len() < line_end + 2 + size + 2 {
            if !fill(tcp, buf).await {
                return body;
            }
        }
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..line_end + 2 + size + 2);
        if size == 0 {
            return body;
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// Reads more bytes; false on close or error. Bounded so a test cannot hang.
async fn fill(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        Ok(_) => false,
        Err(_) => panic!("no bytes from the proxy for 10 s"),
    }
}

/// Whether the peer closed the connection (EOF or reset) with nothing more to say.
pub async fn closed(tcp: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 1024];
    match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => false,
    }
}

/// Sends `request` on a fresh connection and reads one response.
pub async fn one_exchange(addr: SocketAddr, request: &[u8]) -> (TcpStream, Option<RawResponse>) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let resp = read_response(&mut tcp, &mut buf).await;
    (tcp, resp)
}

// ---------------------------------------------------------------- log capture

/// Every log line of this test binary, captured from the first call on.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buf
    })
}

/// Installs the capture; call before starting what logs.
pub fn capture_logs() {
    let _ = log_buffer();
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------- scripted raw upstream

/// An upstream that writes `reply` as soon as a request head arrived (whatever body
/// follows: it is read and dropped), and keeps the connection until the peer closes. `closed` fires each time wxgate
/// closes a connection to it; `heads` are the request heads it got.
#[derive(Clone)]
pub struct RawUpstream {
    pub addr: SocketAddr,
    pub closed: Arc<Notify>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawUpstream {
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

pub async fn raw_upstream(reply: Vec<u8>) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = RawUpstream {
        addr: listener.local_addr().unwrap(),
        closed: Arc::new(Notify::new()),
        heads: Arc::default(),
    };
    let shared = up.clone();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (up, reply) = (shared.clone(), reply.clone());
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 16 * 1024];
                'conn: loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    // Every head is answered; what is not a head is read and dropped.
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).into_owned();
                        up.heads.lock().unwrap().push(head);
                        got.drain(..end + 4);
                        if s.write_all(&reply).await.is_err() {
                            break 'conn;
                        }
                    }
                }
                up.closed.notify_one();
            });
        }
    });
    up
}
