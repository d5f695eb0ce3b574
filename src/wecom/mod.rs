//! WeCom (企业微信): signing an organisation's members in, inside the WeCom app (its
//! OAuth link with the app's `agentid`) and on computers (WeCom's web-login QR,
//! `login_type=CorpApp`). Both come back with a code that `cgi-bin/auth/getuserinfo`
//! redeems with the corp access_token.
//!
//! The parts: the links (pure, `url`), the API client and what its errcodes mean
//! (`client`, `error`), the corp token shared by every replica (`token`), who a code
//! belongs to and whether they may in, with their claims (`member`, pure), and the
//! pages of a refused sign-in (`refusal`). [`Wecom::identify`] runs a callback's calls.
//! This module knows nothing of cookies, flow state or sessions.

pub mod client;
pub mod error;
pub mod member;
pub mod refusal;
pub mod token;
pub mod url;

pub use client::{MemberInfo, PrivateInfo, Visitor, WecomClient};
pub use error::{extract_hint, ErrorKind, WecomError};
pub use member::{Private, WecomIdentity, Who};
pub use refusal::WecomRefusal;
pub use token::{CorpTokenHolder, TokenError};

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, WecomConfig, WecomScope};
use crate::session::Store;
use token::CorpKey;

/// Why a callback did not produce an identity.
#[derive(Debug)]
pub enum Failure {
    /// WeCom refused the code (40029: forged, used, expired): one fresh
    /// authorization may help, then [`WecomRefusal::CodeRejected`].
    Code(WecomError),
    /// The session store could not hold the corp token.
    Store(crate::session::StoreError),
    Refused(WecomRefusal),
}

impl From<TokenError> for Failure {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Wecom(e) if e.kind() == ErrorKind::InvalidCode => Failure::Code(e),
            TokenError::Wecom(e) => Failure::Refused(WecomRefusal::from_error(&e)),
            TokenError::Store(e) => Failure::Store(e),
            TokenError::Busy => Failure::Refused(WecomRefusal::Busy),
        }
    }
}

/// The WeCom sign-in of one configuration. Cheap to rebuild on reload: the token
/// lives in the session store and [`Wecom::keep_from`] carries over the holder.
pub struct Wecom {
    pub cfg: WecomConfig,
    pub token: Arc<CorpTokenHolder>,
}

impl std::fmt::Debug for Wecom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wecom")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Wecom {
    /// The sign-in `[wecom]` asks for; None without the section.
    pub fn from_config(cfg: &Config, store: Arc<Store>) -> Result<Option<Wecom>, WecomError> {
        let Some(w) = &cfg.wecom else {
            return Ok(None);
        };
        let client = WecomClient::new(&w.api_base_url, w.timeout.get())?;
        // A renewal is one call, retried twice when WeCom is busy: the lock outlives it.
        let lock_ttl = w.timeout.get() * 3 + Duration::from_secs(2);
        let key = CorpKey {
            corp_id: w.corp_id.clone(),
            agent_id: w.agent_id.clone(),
            secret: w.secret.clone(),
            api_base: w.api_base_url.clone(),
        };
        Ok(Some(Wecom {
            cfg: w.clone(),
            token: Arc::new(CorpTokenHolder::new(key, client, store, lock_ttl)),
        }))
    }

    /// After a reload: keeps the running token holder when the app is unchanged.
    pub fn keep_from(&mut self, previous: &Wecom) {
        if self.token.key == previous.token.key {
            self.token = previous.token.clone();
        }
    }

    /// The in-app OAuth link for a new flow.
    pub fn authorize_location(&self, redirect_uri: &str, state: &str) -> String {
        url::authorize_url(
            &self.cfg.authorize_url,
            &self.cfg.corp_id,
            &self.cfg.agent_id,
            redirect_uri,
            self.cfg.scope,
            state,
        )
    }

    /// The web-login QR link for a new flow.
    pub fn sso_location(&self, redirect_uri: &str, state: &str) -> String {
        url::sso_url(
            &self.cfg.sso_url,
            &self.cfg.corp_id,
            &self.cfg.agent_id,
            redirect_uri,
            state,
        )
    }

    /// A callback's work: who the code belongs to, whether `[wecom]`'s rules let
    /// them in, and what WeCom says of them (name, departments; private details with
    /// snsapi_privateinfo and consent). An expired corp token is replaced once.
    pub async fn identify(&self, code: &str) -> Result<WecomIdentity, Failure> {
        let client = self.token.client();
        let visitor = self
            .token
            .with_token(|t| async move { client.getuserinfo(&t, code).await })
            .await?;
        member::admit_visitor(&visitor, self.cfg.members_only, &self.cfg.allowed_departments)
            .map_err(|r| {
                tracing::warn!(corpid = %self.cfg.corp_id, "wecom sign-in refused: not a member (wecom.members_only)");
                Failure::Refused(r)
            })?;
        let who = match visitor {
            Visitor::NonMember {
                openid,
                external_userid,
            } => Who::Visitor {
                openid,
                external_userid,
            },
            Visitor::Member {
                userid,
                user_ticket,
            } => {
                let info = self
                    .token
                    .with_token(|t| {
                        let userid = userid.clone();
                        async move { client.user_get(&t, &userid).await }
                    })
                    .await
                    .map_err(|e| match Failure::from(e) {
                        // A code already spent: a fresh one would fail the same way.
                        Failure::Code(e) => Failure::Refused(WecomRefusal::from_error(&e)),
                        other => other,
                    })?;
                let private = match (self.cfg.scope, user_ticket) {
                    (WecomScope::PrivateInfo, Some(ticket)) => self.private_details(&ticket).await,
                    _ => None,
                };
                Who::Member {
                    userid: info.userid,
                    name: Some(info.name).filter(|n| !n.is_empty()),
                    department: info.department,
                    private,
                }
            }
        };
        let identity = WecomIdentity {
            corp_id: self.cfg.corp_id.clone(),
            who,
        };
        member::admit(&identity, self.cfg.members_only, &self.cfg.allowed_departments)
            .map_err(|r| {
                tracing::warn!(sub = %identity.subject(), departments = ?identity.departments(), "wecom sign-in refused: not in wecom.allowed_departments");
                Failure::Refused(r)
            })?;
        Ok(identity)
    }

    /// The consented details. Their absence never stops a sign-in: the member is
    /// known without them.
    async fn private_details(&self, ticket: &str) -> Option<Private> {
        let client = self.token.client();
        match self
            .token
            .with_token(|t| async move { client.getuserdetail(&t, ticket).await })
            .await
        {
            Ok(p) => Some(p.into()),
            Err(e) => {
                tracing::warn!(error = %e, "wecom private details unavailable; signing in without them");
                None
            }
        }
    }
}
