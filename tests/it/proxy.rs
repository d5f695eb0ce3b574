//! The proxy is transparent: what the client sends reaches the upstream and what the
//! upstream answers reaches the client, except connection-scoped headers, forged
//! identity, wxgate's own cookies, and failures, which become clear pages.

use std::time::Duration;

use crate::support::*;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wxgate::admin::metrics::metrics;
use wxgate::body::Body;

/// A GET of `url` carrying `headers` in order (a name may repeat).
fn get_with(url: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::get(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(wxgate::body::empty()).unwrap()
}

/// POSTs `data` to `url` and collects the answer.
async fn post(client: &TestClient, url: &str, data: Body) -> Answer {
    send(client, Request::post(url).body(data).unwrap()).await
}

/// `len` zero bytes, streamed without an announced length (chunked).
fn streamed_zeros(len: u64) -> Body {
    Zeros {
        left: len,
        exact: false,
    }
    .boxed_unsync()
}

/// Opens a raw connection to `addr` and writes `request` on it.
async fn connect_and_send(addr: std::net::SocketAddr, request: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    tcp
}

/// The echo upstream's JSON in a raw HTTP/1 response (one not chunked).
fn raw_echo(raw: &str) -> serde_json::Value {
    let (_, body) = raw.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

/// Sends an upgrade `request` and reads the response head byte by byte, so that
/// nothing of the tunnel after it is consumed: the connection and the head.
async fn open_tunnel(addr: std::net::SocketAddr, request: &[u8]) -> (TcpStream, String) {
    let mut tcp = connect_and_send(addr, request).await;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    (tcp, String::from_utf8_lossy(&head).into_owned())
}

#[tokio::test]
async fn connection_headers_are_removed_in_both_directions() {
    let proxy = proxy().run().await;
    let req = get_with(
        &proxy.url("/page?hop=1"),
        &[
            ("connection", "x-client-hop, keep-alive"),
            ("x-client-hop", "secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-end-to-end", "kept"),
        ],
    );
    let answer = send(&http1_client(), req).await;
    assert_eq!(answer.status, 200);
    let echo = answer.json();
    for gone in [
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "connection",
    ] {
        assert!(seen(&echo, gone).is_empty(), "{gone} reached the upstream");
    }
    assert_eq!(seen(&echo, "x-end-to-end"), ["kept"]);
    assert_eq!(echo["uri"], "/page?hop=1");
    assert_eq!(echo["version"], "HTTP/1.1");

    assert!(answer.header("x-upstream-hop").is_none());
    assert!(answer.header("keep-alive").is_none());
    assert_eq!(answer.header("x-end-to-end"), Some("kept"));
    assert!(answer.header("x-request-id").is_some());
}

#[tokio::test]
async fn content_length_and_chunked_bodies_pass_through_both_ways() {
    let proxy = proxy().run().await;
    let client = http1_client();
    let data = vec![7u8; 300_000];

    let sized = post(&client, &proxy.url("/upload"), body(data.clone()))
        .await
        .json();
    assert_eq!(sized["body_len"], 300_000);
    assert_eq!(sized["body_sha256"], sha256_hex(&data));
    assert_eq!(seen(&sized, "content-length"), ["300000"]);

    let chunked = post(&client, &proxy.url("/upload"), streamed_zeros(300_000))
        .await
        .json();
    assert_eq!(chunked["body_len"], 300_000);
    assert_eq!(chunked["body_sha256"], sha256_hex(&[0u8; 300_000]));
    assert!(seen(&chunked, "content-length").is_empty());

    let down = get(&proxy.url("/big?bytes=200000")).await;
    assert_eq!(down.body.len(), 200_000);
    assert_eq!(down.header("content-length"), Some("200000"));
    let down = get(&proxy.url("/big?bytes=200000&chunked=1")).await;
    assert_eq!(down.body.len(), 200_000);
    assert_eq!(down.header("content-length"), None);
}

#[tokio::test]
async fn head_requests_get_the_headers_without_a_body() {
    let proxy = proxy().run().await;
    let req = Request::head(proxy.url("/big?bytes=1000"))
        .body(wxgate::body::empty())
        .unwrap();
    let answer = send(&http1_client(), req).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-length"), Some("1000"));
    assert!(answer.body.is_empty());
}

async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut tcp = connect_and_send(addr, request).await;
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn an_http_1_0_client_is_answered_and_its_connection_closed() {
    let proxy = proxy().run().await;
    // read_to_end returning at all proves the proxy closed the connection.
    let raw = raw_exchange(
        proxy.addr,
        b"GET /old HTTP/1.0\r\nHost: legacy.example\r\n\r\n",
    )
    .await;
    assert!(
        raw.starts_with("HTTP/1.0 200") || raw.starts_with("HTTP/1.1 200"),
        "{raw}"
    );
    assert!(
        !raw.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{raw}"
    );
    let echo = raw_echo(&raw);
    assert_eq!(echo["uri"], "/old");
    assert_eq!(
        echo["version"], "HTTP/1.1",
        "the upstream hop is normalised"
    );
    assert_eq!(seen(&echo, "host"), ["legacy.example"]);
}

#[tokio::test]
async fn expect_100_continue_gets_a_continue_before_the_body_is_sent() {
    let proxy = proxy().run().await;
    let mut tcp = connect_and_send(
        proxy.addr,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .await;
    let mut buf = vec![0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    let interim = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    tcp.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    tcp.read_to_end(&mut rest).await.unwrap();
    let rest = String::from_utf8_lossy(&rest).into_owned();
    assert!(rest.contains("HTTP/1.1 200"), "{rest}");
    let echo = raw_echo(&rest);
    assert_eq!(echo["body_len"], 5);
    assert!(seen(&echo, "expect").is_empty());
}

#[tokio::test]
async fn a_websocket_upgrade_is_tunnelled_to_the_upstream() {
    let proxy = proxy().run().await;
    let (mut tcp, head) = open_tunnel(
        proxy.addr,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");

    tcp.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = vec![0u8; 23];
    tcp.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");
}

#[tokio::test]
async fn an_h2c_client_reaches_an_http1_upstream_with_its_cookies_joined() {
    let proxy = proxy().run().await;
    let req = get_with(
        &proxy.url("/h2"),
        &[
            ("cookie", "a=1"),
            ("cookie", "_wxgate=session-ticket"),
            ("cookie", "b=2"),
        ],
    );
    let answer = send(&h2c_client(), req).await;
    assert_eq!(answer.status, 200);
    let echo = answer.json();
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(seen(&echo, "cookie"), ["a=1; b=2"]);
    assert_eq!(seen(&echo, "host"), [proxy.addr.to_string()]);
}

#[tokio::test]
async fn trailers_reach_http2_clients() {
    let proxy = proxy().run().await;
    let req = get_with(&proxy.url("/trailers"), &[("te", "trailers")]);
    let answer = send(&h2c_client(), req).await;
    assert_eq!(answer.body, "payload");
    let trailers = answer.trailers.expect("trailers");
    assert_eq!(trailers["x-checksum"], "abc123");
}

/// Big transfers stream: the whole test process (client, proxy and upstream, all in
/// it) must not grow by anything near the size moved: 1 GiB each way by default,
/// WXGATE_TEST_STREAM_MIB to change it.
#[tokio::test]
async fn large_uploads_and_downloads_stream_with_bounded_memory() {
    let mib: u64 = std::env::var("WXGATE_TEST_STREAM_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let size = mib << 20;
    let allowed_growth = 48u64 << 20;
    let proxy = proxy().run().await;
    let before = peak_rss().expect("VmHWM");

    let upload = Zeros {
        left: size,
        exact: true,
    }
    .boxed_unsync();
    let echo = post(&http1_client(), &proxy.url("/upload"), upload)
        .await
        .json();
    assert_eq!(echo["body_len"], size);

    let resp = http1_client()
        .request(get_with(&proxy.url(&format!("/big?bytes={size}")), &[]))
        .await
        .unwrap();
    let mut stream = resp.into_body();
    let mut got = 0u64;
    while let Some(frame) = stream.frame().await {
        if let Some(d) = frame.unwrap().data_ref() {
            got += d.len() as u64;
        }
    }
    assert_eq!(got, size);

    let growth = peak_rss().expect("VmHWM").saturating_sub(before);
    assert!(
        growth < allowed_growth,
        "peak memory grew by {} MiB moving {mib} MiB each way",
        growth >> 20
    );
}

#[tokio::test]
async fn a_down_upstream_gives_502_as_a_page_or_as_json() {
    let dead = dead_address().await;
    let proxy = proxy()
        .tweak(|c| c.upstream.url = format!("http://{dead}"))
        .run()
        .await;
    let before = metrics().upstream_errors.get(&["connect"]);

    let page = send(
        &http1_client(),
        get_with(&proxy.url("/"), &[("accept", "text/html,*/*")]),
    )
    .await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().contains("unreachable"));

    let api = send(
        &http1_client(),
        get_with(&proxy.url("/api"), &[("accept", "application/json")]),
    )
    .await;
    assert_eq!(api.status, StatusCode::BAD_GATEWAY);
    assert_eq!(api.json()["error"], "upstream_unreachable");

    // An XHR is an API client here exactly as it is for the sign-in's 401.
    let xhr = send(
        &http1_client(),
        get_with(
            &proxy.url("/api"),
            &[("x-requested-with", "XMLHttpRequest"), ("accept", "*/*")],
        ),
    )
    .await;
    assert_eq!(xhr.status, StatusCode::BAD_GATEWAY);
    assert_eq!(xhr.json()["error"], "upstream_unreachable");
    assert!(metrics().upstream_errors.get(&["connect"]) >= before + 3);
}

#[tokio::test]
async fn an_upstream_dropping_the_connection_gives_502() {
    let proxy = proxy().run().await;
    let before = metrics().upstream_errors.get(&["reset"]);
    let answer = get(&proxy.url("/reset")).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert!(metrics().upstream_errors.get(&["reset"]) > before);
    // The broken connection is not reused: the next request is served normally.
    assert_eq!(get(&proxy.url("/after")).await.status, 200);
}

#[tokio::test]
async fn a_slow_upstream_gives_504_as_a_page_or_as_json() {
    let proxy = proxy()
        .tweak(|c| c.upstream.timeout = wxgate::config::Dur(Duration::from_millis(200)))
        .run()
        .await;
    let page = get(&proxy.url("/slow?ms=5000")).await;
    assert_eq!(page.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));

    let api = send(
        &http1_client(),
        get_with(
            &proxy.url("/slow?ms=5000"),
            &[("accept", "application/json")],
        ),
    )
    .await;
    assert_eq!(api.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(api.json()["error"], "upstream_timeout");
}

#[tokio::test]
async fn bodies_over_max_body_size_get_413_whether_announced_or_streamed() {
    let proxy = proxy()
        .tweak(|c| c.server.max_body_size = Some("1KB".into()))
        .run()
        .await;
    let client = http1_client();
    let announced = post(&client, &proxy.url("/upload"), body(vec![1u8; 2000])).await;
    assert_eq!(announced.status, StatusCode::PAYLOAD_TOO_LARGE);

    let streamed = post(&client, &proxy.url("/upload"), streamed_zeros(200_000)).await;
    assert_eq!(streamed.status, StatusCode::PAYLOAD_TOO_LARGE);

    let small = post(&client, &proxy.url("/upload"), body(vec![1u8; 1000])).await;
    assert_eq!(small.json()["body_len"], 1000);
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_and_reports_not_ready() {
    let mut proxy = proxy().run().await;
    let slow_url = proxy.url("/slow?ms=700");
    let slow = tokio::spawn(async move { get(&slow_url).await });
    proxy.upstream.slow_started.notified().await;

    proxy.begin_shutdown();
    // Readiness flips at once, while the slow request is still running.
    let mut ready = get(&proxy.admin_url("/readyz")).await;
    while ready.status == StatusCode::OK {
        tokio::task::yield_now().await;
        ready = get(&proxy.admin_url("/readyz")).await;
    }
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().contains("shutting down"));

    let finished = slow.await.unwrap();
    assert_eq!(finished.status, 200, "the in-flight request completed");
    let addr = proxy.addr;
    proxy.shutdown().await.unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn spoofed_forwarded_headers_are_replaced_for_clients_and_extended_for_trusted_proxies() {
    let proxy = proxy().run().await;
    let spoof = get_with(
        &proxy.url("/who"),
        &[("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6")],
    );
    let echo = send(&http1_client(), spoof).await.json();
    assert_eq!(seen(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        seen(&echo, "forwarded"),
        [format!("for=127.0.0.1;host=\"{}\";proto=http", proxy.addr)]
    );

    let behind_lb = crate::support::proxy()
        .tweak(|c| c.server.trusted_proxies = vec!["127.0.0.0/8".into()])
        .run()
        .await;
    let req = get_with(&behind_lb.url("/who"), &[("x-forwarded-for", "6.6.6.6")]);
    let echo = send(&http1_client(), req).await.json();
    assert_eq!(seen(&echo, "x-forwarded-for"), ["6.6.6.6, 127.0.0.1"]);
}

#[tokio::test]
async fn forged_identity_headers_in_any_spelling_and_wxgate_cookies_never_reach_the_upstream() {
    let proxy = proxy().run().await;
    let req = get_with(
        &proxy.url("/me"),
        &[
            ("X-Wxgate-Jwt-Assertion", "forged"),
            ("X_Wxgate_Jwt_Assertion", "forged"),
            ("x-wxgate-openid", "someone-else"),
            ("cookie", "_wxgate=ticket; theme=dark; _wxgate_st_Abc123=s"),
        ],
    );
    let echo = send(&http1_client(), req).await.json();
    for (name, _) in echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap(), ()))
    {
        assert!(
            !name.replace('_', "-").starts_with("x-wxgate-"),
            "{name} reached the upstream"
        );
    }
    assert_eq!(seen(&echo, "cookie"), ["theme=dark"]);
}

#[tokio::test]
async fn request_ids_are_kept_when_sane_and_passed_upstream() {
    let proxy = proxy().run().await;
    let req = get_with(&proxy.url("/id"), &[("x-request-id", "lb-1234")]);
    let answer = send(&http1_client(), req).await;
    assert_eq!(answer.header("x-request-id"), Some("lb-1234"));
    assert_eq!(seen(&answer.json(), "x-request-id"), ["lb-1234"]);

    let req = get_with(&proxy.url("/id"), &[("x-request-id", "bad id with spaces")]);
    let answer = send(&http1_client(), req).await;
    let id = answer.header("x-request-id").unwrap().to_string();
    assert_ne!(id, "bad id with spaces");
    assert_eq!(seen(&answer.json(), "x-request-id"), [id]);
}

#[tokio::test]
async fn the_admin_listener_answers_health_readiness_and_metrics() {
    let proxy = proxy().run().await;
    let _ = get(&proxy.url("/warm")).await;

    let health = get(&proxy.admin_url("/healthz")).await;
    assert_eq!(
        (health.status, health.text().trim()),
        (StatusCode::OK, "ok")
    );
    assert_eq!(
        get(&proxy.admin_url("/readyz")).await.status,
        StatusCode::OK
    );
    let m = get(&proxy.admin_url("/metrics")).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert!(m
        .text()
        .contains("wxgate_http_requests_total{class=\"2xx\"}"));
    assert!(m.text().contains("wxgate_upstream_duration_seconds_count"));
    assert_eq!(
        get(&proxy.admin_url("/nope")).await.status,
        StatusCode::NOT_FOUND
    );
    let post = send(
        &http1_client(),
        Request::builder()
            .method(Method::POST)
            .uri(proxy.admin_url("/healthz"))
            .body(wxgate::body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);

    // The admin endpoints are not on the public port.
    let public = get(&proxy.url("/healthz")).await.json();
    assert_eq!(public["uri"], "/healthz", "forwarded to the upstream");
}

#[tokio::test]
async fn beyond_max_connections_new_connections_wait_for_a_free_slot() {
    let proxy = proxy()
        .tweak(|c| c.server.max_connections = Some(1))
        .run()
        .await;
    let request = b"GET /slot HTTP/1.1\r\nHost: x\r\n\r\n";

    // The first connection is served and kept alive, holding the only slot.
    let mut first = connect_and_send(proxy.addr, request).await;
    let mut buf = vec![0u8; 4096];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    let mut second = connect_and_send(proxy.addr, request).await;
    // There is no event for "not answered"; a short bounded wait is the only witness.
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the second connection was served beyond the cap"
    );
    assert!(metrics().connections_limited.get(&["public"]) >= 1);

    drop(first);
    let n = second.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "served once the slot was free"
    );
}

#[tokio::test]
async fn shutdown_closes_upgraded_connections_at_the_deadline() {
    let mut proxy = proxy()
        .tweak(|c| c.server.shutdown_timeout = wxgate::config::Dur(Duration::from_millis(300)))
        .run()
        .await;
    let (mut tcp, _) = open_tunnel(
        proxy.addr,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    tcp.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    tcp.read_exact(&mut one).await.unwrap();

    proxy.begin_shutdown();
    // The tunnel stays usable while shutdown waits for it...
    tcp.write_all(b"y").await.unwrap();
    tcp.read_exact(&mut one).await.unwrap();
    assert_eq!(&one, b"y");
    // ...and is closed at the deadline, after which run returns.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the tunnel outlived the shutdown deadline");
    proxy.shutdown().await.unwrap();
}
