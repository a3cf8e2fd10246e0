//! API keys: one behaviour suite run on every store (memory, Redis,
//! PostgreSQL, SQLite) against real servers, plus bad input, outages, bounds
//! and configuration.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ee_auth::{
    AnyApiKeyStore, ApiKeyConfig, ApiKeyRecord, ApiKeyStore, ApiKeyVerifier, ApiKeys, AuthError,
    DbApiKeys, Identity, Inserted, MemoryApiKeys, Method, NewApiKey, PROBLEM_INVALID_TOKEN,
    PROBLEM_UNAVAILABLE, RedisApiKeys,
};
use ee_core::{Clock, KeySpace, OnBackendError, Problem, RedisConfig, RedisConn};
use ee_db::{Database, params};
use ee_testing::{ManualClock, Postgres, RedisServer};
use sha2::{Digest, Sha256};

const SECRET_LEN: usize = 43;

/// A name no other test (or helper, or earlier run) uses.
fn unique(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{what}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        ee_core::unix_ms()
    )
}

fn secret_of(key: &str) -> &str {
    &key[key.len() - SECRET_LEN..]
}

#[track_caller]
fn assert_invalid(result: Result<Identity, AuthError>, case: &str) {
    match result {
        Err(AuthError::InvalidToken(why)) => assert_eq!(why, "invalid API key", "{case}"),
        other => panic!("{case}: expected InvalidToken, got {other:?}"),
    }
}

fn new_key(owner: &str) -> NewApiKey {
    NewApiKey {
        owner: owner.into(),
        name: "CI deploy".into(),
        scopes: vec!["orders:read".into(), "orders:write".into()],
        roles: vec!["admin".into()],
        tenant: Some("acme".into()),
        expires_at: None,
    }
}

/// Another well-formed key: the same shape, a different id or secret.
fn with_id(key: &str, prefix: &str, id: &str) -> String {
    format!("{prefix}_{id}_{}", secret_of(key))
}

fn with_wrong_secret(key: &str) -> String {
    let mut wrong = key[..key.len() - 1].to_owned();
    wrong.push(if key.ends_with('A') { 'B' } else { 'A' });
    wrong
}

/// Everything a user relies on, on one store. Returns a live key (id, key)
/// for the store-specific checks of what is stored.
async fn behaviour<S: ApiKeyStore + Clone + std::fmt::Debug>(store: S) -> (String, String) {
    let clock = ManualClock::new();
    let keys = ApiKeys::new(store.clone()).with_clock(clock.clone());
    let owner = unique("user:anne");

    // Create: the plaintext once, in the documented format.
    let created = keys.create(new_key(&owner)).await.unwrap();
    let key = created.key.expose().clone();
    assert!(key.starts_with("eek_"), "{key}");
    assert_eq!(key.len(), 4 + 12 + 1 + SECRET_LEN);
    assert_eq!(&key[4..16], created.id);
    assert!(keys.recognizes(&key) && !keys.recognizes("eyJhbGciOi.x.y"));

    // Verify: the owner's identity with the key's grants; again from the cache.
    for _ in 0..2 {
        let identity = keys.verify(&key).await.unwrap();
        assert_eq!(identity.id(), owner);
        assert_eq!(identity.method(), Method::ApiKey);
        assert_eq!(
            identity.scopes().collect::<Vec<_>>(),
            ["orders:read", "orders:write"]
        );
        assert!(identity.has_role("admin") && !identity.has_role("user"));
        assert_eq!(identity.tenant(), Some("acme"));
        assert_eq!(identity.token_id(), Some(created.id.as_str()));
        assert_eq!(identity.expires_at(), None);
    }
    assert_eq!(keys.cached_keys(), 1);
    // Through the object-safe seam the auth layer uses.
    let verifier: Arc<dyn ApiKeyVerifier> = Arc::new(keys.clone());
    assert_eq!(verifier.verify_key(&key).await.unwrap().id(), owner);

    // Wrong secret (also while the id is cached), unknown id: one answer.
    assert_invalid(keys.verify(&with_wrong_secret(&key)).await, "wrong secret");
    assert_invalid(
        keys.verify(&with_id(&key, "eek", "000000000000")).await,
        "unknown id",
    );

    // The stored record: the hash of the secret, never the key.
    let record = keys.get(&created.id).await.unwrap().unwrap();
    assert_eq!(
        record.hash,
        <[u8; 32]>::from(Sha256::digest(secret_of(&key)))
    );
    assert_eq!(record.owner, owner);
    assert_eq!(record.name, "CI deploy");
    assert_eq!(record.created_at_ms, clock.unix_ms());
    assert!(!record.is_revoked());

    // last_used: written in the background on the first verification.
    let mut last_used = None;
    for _ in 0..100 {
        last_used = keys.get(&created.id).await.unwrap().unwrap().last_used_ms;
        if last_used.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last_used, Some(clock.unix_ms()));

    revocation(&keys, &store, &clock, &owner).await;
    expiry(&keys, &clock, &owner).await;
    malformed(&keys).await;
    listing(&keys, &owner, &created.id).await;
    concurrency(&keys, &owner).await;

    // Nothing shows the plaintext: the created key, the record, the
    // identity, the errors, the whole `ApiKeys`.
    let secret = secret_of(&key);
    let identity = keys.verify(&key).await.unwrap();
    let err = keys.verify(&with_wrong_secret(&key)).await.unwrap_err();
    for shown in [
        format!("{created:?}"),
        format!("{record:?}"),
        format!("{identity:?}"),
        format!("{err:?} {err}"),
        format!("{:?}", Problem::from(err)),
        format!("{keys:?}"),
    ] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains(&key), "{shown}");
    }
    (created.id, key)
}

