//! One HTTP/1.1 exchange with a plain-HTTP upstream, run by the request's own task.
//!
//! Through hyper's client a proxied request crosses tasks several times on its worker
//! thread: the request goes to the connection's task through a channel, the response
//! head comes back through another, and each body chunk is handed over on demand. For
//! the common request (GET or HEAD, no body, no upgrade) none of that is needed: the
//! request's task writes the head on a pooled connection and reads the response head,
//! and the response body reads the socket itself when the client side asks for it.
//! Anything else (uploads, upgrades) goes through hyper (see `pool`).
//!
//! Framing follows RFC 9112 §6.3 strictly, and a connection goes back to the pool only
//! when its response was framed without ambiguity and read to its last byte with
//! nothing after it: a mis-framed response on a shared connection would hand one
//! visitor's response to the next.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// hyper's limits for a response head, kept so moving a request from hyper's client to
/// this one changes nothing an upstream can observe.
const MAX_HEADERS: usize = 100;
const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// A chunk-size line with its extensions; longer ones are refused, not buffered.
const MAX_CHUNK_LINE: usize = 4096;
/// Chunk extensions over a whole body, as hyper's limit: nobody uses them, and a stream
/// of tiny chunks each with a long extension would otherwise cost a line's parsing per
/// byte of data for as long as the upstream cares to send.
const MAX_CHUNK_EXTENSIONS: u64 = 16 * 1024;
const READ_CHUNK: usize = 8192;
const COPY_BODY_UP_TO: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub(super) enum H1Error {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Closed or reset with not one byte of a response received (no 1xx either).
    #[error("the upstream closed the connection before its response{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    ClosedBeforeResponse(Option<io::Error>),
    #[error("invalid response head: {0}")]
    Parse(httparse::Error),
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("invalid response status {0}")]
    Status(u16),
    #[error("invalid response header: {0}")]
    Header(#[from] http::Error),
    #[error("101 Switching Protocols to a request that did not ask to upgrade")]
    UnaskedUpgrade,
    #[error("ambiguous response framing: {0}")]
    Framing(&'static str),
}

impl H1Error {
    /// Not one byte of a response arrived: on a reused connection the upstream most
    /// likely closed it while idle, and the request may be tried again on a new one.
    pub(super) fn before_response(&self) -> bool {
        matches!(self, H1Error::ClosedBeforeResponse(_))
    }
}

/// A reset or broken pipe, as a connection the upstream closed while idle shows.
fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

impl From<http::header::InvalidHeaderName> for H1Error {
    fn from(e: http::header::InvalidHeaderName) -> Self {
        H1Error::Header(e.into())
    }
}

impl From<http::header::InvalidHeaderValue> for H1Error {
    fn from(e: http::header::InvalidHeaderValue) -> Self {
        H1Error::Header(e.into())
    }
}

/// Whether a request can take the inline exchange: nothing to send after its head,
/// nothing to hand over after its response, and safe to send twice (a reused connection
/// the upstream closed while idle is only found out once the request was written).
pub(super) fn eligible<B: HttpBody>(req: &Request<B>) -> bool {
    let h = req.headers();
    (req.method() == Method::GET || req.method() == Method::HEAD)
        && req.body().is_end_stream()
        && !h.contains_key(header::UPGRADE)
        && !h.contains_key(header::CONTENT_LENGTH)
        && !h.contains_key(header::TRANSFER_ENCODING)
}

/// A connection to the upstream with its read buffer, which holds nothing between
/// exchanges.
pub(super) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    out: Vec<u8>,
}

