//! ReBAC: Zanzibar-style relationship tuples evaluated against an OpenFGA
//! model (modeling language schema 1.1, without conditions).
//!
//! One part per file:
//!
//! - `tuple`: [`RelationTuple`], [`ObjectRef`], [`TupleUser`] and their string form;
//! - `dsl`: the modeling-language parser; `model`: [`RebacModel`] and its validation;
//! - `engine`: check (with [`CheckCache`]), list objects / list users, expand;
//! - `store`: the [`TupleStore`] trait, [`MemoryTuples`], [`DbTuples`]
//!   (PostgreSQL, SQLite) and [`AnyTupleStore`];
//! - `config`: [`RebacConfig`].

use std::sync::Arc;

use crate::AuthError;
use crate::authz::{self, AccessRequest, Authorize, Decision};
use crate::metrics::DecisionMetrics;

mod config;
mod dsl;
mod engine;
mod model;
mod store;
mod tuple;

pub use config::RebacConfig;
pub use engine::expand::{ExpandNode, UsersetTree};
pub use engine::list::UserFilter;
pub use engine::{CheckCache, CheckResult};
pub use model::RebacModel;
pub use store::any::AnyTupleStore;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use store::db::DbTuples;
pub use store::memory::MemoryTuples;
pub use store::{DirectLookup, DirectMatch, ReverseLookup, TupleChanges, TupleStore};
pub use tuple::{ObjectRef, RelationTuple, TupleUser};

use engine::check::Checker;
use engine::{Ctx, Limits};

/// The ReBAC engine: a model, a tuple store and bounds. Cheap to clone.
///
/// As an [`Authorize`]r, a request's action is the relation, its resource
/// the object (`Resource { kind: "document", id: "1" }`) and its subject's
/// id the user: `user:anne`, `service:order`, or an id without `:`, which
/// is taken as `user:<id>` (a JWT `sub` such as `auth0|42` is
/// `user:auth0|42`). A relation the object's type lacks is an error
/// ([`AuthError::Config`], a 500), a malformed object or subject a denial;
/// a store that cannot be read fails closed ([`AuthError::Unavailable`], 503).
/// The `Allow` reason is the tuple path.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ee_auth::AuthError> {
/// use ee_auth::{MemoryTuples, Rebac, RebacModel};
///
/// let model = RebacModel::parse(r"
/// model
///   schema 1.1
/// type user
/// type folder
///   relations
///     define viewer: [user]
/// type document
///   relations
///     define parent: [folder]
///     define viewer: [user] or viewer from parent
/// ")?;
/// let rebac = Rebac::new(model, MemoryTuples::new());
/// rebac.write(&["document:1#parent@folder:x".parse()?, "folder:x#viewer@user:anne".parse()?]).await?;
///
/// let check = rebac.check(&"document:1".parse()?, "viewer", &"user:anne".parse()?).await?;
/// assert!(check.allowed);
/// assert_eq!(check.path.as_deref(), Some("document:1#viewer <- folder:x#viewer <- user:anne"));
/// # Ok(()) }
/// ```
pub struct Rebac<S = AnyTupleStore> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    model: RebacModel,
    store: S,
    limits: Limits,
    metrics: DecisionMetrics,
    /// On a [`DbTuples`] store, the checks answered in one query.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pushdown: Option<store::walk::Pushdown>,
}

