//! The engine: check, list objects, list users and expand, with OpenFGA's
//! semantics, bounded in depth and in store lookups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::AuthError;

use super::model::{RebacModel, Restriction};
use super::tuple::TupleUser;

pub(crate) mod check;
pub(crate) mod expand;
pub(crate) mod list;

/// The bounds one engine call runs within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_depth: u32,
    pub(crate) max_lookups: u32,
    pub(crate) max_fanout: usize,
    pub(crate) max_results: usize,
}

/// What every engine call carries: the model, the store and the lookup budget.
pub(crate) struct Ctx<'a, S> {
    pub(crate) model: &'a RebacModel,
    pub(crate) store: &'a S,
    pub(crate) limits: Limits,
    lookups: u32,
}

impl<'a, S> Ctx<'a, S> {
    pub(crate) fn new(model: &'a RebacModel, store: &'a S, limits: Limits) -> Self {
        Ctx {
            model,
            store,
            limits,
            lookups: 0,
        }
    }

    /// Counts one store lookup; past `max_lookups`, the call fails.
    pub(crate) fn lookup(&mut self) -> Result<(), AuthError> {
        self.lookups += 1;
        if self.lookups > self.limits.max_lookups {
            return Err(AuthError::Limit(
                format!(
                    "more than {} tuple-store lookups in one call (max_lookups)",
                    self.limits.max_lookups
                )
                .into(),
            ));
        }
        Ok(())
    }

    /// Fails when one read returned more rows than `max_fanout`.
    pub(crate) fn fanout(
        &self,
        rows: usize,
        what: &dyn std::fmt::Display,
    ) -> Result<(), AuthError> {
        if rows > self.limits.max_fanout {
            return Err(AuthError::Limit(
                format!(
                    "{what} has more than {} tuples to follow (max_fanout)",
                    self.limits.max_fanout
                )
                .into(),
            ));
        }
        Ok(())
    }
}

/// Whether a stored user is admitted by the relation's type restrictions
/// (tuples written under an older model are ignored, as OpenFGA does).
pub(crate) fn admitted(direct: &[Restriction], user: &TupleUser) -> bool {
    direct.iter().any(|r| match (r, user) {
        (Restriction::Type(t), TupleUser::Object(o)) => *t == o.kind,
        (Restriction::Wildcard(t), TupleUser::Wildcard { kind }) => t == kind,
        (Restriction::Userset(t, rel), TupleUser::Userset { object, relation }) => {
            *t == object.kind && rel == relation
        }
        _ => false,
    })
}

/// Default bound of a [`CheckCache`].
const CACHE_ENTRIES: usize = 10_000;

/// Check results to share across several checks of one request (pass it to
/// [`Rebac::check_cached`](crate::Rebac::check_cached)): a sub-problem
/// (`folder:x#viewer@user:anne`) answered once is not asked of the store
/// again. Holds at most 10 000 answers (then it stops adding); it does not
/// see tuples written after an answer was cached, so keep one per request,
/// never longer.
#[derive(Debug)]
pub struct CheckCache {
    entries: Mutex<HashMap<String, Option<Arc<str>>>>,
    capacity: usize,
}

impl Default for CheckCache {
    fn default() -> Self {
        Self::new()
    }
}

impl CheckCache {
    /// An empty cache of at most 10 000 answers.
    pub fn new() -> Self {
        Self::with_capacity(CACHE_ENTRIES)
    }

    /// An empty cache of at most `entries` answers.
    pub fn with_capacity(entries: usize) -> Self {
        CheckCache {
            entries: Mutex::new(HashMap::new()),
            capacity: entries,
        }
    }

    /// How many answers it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Arc<str>>>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Some(path)` when allowed, `Some(None)` when denied, `None` when unknown.
    pub(crate) fn get(&self, key: &str) -> Option<Option<Arc<str>>> {
        self.lock().get(key).cloned()
    }

    pub(crate) fn put(&self, key: String, path: Option<Arc<str>>) {
        let mut entries = self.lock();
        if entries.len() < self.capacity {
            entries.insert(key, path);
        }
    }
}

/// The answer to a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Whether the user has the relation.
    pub allowed: bool,
    /// When allowed, how: the chain of usersets from the object to the user
    /// (`document:1#viewer <- folder:x#viewer <- user:anne`).
    pub path: Option<String>,
}
