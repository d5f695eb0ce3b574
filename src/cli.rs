//! What each `wxgate` command does, as library functions (main.rs only parses
//! arguments and prints errors).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::config::{self, Config};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot listen on {key} = {addr}: {}", crate::server::bind_problem(.error))]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    App(String),
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, CliError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| CliError::Bind { key, addr, error })
}

/// `wxgate keygen`.
pub fn keygen_text() -> String {
    let (secret, pem) = crate::identity::keygen();
    format!(
        "# Session secret (session.secret or env WXGATE_SESSION_SECRET; the same on every replica):\n{secret}\n\n\
# ES256 signing key (save as the file named by identity.signing_key_file; the same on every replica):\n{pem}"
    )
}

/// `wxgate serve`: SIGTERM/SIGINT drain and exit, SIGHUP reloads the file.
pub async fn serve(cfg: Config, path: PathBuf) -> Result<(), CliError> {
    let public = bind("server.listen", cfg.server.listen_addr).await?;
    let admin = bind("admin.listen", cfg.admin.listen_addr).await?;
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel::<Config>(1);
    spawn_reloader(path, reload_tx);
    crate::app::run_with_reload(
        cfg,
        crate::app::Listeners { public, admin },
        shutdown_signal(),
        reload_rx,
    )
    .await
    .map_err(|e| CliError::App(e.to_string()))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => info!("SIGTERM: draining and shutting down"),
                    _ = tokio::signal::ctrl_c() => info!("SIGINT: draining and shutting down"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(unix)]
fn spawn_reloader(path: PathBuf, tx: tokio::sync::mpsc::Sender<Config>) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            warn!("cannot listen for SIGHUP: reload is disabled");
            return;
        };
        while hup.recv().await.is_some() {
            match config::load(&path) {
                Ok(cfg) => {
                    info!(file = %path.display(), "SIGHUP: configuration reloaded from file, applying");
                    if tx.send(cfg).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    crate::metrics::metrics()
                        .config_reloads
                        .inc(crate::metrics::labels::Reload::Invalid);
                    error!(file = %path.display(), problems = %e.problems().join("; "), "SIGHUP: the new configuration is invalid; still serving the previous one");
                }
            }
        }
    });
}

#[cfg(not(unix))]
fn spawn_reloader(_path: PathBuf, _tx: tokio::sync::mpsc::Sender<Config>) {}

/// `wxgate mock-wechat --listen ADDR`.
pub async fn mock_wechat(listen: SocketAddr) -> Result<(), CliError> {
    let listener = bind("--listen", listen).await?;
    let mock = crate::mock::MockWechat::new(crate::mock::MockConfig::default());
    let cfg = mock.config();
    println!(
        "mock WeChat on http://{listen}  (appid {}, secret {})",
        cfg.appid, cfg.secret
    );
    println!("  authorize_url = \"http://{listen}/connect/oauth2/authorize\"");
    println!("  api_base_url  = \"http://{listen}\"");
    let w = &cfg.wecom;
    println!(
        "mock WeCom: corp_id {}, agent_id {}, secret {}",
        w.corp_id, w.agent_id, w.secret
    );
    println!("  sso_url       = \"http://{listen}/wwlogin/sso/login\"  (the others as above)");
    crate::mock::serve(listener, mock, shutdown_signal()).await;
    Ok(())
}