/// Revoked keys stop at once here, within the cache TTL elsewhere.
async fn revocation<S: ApiKeyStore + Clone>(
    keys: &ApiKeys<S>,
    store: &S,
    clock: &ManualClock,
    owner: &str,
) {
    let created = keys.create(new_key(owner)).await.unwrap();
    let key = created.key.expose();
    // Another instance on the same store, with its own cache.
    let other = ApiKeys::new(store.clone()).with_clock(clock.clone());
    keys.verify(key).await.unwrap();
    other.verify(key).await.unwrap();

    keys.revoke(&created.id).await.unwrap();
    assert_invalid(keys.verify(key).await, "revoked here");
    let record = keys.get(&created.id).await.unwrap().unwrap();
    assert_eq!(record.revoked_at_ms, Some(clock.unix_ms()));
    // The other instance's cache still holds it: the documented delay…
    assert!(other.verify(key).await.is_ok());
    // …which ends with the TTL (5 s by default).
    clock.advance(Duration::from_millis(5_001));
    assert_invalid(other.verify(key).await, "revoked elsewhere, TTL passed");

    // Revoking again keeps the first time; unknown and junk ids are 404s.
    clock.advance(Duration::from_secs(1));
    keys.revoke(&created.id).await.unwrap();
    let again = keys.get(&created.id).await.unwrap().unwrap();
    assert_eq!(again.revoked_at_ms, record.revoked_at_ms);
    for id in ["000000000000", "", "../../etc", &"x".repeat(100_000)] {
        assert!(matches!(keys.revoke(id).await, Err(AuthError::NotFound)));
        assert!(keys.get(id).await.unwrap().is_none());
    }
}

/// Keys with an expiry stop at it, cached or not; none is created expired.
async fn expiry<S: ApiKeyStore>(keys: &ApiKeys<S>, clock: &ManualClock, owner: &str) {
    let created = keys
        .create(NewApiKey {
            expires_at: Some(clock.system_time() + Duration::from_secs(60)),
            ..new_key(owner)
        })
        .await
        .unwrap();
    let key = created.key.expose();
    let identity = keys.verify(key).await.unwrap();
    assert_eq!(identity.expires_at(), Some(clock.unix_ms() / 1000 + 60));
    clock.advance(Duration::from_secs(59));
    keys.verify(key).await.unwrap();
    clock.advance(Duration::from_secs(2));
    assert_invalid(keys.verify(key).await, "expired");

    let past = keys
        .create(NewApiKey {
            expires_at: Some(clock.system_time() - Duration::from_secs(1)),
            ..new_key(owner)
        })
        .await;
    assert!(
        matches!(past, Err(AuthError::InvalidRequest(_))),
        "{past:?}"
    );
}

