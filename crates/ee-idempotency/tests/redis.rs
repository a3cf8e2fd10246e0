//! The Redis store against real servers: one execution for 100 concurrent
//! twins across instances (standalone and Cluster), round trips per request,
//! TTLs, an expired lease, and both outage policies with Redis stopped.
#![cfg(feature = "redis")]

mod common;

use std::time::{Duration, Instant};

use common::{Counting, post, send};
use ee_core::{OnBackendError, RedisConfig, RedisConn};
use ee_idempotency::{Begin, IdempotencyConfig, IdempotencyLayer, IdempotencyStore, RedisStore};
use ee_testing::{RedisCluster, RedisServer, Reply};
use tower::{Layer, ServiceExt};

async fn store(config: RedisConfig) -> RedisStore {
    RedisStore::new(
        RedisConn::connect(&config.with_timeout(Duration::from_millis(500)))
            .await
            .unwrap(),
    )
}

/// 100 identical requests at once, spread over 4 instances sharing `stores`.
async fn twins(stores: Vec<RedisStore>, handler: &Counting, key: &str) -> Vec<u16> {
    let layers: Vec<_> = stores.into_iter().map(IdempotencyLayer::new).collect();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let svc = layers[i % layers.len()].layer(handler.service());
            let req = post("/pay", Some(key), "{\"amount\":10}");
            tokio::spawn(async move { svc.oneshot(req).await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses
}

#[tokio::test]
async fn a_hundred_twins_across_four_instances_run_once() {
    let server = RedisServer::start();
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(store(RedisConfig::standalone(server.url())).await);
    }
    let handler = Counting::default();
    let statuses = twins(stores.clone(), &handler, "pay-1").await;
    assert_eq!(handler.runs(), 1);
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert!(statuses.contains(&201));
    // Afterwards every retry is a replay.
    let layer = IdempotencyLayer::new(stores[0].clone());
    let res = send(
        &layer,
        &handler,
        post("/pay", Some("pay-1"), "{\"amount\":10}"),
    )
    .await;
    assert_eq!(res.header("idempotent-replayed"), Some("true"));
    assert_eq!(res.text(), "run 1: {\"amount\":10}");
    // The record has the 24 h retention.
    // One record, under the default scope: method, path, (no) subject, key.
    let Reply::Array(Some(keys)) = server.command(&["KEYS", "ee:idempotency:*"]) else {
        panic!()
    };
    let [Reply::Bulk(Some(record))] = keys.as_slice() else {
        panic!("{keys:?}")
    };
    let record = String::from_utf8(record.clone()).unwrap();
    assert!(
        record.starts_with("ee:idempotency:POST:") && record.ends_with(":pay-1"),
        "{record}"
    );
    let Reply::Integer(ttl) = server.command(&["PTTL", &record]) else {
        panic!()
    };
    assert!(ttl > 23 * 3600 * 1000 && ttl <= 24 * 3600 * 1000, "{ttl}");
}

#[tokio::test]
async fn a_hundred_twins_on_a_three_node_cluster_run_once() {
    let cluster = RedisCluster::start(3);
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(store(RedisConfig::cluster(cluster.urls())).await);
    }
    let handler = Counting::default();
    for (i, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let statuses = twins(stores.clone(), &handler, key).await;
        assert_eq!(handler.runs(), i + 1, "{key}");
        assert!(
            statuses.iter().all(|s| *s == 201 || *s == 409),
            "{statuses:?}"
        );
    }
}

