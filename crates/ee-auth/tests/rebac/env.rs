//! A fresh engine on a fresh store of each kind.

use ee_auth::{
    AnyTupleStore, DbTuples, MemoryTuples, ObjectRef, Rebac, RebacConfig, RebacModel,
    RelationTuple, TupleUser,
};

/// The model most cases use: nested teams and groups, folders with parents,
/// documents with every operator.
pub const MODEL: &str = r"
model
  schema 1.1

type user
type employee
type team
  relations
    define member: [user, team#member]
type group
  relations
    define member: [user, group#member]
type folder
  relations
    define owner: [user]
    define parent: [folder]
    define viewer: [user, team#member] or owner or viewer from parent
type document
  relations
    define parent: [folder]
    define owner: [user]
    define editor: [user, team#member] or owner
    define viewer: [user, user:*, team#member] or editor or viewer from parent
    define blocked: [user, team#member]
    define allowed: [user]
    define can_view: viewer but not blocked
    define can_share: editor and allowed
    # parentheses, as OpenFGA allows them
    define can_audit: (viewer and allowed) but not blocked  # an inline comment
";

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

/// An engine and what keeps its store alive.
pub struct Env {
    pub rebac: Rebac,
    _pg: Option<ee_testing::Postgres>,
}

impl Backend {
    pub async fn store(self) -> (AnyTupleStore, Option<ee_testing::Postgres>) {
        match self {
            Backend::Memory => (MemoryTuples::new().into(), None),
            Backend::Sqlite => {
                let db = ee_db::Database::open("sqlite::memory:").await.unwrap();
                (
                    DbTuples::open(db, "rebac_tuples").await.unwrap().into(),
                    None,
                )
            }
            Backend::Postgres => {
                let pg = ee_testing::Postgres::connect().await;
                let db = ee_db::Database::open(pg.url()).await.unwrap();
                (
                    DbTuples::open(db, "rebac_tuples").await.unwrap().into(),
                    Some(pg),
                )
            }
        }
    }

    /// [`MODEL`] with the default bounds.
    pub async fn env(self) -> Env {
        self.env_with(MODEL, &RebacConfig::default()).await
    }

    pub async fn env_with(self, model: &str, cfg: &RebacConfig) -> Env {
        let (store, pg) = self.store().await;
        let rebac = Rebac::builder(store)
            .model(RebacModel::parse(model).unwrap())
            .config(cfg)
            .unwrap()
            .build()
            .unwrap();
        Env { rebac, _pg: pg }
    }
}

pub fn obj(s: &str) -> ObjectRef {
    s.parse().unwrap()
}

pub fn user(s: &str) -> TupleUser {
    s.parse().unwrap()
}

pub fn tuples(list: &[&str]) -> Vec<RelationTuple> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

impl Env {
    pub async fn write(&self, list: &[&str]) {
        self.rebac.write(&tuples(list)).await.unwrap();
    }

    /// The path when allowed, `None` when denied.
    pub async fn path(&self, object: &str, relation: &str, who: &str) -> Option<String> {
        let result = self
            .rebac
            .check(&obj(object), relation, &user(who))
            .await
            .unwrap();
        assert_eq!(result.allowed, result.path.is_some());
        result.path
    }

    pub async fn check(&self, object: &str, relation: &str, who: &str) -> bool {
        self.path(object, relation, who).await.is_some()
    }

    pub async fn objects(&self, kind: &str, relation: &str, who: &str) -> Vec<String> {
        let found = self
            .rebac
            .list_objects(kind, relation, &user(who))
            .await
            .unwrap();
        found.iter().map(ToString::to_string).collect()
    }

    pub async fn users(&self, object: &str, relation: &str, filter: &str) -> Vec<String> {
        let found = self
            .rebac
            .list_users(&obj(object), relation, &filter.parse().unwrap())
            .await
            .unwrap();
        found.iter().map(ToString::to_string).collect()
    }
}
