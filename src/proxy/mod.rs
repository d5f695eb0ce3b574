//! Forwarding to the upstream: the request rewritten for the upstream, bodies streamed
//! both ways, upgrades tunnelled, and upstream failures turned into 502/504 pages.
//!
//! The forwarder is transparent by default: what it changes is exactly hop-by-hop
//! headers (an `Upgrade` only to a protocol of `upstream.upgrades` survives), the
//! forwarded-for headers and `X-Request-Id`, `Host` (when `preserve_host = false`), a
//! repeated `Content-Length` (passed as one value), the URI's authority and path
//! prefix, and the version (normalised for the upstream connection). Bodies that go
//! quiet past their timeout end the exchange (`idle`).

mod error;
mod h1;
pub mod headers;
mod idle;
mod pool;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{empty, Body};
use crate::config::UpstreamConfig;
use crate::metrics::metrics;
use idle::{BodyIdle, IdleTimeout, Side};

use error::BoxError;
pub use error::{Cause, ProxyError};
pub use headers::ForwardedInfo;
pub use upgrade::Tunnels;

/// The inline exchange's reading of a whole upstream response from bytes, for the
/// differential fuzz target against hyper's client. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::h1::{keeps_trailer, read_response_bytes, ReadResponse};
}

/// How long the upstream took to send its response head; put in the response's
/// extensions for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamTime(pub Duration);

/// What the forwarder needs to know about the request's client and its connection.
#[derive(Debug, Clone)]
pub struct ForwardContext {
    pub peer: SocketAddr,
    /// The client reached us over TLS.
    pub client_tls: bool,
    /// The peer is a trusted proxy: its forwarded headers are kept and extended.
    pub trusted: bool,
    /// Passed upstream as `X-Request-Id`.
    pub request_id: Option<HeaderValue>,
    /// Page or JSON, for the answer to a request that could not be forwarded.
    pub reply: crate::pages::Reply,
}

/// A client's connection-level headers, taken off its request by
/// [`Forwarder::take_hop_by_hop`] before wxgate adds any header of its own, so that
/// what the client's `Connection` header names can only be what the client sent.
#[derive(Debug)]
pub struct ClientHop {
    /// The `Upgrade` protocols to forward: those of `upstream.upgrades` the client
    /// asked for on an HTTP/1.1 upgrade.
    upgrade: Option<HeaderValue>,
}

/// What the forwarder allows a client's body (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// `server.max_body_size`.
    pub max_body_bytes: Option<u64>,
    /// `server.body_timeout`.
    pub body_timeout: Duration,
}

/// Sends requests to the upstream over a pooled keep-alive client. Cheap to clone.
#[derive(Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// How requests reach the upstream.
enum Route {
    /// Plain HTTP: wxgate's own HTTP/1.1 connection pool.
    Http(Arc<pool::Pool>),
    /// HTTPS: hyper-util's client (TLS, ALPN, h2).
    Https {
        /// For callers outside the server's worker threads.
        shared: Box<UpstreamClient>,
        /// One pool per worker thread: a pooled connection's task lives on the thread
        /// that opened it, so each worker keeps to its own and no request crosses
        /// threads.
        per_worker: Vec<UpstreamClient>,
    },
}

struct Inner {
    route: Route,
    scheme: Scheme,
    authority: Authority,
    /// The upstream URL's path without its trailing slash ("" for the root).
    prefix: String,
    authority_header: HeaderValue,
    timeout: Duration,
    preserve_host: bool,
    max_body: Option<u64>,
    /// `server.body_timeout`: the longest a client's body may stay silent.
    client_body_timeout: Duration,
    /// `upstream.body_timeout`: the longest the upstream's body may stay silent.
    upstream_body_timeout: Duration,
    /// `upstream.upgrades`: the only protocols a request may upgrade to.
    upgrades: Vec<String>,
    tunnels: Tunnels,
}

impl Inner {
    async fn send(&self, req: Request<Body>) -> Result<Response<Body>, ProxyError> {
        match &self.route {
            Route::Http(pool) => pool
                .send(req)
                .await
                .map_err(|e| classify_pool(e, self.max_body)),
            Route::Https { shared, per_worker } => {
                let client = crate::workers::current()
                    .and_then(|w| per_worker.get(w))
                    .unwrap_or(&**shared);
                match client.request(req).await {
                    Ok(resp) => Ok(resp.map(|b| {
                        IdleTimeout::new(b, Side::Upstream, self.upstream_body_timeout)
                            .boxed_unsync()
                    })),
                    Err(e) => {
                        let connecting = e.is_connect();
                        Err(classify(Box::new(e), connecting, self.max_body))
                    }
                }
            }
        }
    }