fn evalsha_calls(server: &RedisServer) -> u64 {
    let info = server.command(&["INFO", "commandstats"]).as_text().unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[tokio::test]
async fn round_trips_first_request_two_replay_one() {
    let server = RedisServer::start();
    let layer = IdempotencyLayer::new(store(RedisConfig::standalone(server.url())).await);
    let handler = Counting::default();
    // Warm the script cache.
    send(&layer, &handler, post("/o", Some("warm"), "")).await;
    send(&layer, &handler, post("/o", Some("warm"), "")).await;
    server.command(&["CONFIG", "RESETSTAT"]);
    send(&layer, &handler, post("/o", Some("r"), "")).await;
    assert_eq!(evalsha_calls(&server), 2, "begin + complete");
    server.command(&["CONFIG", "RESETSTAT"]);
    send(&layer, &handler, post("/o", Some("r"), "")).await;
    assert_eq!(evalsha_calls(&server), 1, "a replay is one read");
}

#[tokio::test]
async fn an_abandoned_lease_expires_in_redis() {
    let server = RedisServer::start();
    let store = store(RedisConfig::standalone(server.url())).await;
    let fp = [3; 32];
    assert_eq!(
        store
            .begin("k", &fp, 1, Duration::from_millis(300))
            .await
            .unwrap(),
        Begin::Acquired
    );
    let Reply::Integer(ttl) = server.command(&["PTTL", "k"]) else {
        panic!()
    };
    assert!(ttl > 0 && ttl <= 300);
    assert!(matches!(
        store
            .begin("k", &fp, 2, Duration::from_secs(5))
            .await
            .unwrap(),
        Begin::InFlight { .. }
    ));
    // A stale holder can neither complete nor release a key it no longer holds.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if store
            .begin("k", &fp, 3, Duration::from_secs(5))
            .await
            .unwrap()
            == Begin::Acquired
        {
            break;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.release("k", 1).await.unwrap();
    assert!(
        matches!(
            store
                .begin("k", &fp, 4, Duration::from_secs(5))
                .await
                .unwrap(),
            Begin::InFlight { .. }
        ),
        "holder 3 still holds it"
    );
}

#[tokio::test]
async fn a_handler_slower_than_the_lease_keeps_its_key() {
    let server = RedisServer::start();
    let layer = IdempotencyLayer::new(store(RedisConfig::standalone(server.url())).await)
        .config(&IdempotencyConfig {
            lease_ms: 600,
            ..IdempotencyConfig::default()
        })
        .unwrap();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let handler = Counting {
        gate: Some(gate.clone()),
        ..Counting::default()
    };
    let svc = layer.layer(handler.service());
    let slow = tokio::spawn(svc.clone().oneshot(post("/pay", Some("slow"), "1")));
    while handler.runs() == 0 {
        tokio::task::yield_now().await;
    }
    // 2.5 leases later the first request still holds the key (renewed).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let twin = svc
        .clone()
        .oneshot(post("/pay", Some("slow"), "1"))
        .await
        .unwrap();
    assert_eq!(twin.status(), 409, "the key was renewed, not lost");
    gate.add_permits(10);
    assert_eq!(slow.await.unwrap().unwrap().status(), 201);
    assert_eq!(handler.runs(), 1);
    let replay = send(&layer, &handler, post("/pay", Some("slow"), "1")).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn outage_policies_with_redis_stopped() {
    let mut server = RedisServer::start();
    let closed = IdempotencyLayer::new(store(RedisConfig::standalone(server.url())).await);
    let open = IdempotencyLayer::new(store(RedisConfig::standalone(server.url())).await)
        .config(&IdempotencyConfig {
            on_backend_error: OnBackendError::FailOpen,
            ..IdempotencyConfig::default()
        })
        .unwrap();
    let handler = Counting::default();
    send(&closed, &handler, post("/o", Some("x"), "")).await;
    server.stop();
    let res = send(&closed, &handler, post("/o", Some("y"), "")).await;
    assert_eq!(res.status, 503);
    assert_eq!(
        res.problem().type_uri(),
        "https://ee.rs/problems/idempotency/unavailable"
    );
    assert_eq!(res.header("retry-after"), Some("1"));
    assert_eq!(handler.runs(), 1, "fail closed: nothing ran");
    let res = send(&open, &handler, post("/o", Some("y"), "")).await;
    assert_eq!(res.status, 201, "fail open: runs without the guarantee");
    assert_eq!(handler.runs(), 2);

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = send(&closed, &handler, post("/o", Some("z"), "")).await;
        if res.status == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let res = send(&closed, &handler, post("/o", Some("z"), "")).await;
    assert_eq!(res.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn falling_back_to_memory_with_redis_stopped_keeps_the_guarantee_in_this_instance() {
    use ee_idempotency::AnyStore;

    let mut server = RedisServer::start();
    let fallback = IdempotencyLayer::new(store(RedisConfig::standalone(server.url())).await)
        .config(&IdempotencyConfig {
            on_backend_error: OnBackendError::FallbackToMemory,
            ..IdempotencyConfig::default()
        })
        .unwrap();
    // Another instance on the same Redis (fail closed, the default), its
    // store picked at run time.
    let redis: AnyStore = store(RedisConfig::standalone(server.url())).await.into();
    let peer = IdempotencyLayer::new(redis);
    let handler = Counting::default();
    assert_eq!(
        send(&fallback, &handler, post("/o", Some("x"), ""))
            .await
            .status,
        201
    );
    let replayed = send(&peer, &handler, post("/o", Some("x"), "")).await;
    assert_eq!(
        replayed.header("idempotent-replayed"),
        Some("true"),
        "on Redis"
    );

    server.stop();
    let res = send(&fallback, &handler, post("/o", Some("y"), "1")).await;
    assert_eq!(res.status, 201, "runs, its key held in memory");
    assert_eq!(handler.runs(), 2);
    let retry = send(&fallback, &handler, post("/o", Some("y"), "1")).await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.text(), res.text());
    let other = send(&fallback, &handler, post("/o", Some("y"), "2")).await;
    assert_eq!(other.status, 422, "another payload under the same key");
    assert_eq!(handler.runs(), 2, "the retries did not run");
    let closed = send(&peer, &handler, post("/o", Some("y"), "1")).await;
    assert_eq!(closed.status, 503, "the other instance fails closed");

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while send(&peer, &handler, post("/o", Some("probe"), ""))
        .await
        .status
        != 201
    {
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let runs = handler.runs();
    // A key taken in memory during the outage is still answered from memory.
    let retry = send(&fallback, &handler, post("/o", Some("y"), "1")).await;
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    // New keys go to Redis again: the other instance sees them.
    assert_eq!(
        send(&fallback, &handler, post("/o", Some("w"), ""))
            .await
            .status,
        201
    );
    let seen = send(&peer, &handler, post("/o", Some("w"), "")).await;
    assert_eq!(seen.header("idempotent-replayed"), Some("true"));
    assert_eq!(handler.runs(), runs + 1);
}
