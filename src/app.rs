//! Running wxgate: the public listener (every request goes through [`handle`]), the
//! admin listener, and the shutdown sequence that ties them together.

use std::future::Future;
use std::sync::Arc;

use http::{HeaderName, Request, Response};
use hyper::body::Incoming;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, ReadyCheck};
use crate::body::Body;
use crate::config::Config;
use crate::proxy::{headers, ForwardContext, Forwarder, ProxyError};
use crate::server::{self, ConnInfo, ServerError, ServerSettings};

/// The sockets wxgate serves on, bound by the caller (so tests can bind 127.0.0.1:0).
pub struct Listeners {
    pub public: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds `server.listen` and `admin.listen`.
    pub async fn bind(config: &Config) -> Result<Self, AppError> {
        let bind = |addr: &str| {
            let addr = addr.to_string();
            async move {
                TcpListener::bind(&addr)
                    .await
                    .map_err(|source| AppError::Bind { addr, source })
            }
        };
        Ok(Self {
            public: bind(&config.server.listen).await?,
            admin: bind(&config.admin.listen).await?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("upstream.url: {0}")]
    Upstream(#[from] ProxyError),
    #[error("server.tls_cert_file / server.tls_key_file: {0}")]
    Tls(#[from] ServerError),
}

/// What every request handler shares.
pub struct State {
    pub forwarder: Forwarder,
    pub identity_header: HeaderName,
    pub cookie_name: String,
    pub trusted: Vec<IpNet>,
}

/// Runs until `shutdown` resolves, then stops accepting, drains in-flight requests and
/// upgraded connections (bounded by `server.shutdown_timeout`) and returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    run_with(config, listeners, ReadyCheck::new(), shutdown).await
}

/// As [`run`], with the readiness check the admin listener answers with.
pub async fn run_with(
    config: Config,
    listeners: Listeners,
    ready: ReadyCheck,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    // One crypto provider for every rustls user (reqwest, redis); a second call from
    // an embedding program or a test is harmless.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let forwarder = Forwarder::new(&config.upstream, config.server.max_body_bytes)?;
    let tunnels = forwarder.tunnels();
    let tls = match (&config.server.tls_cert_file, &config.server.tls_key_file) {
        (Some(cert), Some(key)) => Some(server::load_tls(
            &config.base_dir.join(cert),
            &config.base_dir.join(key),
        )?),
        _ => None,
    };
    let identity_header = HeaderName::from_bytes(config.identity.header.as_bytes())
        .unwrap_or_else(|_| HeaderName::from_static("x-wxgate-jwt-assertion"));
    let state = Arc::new(State {
        forwarder,
        identity_header,
        cookie_name: config.session.cookie_name.clone(),
        trusted: config.server.trusted.clone(),
    });

    let settings = ServerSettings {
        name: "public",
        header_read_timeout: config.server.header_read_timeout.get(),
        idle_timeout: config.server.idle_timeout.get(),
        max_connections: config.server.max_connections,
        tls,
        shutdown_timeout: config.server.shutdown_timeout.get(),
    };
    let deadline_after = settings.shutdown_timeout;
    let public_addr = listeners.public.local_addr().ok();
    let admin_addr = listeners.admin.local_addr().ok();
    tracing::info!(public = ?public_addr, admin = ?admin_addr, upstream = %config.upstream.url, "wxgate listening");

    let handler = server::with_access_log(server::handler(move |req, conn| {
        let state = state.clone();
        async move { handle(&state, req, conn).await }
    }));
    let (stop_public, public_stopped) = watch::channel(false);
    let (stop_admin, admin_stopped) = watch::channel(false);
    let public = tokio::spawn(server::serve(
        listeners.public,
        settings,
        handler,
        signalled(public_stopped),
    ));
    let admin = tokio::spawn(admin::serve(
        listeners.admin,
        ready.clone(),
        signalled(admin_stopped),
    ));

    shutdown.await;
    tracing::info!("shutting down");
    ready.set_shutting_down();
    let deadline = tokio::time::Instant::now() + deadline_after;
    stop_public.send_replace(true);
    if let Err(e) = public.await {
        tracing::error!(error = %e, "public listener task failed");
    }
    if tokio::time::timeout_at(deadline, tunnels.idle())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tunnels.count(),
            "closing upgraded connections at the shutdown deadline"
        );
        tunnels.close_all();
    }
    stop_admin.send_replace(true);
    if let Err(e) = admin.await {
        tracing::error!(error = %e, "admin listener task failed");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn signalled(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// One request on the public listener: classify → authenticate → rewrite → forward.
/// (Until the sign-in flow lands, every request is forwarded, scrubbed.)
pub async fn handle(state: &State, mut req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
    let h = req.headers_mut();
    headers::strip_identity_headers(h, &state.identity_header);
    headers::remove_cookies(h, |name| name.starts_with(state.cookie_name.as_str()));
    let ctx = ForwardContext {
        peer: conn.peer,
        client_tls: conn.tls,
        trusted: headers::is_trusted(conn.peer.ip(), &state.trusted),
    };
    state.forwarder.forward(req, &ctx).await
}
