//! The check pushdown on SQL stores: a union-only relation is answered in
//! one query (counted with ee-db's statement histogram), one that reaches
//! `and`/`but not` level by level; and on random union-only graphs the
//! pushed-down answers equal the engine's on memory.

use ee_auth::{AuthError, DbTuples, MemoryTuples, ObjectRef, Rebac, RebacModel, TupleUser};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use crate::env::{Backend, MODEL, obj, tuples, user};

/// Statements run since the last call (the histogram drains on snapshot).
fn statements(snapshotter: &Snapshotter) -> usize {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == ee_db::METRIC_QUERY_DURATION_SECONDS)
        .map(|(.., value)| match value {
            DebugValue::Histogram(samples) => samples.len(),
            _ => 0,
        })
        .sum()
}

/// A database opened under `recorder`, so its statements are counted.
async fn counted_db(
    b: Backend,
    recorder: &DebuggingRecorder,
) -> (ee_db::Database, Option<ee_testing::Postgres>) {
    let pg = match b {
        Backend::Postgres => Some(ee_testing::Postgres::connect().await),
        _ => None,
    };
    let url = pg
        .as_ref()
        .map_or("sqlite::memory:", |pg| pg.url())
        .to_owned();
    let guard = metrics::set_default_local_recorder(recorder);
    let db = ee_db::Database::open(&url).await.unwrap();
    drop(guard);
    (db, pg)
}

async fn one_query_for_union_only(b: Backend) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (db, _pg) = counted_db(b, &recorder).await;
    let store = DbTuples::open(db, "pushdown_tuples").await.unwrap();
    let rebac = Rebac::new(RebacModel::parse(MODEL).unwrap(), store);
    rebac
        .write(&tuples(&[
            "document:1#parent@folder:sub",
            "folder:sub#parent@folder:top",
            "folder:top#viewer@team:eng#member",
            "team:eng#member@user:anne",
            "document:1#allowed@user:anne",
            "document:1#editor@user:anne",
        ]))
        .await
        .unwrap();
    let _ = statements(&snapshotter);

    // `viewer` reaches only `or`: one statement for a 4-level path, the
    // engine's path reported as is.
    let anne = user("user:anne");
    let bob = user("user:bob");
    let check = rebac
        .check(&obj("document:1"), "viewer", &anne)
        .await
        .unwrap();
    assert_eq!(statements(&snapshotter), 1);
    assert_eq!(
        check.path.as_deref(),
        Some("document:1#viewer <- document:1#editor <- user:anne")
    );
    rebac
        .delete(&tuples(&["document:1#editor@user:anne"]))
        .await
        .unwrap();
    let _ = statements(&snapshotter);
    let check = rebac
        .check(&obj("document:1"), "viewer", &anne)
        .await
        .unwrap();
    assert_eq!(statements(&snapshotter), 1);
    assert_eq!(
        check.path.as_deref(),
        Some(
            "document:1#viewer <- folder:sub#viewer <- folder:top#viewer <- team:eng#member <- user:anne"
        )
    );
    // A denial is one statement too.
    assert!(
        !rebac
            .check(&obj("document:1"), "viewer", &bob)
            .await
            .unwrap()
            .allowed
    );
    assert_eq!(statements(&snapshotter), 1);

    // `can_view` (`but not`) and `can_share` (`and`): level by level.
    assert!(
        rebac
            .check(&obj("document:1"), "can_view", &anne)
            .await
            .unwrap()
            .allowed
    );
    assert!(statements(&snapshotter) > 1);
    rebac
        .write(&tuples(&["document:1#owner@user:anne"]))
        .await
        .unwrap();
    let _ = statements(&snapshotter);
    assert!(
        rebac
            .check(&obj("document:1"), "can_share", &anne)
            .await
            .unwrap()
            .allowed
    );
    assert!(statements(&snapshotter) > 1);
}

