//! The configuration in two layers: [`file`](mod@file), the TOML file as written (serde structs,
//! every key with its default), and [`Config`], the checked configuration the running
//! code reads, whose derived values (parsed addresses and URLs, resolved secrets) are
//! plain fields, never re-parsed and never missing.
//!
//! Parsing (TOML syntax, types, unknown keys) stops at the first error and reports its
//! key and line; checking then goes section by section (`check`) and collects every
//! problem, so `wxgate check` can list them all at once.

mod check;
mod duration;
pub mod file;
mod hub;
mod parse;
mod wecom;

pub use duration::{format_duration, parse_duration, parse_size, Dur};
pub use hub::{
    check_redirect_uri, secret_env_name, HubClient, HubClientConfig, HubConfig, CODE_TTL,
};
pub use wecom::{WecomConfig, WecomScope};

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::Uri;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The checked configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub upstream: UpstreamConfig,
    pub wechat: WechatConfig,
    pub session: SessionConfig,
    pub identity: IdentityConfig,
    pub desktop: DesktopConfig,
    pub access: AccessConfig,
    /// The account's own services (absent: none of them).
    pub account: Option<AccountConfig>,
    /// `[[routes]]` as written and checked; `routes::RouteTable` is built from them.
    pub routes: Vec<RouteConfig>,
    /// An OpenID Connect provider for other apps (absent: off).
    pub hub: Option<HubConfig>,
    /// Sign in through a hub instead of WeChat (absent: WeChat).
    pub hub_client: Option<HubClientConfig>,
    /// WeCom instead of an official account (absent: `[wechat]` signs users in).
    pub wecom: Option<WecomConfig>,
}

/// `[server]`, checked.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// As written (shown by `wxgate check`, compared on reload).
    pub listen: String,
    pub listen_addr: SocketAddr,
    /// As written.
    pub public_url: String,
    pub public: PublicUrl,
    /// `trusted_proxies`, parsed.
    pub trusted: Vec<IpNet>,
    /// `max_body_size` in bytes; None: no limit.
    pub max_body_bytes: Option<u64>,
    pub max_connections: Option<usize>,
    /// Threads serving client connections, each with its own event loop and upstream
    /// connection pool (nginx's worker model). None: one per CPU core.
    pub workers: Option<usize>,
    /// The certificate and key files, from the config file's directory.
    pub tls: Option<TlsFiles>,
    /// Time allowed for a client to send a complete request head (slowloris guard).
    pub header_read_timeout: Dur,
    /// How long in-flight requests may run after SIGTERM before the process exits.
    pub shutdown_timeout: Dur,
    /// Idle keep-alive connections are closed after this long.
    pub idle_timeout: Dur,
    /// `max_header_bytes` in bytes: the largest request head accepted; beyond it 431.
    pub max_header_len: usize,
    /// Idle time allowed between two reads of a client's request body.
    pub body_timeout: Dur,
    /// Host names besides public_url's that routes may serve (exact or "*.example.com").
    pub extra_hosts: Vec<String>,
    /// How request lines are written: batched (default), one write each, or not at all.
    pub access_log: AccessLog,
}

/// `server.tls_cert_file` and `server.tls_key_file`, as paths to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `server.public_url`, split once: every redirect_uri and absolute URL is built from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicUrl {
    /// "https://app.example.com" (no trailing slash, no path).
    pub origin: String,
    pub https: bool,
    /// The host WeChat's callback domain must equal (no port).
    pub host: String,
    /// A path prefix when wxgate is served under one (usually empty).
    pub path_prefix: String,
}

/// `server.access_log`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    /// Lines collected in memory and written by a background thread, at least every
    /// half second and at every exit: far fewer write(2) calls under load.
    #[default]
    Buffered,
    /// One write(2) per request, as it is answered.
    Line,
    /// No request lines.
    Off,
}

/// More threads than this is a typo, not a machine.
pub const MAX_WORKERS: usize = 1024;

/// `server.max_header_bytes` by default (64 KB), and the range it may take: a head
/// smaller than 1 KB leaves no room for a cookie, and one over 1 MB is held in memory
/// per connection for nobody's benefit.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 << 10;
pub const MAX_HEADER_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1 << 10..=1 << 20;

