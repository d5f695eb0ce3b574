//! The request-head guard seen through the whole proxy: clients that are slow or
//! odd between requests, in front of an upstream that is slow to answer.

mod common;

use std::time::Duration;

use common::raw::*;
use common::start_proxy;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wxgate::config::Dur;

/// RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request
/// line; clients have long sent a CRLF after a POST body. With an upstream slower
/// than `server.header_read_timeout`, that CRLF must not cost the answer.
#[tokio::test]
async fn a_crlf_after_a_post_body_does_not_cost_a_slow_upstream_s_answer() {
    let proxy = start_proxy(|c| c.server.header_read_timeout = Dur::secs(1)).await;
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