/// `wxgate demo`: prints the URL to open, runs until Ctrl-C. Everything a browser
/// touches (wxgate, the demo app, the mock's sign-in pages and simulated phone) is on
/// `listen`; `public_url` is how other machines reach it (default: `http://LISTEN`).
pub async fn demo(
    listen: SocketAddr,
    public_url: Option<String>,
    wecom: bool,
    hub: bool,
) -> Result<(), CliError> {
    if listen.ip().is_unspecified() && public_url.is_none() {
        return Err(CliError::Config(format!(
            "demo --listen {listen} listens on every address of this machine, so which one other machines use is unknown: add --public-url http://ADDRESS:{} (this machine's address or name as they reach it)",
            listen.port()
        )));
    }
    let public = bind("--listen", listen).await?;
    let bound = local(&public)?;
    let public_url = match public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => format!("http://{bound}"),
    };
    let admin = bind("admin", SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let app_listener = bind("demo app", SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let mock_listener = bind("mock WeChat", SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let (admin_addr, app_addr, mock_addr) = (
        local(&admin)?,
        local(&app_listener)?,
        local(&mock_listener)?,
    );
    let public_host = public_url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_string()))
        .ok_or_else(|| {
            CliError::Config(format!(
                "--public-url {public_url:?} is not a URL like http://192.0.2.10:8080"
            ))
        })?;
    let mock_cfg = crate::mock::MockConfig {
        authorized_hosts: vec![public_host.clone()],
        wecom: crate::mock::WecomMockConfig {
            trusted_domains: vec![public_host],
            ..crate::mock::WecomMockConfig::default()
        },
        ..crate::mock::MockConfig::default()
    };
    let mock = crate::mock::MockWechat::new(mock_cfg);
    let demo_mock = crate::demo::DemoMock {
        api: mock_addr,
        appid: mock.config().appid.clone(),
        secret: mock.config().secret.clone(),
    };
    tokio::spawn(crate::mock::serve(
        mock_listener,
        mock.clone(),
        std::future::pending::<()>(),
    ));

    let mut text = if wecom {
        crate::demo::demo_wecom_config_toml(
            bound,
            &public_url,
            admin_addr,
            app_addr,
            mock_addr,
            &mock.config().wecom,
        )
    } else {
        crate::demo::demo_config_toml(bound, &public_url, admin_addr, app_addr, &demo_mock)
    };
    let apps = if hub {
        let apps = demo_apps(listen, &public_url).await?;
        text.push_str(&crate::demo::demo_hub_clients_toml(
            apps.iter().map(|(a, ..)| a),
        ));
        apps
    } else {
        Vec::new()
    };
    let cfg = config::from_toml(&text, std::path::Path::new("."), &config::ProcessEnv)
        .map_err(|e| CliError::Config(format!("--public-url: {}", e.problems().join("; "))))?;
    let issuer = format!("{}/_wxgate", cfg.public().origin);
    let app_urls: Vec<(String, String)> = apps
        .iter()
        .map(|(a, ..)| (a.name.clone(), a.public_url.clone()))
        .collect();
    if let [(_, crm), (_, wiki)] = app_urls.as_slice() {
        info!(hub = %public_url, crm = %crm, wiki = %wiki, "wxgate demo --hub");
    }
    for (app, listeners, app_listener) in apps {
        start_demo_app(app, listeners, app_listener, &issuer, &mock).await?;
    }
    // The demo app asks wxgate for its keys over loopback, whatever the public name.
    let jwks_port = bound.port();
    let jwks_ip = if bound.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        bound.ip()
    };
    tokio::spawn(crate::demo::serve_demo_app(
        app_listener,
        mock,
        format!(
            "http://{}/_wxgate/jwks.json",
            SocketAddr::new(jwks_ip, jwks_port)
        ),
        issuer,
        cfg.identity.audience.clone(),
    ));
    if hub {
        println!();
        println!("  wxgate demo --hub is running: two apps on their own origins sign in through");
        println!("  the hub, the one wxgate at the WeChat-authorized origin:");
        println!();
        println!("      hub    {public_url}/");
        for (name, url) in &app_urls {
            println!("      {name:<6} {url}/");
        }
        println!();
        println!("  Sign in at one app, then open the other: no second WeChat authorization.");
    }
    println!();
    println!("  wxgate demo is running. Open this in a browser (a phone's WeChat works too):");
    println!();
    println!("      {public_url}/");
    println!();
    if wecom {
        println!("  One port serves it all: wxgate, the demo app behind it, and the mock WeCom's");
        println!("  sign-in pages. A computer gets WeCom's web-login QR; its \"simulate a scan\"");
        println!("  button plays the member's phone. Metrics: http://{admin_addr}/metrics");
    } else {
        println!("  One port serves it all: wxgate, the demo app behind it, and the mock WeChat's");
        println!("  sign-in pages. A computer gets the scan-to-sign-in page; its \"simulate the");
        println!("  phone\" link plays WeChat. Metrics: http://{admin_addr}/metrics");
    }
    println!();
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    crate::app::run_with_reload(
        cfg,
        crate::app::Listeners { public, admin },
        shutdown_signal(),
        rx,
    )
    .await
    .map_err(|e| CliError::App(e.to_string()))
}

