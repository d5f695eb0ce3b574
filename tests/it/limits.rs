//! Limits on what clients and upstreams send: the size of a request head and its
//! number of header lines (whether the head arrives at once or a byte at a time), the
//! size of an upstream's response head, and bodies that go quiet on either side. Each
//! test speaks raw TCP to an embedded wxgate.

use std::time::Duration;

use crate::support::raw::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wxgate::admin::metrics::metrics;
use wxgate::config::Dur;

/// A GET head of exactly `len` bytes (padded with one header).
fn head_of(path: &str, len: usize) -> Vec<u8> {
    let fixed = format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n").len();
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(len - fixed)
    )
    .into_bytes()
}

/// Writes `bytes` at once, or the first part at once and the last `trickle` bytes one
/// write each, then reads one response.
async fn send(addr: std::net::SocketAddr, bytes: &[u8], trickle: usize) -> RawResponse {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (at_once, one_by_one) = bytes.split_at(bytes.len() - trickle);
    // The proxy may answer and close before it has read everything we send.
    let _ = tcp.write_all(at_once).await;
    for b in one_by_one {
        if tcp.write_all(std::slice::from_ref(b)).await.is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    read_response(&mut tcp, &mut buf).await.expect("an answer")
}

/// The refusal page: bilingual, and the connection closed.
fn assert_refusal_page(resp: &RawResponse, status: u16, zh: &str, en: &str) {
    assert_eq!(resp.status, status, "{}", resp.head);
    let body = String::from_utf8_lossy(&resp.body);
    assert!(body.contains(zh) && body.contains(en), "{body}");
    assert!(
        resp.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{}",
        resp.head
    );
    assert_eq!(
        resp.header("connection").as_deref(),
        Some("close"),
        "{}",
        resp.head
    );
}

#[tokio::test]
async fn a_request_head_over_64kb_gets_431_with_the_page_at_once_or_a_byte_at_a_time() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    let refused_before = metrics().denied.get(&["header_too_large"]);
    for trickle in [0, 1000] {
        let exact = head_of("/exact", 64 * 1024);
        let resp = send(proxy.addr, &exact, trickle).await;
        assert_eq!(resp.status, 200, "64 KB exactly is accepted: {}", resp.head);

        let over = head_of("/over", 64 * 1024 + 1);
        let resp = send(proxy.addr, &over, trickle).await;
        assert_refusal_page(&resp, 431, "请求头过大", "Request headers too large");

        // Far over: a 100 KB header line, and half a megabyte.
        for len in [100 * 1024, 512 * 1024] {
            let resp = send(proxy.addr, &head_of("/far-over", len), trickle).await;
            assert_eq!(resp.status, 431, "{len} bytes: {}", resp.head);
        }
    }
    assert_eq!(rec.targets(), ["/exact", "/exact"]);
    assert!(metrics().denied.get(&["header_too_large"]) >= refused_before + 6);
}

#[tokio::test]
async fn more_than_100_header_lines_get_431_with_the_page() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    let head = |path: &str, n: usize| {
        let lines: String = (1..n).map(|i| format!("X-H{i}: v\r\n")).collect();
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{lines}\r\n").into_bytes()
    };
    let resp = send(proxy.addr, &head("/hundred", 100), 0).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    let resp = send(proxy.addr, &head("/more", 101), 50).await;
    assert_refusal_page(&resp, 431, "请求头过多", "Too many request headers");
    assert_eq!(rec.targets(), ["/hundred"]);
}

#[tokio::test]
async fn a_request_line_longer_than_the_limit_gets_414_with_the_page() {
    let (proxy, rec) = proxy_to_recorder(|c| c.server.max_header_bytes = "8KB".into()).await;
    let line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "p".repeat(9000));
    let resp = send(proxy.addr, line.as_bytes(), 0).await;
    assert_refusal_page(&resp, 414, "请求地址过长", "Request URL too long");
    // The configured limit holds for headers too.
    let resp = send(proxy.addr, &head_of("/nine", 9 * 1024), 300).await;
    assert_eq!(resp.status, 431, "{}", resp.head);
    let resp = send(proxy.addr, &head_of("/eight", 8 * 1024), 300).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(rec.targets(), ["/eight"]);
}

