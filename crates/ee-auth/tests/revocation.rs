//! The revocation list: local answers, bounds, expiry, propagation between
//! instances through real Redis, outages; and `Issuer::logout`.

use std::time::{Duration, Instant};

use ee_auth::{
    AuthError, Grant, Issuer, Logout, MemoryRefreshStore, RefreshTokens, RevocationCheck,
    RevocationConfig, RevocationList, SigningAlgorithm, SigningKeys, TokenIssuer,
};
use ee_core::{Clock, RedisConfig, RedisConn};
use ee_testing::{ManualClock, RedisServer};

const REDIS: &str = "redis://127.0.0.1:6379";

async fn redis() -> RedisConn {
    RedisConn::connect(&RedisConfig::standalone(REDIS))
        .await
        .expect("these tests need Redis at 127.0.0.1:6379 (`redis-server --port 6379`)")
}

/// A namespace no other test (or test run) shares.
fn namespace(test: &str) -> RevocationConfig {
    let mut cfg = RevocationConfig::default();
    cfg.namespace = format!("{test}-{}-{}", std::process::id(), ee_core::unix_ms());
    cfg
}

fn now_secs() -> u64 {
    ee_core::unix_ms() / 1000
}

#[tokio::test]
async fn revoked_ids_are_revoked_until_their_tokens_expire() {
    let clock = ManualClock::new();
    let list = RevocationList::builder().clock(clock.clone()).memory();
    let now = clock.unix_ms() / 1000;
    list.revoke("a", now + 60).await.unwrap();
    assert!(list.is_revoked("a"));
    assert!(!list.is_revoked("b"));
    // An already-expired token needs no entry.
    list.revoke("old", now).await.unwrap();
    assert!(!list.is_revoked("old") && list.len() == 1);
    clock.advance(Duration::from_secs(60));
    assert!(!list.is_revoked("a"), "useless after the token's exp");
    list.purge_expired();
    assert!(list.is_empty());
    // Malformed ids are refused.
    assert!(list.revoke("", now + 600).await.is_err());
    assert!(list.revoke(&"x".repeat(257), now + 600).await.is_err());
    // Through the trait object the verifier holds.
    let check: std::sync::Arc<dyn RevocationCheck> = std::sync::Arc::new(list.clone());
    list.revoke("c", clock.unix_ms() / 1000 + 5).await.unwrap();
    assert!(check.is_revoked("c"));
}

#[tokio::test]
async fn a_token_outliving_max_ttl_is_refused_not_capped() {
    let clock = ManualClock::new();
    let mut cfg = RevocationConfig::default();
    cfg.max_ttl_secs = 100;
    let list = RevocationList::builder()
        .config(&cfg)
        .unwrap()
        .clock(clock.clone())
        .memory();
    // A capped entry would lapse while the token is still valid: refused, naming the setting.
    let err = list
        .revoke("far", clock.unix_ms() / 1000 + 1_000_000)
        .await
        .unwrap_err();
    assert!(matches!(err, ee_auth::AuthError::Limit(_)), "{err:?}");
    assert!(err.to_string().contains("max_ttl_secs"), "{err}");
    assert!(!list.is_revoked("far"));
    // Within the bound: held until the token's exp, then dropped.
    list.revoke("near", clock.unix_ms() / 1000 + 100)
        .await
        .unwrap();
    clock.advance(Duration::from_secs(99));
    assert!(list.is_revoked("near"));
    clock.advance(Duration::from_secs(1));
    assert!(!list.is_revoked("near"));
}

#[tokio::test]
async fn a_flood_of_revocations_is_bounded_and_room_returns_as_tokens_expire() {
    let clock = ManualClock::new();
    let mut cfg = RevocationConfig::default();
    cfg.max_entries = 100;
    let list = RevocationList::builder()
        .config(&cfg)
        .unwrap()
        .clock(clock.clone())
        .memory();
    let now = clock.unix_ms() / 1000;
    for i in 0..100 {
        list.revoke(&format!("jti-{i}"), now + 10).await.unwrap();
    }
    let refused = list.revoke("one-more", now + 10).await.unwrap_err();
    assert!(
        matches!(refused, AuthError::Unavailable { .. }),
        "{refused}"
    );
    assert_eq!(list.len(), 100);
    // Every earlier revocation still holds (nothing was silently evicted).
    assert!((0..100).all(|i| list.is_revoked(&format!("jti-{i}"))));
    // Re-revoking an id already held is fine when full.
    list.revoke("jti-0", now + 20).await.unwrap();
    clock.advance(Duration::from_secs(10));
    list.revoke("one-more", now + 30).await.unwrap();
    assert!(list.is_revoked("one-more") && list.is_revoked("jti-0"));
    assert_eq!(list.len(), 2);
    cfg.max_entries = 0;
    assert!(RevocationList::builder().config(&cfg).is_err());
}

