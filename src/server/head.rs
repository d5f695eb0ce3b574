//! The request-head limits of HTTP/1 client connections: `server.max_header_bytes` for
//! the whole head (request line, headers, blank line) and [`MAX_HEADERS`] header lines,
//! the same whether a head arrives at once or a byte at a time.
//!
//! hyper's own bound is its read buffer, which a head delivered in one burst can
//! overshoot, and its refusals are bare status lines. So the limits are kept below
//! hyper, by a guard between the socket and hyper's connection: it holds a request head
//! back until its blank line has arrived, so hyper only ever parses complete heads
//! within the limits. A head that outgrows them is never handed over: in its place
//! hyper gets a small request of the guard's own, which the server recognises (through
//! [`HeadReports`]) and answers with the 431 page and `Connection: close`, after any
//! response still being written on the connection.
//!
//! To know where the next head starts, the guard follows each request's body as hyper
//! framed it: the server reports the framing when hyper hands it the request (before
//! hyper reads any of the body), the guard counts a Content-Length body's bytes and
//! reads a chunked body with hyper's grammar, and after a request that may upgrade it
//! waits for the response: a 101 (or a 2xx to CONNECT) makes the rest of the
//! connection a tunnel. A first line that is no HTTP/1 request line goes to hyper at
//! once: hyper refuses it (400), or it is HTTP/2's connection preface and the
//! connection passes through untouched, hyper's HTTP/2 server bounding header lists
//! itself.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{header, Method, Request, StatusCode, Version};
use http_body::Body as HttpBody;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The most header lines a request head may have: hyper's own bound, answered with
/// wxgate's 431 page.
pub const MAX_HEADERS: usize = 100;

/// What the guard hands hyper in place of a refused head: answered by the server from
/// [`HeadReports`], never forwarded.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nhost: refused.invalid\r\nconnection: close\r\n\r\n";

/// After a refusal, what the client still sends is read and dropped (up to this much,
/// for this long) once the page is written, so the close does not reset the
/// connection before the client has read the page.
const LINGER_BYTES: usize = 1 << 20;
const LINGER_TIME: Duration = Duration::from_secs(2);

const READ_CHUNK: usize = 8192;

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request line alone is longer than the limit: 414.
    LineTooLong,
    /// The head is longer than the limit: 431.
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header lines: 431.
    TooManyHeaders,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::LineTooLong => StatusCode::URI_TOO_LONG,
            Refusal::HeadTooLarge | Refusal::TooManyHeaders => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
        }
    }

    /// The page's code and the `reason` label of `wxgate_requests_denied_total`.
    /// How `wxgate_requests_denied_total` counts it.
    pub fn denied(self) -> crate::metrics::labels::Denied {
        match self {
            Refusal::LineTooLong => crate::metrics::labels::Denied::UriTooLong,
            Refusal::HeadTooLarge => crate::metrics::labels::Denied::HeaderTooLarge,
            Refusal::TooManyHeaders => crate::metrics::labels::Denied::TooManyHeaders,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Refusal::LineTooLong => "uri_too_long",
            Refusal::HeadTooLarge => "header_too_large",
            Refusal::TooManyHeaders => "too_many_headers",
        }
    }
}

/// How a request's body is framed, as hyper read its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

/// What the server tells the guard, and the guard the server.
#[derive(Default)]
struct Reports {
    /// The body framing of the request just handed over, and whether it may upgrade.
    framing: Option<(Framing, bool)>,
    /// Whether the response to a request that may upgrade switched protocols.
    upgraded: Option<bool>,
    /// Set when the guard hands over its stand-in request.
    refusal: Option<Refusal>,
    /// The guard, waiting for one of the above.
    waker: Option<Waker>,
}

/// The server's side of a guard: told about each request hyper hands over and about
/// the response to a request that may upgrade.
#[derive(Clone, Default)]
pub struct HeadReports(Arc<Mutex<Reports>>);

/// What a request handed over by hyper is, for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// An ordinary request (or any request on HTTP/2).
    Request,
    /// A request whose response may switch protocols: report it with [`HeadReports::upgraded`].
    MayUpgrade,
    /// The guard's stand-in for a head it refused: answer with the refusal, nothing else.
    Refused(Refusal),
}