impl ServerConfig {
    /// `workers`, or one per CPU core (as the process's CPU quota allows).
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Scope {
    #[serde(rename = "snsapi_base")]
    Base,
    #[serde(rename = "snsapi_userinfo")]
    UserInfo,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Base => "snsapi_base",
            Scope::UserInfo => "snsapi_userinfo",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Memory,
    Cookie,
    Redis,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Cookie => "cookie",
            StoreKind::Redis => "redis",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Algorithm {
    ES256,
    EdDSA,
    RS256,
    HS256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::RS256 => "RS256",
            Algorithm::HS256 => "HS256",
        }
    }
}

/// `identity.subject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    #[default]
    Openid,
    /// The unionid when WeChat gave one, else the openid (claim `sub_type` says which).
    Unionid,
}

/// What a route asks of a visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Sign-in required; a navigation goes to WeChat.
    #[default]
    SignedIn,
    /// No sign-in needed; the identity is still sent when there is a session.
    Public,
    /// Sign-in required; without it 401 JSON, never a redirect.
    Api,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::SignedIn => "signed_in",
            Access::Public => "public",
            Access::Api => "api",
        }
    }
}

/// One `[[routes]]` entry as written (checked by `routes::check`, compiled into a
/// `routes::RouteTable`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Exact, or "*.example.com" (one or more labels); absent: any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Exact, or a prefix "/x/*"; absent: any path.
    #[serde(default)]
    pub path: Option<String>,
    pub upstream: String,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default)]
    pub access: Access,
    /// The scope this route needs (absent: whatever the session has).
    #[serde(default)]
    pub scope: Option<Scope>,
    /// Non-empty: only these users, on this route (instead of access.allowed_openids).
    #[serde(default)]
    pub allowed_openids: Vec<String>,
    /// The identity token's `aud` here (empty: the route upstream's origin).
    #[serde(default)]
    pub audience: String,
    /// With `[wecom]`: only these members (by userid) on this route; with
    /// `allowed_departments`, a member on either list. Empty: every member `[wecom]` admits.
    #[serde(default)]
    pub allowed_userids: Vec<String>,
    /// With `[wecom]`: only members directly in one of these departments (by id).
    #[serde(default)]
    pub allowed_departments: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DesktopMode {
    Qr,
    Qrconnect,
    Off,
}

impl DesktopMode {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            DesktopMode::Qr => "qr",
            DesktopMode::Qrconnect => "qrconnect",
            DesktopMode::Off => "off",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenMode {
    /// `POST cgi-bin/stable_token`: does not invalidate other holders' tokens.
    Stable,
    /// `GET cgi-bin/token`: every fetch invalidates the previous token 5 minutes later.
    Classic,
    Off,
}

impl TokenMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenMode::Stable => "stable",
            TokenMode::Classic => "classic",
            TokenMode::Off => "off",
        }
    }
}

/// `[admin]`, checked.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: String,
    pub listen_addr: SocketAddr,
}

/// `[upstream]`, checked.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// As written.
    pub url: String,
    pub uri: Uri,
    /// Time to the upstream's response headers; beyond it the client gets 504.
    pub timeout: Dur,
    pub connect_timeout: Dur,
    pub preserve_host: bool,
    /// Idle pooled connections to the upstream are closed after this long.
    pub pool_idle_timeout: Dur,
    /// Idle time allowed between two reads of the upstream's response body.
    pub body_timeout: Dur,
    /// The only `Upgrade` protocols forwarded (compared without case); never h2c.
    pub upgrades: Vec<String>,
}

/// `[wechat]`, checked: the secret resolved (environment, file or inline).
#[derive(Debug, Clone)]
pub struct WechatConfig {
    pub appid: String,
    pub secret: String,
    pub scope: Scope,
    pub lang: String,
    pub authorize_url: String,
    pub qrconnect_url: String,
    /// Without a trailing slash.
    pub api_base_url: String,
    pub verify_files: BTreeMap<String, String>,
    /// Per-call timeout for the WeChat API.
    pub timeout: Dur,
    /// Add `forcePopup=true` to the authorize URL (always show the consent popup).
    pub force_popup: bool,
}

