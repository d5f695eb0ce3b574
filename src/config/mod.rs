//! The configuration: plain typed structs read from one TOML file, validated as a
//! whole so `wxgate check` can list every problem at once.
//!
//! Parsing (TOML syntax, types, unknown keys) stops at the first error and reports its
//! key and line; validation then collects every semantic problem. Values derived during
//! validation (parsed URLs, resolved secrets) live in `#[serde(skip)]` fields so the
//! running code never re-parses anything.

mod duration;
mod hub;
mod parse;

pub use duration::{format_duration, parse_duration, parse_size, Dur};
pub use hub::{
    check_redirect_uri, secret_env_name, HubClient, HubClientConfig, HubConfig, CODE_TTL,
};

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::Uri;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
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
    /// An OpenID Connect provider for other apps (absent: off).
    pub hub: Option<HubConfig>,
    /// Sign in through a hub instead of WeChat (absent: WeChat).
    pub hub_client: Option<HubClientConfig>,
    /// The directory of the config file: relative `*_file` paths are read from here.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub public_url: String,
    pub trusted_proxies: Vec<String>,
    pub max_body_size: Option<String>,
    pub max_connections: Option<usize>,
    /// Threads serving client connections, each with its own event loop and upstream
    /// connection pool (nginx's worker model). None: one per CPU core.
    pub workers: Option<usize>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Time allowed for a client to send a complete request head (slowloris guard).
    pub header_read_timeout: Dur,
    /// How long in-flight requests may run after SIGTERM before the process exits.
    pub shutdown_timeout: Dur,
    /// Idle keep-alive connections are closed after this long.
    pub idle_timeout: Dur,
    /// The largest request head (request line and headers) accepted; beyond it 431.
    pub max_header_bytes: String,
    /// Idle time allowed between two reads of a client's request body.
    pub body_timeout: Dur,

    #[serde(skip)]
    pub listen_addr: Option<SocketAddr>,
    #[serde(skip)]
    pub public: Option<PublicUrl>,
    #[serde(skip)]
    pub trusted: Vec<IpNet>,
    #[serde(skip)]
    pub max_body_bytes: Option<u64>,
    #[serde(skip)]
    pub max_header_len: usize,
}

/// `server.public_url`, split once: every redirect_uri and absolute URL is built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// "https://app.example.com" (no trailing slash, no path).
    pub origin: String,
    pub https: bool,
    /// The host WeChat's callback domain must equal (no port).
    pub host: String,
    /// A path prefix when wxgate is served under one (usually empty).
    pub path_prefix: String,
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

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            public_url: String::new(),
            trusted_proxies: vec![],
            max_body_size: None,
            max_connections: None,
            workers: None,
            tls_cert_file: None,
            tls_key_file: None,
            header_read_timeout: Dur::secs(10),
            shutdown_timeout: Dur::secs(30),
            idle_timeout: Dur::secs(90),
            max_header_bytes: "64KB".into(),
            body_timeout: Dur::secs(60),
            listen_addr: None,
            public: None,
            trusted: vec![],
            max_body_bytes: None,
            max_header_len: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: String,
    #[serde(skip)]
    pub listen_addr: Option<SocketAddr>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9090".into(),
            listen_addr: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub url: String,
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
    #[serde(skip)]
    pub uri: Option<Uri>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout: Dur::secs(30),
            connect_timeout: Dur::secs(5),
            preserve_host: true,
            pool_idle_timeout: Dur::secs(90),
            body_timeout: Dur::secs(60),
            upgrades: vec!["websocket".into()],
            uri: None,
        }
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WechatConfig {
    pub appid: String,
    pub secret: String,
    pub secret_file: Option<PathBuf>,
    pub scope: Scope,
    pub lang: String,
    pub authorize_url: String,
    pub qrconnect_url: String,
    pub api_base_url: String,
    pub verify_files: BTreeMap<String, String>,
    /// Per-call timeout for the WeChat API.
    pub timeout: Dur,
    /// Add `forcePopup=true` to the authorize URL (always show the consent popup).
    pub force_popup: bool,
}

