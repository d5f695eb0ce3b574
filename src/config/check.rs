//! From the file as written to the checked [`Config`]: one function per section, each
//! reporting its problems by key and returning its checked part when it has none
//! that stop it. Every section is checked even after a problem elsewhere, so `wxgate
//! check` lists every problem at once, in the file's order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::Uri;

use super::file;
use super::*;

/// Checks every section; the checked config, or every problem found.
pub(super) fn check(
    raw: &file::Config,
    base: &Path,
    env: &dyn Env,
) -> Result<Config, Vec<Problem>> {
    let mut p = Vec::new();
    let server = server(&raw.server, base, &mut p);
    let admin = admin(&raw.admin, listen_of(&raw.server), &mut p);
    let upstream = upstream(&raw.upstream, &mut p);
    // [wecom] stands instead of [wechat], whose keys are then not required; a hub
    // client signs in through its hub, where WeChat's credentials stay.
    let wechat = match (&raw.wecom, &raw.hub_client) {
        (None, None) => wechat(&raw.wechat, true, base, env, &mut p),
        _ => Some(WechatConfig::default()),
    };
    let wecom = match &raw.wecom {
        Some(w) => super::wecom::check(w, raw, base, env, &mut p).map(Some),
        None => Some(None),
    };
    let session = session(&raw.session, base, env, &mut p);
    let upstream_uri = uri_of(&raw.upstream);
    let identity = identity(&raw.identity, upstream_uri.as_ref(), base, env, &mut p);
    let desktop = desktop(&raw.desktop, base, env, &mut p);
    let public = parse_public_url(&raw.server.public_url).ok();
    combinations(
        raw,
        public.as_ref(),
        listen_of(&raw.server),
        upstream_uri.as_ref(),
        &mut p,
    );
    access(&raw.access, &mut p);
    // [[routes]] and the hosts they may name
    p.extend(crate::routes::check(
        &raw.routes,
        &raw.server.extra_hosts,
        public.as_ref().map(|u| u.host.as_str()),
    ));
    if raw.wecom.is_none() {
        // WeCom's lists would let nobody in and nobody out: a WeChat session has no userid.
        for (i, r) in raw.routes.iter().enumerate() {
            for (key, set) in [
                ("allowed_userids", !r.allowed_userids.is_empty()),
                ("allowed_departments", !r.allowed_departments.is_empty()),
            ] {
                if set {
                    push(
                        &mut p,
                        &format!("routes[{i}].{key}"),
                        "is for WeCom members: it needs [wecom] (use allowed_openids for WeChat users)",
                    );
                }
            }
        }
    }
    let account = match &raw.account {
        Some(a) => account(a, public.as_ref(), base, env, &mut p).map(Some),
        None => Some(None),
    };
    let https = public.as_ref().is_some_and(|u| u.https);
    let hub = match &raw.hub {
        Some(h) => hub::check(h, raw.identity.algorithm, https, base, env, &mut p).map(Some),
        None => Some(None),
    };
    let hub_client = match &raw.hub_client {
        Some(c) => {
            if raw.hub.is_some() {
                push(
                    &mut p,
                    "hub_client",
                    "and [hub] together: a hub signs its users in with WeChat itself (remove one)",
                );
            }
            if raw.wecom.is_some() {
                push(
                    &mut p,
                    "hub_client",
                    "and [wecom] together: a hub client signs in through its hub only (remove one)",
                );
            }
            if raw.account.is_some() {
                push(&mut p, "account", "needs the official account's own credentials, which stay at the hub with [hub_client]: run [account] on the hub");
            }
            hub::check_client(c, https, base, env, &mut p).map(Some)
        }
        None => Some(None),
    };
    match (
        server, admin, upstream, wechat, session, identity, desktop, account, wecom, hub,
        hub_client,
    ) {
        (
            Some(server),
            Some(admin),
            Some(upstream),
            Some(wechat),
            Some(session),
            Some(identity),
            Some(desktop),
            Some(account),
            Some(wecom),
            Some(hub),
            Some(hub_client),
        ) if p.is_empty() => Ok(Config {
            server,
            admin,
            upstream,
            wechat,
            session,
            identity,
            desktop,
            access: AccessConfig {
                public_paths: raw.access.public_paths.clone(),
                api_paths: raw.access.api_paths.clone(),
                allowed_openids: raw.access.allowed_openids.clone(),
            },
            account,
            routes: raw.routes.clone(),
            wecom,
            hub,
            hub_client,
        }),
        _ => Err(p),
    }
}

