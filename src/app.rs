//! Running wxgate: the public listener (every request goes through [`handle`]), the
//! admin listener, and the shutdown sequence that ties them together.

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{header::SET_COOKIE, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::admin::{self, ReadyCheck};
use crate::body::Body;
use crate::config::Config;
use crate::metrics::metrics;
use crate::pages::Reply;
use crate::proxy::{headers, ClientLimits, ForwardContext, Forwarder, ProxyError};
use crate::routes::{Route, RouteTable};
use crate::server::{self, ConnInfo, ServerError, ServerSettings};
use crate::session::Store;
use crate::signin::gate::{Gate, SignIn};
use crate::signin::{endpoints, paths, RouteNeeds};

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
                    .map_err(|error| AppError::Bind { addr, error })
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
    #[error("cannot listen on {addr}: {}", crate::server::bind_problem(.error))]
    Bind { addr: String, error: std::io::Error },
    #[error("upstream.url: {0}")]
    Upstream(#[from] ProxyError),
    #[error("server.tls_cert_file / server.tls_key_file: {0}")]
    Tls(#[from] ServerError),
    /// The store could not be opened: `key: what went wrong`.
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Auth(#[from] crate::signin::BuildError),
    #[error("server.workers: cannot start the worker threads: {0}")]
    Workers(std::io::Error),
    #[error("{0}")]
    Route(String),
}

/// What every request handler shares. `live` is swapped whole on reload; the store
/// and the upstream connection pools outlive reloads.
pub struct State {
    /// `[upstream]`'s forwarder: requests no route takes.
    pub forwarder: Forwarder,
    pub live: ArcSwap<Live>,
    pub store: Arc<Store>,
    upstreams: Upstreams,
}

/// One configuration's sign-in, routes and the forwarder of each route, swapped as one
/// so that a request never pairs one generation's routes with another's upstreams.
pub struct Live {
    pub signin: SignIn,
    /// The OpenID Connect provider for other apps (`[hub]`), built from `signin`.
    pub hub: Option<crate::hub::Hub>,
    /// `[[routes]]`: which app a request is for, and what it asks of the visitor.
    pub routes: RouteTable,
    /// `forwarders[n]` serves `routes[n]`.
    pub forwarders: Vec<Forwarder>,
}

/// Every upstream's connection pool, by URL: a reload that keeps an upstream keeps its
/// pooled connections, and routes naming the same upstream share one pool.
struct Upstreams {
    base: crate::config::UpstreamConfig,
    limits: ClientLimits,
    workers: usize,
    tunnels: crate::proxy::Tunnels,
    pools: std::sync::Mutex<std::collections::HashMap<String, Forwarder>>,
}

impl Upstreams {
    fn get(&self, url: &str, uri: &http::Uri) -> Result<Forwarder, ProxyError> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = pools.get(url) {
            return Ok(f.clone());
        }
        let cfg = crate::config::UpstreamConfig {
            url: url.to_string(),
            uri: uri.clone(),
            ..self.base.clone()
        };
        let f = Forwarder::new_sharing(&cfg, &self.limits, self.workers, self.tunnels.clone())?;
        pools.insert(url.to_string(), f.clone());
        Ok(f)
    }

    /// The forwarders for a configuration's routes, in order.
    fn for_routes(&self, routes: &RouteTable) -> Result<Vec<Forwarder>, AppError> {
        routes
            .routes()
            .iter()
            .map(|r| {
                self.get(&r.upstream_url, &r.upstream)
                    .map_err(|e| AppError::Route(format!("routes[{}].upstream: {e}", r.index)))
            })
            .collect()
    }
}

/// Runs until `shutdown` resolves, then stops accepting, drains in-flight requests and
/// upgraded connections (bounded by `server.shutdown_timeout`) and returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let (_keep, reloads) = mpsc::channel(1);
    run_with_reload(config, listeners, shutdown, reloads).await
}

/// As [`run`], applying every configuration received on `reloads` (SIGHUP) to the
/// requests that follow, without dropping connections or sessions.
pub async fn run_with_reload(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reloads: mpsc::Receiver<Config>,
) -> Result<(), AppError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let worker_count = config.server.worker_count();
    let store = open_store(&config, worker_count).await?;
    let workers =
        server::Workers::start(worker_count, "wxgate-worker").map_err(AppError::Workers)?;
    let probe_store = store.clone();
    let probe_workers = workers.clone();
    let ready = ReadyCheck::with_probe(move || {
        let store = probe_store.clone();
        let workers = probe_workers.clone();
        async move {
            // Each worker has its own Redis connection: ready means every one answers,
            // each pinged from its own worker (a reconnect starts where it is used).
            let pings: Vec<_> = workers
                .handles()
                .map(|h| {
                    let store = store.clone();
                    h.spawn(async move { store.ping().await })
                })
                .collect();
            for ping in pings {
                match ping.await {
                    Ok(r) => r.map_err(|e| format!("session store: {e}"))?,
                    Err(e) => return Err(format!("worker thread: {e}")),
                }
            }
            store
                .ping()
                .await
                .map_err(|e| format!("session store: {e}"))
        }
    });
    run_with(config, listeners, workers, ready, store, shutdown, reloads).await
}