/// `[session]`, checked: the secrets decoded.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub store: StoreKind,
    pub cookie_name: String,
    pub ttl: Dur,
    pub same_site: SameSite,
    pub secure: Option<bool>,
    /// snsapi_userinfo profiles older than this are refreshed with the refresh_token.
    pub refresh_interval: Dur,
    /// memory store: the most sessions kept; the oldest are dropped beyond it.
    pub max_sessions: usize,
    pub redis_url: String,
    /// Redis Cluster: the node URLs (when set, `redis_url` is ignored).
    pub redis_cluster_urls: Vec<String>,
    pub redis_prefix: String,
    pub redis_connect_timeout: Dur,
    pub redis_timeout: Dur,
    /// false: start even when Redis is unreachable, reporting not ready until it answers.
    pub redis_required_at_start: bool,
    /// Keep Redis sessions in process memory this long (0s = off). Revocation on another
    /// replica then takes up to this long to be seen here.
    pub cache_ttl: Dur,
    /// `secret`, decoded.
    pub secret_bytes: Vec<u8>,
    /// `previous_secrets`, decoded: still accepted when reading cookies (rotation).
    pub previous_secret_bytes: Vec<Vec<u8>>,
    /// True when no secret was configured and a random one was generated (memory store).
    pub secret_generated: bool,
}

/// `[identity]`, checked: the signing key read, the audience defaulted.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub header: String,
    pub algorithm: Algorithm,
    /// The configured key (PEM, or the HS256 secret); None: derived or generated.
    pub signing_key_pem: Option<String>,
    /// As written, or the upstream's origin.
    pub audience: String,
    pub ttl: Dur,
    pub plain_headers: bool,
    /// What `sub` is: the openid, or the unionid when WeChat gave one.
    pub subject: Subject,
}

/// `[desktop]`, checked: the website secret resolved (qrconnect).
#[derive(Debug, Clone)]
pub struct DesktopConfig {
    pub mode: DesktopMode,
    pub website_appid: String,
    pub website_secret: String,
    pub ticket_ttl: Dur,
    /// QR pages each process shows per `ticket_ttl` window (up to twice that in a
    /// `ticket_ttl` straddling two windows).
    pub max_tickets: usize,
}

/// `[access]`, checked.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    pub public_paths: Vec<String>,
    pub api_paths: Vec<String>,
    pub allowed_openids: Vec<String>,
}

/// `[account]`, checked: the official account's global access_token held for every
/// app behind wxgate, JS-SDK signatures, and the `subscribe` claim.
#[derive(Clone)]
pub struct AccountConfig {
    pub token: TokenMode,
    /// Bearer for the admin listener's `/account/token` (resolved; empty: off).
    pub token_endpoint_secret: String,
    /// The token (and the jsapi_ticket) is renewed this long before it expires.
    pub refresh_ahead: Dur,
    /// Hosts (exact, or "*.example.com") a JS-SDK signature may be made for; by
    /// default `public_url`'s host.
    pub jssdk_hosts: Vec<String>,
    pub subscribe_claim: bool,
    pub subscribe_ttl: Dur,
}

// The endpoint secret is a credential: never printed, not even by `{:?}`.
impl fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountConfig")
            .field("token", &self.token)
            .field(
                "token_endpoint_secret",
                &if self.token_endpoint_secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("refresh_ahead", &self.refresh_ahead)
            .field("jssdk_hosts", &self.jssdk_hosts)
            .field("subscribe_claim", &self.subscribe_claim)
            .field("subscribe_ttl", &self.subscribe_ttl)
            .finish()
    }
}

/// The checked sections' defaults are the file's, checked: what tests and tools start
/// from when they build a part of a configuration by hand.
impl Default for ServerConfig {
    fn default() -> Self {
        let raw = file::ServerConfig::default();
        ServerConfig {
            listen_addr: raw
                .listen
                .parse()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 8080))),
            listen: raw.listen,
            public_url: raw.public_url,
            public: PublicUrl::default(),
            trusted: vec![],
            max_body_bytes: None,
            max_connections: raw.max_connections,
            workers: raw.workers,
            tls: None,
            header_read_timeout: raw.header_read_timeout,
            shutdown_timeout: raw.shutdown_timeout,
            idle_timeout: raw.idle_timeout,
            max_header_len: DEFAULT_MAX_HEADER_BYTES,
            body_timeout: raw.body_timeout,
            extra_hosts: raw.extra_hosts,
            access_log: raw.access_log,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        let raw = file::AdminConfig::default();
        AdminConfig {
            listen_addr: raw
                .listen
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9090))),
            listen: raw.listen,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        let raw = file::UpstreamConfig::default();
        UpstreamConfig {
            url: raw.url,
            uri: Uri::default(),
            timeout: raw.timeout,
            connect_timeout: raw.connect_timeout,
            preserve_host: raw.preserve_host,
            pool_idle_timeout: raw.pool_idle_timeout,
            body_timeout: raw.body_timeout,
            upgrades: raw.upgrades,
        }
    }
}

