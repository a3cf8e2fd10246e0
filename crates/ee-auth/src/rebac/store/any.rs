//! `AnyTupleStore`: the memory or the SQL store, picked at run time.

use crate::AuthError;
use crate::rebac::tuple::{ObjectRef, TupleUser};

#[cfg(any(feature = "postgres", feature = "sqlite"))]
use super::db::DbTuples;
use super::memory::MemoryTuples;
use super::{DirectLookup, DirectMatch, ReverseLookup, TupleChanges, TupleStore};

/// One store type for either backend, for applications that pick it by
/// configuration: [`Rebac`](crate::Rebac) defaults to it, so the code around
/// it has one type whichever store was chosen.
///
/// ```
/// use ee_auth::{AnyTupleStore, MemoryTuples};
///
/// // `db.map_or_else(|| MemoryTuples::new().into(), |tuples: DbTuples| tuples.into())`
/// let store: AnyTupleStore = MemoryTuples::new().into();
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyTupleStore {
    /// In this process ([`MemoryTuples`]).
    Memory(MemoryTuples),
    /// In a PostgreSQL or SQLite table ([`DbTuples`], features `postgres`/`sqlite`).
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
    Db(DbTuples),
}

impl From<MemoryTuples> for AnyTupleStore {
    fn from(store: MemoryTuples) -> Self {
        AnyTupleStore::Memory(store)
    }
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
impl From<DbTuples> for AnyTupleStore {
    fn from(store: DbTuples) -> Self {
        AnyTupleStore::Db(store)
    }
}

impl TupleStore for AnyTupleStore {
    async fn write(&self, changes: TupleChanges<'_>) -> Result<(), AuthError> {
        match self {
            AnyTupleStore::Memory(s) => s.write(changes).await,
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            AnyTupleStore::Db(s) => s.write(changes).await,
        }
    }

    async fn read_users(
        &self,
        object: &ObjectRef,
        relation: &str,
        limit: usize,
    ) -> Result<Vec<TupleUser>, AuthError> {
        match self {
            AnyTupleStore::Memory(s) => s.read_users(object, relation, limit).await,
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            AnyTupleStore::Db(s) => s.read_users(object, relation, limit).await,
        }
    }

    async fn find_direct(&self, lookup: DirectLookup<'_>) -> Result<DirectMatch, AuthError> {
        match self {
            AnyTupleStore::Memory(s) => s.find_direct(lookup).await,
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            AnyTupleStore::Db(s) => s.find_direct(lookup).await,
        }
    }

    async fn read_objects(&self, lookup: ReverseLookup<'_>) -> Result<Vec<String>, AuthError> {
        match self {
            AnyTupleStore::Memory(s) => s.read_objects(lookup).await,
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            AnyTupleStore::Db(s) => s.read_objects(lookup).await,
        }
    }
}
