//! Refresh-token families in process memory, bounded.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;

use super::{MAX_USED_TOKENS, NewFamily, RefreshStore, RotateOutcome, Rotation, TokenHash};
use crate::AuthError;
use crate::issuer::config::RefreshConfig;

struct Family {
    subject: Box<str>,
    current: TokenHash,
    generation: u64,
    absolute_expiry_ms: u64,
    idle_expiry_ms: u64,
    revoked: bool,
    used: VecDeque<TokenHash>,
}

impl Family {
    fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.absolute_expiry_ms || now_ms >= self.idle_expiry_ms
    }
}

type Families = HashMap<Box<str>, Family, foldhash::fast::RandomState>;

/// Refresh-token families in this process (one instance, or tests).
///
/// Bounded by `max_families` (default 100 000): when a login would exceed
/// it, expired families are dropped, then the one idle the longest (its
/// user logs in again). Cheap to clone; clones share the families.
#[derive(Clone)]
pub struct MemoryRefreshStore {
    families: Arc<Mutex<Families>>,
    max_families: usize,
}

impl fmt::Debug for MemoryRefreshStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRefreshStore")
            .field("families", &self.len())
            .field("max_families", &self.max_families)
            .finish()
    }
}

impl Default for MemoryRefreshStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRefreshStore {
    /// An empty store holding at most 100 000 families.
    pub fn new() -> Self {
        Self {
            families: Arc::default(),
            max_families: RefreshConfig::default().max_families,
        }
    }

    /// Applies `max_families` from `cfg`.
    pub fn config(mut self, cfg: &RefreshConfig) -> Result<Self, AuthError> {
        if cfg.max_families == 0 {
            return Err(AuthError::Config(
                "refresh: `max_families` must be at least 1".into(),
            ));
        }
        self.max_families = cfg.max_families;
        Ok(self)
    }

    /// Families held (expired ones included until they are dropped).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no family is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Families> {
        self.families.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn make_room(families: &mut Families, max: usize, now_ms: u64) {
    if families.len() < max {
        return;
    }
    families.retain(|_, f| !f.expired(now_ms));
    while families.len() >= max {
        let Some(idlest) = families
            .iter()
            .min_by_key(|(_, f)| f.idle_expiry_ms)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        families.remove(&idlest);
    }
}

impl RefreshStore for MemoryRefreshStore {
    async fn create(&self, new: &NewFamily<'_>) -> Result<(), AuthError> {
        let mut families = self.lock();
        make_room(&mut families, self.max_families, new.now_ms);
        families.insert(
            new.family.into(),
            Family {
                subject: new.subject.into(),
                current: new.token,
                generation: 0,
                absolute_expiry_ms: new.absolute_expiry_ms,
                idle_expiry_ms: new.idle_expiry_ms,
                revoked: false,
                used: VecDeque::new(),
            },
        );
        Ok(())
    }

    async fn rotate(&self, rotation: &Rotation<'_>) -> Result<RotateOutcome, AuthError> {
        let mut families = self.lock();
        let Some(family) = families.get_mut(rotation.family) else {
            return Ok(RotateOutcome::Unknown);
        };
        if family.expired(rotation.now_ms) {
            families.remove(rotation.family);
            return Ok(RotateOutcome::Expired);
        }
        if family.revoked {
            return Ok(RotateOutcome::Revoked);
        }
        let presented = rotation.presented.as_bytes();
        if bool::from(family.current.as_bytes().ct_eq(presented)) {
            if family.used.len() >= MAX_USED_TOKENS {
                family.used.pop_front();
            }
            family.used.push_back(family.current);
            family.current = rotation.next;
            family.generation += 1;
            family.idle_expiry_ms = rotation.idle_expiry_ms.min(family.absolute_expiry_ms);
            return Ok(RotateOutcome::Rotated {
                subject: family.subject.to_string(),
                generation: family.generation,
                absolute_expiry_ms: family.absolute_expiry_ms,
            });
        }
        let reused = family
            .used
            .iter()
            .fold(subtle::Choice::from(0), |seen, used| {
                seen | used.as_bytes().ct_eq(presented)
            });
        if bool::from(reused) {
            family.revoked = true;
            return Ok(RotateOutcome::Reused {
                subject: family.subject.to_string(),
            });
        }
        Ok(RotateOutcome::Unknown)
    }

    async fn revoke(&self, family: &str) -> Result<bool, AuthError> {
        Ok(self
            .lock()
            .get_mut(family)
            .map(|f| f.revoked = true)
            .is_some())
    }
}
