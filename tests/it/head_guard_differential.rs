//! The request-head guard against hyper alone: the same bytes, pipelined and split
//! across reads, sent to wxgate's server and to a bare hyper server with the same
//! settings and the same application. The guard may refuse a head over its limit;
//! otherwise both must answer alike, and the guarded one must never wait for bytes
//! hyper does not need.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wxgate::body::{full, Body};
use wxgate::server::{self, ServerSettings};

/// The application both servers run: it says what it saw of each request.
async fn app(mut req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    // The head's size as parsed: never more than its size on the wire.
    let size = req.method().as_str().len()
        + req.uri().to_string().len()
        + req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 3)
            .sum::<usize>();
    let mut summary = format!(
        "{} {} {:?} h={} sz={size}",
        req.method(),
        req.uri(),
        req.version(),
        req.headers().len()
    );
    let param = |key: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| v.to_string())
        })
    };
    if let Some(ms) = param("ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(id) = param("id") {
        // Reached only if the request was not cancelled while it slept.
        FINISHED.lock().unwrap().push(id);
    }
    if path == "/up" && req.headers().contains_key(http::header::UPGRADE) {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(up) = on.await else { return };
            let mut io = TokioIo::new(up);
            let mut buf = [0u8; 4096];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if io.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "test")
            .header("connection", "upgrade")
            .body(wxgate::body::empty())
            .unwrap();
    }
    if path != "/noread" {
        let body = req.into_body().collect().await;
        match body {
            Ok(c) => {
                let trailers = c.trailers().map(|t| t.len()).unwrap_or(0);
                let b = c.to_bytes();
                summary.push_str(&format!(
                    " body={}:{:?} t={trailers}",
                    b.len(),
                    String::from_utf8_lossy(&b[..b.len().min(48)])
                ));
            }
            Err(e) => summary.push_str(&format!(" body-error={e}")),
        }
    }
    summary.push('\n');
    Response::new(full(summary))
}

/// The `id`s of requests whose handler ran to its end.
static FINISHED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn finished(id: &str) -> bool {
    FINISHED.lock().unwrap().iter().any(|f| f == id)
}

const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// wxgate's server (the guard in front of hyper) with `limit` bytes of head.
async fn start_guarded(limit: usize) -> SocketAddr {
    start_guarded_with(limit, HEADER_TIMEOUT).await
}

async fn start_guarded_with(limit: usize, header_read_timeout: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut settings = ServerSettings::plain("public");
    settings.max_header_bytes = limit;
    settings.header_read_timeout = header_read_timeout;
    let handler = server::handler(|req, _conn| app(req));
    tokio::spawn(server::serve(
        listener,
        settings,
        handler,
        std::future::pending(),
    ));
    addr
}

/// hyper alone, built as wxgate builds it.
async fn start_bare() -> SocketAddr {
    start_bare_with(HEADER_TIMEOUT).await
}

async fn start_bare_with(header_read_timeout: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_read_timeout)
                    .keep_alive(true);
                builder.http2().timer(TokioTimer::new());
                let svc = service_fn(|req| async move { Ok::<_, Infallible>(app(req).await) });
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// What a client saw: every byte of the responses (Date lines dropped) and whether
/// the server closed the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    bytes: String,
    closed: bool,
}

/// Sends `segments` (each its own write, a pause between) and reads until the
/// server closes or stays quiet for `quiet`.
async fn exchange(addr: SocketAddr, segments: &[Vec<u8>], quiet: Duration) -> Seen {
    exchange_then(addr, segments, quiet, false).await
}

/// As [`exchange`]; with `half_close`, the client shuts its sending side after the
/// last segment.
async fn exchange_then(
    addr: SocketAddr,
    segments: &[Vec<u8>],
    quiet: Duration,
    half_close: bool,
) -> Seen {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut got = Vec::new();
    let mut closed = false;
    let mut buf = vec![0u8; 64 * 1024];
    for seg in segments {
        if tcp.write_all(seg).await.is_err() {
            break;
        }
        // Let the server read this segment on its own.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    if half_close {
        let _ = tcp.shutdown().await;
    }
    loop {
        match tokio::time::timeout(quiet, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&got);
    let bytes = text
        .split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("date: "))
        .collect();
    Seen { bytes, closed }
}