impl Conn {
    pub(super) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            out: Vec::new(),
        }
    }

    /// The socket, for hyper's client to take over (an idle connection's buffer is
    /// empty).
    pub(super) fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// The connection after a finished response, when it may carry another request:
    /// the response allowed it and nothing came after its end.
    fn if_reusable(self, reusable: bool) -> Option<Conn> {
        (reusable && self.buf.is_empty()).then_some(self)
    }

    /// Lets go of buffers a large response or request head grew, so an idle connection
    /// holds at most a few KB.
    pub(super) fn shrink_idle(&mut self) {
        if self.buf.capacity() > 2 * READ_CHUNK {
            self.buf = BytesMut::new();
        }
        if self.out.capacity() > 2 * READ_CHUNK {
            self.out = Vec::new();
        }
    }

    /// Bytes the connection's buffers hold on to.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.buf.capacity() + self.out.capacity()
    }

    /// Whether the connection can carry a request: the upstream has neither closed it
    /// nor sent anything unasked. Costs no system call unless the socket was signalled.
    pub(super) fn is_usable(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Writes the request head and reads the response head; 1xx interim responses are
    /// skipped. The body is left to [`Exchange::into_parts`]. The request is only read
    /// before the returned future starts (its body need not be `Sync`).
    pub(super) fn exchange<B>(
        mut self,
        req: &Request<B>,
    ) -> impl std::future::Future<Output = Result<Exchange, H1Error>> + Send {
        self.out.clear();
        encode_head(req, &mut self.out);
        self.run(req.method() == Method::HEAD)
    }

    async fn run(mut self, head_request: bool) -> Result<Exchange, H1Error> {
        if let Err(e) = self.stream.write_all(&self.out).await {
            return Err(if is_reset(&e) {
                H1Error::ClosedBeforeResponse(Some(e))
            } else {
                H1Error::Io(e)
            });
        }
        // Once anything came back (part of a head, a 1xx) the upstream has the request:
        // a failure from then on is never retried.
        let mut received = false;
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = parse_head(&self.buf, head_request)? {
                    self.buf.advance(head.len);
                    if head.response.status().is_informational() {
                        continue;
                    }
                    return Ok(Exchange { conn: self, head });
                }
            }
            if self.buf.len() >= MAX_HEAD_BYTES {
                return Err(H1Error::HeadTooLarge);
            }
            // The limit is kept before buffering more, not found after a parse: a
            // read never takes the buffer past it, however much the upstream sent.
            let room = MAX_HEAD_BYTES - self.buf.len();
            self.buf.reserve(READ_CHUNK.min(room));
            let read = std::future::poll_fn(|cx| {
                let mut capped = (&mut self.buf).limit(room);
                tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut capped)
            })
            .await;
            match read {
                Ok(0) if !received => return Err(H1Error::ClosedBeforeResponse(None)),
                Ok(0) => {
                    return Err(H1Error::Framing(
                        "connection closed inside the response head",
                    ))
                }
                Ok(_) => received = true,
                Err(e) if !received && is_reset(&e) => {
                    return Err(H1Error::ClosedBeforeResponse(Some(e)))
                }
                Err(e) => return Err(H1Error::Io(e)),
            }
        }
    }
}

/// A response head read, with the connection it came on.
pub(super) struct Exchange {
    conn: Conn,
    head: Head,
}

/// Where a response body ends, or that it is finished: the connection can go back to
/// the pool (`Some`) or must be closed (`None`).
pub(super) enum Body {
    /// The whole body was already read.
    Complete(Bytes, Option<Conn>),
    /// The rest of the body is still to be read from the connection.
    Streaming(ResponseBody),
}

impl Exchange {
    pub(super) fn into_parts(self) -> (Response<()>, Body) {
        let Exchange { mut conn, head } = self;
        let reusable = head.reusable;
        let body = match head.framing {
            Framing::Length(n) if n <= conn.buf.len() as u64 => {
                let n = n as usize;
                // A small body is copied out: the read buffer then stays whole with the
                // connection instead of being shared with the body and allocated again
                // for the next response.
                let data = if n <= COPY_BODY_UP_TO {
                    let data = Bytes::copy_from_slice(&conn.buf[..n]);
                    conn.buf.advance(n);
                    data
                } else {
                    conn.buf.split_to(n).freeze()
                };
                Body::Complete(data, conn.if_reusable(reusable))
            }
            Framing::Length(n) => {
                Body::Streaming(ResponseBody::new(conn, Decoder::Length(n), reusable))
            }
            Framing::Chunked => Body::Streaming(ResponseBody::new(
                conn,
                Decoder::Chunked(Chunked::Size, 0),
                reusable,
            )),
            Framing::UntilClose => {
                Body::Streaming(ResponseBody::new(conn, Decoder::UntilClose, false))
            }
        };
        (head.response, body)
    }
}

/// The request line and headers, as hyper's client writes them (lowercase names).
fn encode_head<B>(req: &Request<B>, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Content-Length (0 for responses that have no body: HEAD, 1xx, 204, 304).
    Length(u64),
    Chunked,
    /// No length: the body ends when the upstream closes the connection.
    UntilClose,
}

#[derive(Debug)]
struct Head {
    /// Bytes of the head in the buffer.
    len: usize,
    response: Response<()>,
    framing: Framing,
    /// The connection may carry another request once this body was read.
    reusable: bool,
}

