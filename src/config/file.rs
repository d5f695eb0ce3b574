//! The configuration file as written: one serde struct per TOML table, every key with
//! its default, nothing derived. [`Config::check`] turns it into the
//! checked [`super::Config`] the running code reads.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use super::hub::file::{HubClient, HubClientConfig, HubConfig};
pub use super::RouteConfig;
use super::{
    Algorithm, DesktopMode, Dur, SameSite, Scope, StoreKind, Subject, TokenMode, WecomScope,
};

/// The whole file.
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
    /// `[[routes]]`: apps chosen by host and path, first match wins; none: `[upstream]`.
    pub routes: Vec<RouteConfig>,
    /// WeCom instead of an official account (absent: `[wechat]` signs users in).
    pub wecom: Option<WecomConfig>,
    /// An OpenID Connect provider for other apps (absent: off).
    pub hub: Option<HubConfig>,
    /// Sign in through a hub instead of WeChat (absent: WeChat).
    pub hub_client: Option<HubClientConfig>,
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
    /// Host names besides public_url's that routes may serve (exact or "*.example.com").
    pub extra_hosts: Vec<String>,
    /// How request lines are written: batched (default), one write each, or not at all.
    pub access_log: super::AccessLog,
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
            extra_hosts: vec![],
            access_log: super::AccessLog::Buffered,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9090".into(),
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
        }
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
    /// What `sub` is: the openid, or the unionid when WeChat gave one.
    pub subject: Subject,
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
            subject: Subject::Openid,
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

/// `[wecom]`: WeCom (企业微信) instead of `[wechat]`.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WecomConfig {
    /// The organisation's CorpID ("ww...").
    pub corp_id: String,
    /// The self-built app's AgentId; a TOML integer or string.
    #[serde(deserialize_with = "super::wecom::agent_id")]
    pub agent_id: String,
    /// The app's Secret; env WXGATE_WECOM_SECRET.
    pub secret: String,
    pub secret_file: Option<PathBuf>,
    pub scope: WecomScope,
    pub members_only: bool,
    pub allowed_departments: Vec<u64>,
    pub authorize_url: String,
    pub sso_url: String,
    pub api_base_url: String,
    /// Per-call timeout for WeCom's API.
    pub timeout: Dur,
    /// `WW_verify_*.txt` files served at the root for WeCom's trusted-domain check.
    pub verify_files: BTreeMap<String, String>,
}

impl Default for WecomConfig {
    fn default() -> Self {
        Self {
            corp_id: String::new(),
            agent_id: String::new(),
            secret: String::new(),
            secret_file: None,
            scope: WecomScope::Base,
            members_only: true,
            allowed_departments: vec![],
            authorize_url: "https://open.weixin.qq.com/connect/oauth2/authorize".into(),
            sso_url: "https://login.work.weixin.qq.com/wwlogin/sso/login".into(),
            api_base_url: "https://qyapi.weixin.qq.com".into(),
            timeout: Dur::secs(5),
            verify_files: BTreeMap::new(),
        }
    }
}

// The secret is a credential: never printed, not even by `{:?}`.
impl fmt::Debug for WecomConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WecomConfig")
            .field("corp_id", &self.corp_id)
            .field("agent_id", &self.agent_id)
            .field(
                "secret",
                &if self.secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("secret_file", &self.secret_file)
            .field("scope", &self.scope)
            .field("members_only", &self.members_only)
            .field("allowed_departments", &self.allowed_departments)
            .finish_non_exhaustive()
    }
}