impl Default for WechatConfig {
    fn default() -> Self {
        Self {
            appid: String::new(),
            secret: String::new(),
            secret_file: None,
            scope: Scope::Base,
            lang: "zh_CN".into(),
            authorize_url: "https://open.weixin.qq.com/connect/oauth2/authorize".into(),
            qrconnect_url: "https://open.weixin.qq.com/connect/qrconnect".into(),
            api_base_url: "https://api.weixin.qq.com".into(),
            verify_files: BTreeMap::new(),
            timeout: Dur::secs(5),
            force_popup: false,
        }
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    pub store: StoreKind,
    pub cookie_name: String,
    pub secret: String,
    pub secret_file: Option<PathBuf>,
    /// Older secrets still accepted when reading cookies (rotation); new cookies use `secret`.
    pub previous_secrets: Vec<String>,
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

    #[serde(skip)]
    pub secret_bytes: Vec<u8>,
    #[serde(skip)]
    pub previous_secret_bytes: Vec<Vec<u8>>,
    /// True when no secret was configured and a random one was generated (memory store).
    #[serde(skip)]
    pub secret_generated: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            store: StoreKind::Memory,
            cookie_name: "_wxgate".into(),
            secret: String::new(),
            secret_file: None,
            previous_secrets: vec![],
            ttl: Dur::secs(7 * 86400),
            same_site: SameSite::Lax,
            secure: None,
            refresh_interval: Dur::secs(86400),
            max_sessions: 1_000_000,
            redis_url: "redis://127.0.0.1:6379/0".into(),
            redis_cluster_urls: vec![],
            redis_prefix: "wxgate:".into(),
            redis_connect_timeout: Dur::secs(2),
            redis_timeout: Dur(std::time::Duration::from_millis(500)),
            redis_required_at_start: true,
            cache_ttl: Dur::secs(0),
            secret_bytes: vec![],
            previous_secret_bytes: vec![],
            secret_generated: false,
        }
    }
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    pub header: String,
    pub algorithm: Algorithm,
    pub signing_key_file: String,
    /// Inline PEM (or the HS256 secret); env WXGATE_SIGNING_KEY.
    pub signing_key: String,
    pub audience: String,
    pub ttl: Dur,
    pub plain_headers: bool,
    #[serde(skip)]
    pub signing_key_pem: Option<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            header: "X-Wxgate-Jwt-Assertion".into(),
            algorithm: Algorithm::ES256,
            signing_key_file: String::new(),
            signing_key: String::new(),
            audience: String::new(),
            ttl: Dur::secs(300),
            plain_headers: false,
            signing_key_pem: None,
        }
    }
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DesktopConfig {
    pub mode: DesktopMode,
    pub website_appid: String,
    pub website_secret: String,
    pub website_secret_file: Option<PathBuf>,
    pub ticket_ttl: Dur,
    /// QR pages each process shows per `ticket_ttl` window (up to twice that in a
    /// `ticket_ttl` straddling two windows).
    pub max_tickets: usize,
}

