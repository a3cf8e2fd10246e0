//! `list_objects` and `list_users`: a walk over the tuples that finds every
//! candidate a check could allow (ignoring `and` / `but not`, which can only
//! take away), then a check of each candidate.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;

use crate::AuthError;
use crate::rebac::model::{Edge, NodeKey, Restriction, Rewrite};
use crate::rebac::store::{ReverseLookup, TupleStore};
use crate::rebac::tuple::{ObjectRef, TupleUser, check_relation, check_type};

use super::check::Checker;
use super::{CheckCache, Ctx, admitted};

/// Which users [`Rebac::list_users`](crate::Rebac::list_users) returns:
/// objects of a type (`user`, with `user:*` when a wildcard applies) or
/// usersets of a type and relation (`team#member`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserFilter {
    /// The type (`user`, `team`).
    pub kind: String,
    /// For usersets, the relation (`member`).
    pub relation: Option<String>,
}

impl UserFilter {
    /// Objects (and the wildcard) of `kind`.
    pub fn kind(kind: impl Into<String>) -> Self {
        UserFilter {
            kind: kind.into(),
            relation: None,
        }
    }

    /// Usersets `kind:<id>#relation`.
    pub fn userset(kind: impl Into<String>, relation: impl Into<String>) -> Self {
        UserFilter {
            kind: kind.into(),
            relation: Some(relation.into()),
        }
    }

    fn accepts(&self, user: &TupleUser) -> bool {
        match (user, &self.relation) {
            (TupleUser::Object(o), None) => o.kind == self.kind,
            (TupleUser::Wildcard { kind }, None) => *kind == self.kind,
            (TupleUser::Userset { object, relation }, Some(r)) => {
                object.kind == self.kind && relation == r
            }
            _ => false,
        }
    }
}

impl FromStr for UserFilter {
    type Err = AuthError;

    /// Parses `user` or `team#member`.
    fn from_str(s: &str) -> Result<Self, AuthError> {
        match s.split_once('#') {
            Some((kind, relation)) => {
                check_type(kind)?;
                check_relation(relation)?;
                Ok(UserFilter::userset(kind, relation))
            }
            None => {
                check_type(s)?;
                Ok(UserFilter::kind(s))
            }
        }
    }
}

impl fmt::Display for UserFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.relation {
            Some(r) => write!(f, "{}#{r}", self.kind),
            None => f.write_str(&self.kind),
        }
    }
}

/// Whether `user` has `relation` on `object`: a check of its own (its own
/// lookup budget), sharing `cache` with the other candidates' checks.
async fn allowed<S: TupleStore>(
    ctx: &Ctx<'_, S>,
    cache: &CheckCache,
    object: &ObjectRef,
    relation: &str,
    user: &TupleUser,
) -> Result<bool, AuthError> {
    let mut checker = Checker::new(
        Ctx::new(ctx.model, ctx.store, ctx.limits),
        user,
        Some(cache),
    );
    Ok(checker.check(object, relation).await?.allowed)
}

/// The objects of `object_type` on which `user` has `relation`, sorted, at
/// most `max_results`.
pub(crate) async fn list_objects<S: TupleStore>(
    mut ctx: Ctx<'_, S>,
    object_type: &str,
    relation: &str,
    user: &TupleUser,
) -> Result<Vec<ObjectRef>, AuthError> {
    let model = ctx.model;
    model.require(object_type, relation)?;
    let target: NodeKey = (object_type.to_owned(), relation.to_owned());
    let relevant = model.leading_to(&target);
    let mut seen: HashSet<(ObjectRef, String)> = HashSet::new();
    let mut queue: VecDeque<(ObjectRef, String)> = VecDeque::new();
    let mut candidates: BTreeSet<ObjectRef> = BTreeSet::new();

    // Entry points: tuples naming the user (or its type's wildcard) directly.
    let mut entries: Vec<(NodeKey, TupleUser)> = Vec::new();
    for node in &relevant {
        let Some(rel) = model.relation(&node.0, &node.1) else {
            continue;
        };
        for r in &rel.direct {
            match (r, user) {
                (Restriction::Type(t), TupleUser::Object(o)) if *t == o.kind => {
                    entries.push((node.clone(), user.clone()));
                }
                (Restriction::Wildcard(t), TupleUser::Object(_) | TupleUser::Wildcard { .. })
                    if t == user.kind() =>
                {
                    entries.push((node.clone(), TupleUser::Wildcard { kind: t.clone() }));
                }
                _ => {}
            }
        }
    }
    entries.sort();
    for ((kind, rel), stored) in &entries {
        for id in read_objects(&mut ctx, kind, rel, stored).await? {
            queue.push_back((
                ObjectRef {
                    kind: kind.clone(),
                    id,
                },
                rel.clone(),
            ));
        }
    }
    if let TupleUser::Userset {
        object,
        relation: r,
    } = user
        && relevant.contains(&(object.kind.clone(), r.clone()))
    {
        queue.push_back((object.clone(), r.clone()));
    }

    // Upwards: what each membership found grants.
    while let Some((object, rel)) = queue.pop_front() {
        if !seen.insert((object.clone(), rel.clone())) {
            continue;
        }
        if object.kind == target.0 && rel == target.1 {
            candidates.insert(object.clone());
        }
        let Some(edges) = model.edges.get(&(object.kind.clone(), rel.clone())) else {
            continue;
        };
        for ((kind, to), edge) in edges {
            if !relevant.contains(&(kind.clone(), to.clone())) {
                continue;
            }
            let ids = match edge {
                Edge::Computed => vec![object.id.clone()],
                Edge::Userset => {
                    let userset = TupleUser::Userset {
                        object: object.clone(),
                        relation: rel.clone(),
                    };
                    read_objects(&mut ctx, kind, to, &userset).await?
                }
                Edge::TupleToUserset(tupleset) => {
                    read_objects(&mut ctx, kind, tupleset, &TupleUser::Object(object.clone()))
                        .await?
                }
            };
            for id in ids {
                queue.push_back((
                    ObjectRef {
                        kind: kind.clone(),
                        id,
                    },
                    to.clone(),
                ));
            }
        }
    }

    let cache = CheckCache::new();
    let mut objects = Vec::new();
    for object in candidates {
        if objects.len() >= ctx.limits.max_results {
            break;
        }
        if allowed(&ctx, &cache, &object, relation, user).await? {
            objects.push(object);
        }
    }
    Ok(objects)
}