impl HeadReports {
    fn lock(&self) -> std::sync::MutexGuard<'_, Reports> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called as hyper hands over a request, before its body is read.
    pub fn request<B: HttpBody>(&self, req: &Request<B>, limit: usize) -> Seen {
        if req.version() == Version::HTTP_2 {
            // HTTP/2 has no head to hold back: its header list is refused here, with
            // the page, up to the bound hyper's HTTP/2 server keeps (twice as much).
            return if header_list_size(req) > limit {
                Seen::Refused(Refusal::HeadTooLarge)
            } else {
                Seen::Request
            };
        }
        let mut r = self.lock();
        if let Some(refusal) = r.refusal {
            return Seen::Refused(refusal);
        }
        // hyper's Incoming knows its framing: an exact size for a Content-Length body
        // (0 for none), no upper bound for a chunked one.
        let framing = match req.body().size_hint().exact() {
            Some(n) => Framing::Length(n),
            None => Framing::Chunked,
        };
        // hyper upgrades on a 101 to any request with `Upgrade`, and on a 2xx to CONNECT.
        let may_upgrade =
            req.method() == Method::CONNECT || req.headers().contains_key(header::UPGRADE);
        r.framing = Some((framing, may_upgrade));
        if let Some(w) = r.waker.take() {
            w.wake();
        }
        if may_upgrade {
            Seen::MayUpgrade
        } else {
            Seen::Request
        }
    }

    /// The response to a [`Seen::MayUpgrade`] request: whether the connection became a
    /// tunnel.
    pub fn upgraded(&self, method: &Method, status: StatusCode) {
        let upgraded = status == StatusCode::SWITCHING_PROTOCOLS
            || (method == Method::CONNECT && status.is_success());
        let mut r = self.lock();
        r.upgraded = Some(upgraded);
        if let Some(w) = r.waker.take() {
            w.wake();
        }
    }

    fn refuse(&self, refusal: Refusal) {
        self.lock().refusal = Some(refusal);
    }