impl Default for WechatConfig {
    fn default() -> Self {
        let raw = file::WechatConfig::default();
        WechatConfig {
            appid: raw.appid,
            secret: raw.secret,
            scope: raw.scope,
            lang: raw.lang,
            authorize_url: raw.authorize_url,
            qrconnect_url: raw.qrconnect_url,
            api_base_url: raw.api_base_url,
            verify_files: raw.verify_files,
            timeout: raw.timeout,
            force_popup: raw.force_popup,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        let raw = file::SessionConfig::default();
        SessionConfig {
            store: raw.store,
            cookie_name: raw.cookie_name,
            ttl: raw.ttl,
            same_site: raw.same_site,
            secure: raw.secure,
            refresh_interval: raw.refresh_interval,
            max_sessions: raw.max_sessions,
            redis_url: raw.redis_url,
            redis_cluster_urls: raw.redis_cluster_urls,
            redis_prefix: raw.redis_prefix,
            redis_connect_timeout: raw.redis_connect_timeout,
            redis_timeout: raw.redis_timeout,
            redis_required_at_start: raw.redis_required_at_start,
            cache_ttl: raw.cache_ttl,
            secret_bytes: vec![],
            previous_secret_bytes: vec![],
            secret_generated: false,
        }
    }
}

impl Default for IdentityConfig {
    fn default() -> Self {
        let raw = file::IdentityConfig::default();
        IdentityConfig {
            header: raw.header,
            algorithm: raw.algorithm,
            signing_key_pem: None,
            audience: raw.audience,
            ttl: raw.ttl,
            plain_headers: raw.plain_headers,
            subject: raw.subject,
        }
    }
}

impl Default for DesktopConfig {
    fn default() -> Self {
        let raw = file::DesktopConfig::default();
        DesktopConfig {
            mode: raw.mode,
            website_appid: raw.website_appid,
            website_secret: raw.website_secret,
            ticket_ttl: raw.ticket_ttl,
            max_tickets: raw.max_tickets,
        }
    }
}

/// WeChat renews a stable token only in its last five minutes: renewing earlier would
/// only get the same token back.
pub const MAX_REFRESH_AHEAD: std::time::Duration = std::time::Duration::from_secs(300);

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, dotted ("wechat.appid"), or "" for a whole-file problem.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Read { .. } => vec![self.to_string()],
            ConfigError::Invalid(p) => p.iter().map(|p| p.to_string()).collect(),
        }
    }
}

/// Where secrets come from besides the file: the process environment in production,
/// a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    from_toml(&text, &base, &ProcessEnv)
}

/// Parses and validates TOML text; relative file paths are taken from `base_dir`.
pub fn from_toml(text: &str, base_dir: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
    let raw: file::Config = parse::from_str(text).map_err(|p| ConfigError::Invalid(vec![p]))?;
    raw.check(base_dir, env)
}

impl file::Config {
    /// Checks the file as written; relative file paths are taken from `base_dir`.
    pub fn check(&self, base_dir: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        check::check(self, base_dir, env).map_err(ConfigError::Invalid)
    }
}

fn push(problems: &mut Vec<Problem>, key: &str, message: impl Into<String>) {
    problems.push(Problem {
        key: key.into(),
        message: message.into(),
    });
}

impl Config {
    /// Whether cookies carry `Secure`.
    pub fn cookie_secure(&self) -> bool {
        cookie_secure(self.session.secure, &self.server.public)
    }

    /// `public_url`'s parts.
    pub fn public(&self) -> &PublicUrl {
        &self.server.public
    }