impl Default for DesktopConfig {
    fn default() -> Self {
        Self {
            mode: DesktopMode::Qr,
            website_appid: String::new(),
            website_secret: String::new(),
            website_secret_file: None,
            ticket_ttl: Dur::secs(120),
            max_tickets: 50_000,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    pub public_paths: Vec<String>,
    pub api_paths: Vec<String>,
    pub allowed_openids: Vec<String>,
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

/// `[account]`: the official account's global access_token held for every app behind
/// wxgate, JS-SDK signatures, and the `subscribe` claim.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountConfig {
    pub token: TokenMode,
    /// Bearer for the admin listener's `/account/token`; env WXGATE_TOKEN_ENDPOINT_SECRET.
    pub token_endpoint_secret: String,
    pub token_endpoint_secret_file: Option<PathBuf>,
    /// The token (and the jsapi_ticket) is renewed this long before it expires.
    pub refresh_ahead: Dur,
    /// Hosts (exact, or "*.example.com") a JS-SDK signature may be made for.
    pub jssdk_hosts: Vec<String>,
    pub subscribe_claim: bool,
    pub subscribe_ttl: Dur,
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self {
            token: TokenMode::Stable,
            token_endpoint_secret: String::new(),
            token_endpoint_secret_file: None,
            refresh_ahead: Dur::secs(300),
            jssdk_hosts: vec![],
            subscribe_claim: false,
            subscribe_ttl: Dur::secs(600),
        }
    }
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
            .field(
                "token_endpoint_secret_file",
                &self.token_endpoint_secret_file,
            )
            .field("refresh_ahead", &self.refresh_ahead)
            .field("jssdk_hosts", &self.jssdk_hosts)
            .field("subscribe_claim", &self.subscribe_claim)
            .field("subscribe_ttl", &self.subscribe_ttl)
            .finish()
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
    let mut config: Config = parse::from_str(text).map_err(|p| ConfigError::Invalid(vec![p]))?;
    config.base_dir = base_dir.to_path_buf();
    let problems = config.resolve(env);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

fn push(problems: &mut Vec<Problem>, key: &str, message: impl Into<String>) {
    problems.push(Problem {
        key: key.into(),
        message: message.into(),
    });
}

impl Config {
    /// Validates every key and fills the derived fields. Returns every problem found.
    pub fn resolve(&mut self, env: &dyn Env) -> Vec<Problem> {
        let mut p = Vec::new();
        let base = self.base_dir.clone();

        // [server]
        match self.server.listen.parse::<SocketAddr>() {
            Ok(a) => self.server.listen_addr = Some(a),
            Err(_) => push(
                &mut p,
                "server.listen",
                format!(
                    "{:?} is not an address like \"0.0.0.0:8080\"",
                    self.server.listen
                ),
            ),
        }
        if self.server.public_url.is_empty() {
            push(
                &mut p,
                "server.public_url",
                "is required: the origin users see, e.g. \"https://app.example.com\"",
            );
        } else {
            match parse_public_url(&self.server.public_url) {
                Ok(u) => self.server.public = Some(u),
                Err(m) => push(&mut p, "server.public_url", m),
            }
        }
        self.server.trusted.clear();
        for (i, cidr) in self.server.trusted_proxies.iter().enumerate() {
            match parse_cidr(cidr) {
                Ok(n) => self.server.trusted.push(n),
                Err(m) => push(&mut p, &format!("server.trusted_proxies[{i}]"), m),
            }
        }
        if let Some(size) = &self.server.max_body_size {
            match parse_size(size) {
                Ok(n) => self.server.max_body_bytes = Some(n),
                Err(m) => push(&mut p, "server.max_body_size", m),
            }
        }
        match parse_size(&self.server.max_header_bytes) {
            Ok(n) if MAX_HEADER_BYTES_RANGE.contains(&n) => self.server.max_header_len = n as usize,
            Ok(_) => push(
                &mut p,
                "server.max_header_bytes",
                "must be between 1KB and 1MB",
            ),
            Err(m) => push(&mut p, "server.max_header_bytes", m),
        }
        if self.server.body_timeout.get().is_zero() {
            push(&mut p, "server.body_timeout", "must be more than 0s");
        }
        if self.server.max_connections == Some(0) {
            push(&mut p, "server.max_connections", "must be at least 1");
        }
        if let Some(n) = self.server.workers {
            if !(1..=MAX_WORKERS).contains(&n) {
                push(
                    &mut p,
                    "server.workers",
                    format!("must be between 1 and {MAX_WORKERS}"),
                );
            }
        }
        match (&self.server.tls_cert_file, &self.server.tls_key_file) {
            (Some(c), Some(k)) => {
                for (key, f) in [("server.tls_cert_file", c), ("server.tls_key_file", k)] {
                    if !base.join(f).is_file() {
                        push(&mut p, key, format!("cannot read {}", f.display()));
                    }
                }
            }
            (Some(_), None) => push(
                &mut p,
                "server.tls_key_file",
                "is required with server.tls_cert_file",
            ),
            (None, Some(_)) => push(
                &mut p,
                "server.tls_cert_file",
                "is required with server.tls_key_file",
            ),
            (None, None) => {}
        }

        // [admin]
        match self.admin.listen.parse::<SocketAddr>() {
            Ok(a) => {
                self.admin.listen_addr = Some(a);
                // Port 0 asks the system for a free port: two of those never collide.
                if a.port() != 0 && Some(a) == self.server.listen_addr {
                    push(&mut p, "admin.listen", "must differ from server.listen (admin endpoints never share the public port)");
                }
            }
            Err(_) => push(
                &mut p,
                "admin.listen",
                format!(
                    "{:?} is not an address like \"127.0.0.1:9090\"",
                    self.admin.listen
                ),
            ),
        }

        // [upstream]
        if self.upstream.url.is_empty() {
            push(
                &mut p,
                "upstream.url",
                "is required, e.g. \"http://127.0.0.1:3000\"",
            );
        } else {
            match parse_http_url(&self.upstream.url) {
                Ok(u) => self.upstream.uri = Some(u),
                Err(m) => push(&mut p, "upstream.url", m),
            }
        }
        if self.upstream.timeout.get().is_zero() {
            push(&mut p, "upstream.timeout", "must be more than 0s");
        }
        if self.upstream.body_timeout.get().is_zero() {
            push(&mut p, "upstream.body_timeout", "must be more than 0s");
        }
        for (i, proto) in self.upstream.upgrades.iter().enumerate() {
            if let Err(m) = check_upgrade(proto) {
                push(&mut p, &format!("upstream.upgrades[{i}]"), m);
            }
        }

        // [wechat]
        let appid_ok = |s: &str| {
            s.len() >= 6
                && s.len() <= 32
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        // A hub client signs in through its hub: WeChat's credentials stay there.
        let needs_wechat = self.hub_client.is_none();
        if self.wechat.appid.is_empty() {
            if needs_wechat {
                push(
                    &mut p,
                    "wechat.appid",
                    "is required (the official account's AppID, \"wx...\")",
                );
            }
        } else if !appid_ok(&self.wechat.appid) {
            push(
                &mut p,
                "wechat.appid",
                format!("{:?} does not look like an AppID", self.wechat.appid),
            );
        }
        match resolve_secret(
            &self.wechat.secret,
            self.wechat.secret_file.as_deref(),
            "WXGATE_WECHAT_SECRET",
            &base,
            env,
        ) {
            Ok(Some(s)) => self.wechat.secret = s,
            Ok(None) if !needs_wechat => {}
            Ok(None) => push(
                &mut p,
                "wechat.secret",
                "is required (or wechat.secret_file, or env WXGATE_WECHAT_SECRET)",
            ),
            Err(m) => push(&mut p, "wechat.secret_file", m),
        }
        for (key, url) in [
            ("wechat.authorize_url", &self.wechat.authorize_url),
            ("wechat.qrconnect_url", &self.wechat.qrconnect_url),
            ("wechat.api_base_url", &self.wechat.api_base_url),
        ] {
            if let Err(m) = parse_http_url(url) {
                push(&mut p, key, m);
            }
        }
        self.wechat.api_base_url = self.wechat.api_base_url.trim_end_matches('/').to_string();
        if !matches!(self.wechat.lang.as_str(), "zh_CN" | "zh_TW" | "en") {
            push(
                &mut p,
                "wechat.lang",
                format!("{:?}: WeChat accepts zh_CN, zh_TW or en", self.wechat.lang),
            );
        }
        for name in self.wechat.verify_files.keys() {
            if !is_verify_file_name(name) {
                push(
                    &mut p,
                    "wechat.verify_files",
                    format!("{name:?}: WeChat's file names look like \"MP_verify_abc123.txt\""),
                );
            }
        }

        // [session]
        if !is_token(&self.session.cookie_name) {
            push(
                &mut p,
                "session.cookie_name",
                format!("{:?} is not a valid cookie name", self.session.cookie_name),
            );
        }
        match resolve_secret(
            &self.session.secret,
            self.session.secret_file.as_deref(),
            "WXGATE_SESSION_SECRET",
            &base,
            env,
        ) {
            Ok(Some(s)) => match decode_secret(&s) {
                Ok(b) => self.session.secret_bytes = b,
                // Name where the bad value is, so the right place gets fixed.
                Err(m) => match (
                    env.var("WXGATE_SESSION_SECRET").is_some(),
                    &self.session.secret_file,
                ) {
                    (true, _) => push(
                        &mut p,
                        "WXGATE_SESSION_SECRET",
                        format!("(the environment variable, which overrides session.secret) {m}"),
                    ),
                    (false, Some(f)) => push(
                        &mut p,
                        "session.secret_file",
                        format!("{}: {m}", f.display()),
                    ),
                    (false, None) => push(&mut p, "session.secret", m),
                },
            },
            Ok(None) => {
                if self.session.store == StoreKind::Memory {
                    // Memory sessions die with the process anyway; a random secret costs
                    // nothing but the state cookies of sign-ins in flight at a restart.
                    self.session.secret_bytes = crate::random::bytes(32);
                    self.session.secret_generated = true;
                } else {
                    push(&mut p, "session.secret", format!(
                        "is required with store = \"{}\" (>= 32 bytes, the same on every replica; `wxgate keygen` prints one)",
                        self.session.store.as_str()));
                }
            }
            Err(m) => push(&mut p, "session.secret_file", m),
        }
        self.session.previous_secret_bytes.clear();
        for (i, s) in self.session.previous_secrets.iter().enumerate() {
            match decode_secret(s) {
                Ok(b) => self.session.previous_secret_bytes.push(b),
                Err(m) => push(&mut p, &format!("session.previous_secrets[{i}]"), m),
            }
        }
        if self.session.ttl.get().as_secs() < 60 {
            push(&mut p, "session.ttl", "must be at least 1m");
        }
        if self.session.max_sessions == 0 {
            push(&mut p, "session.max_sessions", "must be at least 1");
        }
        if self.session.store == StoreKind::Redis {
            let urls: Vec<&String> = if self.session.redis_cluster_urls.is_empty() {
                vec![&self.session.redis_url]
            } else {
                self.session.redis_cluster_urls.iter().collect()
            };
            for u in urls {
                if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                    push(
                        &mut p,
                        "session.redis_url",
                        format!("{u:?} must start with redis:// or rediss://"),
                    );
                }
            }
            if self.session.redis_timeout.get().is_zero() {
                push(&mut p, "session.redis_timeout", "must be more than 0s");
            }
        }
        if self.session.redis_prefix.is_empty() {
            push(&mut p, "session.redis_prefix", "must not be empty");
        }

        // [identity]
        if http::HeaderName::from_bytes(self.identity.header.as_bytes()).is_err() {
            push(
                &mut p,
                "identity.header",
                format!("{:?} is not a valid header name", self.identity.header),
            );
        }
        match resolve_secret(
            &self.identity.signing_key,
            non_empty_path(&self.identity.signing_key_file).as_deref(),
            "WXGATE_SIGNING_KEY",
            &base,
            env,
        ) {
            Ok(k) => self.identity.signing_key_pem = k,
            Err(m) => push(&mut p, "identity.signing_key_file", m),
        }
        if self.identity.ttl.get().as_secs() < 10 {
            push(&mut p, "identity.ttl", "must be at least 10s");
        }
        if self.identity.audience.is_empty() {
            if let Some(u) = &self.upstream.uri {
                self.identity.audience = origin_of(u);
            }
        }

        // [desktop]
        if self.desktop.mode == DesktopMode::Qrconnect {
            if self.desktop.website_appid.is_empty() {
                push(
                    &mut p,
                    "desktop.website_appid",
                    "is required with mode = \"qrconnect\"",
                );
            }
            match resolve_secret(
                &self.desktop.website_secret,
                self.desktop.website_secret_file.as_deref(),
                "WXGATE_WEBSITE_SECRET",
                &base,
                env,
            ) {
                Ok(Some(s)) => self.desktop.website_secret = s,
                Ok(None) => push(
                    &mut p,
                    "desktop.website_secret",
                    "is required with mode = \"qrconnect\"",
                ),
                Err(m) => push(&mut p, "desktop.website_secret_file", m),
            }
        }
        if self.desktop.ticket_ttl.get().as_secs() < 10 {
            push(&mut p, "desktop.ticket_ttl", "must be at least 10s");
        }
        if self.desktop.max_tickets == 0 {
            push(&mut p, "desktop.max_tickets", "must be at least 1");
        }

        self.refuse_impossible_combinations(&mut p);

        // [hub], [hub_client]
        let https = self.server.public.as_ref().is_some_and(|u| u.https);
        if let Some(h) = &mut self.hub {
            hub::resolve(h, self.identity.algorithm, https, &base, env, &mut p);
        }
        if let Some(c) = &mut self.hub_client {
            hub::resolve_client(c, https, &base, env, &mut p);
            if self.hub.is_some() {
                push(
                    &mut p,
                    "hub_client",
                    "and [hub] together: a hub signs its users in with WeChat itself (remove one)",
                );
            }
            if self.account.is_some() {
                push(&mut p, "account", "needs the official account's own credentials, which stay at the hub with [hub_client]: run [account] on the hub");
            }
        }

        // [access]
        for (key, list) in [
            ("access.public_paths", &self.access.public_paths),
            ("access.api_paths", &self.access.api_paths),
        ] {
            for (i, pat) in list.iter().enumerate() {
                if let Err(m) = check_path_pattern(pat) {
                    push(&mut p, &format!("{key}[{i}]"), m);
                }
            }
        }

        // [account]
        if let Some(account) = &mut self.account {
            match resolve_secret(
                &account.token_endpoint_secret,
                account.token_endpoint_secret_file.as_deref(),
                "WXGATE_TOKEN_ENDPOINT_SECRET",
                &base,
                env,
            ) {
                Ok(Some(s)) if s.trim().len() < 32 => push(
                    &mut p,
                    "account.token_endpoint_secret",
                    format!(
                        "must be at least 32 characters (got {}); `wxgate keygen` prints one",
                        s.trim().len()
                    ),
                ),
                Ok(s) => account.token_endpoint_secret = s.unwrap_or_default(),
                Err(m) => push(&mut p, "account.token_endpoint_secret_file", m),
            }
            let ahead = account.refresh_ahead.get();
            if ahead < std::time::Duration::from_secs(1) || ahead > MAX_REFRESH_AHEAD {
                push(
                    &mut p,
                    "account.refresh_ahead",
                    "must be between 1s and 5m (WeChat renews a stable token only in its last 5 minutes)",
                );
            }
            for (i, host) in account.jssdk_hosts.iter_mut().enumerate() {
                match check_host_pattern(host) {
                    Ok(h) => *host = h,
                    Err(m) => push(&mut p, &format!("account.jssdk_hosts[{i}]"), m),
                }
            }
            if account.jssdk_hosts.is_empty() {
                if let Some(public) = &self.server.public {
                    account.jssdk_hosts.push(public.host.clone());
                }
            }
            if account.subscribe_claim && account.token == TokenMode::Off {
                push(
                    &mut p,
                    "account.subscribe_claim",
                    "needs the account's access_token: account.token must be \"stable\" or \"classic\"",
                );
            }
            if account.subscribe_ttl.get() < std::time::Duration::from_secs(1) {
                push(&mut p, "account.subscribe_ttl", "must be at least 1s");
            }
        }
        p
    }

    /// Settings each valid alone that together can never sign anyone in. Each problem
    /// names both keys, so the fix is clear whichever one is wrong.
    fn refuse_impossible_combinations(&self, p: &mut Vec<Problem>) {
        let Some(public) = &self.server.public else {
            return;
        };
        let secure = self.cookie_secure();
        if self.session.secure == Some(true) && !public.https {
            push(p, "session.secure", "true needs an https server.public_url: browsers never send Secure cookies over http, so every sign-in would end on \"started in another browser\" (use https, or remove session.secure)");
        }
        if self.session.same_site == SameSite::None && !secure {
            push(p, "session.same_site", "\"none\" needs Secure cookies, which need an https server.public_url (and session.secure not false): browsers drop SameSite=None cookies without Secure");
        }
        let name = &self.session.cookie_name;
        if (name.starts_with("__Secure-") || name.starts_with("__Host-")) && !secure {
            push(p, "session.cookie_name", format!("{name:?}: browsers keep __Secure- and __Host- cookies only when Secure, which needs an https server.public_url (and session.secure not false)"));
        }
        if public.host == "0.0.0.0" || public.host == "[::]" {
            push(p, "server.public_url", format!("{:?} is an address to listen on (server.listen), not one a browser or WeChat can open: use the host name users type", public.origin));
        }
        if let (Some(listen), Some(upstream)) = (self.server.listen_addr, &self.upstream.uri) {
            if points_at(upstream, listen) {
                push(p, "upstream.url", format!("{:?} is wxgate's own server.listen: every request would be forwarded back to wxgate; point it at the app", self.upstream.url));
            }
        }
    }

    /// Whether cookies carry `Secure`.
    pub fn cookie_secure(&self) -> bool {
        self.session
            .secure
            .unwrap_or_else(|| self.server.public.as_ref().is_some_and(|u| u.https))
    }

    /// `public_url`'s parts. Only call on a resolved config.
    // Invariant, not input: `resolve` refuses a config without a public_url.
    #[allow(clippy::expect_used)]
    pub fn public(&self) -> &PublicUrl {
        self.server
            .public
            .as_ref()
            .expect("resolved config has public_url")
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
        match &self.hub_client {
            Some(h) => {
                let _ = writeln!(
                    s,
                    "sign-in       through the hub {} as {} (scope {})",
                    h.issuer, h.client_id, h.scope
                );
            }
            None => {
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

fn non_empty_path(s: &str) -> Option<PathBuf> {
    (!s.is_empty()).then(|| PathBuf::from(s))
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

fn parse_http_url(s: &str) -> Result<Uri, String> {
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