/// `server.listen` as an address, when it is one.
fn listen_of(raw: &file::ServerConfig) -> Option<SocketAddr> {
    raw.listen.parse().ok()
}

/// `upstream.url` parsed, when it is a valid one.
fn uri_of(raw: &file::UpstreamConfig) -> Option<Uri> {
    (!raw.url.is_empty())
        .then(|| parse_http_url(&raw.url).ok())
        .flatten()
}

fn server(raw: &file::ServerConfig, base: &Path, p: &mut Vec<Problem>) -> Option<ServerConfig> {
    let listen_addr = listen_of(raw);
    if listen_addr.is_none() {
        push(
            p,
            "server.listen",
            format!("{:?} is not an address like \"0.0.0.0:8080\"", raw.listen),
        );
    }
    let public = if raw.public_url.is_empty() {
        push(
            p,
            "server.public_url",
            "is required: the origin users see, e.g. \"https://app.example.com\"",
        );
        None
    } else {
        parse_public_url(&raw.public_url)
            .map_err(|m| push(p, "server.public_url", m))
            .ok()
    };
    let mut trusted = Vec::new();
    for (i, cidr) in raw.trusted_proxies.iter().enumerate() {
        match parse_cidr(cidr) {
            Ok(n) => trusted.push(n),
            Err(m) => push(p, &format!("server.trusted_proxies[{i}]"), m),
        }
    }
    let mut max_body_bytes = None;
    if let Some(size) = &raw.max_body_size {
        match parse_size(size) {
            Ok(n) => max_body_bytes = Some(n),
            Err(m) => push(p, "server.max_body_size", m),
        }
    }
    let mut max_header_len = DEFAULT_MAX_HEADER_BYTES;
    match parse_size(&raw.max_header_bytes) {
        Ok(n) if MAX_HEADER_BYTES_RANGE.contains(&n) => max_header_len = n as usize,
        Ok(_) => push(p, "server.max_header_bytes", "must be between 1KB and 1MB"),
        Err(m) => push(p, "server.max_header_bytes", m),
    }
    if raw.body_timeout.get().is_zero() {
        push(p, "server.body_timeout", "must be more than 0s");
    }
    if raw.max_connections == Some(0) {
        push(p, "server.max_connections", "must be at least 1");
    }
    if let Some(n) = raw.workers {
        if !(1..=MAX_WORKERS).contains(&n) {
            push(
                p,
                "server.workers",
                format!("must be between 1 and {MAX_WORKERS}"),
            );
        }
    }
    let tls = match (&raw.tls_cert_file, &raw.tls_key_file) {
        (Some(c), Some(k)) => {
            for (key, f) in [("server.tls_cert_file", c), ("server.tls_key_file", k)] {
                if !base.join(f).is_file() {
                    push(p, key, format!("cannot read {}", f.display()));
                }
            }
            Some(TlsFiles {
                cert: base.join(c),
                key: base.join(k),
            })
        }
        (Some(_), None) => {
            push(
                p,
                "server.tls_key_file",
                "is required with server.tls_cert_file",
            );
            None
        }
        (None, Some(_)) => {
            push(
                p,
                "server.tls_cert_file",
                "is required with server.tls_key_file",
            );
            None
        }
        (None, None) => None,
    };
    Some(ServerConfig {
        listen: raw.listen.clone(),
        listen_addr: listen_addr?,
        public_url: raw.public_url.clone(),
        public: public?,
        trusted,
        max_body_bytes,
        max_connections: raw.max_connections,
        workers: raw.workers,
        tls,
        header_read_timeout: raw.header_read_timeout,
        shutdown_timeout: raw.shutdown_timeout,
        idle_timeout: raw.idle_timeout,
        max_header_len,
        body_timeout: raw.body_timeout,
        extra_hosts: raw.extra_hosts.clone(),
        access_log: raw.access_log,
    })
}