/// Parses a response head at the start of `buf`; `None` while it is incomplete.
fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, H1Error> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(H1Error::Parse(e)),
    };
    let code = parsed.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| H1Error::Status(code))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(H1Error::UnaskedUpgrade);
    }
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    // One copy of the head; every header value shares it.
    let copy = Bytes::copy_from_slice(&buf[..len]);
    let base = buf.as_ptr() as usize;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())?;
        let at = h.value.as_ptr() as usize - base;
        let value = HeaderValue::from_maybe_shared(copy.slice(at..at + h.value.len()))?;
        headers.append(name, value);
    }
    let (framing, reusable) = framing(status, version, &headers, head_request)?;
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    // Kept as hyper's client keeps it, so the client gets the upstream's own words.
    let reason = parsed.reason.unwrap_or_default();
    if Some(reason) != status.canonical_reason() {
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason.as_bytes()) {
            response.extensions_mut().insert(reason);
        }
    }
    Ok(Some(Head {
        len,
        response,
        framing,
        reusable,
    }))
}

/// How the body of a response is delimited (RFC 9112 §6.3), and whether its connection
/// can be reused. (The forwarder drops a Content-Length that Transfer-Encoding
/// overrides, whichever client read the response.)
fn framing(
    status: StatusCode,
    version: Version,
    headers: &HeaderMap,
    head_request: bool,
) -> Result<(Framing, bool), H1Error> {
    let keep_alive =
        version == Version::HTTP_11 && !has_token(headers, &header::CONNECTION, "close");
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Length(0), keep_alive));
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if version != Version::HTTP_11 {
            return Err(H1Error::Framing(
                "Transfer-Encoding in an HTTP/1.0 response",
            ));
        }
        // Every coding must be a plain token: hyper's client reads a list it cannot
        // make sense of (`\xffgzip, chunked`, `chunked,`) as ending at the close, so
        // reading it any other way would disagree with it; refusing it never does.
        let mut last = None;
        for coding in headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
        {
            if coding.is_empty() || !coding.iter().all(|b| is_tchar(*b)) {
                return Err(H1Error::Framing("invalid Transfer-Encoding"));
            }
            last = Some(coding);
        }
        let chunked = last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        // Both lengths given: the message was built by something confused; it is read
        // as chunked, as the RFC says, and its connection not trusted again.
        let both = headers.contains_key(header::CONTENT_LENGTH);
        return Ok(if chunked {
            (Framing::Chunked, keep_alive && !both)
        } else {
            (Framing::UntilClose, false)
        });
    }
    match content_length(headers)? {
        Some(n) => Ok((Framing::Length(n), keep_alive)),
        None => Ok((Framing::UntilClose, false)),
    }
}

/// The Content-Length, when given: every value (repeated headers, comma lists) must be
/// the same plain decimal number.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, H1Error> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|b| *b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(H1Error::Framing("invalid Content-Length"));
            }
            let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if length.is_some_and(|l| l != n) {
                return Err(H1Error::Framing("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// A character of an HTTP token (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// What remains of a body, decoded from the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoder {
    Length(u64),
    /// The state, and the chunk-extension bytes seen so far.
    Chunked(Chunked, u64),
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes to go.
    Data(u64),
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

#[derive(Debug)]
enum Step {
    Frame(Frame<Bytes>),
    /// More bytes are needed from the connection.
    More,
    End,
}

fn framing_error(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Decoder {
    /// Takes what it can from `buf`: the next frame, the end, or a request for more.
    fn step(&mut self, buf: &mut BytesMut) -> io::Result<Step> {
        loop {
            match *self {
                Decoder::Done => return Ok(Step::End),
                Decoder::Length(0) => {
                    *self = Decoder::Done;
                    return Ok(Step::End);
                }
                Decoder::Length(left) | Decoder::Chunked(Chunked::Data(left), _) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let take = left.min(buf.len() as u64);
                    let data = buf.split_to(take as usize).freeze();
                    let left = left - take;
                    *self = match *self {
                        Decoder::Length(_) if left == 0 => Decoder::Done,
                        Decoder::Length(_) => Decoder::Length(left),
                        Decoder::Chunked(_, ext) if left == 0 => {
                            Decoder::Chunked(Chunked::DataEnd, ext)
                        }
                        Decoder::Chunked(_, ext) => Decoder::Chunked(Chunked::Data(left), ext),
                        other => other,
                    };
                    return Ok(Step::Frame(Frame::data(data)));
                }
                Decoder::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Frame(Frame::data(buf.split().freeze())));
                }
                Decoder::Chunked(Chunked::Size, ext) => {
                    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(framing_error("chunk-size line too long"));
                        }
                        return Ok(Step::More);
                    };
                    if end > MAX_CHUNK_LINE {
                        return Err(framing_error("chunk-size line too long"));
                    }
                    let (size, extensions) = chunk_size(&buf[..end])?;
                    let ext = ext + extensions as u64;
                    if ext > MAX_CHUNK_EXTENSIONS {
                        return Err(framing_error("too many chunk extensions"));
                    }
                    buf.advance(end + 2);
                    let next = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                    *self = Decoder::Chunked(next, ext);
                }
                Decoder::Chunked(Chunked::DataEnd, ext) => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(framing_error("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Decoder::Chunked(Chunked::Size, ext);
                }
                Decoder::Chunked(Chunked::Trailers, _) => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *self = Decoder::Done;
                        return Ok(Step::End);
                    }
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let (len, fields) = match httparse::parse_headers(&buf[..], &mut slots) {
                        Ok(httparse::Status::Complete(done)) => done,
                        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                            return Err(framing_error("trailer section too large"))
                        }
                        Ok(httparse::Status::Partial) => return Ok(Step::More),
                        Err(_) => return Err(framing_error("invalid trailer section")),
                    };
                    // httparse takes a bare LF for a line end; hyper's client, like
                    // the chunk lines here, only CRLF.
                    let section = &buf[..len];
                    if (0..len).any(|i| section[i] == b'\n' && (i == 0 || section[i - 1] != b'\r'))
                    {
                        return Err(framing_error("trailer line not ended by CRLF"));
                    }
                    let mut trailers = HeaderMap::with_capacity(fields.len());
                    for f in fields {
                        let (Ok(name), Ok(value)) = (
                            HeaderName::from_bytes(f.name.as_bytes()),
                            HeaderValue::from_bytes(f.value),
                        ) else {
                            return Err(framing_error("invalid trailer field"));
                        };
                        if allowed_in_trailers(&name) {
                            trailers.append(name, value);
                        }
                    }
                    buf.advance(len);
                    *self = Decoder::Done;
                    return Ok(Step::Frame(Frame::trailers(trailers)));
                }
            }
        }
    }

    fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }
}

