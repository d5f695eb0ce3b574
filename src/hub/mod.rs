//! The hub: this wxgate, at the one domain WeChat authorized, as an OpenID Connect
//! provider for other apps (`[hub]`). It redeems WeChat's codes itself; apps get only
//! its own codes, tokens and id_tokens, signed with the identity key (the same JWKS).
//!
//! - [`authorize`]: the authorization code flow (PKCE S256 required), the hub's own
//!   sign-in first when the visitor has no hub session;
//! - [`token`]: codes for tokens (client_secret_basic / _post), and userinfo;
//! - [`grants`]: pending requests, codes and access tokens in the session store;
//! - [`clients`], [`params`], [`pkce`]: the pure parts; [`error`]: every refusal.

pub mod authorize;
pub mod clients;
pub mod error;
pub mod grants;
pub mod params;
pub mod pkce;
pub mod token;

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};

use crate::body::Body;
use crate::config::{HubConfig, Scope};
use crate::identity::Signer;
use crate::pages::Reply;
use crate::signin::gate::SignIn;

/// The largest token request body read.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// How long a client may take to send it.
const FORM_TIMEOUT: Duration = Duration::from_secs(10);

/// The running hub, built with each configuration.
pub struct Hub {
    pub clients: clients::Clients,
    /// public_url + "/_wxgate".
    pub issuer: String,
    discovery: Bytes,
    pub code_ttl: Duration,
    /// Access tokens and id_tokens live as long as the identity header (`identity.ttl`).
    pub token_ttl: Duration,
}

impl Hub {
    pub fn new(cfg: &HubConfig, signer: &Signer, token_ttl: Duration) -> Hub {
        let issuer = signer.issuer().to_string();
        Hub {
            clients: clients::Clients::new(&cfg.clients),
            discovery: discovery(&issuer, &signer.openid_configuration()),
            issuer,
            code_ttl: cfg.code_ttl,
            token_ttl,
        }
    }

    /// The hub of a configuration, when it has `[hub]`.
    pub fn of(signin: &SignIn) -> Option<Hub> {
        let cfg = signin.core.cfg();
        let hub = cfg.hub.as_ref()?;
        Some(Hub::new(hub, signin.core.signer(), cfg.identity.ttl.get()))
    }

    /// The OpenID Provider metadata with the hub's endpoints.
    pub fn discovery(&self) -> Bytes {
        self.discovery.clone()
    }
}

/// The identity key's discovery document, made a provider's.
fn discovery(issuer: &str, base: &[u8]) -> Bytes {
    let mut doc: Value = serde_json::from_slice(base).unwrap_or_else(|_| json!({}));
    let mut claims: Vec<Value> = doc["claims_supported"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    claims.extend(["nonce", "azp", "auth_time"].map(Value::from));
    let set = [
        ("issuer", json!(issuer)),
        (
            "authorization_endpoint",
            json!(format!("{issuer}/oidc/authorize")),
        ),
        ("token_endpoint", json!(format!("{issuer}/oidc/token"))),
        (
            "userinfo_endpoint",
            json!(format!("{issuer}/oidc/userinfo")),
        ),
        ("response_types_supported", json!(["code"])),
        ("response_modes_supported", json!(["query"])),
        ("grant_types_supported", json!(["authorization_code"])),
        ("code_challenge_methods_supported", json!(["S256"])),
        (
            "token_endpoint_auth_methods_supported",
            json!(["client_secret_basic", "client_secret_post"]),
        ),
        ("scopes_supported", json!(["openid", "profile"])),
        ("claims_supported", Value::Array(claims)),
        (
            "authorization_response_iss_parameter_supported",
            json!(true),
        ),
        ("request_parameter_supported", json!(false)),
        ("request_uri_parameter_supported", json!(false)),
    ];
    for (k, v) in set {
        doc[k] = v;
    }
    Bytes::from(doc.to_string())
}

/// Whether a session of scope `have` gives what `want` needs.
pub fn covers(have: Scope, want: Scope) -> bool {
    have == Scope::UserInfo || want == Scope::Base
}

/// The lesser of two scopes.
pub fn narrower(a: Scope, b: Scope) -> Scope {
    if a == Scope::Base || b == Scope::Base {
        Scope::Base
    } else {
        Scope::UserInfo
    }
}

/// Whether the hub answers `path` (its endpoints, and the discovery document that
/// names them).
pub fn serves(path: &str) -> bool {
    path.starts_with("/_wxgate/oidc/") || path == DISCOVERY
}

const DISCOVERY: &str = "/_wxgate/.well-known/openid-configuration";

/// `/_wxgate/oidc/*` and the discovery document.
pub async fn handle<B>(
    signin: &SignIn,
    hub: &Hub,
    req: Request<B>,
    client: IpAddr,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path();
    let method = req.method();
    let get_like = method == Method::GET || method == Method::HEAD;
    match path {
        "/_wxgate/oidc/authorize" if get_like => {
            let query = req.uri().query().unwrap_or("");
            authorize::authorize(signin, hub, query, req.headers(), client).await
        }
        "/_wxgate/oidc/token" if method == Method::POST => {
            let (parts, body) = req.into_parts();
            match read_form(body).await {
                Ok(bytes) => token::token(&signin.core, hub, &parts.headers, &bytes).await,
                Err(e) => e.response(),
            }
        }
        "/_wxgate/oidc/userinfo" if get_like || method == Method::POST => {
            token::userinfo(&signin.core, req.headers()).await
        }
        "/_wxgate/oidc/authorize" => not_allowed("GET, HEAD"),
        "/_wxgate/oidc/token" => not_allowed("POST"),
        "/_wxgate/oidc/userinfo" => not_allowed("GET, HEAD, POST"),
        DISCOVERY if get_like => discovery_response(req.headers(), hub.discovery()),
        _ => crate::pages::not_found(Reply::of(req.headers())),
    }
}

async fn read_form<B>(body: B) -> Result<Bytes, error::TokenError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limited = http_body_util::Limited::new(body, MAX_FORM_BYTES);
    match tokio::time::timeout(FORM_TIMEOUT, limited.collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(_)) => Err(error::TokenError::InvalidRequest(
            "the body is too large or could not be read",
        )),
        Err(_) => Err(error::TokenError::InvalidRequest(
            "the body did not arrive in time",
        )),
    }
}

/// The discovery document, cacheable like the identity's own (ETag, 5 minutes).
fn discovery_response(headers: &http::HeaderMap, body: Bytes) -> Response<Body> {
    use base64::Engine as _;
    use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
    let mut tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    tag.truncate(22);
    let etag = format!("\"{tag}\"");
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        let mut r = Response::new(crate::body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(crate::body::full(body));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    };
    let h = resp.headers_mut();
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    resp
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let body = json!({ "error": "invalid_request", "error_description": format!("use {allow}") });
    let mut resp = crate::pages::json_response(StatusCode::METHOD_NOT_ALLOWED, &body);
    resp.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    resp
}
