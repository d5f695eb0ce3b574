//! Accepting client connections: HTTP/1.1 and HTTP/2 (h2c prior knowledge, or ALPN over
//! TLS), the connection cap, slowloris and keep-alive timeouts, the request-head limits
//! (`head`), graceful shutdown, and the per-request access log with its request id.
//!
//! What a request *means* is the handler's business; this module only owns sockets.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

pub mod access_log;
pub mod head;

use crate::body::Body;
use crate::metrics::metrics;
use crate::proxy::UpstreamTime;
pub use crate::workers::Workers;
use head::{HeadGuard, HeadReports, Refusal, Seen};

/// Why an address cannot be listened on, in words that say what to do.
pub fn bind_problem(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::AddrInUse => {
            "another program already listens there: stop it, or choose another port".into()
        }
        ErrorKind::PermissionDenied => {
            "not allowed: ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a port above 1023".into()
        }
        ErrorKind::AddrNotAvailable => {
            "this machine has no such address: use one of its own, or 0.0.0.0 for all".into()
        }
        _ => e.to_string(),
    }
}

/// How a listener treats its connections.
#[derive(Clone)]
pub struct ServerSettings {
    /// The `listener` label of `wxgate_connections_limited_total` and of log lines.
    pub name: &'static str,
    /// Time for a client to send a request head, and for the TLS handshake. Also ends
    /// HTTP/1.1 keep-alive connections that stay silent this long between requests.
    pub header_read_timeout: Duration,
    /// HTTP/2: a connection that does not answer a ping sent after this long is closed.
    pub idle_timeout: Duration,
    /// The largest request head (HTTP/1) or header list (HTTP/2), in bytes.
    pub max_header_bytes: usize,
    pub max_connections: Option<usize>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// After shutdown starts, in-flight requests get this long to finish.
    pub shutdown_timeout: Duration,
    /// Threads the accepted connections are spread over; None: the caller's runtime.
    pub workers: Option<Arc<Workers>>,
}

impl ServerSettings {
    /// Plain HTTP with the config's defaults; used by the admin listener and tests.
    pub fn plain(name: &'static str) -> Self {
        Self {
            name,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_header_bytes: crate::config::DEFAULT_MAX_HEADER_BYTES,
            max_connections: None,
            tls: None,
            shutdown_timeout: Duration::from_secs(30),
            workers: None,
        }
    }
}

/// The connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
}

pub type Handler =
    Arc<dyn Fn(Request<Incoming>, ConnInfo) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

/// Wraps an async function as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request<Incoming>, ConnInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    Arc::new(move |req, conn| Box::pin(f(req, conn)))
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: String },
    #[error("TLS configuration refused: {0}")]
    Tls(#[from] rustls::Error),
}

/// A TLS server config from PEM files (certificate chain, then the private key),
/// offering h2 and http/1.1 by ALPN.
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let read_err = |p: &Path| {
        let path = p.display().to_string();
        move |source| ServerError::Read { path, source }
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(read_err(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err(cert))?;
    if certs.is_empty() {
        return Err(ServerError::NoCertificate {
            path: cert.display().to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(read_err(key))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `listener` until `shutdown` resolves, then stops accepting and waits (at
/// most `shutdown_timeout`) for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    settings: ServerSettings,
    handler: Handler,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true);
    // The head guard hands hyper only heads within the limit; hyper's buffer must
    // hold the largest of them.
    if settings.max_header_bytes + HYPER_READ_SLACK > HYPER_MAX_BUF {
        builder
            .http1()
            .max_buf_size(settings.max_header_bytes + HYPER_READ_SLACK);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.idle_timeout)
        .keep_alive_timeout(settings.header_read_timeout)
        // The server refuses header lists over the limit with its page; hyper's
        // HTTP/2 server refuses (with a bare 431) what is far beyond it, before it is
        // a request.
        .max_header_list_size(
            u32::try_from(settings.max_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX),
        );
    let builder = Arc::new(builder);
    let tls = settings.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let limit = settings
        .max_connections
        .map(|n| Arc::new(Semaphore::new(n)));
    let graceful = GracefulShutdown::new();
    let mut limited_logged = false;
    let mut backoff = ACCEPT_BACKOFF_MIN;
    tokio::pin!(shutdown);

    loop {
        // The permit is taken before accepting, so beyond the cap connections wait in
        // the kernel's backlog rather than being accepted and starved.
        let permit = match &limit {
            None => None,
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    metrics()
                        .connections_limited
                        .inc(crate::metrics::labels::Listener(settings.name));
                    if !limited_logged {
                        limited_logged = true;
                        tracing::warn!(
                            listener = settings.name,
                            max_connections = settings.max_connections,
                            "connection limit reached; new connections wait"
                        );
                    }
                    tokio::select! {
                        p = sem.clone().acquire_owned() => p.ok(),
                        _ = &mut shutdown => break,
                    }
                }
            },
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    pair
                }
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // EMFILE and friends: retrying at once would spin; wait for a
                    // descriptor to be freed.
                    tracing::error!(listener = settings.name, error = %e, pause_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = &mut shutdown => break,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let conn = Conn {
            builder: builder.clone(),
            tls: tls.clone(),
            handshake_timeout: settings.header_read_timeout,
            max_header_bytes: settings.max_header_bytes,
            listener: settings.name,
            handler: handler.clone(),
        };
        let watcher = graceful.watcher();
        match settings.workers.as_deref().and_then(Workers::pick) {
            None => {
                tokio::spawn(async move {
                    let _permit = permit;
                    conn.run(stream, peer, watcher).await;
                });
            }
            Some((worker, load)) => {
                // The socket moves to the worker's event loop: deregistered here,
                // registered there.
                let stream = match stream.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "accepted connection lost");
                        continue;
                    }
                };
                worker.spawn(async move {
                    let _permit = permit;
                    let _load = load;
                    match TcpStream::from_std(stream) {
                        Ok(stream) => conn.run(stream, peer, watcher).await,
                        Err(e) => tracing::debug!(%peer, error = %e, "accepted connection lost"),
                    }
                });
            }
        }
    }

    drop(listener);
    tracing::info!(
        listener = settings.name,
        connections = graceful.count(),
        "stopped accepting; draining connections"
    );
    if tokio::time::timeout(settings.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = settings.name,
            timeout_ms = settings.shutdown_timeout.as_millis() as u64,
            "connections still open at the shutdown deadline"
        );
    }
}