fn admin(
    raw: &file::AdminConfig,
    server_listen: Option<SocketAddr>,
    p: &mut Vec<Problem>,
) -> Option<AdminConfig> {
    match raw.listen.parse::<SocketAddr>() {
        Ok(a) => {
            // Port 0 asks the system for a free port: two of those never collide.
            if a.port() != 0 && Some(a) == server_listen {
                push(
                    p,
                    "admin.listen",
                    "must differ from server.listen (admin endpoints never share the public port)",
                );
            }
            Some(AdminConfig {
                listen: raw.listen.clone(),
                listen_addr: a,
            })
        }
        Err(_) => {
            push(
                p,
                "admin.listen",
                format!("{:?} is not an address like \"127.0.0.1:9090\"", raw.listen),
            );
            None
        }
    }
}

fn upstream(raw: &file::UpstreamConfig, p: &mut Vec<Problem>) -> Option<UpstreamConfig> {
    let uri = if raw.url.is_empty() {
        push(
            p,
            "upstream.url",
            "is required, e.g. \"http://127.0.0.1:3000\"",
        );
        None
    } else {
        parse_http_url(&raw.url)
            .map_err(|m| push(p, "upstream.url", m))
            .ok()
    };
    if raw.timeout.get().is_zero() {
        push(p, "upstream.timeout", "must be more than 0s");
    }
    if raw.body_timeout.get().is_zero() {
        push(p, "upstream.body_timeout", "must be more than 0s");
    }
    for (i, proto) in raw.upgrades.iter().enumerate() {
        if let Err(m) = check_upgrade(proto) {
            push(p, &format!("upstream.upgrades[{i}]"), m);
        }
    }
    Some(UpstreamConfig {
        url: raw.url.clone(),
        uri: uri?,
        timeout: raw.timeout,
        connect_timeout: raw.connect_timeout,
        preserve_host: raw.preserve_host,
        pool_idle_timeout: raw.pool_idle_timeout,
        body_timeout: raw.body_timeout,
        upgrades: raw.upgrades.clone(),
    })
}

