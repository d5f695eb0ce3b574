//! Faults: WeChat answering garbage, HTML, 500s, half a body or nothing in time; an
//! upstream dying mid-response; a log destination that refuses writes. Each must end in
//! a clear page, a counted metric and no session — never a panic, a loop or a 200.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::harness::Site;
use crate::support::wechat::Browser;
use crate::support::*;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wxgate::admin::metrics::metrics;
use wxgate::config::file::Config;
use wxgate::mock::Broken;

/// `wxgate_wechat_api_calls_total{endpoint}` over the labels a failed call can carry.
fn failed_calls(endpoint: &str) -> u64 {
    ["bad_response", "transport"]
        .iter()
        .map(|l| metrics().wechat_calls.get(&[endpoint, l]))
        .sum()
}

/// wxgate in front of the echo upstream, signing in against a mock WeChat
/// (snsapi_base unless `tweak` says otherwise). Only `/public/*` is public.
async fn world(tweak: impl FnOnce(&mut Config)) -> Site {
    proxy()
        .config(
            r#"
            [access]
            public_paths = ["/public/*"]
            "#,
        )
        .tweak(tweak)
        .run_site()
        .await
}

/// Starts a sign-in at `path` and comes back from WeChat with `user`'s code.
async fn come_back(world: &Site, browser: &mut Browser, path: &str, user: &str) -> Answer {
    let state = browser.begin_state(world, path).await;
    let code = world.platform.code(user, world.scope);
    browser.callback(&code, &state).await
}

/// WeChat sends the browser back with a code that has expired meanwhile.
async fn with_expired_code(world: &Site, browser: &mut Browser, state: &str) -> Answer {
    let code = world.platform.code("alice", world.scope);
    world.mock.expire_codes();
    browser.callback(&code, state).await
}

/// What every failed sign-in must leave behind: a page (not a redirect anywhere), no
/// session cookie, `/_wxgate/userinfo` 401, and an upstream that never sees an identity.
async fn assert_not_signed_in(browser: &mut Browser) {
    assert!(
        !browser.has_session(),
        "no session cookie: {}",
        browser.cookie_header()
    );
    let who = browser.get("/_wxgate/userinfo").await;
    assert_eq!(who.status, 401);
    let echo = browser.get("/public/echo").await;
    assert_eq!(echo.status, 200);
    let echo = echo.json();
    assert!(
        seen(&echo, "x-wxgate-jwt-assertion").is_empty(),
        "no identity upstream: {echo}"
    );
}

#[tokio::test]
async fn a_broken_code_exchange_gives_a_503_page_a_metric_and_no_session() {
    let world = world(|_| {}).await;
    for broken in [
        Broken::Html,
        Broken::Garbage,
        Broken::Http500,
        Broken::CloseMidBody,
    ] {
        world.mock.set_broken("access_token", broken);
        let calls = world.mock.calls("access_token");
        let failed = failed_calls("access_token");
        let unavailable = metrics().signins.get(&["wechat_unavailable"]);

        let mut browser = world.phone();
        let resp = come_back(&world, &mut browser, "/orders/42", "alice").await;
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE, "{broken:?}");
        assert!(resp.header("location").is_none(), "{broken:?}");
        let page = resp.text();
        assert!(
            page.contains("WeChat cannot be reached"),
            "{broken:?}: {page}"
        );

        assert_eq!(
            world.mock.calls("access_token"),
            calls + 1,
            "{broken:?}: one call, no retry loop"
        );
        assert!(failed_calls("access_token") > failed, "{broken:?}");
        assert!(
            metrics().signins.get(&["wechat_unavailable"]) > unavailable,
            "{broken:?}"
        );
        assert_not_signed_in(&mut browser).await;
    }

    // Once WeChat answers again, the same browser signs in.
    world.mock.clear(None);
    let mut browser = world.phone();
    browser
        .sign_in_by_code(&world, &world.platform, "/orders/42", "alice")
        .await;
}

#[tokio::test]
async fn an_api_client_gets_json_when_wechat_is_broken() {
    let world = world(|_| {}).await;
    world.mock.set_broken("access_token", Broken::Garbage);
    let mut browser = world.phone();
    let state = browser.begin_state(&world, "/").await;
    let code = world.platform.code("alice", world.scope);
    let resp = browser
        .request(
            Method::GET,
            &format!("/_wxgate/callback?code={code}&state={state}"),
            &[("accept", "application/json")],
            None,
        )
        .await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("5"));
    let doc = resp.json();
    assert_eq!(doc["error"], "wechat_unavailable", "{doc}");
}

