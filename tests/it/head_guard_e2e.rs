//! The request-head guard seen through the whole proxy: clients that are slow or
//! odd between requests, in front of an upstream that is slow to answer.

use std::time::Duration;

use crate::support::proxy;
use crate::support::raw::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wxgate::config::Dur;

/// RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request
/// line; clients have long sent a CRLF after a POST body. With an upstream slower
/// than `server.header_read_timeout`, that CRLF must not cost the answer.
#[tokio::test]
async fn a_crlf_after_a_post_body_does_not_cost_a_slow_upstream_s_answer() {
    let proxy = proxy()
        .tweak(|c| c.server.header_read_timeout = Dur::secs(1))
        .run()
        .await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"POST /slow?ms=2500 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        .await
        .unwrap();
    // The CRLF in a segment of its own, as a client writing it after the body does.
    tokio::time::sleep(Duration::from_millis(50)).await;
    tcp.write_all(b"\r\n").await.unwrap();
    let mut buf = Vec::new();
    let resp = read_response(&mut tcp, &mut buf).await;
    assert_eq!(
        resp.as_ref().map(|r| r.status),
        Some(200),
        "the upstream's answer reaches the client: {resp:?}"
    );
}

/// The same client sending only a part of its next head, then nothing: the answer
/// arrives, and the part is timed out afterwards.
#[tokio::test]
async fn a_partial_next_head_does_not_cost_a_slow_upstream_s_answer_and_is_timed_out() {
    let proxy = proxy()
        .tweak(|c| c.server.header_read_timeout = Dur::secs(1))
        .run()
        .await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"POST /slow?ms=2500 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    tcp.write_all(b"GET /next HTTP/1.1\r\nHo").await.unwrap();
    let mut buf = Vec::new();
    let resp = read_response(&mut tcp, &mut buf).await;
    assert_eq!(resp.as_ref().map(|r| r.status), Some(200), "{resp:?}");
    let started = std::time::Instant::now();
    let next = read_response(&mut tcp, &mut buf).await;
    assert!(
        next.as_ref().is_none_or(|r| r.status == 408),
        "only a timeout: {next:?}"
    );
    assert!(closed(&mut tcp).await || next.is_some());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Later heads are bounded as the first: a second head trickled a line at a time is
/// cut at the header read timeout.
#[tokio::test]
async fn a_slowloris_second_head_on_a_keep_alive_connection_is_cut_at_the_header_read_timeout() {
    let proxy = proxy()
        .tweak(|c| c.server.header_read_timeout = Dur::secs(1))
        .run()
        .await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let resp = read_response(&mut tcp, &mut buf).await;
    assert_eq!(resp.map(|r| r.status), Some(200));
    let started = std::time::Instant::now();
    tcp.write_all(b"GET /second HTTP/1.1\r\n").await.unwrap();
    let mut cut = false;
    for i in 0..50 {
        let line = format!("X-Drip-{i}: x\r\n");
        if tcp.write_all(line.as_bytes()).await.is_err() {
            cut = true;
            break;
        }
        let mut b = [0u8; 512];
        use tokio::io::AsyncReadExt;
        match tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut b)).await {
            Err(_) => continue,
            Ok(Ok(n)) if n > 0 => {
                let got = String::from_utf8_lossy(&b[..n]);
                assert!(got.starts_with("HTTP/1.1 408"), "only a timeout: {got}");
                cut = true;
                break;
            }
            Ok(_) => {
                cut = true;
                break;
            }
        }
    }
    let took = started.elapsed();
    assert!(cut, "still connected after {took:?}");
    assert!(took < Duration::from_secs(4), "cut after {took:?}");
}
