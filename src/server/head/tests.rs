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