fn split_at(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts {
        if c > at && c < bytes.len() {
            out.push(bytes[at..c].to_vec());
            at = c;
        }
    }
    out.push(bytes[at..].to_vec());
    out
}

// ---------------------------------------------------------------- random inputs

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const REQUESTS: &[&str] = &[
    "GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\n\r\n",
    "POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 1\r\n\r\n",
    "GET /d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "POST /noread HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody",
    "POST /noread HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n",
    "POST /s?ms=20 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    "GET /f HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n",
    "GET /g HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    "HEAD /h HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    "POST /i HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "POST /j HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n\n2\r\nab\r\n0\r\n\r\n",
    "\r\nGET /k HTTP/1.1\r\nHost: x\r\n\r\n",
    "CONNECT x:80 HTTP/1.1\r\nHost: x:80\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /up HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: upgrade\r\n\r\nGET /tunnelled HTTP/1.1\r\n\r\n",
];

const TOKENS: &[&str] = &[
    "\r\n",
    "\n",
    "\r",
    " ",
    "\t",
    ";",
    ":",
    "0",
    "1",
    "f",
    "FFFFFFFFFFFFFFFFF",
    "0\r\n\r\n",
    "\r\n\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Content-Length: 0\r\n",
    "Content-Length: 7\r\n",
    "Upgrade: test\r\n",
    "Expect: 100-continue\r\n",
    "Connection: close\r\n",
    "Connection: keep-alive\r\n",
    " folded\r\n",
    "\0",
    "HTTP/1.0",
    "x-t: 1\r\n",
    ";ext=\"a b\"",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(3) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 | 1 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                input.splice(at..at, t.iter().copied());
            }
            2 if !input.is_empty() => {
                let end = (at + 1 + rng.below(4)).min(input.len());
                let at = at.min(end.saturating_sub(1));
                input.drain(at..end);
            }
            3 if at < input.len() => {
                input[at] = b"\r\n :;0aZ\t\x00\x7f\xff"[rng.below(12)];
            }
            4 => {
                let r = REQUESTS[rng.below(REQUESTS.len())].as_bytes();
                input.splice(at..at, r.iter().copied());
            }
            _ => {}
        }
    }
}

/// Requests with bodies larger than any read: a Content-Length body, a chunked one
/// with chunks that cross reads, and a chunk extension past hyper's 16 KB bound.
fn big_request(rng: &mut Rng) -> Vec<u8> {
    let fill = |n: usize| "GET /not-a-head HTTP/1.1\r\n\r\n".repeat(n / 28 + 1)[..n].to_string();
    match rng.below(3) {
        0 => {
            let n = 1 + rng.below(200_000);
            format!(
                "POST /bigl HTTP/1.1\r\nContent-Length: {n}\r\n\r\n{}",
                fill(n)
            )
            .into_bytes()
        }
        1 => {
            let (a, b) = (1 + rng.below(70_000), 1 + rng.below(20_000));
            format!(
                "POST /bigc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{a:x}\r\n{}\r\n{b:X};x=y\r\n{}\r\n0\r\n\r\n",
                fill(a),
                fill(b)
            )
            .into_bytes()
        }
        _ => format!(
            "POST /ext HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\nx\r\n0\r\n\r\n",
            "e".repeat(15_000 + rng.below(3_000))
        )
        .into_bytes(),
    }
}

