//! Signing in through a hub (`[hub_client]`): the relying party's side of the hub's
//! OpenID Connect flow. This module owns the protocol — the hub's discovery document
//! and keys, the authorization URL, the code exchange, the id_token's verification —
//! and knows nothing of cookies or sessions; the sign-in wraps it.
//!
//! The PKCE verifier and the nonce are derived from the flow's state with a key from
//! the session secret: the state is bound to the browser by its sealed flow cookie, so
//! nothing else needs to be kept, and only this wxgate can compute either.

mod error;

pub use error::HubClientError;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::{HubClientConfig, Scope};
use crate::hub::params::{form_encode, with_query};
use crate::session::Session;

/// Per call to the hub.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The hub's discovery document and keys are fetched again after this long (and at
/// once when an id_token names a key not among them, at most every `REFETCH_GAP`).
const PROVIDER_TTL: Duration = Duration::from_secs(3600);
const REFETCH_GAP: Duration = Duration::from_secs(30);

/// What the hub's discovery document and JWKS say.
#[derive(Debug)]
pub struct Provider {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    jwks: JwkSet,
    fetched: Instant,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
    error: Option<String>,
}

pub struct HubClient {
    issuer: String,
    client_id: String,
    client_secret: String,
    scope: Scope,
    /// public_url + "/_wxgate/callback": the redirect_uri registered at the hub.
    redirect_uri: String,
    derive: hmac::Key,
    http: reqwest::Client,
    provider: Mutex<Option<Arc<Provider>>>,
}