async fn open_store(config: &Config, workers: usize) -> Result<Arc<Store>, AppError> {
    Store::open(&config.session, workers)
        .await
        .map(Arc::new)
        .map_err(|e| AppError::Store(crate::session::open_problem(&config.session, &e)))
}

fn build_auth(config: Config, store: Arc<Store>) -> Result<SignIn, AppError> {
    let auth = SignIn::new(Arc::new(config), store)?;
    let signer = auth.core.signer();
    match signer.key_source() {
        crate::identity::KeySource::Configured => {}
        crate::identity::KeySource::Derived => tracing::warn!(
            kid = signer.kid(),
            "no signing key configured: the identity key is derived from session.secret (rotating the secret rotates the key); for production set identity.signing_key_file to a key from `wxgate keygen`"
        ),
        crate::identity::KeySource::Generated => tracing::warn!(
            kid = signer.kid(),
            "no signing key configured: a random one was generated, so it changes at every start and replicas do not agree; set identity.signing_key_file to a key from `wxgate keygen`"
        ),
    }
    if auth.core.cfg().session.secret_generated {
        tracing::warn!("session.secret is not set: a random one was generated (memory store only; sign-ins in flight at a restart start over)");
    }
    Ok(auth)
}

/// The route table of a resolved config (whose check found nothing).
fn build_routes(config: &Config) -> Result<RouteTable, AppError> {
    crate::routes::build(config).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        AppError::Route(lines.join("\n"))
    })
}