#[tokio::test]
async fn sqlite_answers_a_union_only_check_in_one_query() {
    one_query_for_union_only(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_answers_a_union_only_check_in_one_query() {
    one_query_for_union_only(Backend::Postgres).await;
}

/// Union-only, with usersets, wildcards, computed relations and
/// tuple-to-userset to two types.
const RANDOM_MODEL: &str = r"
model
  schema 1.1
type user
type group
  relations
    define owner: [user]
    define member: [user, user:*, group#member] or owner
type folder
  relations
    define parent: [folder]
    define editor: [user, group#member] or editor from parent
    define viewer: [user, group#member] or editor or viewer from parent
type document
  relations
    define parent: [folder, document]
    define viewer: [user, user:*, group#member] or viewer from parent
";

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn random_tuples(rng: &mut Rng, count: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < count {
        let (a, b) = (rng.below(5), rng.below(5));
        let u = rng.below(4);
        let t = match rng.below(12) {
            0 => format!("group:g{a}#owner@user:u{u}"),
            1 => format!("group:g{a}#member@user:u{u}"),
            2 => format!("group:g{a}#member@group:g{b}#member"),
            3 => format!("group:g{a}#member@user:*"),
            4 => format!("folder:f{a}#parent@folder:f{b}"),
            5 => format!("folder:f{a}#editor@group:g{b}#member"),
            6 => format!("folder:f{a}#viewer@user:u{u}"),
            7 => format!("folder:f{a}#editor@user:u{u}"),
            8 => format!("document:d{a}#parent@folder:f{b}"),
            9 => format!("document:d{a}#parent@document:d{b}"),
            10 => format!("document:d{a}#viewer@group:g{b}#member"),
            _ => format!("document:d{a}#viewer@user:u{u}"),
        };
        if rng.below(10) == 0 && t.starts_with("document") {
            out.push(format!("document:d{a}#viewer@user:*"));
        }
        out.push(t);
    }
    out
}

fn outcome(r: Result<ee_auth::CheckResult, AuthError>) -> Result<bool, String> {
    match r {
        Ok(c) => Ok(c.allowed),
        Err(AuthError::Limit(why)) => Err(why.to_string()),
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

async fn random_graphs_agree(b: Backend) {
    let pg = match b {
        Backend::Postgres => Some(ee_testing::Postgres::connect().await),
        _ => None,
    };
    let url = pg
        .as_ref()
        .map_or("sqlite::memory:", |pg| pg.url())
        .to_owned();
    let db = ee_db::Database::open(&url).await.unwrap();
    let model = RebacModel::parse(RANDOM_MODEL).unwrap();
    let mut allowed = 0;
    let mut compared = 0;
    for round in 0..12u64 {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (round + 1).wrapping_mul(0x2545_F491));
        let list = random_tuples(&mut rng, 40);
        let list: Vec<&str> = list.iter().map(String::as_str).collect();
        let sql = Rebac::new(
            model.clone(),
            DbTuples::open(db.clone(), &format!("random_{round}"))
                .await
                .unwrap(),
        );
        let memory = Rebac::new(model.clone(), MemoryTuples::new());
        sql.write(&tuples(&list)).await.unwrap();
        memory.write(&tuples(&list)).await.unwrap();
        let users: Vec<TupleUser> = (0..4)
            .map(|u| user(&format!("user:u{u}")))
            .chain([
                user("user:*"),
                user("group:g0#member"),
                user("group:g3#member"),
            ])
            .collect();
        for (kind, relation) in [
            ("group", "member"),
            ("folder", "viewer"),
            ("folder", "editor"),
            ("document", "viewer"),
        ] {
            for id in 0..5 {
                let object = ObjectRef::new(kind, format!("{}{id}", &kind[..1])).unwrap();
                for who in &users {
                    let ours = outcome(sql.check(&object, relation, who).await);
                    let theirs = outcome(memory.check(&object, relation, who).await);
                    assert_eq!(
                        ours, theirs,
                        "round {round}: {object}#{relation}@{who} over {list:?}"
                    );
                    compared += 1;
                    allowed += usize::from(ours == Ok(true));
                }
            }
        }
    }
    // The graphs are neither empty nor complete.
    assert!(
        allowed > compared / 10 && allowed < compared * 9 / 10,
        "{allowed} of {compared}"
    );
}

#[tokio::test]
async fn sqlite_pushdown_agrees_with_the_engine_on_random_graphs() {
    random_graphs_agree(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_pushdown_agrees_with_the_engine_on_random_graphs() {
    random_graphs_agree(Backend::Postgres).await;
}