fn wechat(
    raw: &file::WechatConfig,
    needed: bool,
    base: &Path,
    env: &dyn Env,
    p: &mut Vec<Problem>,
) -> Option<WechatConfig> {
    let appid_ok = |s: &str| {
        s.len() >= 6 && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    if raw.appid.is_empty() {
        if needed {
            push(
                p,
                "wechat.appid",
                "is required (the official account's AppID, \"wx...\")",
            );
        }
    } else if !appid_ok(&raw.appid) {
        push(
            p,
            "wechat.appid",
            format!("{:?} does not look like an AppID", raw.appid),
        );
    }
    let secret = match resolve_secret(
        &raw.secret,
        raw.secret_file.as_deref(),
        "WXGATE_WECHAT_SECRET",
        base,
        env,
    ) {
        Ok(Some(s)) => Some(s),
        Ok(None) if !needed => Some(String::new()),
        Ok(None) => {
            push(
                p,
                "wechat.secret",
                "is required (or wechat.secret_file, or env WXGATE_WECHAT_SECRET)",
            );
            None
        }
        Err(m) => {
            push(p, "wechat.secret_file", m);
            None
        }
    };
    for (key, url) in [
        ("wechat.authorize_url", &raw.authorize_url),
        ("wechat.qrconnect_url", &raw.qrconnect_url),
        ("wechat.api_base_url", &raw.api_base_url),
    ] {
        if let Err(m) = parse_http_url(url) {
            push(p, key, m);
        }
    }
    if !matches!(raw.lang.as_str(), "zh_CN" | "zh_TW" | "en") {
        push(
            p,
            "wechat.lang",
            format!("{:?}: WeChat accepts zh_CN, zh_TW or en", raw.lang),
        );
    }
    for name in raw.verify_files.keys() {
        if !is_verify_file_name(name) {
            push(
                p,
                "wechat.verify_files",
                format!("{name:?}: WeChat's file names look like \"MP_verify_abc123.txt\""),
            );
        }
    }
    Some(WechatConfig {
        appid: raw.appid.clone(),
        secret: secret?,
        scope: raw.scope,
        lang: raw.lang.clone(),
        authorize_url: raw.authorize_url.clone(),
        qrconnect_url: raw.qrconnect_url.clone(),
        api_base_url: raw.api_base_url.trim_end_matches('/').to_string(),
        verify_files: raw.verify_files.clone(),
        timeout: raw.timeout,
        force_popup: raw.force_popup,
    })
}

fn session(
    raw: &file::SessionConfig,
    base: &Path,
    env: &dyn Env,
    p: &mut Vec<Problem>,
) -> Option<SessionConfig> {
    if !is_token(&raw.cookie_name) {
        push(
            p,
            "session.cookie_name",
            format!("{:?} is not a valid cookie name", raw.cookie_name),
        );
    }
    let mut secret_generated = false;
    let secret_bytes = match resolve_secret(
        &raw.secret,
        raw.secret_file.as_deref(),
        "WXGATE_SESSION_SECRET",
        base,
        env,
    ) {
        Ok(Some(s)) => match decode_secret(&s) {
            Ok(b) => Some(b),
            // Name where the bad value is, so the right place gets fixed.
            Err(m) => {
                match (env.var("WXGATE_SESSION_SECRET").is_some(), &raw.secret_file) {
                    (true, _) => push(
                        p,
                        "WXGATE_SESSION_SECRET",
                        format!("(the environment variable, which overrides session.secret) {m}"),
                    ),
                    (false, Some(f)) => {
                        push(p, "session.secret_file", format!("{}: {m}", f.display()))
                    }
                    (false, None) => push(p, "session.secret", m),
                }
                None
            }
        },
        Ok(None) if raw.store == StoreKind::Memory => {
            // Memory sessions die with the process anyway; a random secret costs
            // nothing but the state cookies of sign-ins in flight at a restart.
            secret_generated = true;
            Some(crate::random::bytes(32))
        }
        Ok(None) => {
            push(p, "session.secret", format!(
                "is required with store = \"{}\" (>= 32 bytes, the same on every replica; `wxgate keygen` prints one)",
                raw.store.as_str()));
            None
        }
        Err(m) => {
            push(p, "session.secret_file", m);
            None
        }
    };
    let mut previous_secret_bytes = Vec::new();
    for (i, s) in raw.previous_secrets.iter().enumerate() {
        match decode_secret(s) {
            Ok(b) => previous_secret_bytes.push(b),
            Err(m) => push(p, &format!("session.previous_secrets[{i}]"), m),
        }
    }
    if raw.ttl.get().as_secs() < 60 {
        push(p, "session.ttl", "must be at least 1m");
    }
    if raw.max_sessions == 0 {
        push(p, "session.max_sessions", "must be at least 1");
    }
    if raw.store == StoreKind::Redis {
        let urls: Vec<&String> = if raw.redis_cluster_urls.is_empty() {
            vec![&raw.redis_url]
        } else {
            raw.redis_cluster_urls.iter().collect()
        };
        for u in urls {
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                push(
                    p,
                    "session.redis_url",
                    format!("{u:?} must start with redis:// or rediss://"),
                );
            }
        }
        if raw.redis_timeout.get().is_zero() {
            push(p, "session.redis_timeout", "must be more than 0s");
        }
    }
    if raw.redis_prefix.is_empty() {
        push(p, "session.redis_prefix", "must not be empty");
    }
    Some(SessionConfig {
        store: raw.store,
        cookie_name: raw.cookie_name.clone(),
        ttl: raw.ttl,
        same_site: raw.same_site,
        secure: raw.secure,
        refresh_interval: raw.refresh_interval,
        max_sessions: raw.max_sessions,
        redis_url: raw.redis_url.clone(),
        redis_cluster_urls: raw.redis_cluster_urls.clone(),
        redis_prefix: raw.redis_prefix.clone(),
        redis_connect_timeout: raw.redis_connect_timeout,
        redis_timeout: raw.redis_timeout,
        redis_required_at_start: raw.redis_required_at_start,
        cache_ttl: raw.cache_ttl,
        secret_bytes: secret_bytes?,
        previous_secret_bytes,
        secret_generated,
    })
}