impl HubClient {
    pub fn new(
        cfg: &HubClientConfig,
        redirect_uri: String,
        session_secret: &[u8],
    ) -> Result<HubClient, HubClientError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wxgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HubClientError::Unreachable(e.without_url().to_string()))?;
        // A key of its own: the session secret itself is never used for two purposes.
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, session_secret),
            b"wxgate hub client flow",
        );
        Ok(HubClient {
            issuer: cfg.issuer.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            scope: cfg.scope,
            redirect_uri,
            derive: hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref()),
            http,
            provider: Mutex::new(None),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The scope asked for by default (`hub_client.scope`).
    pub fn scope(&self) -> Scope {
        self.scope
    }

    fn derived(&self, purpose: &str, state: &str) -> String {
        let tag = hmac::sign(&self.derive, format!("{purpose}:{state}").as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// The PKCE verifier of the flow with this state (43 characters).
    pub fn verifier(&self, state: &str) -> String {
        self.derived("pkce", state)
    }

    /// The nonce of the flow with this state.
    pub fn nonce(&self, state: &str) -> String {
        self.derived("nonce", state)
    }

    /// The hub's endpoints and keys, fetched when missing or old.
    pub async fn provider(&self) -> Result<Arc<Provider>, HubClientError> {
        self.provider_fresher_than(PROVIDER_TTL).await
    }

    async fn provider_fresher_than(&self, age: Duration) -> Result<Arc<Provider>, HubClientError> {
        // One fetch at a time: the others wait for it rather than fetch too.
        let mut slot = self.provider.lock().await;
        if let Some(p) = slot.as_ref().filter(|p| p.fetched.elapsed() < age) {
            return Ok(p.clone());
        }
        let p = Arc::new(self.fetch_provider().await?);
        *slot = Some(p.clone());
        Ok(p)
    }

    async fn fetch_provider(&self) -> Result<Provider, HubClientError> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let d: Discovery = self.get_json(&url).await?;
        if d.issuer.trim_end_matches('/') != self.issuer {
            return Err(HubClientError::Discovery(format!(
                "the hub says its issuer is {:?}, not hub_client.issuer {:?}",
                d.issuer, self.issuer
            )));
        }
        let jwks: JwkSet = self.get_json(&d.jwks_uri).await?;
        Ok(Provider {
            authorization_endpoint: d.authorization_endpoint,
            token_endpoint: d.token_endpoint,
            jwks,
            fetched: Instant::now(),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, HubClientError> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| HubClientError::Unreachable(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(HubClientError::Unreachable(format!(
                "{url} answered {}",
                resp.status()
            )));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| HubClientError::Unreachable(e.without_url().to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| HubClientError::Discovery(format!("{url}: {e}")))
    }

    /// Where to send a browser to sign in at the hub (pure, given the provider).
    pub fn authorize_url(&self, p: &Provider, state: &str, scope: Scope) -> String {
        let challenge = crate::hub::pkce::s256(&self.verifier(state));
        let nonce = self.nonce(state);
        let scope = match scope {
            Scope::Base => "openid",
            Scope::UserInfo => "openid profile",
        };
        with_query(
            &p.authorization_endpoint,
            &[
                ("response_type", "code"),
                ("client_id", &self.client_id),
                ("redirect_uri", &self.redirect_uri),
                ("scope", scope),
                ("state", state),
                ("nonce", &nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
    }

    /// Whether `other` signs in at the same hub as the same client (a reload may keep
    /// its cached discovery document and keys).
    pub fn same_hub(&self, other: &HubClient) -> bool {
        self.issuer == other.issuer
            && self.client_id == other.client_id
            && self.client_secret == other.client_secret
            && self.scope == other.scope
            && self.redirect_uri == other.redirect_uri
    }

    /// Finishes a sign-in at the callback: the answer must come from this hub (RFC 9207
    /// `iss`, when given), its code redeems, its id_token verifies. Returns the
    /// id_token's claims.
    pub async fn finish(
        &self,
        query: &str,
        code: &str,
        state: &str,
    ) -> Result<Value, HubClientError> {
        let iss = crate::hub::params::Params::parse(query);
        if let Ok(Some(iss)) = iss.one("iss") {
            if iss.trim_end_matches('/') != self.issuer {
                return Err(HubClientError::BadIdToken(format!(
                    "the answer comes from {iss:?}, not this wxgate's hub"
                )));
            }
        }
        self.redeem(code, state).await
    }

    /// Redeems the hub's code from the callback of the flow with this state; returns
    /// the verified id_token's claims.
    pub async fn redeem(&self, code: &str, state: &str) -> Result<Value, HubClientError> {
        let p = self.provider().await?;
        let body = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("code_verifier", &self.verifier(state)),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
        let resp = self
            .http
            .post(&p.token_endpoint)
            .basic_auth(
                form_encode(&self.client_id),
                Some(form_encode(&self.client_secret)),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| HubClientError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| HubClientError::Unreachable(e.without_url().to_string()))?;
        if status.is_server_error() {
            return Err(HubClientError::Unreachable(format!(
                "the token endpoint answered {status}"
            )));
        }
        let answer: TokenAnswer = serde_json::from_slice(&bytes).map_err(|_| {
            HubClientError::Refused(format!("the token endpoint answered {status} without JSON"))
        })?;
        let id_token = match (answer.id_token, answer.error) {
            (_, Some(error)) => return Err(HubClientError::refused(&error)),
            (Some(t), None) if status.is_success() => t,
            _ => {
                return Err(HubClientError::Refused(format!(
                    "the token endpoint answered {status} without an id_token"
                )))
            }
        };
        let nonce = self.nonce(state);
        match verify_id_token(&id_token, &p.jwks, &self.issuer, &self.client_id, &nonce) {
            Err(IdTokenError::UnknownKey) => {
                // The hub rotated its key: fetch its keys again, unless they were
                // fetched in the last REFETCH_GAP (whatever tokens arrive, the hub is
                // asked at most that often).
                let fresh = self.provider_fresher_than(REFETCH_GAP).await?;
                verify_id_token(
                    &id_token,
                    &fresh.jwks,
                    &self.issuer,
                    &self.client_id,
                    &nonce,
                )
                .map_err(|e| HubClientError::BadIdToken(e.to_string()))
            }
            other => other.map_err(|e| HubClientError::BadIdToken(e.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the id_token names a key the hub does not publish")]
    UnknownKey,
    #[error("the id_token does not verify: {0}")]
    Invalid(String),
    #[error("the id_token's nonce is not this sign-in's")]
    Nonce,
}

/// Verifies an id_token from the hub's keys: signature, `iss`, `aud` = our client_id,
/// `exp`/`nbf`, and the flow's `nonce` (pure).
pub fn verify_id_token(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    client_id: &str,
    nonce: &str,
) -> Result<Value, IdTokenError> {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let invalid = |e: jsonwebtoken::errors::Error| IdTokenError::Invalid(e.to_string());
    let header = decode_header(token).map_err(invalid)?;
    // A shared secret is never published: only the asymmetric algorithms the hub signs with.
    if !matches!(
        header.alg,
        Algorithm::ES256 | Algorithm::EdDSA | Algorithm::RS256
    ) {
        return Err(IdTokenError::Invalid(format!(
            "algorithm {:?} is not accepted",
            header.alg
        )));
    }
    let kid = header.kid.ok_or(IdTokenError::UnknownKey)?;
    let jwk = jwks.find(&kid).ok_or(IdTokenError::UnknownKey)?;
    let key = DecodingKey::from_jwk(jwk).map_err(invalid)?;
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[client_id]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.validate_nbf = true;
    v.leeway = 30;
    let claims = decode::<Value>(token, &key, &v).map_err(invalid)?.claims;
    if claims["nonce"].as_str() != Some(nonce) {
        return Err(IdTokenError::Nonce);
    }
    Ok(claims)
}

/// The user an id_token from the hub names, as a session of this wxgate (pure). The
/// hub's `appid` and `openid` are the official account's, so the identity this wxgate
/// signs says the same as the hub's.
pub fn session_from_claims(claims: &Value) -> Result<Session, HubClientError> {
    let text = |k: &str| {
        claims[k]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let openid = text("openid")
        .or_else(|| text("sub"))
        .ok_or_else(|| HubClientError::BadIdToken("the id_token names no user".into()))?;
    let scope = match claims["scope"].as_str() {
        Some("snsapi_userinfo") => Scope::UserInfo,
        _ => Scope::Base,
    };
    let mut s = Session::new(text("appid").unwrap_or_default(), openid, scope);
    s.unionid = text("unionid");
    if scope == Scope::UserInfo {
        s.nickname = text("nickname").or_else(|| text("name"));
        s.headimgurl = text("headimgurl").or_else(|| text("picture"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests;
