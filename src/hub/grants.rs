//! What the hub keeps between requests, all in the session store's short-lived values
//! (so every replica sees them with the Redis store), each under a digest of its
//! bearer value so a copy of the store holds no usable code or token:
//!
//! - `hub:req:<id>`: an authorization request waiting for the hub's own sign-in;
//! - `hub:code:<digest>`: a code, taken (read and deleted at once) by its one redemption;
//! - `hub:used:<digest>`: a redeemed code, naming the access token it gave, so a second
//!   redemption revokes that token (RFC 6749 §4.1.2);
//! - `hub:at:<digest>`: an access token for userinfo; `hub:revoked:<digest>` a revoked one.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::config::Scope;
use crate::session::{Session, Store, StoreError};

/// How long the hub's own sign-in may take (WeChat's round trip, a desktop QR scan).
pub const PENDING_TTL: Duration = Duration::from_secs(600);

/// An authorization request that passed every check, waiting for a hub session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub client_id: String,
    pub redirect_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub code_challenge: String,
    /// What the app asked for, capped by what it may get.
    pub scope: Scope,
}

/// A code: everything the token endpoint needs to check and answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The user, with the scope granted to this app and none of WeChat's tokens.
    pub session: Session,
    /// Unix seconds; the store's expiry is the first guard, this the second.
    pub expires_at: u64,
}

/// An access token's grant: the user as the app may see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessGrant {
    pub client_id: String,
    pub session: Session,
}

/// A fresh bearer value: 32 random bytes, base64url.
pub fn new_secret() -> String {
    URL_SAFE_NO_PAD.encode(crate::random::bytes(32))
}

/// The key part for a bearer value.
pub fn digest(bearer: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bearer.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// The user as an app may see them: WeChat's tokens never leave the hub, and the
/// profile goes only with the scope granted.
pub fn for_app(session: &Session, granted: Scope) -> Session {
    let mut s = session.clone();
    s.access_token = None;
    s.refresh_token = None;
    s.scope = granted;
    if granted == Scope::Base {
        s.nickname = None;
        s.headimgurl = None;
    }
    s
}

/// The hub's records in the store.
pub struct Grants<'a> {
    pub store: &'a Store,
}