/// Malformed keys: refused the same way, no panic.
async fn malformed<S: ApiKeyStore>(keys: &ApiKeys<S>) {
    let good = keys.create(new_key("user:m")).await.unwrap();
    let good = good.key.expose();
    let mut non_ascii = good.clone();
    non_ascii.replace_range(good.len() - 2.., "é");
    let cases = [
        String::new(),
        "eek".into(),
        "eek_".into(),
        format!("Bearer {good}"),
        format!("{good} "),
        "x".repeat(100_000),
        format!("eek_{}", "a".repeat(100_000)),
        non_ascii,
        format!("eek_{}", "é".repeat(28)),
        good.replacen("eek_", "sk_", 1),
        good.replace('_', "-"),
        good.replacen('_', "\0", 1),
        good[..good.len() - 1].to_owned(),
    ];
    for case in &cases {
        assert_invalid(
            keys.verify(case).await,
            &format!("malformed {:?}", &case[..case.len().min(40)]),
        );
    }
}

/// `list` shows an owner's keys (revoked and expired ones too), and only theirs.
async fn listing<S: ApiKeyStore>(keys: &ApiKeys<S>, owner: &str, live_id: &str) {
    let listed = keys.list(owner).await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}"); // live, revoked, expired
    assert!(listed.iter().all(|r| r.owner == owner));
    assert!(listed.iter().any(|r| r.id == live_id && !r.is_revoked()));
    assert_eq!(listed.iter().filter(|r| r.is_revoked()).count(), 1);
    assert!(keys.list(&unique("user:nobody")).await.unwrap().is_empty());
    assert!(matches!(
        keys.list(&"o".repeat(10_000)).await,
        Err(AuthError::InvalidRequest(_))
    ));
}

/// Concurrent creates draw distinct ids; concurrent verifies all pass.
async fn concurrency<S: ApiKeyStore>(keys: &ApiKeys<S>, owner: &str) {
    let owner = format!("{owner}-many");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (keys, owner) = (keys.clone(), owner.clone());
        tasks.spawn(async move {
            let created = keys.create(new_key(&owner)).await.unwrap();
            keys.verify(created.key.expose()).await.unwrap();
            created.id
        });
    }
    let mut ids = tasks.join_all().await;
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    assert_eq!(keys.list(&owner).await.unwrap().len(), 20);
}

#[tokio::test]
async fn memory_store_behaviour() {
    let store = AnyApiKeyStore::from(MemoryApiKeys::new());
    behaviour(store).await;
}

async fn redis_store() -> RedisApiKeys {
    let conn = RedisConn::connect(&RedisConfig::standalone("redis://127.0.0.1:6379"))
        .await
        .expect("Redis at 127.0.0.1:6379 (`./scripts/test` starts one, or `redis-server`)");
    RedisApiKeys::new(conn).with_key_space(KeySpace::new(&unique("auth-test")))
}

#[tokio::test]
async fn redis_store_behaviour() {
    let store = redis_store().await;
    let (id, key) = behaviour(store.clone()).await;
    // What Redis holds: hash fields, the secret only as its SHA-256.
    let conn = RedisConn::connect(&RedisConfig::default()).await.unwrap();
    let fields: Vec<String> = conn
        .query(redis::cmd("HGETALL").arg(store.record_key(&id)))
        .await
        .unwrap();
    assert!(!fields.is_empty());
    assert!(fields.iter().all(|f| !f.contains(secret_of(&key))));
    let hex: String = Sha256::digest(secret_of(&key))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(fields.contains(&hex), "{fields:?}");
}