/// A chunk-size line: hex digits, optional whitespace, optional extensions (ignored).
/// The size, and how many bytes of the line the extensions took.
fn chunk_size(line: &[u8]) -> io::Result<(u64, usize)> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(framing_error("invalid chunk size"));
    }
    // Only spaces and tabs may follow the digits, then extensions; a bare CR or LF
    // anywhere is refused, since other parsers may take it for a line end.
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count()..];
    if !(rest.is_empty() || rest[0] == b';') || rest.iter().any(|b| *b == b'\r' || *b == b'\n') {
        return Err(framing_error("invalid chunk size"));
    }
    let mut size = 0u64;
    for d in &line[..digits] {
        let v = (*d as char).to_digit(16).unwrap_or_default();
        size = size << 4 | u64::from(v);
    }
    Ok((size, rest.len()))
}

/// Trailer fields that would change how the message is framed, routed or kept alive
/// are dropped (RFC 9110 §6.5.1); HTTP/2 refuses connection-specific ones outright.
fn allowed_in_trailers(name: &HeaderName) -> bool {
    !(super::headers::is_hop_by_hop(name) || name == header::CONTENT_LENGTH || name == header::HOST)
}

/// Where a finished body's connection goes.
pub(super) type GiveBack = Box<dyn FnOnce(Conn) + Send>;

/// The part of a response body still on the connection. The connection is handed to
/// `give_back` after the last byte when it can be reused, and closed otherwise,
/// including when the body is dropped before its end.
pub(super) struct ResponseBody {
    conn: Option<Conn>,
    decoder: Decoder,
    reusable: bool,
    give_back: Option<GiveBack>,
}

impl ResponseBody {
    fn new(conn: Conn, decoder: Decoder, reusable: bool) -> Self {
        Self {
            conn: Some(conn),
            decoder,
            reusable,
            give_back: None,
        }
    }

    pub(super) fn on_reusable(mut self, give_back: GiveBack) -> Self {
        self.give_back = Some(give_back);
        self
    }

