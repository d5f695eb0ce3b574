//! The official account's own services for every app behind wxgate (`[account]`):
//! one holder of the account's global access_token for all replicas, handed to the
//! apps' backends on the admin listener; JS-SDK signatures for their pages; and the
//! identity's `subscribe` claim.
//!
//! The global token is not the web-authorization token of a sign-in (that one is per
//! user and serves only `sns/*`): this module knows nothing of sign-ins, sessions or
//! cookies. It plugs in at four places: `config` (`[account]`), the admin listener
//! (`/account/*`, see `admin`), the public `/_wxgate/jssdk*` URLs (see `jssdk`) and
//! the identity's extra claims ([`Account::identity_extra`]).

pub mod admin;
pub mod error;
pub(crate) mod holder;
pub mod jssdk;
mod subscribe;
mod token;

pub use error::AccountError;
pub use token::{Held, TicketHolder, TokenHolder};

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, TokenMode};
use crate::identity::Extra;
use crate::session::{Session, Store};
use crate::wechat::WechatClient;

use subscribe::Subscriptions;
use token::TokenKey;

/// The account services of one configuration. Cheap to rebuild on reload: the shared
/// values live in the session store, and [`Account::keep_from`] carries over what a
/// process keeps itself.
pub struct Account {
    pub appid: String,
    pub token: Arc<TokenHolder>,
    pub ticket: Arc<TicketHolder>,
    /// Hosts JS-SDK signatures are made for (exact, or `*.domain`).
    pub jssdk_hosts: Vec<String>,
    subscriptions: Option<Arc<Subscriptions>>,
    endpoint_secret: Option<String>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("appid", &self.appid)
            .field("jssdk_hosts", &self.jssdk_hosts)
            .field("subscribe_claim", &self.subscriptions.is_some())
            .field(
                "endpoint_secret",
                &self.endpoint_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl Account {
    /// The services `[account]` asks for; None when it is absent or `token = "off"`.
    pub fn from_config(cfg: &Config, wechat: &WechatClient, store: Arc<Store>) -> Option<Account> {
        let a = cfg.account.as_ref().filter(|a| a.token != TokenMode::Off)?;
        // A renewal may take a few WeChat calls, each retried twice when WeChat is busy:
        // the lock outlives all of them, and callers wait for it that long at most.
        let lock_ttl = cfg.wechat.timeout.get() * 4 + Duration::from_secs(2);
        let key = TokenKey {
            appid: cfg.wechat.appid.clone(),
            secret: cfg.wechat.secret.clone(),
            mode: a.token,
            api_base: cfg.wechat.api_base_url.clone(),
            ahead: a.refresh_ahead.get(),
        };
        let token = Arc::new(TokenHolder::new(
            key,
            wechat.clone(),
            store.clone(),
            lock_ttl,
        ));
        let ticket = Arc::new(TicketHolder::new(token.clone(), store, lock_ttl));
        Some(Account {
            appid: cfg.wechat.appid.clone(),
            ticket,
            token,
            jssdk_hosts: a.jssdk_hosts.clone(),
            subscriptions: a
                .subscribe_claim
                .then(|| Arc::new(Subscriptions::new(a.subscribe_ttl.get(), &cfg.wechat.lang))),
            endpoint_secret: Some(a.token_endpoint_secret.clone()).filter(|s| !s.is_empty()),
        })
    }

    /// After a reload: keeps the running holders (their in-process copy and queue) when
    /// the account and its rules are unchanged, and the remembered subscribe answers.
    pub fn keep_from(&mut self, previous: &Account) {
        if self.token.key == previous.token.key {
            self.token = previous.token.clone();
            self.ticket = previous.ticket.clone();
        }
        if let (Some(new), Some(old)) = (&mut self.subscriptions, &previous.subscriptions) {
            if self.appid == previous.appid && new.same_settings(old) {
                *new = old.clone();
            }
        }
    }

    /// The identity's claims that come from the account: `subscribe` for a user of
    /// this account (not for a website-app sign-in, whose openid WeChat's user/info
    /// does not know).
    pub async fn identity_extra(&self, session: &Session) -> Extra {
        let subscribe = match &self.subscriptions {
            Some(subs) if session.appid == self.appid => {
                subs.of(&self.token, &session.openid).await
            }
            _ => None,
        };
        Extra { subscribe }
    }
}