#[tokio::test]
async fn a_broken_profile_fetch_creates_no_session() {
    let world = world(|c| {
        c.wechat.scope = wxgate::config::Scope::UserInfo;
    })
    .await;
    world.mock.set_broken("userinfo", Broken::Garbage);
    let failed = failed_calls("userinfo");
    let mut browser = world.phone();
    let resp = come_back(&world, &mut browser, "/me", "alice").await;
    assert_eq!(resp.status, 503);
    assert!(failed_calls("userinfo") > failed);
    assert_eq!(world.mock.calls("userinfo"), 1);
    assert_not_signed_in(&mut browser).await;
}

#[tokio::test]
async fn wechat_slower_than_its_timeout_gives_503_in_time() {
    let world = world(|c| {
        c.wechat.timeout = wxgate::config::Dur(Duration::from_millis(300));
    })
    .await;
    world
        .mock
        .set_latency("access_token", Duration::from_secs(5));
    let transport = metrics().wechat_calls.get(&["access_token", "transport"]);
    let mut browser = world.phone();
    let started = Instant::now();
    let resp = come_back(&world, &mut browser, "/", "alice").await;
    let took = started.elapsed();
    assert_eq!(resp.status, 503);
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    assert!(metrics().wechat_calls.get(&["access_token", "transport"]) > transport);
    assert_not_signed_in(&mut browser).await;
}

#[tokio::test]
async fn an_expired_code_gets_one_fresh_authorization_then_a_page_never_a_loop() {
    let world = world(|_| {}).await;
    let mut browser = world.phone();
    let state = browser.begin_state(&world, "/report").await;
    let resp = with_expired_code(&world, &mut browser, &state).await;
    assert_eq!(resp.status, 302, "one fresh authorization");
    let state2 = world.assert_authorize_link(resp.header("location").unwrap());

    // The second code is expired too: now a page, not another redirect.
    let resp = with_expired_code(&world, &mut browser, &state2).await;
    assert_eq!(resp.status, 400);
    assert!(resp.header("location").is_none());
    assert_not_signed_in(&mut browser).await;
}

/// An upstream that reads each request's head, writes `answer(head)` and closes the
/// connection.
async fn start_raw_upstream(answer: fn(&[u8]) -> &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut b).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&b[..n]),
                        _ => return,
                    }
                }
                let _ = tcp.write_all(answer(&head)).await;
            });
        }
    });
    addr
}

/// An upstream that sends a response head announcing 100 bytes, 10 of them, then
/// closes — for `/cut`; anything else gets a whole small answer.
async fn start_cutting_upstream() -> SocketAddr {
    start_raw_upstream(|head| {
        if head.starts_with(b"GET /cut ") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfine"
        }
    })
    .await
}

#[tokio::test]
async fn an_upstream_dying_mid_response_fails_that_response_and_nothing_else() {
    let upstream = start_cutting_upstream().await;
    let proxy = proxy()
        .tweak(|c| c.upstream.url = format!("http://{upstream}"))
        .run()
        .await;
    let client = http1_client();

    let answer = client
        .request(
            Request::get(proxy.url("/cut"))
                .body(wxgate::body::empty())
                .unwrap(),
        )
        .await;
    // When the cut is read together with the head, the client connection is closed
    // before the head went out; otherwise the head arrives and the body fails. Either
    // way the client sees the failure, never a short body passed off as complete.
    if let Ok(resp) = answer {
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await;
        assert!(body.is_err(), "the client sees the cut, not a short body");
    }

    // The proxy is unharmed: the next request, on any connection, is served.
    let fine = get(&proxy.url("/fine")).await;
    assert_eq!(fine.status, 200);
    assert_eq!(fine.body, "fine");
    let health = get(&proxy.admin_url("/healthz")).await;
    assert_eq!(health.status, 200);
}

/// An upstream that gives every request the same response, both lengths announced
/// (RFC 9112 §6.3: Transfer-Encoding wins), then closes the connection.
async fn start_doubly_framing_upstream() -> SocketAddr {
    start_raw_upstream(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    })
    .await
}

