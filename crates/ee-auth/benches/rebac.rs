//! `cargo bench -p ee-auth --bench rebac`: ReBAC `check` on a 3-level model
//! (org → folder → document) with 100 000 tuples, on memory and on
//! PostgreSQL, each beside a raw anchor computing the same answer: a
//! hand-written walk over `HashMap`s, and one hand-written recursive SQL
//! query through raw tokio-postgres.
//!
//! Every question is allowed along the longest path: document → its
//! sub-folder → the sub-folder's parent folder → the org that folder is
//! shared with → the user (6 lookups for the engine on memory; on
//! PostgreSQL the check is pushed down to 1 recursive query, as the
//! anchor's). PostgreSQL: `EE_DATABASE_URL` or the default test server; the
//! data lives in schema `ee_auth_bench_rebac` and is loaded once (kept
//! between runs while it has 100 000 tuples).

#![allow(missing_docs)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ee_auth::{
    DbTuples, MemoryTuples, ObjectRef, Rebac, RebacModel, RelationTuple, TupleStore, TupleUser,
};
use ee_db::{Database, DbConfig};
use ee_testing::{bench_runtime, median, spread_over_tasks, take_turns};
use tokio_postgres::{Client, NoTls, Statement};

const MODEL: &str = "
model
  schema 1.1
type user
type org
  relations
    define member: [user]
