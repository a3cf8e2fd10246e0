//! `MemoryApiKeys`: records in this process.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ee_core::unix_ms;

use super::store::{ApiKeyRecord, ApiKeyStore, Inserted};
use crate::{ApiKeyConfig, AuthError};

type Records = HashMap<String, ApiKeyRecord, foldhash::fast::RandomState>;

/// API key records in this process: for tests, single-instance services and
/// keys issued at start-up. Clones share the records.
///
/// Bounded: it holds at most `max_keys` records (default 100 000, from
/// [`ApiKeyConfig::max_keys`]). Records are only added by
/// [`ApiKeys::create`](crate::ApiKeys::create), never by what a client sends,
/// so the bound is on the server's own issuing. When it is full, revoked and
/// expired records are dropped to make room; if there are none, `create`
/// fails with [`AuthError::Limit`] naming the setting.
#[derive(Debug, Clone)]
pub struct MemoryApiKeys {
    records: Arc<RwLock<Records>>,
    max_keys: usize,
}

impl Default for MemoryApiKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryApiKeys {
    /// An empty store holding at most 100 000 keys.
    pub fn new() -> Self {
        Self {
            records: Arc::default(),
            max_keys: ApiKeyConfig::default().max_keys,
        }
    }

    /// Takes `max_keys` from `config` (the rest of it is for
    /// [`ApiKeys::config`](crate::ApiKeys::config)).
    pub fn config(mut self, config: &ApiKeyConfig) -> Result<Self, AuthError> {
        config.validate()?;
        self.max_keys = config.max_keys;
        Ok(self)
    }

    /// How many records it holds (revoked and expired ones included).
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> RwLockReadGuard<'_, Records> {
        // A panic while holding the lock cannot leave a map half-changed
        // (each change is one map call), so a poisoned lock is still sound.
        self.records.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Records> {
        self.records.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl ApiKeyStore for MemoryApiKeys {
    async fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>, AuthError> {
        Ok(self.read().get(id).cloned())
    }

    async fn insert(&self, record: &ApiKeyRecord) -> Result<Inserted, AuthError> {
        let mut records = self.write();
        if records.contains_key(&record.id) {
            return Ok(Inserted::IdTaken);
        }
        if records.len() >= self.max_keys {
            let now = unix_ms();
            records.retain(|_, r| !r.is_revoked() && !r.is_expired(now));
        }
        if records.len() >= self.max_keys {
            return Err(AuthError::Limit(
                format!(
                    "the in-memory API key store is full: {} live keys (api_keys.max_keys); \
                     revoke unused keys, raise max_keys, or use the Redis or SQL store",
                    self.max_keys
                )
                .into(),
            ));
        }
        records.insert(record.id.clone(), record.clone());
        Ok(Inserted::Stored)
    }

    async fn revoke(&self, id: &str, at_ms: u64) -> Result<(), AuthError> {
        let mut records = self.write();
        let record = records.get_mut(id).ok_or(AuthError::NotFound)?;
        record.revoked_at_ms.get_or_insert(at_ms);
        Ok(())
    }

    async fn list(&self, owner: &str) -> Result<Vec<ApiKeyRecord>, AuthError> {
        Ok(self
            .read()
            .values()
            .filter(|r| r.owner == owner)
            .cloned()
            .collect())
    }

    async fn touch(&self, id: &str, at_ms: u64) -> Result<(), AuthError> {
        if let Some(record) = self.write().get_mut(id) {
            record.last_used_ms = Some(at_ms);
        }
        Ok(())
    }
}
