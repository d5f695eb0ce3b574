//! The corp access_token (`cgi-bin/gettoken`), held once for every replica the way
//! the official account's token is (see `account::holder`): kept in the session store,
//! renewed five minutes early by one caller while the others keep using it, and
//! replaced once when WeCom refuses it (40014, 42001).
//!
//! WeCom's token does not end the previous one when a new one is fetched, but its
//! `gettoken` is rate-limited per app: many replicas each fetching their own would
//! spend that limit for nothing.

use std::sync::Arc;
use std::time::Duration;

use super::client::WecomClient;
use super::error::WecomError;
use crate::account::holder::{Fetched, Holder, HolderError, Want};
use crate::session::{Store, StoreError};

/// Why the corp token could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Wecom(#[from] WecomError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("another replica is renewing the corp token and has not finished")]
    Busy,
}

impl HolderError for TokenError {
    fn busy() -> Self {
        TokenError::Busy
    }
}

/// How far ahead of its expiry the corp token is renewed.
const AHEAD: Duration = Duration::from_secs(300);

/// What identifies a corp token: two configurations with the same one share it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CorpKey {
    pub corp_id: String,
    pub agent_id: String,
    pub secret: String,
    pub api_base: String,
}

pub struct CorpTokenHolder {
    holder: Holder<TokenError>,
    client: WecomClient,
    pub(crate) key: CorpKey,
}

impl CorpTokenHolder {
    pub(crate) fn new(
        key: CorpKey,
        client: WecomClient,
        store: Arc<Store>,
        lock_ttl: Duration,
    ) -> Self {
        // One token per app (each app's secret has its own).
        let store_key = format!("wecom:{}:{}:access_token", key.corp_id, key.agent_id);
        CorpTokenHolder {
            holder: Holder::new("wecom_access_token", store_key, store, AHEAD, lock_ttl),
            client,
            key,
        }
    }

    pub fn client(&self) -> &WecomClient {
        &self.client
    }

    async fn fetch(&self) -> Result<Fetched, TokenError> {
        let t = self
            .client
            .gettoken(&self.key.corp_id, &self.key.secret)
            .await?;
        Ok(Fetched {
            value: t.access_token,
            expires_in: t.expires_in,
        })
    }

    /// The current token, renewed when due.
    pub async fn get(&self) -> Result<String, TokenError> {
        let r = self.holder.get(Want::Any, |_| self.fetch()).await?;
        Ok(r.value)
    }

    /// Runs a call with the token; a refusal of the token (40014/42001) replaces it
    /// once and runs the call again. A second refusal is the caller's answer.
    pub async fn with_token<T, F, Fut>(&self, call: F) -> Result<T, TokenError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, WecomError>>,
    {
        let token = self.get().await?;
        match call(token.clone()).await {
            Err(e) if e.token_rejected() => {
                let fresh = self.holder.get(Want::Not(&token), |_| self.fetch()).await?;
                Ok(call(fresh.value).await?)
            }
            other => Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::MemoryStore;

    async fn mock() -> (std::net::SocketAddr, crate::mock::MockWechat) {
        crate::mock::spawn(crate::mock::MockConfig::default())
            .await
            .unwrap()
    }

    fn holder(
        addr: std::net::SocketAddr,
        mock: &crate::mock::MockWechat,
        store: Arc<Store>,
    ) -> CorpTokenHolder {
        let w = &mock.config().wecom;
        let base = format!("http://{addr}");
        CorpTokenHolder::new(
            CorpKey {
                corp_id: w.corp_id.clone(),
                agent_id: w.agent_id.clone(),
                secret: w.secret.clone(),
                api_base: base.clone(),
            },
            WecomClient::new(&base, Duration::from_secs(5)).unwrap(),
            store,
            Duration::from_secs(5),
        )
    }

    #[tokio::test]
    async fn replicas_sharing_a_store_fetch_the_corp_token_once() {
        let (addr, mock) = mock().await;
        let store = Arc::new(Store::Memory(MemoryStore::new(10)));
        let a = holder(addr, &mock, store.clone());
        let b = holder(addr, &mock, store);
        let (ta, tb) = tokio::join!(a.get(), b.get());
        assert_eq!(ta.unwrap(), tb.unwrap());
        assert_eq!(mock.calls("wecom_gettoken"), 1);
    }

    #[tokio::test]
    async fn an_expired_token_is_replaced_once_and_the_call_made_again() {
        let (addr, mock) = mock().await;
        let store = Arc::new(Store::Memory(MemoryStore::new(10)));
        let h = holder(addr, &mock, store);
        let userid = mock.config().wecom.members[0].userid.clone();
        let first = h.get().await.unwrap();
        mock.expire_wecom_tokens();
        let info = h
            .with_token(|t| {
                let userid = userid.clone();
                let client = h.client().clone();
                async move { client.user_get(&t, &userid).await }
            })
            .await
            .unwrap();
        assert_eq!(info.userid, userid);
        assert_ne!(h.get().await.unwrap(), first);
        assert_eq!(mock.calls("wecom_gettoken"), 2);

        // Refused again after the renewal: the caller hears it, no loop.
        mock.inject("wecom_user_get", 42001, 2);
        let e = h
            .with_token(|t| {
                let userid = userid.clone();
                let client = h.client().clone();
                async move { client.user_get(&t, &userid).await }
            })
            .await
            .unwrap_err();
        assert!(
            matches!(e, TokenError::Wecom(ref w) if w.token_rejected()),
            "{e}"
        );
    }
}
