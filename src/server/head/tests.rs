use super::*;

/// Scans `head` once whole, and once a byte at a time: both must agree.
fn scan(head: &[u8], limit: usize) -> Scanned {
    let whole = HeadScan::default().feed(head, limit);
    let mut trickled = HeadScan::default();
    let mut last = Scanned::More;
    for n in 1..=head.len() {
        last = trickled.feed(&head[..n], limit);
        if last != Scanned::More {
            break;
        }
    }
    assert_eq!(
        whole,
        last,
        "whole and byte by byte disagree on {:?}",
        String::from_utf8_lossy(&head[..head.len().min(80)])
    );
    whole
}

fn head_of(len: usize) -> Vec<u8> {
    // "GET / HTTP/1.1\r\nx: " + padding + "\r\n\r\n"
    let fixed = "GET / HTTP/1.1\r\nx: \r\n\r\n".len();
    format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(len - fixed)).into_bytes()
}

#[test]
fn a_head_ends_at_its_first_empty_line_however_its_lines_end() {
    let table: &[(&[u8], Scanned)] = &[
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Scanned::Complete(27)),
        (b"GET / HTTP/1.1\nHost: a\n\n", Scanned::Complete(24)),
        (
            b"GET / HTTP/1.1\r\nHost: a\n\r\nbody",
            Scanned::Complete(26),
        ),
        // Empty lines before the request line are skipped, and counted.
        (b"\r\n\nGET / HTTP/1.0\r\n\r\n", Scanned::Complete(21)),
        (b"GET / HTTP/1.1\r\nHost: a\r\n", Scanned::More),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r", Scanned::More),
        (b"GET / HTT", Scanned::More),
        (b"", Scanned::More),
        // Not an HTTP/1 request line: hyper gets it at once.
        (b"GET /ancient\r\n", Scanned::NotHttp1(14)),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Scanned::NotHttp1(16)),
        (b"GET / HTTP/1.1 x\r\n\r\n", Scanned::NotHttp1(18)),
    ];
    for (head, want) in table {
        assert_eq!(
            scan(head, 1024),
            *want,
            "{:?}",
            String::from_utf8_lossy(head)
        );
    }
}

#[test]
fn the_limit_holds_to_the_byte_at_once_or_trickled() {
    for limit in [1024, 8192, 65536] {
        let exact = head_of(limit);
        assert_eq!(exact.len(), limit);
        assert_eq!(scan(&exact, limit), Scanned::Complete(limit));
        let over = head_of(limit + 1);
        assert_eq!(
            scan(&over, limit),
            Scanned::Refuse(Refusal::HeadTooLarge),
            "{} bytes over a limit of {limit}",
            over.len()
        );
        // What follows a head within the limit does not count.
        let mut with_body = exact.clone();
        with_body.extend_from_slice(&[b'b'; 4096]);
        assert_eq!(scan(&with_body, limit), Scanned::Complete(limit));
    }
    // A request line alone past the limit is a URL too long.
    let line = format!("GET /{} HTTP/1.1\r\n\r\n", "p".repeat(2000));
    assert_eq!(
        scan(line.as_bytes(), 1024),
        Scanned::Refuse(Refusal::LineTooLong)
    );
}

#[test]
fn more_than_a_hundred_header_lines_are_refused() {
    let head = |n: usize| {
        let lines: String = (0..n).map(|i| format!("x-{i}: v\r\n")).collect();
        format!("GET / HTTP/1.1\r\n{lines}\r\n").into_bytes()
    };
    let hundred = head(MAX_HEADERS);
    assert_eq!(scan(&hundred, 65536), Scanned::Complete(hundred.len()));
    assert_eq!(
        scan(&head(MAX_HEADERS + 1), 65536),
        Scanned::Refuse(Refusal::TooManyHeaders)
    );
}

/// Follows `body` in pieces of `piece` bytes: where it ended, or an error.
fn chunked_end(body: &[u8], piece: usize) -> Result<Option<usize>, ()> {
    let mut scan = ChunkScan::default();
    let mut at = 0;
    for part in body.chunks(piece) {
        let (used, ended) = scan.feed(part)?;
        at += used;
        if ended {
            return Ok(Some(at));
        }
        assert_eq!(used, part.len(), "an unfinished body takes every byte");
    }
    Ok(None)
}