    /// Takes what `pick` finds, or leaves `cx`'s waker to be woken when it is told.
    fn wait<T>(
        &self,
        cx: &mut Context<'_>,
        pick: impl FnOnce(&mut Reports) -> Option<T>,
    ) -> Poll<T> {
        let mut r = self.lock();
        match pick(&mut r) {
            Some(v) => Poll::Ready(v),
            None => {
                r.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// A request's header list as HTTP/2 counts it (RFC 9113 §6.5.2): each field's name
/// and value, pseudo-header fields included, and 32 bytes for each.
pub fn header_list_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let pseudo = [
        (":method", req.method().as_str().len()),
        (":scheme", uri.scheme_str().map_or(0, str::len)),
        (
            ":authority",
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":path",
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        ),
    ];
    pseudo
        .iter()
        .map(|(name, len)| name.len() + len + 32)
        .chain(
            req.headers()
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 32),
        )
        .sum()
}

/// Where the guard is in the connection's byte stream.
#[derive(Clone, Copy)]
enum Phase {
    /// Reading a request head.
    Head(HeadScan),
    /// Handing hyper a complete head from the front of `held`: this many bytes to go,
    /// then the next phase.
    HandOver(usize, After),
    /// Handing hyper the stand-in request: from this offset.
    StandIn(usize),
    /// The head went to hyper: waiting for the server to report its body's framing.
    AwaitFraming,
    /// Inside a body; whether the request may upgrade.
    Body(BodyLeft, bool),
    /// After a request that may upgrade: waiting for its response.
    AwaitUpgrade,
    /// Everything passes: an upgraded connection, HTTP/2, or a body the guard could
    /// not follow (hyper refuses it and closes the connection).
    Tunnel,
    /// The stand-in was handed over: nothing more is read for hyper.
    Refused,
}

#[derive(Clone, Copy)]
enum After {
    Framing,
    Tunnel,
}

#[derive(Clone, Copy)]
enum BodyLeft {
    Length(u64),
    Chunked(ChunkScan),
}

/// An HTTP/1 client connection's byte stream with the request-head limits kept.
pub struct HeadGuard<IO> {
    io: IO,
    reports: HeadReports,
    limit: usize,
    /// Bytes read from the socket and not yet handed to hyper.
    held: BytesMut,
    phase: Phase,
    /// After a refusal: how much was dropped, and until when.
    linger: Option<(usize, Pin<Box<Sleep>>)>,
    /// `server.header_read_timeout` for the connection's first head, from the
    /// connection's start: until then hyper-util is still telling HTTP/2 from HTTP/1
    /// and hyper's own clock is not running. Later heads are hyper's to time out: its
    /// clock runs from the moment it waits for a head, whatever the guard holds back.
    /// A clock here would also run while an earlier request is still being answered,
    /// and end that exchange when the client has sent a CRLF after its body (RFC 9112
    /// §2.2) or the start of its next request.
    head_clock: Option<Pin<Box<Sleep>>>,
}

impl<IO> HeadGuard<IO> {
    /// Guards `io` with a head limit of `limit` bytes and the first head's read timeout; the
    /// reports go to the server. Runs in a Tokio runtime (for the clock).
    pub fn new(io: IO, limit: usize, header_timeout: Duration) -> (Self, HeadReports) {
        let reports = HeadReports::default();
        let guard = Self {
            io,
            reports: reports.clone(),
            limit,
            held: BytesMut::new(),
            phase: Phase::Head(HeadScan::default()),
            linger: None,
            head_clock: Some(Box::pin(tokio::time::sleep(header_timeout))),
        };
        (guard, reports)
    }

    /// Waiting inside a head: an error once its clock ran out.
    fn wait_in_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(clock) = &mut self.head_clock {
            if clock.as_mut().poll(cx).is_ready() {
                tracing::debug!("request head not complete within server.header_read_timeout");
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not complete within the header read timeout",
                )));
            }
        }
        Poll::Pending
    }

    /// The phase after a body, or after a head without one.
    fn after_body(may_upgrade: bool) -> Phase {
        if may_upgrade {
            Phase::AwaitUpgrade
        } else {
            Phase::Head(HeadScan::default())
        }
    }

    /// Drops the refused head and hands hyper the stand-in instead.
    fn refuse(&mut self, refusal: Refusal) -> Phase {
        self.head_clock = None;
        self.reports.refuse(refusal);
        self.held = BytesMut::new();
        self.linger = Some((0, Box::pin(tokio::time::sleep(LINGER_TIME))));
        Phase::StandIn(0)
    }

    /// Hands hyper up to `n` bytes from the front of `held`.
    fn give_held(&mut self, buf: &mut ReadBuf<'_>, n: usize) -> usize {
        let n = n.min(self.held.len()).min(buf.remaining());
        buf.put_slice(&self.held[..n]);
        self.held.advance(n);
        // Let go of a buffer a large head grew once it is empty.
        if self.held.is_empty() && self.held.capacity() > 4096 {
            self.held = BytesMut::new();
        }
        n
    }

    /// Keeps what follows `keep` bytes of what was just read into `buf` (from
    /// `start`) for later: hyper gets only the first `keep`.
    fn hold_back(&mut self, buf: &mut ReadBuf<'_>, start: usize, keep: usize) {
        self.held.extend_from_slice(&buf.filled()[start + keep..]);
        buf.set_filled(start + keep);
    }
}

impl<IO: AsyncRead + Unpin> HeadGuard<IO> {
    /// Reads from the socket straight into hyper's buffer: how many bytes came.
    fn read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<usize>> {
        let start = buf.filled().len();
        ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
        Poll::Ready(Ok(buf.filled().len() - start))
    }

