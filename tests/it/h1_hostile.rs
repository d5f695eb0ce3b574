//! Hostile HTTP/1 on the wire: request smuggling, ambiguous framing, oversized heads,
//! header injection through every header wxgate writes, slow clients and the limits.
//! Each test speaks raw TCP to an embedded wxgate and checks, on an upstream that
//! records what reached it, that nothing hostile got through as a request.

use std::time::{Duration, Instant};

use crate::support::proxy;
use crate::support::raw::*;
use crate::support::wechat::{Platform, PHONE_UA};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wxgate::admin::metrics::metrics;
use wxgate::mock::{MockConfig, MockUser};

/// The upstream records a request before it answers, so by the time the client has
/// its response the record is there.
fn no_request_named(rec: &Recorder, needle: &str) {
    let targets = rec.targets();
    assert!(
        targets.iter().all(|t| !t.contains(needle)),
        "{needle} reached the upstream as a request: {targets:?}"
    );
}

#[tokio::test]
async fn transfer_encoding_with_content_length_is_framed_by_chunked_alone() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    // CL.TE: a front end trusting Content-Length would see the tail as a second request.
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let chunk = format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len());
    let request = format!(
        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}"
    );
    let (mut tcp, resp) = one_exchange(proxy.addr, request.as_bytes()).await;
    let resp = resp.expect("an answer");
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert!(
        closed(&mut tcp).await,
        "an ambiguous message ends the connection"
    );

    let seen = rec.seen();
    assert_eq!(seen.len(), 1, "exactly one request: {seen:?}");
    let only = &seen[0];
    assert_eq!(only.target, "/a");
    assert_eq!(
        only.body.as_deref().unwrap(),
        smuggled.as_bytes(),
        "the chunked body, whole, as a body"
    );
    assert!(
        !(only.headers.contains_key("content-length")
            && only.headers.contains_key("transfer-encoding")),
        "the upstream sees one framing: {:?}",
        only.headers
    );
    assert_ne!(
        only.headers
            .get("content-length")
            .map(|v| v.as_bytes().to_vec()),
        Some(b"4".to_vec()),
        "the client's Content-Length was dropped"
    );
    no_request_named(&rec, "smuggled");
}

#[tokio::test]
async fn a_request_hidden_after_a_chunked_body_never_reaches_the_upstream() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    // TE.CL: a back end trusting Content-Length would read the chunk terminator as
    // its body and the rest as the next request.
    let request = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let (mut tcp, resp) = one_exchange(proxy.addr, request.as_bytes()).await;
    assert_eq!(resp.expect("an answer").status, 200);
    // The connection is closed after an ambiguous message: the tail is never parsed.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    assert!(
        !String::from_utf8_lossy(&rest).contains("HTTP/1.1"),
        "no second response: {}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(rec.targets(), ["/a"]);
    assert_eq!(rec.seen()[0].body.as_deref().unwrap(), b"");
}

#[tokio::test]
async fn a_transfer_encoding_other_than_chunked_is_refused() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    for te in ["gzip", "chunked, gzip", "identity"] {
        let request = format!(
            "POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\nContent-Length: 5\r\n\r\nhello"
        );
        let (_, resp) = one_exchange(proxy.addr, request.as_bytes()).await;
        let status = resp.map(|r| r.status);
        assert_eq!(status, Some(400), "Transfer-Encoding: {te}");
    }
    assert!(rec.seen().is_empty(), "{:?}", rec.targets());
}

#[tokio::test]
async fn two_different_content_lengths_get_400_and_nothing_is_forwarded() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    for (a, b) in [("5", "30"), ("30", "5"), ("5", "5, 30")] {
        let request = format!(
            "POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: {a}\r\nContent-Length: {b}\r\n\r\nhelloGET /smuggled HTTP/1.1\r\n\r\n"
        );
        let (mut tcp, resp) = one_exchange(proxy.addr, request.as_bytes()).await;
        assert_eq!(resp.map(|r| r.status), Some(400), "{a} then {b}");
        assert!(closed(&mut tcp).await);
    }
    assert!(rec.seen().is_empty(), "{:?}", rec.targets());
}

#[tokio::test]
async fn invalid_chunk_sizes_close_the_connection_and_no_body_is_delivered() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    let cases: &[&str] = &[
        "zz\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "5 5\r\nhello\r\n0\r\n\r\n",
        "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
    ];
    for body in cases {
        let request = format!(
            "POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let (mut tcp, resp) = one_exchange(proxy.addr, request.as_bytes()).await;
        // Either refused with 400 or, when the upstream had not been reached yet,
        // the connection simply closed; never an upstream error, never a 2xx.
        if let Some(resp) = &resp {
            assert_eq!(resp.status, 400, "{body:?}: {}", resp.head);
        }
        assert!(closed(&mut tcp).await, "{body:?}: connection closed");
    }
    // The upstream may have seen a head whose body then failed; it never received a
    // whole request from these, and never the one hidden behind them.
    assert!(
        rec.complete().is_empty(),
        "complete requests: {:?}",
        rec.complete()
    );
    no_request_named(&rec, "smuggled");
}

