//! The admin listener: `/healthz`, `/readyz`, `/metrics`, never on the public port.
//!
//! Readiness is a [`ReadyCheck`]: an optional async probe (the session store's ping)
//! plus a shutting-down flag, so a load balancer stops sending traffic before the
//! public listener closes.

/// The process-wide metrics this listener renders at `/metrics`.
pub use crate::metrics;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::body::{full, Body};
use crate::server::{self, ServerSettings};

type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

type Route = Arc<dyn Fn(Request<Incoming>) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

/// Endpoints another module serves on the admin listener, under one path prefix (the
/// account's `/account/`), so the admin listener needs to know nothing about them.
#[derive(Clone)]
pub struct Extension {
    prefix: &'static str,
    route: Route,
}

impl Extension {
    pub fn new<F, Fut>(prefix: &'static str, route: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        Self {
            prefix,
            route: Arc::new(move |req| Box::pin(route(req))),
        }
    }
}

/// What `/readyz` asks. Clones share the flag.
#[derive(Clone, Default)]
pub struct ReadyCheck {
    shutting_down: Arc<AtomicBool>,
    probe: Option<Probe>,
}

impl ReadyCheck {
    /// Ready until shutdown starts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ready while `probe` succeeds (its error is the reason shown) and not shutting down.
    pub fn with_probe<F, Fut>(probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            shutting_down: Arc::default(),
            probe: Some(Arc::new(move || Box::pin(probe()))),
        }
    }

    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// `Err(reason)` when not ready.
    pub async fn check(&self) -> Result<(), String> {
        if self.is_shutting_down() {
            return Err("shutting down".into());
        }
        match &self.probe {
            Some(probe) => probe().await,
            None => Ok(()),
        }
    }
}

/// Serves the admin endpoints (and `extension`'s) until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    ready: ReadyCheck,
    extension: Option<Extension>,
    shutdown: impl Future<Output = ()>,
) {
    let handler = server::handler(move |req: Request<Incoming>, _conn| {
        let ready = ready.clone();
        let extension = extension
            .clone()
            .filter(|e| req.uri().path().starts_with(e.prefix));
        async move {
            match extension {
                Some(e) => (e.route)(req).await,
                None => answer(&req, &ready).await,
            }
        }
    });
    let mut settings = ServerSettings::plain("admin");
    // Probes must not hold up the process exit.
    settings.shutdown_timeout = std::time::Duration::from_secs(1);
    server::serve(listener, settings, handler, shutdown).await;
}

async fn answer(req: &Request<Incoming>, ready: &ReadyCheck) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match ready.check().await {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {reason}\n"),
            ),
        },
        "/metrics" => {
            let mut resp = text(StatusCode::OK, &metrics::metrics().render());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_fails_with_the_probe_reason_and_after_shutdown_starts() {
        let ok = ReadyCheck::new();
        assert_eq!(ok.check().await, Ok(()));
        ok.set_shutting_down();
        assert_eq!(ok.check().await, Err("shutting down".into()));

        let down =
            ReadyCheck::with_probe(|| async { Err("redis 127.0.0.1:6379 unreachable".into()) });
        assert_eq!(
            down.check().await,
            Err("redis 127.0.0.1:6379 unreachable".into())
        );
    }
}
