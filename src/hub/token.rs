//! `POST /_wxgate/oidc/token` (the code for tokens) and `/_wxgate/oidc/userinfo` (the
//! claims for an access token).

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Response, StatusCode};
use serde_json::{json, Value};
use tracing::{info, warn};

use super::error::{no_store, TokenError, UserinfoError};
use super::grants::{new_secret, AccessGrant, Grants};
use super::params::Params;
use super::{pkce, Hub};
use crate::body::Body;
use crate::config::Scope;
use crate::metrics::labels::{HubEndpoint, HubRequest};
use crate::metrics::metrics;
use crate::session::now_unix;
use crate::signin::Core;

/// Claims of a token that say nothing about the user, left out of userinfo.
const TOKEN_ONLY_CLAIMS: &[&str] = &["iss", "aud", "iat", "nbf", "exp", "jti"];

pub async fn token(core: &Core, hub: &Hub, headers: &HeaderMap, body: &[u8]) -> Response<Body> {
    match redeem(core, hub, headers, body).await {
        Ok(v) => {
            metrics().hub.inc(HubRequest(HubEndpoint::Token, "issued"));
            no_store(crate::pages::json_response(StatusCode::OK, &v))
        }
        Err(e) => {
            info!(error = %e, "hub: token request refused");
            metrics().hub.inc(HubRequest(HubEndpoint::Token, e.code()));
            e.response()
        }
    }
}

async fn redeem(
    core: &Core,
    hub: &Hub,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, TokenError> {
    let form_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(TokenError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| TokenError::InvalidRequest("the body is not UTF-8"))?;
    let form = Params::parse(text);
    if form.is_undecodable() {
        return Err(TokenError::InvalidRequest("a parameter is not valid UTF-8"));
    }
    let client = hub.clients.authenticate(headers, &form)?;
    let one = |name: &'static str, missing: &'static str| {
        form.one(name)
            .map_err(|_| TokenError::InvalidRequest("a parameter is given more than once"))?
            .ok_or(TokenError::InvalidRequest(missing))
    };
    match one("grant_type", "grant_type is required")? {
        "authorization_code" => {}
        _ => return Err(TokenError::UnsupportedGrantType),
    }
    let code = one("code", "code is required")?;
    let redirect_uri = one("redirect_uri", "redirect_uri is required")?;
    let verifier = one(
        "code_verifier",
        "PKCE is required: code_verifier is missing",
    )?;

    let grants = Grants {
        store: core.store(),
    };
    let ttl = hub.token_ttl;
    let unavailable = |e: crate::session::StoreError| {
        warn!(error = %e, "hub: session store unavailable at the token endpoint");
        TokenError::Unavailable
    };
    // Taken, not read: whatever follows, this code never works again.
    let Some(g) = grants.take_code(code).await.map_err(unavailable)? else {
        if grants
            .revoke_redeemed(code, ttl)
            .await
            .map_err(unavailable)?
        {
            warn!(client = %client.id, "hub: a code was redeemed twice; the access token it gave is revoked");
            metrics()
                .hub
                .inc(HubRequest(HubEndpoint::Token, "replay_revoked"));
        }
        return Err(TokenError::InvalidGrant(
            "the code is unknown, expired or already used",
        ));
    };
    if g.expires_at < now_unix() {
        return Err(TokenError::InvalidGrant("the code has expired"));
    }
    if g.client_id != client.id {
        warn!(client = %client.id, issued_to = %g.client_id, "hub: a client presented another client's code");
        return Err(TokenError::InvalidGrant(
            "the code was issued to another client",
        ));
    }
    if g.redirect_uri != redirect_uri {
        return Err(TokenError::InvalidGrant(
            "redirect_uri differs from the authorization request's",
        ));
    }
    if !pkce::verifies(verifier, &g.code_challenge) {
        return Err(TokenError::InvalidGrant(
            "code_verifier does not match the code_challenge",
        ));
    }

    let access_token = new_secret();
    grants
        .mark_used(code, &access_token, ttl)
        .await
        .map_err(unavailable)?;
    let access = AccessGrant {
        client_id: client.id.clone(),
        session: g.session.clone(),
    };
    grants
        .put_access(&access_token, &access, ttl)
        .await
        .map_err(unavailable)?;

    let extra = core.identity_extra(&g.session).await;
    let mut claims = core.signer().claims_with(&g.session, &extra);
    claims["aud"] = json!(client.id);
    claims["azp"] = json!(client.id);
    claims["auth_time"] = json!(g.session.created_at);
    if let Some(nonce) = &g.nonce {
        claims["nonce"] = json!(nonce);
    }
    let id_token = core.signer().sign_claims(&claims).map_err(|e| {
        warn!(error = %e, "hub: cannot sign an id_token");
        TokenError::Internal
    })?;
    info!(client = %client.id, openid = %g.session.openid, "hub: tokens issued");
    Ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "id_token": id_token,
        "scope": scope_string(g.session.scope),
    }))
}

/// The OAuth scope an app was granted, in its own words.
pub fn scope_string(s: Scope) -> &'static str {
    match s {
        Scope::Base => "openid",
        Scope::UserInfo => "openid profile",
    }
}

pub async fn userinfo(core: &Core, headers: &HeaderMap) -> Response<Body> {
    let token = match bearer(headers) {
        Some(t) => t,
        None => return UserinfoError::Missing.response(),
    };
    let grants = Grants {
        store: core.store(),
    };
    let grant = match grants.access(token).await {
        Ok(Some(g)) => g,
        Ok(None) => {
            metrics()
                .hub
                .inc(HubRequest(HubEndpoint::Userinfo, "invalid_token"));
            return UserinfoError::InvalidToken.response();
        }
        Err(e) => {
            warn!(error = %e, "hub: session store unavailable at userinfo");
            return UserinfoError::Unavailable.response();
        }
    };
    let extra = core.identity_extra(&grant.session).await;
    let mut claims = core.signer().claims_with(&grant.session, &extra);
    if let Some(map) = claims.as_object_mut() {
        for k in TOKEN_ONLY_CLAIMS {
            map.remove(*k);
        }
    }
    metrics().hub.inc(HubRequest(HubEndpoint::Userinfo, "ok"));
    no_store(crate::pages::json_response(StatusCode::OK, &claims))
}

/// `Authorization: Bearer <token>` (RFC 6750 §2.1), the only way taken.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty() && t.len() <= 512)
}