async fn read_objects<S: TupleStore>(
    ctx: &mut Ctx<'_, S>,
    object_type: &str,
    relation: &str,
    user: &TupleUser,
) -> Result<Vec<String>, AuthError> {
    ctx.lookup()?;
    let limit = ctx.limits.max_fanout + 1;
    let ids = ctx
        .store
        .read_objects(ReverseLookup {
            object_type,
            relation,
            user,
            limit,
        })
        .await?;
    ctx.fanout(
        ids.len(),
        &format_args!("{user} in {object_type}#{relation}"),
    )?;
    Ok(ids)
}

/// What a node's rewrite asks to read, gathered before reading.
enum Step {
    Direct,
    Same(String),
    Tupleset(String, String),
}

fn steps(rewrite: &Rewrite, out: &mut Vec<Step>) {
    match rewrite {
        Rewrite::Direct => out.push(Step::Direct),
        Rewrite::Computed(r) => out.push(Step::Same(r.clone())),
        Rewrite::TupleToUserset { tupleset, computed } => {
            out.push(Step::Tupleset(tupleset.clone(), computed.clone()));
        }
        Rewrite::Union(parts) | Rewrite::Intersection(parts) => {
            parts.iter().for_each(|p| steps(p, out));
        }
        Rewrite::Exclusion(base, _) => steps(base, out),
    }
}

/// The users matching `filter` who have `relation` on `object`, sorted, at
/// most `max_results`.
pub(crate) async fn list_users<S: TupleStore>(
    mut ctx: Ctx<'_, S>,
    object: &ObjectRef,
    relation: &str,
    filter: &UserFilter,
) -> Result<Vec<TupleUser>, AuthError> {
    let model = ctx.model;
    model.require(&object.kind, relation)?;
    let fanout = ctx.limits.max_fanout;
    let mut seen: HashSet<(ObjectRef, String)> = HashSet::new();
    let mut queue = VecDeque::from([(object.clone(), relation.to_owned())]);
    let mut candidates: BTreeSet<TupleUser> = BTreeSet::new();
    while let Some((obj, rel_name)) = queue.pop_front() {
        if !seen.insert((obj.clone(), rel_name.clone())) {
            continue;
        }
        let rel = model.require(&obj.kind, &rel_name)?;
        let mut todo = Vec::new();
        steps(&rel.rewrite, &mut todo);
        for step in todo {
            match step {
                Step::Same(r) => queue.push_back((obj.clone(), r)),
                Step::Direct => {
                    ctx.lookup()?;
                    let users = ctx.store.read_users(&obj, &rel_name, fanout + 1).await?;
                    ctx.fanout(users.len(), &format_args!("{obj}#{rel_name}"))?;
                    for user in users.into_iter().filter(|u| admitted(&rel.direct, u)) {
                        if let TupleUser::Userset {
                            object: o,
                            relation: r,
                        } = &user
                        {
                            queue.push_back((o.clone(), r.clone()));
                        }
                        if filter.accepts(&user) {
                            candidates.insert(user);
                        }
                    }
                }
                Step::Tupleset(tupleset, computed) => {
                    ctx.lookup()?;
                    let users = ctx.store.read_users(&obj, &tupleset, fanout + 1).await?;
                    ctx.fanout(users.len(), &format_args!("{obj}#{tupleset}"))?;
                    for user in users {
                        if let TupleUser::Object(o) = user
                            && model.has_relation(&o.kind, &computed)
                        {
                            queue.push_back((o, computed.clone()));
                        }
                    }
                }
            }
        }
    }
    let cache = CheckCache::new();
    let mut users = Vec::new();
    for user in candidates {
        if users.len() >= ctx.limits.max_results {
            break;
        }
        if allowed(&ctx, &cache, object, relation, &user).await? {
            users.push(user);
        }
    }
    Ok(users)
}