    /// Reads from the socket into `held`.
    fn read_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.held.capacity() - self.held.len() < READ_CHUNK / 2 {
            self.held.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.held)
    }

    /// Reads and drops what the client sends after a refusal; ready at its end, or
    /// when the linger bound is reached.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some((dropped, deadline)) = &mut self.linger else {
            return Poll::Ready(());
        };
        let mut scratch = [0u8; 4096];
        while *dropped < LINGER_BYTES {
            let mut b = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.io).poll_read(cx, &mut b) {
                Poll::Ready(Ok(())) if !b.filled().is_empty() => *dropped += b.filled().len(),
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return deadline.as_mut().poll(cx),
            }
        }
        Poll::Ready(())
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for HeadGuard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            this.phase = match this.phase {
                Phase::Head(mut scan) if this.held.is_empty() && buf.remaining() >= READ_CHUNK => {
                    // Usually a whole head comes in one read: straight into hyper's
                    // buffer, and held back only when it is not complete. (A small
                    // buffer, such as the 24 bytes hyper-util reads to tell HTTP/2
                    // from HTTP/1, is filled from `held` instead: a head read 24
                    // bytes at a time would cost a read each.)
                    let start = buf.filled().len();
                    let n = match this.read_into(cx, buf) {
                        Poll::Ready(n) => n?,
                        Poll::Pending => return this.wait_in_head(cx),
                    };
                    if n == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    match scan.feed(&buf.filled()[start..], this.limit) {
                        Scanned::Complete(end) => {
                            this.head_clock = None;
                            this.hold_back(buf, start, end);
                            this.phase = Phase::AwaitFraming;
                            return Poll::Ready(Ok(()));
                        }
                        Scanned::NotHttp1(_) => {
                            this.head_clock = None;
                            this.phase = Phase::Tunnel;
                            return Poll::Ready(Ok(()));
                        }
                        Scanned::More => {
                            this.hold_back(buf, start, 0);
                            Phase::Head(scan)
                        }
                        Scanned::Refuse(refusal) => {
                            buf.set_filled(start);
                            this.refuse(refusal)
                        }
                    }
                }
                Phase::Head(mut scan) => match scan.feed(&this.held, this.limit) {
                    Scanned::Complete(end) => {
                        this.head_clock = None;
                        Phase::HandOver(end, After::Framing)
                    }
                    Scanned::NotHttp1(end) => {
                        this.head_clock = None;
                        Phase::HandOver(end, After::Tunnel)
                    }
                    Scanned::Refuse(refusal) => this.refuse(refusal),
                    Scanned::More => {
                        let n = match this.read_held(cx) {
                            Poll::Ready(n) => n?,
                            Poll::Pending => return this.wait_in_head(cx),
                        };
                        if n == 0 {
                            // The client stopped sending inside a head: hyper gets the
                            // part (within the limit, no request of its own) and then
                            // the end, as it would have alone. While an earlier
                            // request is being answered it does not look for the end
                            // past unparsed bytes, so that answer is still written.
                            this.head_clock = None;
                            Phase::HandOver(this.held.len(), After::Tunnel)
                        } else {
                            Phase::Head(scan)
                        }
                    }
                },
                Phase::HandOver(left, then) => {
                    let n = this.give_held(buf, left);
                    this.phase = match (left - n, then) {
                        (0, After::Framing) => Phase::AwaitFraming,
                        (0, After::Tunnel) => Phase::Tunnel,
                        (left, then) => Phase::HandOver(left, then),
                    };
                    return Poll::Ready(Ok(()));
                }
                Phase::StandIn(at) => {
                    let n = (STAND_IN.len() - at).min(buf.remaining());
                    buf.put_slice(&STAND_IN[at..at + n]);
                    this.phase = if at + n == STAND_IN.len() {
                        Phase::Refused
                    } else {
                        Phase::StandIn(at + n)
                    };
                    return Poll::Ready(Ok(()));
                }
                Phase::AwaitFraming => {
                    let (framing, may_upgrade) =
                        ready!(this.reports.wait(cx, |r| r.framing.take()));
                    let body = match framing {
                        Framing::Length(n) => BodyLeft::Length(n),
                        Framing::Chunked => BodyLeft::Chunked(ChunkScan::default()),
                    };
                    Phase::Body(body, may_upgrade)
                }
                Phase::Body(BodyLeft::Length(0), may_upgrade) => Self::after_body(may_upgrade),
                Phase::Body(BodyLeft::Length(left), may_upgrade) => {
                    let n = if this.held.is_empty() {
                        let start = buf.filled().len();
                        let n = ready!(this.read_into(cx, buf))?;
                        if n == 0 {
                            return Poll::Ready(Ok(()));
                        }
                        // What follows the body is the next head's: held back.
                        let keep = (n as u64).min(left) as usize;
                        this.hold_back(buf, start, keep);
                        keep
                    } else {
                        let n = (this.held.len() as u64).min(left) as usize;
                        this.give_held(buf, n)
                    };
                    this.phase = Phase::Body(BodyLeft::Length(left - n as u64), may_upgrade);
                    return Poll::Ready(Ok(()));
                }
                Phase::Body(BodyLeft::Chunked(mut scan), may_upgrade) => {
                    let (used, end) = if this.held.is_empty() {
                        let start = buf.filled().len();
                        let n = ready!(this.read_into(cx, buf))?;
                        if n == 0 {
                            return Poll::Ready(Ok(()));
                        }
                        let end = scan.feed(&buf.filled()[start..]);
                        let used = end.map_or(n, |(used, _)| used);
                        this.hold_back(buf, start, used);
                        (used, end.map(|(_, ended)| ended))
                    } else {
                        let n = this.held.len().min(buf.remaining());
                        let end = scan.feed(&this.held[..n]);
                        let used = this.give_held(buf, end.map_or(n, |(used, _)| used));
                        (used, end.map(|(_, ended)| ended))
                    };
                    this.phase = match end {
                        Ok(true) => Self::after_body(may_upgrade),
                        Ok(false) => Phase::Body(BodyLeft::Chunked(scan), may_upgrade),
                        // Not chunked as hyper reads it: hyper refuses the body and
                        // closes the connection; until then everything passes.
                        Err(()) => Phase::Tunnel,
                    };
                    if used > 0 {
                        return Poll::Ready(Ok(()));
                    }
                    this.phase
                }
                Phase::AwaitUpgrade => match this.reports.wait(cx, |r| r.upgraded.take()) {
                    Poll::Ready(true) => Phase::Tunnel,
                    Poll::Ready(false) => Phase::Head(HeadScan::default()),
                    Poll::Pending => {
                        // hyper reads while a request is in flight to notice a client
                        // that went away (and cancel the request). One read, as hyper
                        // alone would make: what comes is kept for after the answer.
                        if this.held.is_empty() && ready!(this.read_held(cx))? == 0 {
                            return Poll::Ready(Ok(()));
                        }
                        return Poll::Pending;
                    }
                },
                Phase::Tunnel => {
                    if this.held.is_empty() {
                        return Pin::new(&mut this.io).poll_read(cx, buf);
                    }
                    this.give_held(buf, usize::MAX);
                    return Poll::Ready(Ok(()));
                }
                Phase::Refused => {
                    // hyper reads now only to notice a client that went away; what
                    // the client still sends of its refused head is dropped.
                    ready!(this.drain(cx));
                    return Poll::Pending;
                }
            };
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for HeadGuard<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
        // A refused client may still be sending its head: closing with unread bytes
        // would reset the connection, and the client could lose the page.
        if matches!(this.phase, Phase::Refused) {
            ready!(this.drain(cx));
        }
        Poll::Ready(Ok(()))
    }
}