/// hyper's HTTP/1 read buffer bound by default, and room for a read beyond a head.
const HYPER_MAX_BUF: usize = 8192 + 4096 * 100;
const HYPER_READ_SLACK: usize = 16 * 1024;

const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Errors that concern one connection that died before we accepted it, not the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

struct Conn {
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshake_timeout: Duration,
    max_header_bytes: usize,
    listener: &'static str,
    handler: Handler,
}

struct OpenConnection;

impl OpenConnection {
    fn new() -> Self {
        metrics().connections_open.inc();
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics().connections_open.dec();
    }
}

impl Conn {
    async fn run(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let _open = OpenConnection::new();
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let info = ConnInfo {
            peer,
            local,
            tls: self.tls.is_some(),
        };
        let result = match self.tls {
            None => {
                let (io, reports) =
                    HeadGuard::new(stream, self.max_header_bytes, self.handshake_timeout);
                let svc = service(
                    self.handler,
                    info,
                    reports,
                    self.listener,
                    self.max_header_bytes,
                );
                let conn = self
                    .builder
                    .serve_connection_with_upgrades(TokioIo::new(io), svc)
                    .into_owned();
                watcher.watch(conn).await
            }
            Some(acceptor) => {
                let tls =
                    match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                let (io, reports) =
                    HeadGuard::new(tls, self.max_header_bytes, self.handshake_timeout);
                let svc = service(
                    self.handler,
                    info,
                    reports,
                    self.listener,
                    self.max_header_bytes,
                );
                let conn = self
                    .builder
                    .serve_connection_with_upgrades(TokioIo::new(io), svc)
                    .into_owned();
                watcher.watch(conn).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// One connection's service: each request goes to `handler`, except the head guard's
/// stand-in for a refused head, answered here; the guard is told what it needs to
/// follow the connection (each request's framing, whether a response upgraded).
fn service(
    handler: Handler,
    info: ConnInfo,
    reports: HeadReports,
    listener: &'static str,
    limit: usize,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone {
    service_fn(move |req: Request<Incoming>| {
        let http1 = req.version() != http::Version::HTTP_2;
        let (answer, upgrade) = match reports.request(&req, limit) {
            Seen::Refused(refusal) => (Err(refusal), None),
            Seen::Request => (Ok(handler(req, info)), None),
            Seen::MayUpgrade => {
                let method = req.method().clone();
                (Ok(handler(req, info)), Some((method, reports.clone())))
            }
        };
        async move {
            let resp = match answer {
                Err(refusal) => refused(refusal, info, listener, limit, http1),
                Ok(handled) => handled.await,
            };
            if let Some((method, reports)) = upgrade {
                reports.upgraded(&method, resp.status());
            }
            Ok::<_, Infallible>(resp)
        }
    })
}

/// The page for a refused request head.
pub(crate) fn refusal_page(refusal: Refusal, limit: usize) -> Response<Body> {
    let (title_zh, title_en, detail_zh, detail) = match refusal {
        Refusal::LineTooLong => (
            "请求地址过长",
            "Request URL too long",
            format!("请求行超过了本站接受的 {limit} 字节。"),
            format!("The request line is longer than the {limit} bytes this site accepts."),
        ),
        Refusal::HeadTooLarge => (
            "请求头过大",
            "Request headers too large",
            format!("请求头超过了本站接受的 {limit} 字节。清除本站的 Cookie 可能有帮助。"),
            format!(
                "The request's headers are larger than the {limit} bytes this site accepts. Clearing this site's cookies may help."
            ),
        ),
        Refusal::TooManyHeaders => (
            "请求头过多",
            "Too many request headers",
            format!("请求头超过 {} 个。", head::MAX_HEADERS),
            format!("The request has more than {} headers.", head::MAX_HEADERS),
        ),
    };
    let notice = crate::pages::Notice {
        status: refusal.status(),
        code: refusal.code(),
        title_zh,
        title_en,
        detail_zh,
        detail,
        retry: None,
    };
    crate::pages::respond(&notice, crate::pages::Reply::Page)
}

/// The answer to a refused request head: wxgate's page, and on HTTP/1 the connection
/// closed.
fn refused(
    refusal: Refusal,
    info: ConnInfo,
    listener: &'static str,
    limit: usize,
    http1: bool,
) -> Response<Body> {
    metrics().denied.inc(refusal.denied());
    tracing::info!(
        listener,
        peer = %info.peer,
        reason = refusal.code(),
        max_header_bytes = limit,
        "request head refused"
    );
    let mut resp = refusal_page(refusal, limit);
    // What is left of a refused HTTP/1 head is never read as a request.
    if http1 {
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, in its extensions: the client's `X-Request-Id` when it is sane,
/// or a new one. The forwarder passes it upstream as a header of wxgate's own.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// Wraps the public handler with what every request gets: a request id (the client's
/// when it is sane, passed upstream and echoed back), the in-flight gauge, the request
/// counters and one log line.
pub fn with_access_log(inner: Handler) -> Handler {
    Arc::new(move |mut req: Request<Incoming>, conn: ConnInfo| {
        let inner = inner.clone();
        Box::pin(async move {
            let id = req
                .headers()
                .get(X_REQUEST_ID)
                .filter(|v| is_sane_request_id(v.as_bytes()))
                .cloned()
                .unwrap_or_else(new_request_id);
            req.extensions_mut().insert(RequestId(id.clone()));
            let method = req.method().clone();
            // A clone shares the request head's bytes (no copy). The query stays out of
            // the log: it may carry a sign-in code or state.
            let uri = req.uri().clone();
            let started = Instant::now();
            let in_flight = InFlight::new();
            let mut resp = inner(req, conn).await;
            drop(in_flight);
            let took = started.elapsed();
            resp.headers_mut().insert(X_REQUEST_ID, id.clone());
            let status = resp.status().as_u16();
            metrics().count_response(status, took);
            access_log::record(&access_log::Entry {
                method: &method,
                path: uri.path(),
                status,
                took,
                upstream: resp.extensions().get::<UpstreamTime>().map(|t| t.0),
                request_id: id.to_str().unwrap_or(""),
                peer: conn.peer,
            });
            resp
        })
    })
}

struct InFlight;

impl InFlight {
    fn new() -> Self {
        metrics().in_flight.inc();
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics().in_flight.dec();
    }
}

/// Ids from load balancers and tracers: short, printable, no separators that could
/// break a log line.
fn is_sane_request_id(v: &[u8]) -> bool {
    (1..=128).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(b))
}

/// A new request id: 32 hex digits, a random per-process prefix and a counter, so ids
/// are unique across restarts and replicas without asking the random source (and
/// allocating) on every request. Request ids are for correlating logs, not secrets.
fn new_request_id() -> HeaderValue {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&crate::random::bytes(8));
        u64::from_le_bytes(b)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut hex = [0u8; 32];
    for (i, byte) in prefix
        .to_be_bytes()
        .iter()
        .chain(&n.to_be_bytes())
        .enumerate()
    {
        hex[2 * i] = HEX[(byte >> 4) as usize];
        hex[2 * i + 1] = HEX[(byte & 0xf) as usize];
    }
    HeaderValue::from_bytes(&hex).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_kept_only_when_sane() {
        let table: &[(&[u8], bool)] = &[
            (b"abc-123", true),
            (
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                true,
            ),
            (b"Root=1-5759e988-bd862e3fe1be46a994272793", true),
            (b"", false),
            (b"has space", false),
            (b"quote\"d", false),
            (&[b'a'; 129], false),
        ];
        for (id, want) in table {
            assert_eq!(
                is_sane_request_id(id),
                *want,
                "{:?}",
                String::from_utf8_lossy(id)
            );
        }
    }

    #[test]
    fn generated_request_ids_are_sane_and_differ() {
        let a = new_request_id();
        let b = new_request_id();
        assert!(is_sane_request_id(a.as_bytes()));
        assert_ne!(a, b);
    }

    #[test]
    fn tls_files_that_cannot_be_used_are_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("wxgate-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let missing = dir.join("missing.pem");

        let e = load_tls(&missing, &missing).unwrap_err();
        assert!(matches!(e, ServerError::Read { .. }), "{e}");
        assert!(e.to_string().contains("missing.pem"), "{e}");

        let e = load_tls(&empty, &missing).unwrap_err();
        assert!(matches!(e, ServerError::NoCertificate { .. }), "{e}");
        assert!(e.to_string().contains("empty.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