type folder
  relations
    define parent_folder: [folder]
    define viewer: [user, org#member] or viewer from parent_folder
type document
  relations
    define parent: [folder]
    define viewer: [user] or viewer from parent
";

const ORGS: u64 = 20;
const MEMBERS: u64 = 700;
const TOP: u64 = 200;
const SUB: u64 = 1800;
const DOCS: u64 = 40_000;
const TUPLES: usize = 100_000;
const SCHEMA: &str = "ee_auth_bench_rebac";
const TABLE: &str = "rebac_tuples";
/// Checks in flight for the throughput figures.
const IN_FLIGHT: u64 = 16;

/// 14 000 org members, 200 top folders shared with an org, 1 800
/// sub-folders under them, 2 direct viewers per folder, 40 000 documents
/// with a parent and a direct viewer each: 100 000 tuples.
fn tuples() -> Vec<RelationTuple> {
    let mut out = Vec::with_capacity(TUPLES);
    let mut push = |s: String| out.push(s.parse::<RelationTuple>().expect("a valid tuple"));
    for o in 0..ORGS {
        for k in 0..MEMBERS {
            push(format!("org:o{o}#member@user:u{}", o * MEMBERS + k));
        }
    }
    for f in 0..TOP {
        push(format!("folder:f{f}#viewer@org:o{}#member", f % ORGS));
    }
    for s in TOP..TOP + SUB {
        push(format!(
            "folder:f{s}#parent_folder@folder:f{}",
            (s - TOP) % TOP
        ));
    }
    for f in 0..TOP + SUB {
        push(format!("folder:f{f}#viewer@user:v{}", 2 * f));
        push(format!("folder:f{f}#viewer@user:v{}", 2 * f + 1));
    }
    for d in 0..DOCS {
        push(format!("document:d{d}#parent@folder:f{}", TOP + d % SUB));
        push(format!("document:d{d}#viewer@user:w{d}"));
    }
    assert_eq!(out.len(), TUPLES);
    out
}

/// Question `n`: a document and a member of the org its folders are shared
/// with (allowed, through the longest path).
fn question(n: u64) -> (String, String) {
    let d = n.wrapping_mul(7919) % DOCS;
    let top = (d % SUB) % TOP;
    let org = top % ORGS;
    (format!("d{d}"), format!("u{}", org * MEMBERS + n % MEMBERS))
}

fn typed(n: u64) -> (ObjectRef, TupleUser) {
    let (doc, user) = question(n);
    (
        ObjectRef::new("document", doc).expect("valid"),
        TupleUser::object("user", user).expect("valid"),
    )
}

/// The anchor for memory: the walk this model needs, by hand, over
/// `object#relation → users` sets.
struct RawIndex(HashMap<String, HashSet<String>>);

impl RawIndex {
    fn new(tuples: &[RelationTuple]) -> Self {
        let mut index: HashMap<String, HashSet<String>> = HashMap::new();
        for t in tuples {
            index
                .entry(format!("{}#{}", t.object, t.relation))
                .or_default()
                .insert(t.user.to_string());
        }
        RawIndex(index)
    }

    fn users(&self, key: &str) -> impl Iterator<Item = &String> {
        self.0.get(key).into_iter().flatten()
    }

    fn has(&self, key: &str, user: &str) -> bool {
        self.0.get(key).is_some_and(|users| users.contains(user))
    }

    fn folder_viewer(&self, folder: &str, user: &str) -> bool {
        let viewers = format!("{folder}#viewer");
        if self.has(&viewers, user) {
            return true;
        }
        for u in self.users(&viewers) {
            if let Some(org) = u.strip_suffix("#member")
                && self.has(&format!("{org}#member"), user)
            {
                return true;
            }
        }
        self.users(&format!("{folder}#parent_folder"))
            .any(|parent| self.folder_viewer(parent, user))
    }

    fn document_viewer(&self, doc: &str, user: &str) -> bool {
        let user = format!("user:{user}");
        self.has(&format!("document:{doc}#viewer"), &user)
            || self
                .users(&format!("document:{doc}#parent"))
                .any(|folder| self.folder_viewer(folder, &user))
    }
}

fn memory(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let all = tuples();
    let store = MemoryTuples::new();
    rt.block_on(store.write(ee_auth::TupleChanges {
        writes: &all,
        deletes: &[],
    }))
    .expect("loaded");
    let rebac = Rebac::new(RebacModel::parse(MODEL).expect("the model"), store);
    let raw = RawIndex::new(&all);
    for n in 0..1000 {
        let (doc, user) = question(n);
        let (object, who) = typed(n);
        let ours = rt
            .block_on(rebac.check(&object, "viewer", &who))
            .expect("a check");
        assert!(
            ours.allowed && raw.document_viewer(&doc, &user),
            "question {n}"
        );
    }

    let mut group = c.benchmark_group("rebac_check_memory");
    let mut n = 0u64;
    group.bench_function("raw_hashmap_walk", |b| {
        b.iter(|| {
            n += 1;
            let (doc, user) = question(n);
            assert!(raw.document_viewer(&doc, &user));
        });
    });
    group.bench_function("rebac_memory", |b| {
        b.iter(|| {
            n += 1;
            let (object, who) = typed(n);
            assert!(
                rt.block_on(rebac.check(&object, "viewer", &who))
                    .expect("a check")
                    .allowed
            );
        });
    });
    group.finish();

    const BATCH: u64 = 20_000;
    let turns = take_turns(
        7,
        || {
            let start = Instant::now();
            for n in 0..BATCH {
                let (doc, user) = question(n);
                assert!(raw.document_viewer(&doc, &user));
            }
            start.elapsed().as_nanos() as f64 / BATCH as f64
        },
        || {
            let start = Instant::now();
            for n in 0..BATCH {
                let (object, who) = typed(n);
                assert!(
                    rt.block_on(rebac.check(&object, "viewer", &who))
                        .expect("a check")
                        .allowed
                );
            }
            start.elapsed().as_nanos() as f64 / BATCH as f64
        },
    );
    println!("\n== memory, 100 000 tuples, one check at a time ==");
    turns.print(
        "raw HashMap walk",
        "Rebac<MemoryTuples>::check",
        "ns per check",
    );
}

/// The anchor for PostgreSQL: the same answer in one recursive query.
const RAW_SQL: &str = "
WITH RECURSIVE folders(id) AS (
    SELECT user_id FROM rebac_tuples
     WHERE object_type = 'document' AND object_id = $1 AND relation = 'parent'
       AND user_relation = '' AND user_type = 'folder'
  UNION
    SELECT t.user_id FROM rebac_tuples t JOIN folders f
        ON t.object_type = 'folder' AND t.object_id = f.id AND t.relation = 'parent_folder'
       AND t.user_relation = '' AND t.user_type = 'folder'
)
SELECT EXISTS (
    SELECT 1 FROM rebac_tuples
     WHERE object_type = 'document' AND object_id = $1 AND relation = 'viewer'
       AND user_relation = '' AND user_type = 'user' AND user_id = $2
) OR EXISTS (
    SELECT 1 FROM folders f JOIN rebac_tuples v
        ON v.object_type = 'folder' AND v.object_id = f.id AND v.relation = 'viewer'
     WHERE (v.user_relation = '' AND v.user_type = 'user' AND v.user_id = $2)
        OR (v.user_relation = 'member' AND v.user_type = 'org' AND EXISTS (
              SELECT 1 FROM rebac_tuples m
               WHERE m.object_type = 'org' AND m.object_id = v.user_id AND m.relation = 'member'
                 AND m.user_relation = '' AND m.user_type = 'user' AND m.user_id = $2))
) AS allowed";

struct RawPg {
    clients: Vec<(Client, Statement)>,
    next: AtomicUsize,
}

impl RawPg {
    async fn check(&self, n: u64) -> bool {
        let (doc, user) = question(n);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        let (client, stmt) = &self.clients[i];
        client
            .query_one(stmt, &[&doc, &user])
            .await
            .expect("the raw query")
            .get(0)
    }
}

fn base_url() -> String {
    std::env::var("EE_DATABASE_URL").unwrap_or_else(|_| ee_testing::DEFAULT_DATABASE_URL.to_owned())
}

fn schema_url() -> String {
    let base = base_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-csearch_path%3D{SCHEMA}")
}

async fn raw_client(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e} (set EE_DATABASE_URL)"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The bench schema with its 100 000 tuples (loaded when missing).
async fn setup_pg() -> (Rebac<DbTuples>, Arc<RawPg>) {
    let admin = raw_client(&base_url()).await;
    admin
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        .await
        .expect("the bench schema");
    let db = Database::connect(DbConfig {
        url: schema_url(),
        max_size: IN_FLIGHT as u32,
        ..DbConfig::default()
    })
    .await
    .expect("a pool");
    let store = DbTuples::open(db, TABLE).await.expect("the tuple table");
    let count: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {SCHEMA}.{TABLE}"), &[])
        .await
        .expect("count")
        .get(0);
    if count != TUPLES as i64 {
        admin
            .batch_execute(&format!("TRUNCATE {SCHEMA}.{TABLE}"))
            .await
            .expect("truncate");
        let start = Instant::now();
        let all = tuples();
        store
            .write(ee_auth::TupleChanges {
                writes: &all,
                deletes: &[],
            })
            .await
            .expect("loaded");
        admin
            .batch_execute(&format!("ANALYZE {SCHEMA}.{TABLE}"))
            .await
            .expect("analyze");
        println!(
            "loaded {TUPLES} tuples into PostgreSQL in {:?}",
            start.elapsed()
        );
    }
    let mut clients = Vec::new();
    for _ in 0..IN_FLIGHT {
        let client = raw_client(&schema_url()).await;
        let stmt = client
            .prepare(RAW_SQL)
            .await
            .expect("the raw query prepares");
        clients.push((client, stmt));
    }
    let rebac = Rebac::new(RebacModel::parse(MODEL).expect("the model"), store);
    (
        rebac,
        Arc::new(RawPg {
            clients,
            next: AtomicUsize::new(0),
        }),
    )
}

async fn ours_check(rebac: &Rebac<DbTuples>, n: u64) {
    let (object, who) = typed(n);
    assert!(
        rebac
            .check(&object, "viewer", &who)
            .await
            .expect("a check")
            .allowed
    );
}

fn postgres(c: &mut Criterion) {
    let rt = bench_runtime();
    let (rebac, raw) = rt.block_on(setup_pg());
    rt.block_on(async {
        for n in 0..200 {
            assert!(raw.check(n).await, "raw question {n}");
            ours_check(&rebac, n).await;
        }
        // They agree on refusals too.
        let stranger = TupleUser::object("user", "nobody").expect("valid");
        let doc = ObjectRef::new("document", "d1").expect("valid");
        assert!(
            !rebac
                .check(&doc, "viewer", &stranger)
                .await
                .expect("a check")
                .allowed
        );
    });

    let mut group = c.benchmark_group("rebac_check_postgres");
    group.sample_size(10);
    for tasks in [1, IN_FLIGHT] {
        let r = raw.clone();
        group.bench_with_input(
            BenchmarkId::new("raw_tokio_postgres_cte", tasks),
            &tasks,
            |b, &tasks| {
                b.iter_custom(|iters| {
                    let r = r.clone();
                    spread_over_tasks(rt, tasks, iters, move |n| {
                        let r = r.clone();
                        async move { assert!(r.check(n).await) }
                    })
                });
            },
        );
        let ours = rebac.clone();
        group.bench_with_input(
            BenchmarkId::new("rebac_postgres", tasks),
            &tasks,
            |b, &tasks| {
                b.iter_custom(|iters| {
                    let ours = ours.clone();
                    spread_over_tasks(rt, tasks, iters, move |n| {
                        let ours = ours.clone();
                        async move { ours_check(&ours, n).await }
                    })
                });
            },
        );
    }
    group.finish();

    // p50 of single checks, and checks per second with 16 in flight.
    let latency = |f: &dyn Fn(u64) -> Duration| {
        let mut all: Vec<f64> = (0..400).map(|n| f(n).as_secs_f64() * 1e6).collect();
        all.sort_by(f64::total_cmp);
        median(&all)
    };
    let r = raw.clone();
    let ours = rebac.clone();
    let turns = take_turns(
        5,
        || {
            latency(&|n| {
                rt.block_on(async {
                    let s = Instant::now();
                    assert!(r.check(n).await);
                    s.elapsed()
                })
            })
        },
        || {
            latency(&|n| {
                rt.block_on(async {
                    let s = Instant::now();
                    ours_check(&ours, n).await;
                    s.elapsed()
                })
            })
        },
    );
    println!("\n== PostgreSQL, 100 000 tuples, one check at a time (p50) ==");
    turns.print(
        "raw tokio-postgres, one recursive query",
        "Rebac<DbTuples>::check",
        "µs p50",
    );

    const CHECKS: u64 = 8000;
    let per_second = |took: Duration| CHECKS as f64 / took.as_secs_f64();
    let r = raw.clone();
    let ours = rebac.clone();
    let turns = take_turns(
        5,
        || {
            let r = r.clone();
            per_second(spread_over_tasks(rt, IN_FLIGHT, CHECKS, move |n| {
                let r = r.clone();
                async move { assert!(r.check(n).await) }
            }))
        },
        || {
            let ours = ours.clone();
            per_second(spread_over_tasks(rt, IN_FLIGHT, CHECKS, move |n| {
                let ours = ours.clone();
                async move { ours_check(&ours, n).await }
            }))
        },
    );
    println!("\n== PostgreSQL, 100 000 tuples, {IN_FLIGHT} checks in flight ==");
    turns.print(
        "raw tokio-postgres, one recursive query",
        "Rebac<DbTuples>::check",
        "checks/s",
    );
}

criterion_group!(benches, memory, postgres);
criterion_main!(benches);
