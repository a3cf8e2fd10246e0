//! Refresh-token families: rotation, reuse detection, expiry, bounds,
//! concurrency and outages, on the memory store and on real Redis.

use std::time::Duration;

use ee_auth::{
    AnyRefreshStore, AuthError, METRIC_REFRESH_REUSE_TOTAL, MemoryRefreshStore, RefreshConfig,
    RefreshStore, RefreshTokens,
};
use ee_core::{RedisConfig, RedisConn, Secret};
use ee_testing::{ManualClock, RedisServer};
use metrics_util::debugging::DebuggingRecorder;

const REDIS: &str = "redis://127.0.0.1:6379";

async fn redis() -> RedisConn {
    RedisConn::connect(&RedisConfig::standalone(REDIS))
        .await
        .expect("these tests need Redis at 127.0.0.1:6379 (`redis-server --port 6379`)")
}

async fn redis_store() -> AnyRefreshStore {
    ee_auth::RedisRefreshStore::new(redis().await).into()
}

fn memory_store() -> AnyRefreshStore {
    MemoryRefreshStore::new().into()
}

fn is_invalid(result: Result<ee_auth::Rotated, AuthError>) -> bool {
    matches!(result, Err(AuthError::InvalidToken(_)))
}

/// Rotation, then reuse of a rotated token: the family is revoked.
async fn rotate_and_reuse<S: RefreshStore>(refresh: &RefreshTokens<S, ManualClock>) {
    let first = refresh.issue("user:42").await.unwrap();
    assert_eq!(
        first.token.expose().len(),
        22 + 1 + 43,
        "≥ 256 bits of secret"
    );
    let second = refresh.rotate(&first.token).await.unwrap();
    assert_eq!(second.subject, "user:42");
    assert_eq!(second.family, first.family);
    assert_eq!(second.generation, 1);
    assert_ne!(second.token.expose(), first.token.expose());
    let third = refresh.rotate(&second.token).await.unwrap();
    assert_eq!(third.generation, 2);
    assert_eq!(
        third.expires_at, first.expires_at,
        "the absolute lifetime does not move"
    );

    // The first token again: reuse. The family is revoked, the newest token too.
    let reused = refresh.rotate(&first.token).await.unwrap_err();
    assert!(reused.to_string().contains("reused"), "{reused}");
    assert!(is_invalid(refresh.rotate(&third.token).await));
    assert!(is_invalid(refresh.rotate(&second.token).await));
}

/// Garbage, forged secrets and unknown families change nothing.
async fn bad_tokens_change_nothing<S: RefreshStore>(refresh: &RefreshTokens<S, ManualClock>) {
    let issued = refresh.issue("user:1").await.unwrap();
    let family = issued.token.expose().split('.').next().unwrap().to_owned();
    let forged = Secret::new(format!("{family}.{}", "A".repeat(43)));
    for bad in [
        Secret::new(String::new()),
        Secret::new("not-a-token".to_owned()),
        Secret::new(format!("{family}.{}", "!".repeat(43))),
        forged,
        Secret::new(format!("{}.{}", "B".repeat(22), "A".repeat(43))),
    ] {
        assert!(is_invalid(refresh.rotate(&bad).await));
    }
    // The genuine token still rotates: a forged secret did not revoke anything.
    refresh.rotate(&issued.token).await.unwrap();
}

/// Absolute and idle lifetimes.
async fn families_expire<S: RefreshStore>(
    refresh: RefreshTokens<S, ManualClock>,
    clock: &ManualClock,
) {
    let refresh = refresh
        .absolute_ttl(Duration::from_secs(100))
        .idle_ttl(Duration::from_secs(30));
    // Idle: 29 s between rotations is fine, 30 s is not.
    let issued = refresh.issue("user:idle").await.unwrap();
    clock.advance(Duration::from_secs(29));
    let next = refresh.rotate(&issued.token).await.unwrap();
    clock.advance(Duration::from_secs(30));
    let expired = refresh.rotate(&next.token).await.unwrap_err();
    assert!(matches!(expired, AuthError::InvalidToken(_)), "{expired}");

    // Absolute: rotating every 20 s does not keep a family past 100 s.
    let issued = refresh.issue("user:abs").await.unwrap();
    let mut token = issued.token;
    for _ in 0..4 {
        clock.advance(Duration::from_secs(20));
        token = refresh.rotate(&token).await.unwrap().token;
    }
    clock.advance(Duration::from_secs(20));
    assert!(is_invalid(refresh.rotate(&token).await));
}