async fn sql_behaviour(db: Database) {
    let store = DbApiKeys::new(db.clone());
    store.ensure_schema().await.unwrap();
    store.ensure_schema().await.unwrap(); // idempotent
    let (id, key) = behaviour(AnyApiKeyStore::from(store)).await;
    let row = db
        .query_one(
            "SELECT id, hash, owner, name, scopes, roles, tenant FROM ee_auth_api_keys WHERE id = $1",
            params![id.as_str()],
        )
        .await
        .unwrap();
    let columns: Vec<Option<String>> = (0..7).map(|i| row.get(i).unwrap()).collect();
    assert!(
        columns
            .iter()
            .flatten()
            .all(|c| !c.contains(secret_of(&key)))
    );
    let hex: String = Sha256::digest(secret_of(&key))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(columns[1].as_deref(), Some(hex.as_str()));
}

#[tokio::test]
async fn postgres_store_behaviour() {
    let pg = Postgres::connect().await;
    sql_behaviour(Database::open(pg.url()).await.unwrap()).await;
}

#[tokio::test]
async fn sqlite_store_behaviour() {
    sql_behaviour(Database::open("sqlite::memory:").await.unwrap()).await;
}

#[tokio::test]
async fn sqlite_file_keeps_keys_across_reopen() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("ee-auth-keys")));
    let url = format!("sqlite://{}", path.display());
    let key = {
        let store = DbApiKeys::new(Database::open(&url).await.unwrap());
        store.ensure_schema().await.unwrap();
        let keys = ApiKeys::new(store);
        keys.create(new_key("user:file")).await.unwrap().key
    };
    let keys = ApiKeys::new(DbApiKeys::new(Database::open(&url).await.unwrap()));
    assert_eq!(keys.verify(key.expose()).await.unwrap().id(), "user:file");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// A stopped Redis: verification and creation fail closed with a 503