fn pipelined(rng: &mut Rng) -> Vec<u8> {
    let mut input = Vec::new();
    if rng.below(5) == 0 {
        input.extend(big_request(rng));
    }
    if rng.below(4) == 0 {
        // A head near the small limit, padded.
        let pad = 40 + rng.below(120);
        input.extend_from_slice(
            format!("GET /pad HTTP/1.1\r\nx-pad: {}\r\n\r\n", "p".repeat(pad)).as_bytes(),
        );
    }
    for _ in 0..1 + rng.below(4) {
        input.extend_from_slice(REQUESTS[rng.below(REQUESTS.len())].as_bytes());
    }
    if rng.below(3) > 0 {
        mutate(rng, &mut input);
    }
    input
}

fn cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    let mut c: Vec<usize> = (0..rng.below(4)).map(|_| rng.below(len + 1)).collect();
    c.sort_unstable();
    c
}

/// Whether a difference is the guard being stricter about the head limit.
fn refusal(seen: &Seen) -> Option<usize> {
    ["HTTP/1.1 431 ", "HTTP/1.1 414 "]
        .iter()
        .filter_map(|s| seen.bytes.find(s))
        .min()
}

/// Whether `longer` is `shorter` and then one of hyper's bare 400 answers.
fn plus_400(shorter: &Seen, longer: &Seen) -> bool {
    longer
        .bytes
        .strip_prefix(shorter.bytes.as_str())
        .is_some_and(|rest| {
            (rest.starts_with("HTTP/1.1 400 Bad Request\r\n")
                || rest.starts_with("HTTP/1.0 400 Bad Request\r\n"))
                && rest.ends_with("content-length: 0\r\n\r\n")
        })
}

/// hyper alone refuses an unfinished line at its first bad byte; the guard waits for
/// the line's end (at most the head timeout) before hyper sees it.
fn lazy_400(g: &Seen, b: &Seen) -> bool {
    !g.closed && b.closed && plus_400(g, b)
}

/// The guard refuses a bad request line at its end; hyper alone, after a partial
/// read, waits for a blank line before it parses again.
fn eager_400(g: &Seen, b: &Seen) -> bool {
    g.closed && !b.closed && plus_400(b, g)
}

/// Both closed; one wrote hyper's 400 for a bad head and the other did not (hyper
/// skips the 400 when its write side is not idle: a matter of timing).
fn closed_either_way(g: &Seen, b: &Seen) -> bool {
    g.closed
        && b.closed
        && (plus_400(g, b)
            || plus_400(b, g)
            // hyper alone drops its 2xx to a CONNECT (not taken as an upgrade) when
            // pipelined bytes follow; the guard holds those back, and hyper writes it.
            || g.bytes.strip_prefix(b.bytes.as_str()) == Some("HTTP/1.1 200 OK\r\n\r\n"))
}