#[test]
fn a_chunked_body_ends_where_hyper_ends_it() {
    type End = Result<Option<usize>, ()>;
    let table: &[(&[u8], End)] = &[
        (b"5\r\nhello\r\n0\r\n\r\nGET /next", Ok(Some(15))),
        (b"0\r\n\r\n", Ok(Some(5))),
        (b"A;ext=\"x y\"\r\n0123456789\r\n0\r\n\r\n", Ok(Some(30))),
        (b"5 \t;a=b\r\nhello\r\n0\r\n\r\n", Ok(Some(21))),
        (
            b"3\r\nabc\r\n0\r\nx-sum: 1\r\ny: 2\r\n\r\nNEXT",
            Ok(Some(29)),
        ),
        (b"5\r\nhel", Ok(None)),
        (b"5\r\nhello\r\n0\r\n", Ok(None)),
        // What hyper refuses.
        (b"zz\r\n", Err(())),
        (b" 5\r\nhello\r\n0\r\n\r\n", Err(())),
        (b"5\nhello\r\n0\r\n\r\n", Err(())),
        (b"5;a\nb\r\nhello\r\n0\r\n\r\n", Err(())),
        (b"5\r\nhelloXX0\r\n\r\n", Err(())),
        (b"5 5\r\nhello\r\n0\r\n\r\n", Err(())),
        (b"10000000000000000\r\n", Err(())),
        // A bare LF inside a trailer line is part of it, for hyper too.
        (b"0\r\nx: 1\n\r\n", Ok(None)),
    ];
    for (body, want) in table {
        for piece in [1, 2, 7, body.len().max(1)] {
            assert_eq!(
                chunked_end(body, piece),
                *want,
                "{:?} in pieces of {piece}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

/// The guard as hyper sees it: one read, or None while it waits.
fn read_once(guard: &mut HeadGuard<tokio::io::DuplexStream>) -> Option<Vec<u8>> {
    let mut space = vec![0u8; 256 * 1024];
    let mut buf = ReadBuf::new(&mut space);
    let waker = std::task::Waker::noop();
    match Pin::new(guard).poll_read(&mut Context::from_waker(waker), &mut buf) {
        Poll::Ready(r) => {
            r.expect("no error");
            Some(buf.filled().to_vec())
        }
        Poll::Pending => None,
    }
}

/// Reads until the guard waits; what it handed over.
async fn read_all(guard: &mut HeadGuard<tokio::io::DuplexStream>) -> Vec<u8> {
    tokio::task::yield_now().await;
    let mut got = Vec::new();
    while let Some(bytes) = read_once(guard) {
        if bytes.is_empty() {
            break;
        }
        got.extend_from_slice(&bytes);
    }
    got
}

fn request(method: &str, body: Option<u64>, upgrade: bool) -> Request<Sized> {
    let mut b = Request::builder().method(method).uri("/");
    if upgrade {
        b = b.header("upgrade", "websocket");
    }
    b.body(Sized(body)).unwrap()
}

/// A body of a known length (Content-Length), or none (chunked), as hyper's says.
struct Sized(Option<u64>);

impl HttpBody for Sized {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(None)
    }
    fn size_hint(&self) -> http_body::SizeHint {
        match self.0 {
            Some(n) => http_body::SizeHint::with_exact(n),
            None => http_body::SizeHint::new(),
        }
    }
}

#[tokio::test]
async fn hyper_gets_one_complete_head_at_a_time_and_each_body_as_framed() {
    use tokio::io::AsyncWriteExt;
    let (mut client, io) = tokio::io::duplex(1 << 20);
    let (mut guard, reports) = HeadGuard::new(io, 1024, Duration::from_secs(10));
    let heads = [
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
        "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    ];
    let chunked = "5\r\nGET /\r\n0\r\n\r\n";
    let stream = format!(
        "{}{}hello{}{chunked}{}",
        heads[0], heads[1], heads[2], heads[3]
    );
    client.write_all(stream.as_bytes()).await.unwrap();

    assert_eq!(read_all(&mut guard).await, heads[0].as_bytes());
    assert_eq!(
        read_once(&mut guard),
        None,
        "nothing before the framing is known"
    );
    assert_eq!(
        reports.request(&request("GET", Some(0), false), 1024),
        Seen::Request
    );
    assert_eq!(read_all(&mut guard).await, heads[1].as_bytes());
    reports.request(&request("POST", Some(5), false), 1024);
    // The body, then the next head (complete) and nothing of what follows it.
    assert_eq!(
        read_all(&mut guard).await,
        format!("hello{}", heads[2]).as_bytes()
    );
    reports.request(&request("POST", None, false), 1024);
    assert_eq!(
        read_all(&mut guard).await,
        format!("{chunked}{}", heads[3]).as_bytes()
    );
    assert_eq!(
        reports.request(&request("GET", Some(0), true), 1024),
        Seen::MayUpgrade
    );
    // After a request that may upgrade: nothing until its response is known.
    client.write_all(&[0x81; 2048]).await.unwrap();
    assert_eq!(read_all(&mut guard).await, b"");
    reports.upgraded(&Method::GET, StatusCode::SWITCHING_PROTOCOLS);
    // A tunnel now: no head limit on what follows.
    assert_eq!(read_all(&mut guard).await, vec![0x81; 2048]);
}

#[tokio::test]
async fn a_head_over_the_limit_is_replaced_by_the_stand_in_and_the_server_is_told() {
    use tokio::io::AsyncWriteExt;
    for split in [false, true] {
        let (mut client, io) = tokio::io::duplex(1 << 20);
        let (mut guard, reports) = HeadGuard::new(io, 1024, Duration::from_secs(10));
        let head = head_of(1025);
        if split {
            // Most of it first: held back, not handed over.
            client.write_all(&head[..1000]).await.unwrap();
            assert_eq!(read_all(&mut guard).await, b"");
            client.write_all(&head[1000..]).await.unwrap();
        } else {
            client.write_all(&head).await.unwrap();
        }
        assert_eq!(read_all(&mut guard).await, STAND_IN);
        assert_eq!(
            reports.request(&request("GET", Some(0), false), 1024),
            Seen::Refused(Refusal::HeadTooLarge)
        );
        assert_eq!(read_once(&mut guard), None, "nothing more for hyper");
    }
}

#[tokio::test]
async fn an_http2_connection_passes_through() {
    use tokio::io::AsyncWriteExt;
    let (mut client, io) = tokio::io::duplex(1 << 20);
    let (mut guard, _reports) = HeadGuard::new(io, 1024, Duration::from_secs(10));
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend(std::iter::repeat_n(0u8, 4096));
    client.write_all(&preface).await.unwrap();
    assert_eq!(read_all(&mut guard).await, preface);
}

#[tokio::test(start_paused = true)]
async fn a_first_head_not_complete_within_the_timeout_ends_the_connection() {
    use tokio::io::AsyncWriteExt;
    let (mut client, io) = tokio::io::duplex(1 << 20);
    let (mut guard, _reports) = HeadGuard::new(io, 1024, Duration::from_secs(10));
    client.write_all(b"GET / HTTP/1.1\r\nHost:").await.unwrap();
    let mut space = [0u8; 1024];
    let mut buf = ReadBuf::new(&mut space);
    let started = tokio::time::Instant::now();
    let err = std::future::poll_fn(|cx| Pin::new(&mut guard).poll_read(cx, &mut buf))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_later_head_is_left_to_hyper_s_clock_while_an_answer_is_slow() {
    use tokio::io::AsyncWriteExt;
    let (mut client, io) = tokio::io::duplex(1 << 20);
    let (mut guard, reports) = HeadGuard::new(io, 1024, Duration::from_secs(10));
    let head = "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n";
    client.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(read_all(&mut guard).await, head.as_bytes());
    reports.request(&request("POST", Some(2), false), 1024);
    client.write_all(b"hi").await.unwrap();
    assert_eq!(read_all(&mut guard).await, b"hi");
    // While the answer is slow: the CRLF some clients send after a body, then the
    // start of the next head.
    for part in [&b"\r\n"[..], b"GET /next HTTP/1.1\r\nHo"] {
        client.write_all(part).await.unwrap();
        assert_eq!(read_all(&mut guard).await, b"");
    }
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(read_once(&mut guard), None, "still waiting, no error");
}

#[tokio::test]
async fn a_client_that_stops_inside_a_head_leaves_hyper_the_part_then_the_end() {
    use tokio::io::AsyncWriteExt;
    let (mut client, io) = tokio::io::duplex(1 << 20);
    let (mut guard, _reports) = HeadGuard::new(io, 1024, Duration::from_secs(10));
    client
        .write_all(b"\r\nGET /next HTTP/1.1\r\nHo")
        .await
        .unwrap();
    assert_eq!(read_all(&mut guard).await, b"");
    client.shutdown().await.unwrap();
    // As hyper alone would have it: the part (an answer in flight is still written,
    // hyper not looking for the end past unparsed bytes), then the end.
    assert_eq!(read_all(&mut guard).await, b"\r\nGET /next HTTP/1.1\r\nHo");
    assert_eq!(read_once(&mut guard), Some(Vec::new()), "then the end");
}

#[tokio::test]
async fn a_client_gone_while_an_upgrade_is_answered_is_noticed() {
    use tokio::io::AsyncWriteExt;
    let (mut client, io) = tokio::io::duplex(1 << 20);
    let (mut guard, reports) = HeadGuard::new(io, 1024, Duration::from_secs(10));
    let head = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
    client.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(read_all(&mut guard).await, head.as_bytes());
    reports.request(&request("GET", Some(0), true), 1024);
    assert_eq!(read_once(&mut guard), None, "waiting for the answer");
    // hyper looks for the end while a request is in flight, and cancels it there.
    drop(client);
    tokio::task::yield_now().await;
    assert_eq!(read_once(&mut guard), Some(Vec::new()), "the end");
}

#[tokio::test]
async fn what_a_client_sends_before_an_upgrade_is_answered_waits_for_the_answer() {
    use tokio::io::AsyncWriteExt;
    for upgraded in [true, false] {
        let (mut client, io) = tokio::io::duplex(1 << 20);
        let (mut guard, reports) = HeadGuard::new(io, 1024, Duration::from_secs(10));
        let head = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        client.write_all(head.as_bytes()).await.unwrap();
        assert_eq!(read_all(&mut guard).await, head.as_bytes());
        reports.request(&request("GET", Some(0), true), 1024);
        let early = b"GET /early HTTP/1.1\r\n\r\n";
        client.write_all(early).await.unwrap();
        assert_eq!(read_all(&mut guard).await, b"", "held until the answer");
        let status = if upgraded {
            StatusCode::SWITCHING_PROTOCOLS
        } else {
            StatusCode::OK
        };
        reports.upgraded(&Method::GET, status);
        // A tunnel's bytes, or the next head: either way, the bytes as sent.
        assert_eq!(read_all(&mut guard).await, early);
    }
}