/// Where a head scan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scanned {
    /// The head ends after this many bytes.
    Complete(usize),
    /// Not an HTTP/1 request line (the first this many bytes): hyper refuses it at
    /// once (400), or it is HTTP/2's preface and the connection is HTTP/2.
    NotHttp1(usize),
    More,
    Refuse(Refusal),
}

/// Finds the end of a request head as httparse reads one: lines end with LF (a CR
/// before it is part of the line end), the head with an empty line; empty lines before
/// the request line are skipped, and counted against the limit.
#[derive(Debug, Clone, Copy, Default)]
struct HeadScan {
    /// Bytes of the head already scanned.
    scanned: usize,
    /// Where the current line starts.
    line_start: usize,
    /// The request line was seen (a non-empty first line).
    request_line: bool,
    headers: usize,
}

impl HeadScan {
    /// Scans `head` (everything of this head so far, from its first byte) from where
    /// the last call stopped.
    fn feed(&mut self, head: &[u8], limit: usize) -> Scanned {
        // memchr: a head is a few hundred bytes of which only a handful are line ends;
        // compared a byte at a time, the search was about half the guard's cost.
        while let Some(i) = memchr::memchr(b'\n', &head[self.scanned..]) {
            let end = self.scanned + i + 1;
            if end > limit {
                // This line does not end within the limit: neither does the head.
                break;
            }
            self.scanned = end;
            let line = &head[self.line_start..end - 1];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.line_start = end;
            if line.is_empty() {
                if self.request_line {
                    return Scanned::Complete(end);
                }
            } else if !self.request_line {
                self.request_line = true;
                // hyper's parser on the request line alone: an error is one hyper
                // would answer as soon as it sees the line, so it sees it now.
                let mut no_headers = [];
                let mut req = httparse::Request::new(&mut no_headers);
                match req.parse(&head[..end]) {
                    Ok(_) | Err(httparse::Error::TooManyHeaders) => {}
                    Err(_) => return Scanned::NotHttp1(end),
                }
            } else {
                self.headers += 1;
                if self.headers > MAX_HEADERS {
                    return Scanned::Refuse(Refusal::TooManyHeaders);
                }
            }
        }
        if head.len() < limit {
            self.scanned = head.len();
            return Scanned::More;
        }
        // Not complete within the limit: it cannot be.
        Scanned::Refuse(if self.request_line {
            Refusal::HeadTooLarge
        } else {
            Refusal::LineTooLong
        })
    }
}