    /// A short human summary, printed by `wxgate check`.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        use std::fmt::Write as _;
        let _ = writeln!(
            s,
            "listen        {} (public URL {})",
            self.server.listen, self.server.public_url
        );
        let _ = writeln!(s, "admin         {}", self.admin.listen);
        let _ = writeln!(
            s,
            "upstream      {} (timeout {})",
            self.upstream.url, self.upstream.timeout
        );
        match (&self.hub_client, &self.wecom) {
            (Some(h), _) => {
                let _ = writeln!(
                    s,
                    "sign-in       through the hub {} as {} (scope {})",
                    h.issuer, h.client_id, h.scope
                );
            }
            (None, Some(w)) => {
                let _ = writeln!(
                    s,
                    "wecom         corp {} agent {} scope {}, {}{}",
                    w.corp_id,
                    w.agent_id,
                    w.scope,
                    if w.members_only {
                        "members only"
                    } else {
                        "members and visitors"
                    },
                    if w.allowed_departments.is_empty() {
                        String::new()
                    } else {
                        format!(", departments {:?}", w.allowed_departments)
                    }
                );
            }
            (None, None) => {
                let _ = writeln!(
                    s,
                    "wechat        appid {} scope {}",
                    self.wechat.appid, self.wechat.scope
                );
            }
        }
        let _ = writeln!(
            s,
            "sessions      {} store, ttl {}",
            self.session.store.as_str(),
            self.session.ttl
        );
        let key = if self.identity.signing_key_pem.is_some() {
            "configured key"
        } else if self.session.secret_generated {
            "key generated at each start (set identity.signing_key_file: `wxgate keygen`)"
        } else {
            "key derived from session.secret (set identity.signing_key_file: `wxgate keygen`)"
        };
        let _ = writeln!(
            s,
            "identity      {} {}, {key}, audience {}",
            self.identity.header,
            self.identity.algorithm.as_str(),
            self.identity.audience
        );
        let desktop = match self.hub_client {
            Some(_) => "at the hub",
            None => self.desktop.mode.as_str(),
        };
        let _ = writeln!(s, "desktop       {desktop}");
        if let Some(a) = &self.account {
            let _ = writeln!(
                s,
                "account       token {}, token endpoint {}, JS-SDK for {}{}",
                a.token.as_str(),
                if a.token_endpoint_secret.is_empty() {
                    "off"
                } else {
                    "on"
                },
                a.jssdk_hosts.join(", "),
                if a.subscribe_claim {
                    format!(", subscribe claim (cached {})", a.subscribe_ttl)
                } else {
                    String::new()
                }
            );
        }
        for (i, r) in self.routes.iter().enumerate() {
            let _ = writeln!(
                s,
                "routes[{i}]     host {} path {} -> {} ({}{}{}{}{})",
                r.host.as_deref().unwrap_or("*"),
                r.path.as_deref().unwrap_or("/*"),
                r.upstream,
                r.access.as_str(),
                r.scope.map(|s| format!(", {s}")).unwrap_or_default(),
                if r.allowed_openids.is_empty() {
                    String::new()
                } else {
                    format!(", {} allowed openids", r.allowed_openids.len())
                },
                if r.allowed_userids.is_empty() {
                    String::new()
                } else {
                    format!(", {} allowed userids", r.allowed_userids.len())
                },
                if r.allowed_departments.is_empty() {
                    String::new()
                } else {
                    format!(", departments {:?}", r.allowed_departments)
                }
            );
        }
        if let Some(h) = &self.hub {
            let ids: Vec<&str> = h.clients.iter().map(|c| c.client_id.as_str()).collect();
            let _ = writeln!(
                s,
                "hub           OpenID Connect provider for {} app(s): {}",
                ids.len(),
                ids.join(", ")
            );
        }
        let _ = write!(
            s,
            "access        {} public, {} api path patterns; {}",
            self.access.public_paths.len(),
            self.access.api_paths.len(),
            if self.access.allowed_openids.is_empty() {
                "every WeChat user".to_string()
            } else {
                format!("{} allowed openids", self.access.allowed_openids.len())
            }
        );
        s
    }
}

/// `session.secure`, or whether `public_url` is https.
fn cookie_secure(secure: Option<bool>, public: &PublicUrl) -> bool {
    secure.unwrap_or(public.https)
}

/// Secret precedence: environment variable, then `*_file`, then the inline value.
fn resolve_secret(
    inline: &str,
    file: Option<&Path>,
    env_name: &str,
    base: &Path,
    env: &dyn Env,
) -> Result<Option<String>, String> {
    if let Some(v) = env.var(env_name) {
        return Ok(Some(v));
    }
    if let Some(f) = file {
        let path = base.join(f);
        return std::fs::read_to_string(&path)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| format!("cannot read {}: {e}", f.display()));
    }
    Ok((!inline.is_empty()).then(|| inline.to_string()))
}

/// A session secret: base64 (standard or URL-safe) when it decodes to >= 32 bytes,
/// otherwise the raw bytes; either way at least 32 bytes.
pub fn decode_secret(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let t = s.trim();
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
    ] {
        if let Ok(b) = engine.decode(t) {
            if b.len() >= 32 {
                return Ok(b);
            }
        }
    }
    if let Ok(b) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t) {
        if b.len() >= 32 {
            return Ok(b);
        }
    }
    if t.len() >= 32 {
        return Ok(t.as_bytes().to_vec());
    }
    Err(format!(
        "must be at least 32 bytes (got {}); `wxgate keygen` prints one",
        t.len()
    ))
}