/// As [`run`], with the readiness check the admin listener answers with.
pub async fn run_with(
    config: Config,
    listeners: Listeners,
    workers: Arc<server::Workers>,
    ready: ReadyCheck,
    store: Arc<Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut reloads: mpsc::Receiver<Config>,
) -> Result<(), AppError> {
    // One crypto provider for every rustls user (reqwest, redis); a second call from
    // an embedding program or a test is harmless.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let limits = ClientLimits {
        max_body_bytes: config.server.max_body_bytes,
        body_timeout: config.server.body_timeout.get(),
    };
    let forwarder = Forwarder::new(&config.upstream, &limits, workers.len())?;
    let tunnels = forwarder.tunnels();
    let upstreams = Upstreams {
        base: config.upstream.clone(),
        limits,
        workers: workers.len(),
        tunnels: tunnels.clone(),
        pools: std::sync::Mutex::new(
            [(config.upstream.url.clone(), forwarder.clone())]
                .into_iter()
                .collect(),
        ),
    };
    let tls = match &config.server.tls {
        Some(files) => Some(server::load_tls(&files.cert, &files.key)?),
        None => None,
    };
    let upstream_url = config.upstream.url.clone();
    server::access_log::set_mode(config.server.access_log);
    let settings_cfg = config.server.clone();
    let routes = build_routes(&config)?;
    let forwarders = upstreams.for_routes(&routes)?;
    let signin = build_auth(config, store.clone())?;
    let hub = crate::hub::Hub::of(&signin);
    let state = Arc::new(State {
        forwarder,
        live: ArcSwap::from_pointee(Live {
            signin,
            hub,
            routes,
            forwarders,
        }),
        store,
        upstreams,
    });
    let reload_state = state.clone();
    let account_state = state.clone();
    tokio::spawn(async move {
        while let Some(new) = reloads.recv().await {
            apply_reload(&reload_state, new);
        }
    });
    let config = Config {
        server: settings_cfg,
        ..Config::default()
    };

    let settings = ServerSettings {
        name: "public",
        header_read_timeout: config.server.header_read_timeout.get(),
        idle_timeout: config.server.idle_timeout.get(),
        max_header_bytes: config.server.max_header_len,
        max_connections: config.server.max_connections,
        tls,
        shutdown_timeout: config.server.shutdown_timeout.get(),
        workers: Some(workers.clone()),
    };
    let deadline_after = settings.shutdown_timeout;
    let public_addr = listeners.public.local_addr().ok();
    let admin_addr = listeners.admin.local_addr().ok();
    let addr =
        |a: Option<std::net::SocketAddr>| a.map_or_else(|| "?".to_string(), |a| a.to_string());
    tracing::info!(public = %addr(public_addr), admin = %addr(admin_addr), upstream = %upstream_url, "wxgate listening");

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
    // The account's token for the apps' backends: only ever on the admin listener.
    let account_routes = admin::Extension::new("/account/", move |req| {
        let live = account_state.live.load_full();
        async move { crate::account::admin::handle(live.signin.core.account(), req).await }
    });
    let admin = tokio::spawn(admin::serve(
        listeners.admin,
        ready.clone(),
        Some(account_routes),
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
    // Every request is answered: its line is written before the process may exit.
    server::access_log::flush();
    tracing::info!("stopped");
    Ok(())
}

async fn signalled(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Applies a reloaded configuration to the requests that follow. Settings that need a
/// new socket or connection pool (listen addresses, upstream, store) keep their running
/// values until a restart; the log says so.
fn apply_reload(state: &State, mut new: Config) {
    let live = state.live.load();
    let current = &live.signin;
    let current_cfg = current.core.cfg();
    // A generated secret must survive the reload, or every cookie (and the derived
    // signing key) would change under the users' feet.
    if new.session.secret_generated && current_cfg.session.secret_generated {
        new.session.secret_bytes = current_cfg.session.secret_bytes.clone();
    }
    let restart_only = [
        (
            "server.listen",
            current_cfg.server.listen != new.server.listen,
        ),
        ("admin.listen", current_cfg.admin.listen != new.admin.listen),
        ("upstream.url", current_cfg.upstream.url != new.upstream.url),
        (
            "upstream.upgrades",
            current_cfg.upstream.upgrades != new.upstream.upgrades,
        ),
        (
            "upstream.body_timeout",
            current_cfg.upstream.body_timeout != new.upstream.body_timeout,
        ),
        (
            "server.body_timeout",
            current_cfg.server.body_timeout != new.server.body_timeout,
        ),
        (
            "server.max_header_bytes",
            current_cfg.server.max_header_len != new.server.max_header_len,
        ),
        (
            "session.store",
            current_cfg.session.store != new.session.store,
        ),
        (
            "session.redis_url",
            current_cfg.session.redis_url != new.session.redis_url,
        ),
    ];
    for (key, changed) in restart_only {
        if changed {
            tracing::warn!(
                key,
                "reload: this setting takes effect only after a restart"
            );
        }
    }
    let built = build_auth(new, state.store.clone()).and_then(|signin| {
        let routes = build_routes(signin.core.cfg())?;
        let forwarders = state.upstreams.for_routes(&routes)?;
        Ok((signin, routes, forwarders))
    });
    match built {
        Ok((mut signin, routes, forwarders)) => {
            server::access_log::set_mode(signin.core.cfg().server.access_log);
            // A reload must not reset the count of QR pages shown (a way around it),
            // nor drop the account's tokens.
            signin.keep_from(current);
            let kid = signin.core.signer().kid().to_string();
            let count = routes.routes().len();
            let hub = crate::hub::Hub::of(&signin);
            // One swap: routes, their upstreams, the hub and the sign-in change together.
            state.live.store(Arc::new(Live {
                signin,
                hub,
                routes,
                forwarders,
            }));
            metrics()
                .config_reloads
                .inc(crate::metrics::labels::Reload::Applied);
            tracing::info!(kid, routes = count, "reload: configuration applied");
        }
        Err(e) => {
            metrics()
                .config_reloads
                .inc(crate::metrics::labels::Reload::Invalid);
            tracing::error!(error = %e, "reload refused; still serving the previous configuration");
        }
    }
}

/// What every phase of one request reads, computed once when it arrives.
pub struct RequestContext {
    /// The connection's peer and whether it came over TLS.
    pub peer: std::net::SocketAddr,
    pub client_tls: bool,
    /// The peer is in `server.trusted_proxies`: its forwarded headers are believed.
    pub trusted: bool,
    /// The visitor's address: the peer, or what a trusted proxy says (shown to the user,
    /// never used to decide access).
    pub client: std::net::IpAddr,
    /// Page or JSON for the answers wxgate writes itself.
    pub reply: Reply,
    /// The one host the request names, to send upstream (absolute-form or
    /// `:authority` over `Host`); None: keep the request's own `Host`.
    pub host: Option<http::HeaderValue>,
    /// The path decoded and resolved for matching; None: it cannot be matched safely.
    pub normalized: Option<String>,
    /// The request's id (the server's wrapper gave it one).
    pub request_id: Option<http::HeaderValue>,
}

impl RequestContext {
    /// Reads the request once. A request naming no host, two hosts or an invalid one is
    /// answered here.
    fn of(
        req: &Request<Incoming>,
        conn: &ConnInfo,
        trusted_proxies: &[ipnet::IpNet],
    ) -> Result<RequestContext, Box<Response<Body>>> {
        let reply = Reply::of(req.headers());
        let trusted = headers::is_trusted(conn.peer.ip(), trusted_proxies);
        // One host for wxgate and the app: an absolute-form target or `:authority` wins
        // over `Host`, and a request naming two hosts is refused.
        let host = match headers::request_host(req.version(), req.uri().authority(), req.headers())
        {
            Ok(host) => host,
            Err(e) => {
                metrics()
                    .denied
                    .inc(crate::metrics::labels::Denied::BadHost);
                tracing::info!(peer = %conn.peer, error = %e, "request refused");
                return Err(Box::new(bad_host(&e.to_string(), reply)));
            }
        };
        Ok(RequestContext {
            peer: conn.peer,
            client_tls: conn.tls,
            trusted,
            client: client_ip(req.headers(), conn.peer.ip(), trusted),
            reply,
            host,
            normalized: paths::normalize_path(req.uri().path()),
            request_id: req
                .extensions()
                .get::<server::RequestId>()
                .map(|id| id.0.clone()),
        })
    }

    fn forward_context(&self) -> ForwardContext {
        ForwardContext {
            peer: self.peer,
            client_tls: self.client_tls,
            trusted: self.trusted,
            request_id: self.request_id.clone(),
            reply: self.reply,
        }
    }
}

/// The route a request takes, chosen once and read by the phases after it.
pub struct RequestRoute<'a> {
    /// The first of `[[routes]]` for the request's host and path; None: `[upstream]`.
    pub route: Option<&'a Route>,
    /// What the route asks of the visitor (access, scope, allowlist, audience).
    pub needs: RouteNeeds<'a>,
    /// The forwarder of the route's upstream (pooled per upstream URL).
    pub forwarder: &'a Forwarder,
}

/// One request on the public listener, in phases (each may answer and end it):
///
/// ```text
///  request ─► context: peer trust, client address, reply mode, host, path, id (once)
///     │
///  own URL? ── /_wxgate/*, MP_verify_*.txt ──► signin::endpoints ──────────► answer
///     │ no    (forward-auth: the routes of the request it asks about apply)
///  route ──── a path that cannot be matched safely ────────────────────────► 400
///     │       else the first of [[routes]] for the host and path, or [upstream]:
///     │       its upstream, access, scope, allowlist, audience, strip_prefix
///  gate ───── no session: 401 JSON or a sign-in started by the chosen method ► answer
///     │       a session the route does not admit (allowlist, WeCom rules) ──► 403
///     │       a base session where the route needs the profile: to WeChat ─► answer
///     │ forward (with the session, if any)
///  rewrite ── hop-by-hop, host, identity headers, own cookies (proxy); the
///     │       route's strip_prefix; identity for the route's audience
///  forward ── to the route's upstream; a failure becomes 502/504/413 (proxy) ► answer
///     │
///  respond ── the upstream's answer, plus the re-issued session cookie
/// ```
pub async fn handle(state: &State, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
    let live = state.live.load_full();
    let signin = &live.signin;
    let ctx = match RequestContext::of(&req, &conn, &signin.core.cfg().server.trusted) {
        Ok(ctx) => ctx,
        Err(refused) => return *refused,
    };
    // The hub's endpoints (`[hub]`) are own URLs that read the body: they take the
    // request whole.
    if let Some(hub) = live
        .hub
        .as_ref()
        .filter(|_| crate::hub::serves(req.uri().path()))
    {
        return crate::hub::handle(signin, hub, req, ctx.client).await;
    }
    if let Some(resp) = own_url(&live, &req, &ctx).await {
        return resp;
    }
    let Some(normalized) = ctx.normalized.as_deref() else {
        metrics()
            .denied
            .inc(crate::metrics::labels::Denied::BadPath);
        return bad_path(ctx.reply);
    };
    let route = route(state, &live, normalized, &ctx);
    let (session, set_cookie) = match gate(signin, &req, normalized, &route, &ctx).await {
        Gate::Respond(resp) => return resp,
        Gate::Forward {
            session,
            set_cookie,
        } => (session, set_cookie),
    };
    let (req, hop) = match rewrite(signin, req, normalized, session.as_ref(), &route, &ctx).await {
        Ok(rewritten) => rewritten,
        Err(resp) => return resp,
    };
    let resp = route
        .forwarder
        .forward(req, hop, &ctx.forward_context())
        .await;
    respond(resp, set_cookie)
}

/// wxgate's own URLs, never forwarded.
async fn own_url(
    live: &Live,
    req: &Request<Incoming>,
    ctx: &RequestContext,
) -> Option<Response<Body>> {
    let signin = &live.signin;
    let path = req.uri().path();
    if path == "/_wxgate" || path.starts_with("/_wxgate/") {
        // Forward-auth asks about another request: the routes apply to that one, as
        // its ingress reports it (believed from trusted proxies only).
        let asked = (ctx.trusted && path == "/_wxgate/auth")
            .then(|| endpoints::original_request(req.headers()))
            .flatten()
            .and_then(|(host, path)| live.routes.select(host.as_deref(), &path));
        let needs = crate::routes::needs(asked, signin.core.cfg());
        return Some(
            endpoints::handle(
                signin,
                req.method(),
                req.uri(),
                req.headers(),
                ctx.trusted,
                ctx.client,
                &needs,
            )
            .await,
        );
    }
    if path.starts_with("/MP_verify_") || path.starts_with("/WW_verify_") {
        return endpoints::verify_file(signin, path);
    }
    None
}

/// Which app the request is for: the first of `[[routes]]` for its host and path, or
/// `[upstream]` when none matches.
fn route<'a>(
    state: &'a State,
    live: &'a Live,
    normalized: &str,
    ctx: &RequestContext,
) -> RequestRoute<'a> {
    let route = live
        .routes
        .select(ctx.host.as_ref().and_then(|h| h.to_str().ok()), normalized);
    RequestRoute {
        route,
        needs: crate::routes::needs(route, live.signin.core.cfg()),
        forwarder: route
            .and_then(|r| live.forwarders.get(r.index))
            .unwrap_or(&state.forwarder),
    }
}