#[tokio::test]
async fn an_oversized_header_line_gets_431_and_nothing_is_forwarded() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    let big = "a".repeat(512 * 1024);
    let request = format!("GET /big HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    // The proxy may answer and close before it has read everything we send.
    let _ = tcp.write_all(request.as_bytes()).await;
    let mut buf = Vec::new();
    let resp = read_response(&mut tcp, &mut buf).await.expect("an answer");
    assert_eq!(resp.status, 431, "{}", resp.head);
    assert!(rec.seen().is_empty());
}

#[tokio::test]
async fn too_many_headers_get_431_and_nothing_is_forwarded() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    let headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = format!("GET /many HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    let (_, resp) = one_exchange(proxy.addr, request.as_bytes()).await;
    assert_eq!(resp.expect("an answer").status, 431);
    assert!(rec.seen().is_empty());
}

#[tokio::test]
async fn an_overlong_request_line_gets_414_and_nothing_is_forwarded() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    // Longer than any URI the http crate represents (64 KiB), shorter than the buffer.
    let path = format!("/{}", "p".repeat(70 * 1024));
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let (_, resp) = one_exchange(proxy.addr, request.as_bytes()).await;
    assert_eq!(resp.expect("an answer").status, 414);
    assert!(rec.seen().is_empty());
}

#[tokio::test]
async fn an_http_0_9_request_is_refused() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"GET /ancient\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.is_empty() || out.starts_with("HTTP/1.1 400"),
        "an HTTP/0.9 request is not served: {out}"
    );
    assert!(!out.contains("recorded"));
    assert!(rec.seen().is_empty());
}

#[tokio::test]
async fn bare_lf_line_endings_are_read_as_lines_and_forwarded_as_parsed() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    // Bare LF is tolerated (RFC 9112 §2.2); each line stays one header, and the request
    // that follows on the connection is a request of its own, with its own framing.
    let request = b"POST /lf HTTP/1.1\nHost: x\nX-A: 1\nContent-Length: 5\n\nhelloGET /next HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut tcp, &mut buf).await.unwrap().status, 200);
    assert_eq!(read_response(&mut tcp, &mut buf).await.unwrap().status, 200);

    let seen = rec.seen();
    assert_eq!(rec.targets(), ["/lf", "/next"]);
    assert_eq!(seen[0].headers["x-a"], "1");
    assert_eq!(seen[0].body.as_deref().unwrap(), b"hello");
    assert_eq!(seen[1].body.as_deref().unwrap(), b"");

    // A bare CR is not a line ending: the header is malformed, not split in two.
    let (_, resp) = one_exchange(
        proxy.addr,
        b"GET /cr HTTP/1.1\r\nHost: x\r\nX-A: 1\rX-Injected: yes\r\n\r\n",
    )
    .await;
    assert_eq!(resp.map(|r| r.status), Some(400));
    assert_eq!(rec.targets(), ["/lf", "/next"]);
}

#[tokio::test]
async fn a_folded_forwarded_host_from_a_trusted_proxy_cannot_inject_a_header() {
    let (proxy, rec) = proxy_to_recorder(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    // obs-fold would turn a CR LF inside the value into a continuation line.
    let (_, resp) = one_exchange(
        proxy.addr,
        b"GET /fold HTTP/1.1\r\nHost: x\r\nX-Forwarded-Host: evil.example\r\n X-Injected: yes\r\n\r\n",
    )
    .await;
    assert_eq!(resp.map(|r| r.status), Some(400));
    assert!(rec.seen().is_empty());

    // What does get through is kept as one value and never splits a line upstream.
    let (_, resp) = one_exchange(
        proxy.addr,
        b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Forwarded-Host: a.example%0d%0aX-Injected:%20yes\r\n\r\n",
    )
    .await;
    assert_eq!(resp.unwrap().status, 200);
    let seen = rec.seen();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].headers.contains_key("x-injected"));
    assert_eq!(
        seen[0].headers["x-forwarded-host"],
        "a.example%0d%0aX-Injected:%20yes"
    );
}

