//! The account's global access_token and the JS-SDK ticket made with it, each one
//! [`Holder`] shared by every replica.
//!
//! Knows WeChat's rules for renewing: a classic fetch always brings a new token (and
//! ends the previous one five minutes later); a stable fetch brings the same token
//! until its last five minutes. A token a caller saw refused is replaced once:
//! classic by a new fetch, stable first by an ordinary fetch (someone else may have
//! forced a new one) and only if WeChat still hands out the refused one by
//! `force_refresh`, at most once per 30 s (WeChat ignores faster ones and allows 20 a
//! day).

use std::sync::Arc;
use std::time::Duration;

use super::error::AccountError;
use super::holder::{now_ms, Fetched, Holder, Record, Renewal, Want};
use crate::config::TokenMode;
use crate::session::Store;
use crate::wechat::{AppCredentials, WechatClient};

/// A credential with the seconds it has left.
#[derive(Clone, PartialEq, Eq)]
pub struct Held {
    pub value: String,
    pub expires_in: u64,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("value", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

fn held(r: Record) -> Held {
    let expires_in = r.expires_in(now_ms());
    Held {
        value: r.value,
        expires_in,
    }
}

/// What identifies a token holder: two configurations with the same one can share it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TokenKey {
    pub appid: String,
    pub secret: String,
    pub mode: TokenMode,
    pub api_base: String,
    pub ahead: Duration,
}

pub struct TokenHolder {
    holder: Holder,
    wechat: WechatClient,
    app: AppCredentials,
    mode: TokenMode,
    pub(crate) key: TokenKey,
}

impl TokenHolder {
    pub(crate) fn new(
        key: TokenKey,
        wechat: WechatClient,
        store: Arc<Store>,
        lock_ttl: Duration,
    ) -> TokenHolder {
        // Stable and classic tokens are independent at WeChat: each has its own entry.
        let store_key = format!("account:{}:{}:access_token", key.appid, key.mode.as_str());
        TokenHolder {
            holder: Holder::new("access_token", store_key, store, key.ahead, lock_ttl),
            app: AppCredentials {
                appid: key.appid.clone(),
                secret: key.secret.clone(),
            },
            mode: key.mode,
            wechat,
            key,
        }
    }

    /// The current token, renewed when due.
    pub async fn get(&self) -> Result<Held, AccountError> {
        self.holder
            .get(Want::Any, |r| self.fetch(r))
            .await
            .map(held)
    }

    /// A token other than `refused`, which WeChat answered 40001/42001 to. Reports from
    /// many callers about one token make one renewal.
    pub async fn replace(&self, refused: &str) -> Result<Held, AccountError> {
        self.holder
            .get(Want::Not(refused), |r| self.fetch(r))
            .await
            .map(held)
    }

    async fn fetch(&self, r: Renewal) -> Result<Fetched, AccountError> {
        let token = match self.mode {
            TokenMode::Classic => self.wechat.classic_token(&self.app).await?,
            _ => {
                let t = self.wechat.stable_token(&self.app, false).await?;
                match r.refused {
                    Some(refused) if t.access_token == refused => {
                        tracing::warn!("WeChat still hands out the refused stable token: forcing a new one (force_refresh, 20 a day)");
                        self.wechat.stable_token(&self.app, true).await?
                    }
                    _ => t,
                }
            }
        };
        Ok(Fetched {
            value: token.access_token,
            expires_in: token.expires_in,
        })
    }

    /// Runs a `cgi-bin` call with the token; a refusal of the token (40001/42001)
    /// replaces it once and runs the call again.
    pub async fn with_token<T, F, Fut>(&self, call: F) -> Result<T, AccountError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, crate::wechat::WechatError>>,
    {
        let token = self.get().await?;
        match call(token.value.clone()).await {
            Err(e) if e.token_rejected() => {
                let fresh = self.replace(&token.value).await?;
                Ok(call(fresh.value).await?)
            }
            other => Ok(other?),
        }
    }

    pub fn wechat(&self) -> &WechatClient {
        &self.wechat
    }
}

/// The JS-SDK's jsapi_ticket, fetched with the token and shared like it.
pub struct TicketHolder {
    holder: Holder,
    token: Arc<TokenHolder>,
}

impl TicketHolder {
    pub(crate) fn new(
        token: Arc<TokenHolder>,
        store: Arc<Store>,
        lock_ttl: Duration,
    ) -> TicketHolder {
        let store_key = format!("account:{}:jsapi_ticket", token.key.appid);
        TicketHolder {
            holder: Holder::new("jsapi_ticket", store_key, store, token.key.ahead, lock_ttl),
            token,
        }
    }

    pub async fn get(&self) -> Result<Held, AccountError> {
        self.holder.get(Want::Any, |_| self.fetch()).await.map(held)
    }

    async fn fetch(&self) -> Result<Fetched, AccountError> {
        let wechat = self.token.wechat();
        let ticket = self
            .token
            .with_token(|t| async move { wechat.jsapi_ticket(&t).await })
            .await?;
        Ok(Fetched {
            value: ticket.ticket,
            expires_in: ticket.expires_in,
        })
    }
}