    /// The request target for the upstream: origin-form on our own connections,
    /// absolute for hyper-util's client (which picks the connection from it).
    fn upstream_uri(
        &self,
        method: &http::Method,
        path_and_query: Option<&PathAndQuery>,
    ) -> Result<Uri, ProxyError> {
        let bad = |e: http::Error| ProxyError::Request(Cause::with_text(e.to_string(), e));
        let target = match path_and_query {
            // Shares the parsed request's bytes.
            Some(pq) if self.prefix.is_empty() => pq.clone(),
            pq => {
                let pq = pq.map_or("/", PathAndQuery::as_str);
                PathAndQuery::try_from(format!("{}{pq}", self.prefix))
                    .map_err(|e| ProxyError::Request(Cause::with_text(e.to_string(), e)))?
            }
        };
        match &self.route {
            Route::Http(_) if method == http::Method::CONNECT => {
                Ok(Uri::from(self.authority.clone()))
            }
            Route::Http(_) => Uri::builder().path_and_query(target).build().map_err(bad),
            Route::Https { .. } => Uri::builder()
                .scheme(self.scheme.clone())
                .authority(self.authority.clone())
                .path_and_query(target)
                .build()
                .map_err(bad),
        }
    }
}

impl Forwarder {
    pub fn new(
        upstream: &UpstreamConfig,
        client: &ClientLimits,
        workers: usize,
    ) -> Result<Self, ProxyError> {
        let uri: Uri = upstream.uri.clone();
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| ProxyError::Config(format!("{:?} has no scheme", upstream.url)))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| ProxyError::Config(format!("{:?} has no host", upstream.url)))?;
        let authority_header = HeaderValue::from_str(authority.as_str())
            .map_err(|e| ProxyError::Config(e.to_string()))?;

        let idle = upstream.pool_idle_timeout.get();
        let route = if scheme == Scheme::HTTP {
            let port = authority.port_u16().unwrap_or(80);
            Route::Http(pool::Pool::new(
                format!("{}:{port}", authority.host()),
                pool::Timeouts {
                    connect: upstream.connect_timeout.get(),
                    idle,
                    body: upstream.body_timeout.get(),
                },
                workers,
            ))
        } else {
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_nodelay(true);
            http.set_connect_timeout(Some(upstream.connect_timeout.get()));
            http.set_keepalive(Some(Duration::from_secs(60)));
            // The provider is passed explicitly so the forwarder works whether or not a
            // process-wide default was installed.
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .map_err(|e| ProxyError::Config(format!("TLS client: {e}")))?
                .https_or_http()
                .enable_all_versions()
                .wrap_connector(http);
            let client = || {
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(idle)
                    .pool_timer(TokioTimer::new())
                    .timer(TokioTimer::new())
                    .build(https.clone())
            };
            Route::Https {
                shared: Box::new(client()),
                per_worker: (0..workers).map(|_| client()).collect(),
            }
        };

        Ok(Self {
            inner: Arc::new(Inner {
                route,
                scheme,
                authority,
                prefix: uri.path().trim_end_matches('/').to_string(),
                authority_header,
                timeout: upstream.timeout.get(),
                preserve_host: upstream.preserve_host,
                max_body: client.max_body_bytes,
                client_body_timeout: client.body_timeout,
                upstream_body_timeout: upstream.body_timeout.get(),
                upgrades: upstream.upgrades.clone(),
                tunnels: Tunnels::default(),
            }),
        })
    }

    /// The upgraded connections this forwarder opened, for shutdown to drain.
    pub fn tunnels(&self) -> Tunnels {
        self.inner.tunnels.clone()
    }

    /// The first step for a request to be forwarded, before wxgate adds any header:
    /// its hop-by-hop headers, and those its `Connection` header names, are removed;
    /// an upgrade to a protocol of `upstream.upgrades` is remembered for [`forward`],
    /// any other becomes a plain request.
    ///
    /// [`forward`]: Forwarder::forward
    pub fn take_hop_by_hop(&self, parts: &mut http::request::Parts) -> ClientHop {
        let upgrade = match parts.version {
            Version::HTTP_11 => headers::upgrade_protocol(&parts.headers, &self.inner.upgrades),
            _ => None,
        };
        headers::strip_hop_by_hop(&mut parts.headers);
        ClientHop { upgrade }
    }

    /// The rewrite phase, for a request the gate let through: the client's
    /// hop-by-hop headers are taken first (so its `Connection` header can only remove
    /// what it sent itself), then the one host is set, identity headers a client may
    /// not send are removed, and wxgate's own cookies never reach the upstream.
    pub fn rewrite(
        &self,
        parts: &mut http::request::Parts,
        host: Option<HeaderValue>,
        identity_header: &http::HeaderName,
        trusted: bool,
        own_cookie: impl Fn(&str) -> bool,
    ) -> ClientHop {
        let hop = self.take_hop_by_hop(parts);
        if let Some(host) = host {
            parts.headers.insert(header::HOST, host);
        }
        headers::strip_identity_headers(&mut parts.headers, identity_header, trusted);
        headers::remove_cookies(&mut parts.headers, own_cookie);
        hop
    }

    /// Forwards one request whose hop-by-hop headers were taken; every failure becomes
    /// a response (502, 504, 413, ...).
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        hop: ClientHop,
        ctx: &ForwardContext,
    ) -> Response<Body> {
        match self.try_forward(req, hop, ctx).await {
            Ok(resp) => resp,
            Err(e) => {
                match &e {
                    ProxyError::BodyTooLarge { .. } => {
                        metrics()
                            .denied
                            .inc(crate::metrics::labels::Denied::BodyTooLarge);
                        tracing::info!(error = %e, "request refused");
                    }
                    ProxyError::ClientBody(_) => {
                        metrics()
                            .denied
                            .inc(crate::metrics::labels::Denied::BadRequestBody);
                        tracing::info!(error = %e, "request refused");
                    }
                    // Counted and logged where the clock ran out.
                    ProxyError::ClientBodyTimeout(_) => {}
                    _ => {
                        metrics().upstream_errors.inc(e.label());
                        tracing::warn!(error = %e, kind = e.kind(), "upstream request failed");
                    }
                }
                e.to_response(ctx.reply)
            }
        }
    }

    async fn try_forward(
        &self,
        req: Request<Incoming>,
        hop: ClientHop,
        ctx: &ForwardContext,
    ) -> Result<Response<Body>, ProxyError> {
        let inner = &*self.inner;
        let (mut parts, body) = req.into_parts();

        if let (Some(limit), Some(len)) = (inner.max_body, content_length(&parts.headers)) {
            if len > limit {
                return Err(ProxyError::BodyTooLarge { limit });
            }
        }

        let upgrade = hop.upgrade;
        let client_upgrade = upgrade
            .as_ref()
            .and_then(|_| parts.extensions.remove::<OnUpgrade>());

        // A clone of the parsed header shares its bytes: no copy per request.
        let host = parts
            .headers
            .get(header::HOST)
            .filter(|h| h.to_str().is_ok())
            .cloned()
            .or_else(|| {
                let a = parts.uri.authority()?;
                HeaderValue::from_str(a.as_str()).ok()
            });

        let uri = inner.upstream_uri(&parts.method, parts.uri.path_and_query())?;

        let h = &mut parts.headers;
        // Equal repeated lengths were accepted as one; the upstream gets one.
        headers::single_content_length(h).map_err(|e| ProxyError::ClientBody(e.into()))?;
        // We already answered the client's `Expect` (hyper sends 100 Continue when the
        // body is first read); the upstream gets the body without waiting.
        h.remove(header::EXPECT);
        if let Some(proto) = &upgrade {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, proto.clone());
        }
        headers::set_forwarded(
            h,
            ForwardedInfo {
                peer: ctx.peer.ip(),
                proto: if ctx.client_tls { "https" } else { "http" },
                host: host.as_ref().and_then(|h| h.to_str().ok()),
                trusted: ctx.trusted,
            },
        );
        if let Some(id) = &ctx.request_id {
            h.insert(X_REQUEST_ID, id.clone());
        }
        let host_header = if inner.preserve_host { host } else { None };
        h.insert(
            header::HOST,
            host_header.unwrap_or_else(|| inner.authority_header.clone()),
        );

        // The client's body errors are marked so a malformed or cut upload is told
        // apart from an upstream failure (400, not 502). A body already complete (a
        // GET) needs no clock.
        let body: Body = if body.is_end_stream() {
            crate::body::empty()
        } else {
            let body = IdleTimeout::new(
                body.map_err(ClientBodyError),
                Side::Client,
                inner.client_body_timeout,
            );
            match inner.max_body {
                Some(limit) => Limited::new(body, limit as usize).boxed_unsync(),
                None => body.boxed_unsync(),
            }
        };
        let mut upstream_req = Request::from_parts(parts, body);
        *upstream_req.uri_mut() = uri;
        // The pooled connection decides HTTP/1.1 or h2 (ALPN); the client's version
        // (1.0, 2) says nothing about the upstream hop.
        *upstream_req.version_mut() = Version::HTTP_11;

        let started = Instant::now();
        let sent = tokio::time::timeout(inner.timeout, inner.send(upstream_req)).await;
        let took = started.elapsed();
        let mut resp = match sent {
            Err(_) => return Err(ProxyError::Timeout(inner.timeout)),
            Ok(sent) => sent?,
        };
        metrics().upstream_duration.observe(took);

        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        let upstream_upgrade = if switching {
            resp.extensions_mut().remove::<OnUpgrade>()
        } else {
            None
        };
        let (mut rparts, rbody) = resp.into_parts();
        // Transfer-Encoding overrides Content-Length, and a proxy must not pass the
        // latter on (RFC 9112 §6.3): the client would cut the re-framed body short.
        if rparts.headers.contains_key(header::TRANSFER_ENCODING) {
            rparts.headers.remove(header::CONTENT_LENGTH);
        }
        headers::single_content_length(&mut rparts.headers)
            .map_err(|e| ProxyError::Upstream(format!("response {e}").into()))?;
        let response_upgrade = rparts.headers.get(header::UPGRADE).cloned();
        headers::strip_hop_by_hop(&mut rparts.headers);
        rparts.extensions.insert(UpstreamTime(took));

        if switching {
            // The upstream may only switch to a protocol that was asked for and is
            // allowed: never to h2c behind a request that asked for a WebSocket.
            let proto = response_upgrade.filter(|p| {
                p.to_str()
                    .is_ok_and(|p| headers::upgrade_allowed(p.trim(), &inner.upgrades))
            });
            let (Some(client), Some(upstream), Some(proto)) =
                (client_upgrade, upstream_upgrade, proto)
            else {
                return Err(ProxyError::Upstream(
                    "101 Switching Protocols to a protocol the request did not ask for".into(),
                ));
            };
            rparts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            rparts.headers.insert(header::UPGRADE, proto);
            inner.tunnels.spawn(client, upstream);
            return Ok(Response::from_parts(rparts, empty()));
        }

        Ok(Response::from_parts(rparts, rbody))
    }
}

