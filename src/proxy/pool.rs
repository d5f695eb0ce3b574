//! Keep-alive HTTP/1.1 connections to a plain-HTTP upstream: the hot path of every
//! proxied request.
//!
//! hyper-util's general-purpose client pays, per request, for a keyed pool behind a
//! lock, a race between checkout and a lazy connect, a boxed future and a spawned task
//! that waits for the connection to be idle again. For one plain-HTTP upstream none of
//! that is needed: each worker thread keeps a stack of idle connections, takes the most
//! recently used one, and puts it back when the response body has been read to its end.
//! Requests without a body take the inline exchange of `h1`; the others (uploads,
//! upgrades) hyper's HTTP/1.1 client connection. HTTPS upstreams (TLS, ALPN, maybe h2)
//! stay on hyper-util's client.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::h1;
use super::idle::{IdleTimeout, Side};
use crate::body::Body;

#[derive(Debug, thiserror::Error)]
pub(super) enum PoolError {
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("HTTP/1.1 handshake: {0}")]
    Handshake(hyper::Error),
    /// The exchange failed after a connection was obtained; the cause may be the
    /// client's body (see `classify`).
    #[error("{0}")]
    Send(hyper::Error),
    #[error("{0}")]
    Exchange(h1::H1Error),
}

/// How long the pool waits for what.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// For a new connection.
    pub connect: Duration,
    /// An idle connection is closed after this long.
    pub idle: Duration,
    /// A response body silent this long fails (`upstream.body_timeout`).
    pub body: Duration,
}

pub(super) struct Pool {
    /// `host:port`, resolved again for every new connection so DNS changes are followed.
    target: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    body_timeout: Duration,
    /// Idle connections per worker thread, then for callers outside the workers. A
    /// connection's I/O is registered with the thread that opened it, so each worker
    /// only ever takes its own.
    idle: Box<[Mutex<Slot>]>,
    /// Whether the slot's reaper task was started.
    reaping: Box<[AtomicBool]>,
    this: Weak<Pool>,
}

#[derive(Default)]
struct Slot {
    /// Connections driven by hyper's client (their task lives on).
    hyper: Vec<Idle<SendRequest<Body>>>,
    /// Bare connections for the inline exchange; hyper's client takes them too.
    bare: Vec<Idle<h1::Conn>>,
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

impl Pool {
    pub(super) fn new(target: String, timeouts: Timeouts, workers: usize) -> Arc<Self> {
        Arc::new_cyclic(|this| Pool {
            target,
            connect_timeout: timeouts.connect,
            idle_timeout: timeouts.idle,
            body_timeout: timeouts.body,
            idle: (0..=workers).map(|_| Mutex::default()).collect(),
            reaping: (0..=workers).map(|_| AtomicBool::new(false)).collect(),
            this: this.clone(),
        })
    }

    fn slot(&self) -> usize {
        let shared = self.idle.len() - 1;
        crate::workers::current()
            .filter(|w| *w < shared)
            .unwrap_or(shared)
    }