/// problem; a key never seen is never let through.
#[tokio::test]
async fn redis_outage_fails_closed() {
    let mut server = RedisServer::start();
    let conn = RedisConn::connect(
        &RedisConfig::standalone(server.url()).with_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let store = RedisApiKeys::new(conn);
    let uncached = ApiKeys::new(store.clone())
        .config(&ApiKeyConfig {
            cache_ttl_ms: 0,
            ..ApiKeyConfig::default()
        })
        .unwrap();
    let cached = ApiKeys::new(store);
    let key = uncached.create(new_key("user:o")).await.unwrap().key;
    let fresh = uncached.create(new_key("user:o")).await.unwrap().key;
    uncached.verify(key.expose()).await.unwrap();
    cached.verify(key.expose()).await.unwrap();

    server.stop();
    for result in [
        uncached.verify(key.expose()).await,
        uncached.verify(fresh.expose()).await,
        cached.verify(fresh.expose()).await,
        uncached.verify(&with_wrong_secret(key.expose())).await,
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, AuthError::Unavailable { .. }), "{err:?}");
        let problem = Problem::from(err);
        assert_eq!(problem.status(), 503);
        assert_eq!(problem.type_uri(), PROBLEM_UNAVAILABLE);
        assert!(problem.retry_after().is_some());
    }
    // A key verified within the cache TTL still verifies (the documented cache).
    assert!(cached.verify(key.expose()).await.is_ok());
    // Malformed keys are refused without the store: still a 401.
    assert_invalid(cached.verify("eek_nope").await, "malformed during outage");
    let err = uncached.create(new_key("user:o")).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable { .. }), "{err:?}");
    assert!(matches!(
        uncached.list("user:o").await,
        Err(AuthError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn invalid_key_is_a_401_problem_with_a_challenge() {
    let keys = ApiKeys::new(MemoryApiKeys::new());
    let problem = Problem::from(keys.verify("eek_x").await.unwrap_err());
    assert_eq!(problem.status(), 401);
    assert_eq!(problem.type_uri(), PROBLEM_INVALID_TOKEN);
    let challenge = problem.headers()[http::header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(challenge.contains("invalid_token"), "{challenge}");
}

/// A memory store counts get calls: what reaches the store and what does not.
#[derive(Clone, Default)]
struct Counting {
    inner: MemoryApiKeys,
    gets: Arc<AtomicUsize>,
}

impl ApiKeyStore for Counting {
    async fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>, AuthError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(id).await
    }
    async fn insert(&self, record: &ApiKeyRecord) -> Result<Inserted, AuthError> {
        self.inner.insert(record).await
    }
    async fn revoke(&self, id: &str, at_ms: u64) -> Result<(), AuthError> {
        self.inner.revoke(id, at_ms).await
    }
    async fn list(&self, owner: &str) -> Result<Vec<ApiKeyRecord>, AuthError> {
        self.inner.list(owner).await
    }
    async fn touch(&self, id: &str, at_ms: u64) -> Result<(), AuthError> {
        self.inner.touch(id, at_ms).await
    }
}

/// Malformed keys never reach the store; unknown ids, wrong secrets, revoked
/// and expired keys all do the same one lookup (and the same hashing);
/// made-up keys never enter the cache however many are sent.
#[tokio::test]
async fn store_access_and_cache_bound_under_a_flood() {
    let store = Counting::default();
    let clock = ManualClock::new();
    let keys = ApiKeys::new(store.clone()).with_clock(clock.clone());
    let gets = || store.gets.load(Ordering::Relaxed);

    for junk in ["", "eek_", &"x".repeat(100_000), "eek_é", "sk_live_x"] {
        assert_invalid(keys.verify(junk).await, "junk");
    }
    assert_eq!(gets(), 0);

    let live = keys.create(new_key("user:f")).await.unwrap();
    let revoked = keys.create(new_key("user:f")).await.unwrap();
    keys.revoke(&revoked.id).await.unwrap();
    let expiring = keys
        .create(NewApiKey {
            expires_at: Some(clock.system_time() + Duration::from_secs(1)),
            ..new_key("user:f")
        })
        .await
        .unwrap();
    clock.advance(Duration::from_secs(2));
    let before = gets();
    for failing in [
        with_id(live.key.expose(), "eek", "zzzzzzzzzzzz"),
        with_wrong_secret(live.key.expose()),
        revoked.key.expose().clone(),
        expiring.key.expose().clone(),
    ] {
        assert_invalid(keys.verify(&failing).await, "one lookup each");
    }
    assert_eq!(gets() - before, 4);

    // 5 000 made-up well-formed keys: each one lookup, none cached.
    let before = gets();
    for i in 0..5_000u32 {
        let id = format!("{i:0>12}");
        assert_invalid(
            keys.verify(&with_id(live.key.expose(), "eek", &id)).await,
            "flood",
        );
    }
    assert_eq!(gets() - before, 5_000);
    assert_eq!(keys.cached_keys(), 0);
    keys.verify(live.key.expose()).await.unwrap();
    assert_eq!(keys.cached_keys(), 1);
}

#[tokio::test]
async fn the_cache_holds_at_most_its_capacity() {
    let keys = ApiKeys::new(MemoryApiKeys::new())
        .config(&ApiKeyConfig {
            cache_capacity: 3,
            ..ApiKeyConfig::default()
        })
        .unwrap();
    let mut created = Vec::new();
    for _ in 0..6 {
        created.push(keys.create(new_key("user:c")).await.unwrap());
    }
    for _ in 0..2 {
        for c in &created {
            keys.verify(c.key.expose()).await.unwrap();
        }
    }
    assert_eq!(keys.cached_keys(), 3);
}

#[tokio::test]
async fn a_full_memory_store_says_so() {
    let store = MemoryApiKeys::new()
        .config(&ApiKeyConfig {
            max_keys: 2,
            ..ApiKeyConfig::default()
        })
        .unwrap();
    let keys = ApiKeys::new(store.clone());
    let first = keys.create(new_key("user:full")).await.unwrap();
    keys.create(new_key("user:full")).await.unwrap();
    let err = keys.create(new_key("user:full")).await.unwrap_err();
    match &err {
        AuthError::Limit(msg) => assert!(msg.contains("max_keys"), "{msg}"),
        other => panic!("expected Limit, got {other:?}"),
    }
    assert_eq!(Problem::from(err).status(), 500);
    assert_eq!(store.len(), 2);
    // A revoked key makes room.
    keys.revoke(&first.id).await.unwrap();
    let third = keys.create(new_key("user:full")).await.unwrap();
    assert_eq!(store.len(), 2);
    keys.verify(third.key.expose()).await.unwrap();
}

#[tokio::test]
async fn a_custom_prefix() {
    let keys = ApiKeys::new(MemoryApiKeys::new())
        .config(&ApiKeyConfig {
            prefix: "sk_live".into(),
            ..ApiKeyConfig::default()
        })
        .unwrap();
    assert_eq!(keys.prefix(), "sk_live");
    let key = keys.create(new_key("user:p")).await.unwrap().key;
    assert!(key.expose().starts_with("sk_live_"));
    assert!(keys.recognizes(key.expose()) && !keys.recognizes("eek_x"));
    assert_eq!(keys.verify(key.expose()).await.unwrap().id(), "user:p");
    // The same key under another prefix is malformed.
    let moved = key.expose().replacen("sk_live_", "sk_test_", 1);
    assert_invalid(keys.verify(&moved).await, "other prefix");
}

#[test]
fn configuration_refuses_what_cannot_work() {
    let build = |cfg: ApiKeyConfig| ApiKeys::new(MemoryApiKeys::new()).config(&cfg);
    for policy in [OnBackendError::FailOpen, OnBackendError::FallbackToMemory] {
        let err = build(ApiKeyConfig {
            on_backend_error: policy,
            ..ApiKeyConfig::default()
        })
        .unwrap_err();
        assert!(
            matches!(&err, AuthError::Config(m) if m.contains("fail_closed")),
            "{err}"
        );
    }
    for bad in [
        ApiKeyConfig {
            prefix: "sk-live".into(),
            ..ApiKeyConfig::default()
        },
        ApiKeyConfig {
            prefix: String::new(),
            ..ApiKeyConfig::default()
        },
        ApiKeyConfig {
            cache_ttl_ms: 3_600_000,
            ..ApiKeyConfig::default()
        },
        ApiKeyConfig {
            max_keys: 0,
            ..ApiKeyConfig::default()
        },
    ] {
        assert!(matches!(build(bad), Err(AuthError::Config(_))));
    }
    let cfg: ApiKeyConfig =
        serde_json::from_str(r#"{ "prefix": "sk_live", "cache_ttl_ms": 0 }"#).unwrap();
    assert!(build(cfg).is_ok());
    assert!(serde_json::from_str::<ApiKeyConfig>(r#"{ "prefx": "x" }"#).is_err());
    assert_eq!(
        serde_json::from_str::<ApiKeyConfig>("{}").unwrap(),
        ApiKeyConfig::default()
    );
}

#[tokio::test]
async fn creation_input_is_bounded() {
    let keys = ApiKeys::new(MemoryApiKeys::new());
    let cases = [
        NewApiKey::default(),
        new_key(&"o".repeat(257)),
        new_key("user:\u{0}"),
        NewApiKey {
            scopes: vec!["s".into(); 65],
            ..new_key("user:b")
        },
        NewApiKey {
            roles: vec![String::new()],
            ..new_key("user:b")
        },
        NewApiKey {
            tenant: Some("t".repeat(129)),
            ..new_key("user:b")
        },
        NewApiKey {
            name: "n".repeat(257),
            ..new_key("user:b")
        },
    ];
    for case in cases {
        let result = keys.create(case).await;
        assert!(
            matches!(result, Err(AuthError::InvalidRequest(_))),
            "{result:?}"
        );
    }
}