#[tokio::test]
async fn the_head_limit_follows_a_keep_alive_connection_across_bodies_of_every_framing() {
    let (proxy, rec) = proxy_to_recorder(|c| c.server.max_header_bytes = "4KB".into()).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    // Bodies larger than the head limit count for nothing; heads that look like
    // heads inside them are body bytes.
    let big = "GET /not-a-head HTTP/1.1\r\n\r\n".repeat(1000);
    let chunked_body = format!(
        "{:x};ext=1\r\n{big}\r\n5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n",
        big.len()
    );
    let pipelined = format!(
        "POST /length HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{big}\
         POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_body}\
         GET /after HTTP/1.1\r\nHost: x\r\n\r\n",
        big.len()
    );
    tcp.write_all(pipelined.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..3 {
        let resp = read_response(&mut tcp, &mut buf).await.expect("an answer");
        assert_eq!(resp.status, 200, "{}", resp.head);
    }
    // The next head on the same connection is held to the limit, byte by byte.
    let over = head_of("/over", 4 * 1024 + 1);
    for b in &over {
        tcp.write_all(std::slice::from_ref(b)).await.unwrap();
    }
    let resp = read_response(&mut tcp, &mut buf).await.expect("an answer");
    assert_eq!(resp.status, 431, "{}", resp.head);
    assert!(
        closed(&mut tcp).await,
        "the connection ends after a refusal"
    );

    assert_eq!(rec.targets(), ["/length", "/chunked", "/after"]);
    let seen = rec.seen();
    assert_eq!(seen[0].body.as_deref().unwrap(), big.as_bytes());
    let mut want = big.clone().into_bytes();
    want.extend_from_slice(b"hello");
    assert_eq!(seen[1].body.as_deref().unwrap(), &want[..]);
}

#[tokio::test]
async fn an_upstream_response_head_over_hypers_limit_is_a_502_even_in_one_burst() {
    // hyper's client bound (and the inline exchange's): 8 KB + 4 KB x 100.
    let mut reply = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
    reply.extend(std::iter::repeat_n(b'a', 450 * 1024));
    reply.extend_from_slice(b"\r\ncontent-length: 2\r\n\r\nok");
    let up = raw_upstream(reply).await;
    let proxy = crate::support::proxy()
        .tweak(|c| c.upstream.url = format!("http://{}", up.addr))
        .run()
        .await;
    let (_, resp) = one_exchange(proxy.addr, b"GET /big-head HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(resp.expect("an answer").status, 502);
}

#[tokio::test]
async fn a_request_body_that_goes_quiet_after_the_upstream_answered_ends_both_connections() {
    capture_logs();
    let up = raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly".to_vec()).await;
    let proxy = crate::support::proxy()
        .tweak(|c| {
            c.upstream.url = format!("http://{}", up.addr);
            c.server.body_timeout = Dur::secs(1);
        })
        .run()
        .await;
    let before = metrics().body_timeouts.get(&["client"]);
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nfirst ten.")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let resp = read_response(&mut tcp, &mut buf).await.expect("an answer");
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"early"[..]));
    // The rest of the body never comes: both connections end.
    assert!(closed(&mut tcp).await, "the client's connection is closed");
    tokio::time::timeout(Duration::from_secs(10), up.closed.notified())
        .await
        .expect("the upstream's connection is closed");
    // Other tests here count too: at least this one.
    assert!(metrics().body_timeouts.get(&["client"]) > before);
    assert!(
        captured_logs().contains("client request body idle past server.body_timeout"),
        "{}",
        captured_logs()
    );
}

#[tokio::test]
async fn a_request_body_that_goes_quiet_before_the_upstream_answered_gets_408() {
    let (proxy, rec) = proxy_to_recorder(|c| c.server.body_timeout = Dur::secs(1)).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nfirst ten.")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let resp = read_response(&mut tcp, &mut buf).await.expect("an answer");
    assert_eq!(resp.status, 408, "{}", resp.head);
    assert!(String::from_utf8_lossy(&resp.body).contains("请求超时"));
    assert!(rec.complete().is_empty());
}

#[tokio::test]
async fn an_upstream_body_that_goes_quiet_ends_the_exchange() {
    capture_logs();
    let up =
        raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst ten.".to_vec()).await;
    let proxy = crate::support::proxy()
        .tweak(|c| {
            c.upstream.url = format!("http://{}", up.addr);
            c.upstream.body_timeout = Dur::secs(1);
        })
        .run()
        .await;
    let before = metrics().body_timeouts.get(&["upstream"]);
    for request in [
        // Read by the inline exchange, and by hyper's client (an upload).
        &b"GET /stalls HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"POST /stalls HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    ] {
        let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
        tcp.write_all(request).await.unwrap();
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "the client's connection is closed");
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.starts_with("HTTP/1.1 200") && got.ends_with("first ten."),
            "the head and what came of the body, then the end: {got}"
        );
        tokio::time::timeout(Duration::from_secs(10), up.closed.notified())
            .await
            .expect("the upstream's connection is closed");
    }
    assert!(metrics().body_timeouts.get(&["upstream"]) >= before + 2);
    assert!(captured_logs().contains("upstream response body idle past upstream.body_timeout"));
}

#[tokio::test]
async fn an_http2_header_list_over_the_limit_gets_431_with_the_page() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = |path: &str, pad: usize| {
        http::Request::get(format!("http://x{path}"))
            .header("x-pad", "a".repeat(pad))
            .body(wxgate::body::empty())
            .unwrap()
    };
    let resp = sender
        .send_request(request("/within", 60 * 1024))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = sender
        .send_request(request("/over", 64 * 1024))
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("请求头过大") && body.contains("Request headers too large"));
    assert_eq!(rec.targets(), ["/within"]);
}