const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The client's request body failed (bad chunked framing, connection cut).
#[derive(Debug, thiserror::Error)]
#[error("client request body: {0}")]
struct ClientBodyError(hyper::Error);

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn classify_pool(e: pool::PoolError, max_body: Option<u64>) -> ProxyError {
    match e {
        pool::PoolError::Send(e) => classify(Box::new(e), false, max_body),
        pool::PoolError::Exchange(e) => ProxyError::Upstream(Cause::new(e)),
        connect => ProxyError::Connect(Cause::new(connect)),
    }
}

/// Our client's body errors come back wrapped in the client's error: they are told
/// apart from the upstream's failures by walking the chain. The error is kept whole
/// as the cause's source.
fn classify(e: BoxError, connecting: bool, max_body: Option<u64>) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*e);
    while let Some(s) = source {
        if s.downcast_ref::<LengthLimitError>().is_some() {
            return ProxyError::BodyTooLarge {
                limit: max_body.unwrap_or_default(),
            };
        }
        if let Some(ClientBodyError(cause)) = s.downcast_ref::<ClientBodyError>() {
            let text = cause.to_string();
            return ProxyError::ClientBody(Cause::with_text(text, e));
        }
        if let Some(idle) = s.downcast_ref::<BodyIdle>() {
            return ProxyError::ClientBodyTimeout(idle.idle);
        }
        source = s.source();
    }
    if connecting {
        ProxyError::Connect(Cause::new(e))
    } else {
        ProxyError::Upstream(Cause::new(e))
    }
}