fn local(l: &TcpListener) -> Result<SocketAddr, CliError> {
    l.local_addr().map_err(|e| CliError::App(e.to_string()))
}

/// `wxgate sessions count`.
pub async fn sessions_count(cfg: &Config) -> Result<usize, CliError> {
    require_shared_store(cfg)?;
    let store = open_store(cfg).await?;
    store
        .count()
        .await
        .map_err(|e| CliError::Store(e.to_string()))
}

/// `wxgate sessions revoke --openid`.
pub async fn sessions_revoke(cfg: &Config, openid: &str) -> Result<usize, CliError> {
    require_shared_store(cfg)?;
    let store = Arc::new(open_store(cfg).await?);
    store
        .revoke_openid(openid)
        .await
        .map_err(|e| CliError::Store(e.to_string()))
}

async fn open_store(cfg: &Config) -> Result<crate::session::Store, CliError> {
    crate::session::Store::from_config(&cfg.session)
        .await
        .map_err(|e| CliError::Store(crate::session::open_problem(&cfg.session, &e)))
}

/// `sessions` commands run in their own process: only a store outside the proxy's
/// memory can be counted or revoked from there.
fn require_shared_store(cfg: &Config) -> Result<(), CliError> {
    match cfg.session.store {
        config::StoreKind::Redis => Ok(()),
        other => Err(CliError::Config(format!(
            "session.store = \"{}\" keeps no sessions this command can reach; use store = \"redis\" (the memory store lives inside the running proxy, the cookie store in browsers)",
            other.as_str()
        ))),
    }
}

/// The apps of `wxgate demo --hub`: their listeners bound on the demo's address, their
/// public URLs on the host of the hub's.
async fn demo_apps(
    listen: SocketAddr,
    hub_url: &str,
) -> Result<Vec<(crate::demo::DemoApp, crate::app::Listeners, TcpListener)>, CliError> {
    let hub: http::Uri = hub_url
        .parse()
        .map_err(|_| CliError::Config(format!("--public-url {hub_url:?} is not a URL")))?;
    let (scheme, host) = (
        hub.scheme_str().unwrap_or("http").to_string(),
        hub.host().unwrap_or("127.0.0.1").to_string(),
    );
    let mut apps = Vec::new();
    for name in ["crm", "wiki"] {
        let public = bind("demo app", SocketAddr::new(listen.ip(), 0)).await?;
        let admin = bind("admin", SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let upstream = bind("demo app", SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let app = crate::demo::DemoApp {
            name: name.to_string(),
            listen: local(&public)?,
            public_url: format!("{scheme}://{host}:{}", local(&public)?.port()),
            admin: local(&admin)?,
            upstream: local(&upstream)?,
            secret: crate::identity::keygen().0,
        };
        apps.push((app, crate::app::Listeners { public, admin }, upstream));
    }
    Ok(apps)
}

/// Runs one app of `wxgate demo --hub`: its wxgate and the demo app behind it.
async fn start_demo_app(
    app: crate::demo::DemoApp,
    listeners: crate::app::Listeners,
    app_listener: TcpListener,
    hub_issuer: &str,
    mock: &crate::mock::MockWechat,
) -> Result<(), CliError> {
    let text = crate::demo::demo_app_config_toml(&app, hub_issuer);
    let cfg = config::from_toml(&text, std::path::Path::new("."), &config::ProcessEnv)
        .map_err(|e| CliError::Config(format!("demo --hub: {}", e.problems().join("; "))))?;
    let jwks_ip = if app.listen.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        app.listen.ip()
    };
    tokio::spawn(crate::demo::serve_demo_app(
        app_listener,
        mock.clone(),
        format!(
            "http://{}/_wxgate/jwks.json",
            SocketAddr::new(jwks_ip, app.listen.port())
        ),
        format!("{}/_wxgate", app.public_url),
        cfg.identity.audience.clone(),
    ));
    let name = app.name.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::app::run(cfg, listeners, std::future::pending::<()>()).await {
            tracing::error!(app = %name, error = %e, "demo app stopped");
        }
    });
    Ok(())
}
