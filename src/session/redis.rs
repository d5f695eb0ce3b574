//! The Redis session store (placeholder: same API as the other stores, every
//! operation unavailable).

use std::time::Duration;

use super::{Session, StoreError};
use crate::config::SessionConfig;

pub struct RedisStore {
    _private: (),
}

fn unavailable<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable("redis store not available".into()))
}

impl RedisStore {
    pub async fn connect(_cfg: &SessionConfig) -> Result<RedisStore, StoreError> {
        unavailable()
    }

    pub async fn save(&self, _s: &Session) -> Result<String, StoreError> {
        unavailable()
    }

    pub async fn load(&self, _ticket: &str) -> Result<Option<Session>, StoreError> {
        unavailable()
    }

    pub async fn touch(&self, _ticket: &str, _s: &Session) -> Result<Option<String>, StoreError> {
        unavailable()
    }

    pub async fn delete(&self, _ticket: &str, _s: &Session) -> Result<(), StoreError> {
        unavailable()
    }

    pub async fn revoke_openid(&self, _openid: &str) -> Result<usize, StoreError> {
        unavailable()
    }

    pub async fn count(&self) -> Result<usize, StoreError> {
        unavailable()
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        unavailable()
    }

    pub async fn put_ephemeral(
        &self,
        _key: &str,
        _value: &[u8],
        _ttl: Duration,
    ) -> Result<(), StoreError> {
        unavailable()
    }

    pub async fn get_ephemeral(&self, _key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        unavailable()
    }

    pub async fn take_ephemeral(&self, _key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        unavailable()
    }

    pub async fn try_lock(&self, _key: &str, _ttl: Duration) -> Result<bool, StoreError> {
        unavailable()
    }

    pub async fn unlock(&self, _key: &str) -> Result<(), StoreError> {
        unavailable()
    }
}