fn show(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

/// Heads bigger than `limit` that reached the application.
fn oversized(seen: &Seen, limit: usize) -> Vec<usize> {
    seen.bytes
        .split(" sz=")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .filter(|&n| n > limit)
        .collect()
}

async fn differential(seed: u64, rounds: usize, limit: usize) -> Vec<String> {
    let guarded = start_guarded(limit).await;
    let bare = start_bare().await;
    let mut rng = Rng(seed);
    let mut cases = Vec::new();
    for _ in 0..rounds {
        let input = pipelined(&mut rng);
        let c = cuts(&mut rng, input.len());
        cases.push((input, c));
    }
    // With DIFF_HALF_CLOSE set, the client shuts its sending side after its bytes.
    let half_close = std::env::var_os("DIFF_HALF_CLOSE").is_some();
    let mut failures = Vec::new();
    for batch in cases.chunks(24) {
        let mut set = tokio::task::JoinSet::new();
        for (input, c) in batch {
            let (input, c) = (input.clone(), c.clone());
            set.spawn(async move {
                let segs = split_at(&input, &c);
                let quiet = Duration::from_millis(400);
                let (g, b) = tokio::join!(
                    exchange_then(guarded, &segs, quiet, half_close),
                    exchange_then(bare, &segs, quiet, half_close)
                );
                let over = oversized(&g, limit);
                if !over.is_empty() {
                    return Some(format!("OVER {over:?} {}|{c:?}", show(&input)));
                }
                if g == b {
                    return None;
                }
                if let Some(at) = refusal(&g) {
                    if g.bytes[..at] == b.bytes[..at.min(b.bytes.len())] {
                        return None;
                    }
                }
                if lazy_400(&g, &b) {
                    return Some(format!("LAZY {}|{c:?}", show(&input)));
                }
                if eager_400(&g, &b) || closed_either_way(&g, &b) {
                    return None;
                }
                if g.closed && b.closed && g.bytes.starts_with(b.bytes.as_str()) {
                    // hyper alone stopped earlier: looked at by hand (printed, not failed).
                    return Some(format!(
                        "REF {}|{c:?}\n  guarded extra: {:?}",
                        show(&input),
                        &g.bytes[b.bytes.len()..]
                    ));
                }
                // Once more, to tell a real difference from a timing one.
                let (g2, b2) = tokio::join!(
                    exchange_then(guarded, &segs, quiet, half_close),
                    exchange_then(bare, &segs, quiet, half_close)
                );
                if g2 == b2 {
                    return None;
                }
                Some(format!(
                    "input {} cut at {c:?}\n  guarded: {:?} closed={}\n  bare:    {:?} closed={}",
                    show(&input),
                    g2.bytes,
                    g2.closed,
                    b2.bytes,
                    b2.closed
                ))
            });
        }
        while let Some(r) = set.join_next().await {
            if let Some(f) = r.unwrap() {
                failures.push(f);
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_and_hyper_alone_answer_mutated_pipelines_alike() {
    let rounds = std::env::var("DIFF_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed = std::env::var("DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1234_u64);
    let all = differential(seed, rounds, 64 * 1024).await;
    let (lazy, failures): (Vec<_>, Vec<_>) = all.into_iter().partition(|f| f.starts_with("LAZY"));
    let (refs, failures): (Vec<_>, Vec<_>) =
        failures.into_iter().partition(|f| f.starts_with("REF"));
    eprintln!("{} lazy refusals of {rounds}", lazy.len());
    for f in lazy.iter().take(3).chain(&refs) {
        eprintln!("{f}");
    }
    for f in &failures {
        eprintln!("DIFF {f}");
    }
    assert!(failures.is_empty(), "{} differences", failures.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_small_limit_only_refusals_differ_and_no_bigger_head_gets_through() {
    let rounds = std::env::var("DIFF_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed = std::env::var("DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_4321_u64);
    let all = differential(seed, rounds, 120).await;
    let (lazy, failures): (Vec<_>, Vec<_>) = all.into_iter().partition(|f| f.starts_with("LAZY"));
    eprintln!("{} lazy refusals of {rounds}", lazy.len());
    for f in &failures {
        eprintln!("DIFF {f}");
    }
    assert!(failures.is_empty(), "{} differences", failures.len());
}

// ---------------------------------------------------------------- divergences

fn segs(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.as_bytes().to_vec()).collect()
}

const SLOW_POST: &str = "POST /s?ms=2500 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
const SLOW_ANSWER: &str = "POST /s?ms=2500 HTTP/1.1 h=2 sz=40 body=2:\"hi\" t=0";

/// A client that ends its body with an extra CRLF (RFC 9112 §2.2 asks servers to
/// ignore it) while the answer takes longer than the head timeout: hyper alone
/// answers; the guard times the CRLF out as a head and the answer is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crlf_after_a_body_does_not_cost_a_slow_answer() {
    let timeout = Duration::from_secs(1);
    let guarded = start_guarded_with(64 * 1024, timeout).await;
    let bare = start_bare_with(timeout).await;
    let input = segs(&[SLOW_POST, "\r\n"]);
    let quiet = Duration::from_secs(4);
    let (g, b) = tokio::join!(
        exchange(guarded, &input, quiet),
        exchange(bare, &input, quiet)
    );
    eprintln!("guarded: {g:?}\nbare:    {b:?}");
    assert!(b.bytes.contains(SLOW_ANSWER), "hyper alone answers: {b:?}");
    assert!(
        g.bytes.contains(SLOW_ANSWER),
        "the guard loses the answer: {g:?}"
    );
}

/// The same with the start of a pipelined head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_pipelined_head_does_not_cost_a_slow_answer() {
    let timeout = Duration::from_secs(1);
    let guarded = start_guarded_with(64 * 1024, timeout).await;
    let bare = start_bare_with(timeout).await;
    let input = segs(&[SLOW_POST, "GET /next HTTP/1.1\r\nHo"]);
    let quiet = Duration::from_secs(4);
    let (g, b) = tokio::join!(
        exchange(guarded, &input, quiet),
        exchange(bare, &input, quiet)
    );
    eprintln!("guarded: {g:?}\nbare:    {b:?}");
    assert!(b.bytes.contains(SLOW_ANSWER), "hyper alone answers: {b:?}");
    assert!(
        g.bytes.contains(SLOW_ANSWER),
        "the guard loses the answer: {g:?}"
    );
}

/// A body, its extra CRLF, then the client shuts its sending side (as `nc -N` or a
/// script does): hyper alone answers; the guard reports the end of input while the
/// request is in flight, and hyper cancels it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crlf_then_a_half_close_does_not_cost_the_answer() {
    let guarded = start_guarded(64 * 1024).await;
    let bare = start_bare().await;
    let post = "POST /s?ms=300 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
    let input = segs(&[post, "\r\n"]);
    let quiet = Duration::from_secs(2);
    let (g, b) = tokio::join!(
        exchange_then(guarded, &input, quiet, true),
        exchange_then(bare, &input, quiet, true)
    );
    eprintln!("guarded: {g:?}\nbare:    {b:?}");
    assert!(b.bytes.contains("body=2"), "hyper alone answers: {b:?}");
    assert!(
        g.bytes.contains("body=2"),
        "the guard loses the answer: {g:?}"
    );
}

/// A client that goes away while its request is in flight: hyper notices the end
/// of input and cancels the handler (the upstream request with it). After a request
/// carrying `Upgrade` the guard reads nothing until the answer, so nobody notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_during_a_request_with_upgrade_cancels_it() {
    let guarded = start_guarded(64 * 1024).await;
    let bare = start_bare().await;
    for (addr, id, upgrade) in [
        (bare, "bare-plain", false),
        (guarded, "guarded-plain", false),
        (bare, "bare-upgrade", true),
        (guarded, "guarded-upgrade", true),
    ] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let up = if upgrade { "Upgrade: foo\r\n" } else { "" };
        let req = format!("GET /w?ms=1000&id={id} HTTP/1.1\r\nHost: x\r\n{up}\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(tcp);
    }
    // A control that stays connected.
    let mut kept = TcpStream::connect(guarded).await.unwrap();
    kept.write_all(b"GET /w?ms=1000&id=kept HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        finished("kept"),
        "a connected client's request runs to its end"
    );
    let report: Vec<_> = [
        "bare-plain",
        "guarded-plain",
        "bare-upgrade",
        "guarded-upgrade",
    ]
    .iter()
    .map(|id| (*id, finished(id)))
    .collect();
    eprintln!("handler ran to its end: {report:?}");
    assert!(!finished("bare-plain") && !finished("bare-upgrade"));
    assert!(!finished("guarded-plain"));
    assert!(
        !finished("guarded-upgrade"),
        "the guard kept a gone client's request running"
    );
}

/// A head over the limit pipelined behind a slow request: the page must still reach
/// the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_head_behind_a_slow_request_still_gets_its_page() {
    let guarded = start_guarded(16 * 1024).await;
    let mut tcp = TcpStream::connect(guarded).await.unwrap();
    let (mut rd, mut wr) = tcp.split();
    let mut input = b"GET /s?ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    input.extend_from_slice(b"GET /big HTTP/1.1\r\nx-big: ");
    input.extend(std::iter::repeat_n(b'a', 4 << 20));
    input.extend_from_slice(b"\r\n\r\n");
    let writer = async {
        let _ = wr.write_all(&input).await;
    };
    let reader = async {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(8), rd.read(&mut buf)).await {
                Ok(Ok(0)) => return (got, "closed".to_string()),
                Ok(Err(e)) => return (got, format!("error {e}")),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => return (got, "quiet".to_string()),
            }
        }
    };
    let (_, (got, end)) = tokio::join!(writer, reader);
    let text = String::from_utf8_lossy(&got);
    eprintln!(
        "ended: {end}; got {} bytes: {:?}",
        got.len(),
        &text[..text.len().min(300)]
    );
    assert!(text.contains("GET /s?ms=3000"), "the first answer");
    assert!(text.contains(" 431 "), "the refusal page: {end}");
}