/// Who the request belongs to, and whether it may pass on its route.
async fn gate(
    signin: &SignIn,
    req: &Request<Incoming>,
    normalized: &str,
    route: &RequestRoute<'_>,
    ctx: &RequestContext,
) -> Gate {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    signin
        .gate(
            req.method(),
            path_and_query,
            normalized,
            req.headers(),
            ctx.client,
            &route.needs,
        )
        .await
}

/// The request as the upstream gets it: the proxy's rewriting, the route's
/// strip_prefix, then the identity for the route's audience.
async fn rewrite(
    signin: &SignIn,
    req: Request<Incoming>,
    normalized: &str,
    session: Option<&crate::session::Session>,
    route: &RequestRoute<'_>,
    ctx: &RequestContext,
) -> Result<(Request<Incoming>, crate::proxy::ClientHop), Response<Body>> {
    let (mut parts, body) = req.into_parts();
    let core = &signin.core;
    let cookie_name = core.cfg().session.cookie_name.as_str();
    let hop = route.forwarder.rewrite(
        &mut parts,
        ctx.host.clone(),
        core.identity_header(),
        ctx.trusted,
        |name| SignIn::is_own_cookie(cookie_name, name),
    );
    if let Some(stripped) = route.route.and_then(|r| r.upstream_path(normalized)) {
        match strip_to(&parts.uri, &stripped) {
            Some(uri) => parts.uri = uri,
            None => {
                metrics()
                    .denied
                    .inc(crate::metrics::labels::Denied::BadPath);
                return Err(bad_path(ctx.reply));
            }
        }
    }
    if let Some(s) = session {
        if let Err(e) = core
            .attach_identity(&mut parts.headers, s, route.needs.audience)
            .await
        {
            tracing::error!(error = %e, "cannot sign the identity header");
            return Err(e.response(ctx.reply, None));
        }
    }
    Ok((Request::from_parts(parts, body), hop))
}

