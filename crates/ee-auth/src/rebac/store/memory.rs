//! `MemoryTuples`: tuples in this process, indexed both ways.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use crate::AuthError;
use crate::rebac::tuple::{ObjectRef, RelationTuple, TupleUser};

use super::{DirectLookup, DirectMatch, ReverseLookup, TupleChanges, TupleStore};

/// `object_type → object_id → relation → users`.
type Forward = HashMap<String, HashMap<String, HashMap<String, Users>>>;
/// `user → object_type → relation → object ids`.
type Reverse = HashMap<TupleUser, HashMap<String, HashMap<String, BTreeSet<String>>>>;

#[derive(Debug, Default)]
struct Users {
    /// Objects and wildcards.
    plain: BTreeSet<TupleUser>,
    /// Usersets, apart: a check follows them without reading the plain users.
    usersets: BTreeSet<TupleUser>,
}

#[derive(Debug, Default)]
struct Index {
    forward: Forward,
    reverse: Reverse,
    len: usize,
}

/// Tuples in this process: a forward index (`object#relation` → users) and
/// a reverse one (user → objects), behind one `RwLock`. Cheap to clone (the
/// clones share the tuples). For tests, single-instance services and
/// caches of a few million tuples; use [`DbTuples`](crate::DbTuples) to
/// share them between instances.
#[derive(Debug, Clone, Default)]
pub struct MemoryTuples {
    index: Arc<RwLock<Index>>,
}

impl MemoryTuples {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many tuples it holds.
    pub fn len(&self) -> usize {
        self.read().len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        // A panic while writing left the maps consistent (each insert is
        // complete before the next), so a poisoned lock is still usable.
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn users<'a>(index: &'a Index, object: &ObjectRef, relation: &str) -> Option<&'a Users> {
        index
            .forward
            .get(&object.kind)?
            .get(&object.id)?
            .get(relation)
    }
}

impl Index {
    fn insert(&mut self, t: &RelationTuple) {
        let users = self
            .forward
            .entry(t.object.kind.clone())
            .or_default()
            .entry(t.object.id.clone())
            .or_default()
            .entry(t.relation.clone())
            .or_default();
        let set = match t.user {
            TupleUser::Userset { .. } => &mut users.usersets,
            _ => &mut users.plain,
        };
        if !set.insert(t.user.clone()) {
            return;
        }
        self.len += 1;
        self.reverse
            .entry(t.user.clone())
            .or_default()
            .entry(t.object.kind.clone())
            .or_default()
            .entry(t.relation.clone())
            .or_default()
            .insert(t.object.id.clone());
    }

    fn remove(&mut self, t: &RelationTuple) {
        let Some(ids) = self.forward.get_mut(&t.object.kind) else {
            return;
        };
        let Some(rels) = ids.get_mut(&t.object.id) else {
            return;
        };
        let Some(users) = rels.get_mut(&t.relation) else {
            return;
        };
        let removed = match t.user {
            TupleUser::Userset { .. } => users.usersets.remove(&t.user),
            _ => users.plain.remove(&t.user),
        };
        if !removed {
            return;
        }
        self.len -= 1;
        // Empty maps are dropped so deleted objects cost nothing.
        if users.plain.is_empty() && users.usersets.is_empty() {
            rels.remove(&t.relation);
            if rels.is_empty() {
                ids.remove(&t.object.id);
            }
        }
        if let Some(types) = self.reverse.get_mut(&t.user) {
            if let Some(relations) = types.get_mut(&t.object.kind) {
                if let Some(objects) = relations.get_mut(&t.relation) {
                    objects.remove(&t.object.id);
                    if objects.is_empty() {
                        relations.remove(&t.relation);
                    }
                }
                if relations.is_empty() {
                    types.remove(&t.object.kind);
                }
            }
            if types.is_empty() {
                self.reverse.remove(&t.user);
            }
        }
    }
}

impl TupleStore for MemoryTuples {
    async fn write(&self, changes: TupleChanges<'_>) -> Result<(), AuthError> {
        let mut index = self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for t in changes.writes {
            index.insert(t);
        }
        for t in changes.deletes {
            index.remove(t);
        }
        Ok(())
    }

    async fn read_users(
        &self,
        object: &ObjectRef,
        relation: &str,
        limit: usize,
    ) -> Result<Vec<TupleUser>, AuthError> {
        let index = self.read();
        Ok(Self::users(&index, object, relation)
            .map(|u| {
                u.plain
                    .iter()
                    .chain(&u.usersets)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn find_direct(&self, lookup: DirectLookup<'_>) -> Result<DirectMatch, AuthError> {
        let index = self.read();
        let tuplesets = lookup
            .tuplesets
            .iter()
            .map(|ts| {
                let users = Self::users(&index, lookup.object, ts)
                    .map(|u| {
                        u.plain
                            .iter()
                            .chain(&u.usersets)
                            .take(lookup.max_tupleset_users)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                (ts.clone(), users)
            })
            .collect();
        let Some(users) = Self::users(&index, lookup.object, lookup.relation) else {
            return Ok(DirectMatch {
                tuplesets,
                ..DirectMatch::default()
            });
        };
        let matched = match lookup.user {
            TupleUser::Userset { .. } => users.usersets.get(lookup.user),
            TupleUser::Wildcard { .. } => users.plain.get(lookup.user),
            TupleUser::Object(o) => users.plain.get(lookup.user).or_else(|| {
                users.plain.get(&TupleUser::Wildcard {
                    kind: o.kind.clone(),
                })
            }),
        };
        Ok(DirectMatch {
            matched: matched.cloned(),
            usersets: users
                .usersets
                .iter()
                .take(lookup.max_usersets)
                .cloned()
                .collect(),
            tuplesets,
        })
    }

    async fn read_objects(&self, lookup: ReverseLookup<'_>) -> Result<Vec<String>, AuthError> {
        let index = self.read();
        Ok(index
            .reverse
            .get(lookup.user)
            .and_then(|types| types.get(lookup.object_type))
            .and_then(|relations| relations.get(lookup.relation))
            .map(|ids| ids.iter().take(lookup.limit).cloned().collect())
            .unwrap_or_default())
    }
}