fn parse_public_url(s: &str) -> Result<PublicUrl, String> {
    let u = parse_http_url(s)?;
    if u.query().is_some() || s.contains('#') {
        return Err(format!("{s:?} must not have a query or fragment"));
    }
    let auth = u.authority().ok_or_else(|| format!("{s:?} has no host"))?;
    if auth.as_str().contains('@') {
        return Err(format!("{s:?} must not contain user info"));
    }
    let https = u.scheme_str() == Some("https");
    let path_prefix = u.path().trim_end_matches('/').to_string();
    if !path_prefix.is_empty() {
        return Err(format!("{s:?} must be an origin only (scheme and host, no path): wxgate's own URLs live under /_wxgate/ at the root"));
    }
    Ok(PublicUrl {
        origin: format!(
            "{}://{}",
            u.scheme_str().unwrap_or("http"),
            auth.as_str().to_ascii_lowercase()
        ),
        https,
        host: auth.host().to_ascii_lowercase(),
        path_prefix,
    })
}

/// A URL without its user info (Redis passwords live there), for logs and messages.
/// The one redaction for every URL wxgate prints.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

pub(crate) fn parse_http_url(s: &str) -> Result<Uri, String> {
    let u: Uri = s.parse().map_err(|_| format!("{s:?} is not a URL"))?;
    match u.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{s:?} must start with http:// or https://")),
    }
    if u.host().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host"));
    }
    Ok(u)
}

/// Whether `url` reaches the socket `listen` on this machine (a loopback or the same
/// address, the same port).
fn points_at(url: &Uri, listen: SocketAddr) -> bool {
    if listen.port() == 0 {
        return false;
    }
    let port = url
        .port_u16()
        .unwrap_or(if url.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    if port != listen.port() {
        return false;
    }
    let host = url.host().unwrap_or_default().trim_matches(['[', ']']);
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    (local && (listen.ip().is_unspecified() || listen.ip().is_loopback()))
        || host.parse::<std::net::IpAddr>().ok() == Some(listen.ip())
}

pub fn origin_of(u: &Uri) -> String {
    format!(
        "{}://{}",
        u.scheme_str().unwrap_or("http"),
        u.authority().map(|a| a.as_str()).unwrap_or("")
    )
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not a CIDR like \"10.0.0.0/8\" or an address"))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub fn is_verify_file_name(name: &str) -> bool {
    name.strip_prefix("MP_verify_")
        .and_then(|r| r.strip_suffix(".txt"))
        .is_some_and(|mid| !mid.is_empty() && mid.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A host a JS-SDK signature may be made for: exact ("app.example.com") or one or more
/// labels under a domain ("*.example.com"), no scheme, port or path. Lowercased.
fn check_host_pattern(h: &str) -> Result<String, String> {
    let lower = h.trim().to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{h:?} is not a host name like \"app.example.com\" or \"*.example.com\" (no scheme, port or path)"
        ));
    }
    Ok(lower)
}

/// An `Upgrade` protocol name that may be forwarded: a token, and never h2c, whose
/// HTTP/2 connection would carry requests past every check wxgate makes.
fn check_upgrade(proto: &str) -> Result<(), String> {
    let name = proto.split('/').next().unwrap_or_default();
    if !is_token(name) || proto.split('/').nth(1).is_some_and(|v| !is_token(v)) {
        return Err(format!(
            "{proto:?} is not a protocol name like \"websocket\""
        ));
    }
    if ["h2c", "h2", "http"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
    {
        return Err(format!(
            "{proto:?}: HTTP/2 is never tunnelled (its requests would bypass sign-in)"
        ));
    }
    Ok(())
}

/// Path patterns: an exact path ("/healthz") or a prefix ending in "/*" ("/static/*").
fn check_path_pattern(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must start with /"));
    }
    let body = p.strip_suffix("/*").unwrap_or(p);
    if body.contains('*') {
        return Err(format!("{p:?}: '*' is allowed only as a final \"/*\""));
    }
    if body.contains(['?', '#', '%', '\\']) || body.split('/').any(|s| s == "." || s == "..") {
        return Err(format!(
            "{p:?} must be a plain normalised path (no query, fragment, escapes or dot segments)"
        ));
    }
    if p.starts_with("/_wxgate") {
        return Err(format!("{p:?}: /_wxgate/ belongs to wxgate"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
