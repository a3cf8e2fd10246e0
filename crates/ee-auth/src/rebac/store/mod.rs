//! Where tuples live: the [`TupleStore`] trait and its backends.
//!
//! Each read answers one question the engine asks, so a SQL store can serve
//! it from an index: the users of `object#relation` (forward), the objects
//! of a type related to a user (reverse), and the direct lookup a check
//! makes (the exact tuple or a wildcard, plus the userset tuples to follow).

use std::collections::HashMap;
use std::future::Future;

use crate::AuthError;

use super::tuple::{ObjectRef, RelationTuple, TupleUser};

pub(crate) mod any;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) mod db;
pub(crate) mod memory;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) mod walk;

/// Tuples to write and to delete, applied together (atomically on SQL
/// stores). Writing a tuple that exists and deleting one that does not are
/// no-ops.
#[derive(Debug, Clone, Copy, Default)]
pub struct TupleChanges<'a> {
    /// Tuples to add.
    pub writes: &'a [RelationTuple],
    /// Tuples to remove (after the writes).
    pub deletes: &'a [RelationTuple],
}

/// A check's direct lookup on `object#relation` for `user`, with the users
/// of other relations of the object read in the same go (the tuplesets of
/// `viewer from parent` beside `[user]`: one query instead of two).
#[derive(Debug, Clone, Copy)]
pub struct DirectLookup<'a> {
    /// The object.
    pub object: &'a ObjectRef,
    /// The relation.
    pub relation: &'a str,
    /// Who is checked: the tuple `object#relation@user` matches, and so does
    /// `object#relation@<type>:*` when `user` is an object or wildcard.
    pub user: &'a TupleUser,
    /// At most this many userset tuples (`object#relation@team:x#member`)
    /// to return; 0 reads none.
    pub max_usersets: usize,
    /// Relations of `object` whose users to return too (`parent`).
    pub tuplesets: &'a [String],
    /// At most this many users of each of `tuplesets`.
    pub max_tupleset_users: usize,
}

/// The answer to a [`DirectLookup`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectMatch {
    /// The stored user that matched: `user` itself or its type's wildcard.
    pub matched: Option<TupleUser>,
    /// Userset tuples of `object#relation` (up to `max_usersets`), in a
    /// stable order.
    pub usersets: Vec<TupleUser>,
    /// The users of the lookup's `tuplesets`, each present when read (empty
    /// when it has none); one left out is read by the engine on its own.
    pub tuplesets: HashMap<String, Vec<TupleUser>>,
}

/// A reverse lookup: the ids of objects of `object_type` with a tuple
/// `object_type:<id>#relation@user`.
#[derive(Debug, Clone, Copy)]
pub struct ReverseLookup<'a> {
    /// The objects' type.
    pub object_type: &'a str,
    /// The relation.
    pub relation: &'a str,
    /// The user as stored (`user:anne`, `user:*`, `team:eng#member`):
    /// matched exactly.
    pub user: &'a TupleUser,
    /// At most this many ids.
    pub limit: usize,
}

/// A relationship-tuple store. Implement it to keep tuples elsewhere; the
/// engine ([`Rebac`](crate::Rebac)) is generic over it.
///
/// Errors are [`AuthError::Unavailable`] (`tuple store`): an authorization
/// that cannot read its tuples fails closed.
pub trait TupleStore: Send + Sync + 'static {
    /// Applies `changes`: writes, then deletes.
    fn write(
        &self,
        changes: TupleChanges<'_>,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// The users of `object#relation` (objects, wildcards and usersets), at
    /// most `limit`, in a stable order.
    fn read_users(
        &self,
        object: &ObjectRef,
        relation: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<TupleUser>, AuthError>> + Send;

    /// A check's direct lookup.
    fn find_direct(
        &self,
        lookup: DirectLookup<'_>,
    ) -> impl Future<Output = Result<DirectMatch, AuthError>> + Send;

    /// The ids of objects related to a user (reverse index), sorted.
    fn read_objects(
        &self,
        lookup: ReverseLookup<'_>,
    ) -> impl Future<Output = Result<Vec<String>, AuthError>> + Send;
}

/// The two reads a check makes: every [`TupleStore`] answers them, and so
/// does the snapshot a pushed-down check fetched in one query.
pub(crate) trait CheckReads: Send + Sync {
    /// [`TupleStore::find_direct`].
    fn direct(
        &self,
        lookup: DirectLookup<'_>,
    ) -> impl Future<Output = Result<DirectMatch, AuthError>> + Send;

    /// [`TupleStore::read_users`].
    fn users(
        &self,
        object: &ObjectRef,
        relation: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<TupleUser>, AuthError>> + Send;
}

impl<T: TupleStore> CheckReads for T {
    fn direct(
        &self,
        lookup: DirectLookup<'_>,
    ) -> impl Future<Output = Result<DirectMatch, AuthError>> + Send {
        self.find_direct(lookup)
    }

    fn users(
        &self,
        object: &ObjectRef,
        relation: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<TupleUser>, AuthError>> + Send {
        self.read_users(object, relation, limit)
    }
}