/// The upstream's answer, with the session cookie re-issued when the gate slid it.
fn respond(mut resp: Response<Body>, set_cookie: Option<http::HeaderValue>) -> Response<Body> {
    if let Some(c) = set_cookie {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

/// The request target with its path replaced by what a route strips it to, its query
/// kept.
fn strip_to(uri: &http::Uri, path: &str) -> Option<http::Uri> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    http::Uri::builder().path_and_query(pq).build().ok()
}

/// The answer to a request naming no host, two hosts, or an invalid one.
pub(crate) fn bad_host(why: &str, reply: Reply) -> Response<Body> {
    crate::pages::respond(
        &crate::pages::Notice {
            status: StatusCode::BAD_REQUEST,
            code: "bad_host",
            title_zh: "请求的主机名无效",
            title_en: "Invalid host",
            detail_zh: "请求的主机名（Host）缺失、重复或无效。".into(),
            detail: format!("The request has {why}."),
            retry: None,
        },
        reply,
    )
}

/// The answer to a path that cannot be matched safely.
pub(crate) fn bad_path(reply: Reply) -> Response<Body> {
    crate::pages::respond(
        &crate::pages::Notice {
            status: StatusCode::BAD_REQUEST,
            code: "bad_path",
            title_zh: "请求路径无效",
            title_en: "Invalid request path",
            detail_zh: "路径中有编码的斜杠、控制字符，或越过了根目录。".into(),
            detail:
                "The path contains encoded slashes, control characters or climbs above the root."
                    .into(),
            retry: None,
        },
        reply,
    )
}

/// The visitor's address: the peer, or the first X-Forwarded-For hop when the peer is a
/// trusted proxy (only shown to the user, never used to decide access).
fn client_ip(h: &http::HeaderMap, peer: std::net::IpAddr, trusted: bool) -> std::net::IpAddr {
    if !trusted {
        return peer;
    }
    h.get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(peer)
}