    /// Sends `req` (origin-form URI, `Host` set) on an idle connection, or a new one.
    /// Through hyper's connection, a reused connection the upstream closed before our
    /// request went out is discarded and the request tried on the next one, as clients
    /// do for idempotent and non-idempotent requests alike (nothing was sent); for the
    /// inline exchange see [`Pool::send_inline`].
    pub(super) async fn send(&self, req: Request<Body>) -> Result<Response<Body>, PoolError> {
        let slot = self.slot();
        if h1::eligible(&req) && self.prefers_inline(slot) {
            return self.send_inline(req, slot).await;
        }
        let mut req = req;
        loop {
            let (mut sender, reused) = match self.checkout(slot) {
                Some(s) => (s, true),
                None => self.handshake(slot).await?,
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    return Ok(resp.map(|body| {
                        let body = PooledBody {
                            body,
                            ended: false,
                            pool: self.this.clone(),
                            slot,
                            sender: Some(sender),
                        };
                        IdleTimeout::new(body, Side::Upstream, self.body_timeout).boxed_unsync()
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(PoolError::Send(e.into_error())),
                },
            }
        }
    }

    /// A GET or HEAD without a body, exchanged by this task (see `h1`). A reused
    /// connection that fails before one byte of a response arrived was most likely
    /// closed by the upstream while idle: the request, safe to repeat (RFC 9110
    /// §9.2.2), is sent once more, on a new connection, as nginx does for its cached
    /// upstream connections. Once anything of a response arrived it is never repeated.
    async fn send_inline(
        &self,
        req: Request<Body>,
        slot: usize,
    ) -> Result<Response<Body>, PoolError> {
        let mut retried = false;
        loop {
            let idle = if retried {
                None
            } else {
                self.checkout_bare(slot)
            };
            let (conn, reused) = match idle {
                Some(c) => (c, true),
                None => (h1::Conn::new(self.open().await?), false),
            };
            let exchange = match conn.exchange(&req).await {
                Ok(exchange) => exchange,
                Err(e) if reused && e.before_response() => {
                    retried = true;
                    continue;
                }
                Err(e) => return Err(PoolError::Exchange(e)),
            };
            let (head, body) = exchange.into_parts();
            let body = match body {
                h1::Body::Complete(data, conn) => {
                    if let Some(conn) = conn {
                        self.checkin_bare(slot, conn);
                    }
                    crate::body::full(data)
                }
                h1::Body::Streaming(body) => {
                    let pool = self.this.clone();
                    let body = body.on_reusable(Box::new(move |conn| {
                        if let Some(pool) = pool.upgrade() {
                            pool.checkin_bare(slot, conn);
                        }
                    }));
                    IdleTimeout::new(body, Side::Upstream, self.body_timeout).boxed_unsync()
                }
            };
            return Ok(head.map(|()| body));
        }
    }

    /// The most recently used idle connection that can take a request now.
    fn checkout(&self, slot: usize) -> Option<SendRequest<Body>> {
        let now = Instant::now();
        let mut idle = self.lock(slot);
        while let Some(c) = idle.hyper.pop() {
            // Not ready yet means the connection is still busy with the previous
            // exchange (e.g. the upstream answered before reading the whole upload):
            // it is dropped, and closes once that exchange ends.
            if c.conn.is_ready() && now.duration_since(c.since) < self.idle_timeout {
                return Some(c.conn);
            }
        }
        None
    }

    /// An inline exchange needs a bare connection; when only hyper's are idle (an
    /// upload went before), one of those serves rather than a new connection opened.
    fn prefers_inline(&self, slot: usize) -> bool {
        let idle = self.lock(slot);
        !idle.bare.is_empty() || idle.hyper.is_empty()
    }

    /// The most recently used bare connection the upstream has not closed.
    fn checkout_bare(&self, slot: usize) -> Option<h1::Conn> {
        let now = Instant::now();
        let mut idle = self.lock(slot);
        while let Some(c) = idle.bare.pop() {
            if now.duration_since(c.since) < self.idle_timeout && c.conn.is_usable() {
                return Some(c.conn);
            }
        }
        None
    }

    fn lock(&self, slot: usize) -> std::sync::MutexGuard<'_, Slot> {
        self.idle[slot]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn checkin(&self, slot: usize, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        self.lock(slot).hyper.push(Idle {
            conn: sender,
            since: Instant::now(),
        });
        self.reap(slot);
    }

    fn checkin_bare(&self, slot: usize, mut conn: h1::Conn) {
        conn.shrink_idle();
        self.lock(slot).bare.push(Idle {
            conn,
            since: Instant::now(),
        });
        self.reap(slot);
    }

    fn reap(&self, slot: usize) {
        if !self.reaping[slot].swap(true, Ordering::Relaxed) {
            self.start_reaper(slot);
        }
    }

    /// Closes connections idle longer than `idle_timeout`, even when no request comes
    /// to find them. Runs on the slot's thread until the pool is dropped (reload).
    fn start_reaper(&self, slot: usize) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = self.this.clone();
        let every = (self.idle_timeout / 2).max(Duration::from_millis(100));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(pool) = pool.upgrade() else { return };
                pool.prune(slot, Instant::now());
            }
        });
    }

    fn prune(&self, slot: usize, now: Instant) {
        let fresh = |since: Instant| now.duration_since(since) < self.idle_timeout;
        let mut idle = self.lock(slot);
        idle.hyper.retain(|c| !c.conn.is_closed() && fresh(c.since));
        idle.bare.retain(|c| fresh(c.since) && c.conn.is_usable());
    }

    async fn open(&self) -> Result<TcpStream, PoolError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&*self.target))
            .await
            .map_err(|_| PoolError::ConnectTimeout(self.connect_timeout))?
            .map_err(PoolError::Connect)?;
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        Ok(stream)
    }

    /// A hyper client connection on an idle bare connection, or a new one; and whether
    /// the connection was reused.
    async fn handshake(&self, slot: usize) -> Result<(SendRequest<Body>, bool), PoolError> {
        let (stream, reused) = match self.checkout_bare(slot) {
            Some(conn) => (conn.into_stream(), true),
            None => (self.open().await?, false),
        };
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(PoolError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok((sender, reused))
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        (0..self.idle.len())
            .map(|slot| {
                let idle = self.lock(slot);
                idle.hyper.len() + idle.bare.len()
            })
            .sum()
    }
}