#[tokio::test]
async fn an_upstream_response_with_both_lengths_reaches_the_client_framed_by_chunked() {
    let upstream = start_doubly_framing_upstream().await;
    let proxy = proxy()
        .tweak(|c| c.upstream.url = format!("http://{upstream}"))
        .run()
        .await;
    let client = http1_client();
    // A GET takes wxgate's own exchange, a POST hyper's client: both must drop the
    // Content-Length the chunked encoding overrides.
    for (method, body) in [(Method::GET, ""), (Method::POST, "x")] {
        let req = Request::builder()
            .method(method.clone())
            .uri(proxy.url("/twice"))
            .body(wxgate::body::full(body))
            .unwrap();
        let answer = send(&client, req).await;
        assert_eq!(answer.status, 200, "{method}");
        assert_eq!(answer.body, "hello", "{method}: the whole chunked body");
        assert_ne!(
            answer.header("content-length"),
            Some("3"),
            "{method}: the overridden length is not passed on"
        );
    }
}

#[tokio::test]
async fn an_upstream_reset_before_the_head_gives_502_and_the_next_request_is_served() {
    let proxy = proxy().run().await;
    let reset = get(&proxy.url("/reset")).await;
    assert_eq!(reset.status, StatusCode::BAD_GATEWAY);
    let next = get(&proxy.url("/after-reset")).await;
    assert_eq!(next.status, 200);
    assert_eq!(next.json()["uri"], "/after-reset");
}

// ---------------------------------------------------------------- logging

/// The 127.0.0.1 TCP ports `pid` listens on, read from /proc.
fn listening_ports(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return vec![];
    };
    let inodes: Vec<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (local, st, inode) = (cols.get(1)?, cols.get(3)?, cols.get(9)?);
            if *st != "0A" || !inodes.iter().any(|i| i == inode) {
                return None;
            }
            u16::from_str_radix(local.split(':').nth(1)?, 16).ok()
        })
        .collect()
}

struct Serving {
    child: Child,
    public: SocketAddr,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `wxgate serve` on ephemeral ports with `stderr`, and finds its public port
/// (the one that forwards to the echo upstream rather than answering `/healthz`).
async fn serve_child(dir: &std::path::Path, upstream: SocketAddr, stderr: Stdio) -> Serving {
    let config = dir.join("wxgate.toml");
    std::fs::write(&config, base_config(upstream)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_wxgate"))
        .args(["--log-format", "json", "serve", "-c"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("wxgate starts");
    let mut child = child;
    drop(child.stderr.take());
    let mut serving = Serving {
        child,
        public: "127.0.0.1:1".parse().unwrap(),
    };
    // With its log unwritable the process cannot tell us its ports: /proc can.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = serving.child.try_wait() {
            panic!("wxgate exited: {status}");
        }
        let ports = listening_ports(serving.child.id());
        if ports.len() >= 2 {
            for port in ports {
                let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
                let answer = get(&format!("http://{addr}/healthz")).await;
                if answer.body.starts_with(b"{") {
                    serving.public = addr;
                    return serving;
                }
            }
        }
        assert!(Instant::now() < deadline, "wxgate did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_log_destination_that_refuses_writes_does_not_stop_the_proxy() {
    let upstream = start_upstream().await;
    let dir = scratch_dir("faults");

    let closed_pipe = || {
        // The read end is dropped as soon as the child has its copy: EPIPE on every write.
        Stdio::piped()
    };
    let mut cases: Vec<(&str, Stdio)> = vec![("closed pipe", closed_pipe())];
    if let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") {
        cases.push(("/dev/full", Stdio::from(full)));
    }
    for (name, stderr) in cases {
        let mut serving = serve_child(&dir, upstream.addr, stderr).await;
        for i in 0..20 {
            let answer = get(&format!("http://{}/after-log-failure/{i}", serving.public)).await;
            assert_eq!(answer.status, 200, "{name}: request {i}");
            assert_eq!(answer.json()["uri"], format!("/after-log-failure/{i}"));
        }
        // A refusal (a path with an encoded slash) is answered too.
        let answer = get(&format!("http://{}/a%2fb", serving.public)).await;
        assert_eq!(answer.status, 400, "{name}");
        assert!(
            serving.child.try_wait().unwrap().is_none(),
            "{name}: wxgate still running"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