    fn finish(&mut self) {
        let conn = self.conn.take().and_then(|c| c.if_reusable(self.reusable));
        if let (Some(conn), Some(give_back)) = (conn, self.give_back.take()) {
            give_back(conn);
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let step = this.decoder.step(&mut conn.buf);
            match step {
                Ok(Step::Frame(frame)) => {
                    if this.decoder == Decoder::Done {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Ok(Step::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(e) => {
                    this.conn = None;
                    this.decoder = Decoder::Done;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let want = match this.decoder {
                Decoder::Length(n) | Decoder::Chunked(Chunked::Data(n), _) => {
                    (n as usize).clamp(1, 64 * 1024)
                }
                _ => READ_CHUNK,
            };
            conn.buf.reserve(want);
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut conn.stream),
                cx,
                &mut conn.buf
            ));
            match read {
                Ok(0) if this.decoder == Decoder::UntilClose => {
                    this.conn = None;
                    this.decoder = Decoder::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    this.decoder = Decoder::Done;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upstream closed the connection before the end of the body",
                    ))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    this.decoder = Decoder::Done;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder == Decoder::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// A whole response as the inline exchange reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResponse {
    pub status: u16,
    pub version: Version,
    /// A reason phrase other than the status code's usual one.
    pub reason: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Option<Vec<(String, Vec<u8>)>>,
    /// The connection would carry another request.
    pub reusable: bool,
}

/// Reads `raw` as an upstream's whole answer to a GET (or HEAD) on a connection it
/// closes after the last byte, with the exchange's own head parser, framing and body
/// decoder: what the inline exchange would hand a client. For the differential fuzz
/// target against hyper's client (`fuzz/`).
pub fn read_response_bytes(raw: &[u8], head_request: bool) -> Result<ReadResponse, String> {
    let mut buf = BytesMut::from(raw);
    let head = loop {
        // The exchange never buffers more than the limit while it reads a head.
        let window = &buf[..buf.len().min(MAX_HEAD_BYTES)];
        match parse_head(window, head_request).map_err(|e| e.to_string())? {
            Some(head) if head.response.status().is_informational() => buf.advance(head.len),
            Some(head) => {
                buf.advance(head.len);
                break head;
            }
            None if window.len() >= MAX_HEAD_BYTES => return Err(H1Error::HeadTooLarge.to_string()),
            None => return Err("connection closed inside the response head".into()),
        }
    };
    let mut decoder = match head.framing {
        Framing::Length(n) => Decoder::Length(n),
        Framing::Chunked => Decoder::Chunked(Chunked::Size, 0),
        Framing::UntilClose => Decoder::UntilClose,
    };
    let (mut body, mut trailers) = (Vec::new(), None);
    loop {
        match decoder.step(&mut buf).map_err(|e| e.to_string())? {
            Step::Frame(frame) => match frame.into_data() {
                Ok(data) => body.extend_from_slice(&data),
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
            Step::End => break,
            // Nothing more will come: the upstream closed the connection.
            Step::More if decoder == Decoder::UntilClose => break,
            Step::More => {
                return Err("the upstream closed the connection before the end of the body".into())
            }
        }
    }
    let pairs = |h: &HeaderMap| {
        h.iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect::<Vec<_>>()
    };
    let response = &head.response;
    Ok(ReadResponse {
        status: response.status().as_u16(),
        version: response.version(),
        reason: response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| r.as_bytes().to_vec()),
        headers: pairs(response.headers()),
        body,
        trailers: trailers.as_ref().map(pairs),
        reusable: head.reusable && decoder != Decoder::UntilClose && buf.is_empty(),
    })
}

/// Whether the exchange keeps a trailer field (the fuzz target compares hyper's
/// trailers through it).
pub fn keeps_trailer(name: &HeaderName) -> bool {
    allowed_in_trailers(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    fn head(raw: &str, head_request: bool) -> Result<Head, H1Error> {
        Ok(parse_head(raw.as_bytes(), head_request)?.expect("a complete head"))
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        // (response head, HEAD request?, framing, reusable)
        let cases: &[(&str, bool, Framing, bool)] = &[
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                false,
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
                false,
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n",
                false,
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                false,
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n",
                false,
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n",
                false,
                Framing::Chunked,
                true,
            ),
            // Both lengths: chunked wins, and the connection is not trusted again.
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
                false,
                Framing::Chunked,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
                false,
                Framing::UntilClose,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", false, Framing::UntilClose, false),
            (
                "HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 2\r\n\r\n",
                false,
                Framing::Length(2),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n",
                false,
                Framing::Length(2),
                false,
            ),
            ("HTTP/1.0 200 OK\r\n\r\n", false, Framing::UntilClose, false),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n",
                true,
                Framing::Length(0),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                true,
                Framing::Length(0),
                true,
            ),
            (
                "HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n",
                false,
                Framing::Length(0),
                true,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n",
                false,
                Framing::Length(0),
                true,
            ),
            (
                "HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n",
                false,
                Framing::Length(0),
                true,
            ),
        ];
        for (raw, head_request, framing, reusable) in cases {
            let h = head(raw, *head_request).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!((h.framing, h.reusable), (*framing, *reusable), "{raw:?}");
            assert_eq!(h.len, raw.len(), "{raw:?}");
        }
    }

    #[test]
    fn ambiguous_or_invalid_heads_are_refused() {
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0x5\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            "HTTP/1.1 200 OK\r\nx-folded: a\r\n b\r\n\r\n",
            "HTTP/1.1 200 OK\r\nx-space : a\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
        ] {
            assert!(
                parse_head(raw.as_bytes(), false).is_err(),
                "{raw:?} accepted"
            );
        }
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le", false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn headers_keep_their_order_and_repeats() {
        let h = head(
            "HTTP/1.1 302 Found\r\nSet-Cookie: a=1\r\nLocation: /x\r\nset-cookie: b=2\r\ncontent-length: 0\r\n\r\n",
            false,
        )
        .unwrap();
        let r = &h.response;
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(r.version(), Version::HTTP_11);
        let cookies: Vec<_> = r.headers().get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(r.headers()[header::LOCATION], "/x");
    }

    /// Decodes `wire` fed to the decoder in pieces of `piece` bytes: the data, the
    /// trailers, and the bytes left after the body.
    fn decode_in_pieces(
        mut decoder: Decoder,
        wire: &[u8],
        piece: usize,
    ) -> io::Result<(Vec<u8>, Option<HeaderMap>, Vec<u8>)> {
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let (mut data, mut trailers) = (Vec::new(), None);
        loop {
            match decoder.step(&mut buf)? {
                Step::Frame(f) => match f.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(f) => trailers = f.into_trailers().ok(),
                },
                Step::End => {
                    let mut rest = buf.to_vec();
                    rest.extend_from_slice(&wire[fed..]);
                    return Ok((data, trailers, rest));
                }
                Step::More if fed == wire.len() => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "more wanted"))
                }
                Step::More => {
                    let n = piece.min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_the_same_however_they_arrive() {
        let wire = b"5;name=\"v\"\r\nhello\r\n6 \r\n world\r\nA\t\r\n, 10 bytes\r\n0\r\nx-sum: 42\r\ncontent-length: 1\r\n\r\nNEXT";
        for piece in 1..=wire.len() {
            let (data, trailers, rest) =
                decode_in_pieces(Decoder::Chunked(Chunked::Size, 0), wire, piece).unwrap();
            assert_eq!(data, b"hello world, 10 bytes", "pieces of {piece}");
            let trailers = trailers.expect("trailers");
            assert_eq!(trailers["x-sum"], "42");
            assert!(
                !trailers.contains_key(header::CONTENT_LENGTH),
                "framing fields are dropped from trailers"
            );
            assert_eq!(rest, b"NEXT", "bytes after the body stay in the buffer");
        }
        let (data, trailers, rest) =
            decode_in_pieces(Decoder::Chunked(Chunked::Size, 0), b"0\r\n\r\n", 1).unwrap();
        assert!(data.is_empty() && trailers.is_none() && rest.is_empty());
        let (data, _, rest) = decode_in_pieces(Decoder::Length(5), b"helloNEXT", 2).unwrap();
        assert_eq!(
            (data.as_slice(), rest.as_slice()),
            (&b"hello"[..], &b"NEXT"[..])
        );
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for wire in [
            &b"zz\r\n"[..],
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\n\r\nhello\r\n0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"10000000000000000\r\n",
            b"\r\n",
            b"0\r\nbad trailer\r\n\r\n",
        ] {
            let got = decode_in_pieces(Decoder::Chunked(Chunked::Size, 0), wire, 3);
            assert!(
                got.as_ref()
                    .is_err_and(|e| e.kind() == io::ErrorKind::InvalidData),
                "{:?}: {got:?}",
                String::from_utf8_lossy(wire)
            );
        }
        // Extensions are ignored up to 16 KB over the whole body, as hyper's client
        // allows; each line here is under the line limit, the sum is not.
        let ext = format!(";{}", "e".repeat(3999));
        let chunks = |n: usize| {
            let mut wire = format!("1{ext}\r\na\r\n").repeat(n);
            wire.push_str("0\r\n\r\n");
            wire.into_bytes()
        };
        let (data, _, _) = decode_in_pieces(Decoder::Chunked(Chunked::Size, 0), &chunks(4), 512)
            .expect("16,000 bytes of extensions are accepted");
        assert_eq!(data, b"aaaa");
        let got = decode_in_pieces(Decoder::Chunked(Chunked::Size, 0), &chunks(5), 512);
        assert!(
            got.as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::InvalidData),
            "20,000 bytes of extensions are refused: {got:?}"
        );

        let endless = vec![b'1'; MAX_CHUNK_LINE + 10];
        let got = decode_in_pieces(Decoder::Chunked(Chunked::Size, 0), &endless, 100);
        assert!(
            got.as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::InvalidData),
            "a chunk-size line longer than the limit is refused, not buffered: {got:?}"
        );
    }