/// The upstream's response body. It gives its connection back when dropped after the
/// last byte was read; a body dropped before its end (the client went away) takes its
/// connection with it, since the rest of the response is still on the wire.
struct PooledBody {
    body: Incoming,
    /// The chunked body's terminating chunk (or trailers) was read.
    ended: bool,
    pool: Weak<Pool>,
    slot: usize,
    sender: Option<SendRequest<Body>>,
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // With a length (or none at all) hyper's body counts down to its end; a chunked
        // one ends when its last frame was polled.
        if !self.is_end_stream() {
            return;
        }
        if let (Some(pool), Some(sender)) = (self.pool.upgrade(), self.sender.take()) {
            pool.checkin(self.slot, sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An upstream that counts the connections it accepted and the ones that were
    /// closed, answering `/big` with 1 MiB, `/chunked` with a chunked body and anything
    /// else with "ok".
    struct Upstream {
        addr: std::net::SocketAddr,
        accepted: Arc<AtomicUsize>,
        closed: Arc<AtomicUsize>,
    }

    async fn upstream() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (a, c) = (accepted.clone(), closed.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        let body: Body = match req.uri().path() {
                            "/big" => crate::body::full(vec![0u8; 1 << 20]),
                            "/chunked" => {
                                let frames = futures_util::stream::iter(
                                    ["one ", "two"].map(|s| Ok(Frame::data(Bytes::from(s)))),
                                );
                                http_body_util::StreamBody::new(frames).boxed_unsync()
                            }
                            _ => crate::body::full("ok"),
                        };
                        Ok::<_, std::convert::Infallible>(Response::new(body))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Upstream {
            addr,
            accepted,
            closed,
        }
    }

    fn timeouts(idle: Duration) -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            idle,
            body: Duration::from_secs(60),
        }
    }

    fn pool_for(addr: std::net::SocketAddr, idle_timeout: Duration) -> Arc<Pool> {
        Pool::new(addr.to_string(), timeouts(idle_timeout), 0)
    }

    fn get(path: &str) -> Request<Body> {
        Request::builder()
            .uri(path)
            .header("host", "upstream")
            .body(crate::body::empty())
            .unwrap()
    }