/// Waits (bounded) until `check` holds; the bound is generous, the
/// configured propagation is a quarter of a second.
async fn eventually(what: &str, check: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_propagate_between_instances_through_redis() {
    let cfg = namespace("propagate");
    let conn = redis().await;
    let a = RevocationList::builder()
        .config(&cfg)
        .unwrap()
        .redis(conn.clone())
        .await
        .unwrap();
    let b = RevocationList::builder()
        .config(&cfg)
        .unwrap()
        .redis(conn.clone())
        .await
        .unwrap();
    assert!(a.is_redis() && b.is_redis());
    a.revoke("from-a", now_secs() + 600).await.unwrap();
    assert!(
        a.is_revoked("from-a"),
        "the revoking instance knows at once"
    );
    eventually("b sees a's revocation", || b.is_revoked("from-a")).await;
    b.revoke("from-b", now_secs() + 600).await.unwrap();
    eventually("a sees b's revocation", || a.is_revoked("from-b")).await;

    // A list started later reads the existing revocations before it answers.
    let c = RevocationList::builder()
        .config(&cfg)
        .unwrap()
        .redis(conn.clone())
        .await
        .unwrap();
    assert!(c.is_revoked("from-a") && c.is_revoked("from-b"));
    // Another namespace is another list.
    let other = RevocationList::builder()
        .config(&namespace("other"))
        .unwrap()
        .redis(conn.clone())
        .await
        .unwrap();
    assert!(!other.is_revoked("from-a"));

    // Keys expire with the longest entry.
    let set = format!("ee:auth:{{revoked:{}}}:set", cfg.namespace);
    let ttl: i64 = conn.query(redis::cmd("TTL").arg(&set)).await.unwrap();
    assert!(ttl > 0 && ttl <= 86_400, "{ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_bound_holds_across_instances() {
    let mut cfg = namespace("bound");
    cfg.max_entries = 10;
    let conn = redis().await;
    let a = RevocationList::builder()
        .config(&cfg)
        .unwrap()
        .redis(conn.clone())
        .await
        .unwrap();
    let b = RevocationList::builder()
        .config(&cfg)
        .unwrap()
        .redis(conn.clone())
        .await
        .unwrap();
    for i in 0..5 {
        a.revoke(&format!("a{i}"), now_secs() + 600).await.unwrap();
        b.revoke(&format!("b{i}"), now_secs() + 600).await.unwrap();
    }
    assert!(matches!(
        a.revoke("a-more", now_secs() + 600).await,
        Err(AuthError::Unavailable { .. })
    ));
    eventually("both hold all ten", || {
        (0..5).all(|i| a.is_revoked(&format!("b{i}")) && b.is_revoked(&format!("a{i}")))
    })
    .await;
    assert!(a.len() <= 10 && b.len() <= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_revoke_fails_and_checks_answer_locally_then_converge() {
    let mut server = RedisServer::start();
    let config = RedisConfig::standalone(server.url()).with_timeout(Duration::from_millis(200));
    let cfg = namespace("outage");
    let a = RevocationList::builder()
        .config(&cfg)
        .unwrap()
        .redis(RedisConn::connect(&config).await.unwrap())
        .await
        .unwrap();
    let b = RevocationList::builder()
        .config(&cfg)
        .unwrap()
        .redis(RedisConn::connect(&config).await.unwrap())
        .await
        .unwrap();
    a.revoke("before", now_secs() + 600).await.unwrap();
    eventually("b sees it", || b.is_revoked("before")).await;

    let spare = RedisConn::connect(&config).await.unwrap();
    server.stop();
    let err = a.revoke("during", now_secs() + 600).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable { .. }), "{err}");
    assert!(
        !a.is_revoked("during"),
        "not revoked anywhere, so not locally either"
    );
    // Checks answer from the local copy.
    assert!(a.is_revoked("before") && b.is_revoked("before"));
    // A list cannot start without reading the current list.
    let connect = RevocationList::builder()
        .config(&cfg)
        .unwrap()
        .redis(spare)
        .await;
    assert!(matches!(connect, Err(AuthError::Unavailable { .. })));

    // Redis returns (empty: it had no persistence); new revocations flow again.
    server.restart();
    let start = Instant::now();
    loop {
        match a.revoke("after", now_secs() + 600).await {
            Ok(()) => break,
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("Redis did not come back: {e}"),
        }
    }
    eventually("b sees the revocation made after the outage", || {
        b.is_revoked("after")
    })
    .await;
}

#[tokio::test]
async fn logout_revokes_the_access_token_and_the_refresh_family() {
    let tokens = TokenIssuer::builder()
        .issuer("https://auth.example.com")
        .audience("api")
        .keys(SigningKeys::generate(SigningAlgorithm::EdDSA).unwrap())
        .build()
        .unwrap();
    let issuer = Issuer::new(
        tokens,
        RefreshTokens::new(MemoryRefreshStore::new()),
        RevocationList::builder().memory(),
    );
    let session = issuer.issue_session(&Grant::new("user:1")).await.unwrap();
    assert!(!issuer.revocations().is_revoked(&session.access.jti));
    let rotated = issuer
        .refresh()
        .rotate(&session.refresh.token)
        .await
        .unwrap();
    issuer
        .logout(
            &Logout::access(&session.access.jti, session.access.expires_at)
                .with_refresh_family(&session.refresh.family),
        )
        .await
        .unwrap();
    assert!(issuer.revocations().is_revoked(&session.access.jti));
    assert!(issuer.refresh().rotate(&rotated.token).await.is_err());
}