fn identity(
    raw: &file::IdentityConfig,
    upstream: Option<&Uri>,
    base: &Path,
    env: &dyn Env,
    p: &mut Vec<Problem>,
) -> Option<IdentityConfig> {
    if http::HeaderName::from_bytes(raw.header.as_bytes()).is_err() {
        push(
            p,
            "identity.header",
            format!("{:?} is not a valid header name", raw.header),
        );
    }
    let signing_key_pem = match resolve_secret(
        &raw.signing_key,
        non_empty_path(&raw.signing_key_file).as_deref(),
        "WXGATE_SIGNING_KEY",
        base,
        env,
    ) {
        Ok(k) => Some(k),
        Err(m) => {
            push(p, "identity.signing_key_file", m);
            None
        }
    };
    if raw.ttl.get().as_secs() < 10 {
        push(p, "identity.ttl", "must be at least 10s");
    }
    let audience = match (raw.audience.is_empty(), upstream) {
        (true, Some(u)) => origin_of(u),
        _ => raw.audience.clone(),
    };
    Some(IdentityConfig {
        header: raw.header.clone(),
        algorithm: raw.algorithm,
        signing_key_pem: signing_key_pem?,
        audience,
        ttl: raw.ttl,
        plain_headers: raw.plain_headers,
        subject: raw.subject,
    })
}

fn desktop(
    raw: &file::DesktopConfig,
    base: &Path,
    env: &dyn Env,
    p: &mut Vec<Problem>,
) -> Option<DesktopConfig> {
    let mut website_secret = raw.website_secret.clone();
    if raw.mode == DesktopMode::Qrconnect {
        if raw.website_appid.is_empty() {
            push(
                p,
                "desktop.website_appid",
                "is required with mode = \"qrconnect\"",
            );
        }
        match resolve_secret(
            &raw.website_secret,
            raw.website_secret_file.as_deref(),
            "WXGATE_WEBSITE_SECRET",
            base,
            env,
        ) {
            Ok(Some(s)) => website_secret = s,
            Ok(None) => push(
                p,
                "desktop.website_secret",
                "is required with mode = \"qrconnect\"",
            ),
            Err(m) => push(p, "desktop.website_secret_file", m),
        }
    }
    if raw.ticket_ttl.get().as_secs() < 10 {
        push(p, "desktop.ticket_ttl", "must be at least 10s");
    }
    if raw.max_tickets == 0 {
        push(p, "desktop.max_tickets", "must be at least 1");
    }
    Some(DesktopConfig {
        mode: raw.mode,
        website_appid: raw.website_appid.clone(),
        website_secret,
        ticket_ttl: raw.ticket_ttl,
        max_tickets: raw.max_tickets,
    })
}

