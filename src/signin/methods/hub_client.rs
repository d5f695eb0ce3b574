//! Signing in through a hub (`[hub_client]`): every browser goes to the hub's authorize
//! endpoint (the hub signs computers in itself, by its QR page); back on
//! `/_wxgate/callback`, the hub's code is redeemed and its id_token verified. The
//! protocol is [`crate::hub_client`]; this is the method around it.

use std::sync::Arc;

use http::Response;
use tracing::warn;

use crate::body::Body;
use crate::hub_client::{HubClient, HubClientError};
use crate::metrics::metrics;
use crate::query::param as query_param;
use crate::session::Idp;
use crate::signin::{Begin, Callback, Core, Method, SignInError, Verified};

/// Claims of the hub's id_token that are about the token, or already a session field:
/// the rest (the hub's `subscribe`...) travel on as this session's extra claims.
const NOT_CARRIED: &[&str] = &[
    "iss",
    "aud",
    "azp",
    "exp",
    "iat",
    "nbf",
    "jti",
    "sid",
    "nonce",
    "auth_time",
    "at_hash",
    "sub",
    "appid",
    "openid",
    "scope",
    "unionid",
    "nickname",
    "name",
    "headimgurl",
    "picture",
    "idp",
];

pub struct HubSignIn {
    client: Option<Arc<HubClient>>,
}

impl Method for HubSignIn {
    const NAME: &'static str = "hub";

    fn new(core: &Core) -> Self {
        let client = core.cfg.hub_client.as_ref().and_then(|c| {
            HubClient::new(c, core.redirect_uri.clone(), &core.cfg.session.secret_bytes)
                .map_err(|e| warn!(error = %e, "hub_client: cannot sign in through the hub"))
                .ok()
                .map(Arc::new)
        });
        HubSignIn { client }
    }

    /// The hub's discovery document and keys stay cached over a reload to the same hub.
    fn keep_from(&mut self, previous: &Self) {
        if let (Some(new), Some(old)) = (&self.client, &previous.client) {
            if new.same_hub(old) {
                self.client = Some(old.clone());
            }
        }
    }

    async fn start(&self, core: &Core, begin: &Begin<'_>) -> Response<Body> {
        let reply = begin.browser.reply;
        let Some(hub) = &self.client else {
            return SignInError::Misconfigured.response(reply, None);
        };
        match hub.provider().await {
            Ok(p) => {
                // The flow remembers a scope beyond `hub_client.scope`: a fresh start asks
                // the same, and a callback given less knows it was asked for more.
                let scope = begin.route.scope;
                let beyond = (scope != hub.scope()).then_some(scope);
                core.redirect_with_flow_scoped(
                    begin.browser.headers,
                    begin.rd,
                    begin.tries,
                    Self::NAME,
                    beyond,
                    |state| hub.authorize_url(&p, state, scope),
                )
            }
            Err(e) => {
                warn!(error = %e, "cannot start a sign-in through the hub");
                metrics().signins.inc(e.outcome());
                e.response(reply, Some(core.start_url(begin.rd)))
            }
        }
    }

    async fn finish(&self, _core: &Core, callback: &Callback<'_>) -> Result<Verified, SignInError> {
        let hub = self.client.as_ref().ok_or(SignInError::Misconfigured)?;
        let state = query_param(callback.query, "state").unwrap_or_default();
        let claims = hub
            .finish(callback.query, callback.code, &state)
            .await
            .map_err(|e| {
                warn!(error = %e, "sign-in through the hub failed");
                match e {
                    // An expired or used code: one fresh start may help.
                    HubClientError::Refused(_) => SignInError::CodeStale,
                    e => SignInError::Hub(e),
                }
            })?;
        let session = crate::hub_client::session_from_claims(&claims).map_err(SignInError::Hub)?;
        let mut verified = Verified::from_session(session);
        verified.idp = Idp::Hub;
        if let Some(map) = claims.as_object() {
            for (k, v) in map {
                if !NOT_CARRIED.contains(&k.as_str()) {
                    verified.claims.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(verified)
    }
}