impl<S> Clone for Rebac<S> {
    fn clone(&self) -> Self {
        Rebac {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Rebac<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rebac")
            .field("types", &self.inner.model.types())
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Rebac`]: [`Rebac::builder`].
#[derive(Debug)]
#[must_use]
pub struct RebacBuilder<S> {
    store: S,
    model: Option<RebacModel>,
    config: RebacConfig,
}

impl<S: TupleStore> RebacBuilder<S> {
    /// The model (replaced by the configuration's, if it names one).
    pub fn model(mut self, model: RebacModel) -> Self {
        self.model = Some(model);
        self
    }

    /// Applies `cfg`: its bounds, and its model (`model` or `model_file`)
    /// if it has one, parsed now.
    pub fn config(mut self, cfg: &RebacConfig) -> Result<Self, AuthError> {
        cfg.validate()?;
        if let Some(text) = cfg.model_text()? {
            self.model = Some(RebacModel::parse(&text)?);
        }
        self.config = cfg.clone();
        Ok(self)
    }

    /// The deepest chain one check follows (default 25).
    pub fn max_depth(mut self, depth: u32) -> Self {
        self.config.max_depth = depth;
        self
    }

    /// The most store lookups one call makes (default 1000).
    pub fn max_lookups(mut self, lookups: u32) -> Self {
        self.config.max_lookups = lookups;
        self
    }

    /// The most tuples one read may return (default 1000).
    pub fn max_fanout(mut self, fanout: usize) -> Self {
        self.config.max_fanout = fanout;
        self
    }

    /// The most answers a list call returns (default 1000).
    pub fn max_results(mut self, results: usize) -> Self {
        self.config.max_results = results;
        self
    }

    /// The engine; registers its decision counters
    /// (`ee_auth_decisions_total{model="rebac"}`).
    pub fn build(self) -> Result<Rebac<S>, AuthError> {
        self.config.validate()?;
        let model = self.model.ok_or_else(|| {
            AuthError::Config(
                "rebac: no model: give one with `.model()` or `model`/`model_file` in the config"
                    .into(),
            )
        })?;
        let c = &self.config;
        let limits = Limits {
            max_depth: c.max_depth,
            max_lookups: c.max_lookups,
            max_fanout: c.max_fanout,
            max_results: c.max_results,
        };
        Ok(Rebac {
            inner: Arc::new(Inner {
                #[cfg(any(feature = "postgres", feature = "sqlite"))]
                pushdown: db_store(&self.store)
                    .and_then(|db| store::walk::Pushdown::new(&model, db, limits)),
                model,
                store: self.store,
                limits,
                metrics: DecisionMetrics::new("rebac"),
            }),
        })
    }
}

impl<S: TupleStore> Rebac<S> {
    /// An engine with the default bounds.
    pub fn new(model: RebacModel, store: S) -> Self {
        Rebac::builder(store)
            .model(model)
            .build()
            .expect("the default bounds are valid and a model is given")
    }

    /// A builder on `store`.
    pub fn builder(store: S) -> RebacBuilder<S> {
        RebacBuilder {
            store,
            model: None,
            config: RebacConfig::default(),
        }
    }

    /// The model.
    pub fn model(&self) -> &RebacModel {
        &self.inner.model
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    fn ctx(&self) -> Ctx<'_, S> {
        Ctx::new(&self.inner.model, &self.inner.store, self.inner.limits)
    }

    /// Writes tuples, each checked against the model first (none is written
    /// if one is refused: [`AuthError::Config`] naming it).
    pub async fn write(&self, tuples: &[RelationTuple]) -> Result<(), AuthError> {
        self.apply(TupleChanges {
            writes: tuples,
            deletes: &[],
        })
        .await
    }

    /// Deletes tuples (absent ones are ignored).
    pub async fn delete(&self, tuples: &[RelationTuple]) -> Result<(), AuthError> {
        self.apply(TupleChanges {
            writes: &[],
            deletes: tuples,
        })
        .await
    }

    /// Writes and deletes together; every write is checked against the model.
    pub async fn apply(&self, changes: TupleChanges<'_>) -> Result<(), AuthError> {
        for t in changes.writes {
            self.inner.model.validate_tuple(t)?;
        }
        for t in changes.deletes {
            t.validate()?;
        }
        self.inner.store.write(changes).await
    }

    /// Whether `user` has `relation` on `object`, and through which tuples.
    pub async fn check(
        &self,
        object: &ObjectRef,
        relation: &str,
        user: &TupleUser,
    ) -> Result<CheckResult, AuthError> {
        self.run_check(object, relation, user, None).await
    }

    /// [`check`](Self::check), sharing answers with other checks of the
    /// same request through `cache`.
    pub async fn check_cached(
        &self,
        object: &ObjectRef,
        relation: &str,
        user: &TupleUser,
        cache: &CheckCache,
    ) -> Result<CheckResult, AuthError> {
        self.run_check(object, relation, user, Some(cache)).await
    }

    /// A check: in one query when it can be pushed down to SQL (the engine
    /// then walks the fetched tuples in memory), else level by level.
    async fn run_check(
        &self,
        object: &ObjectRef,
        relation: &str,
        user: &TupleUser,
        cache: Option<&CheckCache>,
    ) -> Result<CheckResult, AuthError> {
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        if let Some(pushdown) = &self.inner.pushdown
            && pushdown.applies(&object.kind, relation)
            && cache.is_none_or(|c| c.get(&format!("{object}#{relation}@{user}")).is_none())
            && let Some(snapshot) = pushdown.fetch(object, relation, user).await?
        {
            let ctx = Ctx::new(&self.inner.model, &snapshot, self.inner.limits);
            return Checker::new(ctx, user, cache).check(object, relation).await;
        }
        Checker::new(self.ctx(), user, cache)
            .check(object, relation)
            .await
    }

    /// The objects of `object_type` on which `user` has `relation`, sorted,
    /// at most `max_results`.
    pub async fn list_objects(
        &self,
        object_type: &str,
        relation: &str,
        user: &TupleUser,
    ) -> Result<Vec<ObjectRef>, AuthError> {
        engine::list::list_objects(self.ctx(), object_type, relation, user).await
    }

    /// The users matching `filter` who have `relation` on `object`, sorted,
    /// at most `max_results`. A wildcard (`user:*`) is returned as such.
    pub async fn list_users(
        &self,
        object: &ObjectRef,
        relation: &str,
        filter: &UserFilter,
    ) -> Result<Vec<TupleUser>, AuthError> {
        engine::list::list_users(self.ctx(), object, relation, filter).await
    }

    /// The userset tree of `object#relation`, one level deep (usersets and
    /// computed relations it names are not expanded further), as OpenFGA's
    /// Expand.
    pub async fn expand(
        &self,
        object: &ObjectRef,
        relation: &str,
    ) -> Result<UsersetTree, AuthError> {
        engine::expand::expand(&mut self.ctx(), object, relation).await
    }

    async fn decide(&self, request: &AccessRequest<'_>) -> Result<Decision, AuthError> {
        let resource = request.resource;
        let Ok(object) = ObjectRef::new(resource.kind, resource.id) else {
            return Ok(Decision::Deny(
                format!("`{resource}` is not a single object a relation can be checked on").into(),
            ));
        };
        let Some(user) = subject_user(request.subject.id()) else {
            return Ok(Decision::Deny(
                "the subject is not a valid ReBAC user".into(),
            ));
        };
        let check = self.check(&object, request.action, &user).await?;
        Ok(match check.path {
            Some(path) => Decision::Allow(path.into()),
            None => Decision::Deny(
                format!(
                    "no relationship grants {} on {object} to {user}",
                    request.action
                )
                .into(),
            ),
        })
    }
}

/// The SQL store under `store`, if it is one (its checks can be pushed down).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn db_store<S: TupleStore>(store: &S) -> Option<DbTuples> {
    let any: &dyn std::any::Any = store;
    if let Some(db) = any.downcast_ref::<DbTuples>() {
        return Some(db.clone());
    }
    match any.downcast_ref::<AnyTupleStore>() {
        Some(AnyTupleStore::Db(db)) => Some(db.clone()),
        _ => None,
    }
}

/// The user a subject id stands for: `type:id` as is, a bare id as `user:<id>`.
/// Only an object: a subject spelled as a userset (`team:admins#member`) or a
/// wildcard (`user:*`) stands for no one, so a caller who can choose its own
/// subject text (an API key owner, a user name) cannot borrow a group's rights.
fn subject_user(id: &str) -> Option<TupleUser> {
    let user = if id.contains(':') {
        id.parse().ok()?
    } else {
        TupleUser::object("user", id).ok()?
    };
    matches!(user, TupleUser::Object(_)).then_some(user)
}

impl<S: TupleStore> Authorize for Rebac<S> {
    async fn authorize(&self, request: &AccessRequest<'_>) -> Result<Decision, AuthError> {
        let result = self.decide(request).await;
        authz::record(&self.inner.metrics, request, &result);
        result
    }
}