#[tokio::test]
async fn an_encoded_crlf_in_rd_never_reaches_the_location_header_raw() {
    let (proxy, _rec) = proxy_to_recorder(|c| c.access.public_paths = vec![]).await;
    for rd in [
        "/a%0d%0aSet-Cookie:%20pwned=1",
        "/a%0aSet-Cookie:%20pwned=1",
        "/a%0dSet-Cookie:%20pwned=1",
        "%2Fa%0D%0ASet-Cookie%3A%20pwned%3D1",
    ] {
        let request = format!(
            "GET /_wxgate/start?rd={rd} HTTP/1.1\r\nHost: x\r\nUser-Agent: {PHONE_UA}\r\n\r\n"
        );
        let (_, resp) = one_exchange(proxy.addr, request.as_bytes()).await;
        let resp = resp.expect("an answer");
        let head = resp.head.to_ascii_lowercase();
        assert!(
            !head.contains("\r\nset-cookie: pwned"),
            "{rd}: {}",
            resp.head
        );
        assert!(
            !head.contains("\npwned") && !head.contains("\rset-cookie"),
            "{rd}: {}",
            resp.head
        );
        if let Some(location) = resp.header("location") {
            assert!(
                !location.contains('\r') && !location.contains('\n'),
                "{location:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_nickname_with_crlf_is_percent_encoded_in_every_header() {
    let mock = MockConfig {
        users: vec![MockUser::new(
            "eve",
            "Eve\r\nX-Injected: yes\r\n\r\nGET /smuggled HTTP/1.1",
        )],
        ..MockConfig::default()
    };
    let platform = Platform::start(mock).await;
    let gate = proxy()
        .wechat(&platform)
        .tweak(|c| {
            c.wechat.scope = wxgate::config::Scope::UserInfo;
            c.identity.plain_headers = true;
        })
        .run()
        .await;
    let mut browser = gate.phone();
    browser
        .sign_in_by_code(&gate, &platform, "/page", "eve")
        .await;

    // Forward-auth answers with X-Auth-Request-Nickname.
    let cookie = browser.cookie_header();
    let request = format!("GET /_wxgate/auth HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n");
    let (_, resp) = one_exchange(gate.addr, request.as_bytes()).await;
    let resp = resp.expect("an answer");
    assert_eq!(resp.status, 202, "{}", resp.head);
    let nick = resp.header("x-auth-request-nickname").expect("nickname");
    assert!(nick.starts_with("Eve%0D%0AX-Injected"), "{nick}");
    assert!(!resp.head.to_ascii_lowercase().contains("\r\nx-injected"));

    // The upstream gets X-Wxgate-Nickname, encoded the same way.
    let echo = browser.get("/page").await;
    assert_eq!(echo.status, 200);
    let echo = echo.json();
    assert!(crate::support::seen(&echo, "x-injected").is_empty());
    let nick = crate::support::seen(&echo, "x-wxgate-nickname");
    assert_eq!(nick.len(), 1, "{echo}");
    assert!(nick[0].starts_with("Eve%0D%0AX-Injected"), "{nick:?}");
}

#[tokio::test]
async fn a_slowloris_client_is_cut_at_the_header_read_timeout() {
    let (proxy, rec) = proxy_to_recorder(|c| {
        c.server.header_read_timeout = wxgate::config::Dur::secs(1);
    })
    .await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    tcp.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One header line every 200 ms, never the blank line that ends the head.
    let mut cut = false;
    for i in 0..50 {
        let line = format!("X-Drip-{i}: x\r\n");
        if tcp.write_all(line.as_bytes()).await.is_err() {
            cut = true;
            break;
        }
        let mut b = [0u8; 512];
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
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "cut after {took:?}"
    );
    assert!(rec.seen().is_empty());
}

#[tokio::test]
async fn a_slow_request_body_is_bounded_by_the_upstream_timeout() {
    let (proxy, rec) = proxy_to_recorder(|c| {
        c.upstream.timeout = wxgate::config::Dur::secs(1);
    })
    .await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    tcp.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nfirst ten.")
        .await
        .unwrap();
    // The rest never comes.
    let mut buf = Vec::new();
    let resp = read_response(&mut tcp, &mut buf).await.expect("an answer");
    let took = started.elapsed();
    assert_eq!(resp.status, 504, "{}", resp.head);
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert!(rec.complete().is_empty());
}

#[tokio::test]
async fn at_max_connections_a_new_connection_waits_and_the_log_says_why() {
    capture_logs();
    let (proxy, rec) = proxy_to_recorder(|c| c.server.max_connections = Some(1)).await;
    let limited_before = metrics().connections_limited.get(&["public"]);
    let request = b"GET /slot HTTP/1.1\r\nHost: x\r\n\r\n";

    let mut first = TcpStream::connect(proxy.addr).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        read_response(&mut first, &mut buf).await.unwrap().status,
        200
    );

    let mut second = TcpStream::connect(proxy.addr).await.unwrap();
    second.write_all(request).await.unwrap();
    // "Not answered" has no event: a short bounded wait is the only witness.
    let mut b = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut b)).await;
    assert!(early.is_err(), "served beyond the cap");
    assert_eq!(rec.seen().len(), 1);
    assert!(metrics().connections_limited.get(&["public"]) > limited_before);
    let logs = captured_logs();
    assert!(
        logs.contains("connection limit reached; new connections wait")
            && logs.contains("max_connections=1"),
        "{logs}"
    );

    drop(first);
    let mut buf = Vec::new();
    assert_eq!(
        read_response(&mut second, &mut buf).await.unwrap().status,
        200
    );
    assert_eq!(rec.seen().len(), 2);
}