impl Grants<'_> {
    async fn put<T: Serialize>(&self, key: &str, v: &T, ttl: Duration) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(v).map_err(|_| StoreError::Corrupt)?;
        self.store.put_ephemeral(key, &bytes, ttl).await
    }

    fn decode<T: DeserializeOwned>(bytes: Option<Vec<u8>>) -> Result<Option<T>, StoreError> {
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(|_| StoreError::Corrupt))
            .transpose()
    }

    /// Keeps a request while the hub signs its user in; returns the id to resume it by.
    pub async fn put_pending(&self, p: &Pending) -> Result<String, StoreError> {
        // The id is a state-like token: it travels in the sign-in's return path.
        let id = crate::signin::state::new_state();
        self.put(&format!("hub:req:{id}"), p, PENDING_TTL).await?;
        Ok(id)
    }

    pub async fn pending(&self, id: &str) -> Result<Option<Pending>, StoreError> {
        Self::decode(self.store.get_ephemeral(&format!("hub:req:{id}")).await?)
    }

    /// Stores a code; returns it.
    pub async fn put_code(&self, g: &CodeGrant, ttl: Duration) -> Result<String, StoreError> {
        let code = new_secret();
        self.put(&format!("hub:code:{}", digest(&code)), g, ttl)
            .await?;
        Ok(code)
    }

    /// Takes a code: of two redemptions, exactly one gets it.
    pub async fn take_code(&self, code: &str) -> Result<Option<CodeGrant>, StoreError> {
        Self::decode(
            self.store
                .take_ephemeral(&format!("hub:code:{}", digest(code)))
                .await?,
        )
    }

    /// Records that `code` was redeemed for `access_token`, before the token exists, so
    /// a replay racing the first redemption still finds what to revoke.
    pub async fn mark_used(
        &self,
        code: &str,
        access_token: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = format!("hub:used:{}", digest(code));
        self.put(&key, &digest(access_token), ttl).await
    }

    /// A second redemption: revokes the access token the first one got. True when the
    /// code had been redeemed.
    pub async fn revoke_redeemed(&self, code: &str, ttl: Duration) -> Result<bool, StoreError> {
        let used: Option<String> = Self::decode(
            self.store
                .get_ephemeral(&format!("hub:used:{}", digest(code)))
                .await?,
        )?;
        let Some(at) = used else {
            return Ok(false);
        };
        // The tombstone first: a token stored after this check is still refused.
        self.store
            .put_ephemeral(&format!("hub:revoked:{at}"), b"1", ttl)
            .await?;
        self.store.take_ephemeral(&format!("hub:at:{at}")).await?;
        Ok(true)
    }

    pub async fn put_access(
        &self,
        token: &str,
        g: &AccessGrant,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put(&format!("hub:at:{}", digest(token)), g, ttl).await
    }

    /// The grant of a live, unrevoked access token.
    pub async fn access(&self, token: &str) -> Result<Option<AccessGrant>, StoreError> {
        let d = digest(token);
        if self
            .store
            .get_ephemeral(&format!("hub:revoked:{d}"))
            .await?
            .is_some()
        {
            return Ok(None);
        }
        Self::decode(self.store.get_ephemeral(&format!("hub:at:{d}")).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::MemoryStore;

    fn grant() -> CodeGrant {
        let mut s = Session::new("wxapp", "o-user", Scope::UserInfo);
        s.access_token = Some("wechat-at".into());
        s.refresh_token = Some("wechat-rt".into());
        s.nickname = Some("Nick".into());
        CodeGrant {
            client_id: "crm".into(),
            redirect_uri: "https://crm.example.com/cb".into(),
            code_challenge: "c".repeat(43),
            nonce: None,
            session: for_app(&s, Scope::Base),
            expires_at: 0,
        }
    }

    #[test]
    fn an_app_never_gets_wechat_tokens_nor_a_profile_it_was_not_granted() {
        let g = grant();
        assert_eq!(g.session.access_token, None);
        assert_eq!(g.session.refresh_token, None);
        assert_eq!(g.session.nickname, None);
        assert_eq!(g.session.scope, Scope::Base);
        let mut s = Session::new("wxapp", "o", Scope::UserInfo);
        s.nickname = Some("Nick".into());
        assert_eq!(
            for_app(&s, Scope::UserInfo).nickname.as_deref(),
            Some("Nick")
        );
    }

    #[tokio::test]
    async fn a_code_is_taken_once_and_a_replay_revokes_its_token() {
        let store = Store::Memory(MemoryStore::new(10));
        let grants = Grants { store: &store };
        let ttl = Duration::from_secs(60);
        let code = grants.put_code(&grant(), ttl).await.unwrap();
        let by_code = store.get_ephemeral(&format!("hub:code:{code}")).await;
        assert_eq!(by_code.unwrap(), None, "the code itself is not the key");
        assert_eq!(grants.take_code(&code).await.unwrap(), Some(grant()));
        assert_eq!(grants.take_code(&code).await.unwrap(), None);

        let at = new_secret();
        grants.mark_used(&code, &at, ttl).await.unwrap();
        let access = AccessGrant {
            client_id: "crm".into(),
            session: grant().session,
        };
        grants.put_access(&at, &access, ttl).await.unwrap();
        assert_eq!(grants.access(&at).await.unwrap(), Some(access.clone()));

        assert!(grants.revoke_redeemed(&code, ttl).await.unwrap());
        assert_eq!(grants.access(&at).await.unwrap(), None);
        // A token stored after the revocation (a race) is refused too.
        grants.put_access(&at, &access, ttl).await.unwrap();
        assert_eq!(grants.access(&at).await.unwrap(), None);
        assert!(!grants.revoke_redeemed("never-issued", ttl).await.unwrap());
    }
}