    async fn fetch(pool: &Pool, path: &str) -> Bytes {
        let resp = pool.send(get(path)).await.unwrap();
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    async fn eventually(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..200 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection() {
        let up = upstream().await;
        let pool = pool_for(up.addr, Duration::from_secs(60));
        for path in ["/a", "/chunked", "/big", "/b"] {
            assert!(!fetch(&pool, path).await.is_empty());
        }
        assert_eq!(fetch(&pool, "/chunked").await, "one two");
        assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_open_a_connection_each_and_keep_them_all() {
        let up = upstream().await;
        let pool = pool_for(up.addr, Duration::from_secs(60));
        let started: Vec<_> = (0..4).map(|_| fetch(&pool, "/")).collect();
        for answer in futures_util::future::join_all(started).await {
            assert_eq!(answer, "ok");
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 4);
        assert_eq!(pool.idle_count(), 4);
        for _ in 0..8 {
            fetch(&pool, "/").await;
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_response_abandoned_before_its_end_takes_its_connection_with_it() {
        let up = upstream().await;
        let pool = pool_for(up.addr, Duration::from_secs(60));
        let mut body = pool.send(get("/big")).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.is_data());
        drop(body);
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(fetch(&pool, "/").await, "ok");
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
        eventually("the abandoned connection is closed", || {
            up.closed.load(Ordering::SeqCst) == 1
        })
        .await;
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let up = upstream().await;
        let pool = pool_for(up.addr, Duration::from_millis(200));
        fetch(&pool, "/").await;
        assert_eq!(pool.idle_count(), 1);
        eventually("the reaper closes the idle connection", || {
            up.closed.load(Ordering::SeqCst) == 1
        })
        .await;
        assert_eq!(pool.idle_count(), 0);
        // The next request opens a new connection instead of failing.
        assert_eq!(fetch(&pool, "/").await, "ok");
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_upstream_closing_idle_connections_costs_no_request() {
        // Like an upstream with a short keep-alive timeout: it answers, keeps the
        // connection open as HTTP/1.1 allows, then closes it without notice.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
                drop(s);
            }
        });
        let pool = pool_for(addr, Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(fetch(&pool, "/").await, "ok");
            // Let the connection's task see the close.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    /// What a scripted upstream does with a request.
    #[derive(Clone, Copy)]
    enum Act {
        Reply(&'static [u8]),
        /// Writes these bytes (maybe none), then closes the connection.
        CloseAfter(&'static [u8]),
        /// Writes these bytes (maybe none), then resets the connection.
        ResetAfter(&'static [u8]),
        /// Never answers, keeps the connection open.
        Hang,
    }

    /// An upstream speaking raw HTTP/1.1: `act(n)` is what it does with the n-th
    /// request (from 0) on a connection. Counts the connections it accepted and the
    /// requests it read.
    struct Scripted {
        addr: std::net::SocketAddr,
        accepted: Arc<AtomicUsize>,
        requests: Arc<AtomicUsize>,
    }

    async fn scripted(act: fn(usize) -> Act) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (a, r) = (accepted.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 4096];
                    for n in 0.. {
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => got.extend_from_slice(&buf[..k]),
                            }
                        }
                        let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                        got.drain(..end + 4);
                        r.fetch_add(1, Ordering::SeqCst);
                        let (bytes, then) = match act(n) {
                            Act::Reply(b) => (b, None),
                            Act::CloseAfter(b) => (b, Some(false)),
                            Act::ResetAfter(b) => (b, Some(true)),
                            Act::Hang => {
                                std::future::pending::<()>().await;
                                return;
                            }
                        };
                        if s.write_all(bytes).await.is_err() {
                            return;
                        }
                        match then {
                            None => {}
                            Some(false) => return,
                            Some(true) => {
                                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                                return;
                            }
                        }
                    }
                });
            }
        });
        Scripted {
            addr,
            accepted,
            requests,
        }
    }

    impl Scripted {
        fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }
        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    #[tokio::test]
    async fn an_upload_after_a_get_goes_on_the_same_connection() {
        let up = scripted(|_| Act::Reply(OK)).await;
        let pool = pool_for(up.addr, Duration::from_secs(60));
        assert_eq!(fetch(&pool, "/").await, "ok");
        let post = Request::post("/form")
            .header("host", "upstream")
            .body(crate::body::full("a=1"))
            .unwrap();
        let resp = pool.send(post).await.unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
        assert_eq!(fetch(&pool, "/").await, "ok");
        assert_eq!(up.accepted(), 1, "one connection for the three");
    }

    #[tokio::test]
    async fn a_head_response_has_no_body_and_its_connection_serves_the_next_get() {
        let up = scripted(|n| {
            Act::Reply(match n {
                0 => b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n",
                _ => OK,
            })
        })
        .await;
        let pool = pool_for(up.addr, Duration::from_secs(60));
        let head = Request::head("/")
            .header("host", "upstream")
            .body(crate::body::empty())
            .unwrap();
        let resp = pool.send(head).await.unwrap();
        assert_eq!(resp.headers()["content-length"], "10");
        assert!(resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty());
        assert_eq!(fetch(&pool, "/").await, "ok");
        assert_eq!(up.accepted(), 1);
    }

    #[tokio::test]
    async fn a_get_on_a_connection_the_upstream_dropped_is_sent_again_on_a_new_one() {
        // The upstream closes each connection when its second request arrives, as one
        // whose keep-alive timeout ran out at that moment would: with a FIN, or a reset.
        for act in [
            (|n| {
                if n == 0 {
                    Act::Reply(OK)
                } else {
                    Act::CloseAfter(b"")
                }
            }) as fn(usize) -> Act,
            |n| {
                if n == 0 {
                    Act::Reply(OK)
                } else {
                    Act::ResetAfter(b"")
                }
            },
        ] {
            let up = scripted(act).await;
            let pool = pool_for(up.addr, Duration::from_secs(60));
            for _ in 0..3 {
                assert_eq!(fetch(&pool, "/").await, "ok");
            }
            assert_eq!(up.accepted(), 3);
            assert_eq!(up.requests(), 5, "the two dropped requests were sent again");
        }
    }

    #[tokio::test]
    async fn a_get_is_never_sent_again_once_anything_of_its_response_arrived() {
        // Part of a head then a reset; a 103 then a close: the upstream had the request,
        // and repeating it could repeat what it did.
        for act in [
            (|n| match n {
                0 => Act::Reply(OK),
                _ => Act::ResetAfter(b"HTTP/1.1 200 OK\r\nx-partial: 1\r\n"),
            }) as fn(usize) -> Act,
            |n| match n {
                0 => Act::Reply(OK),
                _ => Act::CloseAfter(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n"),
            },
        ] {
            let up = scripted(act).await;
            let pool = pool_for(up.addr, Duration::from_secs(60));
            assert_eq!(fetch(&pool, "/").await, "ok");
            let e = pool.send(get("/")).await.unwrap_err();
            assert!(
                !matches!(e, PoolError::Exchange(ref h) if h.before_response()),
                "{e}"
            );
            assert_eq!(
                up.requests(),
                2,
                "the failed request went to the upstream once"
            );
            assert_eq!(up.accepted(), 1);
        }
    }

    #[tokio::test]
    async fn a_failed_retry_is_not_retried_again() {
        // Every second request on a connection is dropped unanswered, and so is the
        // first on a new one: after one retry on a new connection the request fails.
        let up = scripted(|n| {
            if n == 0 {
                Act::Reply(OK)
            } else {
                Act::CloseAfter(b"")
            }
        })
        .await;
        let pool = pool_for(up.addr, Duration::from_secs(60));
        assert_eq!(fetch(&pool, "/").await, "ok");
        let up2 = scripted(|_| Act::CloseAfter(b"")).await;
        // The same pool, now pointing at an upstream that drops every request: the
        // idle connection to the first one is tried, then one new connection.
        let pool2 = Pool::new(up2.addr.to_string(), timeouts(Duration::from_secs(60)), 0);
        let idle = pool.checkout_bare(pool.slot()).expect("an idle connection");
        pool2.checkin_bare(pool2.slot(), idle);
        let e = pool2.send(get("/")).await.unwrap_err();
        assert!(
            matches!(e, PoolError::Exchange(ref h) if h.before_response()),
            "{e}"
        );
        assert_eq!(up.requests(), 2, "the reused connection carried it once");
        assert_eq!(
            (up2.accepted(), up2.requests()),
            (1, 1),
            "one new connection, once"
        );
    }

    #[tokio::test]
    async fn an_idle_connection_does_not_keep_the_buffers_large_heads_grew() {
        let up = scripted(|_| {
            static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
            Act::Reply(BIG.get_or_init(|| {
                let mut r = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
                r.extend(std::iter::repeat_n(b'a', 100_000));
                r.extend_from_slice(b"\r\ncontent-length: 2\r\n\r\nok");
                r
            }))
        })
        .await;
        let pool = pool_for(up.addr, Duration::from_secs(60));
        let req = Request::get("/")
            .header("host", "upstream")
            .header("x-cookies", "b".repeat(100_000))
            .body(crate::body::empty())
            .unwrap();
        let resp = pool.send(req).await.unwrap();
        assert_eq!(resp.headers()["x-big"].len(), 100_000);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
        let idle = pool
            .checkout_bare(pool.slot())
            .expect("the connection is idle");
        assert!(
            idle.held() <= 32 * 1024,
            "{} bytes held while idle",
            idle.held()
        );
    }

    #[tokio::test]
    async fn an_upstream_that_closes_new_connections_without_answering_is_an_error() {
        let up = scripted(|_| Act::CloseAfter(b"")).await;
        let pool = pool_for(up.addr, Duration::from_secs(60));
        let e = pool.send(get("/")).await.unwrap_err();
        assert!(
            matches!(e, PoolError::Exchange(h1::H1Error::ClosedBeforeResponse(_))),
            "{e}"
        );
        assert_eq!(up.accepted(), 1, "a new connection is not retried");
    }

    #[tokio::test]
    async fn an_exchange_cut_by_a_timeout_leaves_no_connection_behind() {
        let up = scripted(|_| Act::Hang).await;
        let pool = pool_for(up.addr, Duration::from_secs(60));
        for _ in 0..2 {
            let cut = tokio::time::timeout(Duration::from_millis(100), pool.send(get("/"))).await;
            assert!(cut.is_err(), "the upstream never answers");
            assert_eq!(pool.idle_count(), 0);
        }
        assert_eq!(
            up.accepted(),
            2,
            "the second request did not get the cut connection"
        );
    }

    #[tokio::test]
    async fn connections_whose_response_was_not_cleanly_framed_are_not_reused() {
        let up = scripted(|n| {
            Act::Reply(match n {
                // Both lengths: read as chunked, then the connection is not trusted.
                0 => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                _ => OK,
            })
        })
        .await;
        let pool = pool_for(up.addr, Duration::from_secs(60));
        assert_eq!(fetch(&pool, "/").await, "ok");
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(fetch(&pool, "/").await, "ok");
        assert_eq!(up.accepted(), 2);

        // Bytes after the end of a response: the connection is closed, not reused.
        let up = scripted(|_| {
            Act::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
        })
        .await;
        let pool = pool_for(up.addr, Duration::from_secs(60));
        assert_eq!(fetch(&pool, "/").await, "ok");
        assert_eq!(fetch(&pool, "/").await, "ok");
        assert_eq!(up.accepted(), 2);
    }

    #[tokio::test]
    async fn an_upstream_that_is_not_listening_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let pool = pool_for(addr, Duration::from_secs(60));
        let e = pool.send(get("/")).await.unwrap_err();
        assert!(matches!(e, PoolError::Connect(_)), "{e}");
    }
}