#[tokio::test]
async fn bodies_over_max_body_size_get_413_announced_or_chunked() {
    let (proxy, rec) = proxy_to_recorder(|c| c.server.max_body_size = Some("1KB".into())).await;
    let body = "x".repeat(4096);

    let request = format!(
        "POST /announced HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (_, resp) = one_exchange(proxy.addr, request.as_bytes()).await;
    assert_eq!(resp.expect("an answer").status, 413);
    assert!(
        rec.seen().is_empty(),
        "an announced length is refused before forwarding"
    );

    let request = format!(
        "POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let (_, resp) = one_exchange(proxy.addr, request.as_bytes()).await;
    assert_eq!(resp.expect("an answer").status, 413);
    assert!(
        rec.complete().is_empty(),
        "a streamed body over the limit is cut: {:?}",
        rec.complete()
    );
}

#[tokio::test]
async fn every_hostile_head_in_the_corpus_is_refused_with_its_status_and_nothing_is_forwarded() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    let lines = crate::support::corpus::lines("hostile_heads.txt");
    assert!(lines.len() >= 15, "corpus has {} heads", lines.len());
    for (n, line) in lines {
        let (head, status) = line
            .rsplit_once(" => ")
            .unwrap_or_else(|| panic!("line {n}: `head => status`"));
        let head = crate::support::corpus::unescape(head);
        let want: u16 = status.parse().expect("a status");
        let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
        // The proxy may answer and close before it has read everything we send.
        let _ = tcp.write_all(head.as_bytes()).await;
        let mut buf = Vec::new();
        let resp = read_response(&mut tcp, &mut buf).await;
        let got = resp.as_ref().map(|r| r.status);
        assert_eq!(got, Some(want), "line {n}: {}", &line[..line.len().min(80)]);
    }
    assert!(rec.seen().is_empty(), "{:?}", rec.targets());
}

#[tokio::test]
async fn an_absolute_form_target_s_authority_wins_over_host() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    let (_, resp) = one_exchange(
        proxy.addr,
        b"GET http://app.example/x?y=1 HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    )
    .await;
    assert_eq!(resp.expect("an answer").status, 200);
    let seen = &rec.seen()[0];
    assert_eq!(seen.target, "/x?y=1");
    assert_eq!(seen.headers["host"], "app.example");
    assert_eq!(seen.headers["x-forwarded-host"], "app.example");
    assert_eq!(seen.headers.get_all("host").iter().count(), 1);
}

#[tokio::test]
async fn on_http2_an_authority_and_a_different_host_are_refused() {
    let (proxy, rec) = proxy_to_recorder(|_| {}).await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = |host: &str| {
        http::Request::get("http://app.example/h2")
            .header("host", host)
            .body(wxgate::body::empty())
            .unwrap()
    };
    let resp = sender.send_request(request("evil.example")).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(rec.seen().is_empty());
    let resp = sender.send_request(request("app.example")).await.unwrap();
    assert_eq!(resp.status(), 200, "the same host twice is one host");
    assert_eq!(rec.seen()[0].headers["host"], "app.example");
}

#[tokio::test]
async fn equal_content_lengths_are_passed_on_as_one_value_both_ways() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    ] {
        let up = raw_upstream(reply.to_vec()).await;
        let proxy = crate::support::proxy()
            .tweak(|c| c.upstream.url = format!("http://{}", up.addr))
            .run()
            .await;
        for request in [
            // The inline exchange, and hyper's client (an upload).
            &b"GET /cl HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        ] {
            let (_, resp) = one_exchange(proxy.addr, request).await;
            let resp = resp.expect("an answer");
            assert_eq!((resp.status, resp.body.as_slice()), (200, &b"ok"[..]));
            let lengths: Vec<&(String, Vec<u8>)> = resp
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .collect();
            assert_eq!(lengths.len(), 1, "{}", resp.head);
            assert_eq!(lengths[0].1, b"2", "{}", resp.head);
        }
        let heads = up.heads();
        let upload = heads
            .iter()
            .find(|h| h.starts_with("POST"))
            .unwrap()
            .to_ascii_lowercase();
        assert_eq!(
            upload.matches("content-length: 3").count(),
            1,
            "the upstream gets one length too: {upload}"
        );
    }
}