/// Logout: a revoked family rotates no more.
async fn revoke_family<S: RefreshStore>(refresh: &RefreshTokens<S, ManualClock>) {
    let issued = refresh.issue("user:out").await.unwrap();
    assert!(refresh.revoke_family(&issued.family).await.unwrap());
    assert!(is_invalid(refresh.rotate(&issued.token).await));
    assert!(!refresh.revoke_family("no-such-family").await.unwrap());
    assert!(!refresh.revoke_family(&"C".repeat(22)).await.unwrap());
}

fn tokens(
    store: AnyRefreshStore,
    clock: &ManualClock,
) -> RefreshTokens<AnyRefreshStore, ManualClock> {
    RefreshTokens::new(store).clock(clock.clone())
}

#[tokio::test]
async fn memory_rotation_reuse_expiry_and_logout() {
    let clock = ManualClock::new();
    rotate_and_reuse(&tokens(memory_store(), &clock)).await;
    bad_tokens_change_nothing(&tokens(memory_store(), &clock)).await;
    families_expire(tokens(memory_store(), &clock), &clock).await;
    revoke_family(&tokens(memory_store(), &clock)).await;
}

#[tokio::test]
async fn redis_rotation_reuse_expiry_and_logout() {
    let clock = ManualClock::new();
    rotate_and_reuse(&tokens(redis_store().await, &clock)).await;
    bad_tokens_change_nothing(&tokens(redis_store().await, &clock)).await;
    families_expire(tokens(redis_store().await, &clock), &clock).await;
    revoke_family(&tokens(redis_store().await, &clock)).await;
}

#[tokio::test]
async fn reuse_is_counted_and_logged_without_the_token() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let refresh =
        metrics::with_local_recorder(&recorder, || RefreshTokens::new(MemoryRefreshStore::new()));
    let logs = ee_testing::capture_logs();
    let first = refresh.issue("user:7").await.unwrap();
    refresh.rotate(&first.token).await.unwrap();
    assert!(refresh.rotate(&first.token).await.is_err());
    let counters = ee_testing::counters(&snapshotter);
    assert_eq!(counters.sum(METRIC_REFRESH_REUSE_TOTAL), 1);
    let text = logs.text();
    assert!(
        text.contains("refresh token reused") && text.contains(&first.family),
        "{text}"
    );
    let secret = first.token.expose().split('.').nth(1).unwrap();
    assert!(!text.contains(secret), "the token is never logged");
}

#[tokio::test]
async fn only_hashes_are_stored_in_redis_and_every_key_expires() {
    let conn = redis().await;
    let refresh = RefreshTokens::new(ee_auth::RedisRefreshStore::new(conn.clone()))
        .config(&RefreshConfig::default())
        .unwrap();
    let issued = refresh.issue("user:9").await.unwrap();
    let rotated = refresh.rotate(&issued.token).await.unwrap();
    let key = format!("ee:auth:{{{}}}:refresh", issued.family);
    let stored: Vec<String> = conn.query(redis::cmd("HGETALL").arg(&key)).await.unwrap();
    let dump = stored.join(" ");
    for token in [&issued.token, &rotated.token] {
        let secret = token.expose().split('.').nth(1).unwrap();
        assert!(!dump.contains(secret) && !dump.contains(token.expose().as_str()));
    }
    let hex = |t: &Secret<String>| {
        let sha: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
            <sha2::Sha256 as sha2::Digest>::new(),
            t.expose().as_bytes(),
        ))
        .into();
        sha.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert!(
        dump.contains(&hex(&rotated.token)),
        "the current token's hash is stored"
    );
    let ttl: i64 = conn.query(redis::cmd("PTTL").arg(&key)).await.unwrap();
    // The idle lifetime (7 days) bounds the key.
    assert!(ttl > 0 && ttl <= 7 * 24 * 3600 * 1000, "{ttl}");
}