/// Settings each valid alone that together can never sign anyone in. Each problem
/// names both keys, so the fix is clear whichever one is wrong.
fn combinations(
    raw: &file::Config,
    public: Option<&PublicUrl>,
    listen: Option<SocketAddr>,
    upstream: Option<&Uri>,
    p: &mut Vec<Problem>,
) {
    let Some(public) = public else {
        return;
    };
    let secure = cookie_secure(raw.session.secure, public);
    if raw.session.secure == Some(true) && !public.https {
        push(p, "session.secure", "true needs an https server.public_url: browsers never send Secure cookies over http, so every sign-in would end on \"started in another browser\" (use https, or remove session.secure)");
    }
    if raw.session.same_site == SameSite::None && !secure {
        push(p, "session.same_site", "\"none\" needs Secure cookies, which need an https server.public_url (and session.secure not false): browsers drop SameSite=None cookies without Secure");
    }
    let name = &raw.session.cookie_name;
    if (name.starts_with("__Secure-") || name.starts_with("__Host-")) && !secure {
        push(p, "session.cookie_name", format!("{name:?}: browsers keep __Secure- and __Host- cookies only when Secure, which needs an https server.public_url (and session.secure not false)"));
    }
    if public.host == "0.0.0.0" || public.host == "[::]" {
        push(p, "server.public_url", format!("{:?} is an address to listen on (server.listen), not one a browser or WeChat can open: use the host name users type", public.origin));
    }
    if let (Some(listen), Some(upstream)) = (listen, upstream) {
        if points_at(upstream, listen) {
            push(p, "upstream.url", format!("{:?} is wxgate's own server.listen: every request would be forwarded back to wxgate; point it at the app", raw.upstream.url));
        }
    }
}

fn access(raw: &file::AccessConfig, p: &mut Vec<Problem>) {
    for (key, list) in [
        ("access.public_paths", &raw.public_paths),
        ("access.api_paths", &raw.api_paths),
    ] {
        for (i, pat) in list.iter().enumerate() {
            if let Err(m) = check_path_pattern(pat) {
                push(p, &format!("{key}[{i}]"), m);
            }
        }
    }
}

fn account(
    raw: &file::AccountConfig,
    public: Option<&PublicUrl>,
    base: &Path,
    env: &dyn Env,
    p: &mut Vec<Problem>,
) -> Option<AccountConfig> {
    let mut token_endpoint_secret = String::new();
    match resolve_secret(
        &raw.token_endpoint_secret,
        raw.token_endpoint_secret_file.as_deref(),
        "WXGATE_TOKEN_ENDPOINT_SECRET",
        base,
        env,
    ) {
        Ok(Some(s)) if s.trim().len() < 32 => push(
            p,
            "account.token_endpoint_secret",
            format!(
                "must be at least 32 characters (got {}); `wxgate keygen` prints one",
                s.trim().len()
            ),
        ),
        Ok(s) => token_endpoint_secret = s.unwrap_or_default(),
        Err(m) => push(p, "account.token_endpoint_secret_file", m),
    }
    let ahead = raw.refresh_ahead.get();
    if ahead < std::time::Duration::from_secs(1) || ahead > MAX_REFRESH_AHEAD {
        push(
            p,
            "account.refresh_ahead",
            "must be between 1s and 5m (WeChat renews a stable token only in its last 5 minutes)",
        );
    }
    let mut jssdk_hosts = Vec::new();
    for (i, host) in raw.jssdk_hosts.iter().enumerate() {
        match check_host_pattern(host) {
            Ok(h) => jssdk_hosts.push(h),
            Err(m) => push(p, &format!("account.jssdk_hosts[{i}]"), m),
        }
    }
    if raw.jssdk_hosts.is_empty() {
        if let Some(public) = public {
            jssdk_hosts.push(public.host.clone());
        }
    }
    if raw.subscribe_claim && raw.token == TokenMode::Off {
        push(
            p,
            "account.subscribe_claim",
            "needs the account's access_token: account.token must be \"stable\" or \"classic\"",
        );
    }
    if raw.subscribe_ttl.get() < std::time::Duration::from_secs(1) {
        push(p, "account.subscribe_ttl", "must be at least 1s");
    }
    Some(AccountConfig {
        token: raw.token,
        token_endpoint_secret,
        refresh_ahead: raw.refresh_ahead,
        jssdk_hosts,
        subscribe_claim: raw.subscribe_claim,
        subscribe_ttl: raw.subscribe_ttl,
    })
}

fn non_empty_path(s: &str) -> Option<PathBuf> {
    (!s.is_empty()).then(|| PathBuf::from(s))
}