#[tokio::test]
async fn routing_and_address_headers_reach_the_upstream_only_from_trusted_proxies() {
    let sent = [
        ("X-Original-URL", "/admin"),
        ("X-Rewrite-URL", "/admin"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X-Real-IP", "6.6.6.6"),
        ("X-Client-IP", "6.6.6.6"),
        ("True-Client-IP", "6.6.6.6"),
        ("X-Forwarded-Port", "8443"),
        ("X-Forwarded-Server", "evil.example"),
        ("X_Original_URL", "/admin"),
    ];
    let request: String = sent.iter().fold(
        "GET /public HTTP/1.1\r\nHost: x\r\n".to_string(),
        |r, (n, v)| r + &format!("{n}: {v}\r\n"),
    ) + "\r\n";
    for trusted in [false, true] {
        let (proxy, rec) = proxy_to_recorder(|c| {
            if trusted {
                c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
            }
        })
        .await;
        let (_, resp) = one_exchange(proxy.addr, request.as_bytes()).await;
        assert_eq!(resp.expect("an answer").status, 200);
        let seen = &rec.seen()[0].headers;
        for (name, value) in sent {
            let got = seen.get(name).map(|v| v.to_str().unwrap());
            let want = trusted.then_some(value);
            assert_eq!(got, want, "{name}, trusted {trusted}");
        }
    }
}

#[tokio::test]
async fn a_client_s_connection_header_cannot_remove_what_wxgate_adds() {
    let mock = MockConfig {
        users: vec![MockUser::new("alice", "Alice")],
        ..MockConfig::default()
    };
    let platform = Platform::start(mock).await;
    let gate = proxy()
        .wechat(&platform)
        .tweak(|c| c.identity.plain_headers = true)
        .run()
        .await;
    let mut browser = gate.phone();
    browser
        .sign_in_by_code(&gate, &platform, "/page", "alice")
        .await;
    let cookie = browser.cookie_header();
    let request = format!(
        "GET /page HTTP/1.1\r\nHost: x\r\nUser-Agent: {PHONE_UA}\r\nCookie: {cookie}\r\n\
         Connection: keep-alive, X-Wxgate-Jwt-Assertion, x-wxgate-openid, X-Forwarded-For, \
         Forwarded, X-Forwarded-Proto, X-Forwarded-Host, X-Request-Id, Host, X-Client-Hop\r\n\
         X-Client-Hop: the client's own, named in Connection\r\n\r\n"
    );
    let (_, resp) = one_exchange(gate.addr, request.as_bytes()).await;
    let resp = resp.expect("an answer");
    assert_eq!(resp.status, 200, "{}", resp.head);
    let echo: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let seen = |name| crate::support::seen(&echo, name);
    assert_eq!(seen("x-wxgate-jwt-assertion").len(), 1, "{echo}");
    assert_eq!(seen("x-wxgate-openid"), [platform.openid("alice")]);
    assert_eq!(seen("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen("x-forwarded-proto"), ["http"]);
    assert_eq!(seen("x-forwarded-host"), ["x"]);
    assert_eq!(seen("forwarded"), ["for=127.0.0.1;host=x;proto=http"]);
    assert_eq!(seen("host"), ["x"]);
    let id = resp.header("x-request-id").expect("a request id");
    assert_eq!(seen("x-request-id"), [id]);
    assert!(seen("x-client-hop").is_empty(), "{echo}");
}

#[tokio::test]
async fn a_connection_that_never_sends_a_head_is_closed_at_the_header_read_timeout() {
    let (proxy, rec) = proxy_to_recorder(|c| {
        c.server.header_read_timeout = wxgate::config::Dur::secs(1);
    })
    .await;
    for first in [&b""[..], b"GET / HTTP/1.1\r\nHost: x\r\n"] {
        let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
        tcp.write_all(first).await.unwrap();
        // Not a byte more: the connection ends (it was held open for good when not
        // one byte came).
        assert!(
            closed(&mut tcp).await,
            "{:?}",
            String::from_utf8_lossy(first)
        );
    }
    assert!(rec.seen().is_empty());
}
