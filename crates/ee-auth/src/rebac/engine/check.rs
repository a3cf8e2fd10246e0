//! `check(object, relation, user)`: depth-first over the model's rewrites,
//! memoised per call, a cycle in the data cutting its branch.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::AuthError;
use crate::rebac::model::{Relation, Rewrite};
use crate::rebac::store::{CheckReads, DirectLookup};
use crate::rebac::tuple::{ObjectRef, TupleUser};

use super::{CheckCache, CheckResult, Ctx, admitted};

type BoxFut<'b, T> = Pin<Box<dyn Future<Output = Result<T, AuthError>> + Send + 'b>>;

/// A sub-result: the path when found; `cut` when a cycle cut a branch on
/// the way (the answer then depends on where the walk came from, so it is
/// not memoised).
#[derive(Debug, Default)]
struct Found {
    path: Option<String>,
    cut: bool,
}

/// One check's walk.
pub(crate) struct Checker<'a, 'c, S> {
    pub(crate) ctx: Ctx<'a, S>,
    user: &'a TupleUser,
    user_key: String,
    /// `object#relation`s on the current path (a repeat is a cycle).
    stack: Vec<String>,
    memo: HashMap<String, Option<Arc<str>>>,
    cache: Option<&'c CheckCache>,
    /// Tupleset users read with a direct lookup (`document:1#parent`),
    /// waiting for their `x from parent`.
    prefetched: HashMap<String, Vec<TupleUser>>,
}

impl<'a, 'c, S: CheckReads> Checker<'a, 'c, S> {
    pub(crate) fn new(ctx: Ctx<'a, S>, user: &'a TupleUser, cache: Option<&'c CheckCache>) -> Self {
        Checker {
            ctx,
            user,
            user_key: user.to_string(),
            stack: Vec::new(),
            memo: HashMap::new(),
            cache,
            prefetched: HashMap::new(),
        }
    }

    /// Whether the user has `relation` on `object`.
    pub(crate) async fn check(
        &mut self,
        object: &ObjectRef,
        relation: &str,
    ) -> Result<CheckResult, AuthError> {
        self.ctx.model.require(&object.kind, relation)?;
        let found = self.dispatch(object, relation, 0).await?;
        Ok(CheckResult {
            allowed: found.path.is_some(),
            path: found.path,
        })
    }