/// N rotations of one token at once: exactly one wins, the others are reuse,
/// so the family ends revoked and the winner's token fails too.
async fn concurrent_rotation(store: AnyRefreshStore) {
    let refresh = RefreshTokens::new(store);
    let issued = refresh.issue("user:race").await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let refresh = refresh.clone();
            let token = issued.token.clone();
            tokio::spawn(async move { refresh.rotate(&token).await })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(rotated) => winners.push(rotated),
            Err(AuthError::InvalidToken(_)) => losers += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one rotation wins");
    assert_eq!(losers, 7);
    assert!(is_invalid(refresh.rotate(&winners[0].token).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_on_redis_one_wins_the_rest_are_reuse() {
    concurrent_rotation(redis_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_in_memory_one_wins_the_rest_are_reuse() {
    concurrent_rotation(memory_store()).await;
}

#[tokio::test]
async fn a_flood_of_logins_cannot_grow_the_memory_store_past_its_bound() {
    let mut cfg = RefreshConfig::default();
    cfg.max_families = 100;
    let store = MemoryRefreshStore::new().config(&cfg).unwrap();
    let clock = ManualClock::new();
    let refresh = RefreshTokens::new(store.clone()).clock(clock.clone());
    let oldest = refresh.issue("user:0").await.unwrap();
    clock.advance(Duration::from_secs(1));
    let mut last = None;
    for i in 1..1000 {
        last = Some(refresh.issue(&format!("user:{i}")).await.unwrap());
        assert!(store.len() <= 100);
    }
    assert_eq!(store.len(), 100);
    // The longest idle went first; the newest still rotates.
    assert!(is_invalid(refresh.rotate(&oldest.token).await));
    refresh.rotate(&last.unwrap().token).await.unwrap();
    cfg.max_families = 0;
    assert!(MemoryRefreshStore::new().config(&cfg).is_err());
}

#[tokio::test]
async fn subjects_are_bounded() {
    let refresh = RefreshTokens::new(MemoryRefreshStore::new());
    assert!(refresh.issue("").await.is_err());
    assert!(refresh.issue(&"x".repeat(1025)).await.is_err());
    let mut cfg = RefreshConfig::default();
    cfg.idle_ttl_secs = 0;
    assert!(
        RefreshTokens::new(MemoryRefreshStore::new())
            .config(&cfg)
            .is_err()
    );
}

#[tokio::test]
async fn a_stopped_redis_is_unavailable_not_invalid() {
    let mut server = RedisServer::start();
    let conn = RedisConn::connect(
        &RedisConfig::standalone(server.url()).with_timeout(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let refresh = RefreshTokens::new(ee_auth::RedisRefreshStore::new(conn));
    let issued = refresh.issue("user:down").await.unwrap();
    server.stop();
    let rotate = refresh.rotate(&issued.token).await.unwrap_err();
    assert!(matches!(rotate, AuthError::Unavailable { .. }), "{rotate}");
    let issue = refresh.issue("user:down").await.unwrap_err();
    assert!(matches!(issue, AuthError::Unavailable { .. }), "{issue}");
    assert!(matches!(
        refresh.revoke_family(&issued.family).await,
        Err(AuthError::Unavailable { .. })
    ));
    assert_eq!(
        ee_core::Problem::from(rotate).status(),
        http::StatusCode::SERVICE_UNAVAILABLE
    );
}

/// A client-sent token of the right length in bytes but not ASCII (a multi-byte
/// character across the family/secret boundary) is malformed, not a panic.
#[tokio::test]
async fn a_non_ascii_token_is_malformed_not_a_panic() {
    let refresh = RefreshTokens::new(MemoryRefreshStore::new());
    let mut token = "a".repeat(21);
    token.push('é'); // bytes 21 and 22: the split point is inside it
    token.push_str(&"b".repeat(66 - token.len()));
    assert_eq!(token.len(), 66);
    let err = refresh.rotate(&Secret::new(token)).await.unwrap_err();
    assert!(
        matches!(err, ee_auth::AuthError::InvalidToken(_)),
        "{err:?}"
    );
}