/// A head of `len` bytes exactly.
fn head_of(path: &str, len: usize) -> String {
    let fixed = format!("GET {path} HTTP/1.1\r\nx: \r\n\r\n").len();
    format!(
        "GET {path} HTTP/1.1\r\nx: {}\r\n\r\n",
        "a".repeat(len - fixed)
    )
}

/// Bodies of each framing, a head at the limit and one a byte over, cut at every
/// byte boundary: the same answers as hyper alone up to the refusal, and the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_holds_to_the_byte_after_every_framing_cut_anywhere() {
    let limit = 300;
    let guarded = start_guarded(limit).await;
    let bare = start_bare().await;
    let input = format!(
        "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nx-t: 1\r\n\r\n\
         POST /l HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
         {}{}",
        head_of("/exact", limit),
        head_of("/over", limit + 1)
    )
    .into_bytes();
    let positions: Vec<usize> = (1..input.len()).collect();
    let mut failures = Vec::new();
    for batch in positions.chunks(32) {
        let mut set = tokio::task::JoinSet::new();
        for &cut in batch {
            let segs = split_at(&input, &[cut]);
            set.spawn(async move {
                let q = Duration::from_millis(400);
                let (g, b) = tokio::join!(exchange(guarded, &segs, q), exchange(bare, &segs, q));
                let answers = g.bytes.matches("HTTP/1.1 200 OK").count();
                let ok = answers == 3
                    && g.bytes.contains("GET /exact")
                    && !g.bytes.contains("GET /over")
                    && g.bytes.contains("HTTP/1.1 431 ")
                    && g.closed
                    && b.bytes
                        .starts_with(&g.bytes[..g.bytes.find("HTTP/1.1 431").unwrap_or(0)]);
                (!ok).then(|| format!("cut at {cut}: guarded {g:?}\n bare {b:?}"))
            });
        }
        while let Some(r) = set.join_next().await {
            if let Some(f) = r.unwrap() {
                failures.push(f);
            }
        }
    }
    // And a byte at a time.
    let every: Vec<usize> = (1..input.len()).collect();
    let g = exchange(
        guarded,
        &split_at(&input, &every),
        Duration::from_millis(400),
    )
    .await;
    if !(g.bytes.contains("GET /exact") && g.bytes.contains(" 431 ") && g.closed) {
        failures.push(format!("a byte at a time: {g:?}"));
    }
    for f in failures.iter().take(5) {
        eprintln!("{f}");
    }
    assert!(failures.is_empty(), "{} cuts differ", failures.len());
}

/// A client that waits for 100 Continue before its body, then pipelines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waiting_for_100_continue_gets_it_and_its_answers() {
    let guarded = start_guarded(64 * 1024).await;
    let mut tcp = TcpStream::connect(guarded).await.unwrap();
    tcp.write_all(
        b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("an interim answer")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    tcp.write_all(b"abcGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let seen = exchange_more(&mut tcp, Duration::from_millis(500)).await;
    assert!(seen.contains("body=3:\"abc\""), "{seen}");
    assert!(seen.contains("GET /next"), "{seen}");
}

async fn exchange_more(tcp: &mut TcpStream, quiet: Duration) -> String {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(Ok(n)) = tokio::time::timeout(quiet, tcp.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}