    /// Resolves `object#relation` for the user: memo, cache, cycle and depth
    /// checks, then its rewrite.
    fn dispatch<'b>(
        &'b mut self,
        object: &'b ObjectRef,
        relation: &'b str,
        depth: u32,
    ) -> BoxFut<'b, Found> {
        Box::pin(async move {
            let key = format!("{object}#{relation}");
            // A userset is related to itself (`team:eng#member` is a member of team:eng).
            if let TupleUser::Userset {
                object: o,
                relation: r,
            } = self.user
                && o == object
                && r == relation
            {
                return Ok(Found {
                    path: Some(key),
                    cut: false,
                });
            }
            if let Some(path) = self.memo.get(&key) {
                return Ok(Found {
                    path: path.as_deref().map(str::to_owned),
                    cut: false,
                });
            }
            let cache_key = self.cache.map(|_| format!("{key}@{}", self.user_key));
            if let (Some(cache), Some(k)) = (self.cache, &cache_key)
                && let Some(path) = cache.get(k)
            {
                return Ok(Found {
                    path: path.as_deref().map(str::to_owned),
                    cut: false,
                });
            }
            if self.stack.contains(&key) {
                return Ok(Found {
                    path: None,
                    cut: true,
                });
            }
            if depth >= self.ctx.limits.max_depth {
                return Err(AuthError::Limit(
                    format!(
                        "resolving {key} went deeper than {} (max_depth)",
                        self.ctx.limits.max_depth
                    )
                    .into(),
                ));
            }
            let model = self.ctx.model;
            let rel = model.require(&object.kind, relation)?;
            self.stack.push(key.clone());
            let result = self.eval(object, relation, rel, &rel.rewrite, depth).await;
            self.stack.pop();
            let found = result?;
            let path = found.path.map(|p| format!("{key} <- {p}"));
            if !found.cut {
                let shared: Option<Arc<str>> = path.as_deref().map(Arc::from);
                if let (Some(cache), Some(k)) = (self.cache, cache_key) {
                    cache.put(k, shared.clone());
                }
                self.memo.insert(key, shared);
            }
            Ok(Found {
                path,
                cut: found.cut,
            })
        })
    }

    fn eval<'b>(
        &'b mut self,
        object: &'b ObjectRef,
        relation: &'b str,
        rel: &'a Relation,
        rewrite: &'a Rewrite,
        depth: u32,
    ) -> BoxFut<'b, Found> {
        Box::pin(async move {
            match rewrite {
                Rewrite::Direct => self.direct(object, relation, rel, depth).await,
                Rewrite::Computed(r) => self.dispatch(object, r, depth + 1).await,
                Rewrite::TupleToUserset { tupleset, computed } => {
                    self.tuple_to_userset(object, tupleset, computed, depth)
                        .await
                }
                Rewrite::Union(parts) => {
                    let mut cut = false;
                    for part in parts {
                        let f = self.eval(object, relation, rel, part, depth).await?;
                        if f.path.is_some() {
                            return Ok(f);
                        }
                        cut |= f.cut;
                    }
                    Ok(Found { path: None, cut })
                }
                Rewrite::Intersection(parts) => {
                    let mut paths = Vec::with_capacity(parts.len());
                    let mut cut = false;
                    for part in parts {
                        let f = self.eval(object, relation, rel, part, depth).await?;
                        cut |= f.cut;
                        match f.path {
                            Some(p) => paths.push(format!("({p})")),
                            None => return Ok(Found { path: None, cut }),
                        }
                    }
                    Ok(Found {
                        path: Some(paths.join(" and ")),
                        cut,
                    })
                }
                Rewrite::Exclusion(base, subtract) => {
                    let b = self.eval(object, relation, rel, base, depth).await?;
                    let Some(path) = b.path else { return Ok(b) };
                    let s = self.eval(object, relation, rel, subtract, depth).await?;
                    let cut = b.cut || s.cut;
                    if s.path.is_some() {
                        return Ok(Found { path: None, cut });
                    }
                    let path = format!("{path}, but not {}", describe(object, relation, subtract));
                    Ok(Found {
                        path: Some(path),
                        cut,
                    })
                }
            }
        })
    }

    /// `[...]`: the tuple itself or the type's wildcard, else the userset
    /// tuples, each resolved.
    async fn direct(
        &mut self,
        object: &ObjectRef,
        relation: &str,
        rel: &'a Relation,
        depth: u32,
    ) -> Result<Found, AuthError> {
        self.ctx.lookup()?;
        let fanout = self.ctx.limits.max_fanout;
        let found = self
            .ctx
            .store
            .direct(DirectLookup {
                object,
                relation,
                user: self.user,
                max_usersets: if rel.has_usersets { fanout + 1 } else { 0 },
                tuplesets: &rel.tuplesets,
                max_tupleset_users: fanout + 1,
            })
            .await?;
        for (tupleset, users) in found.tuplesets {
            self.prefetched
                .insert(format!("{object}#{tupleset}"), users);
        }
        if let Some(user) = found.matched
            && admitted(&rel.direct, &user)
        {
            return Ok(Found {
                path: Some(user.to_string()),
                cut: false,
            });
        }
        self.ctx
            .fanout(found.usersets.len(), &format_args!("{object}#{relation}"))?;
        let mut cut = false;
        for user in &found.usersets {
            if let TupleUser::Userset {
                object: o,
                relation: r,
            } = user
                && admitted(&rel.direct, user)
            {
                let f = self.dispatch(o, r, depth + 1).await?;
                if f.path.is_some() {
                    return Ok(f);
                }
                cut |= f.cut;
            }
        }
        Ok(Found { path: None, cut })
    }

    /// `computed from tupleset`: `computed` on each object in `tupleset`.
    async fn tuple_to_userset(
        &mut self,
        object: &ObjectRef,
        tupleset: &str,
        computed: &str,
        depth: u32,
    ) -> Result<Found, AuthError> {
        let users = match self.prefetched.remove(&format!("{object}#{tupleset}")) {
            Some(users) => users,
            None => {
                self.ctx.lookup()?;
                let fanout = self.ctx.limits.max_fanout;
                self.ctx.store.users(object, tupleset, fanout + 1).await?
            }
        };
        self.ctx
            .fanout(users.len(), &format_args!("{object}#{tupleset}"))?;
        let model = self.ctx.model;
        let mut cut = false;
        for user in &users {
            if let TupleUser::Object(o) = user
                && model.has_relation(&o.kind, computed)
            {
                let f = self.dispatch(o, computed, depth + 1).await?;
                if f.path.is_some() {
                    return Ok(f);
                }
                cut |= f.cut;
            }
        }
        Ok(Found { path: None, cut })
    }
}

/// A rewrite in words, for reasons (`document:1#blocked`).
fn describe(object: &ObjectRef, relation: &str, rewrite: &Rewrite) -> String {
    match rewrite {
        Rewrite::Direct => format!("{object}#{relation} (direct)"),
        Rewrite::Computed(r) => format!("{object}#{r}"),
        Rewrite::TupleToUserset { tupleset, computed } => {
            format!("{computed} from {object}#{tupleset}")
        }
        Rewrite::Union(parts) | Rewrite::Intersection(parts) => {
            let op = if matches!(rewrite, Rewrite::Union(_)) {
                " or "
            } else {
                " and "
            };
            let inner: Vec<String> = parts
                .iter()
                .map(|p| describe(object, relation, p))
                .collect();
            format!("({})", inner.join(op))
        }
        Rewrite::Exclusion(b, s) => format!(
            "({} but not {})",
            describe(object, relation, b),
            describe(object, relation, s)
        ),
    }
}