/// Follows a chunked body with hyper's grammar (its decoder's states), to find where
/// it ends; what hyper would refuse is an error here too.
#[derive(Debug, Clone, Copy, Default)]
struct ChunkScan {
    state: Chunk,
    size: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Chunk {
    #[default]
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk's line, and after each trailer line.
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
    Done,
}

impl ChunkScan {
    /// Reads `bytes` as the continuation of the body: how many belong to it, and
    /// whether it ended there. Err: hyper would refuse this body.
    fn feed(&mut self, bytes: &[u8]) -> Result<(usize, bool), ()> {
        let mut i = 0;
        while i < bytes.len() {
            if let Chunk::Data(left) = self.state {
                let take = left.min((bytes.len() - i) as u64);
                i += take as usize;
                self.state = if take == left {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left - take)
                };
                continue;
            }
            let b = bytes[i];
            i += 1;
            let hex = (b as char).to_digit(16).map(u64::from);
            self.state = match (self.state, b, hex) {
                (Chunk::Start | Chunk::Size, _, Some(v)) => {
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(v))
                        .ok_or(())?;
                    Chunk::Size
                }
                (Chunk::Size | Chunk::SizeLws, b'\t' | b' ', _) => Chunk::SizeLws,
                (Chunk::Size | Chunk::SizeLws, b';', _) => Chunk::Extension,
                (Chunk::Size | Chunk::SizeLws | Chunk::Extension, b'\r', _) => Chunk::SizeLf,
                (Chunk::Extension, b'\n', _) => return Err(()),
                (Chunk::Extension, _, _) => Chunk::Extension,
                (Chunk::SizeLf, b'\n', _) if self.size == 0 => Chunk::EndCr,
                (Chunk::SizeLf, b'\n', _) => Chunk::Data(self.size),
                (Chunk::DataCr, b'\r', _) => Chunk::DataLf,
                (Chunk::DataLf, b'\n', _) => {
                    self.size = 0;
                    Chunk::Start
                }
                (Chunk::EndCr, b'\r', _) => Chunk::EndLf,
                (Chunk::Trailer, b'\r', _) => Chunk::TrailerLf,
                (Chunk::EndCr | Chunk::Trailer, _, _) => Chunk::Trailer,
                (Chunk::TrailerLf, b'\n', _) => Chunk::EndCr,
                (Chunk::EndLf, b'\n', _) => {
                    self.state = Chunk::Done;
                    return Ok((i, true));
                }
                _ => return Err(()),
            };
        }
        Ok((i, self.state == Chunk::Done))
    }
}

#[cfg(test)]
mod tests;