    #[test]
    fn request_heads_are_written_in_origin_form_with_lowercase_names() {
        let req = Request::builder()
            .method(Method::HEAD)
            .uri("/a/b?c=d")
            .header("host", "app")
            .header("x-forwarded-for", "10.0.0.1")
            .header("accept", "text/html")
            .header("accept", "*/*")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        encode_head(&req, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HEAD /a/b?c=d HTTP/1.1\r\nhost: app\r\nx-forwarded-for: 10.0.0.1\r\n\
             accept: text/html\r\naccept: */*\r\n\r\n"
        );
    }

    #[test]
    fn only_bodiless_get_and_head_take_the_inline_exchange() {
        let req = |method: Method, header: Option<(&str, &str)>, body: &'static str| {
            let mut b = Request::builder().method(method).uri("/");
            if let Some((k, v)) = header {
                b = b.header(k, v);
            }
            b.body(http_body_util::Full::new(Bytes::from(body)))
                .unwrap()
        };
        assert!(eligible(&req(Method::GET, None, "")));
        assert!(eligible(&req(Method::HEAD, Some(("te", "trailers")), "")));
        assert!(!eligible(&req(Method::GET, None, "x")), "a GET with a body");
        assert!(!eligible(&req(Method::POST, None, "")));
        assert!(!eligible(&req(Method::DELETE, None, "")));
        assert!(!eligible(&req(
            Method::GET,
            Some(("upgrade", "websocket")),
            ""
        )));
        assert!(!eligible(&req(
            Method::GET,
            Some(("content-length", "0")),
            ""
        )));
    }

    /// What a client makes of a raw response.
    #[derive(Debug, PartialEq)]
    struct Seen {
        status: u16,
        version: Version,
        /// A reason phrase other than the status code's usual one.
        reason: Option<Vec<u8>>,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        trailers: Option<Vec<(String, String)>>,
    }

    fn reason_of<T>(r: &Response<T>) -> Option<Vec<u8>> {
        r.extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| r.as_bytes().to_vec())
    }

    fn pairs(h: &HeaderMap) -> Vec<(String, String)> {
        h.iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect()
    }

    /// Serves `raw` (in pieces, to exercise partial reads) to the first request on one
    /// connection, then closes it.
    async fn serve_once(raw: &'static [u8]) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    for piece in raw.chunks(7) {
                        if s.write_all(piece).await.is_err() {
                            return;
                        }
                        tokio::task::yield_now().await;
                    }
                });
            }
        });
        addr
    }

    fn get(method: Method) -> Request<http_body_util::Empty<Bytes>> {
        Request::builder()
            .method(method)
            .uri("/x")
            .header("host", "up")
            .body(http_body_util::Empty::new())
            .unwrap()
    }

    /// What the inline exchange reads, and whether it would reuse the connection.
    async fn via_inline(
        addr: std::net::SocketAddr,
        method: Method,
    ) -> Result<(Seen, bool), String> {
        let stream = TcpStream::connect(addr).await.unwrap();
        let exchange = Conn::new(stream)
            .exchange(&get(method))
            .await
            .map_err(|e| e.to_string())?;
        let (resp, body) = exchange.into_parts();
        let given_back = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (collected, reusable) = match body {
            Body::Complete(data, conn) => {
                let full = http_body_util::Full::new(data).collect().await;
                (full.unwrap_or_else(|never| match never {}), conn.is_some())
            }
            Body::Streaming(body) => {
                let flag = given_back.clone();
                let body = body.on_reusable(Box::new(move |_| {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst)
                }));
                let collected = body.collect().await.map_err(|e| e.to_string())?;
                (
                    collected,
                    given_back.load(std::sync::atomic::Ordering::SeqCst),
                )
            }
        };
        let seen = Seen {
            status: resp.status().as_u16(),
            version: resp.version(),
            reason: reason_of(&resp),
            headers: pairs(resp.headers()),
            trailers: collected.trailers().map(pairs),
            body: collected.to_bytes().to_vec(),
        };
        Ok((seen, reusable))
    }

    async fn via_hyper(addr: std::net::SocketAddr, method: Method) -> Result<Seen, String> {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let resp = sender
            .send_request(get(method))
            .await
            .map_err(|e| e.to_string())?;
        let reason = reason_of(&resp);
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.map_err(|e| e.to_string())?;
        Ok(Seen {
            status: parts.status.as_u16(),
            version: parts.version,
            reason,
            headers: pairs(&parts.headers),
            trailers: collected.trailers().map(pairs),
            body: collected.to_bytes().to_vec(),
        })
    }

    #[tokio::test]
    async fn responses_read_inline_match_what_hyper_reads() {
        let big: &'static [u8] = {
            let mut r = b"HTTP/1.1 200 OK\r\ncontent-length: 70000\r\n\r\n".to_vec();
            r.extend(std::iter::repeat_n(b'x', 70_000));
            r.leak()
        };
        // (response, request method, connection reusable after it)
        let cases: &[(&'static [u8], Method, bool)] = &[
            (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello", Method::GET, true),
            (big, Method::GET, true),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 7\r\n\r\n", Method::GET, true),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", Method::GET, true),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Method::GET, false),
            (b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end", Method::GET, false),
            (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", Method::GET, false),
            (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok", Method::GET, false),
            (b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", Method::GET, true),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", Method::GET, true),
            (b"HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\ncontent-length: 10\r\n\r\n", Method::GET, true),
            (b"HTTP/1.1 204 No Content\r\n\r\n", Method::GET, true),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", Method::HEAD, true),
            (b"HTTP/1.1 500 Oops\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 3\r\n\r\nbad", Method::GET, true),
            (b"HTTP/1.1 200 \r\ncontent-length: 0\r\n\r\n", Method::GET, true),
        ];
        for (raw, method, reusable) in cases {
            let label = String::from_utf8_lossy(&raw[..raw.len().min(80)]).into_owned();
            let addr = serve_once(raw).await;
            let (ours, reused) = via_inline(addr, method.clone())
                .await
                .unwrap_or_else(|e| panic!("{label:?}: {e}"));
            let hypers = via_hyper(addr, method.clone()).await;
            assert_eq!(Ok(&ours), hypers.as_ref(), "{label:?}");
            assert_eq!(reused, *reusable, "{label:?}: connection reuse");
        }
    }

    #[tokio::test]
    async fn an_idle_connection_is_unusable_once_the_upstream_closed_it_or_spoke_unasked() {
        for unasked in [&b""[..], b"HTTP/1.1 408 Request Timeout\r\n\r\n"] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (go, gone) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let _ = gone.await;
                let _ = s.write_all(unasked).await;
                if !unasked.is_empty() {
                    // Stays open: only the unasked bytes make it unusable.
                    std::future::pending::<()>().await;
                }
            });
            let conn = Conn::new(TcpStream::connect(addr).await.unwrap());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            assert!(conn.is_usable(), "an open, silent connection is usable");
            go.send(()).unwrap();
            let mut usable = true;
            for _ in 0..200 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                usable = conn.is_usable();
                if !usable {
                    break;
                }
            }
            assert!(
                !usable,
                "after {:?} the connection is unusable",
                String::from_utf8_lossy(unasked)
            );
        }
    }

    #[test]
    fn responses_hypers_client_reads_otherwise_are_refused_inline() {
        // hyper's client reads the first two to the close (it cannot make sense of
        // the coding list) and refuses the third (a trailer line ended by a bare LF):
        // the inline exchange refuses all three rather than read them its own way.
        for raw in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: \xd3gzip, chunked\r\n\r\n0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked,\r\n\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-sum: 7\r\n\n",
        ] {
            let got = read_response_bytes(raw, false);
            assert!(got.is_err(), "{:?}: {got:?}", String::from_utf8_lossy(raw));
        }
        let ok = read_response_bytes(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip , chunked\r\n\r\n2\r\nok\r\n0\r\nx: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((ok.body.as_slice(), ok.reusable), (&b"ok"[..], true));
    }

    #[tokio::test]
    async fn broken_responses_fail_inline_as_they_fail_in_hyper() {
        // Each chunk line is within the limits; their extensions together are not.
        let many_extensions: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{}0\r\n\r\n",
                format!("1;{}\r\na\r\n", "e".repeat(3999)).repeat(5)
            )
            .into_boxed_str(),
        );
        for raw in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\ncontent-le",
            many_extensions.as_bytes(),
            b"nonsense\r\n\r\n",
            b"",
        ] {
            let addr = serve_once(raw).await;
            let label = String::from_utf8_lossy(raw);
            assert!(
                via_inline(addr, Method::GET).await.is_err(),
                "{label:?} read inline"
            );
            assert!(
                via_hyper(addr, Method::GET).await.is_err(),
                "{label:?} read by hyper"
            );
        }
    }
}
