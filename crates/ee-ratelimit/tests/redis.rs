//! The Redis store against real servers: exact counts across instances, on a
//! 3-node Cluster too, one round trip per decision, TTLs on every key, and each
//! outage policy with the server stopped mid-test.
#![cfg(feature = "redis")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use common::{from_ip, send};
use ee_core::{OnBackendError, RedisConfig, RedisConn};
use ee_ratelimit::RedisLimiter;
use ee_ratelimit::{MemoryStore, Policy, RateLimitLayer, RedisStore, Rule};
use ee_testing::{RedisCluster, RedisServer, Reply};
use http::{Request, StatusCode};
use tower::{Layer, ServiceExt};

const RULES: [(&str, Rule); 4] = [
    (
        "gcra",
        Rule::Gcra {
            limit: 50,
            period_ms: 3_600_000,
            burst: 50,
        },
    ),
    (
        "fixed",
        Rule::FixedWindow {
            limit: 50,
            window_ms: 3_600_000,
        },
    ),
    (
        "sliding",
        Rule::SlidingWindow {
            limit: 50,
            window_ms: 3_600_000,
        },
    ),
    (
        "bucket",
        Rule::TokenBucket {
            capacity: 50,
            refill: 1,
            period_ms: 3_600_000,
        },
    ),
];

async fn conn(config: RedisConfig) -> RedisConn {
    RedisConn::connect(&config.with_timeout(Duration::from_millis(500)))
        .await
        .unwrap()
}

fn layer(
    conn: &RedisConn,
    name: &str,
    rule: Rule,
    on_error: OnBackendError,
) -> RateLimitLayer<RedisLimiter> {
    RateLimitLayer::builder(RedisStore::new(conn.clone()))
        .policy(Policy::new(name, rule))
        .on_backend_error(on_error)
        .build()
        .unwrap()
}

/// 200 concurrent requests from one client, spread over 4 layer instances
/// (4 connections, as 4 service instances would have); returns how many passed.
async fn hammer(layers: &[RateLimitLayer<RedisLimiter>], ip: &'static str) -> usize {
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let layer = layers[i % layers.len()].clone();
            tokio::spawn(async move { send(&layer, from_ip(ip)).await.status })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    ok
}

#[tokio::test]
async fn exact_counts_across_four_instances_sharing_one_redis() {
    let server = RedisServer::start();
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(conn(RedisConfig::standalone(server.url())).await);
    }
    for (name, rule) in RULES {
        let layers: Vec<_> = conns
            .iter()
            .map(|c| layer(c, name, rule, OnBackendError::FailClosed))
            .collect();
        assert_eq!(hammer(&layers, "192.0.2.1").await, 50, "{name}");
        assert_eq!(
            hammer(&layers, "192.0.2.2").await,
            50,
            "{name}: another client"
        );
    }
}

#[tokio::test]
async fn exact_counts_across_a_three_node_cluster() {
    let cluster = RedisCluster::start(3);
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(conn(RedisConfig::cluster(cluster.urls())).await);
    }
    for (name, rule) in RULES {
        let layers: Vec<_> = conns
            .iter()
            .map(|c| layer(c, name, rule, OnBackendError::FailClosed))
            .collect();
        assert_eq!(hammer(&layers, "192.0.2.1").await, 50, "{name}");
    }
    // Concurrency on the Cluster: its two keys share a slot (hash tag).
    let layers: Vec<_> = conns
        .iter()
        .map(|c| {
            layer(
                c,
                "inflight",
                Rule::concurrency(3),
                OnBackendError::FailClosed,
            )
        })
        .collect();
    let res = send(&layers[0], from_ip("192.0.2.3")).await;
    assert_eq!(res.status, 200);
    // Keys of different clients spread over the nodes.
    let mut owners = std::collections::HashSet::new();
    for i in 0..30 {
        let key = format!("ee:ratelimit:{{gcra:{}:192.0.2.{i}}}", RULES[0].1.id());
        owners.insert(cluster.node_for_key(&key).port());
    }
    assert_eq!(owners.len(), 3);
}

fn command_calls(server: &RedisServer) -> Vec<(String, u64)> {
    let info = server.command(&["INFO", "commandstats"]).as_text().unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            Some((name.to_owned(), rest.split(',').next()?.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn one_round_trip_per_decision_and_a_ttl_on_every_key() {
    let server = RedisServer::start();
    let c = conn(RedisConfig::standalone(server.url())).await;
    let mut layers: Vec<_> = RULES
        .iter()
        .map(|(n, r)| layer(&c, n, *r, OnBackendError::FailClosed))
        .collect();
    layers.push(layer(
        &c,
        "inflight",
        Rule::concurrency(5),
        OnBackendError::FailClosed,
    ));
    // Warm up: the first call of each script loads it (EVALSHA, then EVAL).
    for l in &layers {
        send(l, from_ip("192.0.2.1")).await;
    }
    // Let the concurrency release (sent in the background) land first.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let inflight = format!(
        "ee:ratelimit:{{inflight:{}:192.0.2.1}}",
        Rule::concurrency(5).id()
    );
    while server.command(&["ZCARD", &inflight]) != Reply::Integer(0) {
        assert!(std::time::Instant::now() < deadline, "release never landed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.command(&["CONFIG", "RESETSTAT"]);
    for l in &layers[..4] {
        for _ in 0..10 {
            send(l, from_ip("192.0.2.1")).await;
        }
    }
    let calls = command_calls(&server);
    let count = |name: &str| calls.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c);
    // 40 decisions, 40 EVALSHAs: one round trip each, no EVAL or SCRIPT LOAD.
    assert_eq!(count("evalsha"), 40, "{calls:?}");
    // Each decision read the time from Redis, not from the instance.
    assert_eq!(count("time"), 40, "{calls:?}");
    // Everything else counted was run inside the scripts (commandstats counts
    // those too) or is our own CONFIG RESETSTAT.
    let inside_scripts = ["get", "set", "hset", "hmget", "pexpire", "config|resetstat"];
    for (name, _) in &calls {
        assert!(
            name == "evalsha" || name == "time" || inside_scripts.contains(&name.as_str()),
            "unexpected command {name}: {calls:?}"
        );
    }

    // Every key has a TTL and the documented shape.
    let Reply::Array(Some(keys)) = server.command(&["KEYS", "*"]) else {
        panic!()
    };
    assert!(keys.len() >= 5, "{keys:?}");
    for key in keys {
        let key = key.as_text().unwrap();
        assert!(key.starts_with("ee:ratelimit:{"), "{key}");
        let Reply::Integer(ttl) = server.command(&["PTTL", &key]) else {
            panic!()
        };
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
}

#[tokio::test]
async fn redis_and_memory_give_the_same_answers() {
    let server = RedisServer::start();
    let c = conn(RedisConfig::standalone(server.url())).await;
    for rule in [
        Rule::gcra(2, Duration::from_secs(10), 2),
        Rule::fixed_window(2, Duration::from_secs(3600)),
        Rule::sliding_window(2, Duration::from_secs(3600)),
        Rule::token_bucket(2, 1, Duration::from_secs(10)),
    ] {
        let redis = layer(&c, "same", rule, OnBackendError::FailClosed);
        let memory = RateLimitLayer::builder(ee_ratelimit::MemoryStore::new())
            .policy(Policy::new("same", rule))
            .build()
            .unwrap();
        for i in 0..3 {
            let (r, m) = (
                send(&redis, from_ip("192.0.2.5")).await,
                send(&memory, from_ip("192.0.2.5")).await,
            );
            assert_eq!(r.status, m.status, "{rule:?} request {i}");
            let remaining = |res: &ee_testing::TestResponse| {
                common::parse_sf_list(res.header("ratelimit").unwrap())[0]
                    .param("r")
                    .unwrap()
                    .to_owned()
            };
            assert_eq!(remaining(&r), remaining(&m), "{rule:?} request {i}");
            assert_eq!(
                r.header("retry-after").is_some(),
                m.header("retry-after").is_some()
            );
        }
        // Windows, buckets and GCRA all say when to come back, to the second.
        let (r, m) = (
            send(&redis, from_ip("192.0.2.5")).await,
            send(&memory, from_ip("192.0.2.5")).await,
        );
        let secs = |res: &ee_testing::TestResponse| {
            res.header("retry-after").unwrap().parse::<u64>().unwrap()
        };
        assert!(
            secs(&r).abs_diff(secs(&m)) <= 1,
            "{rule:?}: {} vs {}",
            secs(&r),
            secs(&m)
        );
    }
}

#[tokio::test]
async fn same_policy_name_with_another_rule_never_shares_state() {
    let server = RedisServer::start();
    let c = conn(RedisConfig::standalone(server.url())).await;
    // Two routes, two layers, both call their policy "burst".
    let gcra = layer(&c, "burst", Rule::per_minute(2), OnBackendError::FailClosed);
    let fixed = layer(
        &c,
        "burst",
        Rule::fixed_window(5, Duration::from_secs(60)),
        OnBackendError::FailClosed,
    );
    for _ in 0..2 {
        assert_eq!(send(&gcra, from_ip("192.0.2.1")).await.status, 200);
        assert_eq!(send(&fixed, from_ip("192.0.2.1")).await.status, 200);
    }
    assert_eq!(send(&gcra, from_ip("192.0.2.1")).await.status, 429);
    assert_eq!(
        send(&fixed, from_ip("192.0.2.1")).await.status,
        200,
        "its own 5, no WRONGTYPE"
    );
}

#[tokio::test]
async fn concurrency_slots_are_released_in_redis() {
    let server = RedisServer::start();
    let c = conn(RedisConfig::standalone(server.url())).await;
    let layer = layer(
        &c,
        "inflight",
        Rule::concurrency(50),
        OnBackendError::FailClosed,
    );
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let svc = layer.layer({
        let gate = gate.clone();
        tower::service_fn(move |_req: Request<Body>| {
            let gate = gate.clone();
            async move {
                let _p = gate.acquire().await.unwrap();
                Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("ok")))
            }
        })
    });
    let tasks: Vec<_> = (0..200)
        .map(|_| tokio::spawn(svc.clone().oneshot(from_ip("192.0.2.1"))))
        .collect();
    // Everyone past the limit is refused at once; the 50 wait at the gate.
    let zset = &format!(
        "ee:ratelimit:{{inflight:{}:192.0.2.1}}",
        Rule::concurrency(50).id()
    );
    let mut refused = 0;
    let mut pending = tasks;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while refused < 150 {
        let mut waiting = Vec::new();
        for t in pending {
            if t.is_finished() {
                refused += usize::from(t.await.unwrap().unwrap().status() == 429);
            } else {
                waiting.push(t);
            }
        }
        pending = waiting;
        assert!(std::time::Instant::now() < deadline, "refused {refused}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pending.len(), 50);
    assert_eq!(refused, 150);
    assert_eq!(server.command(&["ZCARD", zset]), Reply::Integer(50));
    gate.add_permits(50);
    for t in pending {
        assert_eq!(t.await.unwrap().unwrap().status(), 200);
    }
    // Releases are sent in the background; they land promptly.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.command(&["ZCARD", zset]) != Reply::Integer(0) {
        assert!(std::time::Instant::now() < deadline, "slots not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn each_outage_policy_does_what_it_says_and_recovers() {
    let mut server = RedisServer::start();
    let c = conn(RedisConfig::standalone(server.url())).await;
    let rule = Rule::fixed_window(3, Duration::from_secs(3600));
    let open = layer(&c, "open", rule, OnBackendError::FailOpen);
    let closed = layer(&c, "closed", rule, OnBackendError::FailClosed);
    let fallback = layer(&c, "fallback", rule, OnBackendError::FallbackToMemory);
    for l in [&open, &closed, &fallback] {
        assert_eq!(send(l, from_ip("192.0.2.1")).await.status, 200);
    }

    server.stop();
    // Fail open: everything passes, and no RateLimit field is invented.
    for _ in 0..5 {
        let res = send(&open, from_ip("192.0.2.1")).await;
        assert_eq!(res.status, 200);
        assert!(res.header("ratelimit").is_none());
    }
    // Fail closed: 503 problem with Retry-After.
    let res = send(&closed, from_ip("192.0.2.1")).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.problem().type_uri(),
        "https://ee.rs/problems/ratelimit/unavailable"
    );
    assert_eq!(res.header("retry-after"), Some("1"));
    // Fall back to memory: the limit holds in this instance (3 fresh units).
    let statuses: Vec<u16> = futures_statuses(&fallback, 5).await;
    assert_eq!(statuses, [200, 200, 200, 429, 429]);

    server.restart();
    // Back on Redis (empty after the restart): decisions land in Redis again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let res = send(&closed, from_ip("192.0.2.1")).await;
        if res.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery: {}",
            res.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        server.command(&["HGET", &format!("ee:ratelimit:{{closed:{}:192.0.2.1}}", rule.id()), "n"]),
        Reply::Bulk(Some(n)) if n == b"1"
    ));
}

/// While Redis is down, the memory fallback is bounded in keys too: a new
/// key that finds it full is refused as when failing closed (503), and the
/// keys already there keep their counts.
#[tokio::test]
async fn a_full_memory_fallback_refuses_new_keys_with_a_503() {
    let mut server = RedisServer::start();
    let c = conn(RedisConfig::standalone(server.url())).await;
    let rule = Rule::gcra(3, Duration::from_secs(3600), 3);
    let layer = RateLimitLayer::builder(RedisStore::new(c))
        .policy(Policy::new("fallback", rule))
        .fallback(MemoryStore::new().with_max_keys(2))
        .build()
        .unwrap();
    assert_eq!(send(&layer, from_ip("192.0.2.1")).await.status, 200);

    server.stop();
    for ip in ["192.0.2.1", "192.0.2.2"] {
        assert_eq!(send(&layer, from_ip(ip)).await.status, 200);
    }
    let res = send(&layer, from_ip("192.0.2.3")).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.problem().type_uri(),
        "https://ee.rs/problems/ratelimit/unavailable"
    );
    assert_eq!(res.header("retry-after"), Some("1"));
    // 192.0.2.1 has used 1 of its 3 in the fallback (the first one went to
    // Redis): 2 more, then its own 429.
    assert_eq!(futures_statuses(&layer, 3).await, [200, 200, 429]);
}

async fn futures_statuses(layer: &RateLimitLayer<RedisLimiter>, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(send(layer, from_ip("192.0.2.1")).await.status.as_u16());
    }
    out
}

#[tokio::test]
async fn a_stalled_redis_is_bounded_by_the_decision_timeout() {
    let mut server = RedisServer::start();
    let c = conn(RedisConfig::standalone(server.url())).await;
    let store = RedisStore::new(c).with_timeout(Duration::from_millis(150));
    let layer = RateLimitLayer::builder(store)
        .policy(Policy::new("api", Rule::per_second(10)))
        .on_backend_error(OnBackendError::FailClosed)
        .build()
        .unwrap();
    assert_eq!(send(&layer, from_ip("192.0.2.1")).await.status, 200);
    server.pause();
    let started = std::time::Instant::now();
    let res = send(&layer, from_ip("192.0.2.1")).await;
    assert_eq!(res.status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    server.resume();
}

#[tokio::test]
async fn any_store_picked_at_run_time_shares_limits_on_redis_and_decides_at_once_in_memory() {
    use ee_ratelimit::{AnyLimiter, AnyStore};

    let server = RedisServer::start();
    let rule = Rule::fixed_window(2, Duration::from_secs(3600));
    // One function, one layer type, whichever store configuration picked.
    let build = |store: AnyStore| -> RateLimitLayer<AnyLimiter> {
        RateLimitLayer::builder(store)
            .policy(Policy::new("any", rule))
            .build()
            .unwrap()
    };
    let mut on_redis = Vec::new();
    for _ in 0..2 {
        let c = conn(RedisConfig::standalone(server.url())).await;
        on_redis.push(build(RedisStore::new(c).into()));
    }
    assert_eq!(send(&on_redis[0], from_ip("192.0.2.1")).await.status, 200);
    assert_eq!(send(&on_redis[1], from_ip("192.0.2.1")).await.status, 200);
    assert_eq!(
        send(&on_redis[0], from_ip("192.0.2.1")).await.status,
        429,
        "the two instances share one count in Redis"
    );
    assert!(matches!(
        server.command(&["HGET", &format!("ee:ratelimit:{{any:{}:192.0.2.1}}", rule.id()), "n"]),
        Reply::Bulk(Some(n)) if n == b"2"
    ));

    let in_memory = [
        build(MemoryStore::new().into()),
        build(MemoryStore::new().into()),
    ];
    assert_eq!(send(&in_memory[0], from_ip("192.0.2.1")).await.status, 200);
    assert_eq!(send(&in_memory[0], from_ip("192.0.2.1")).await.status, 200);
    assert_eq!(send(&in_memory[0], from_ip("192.0.2.1")).await.status, 429);
    assert_eq!(
        send(&in_memory[1], from_ip("192.0.2.1")).await.status,
        200,
        "each memory store counts on its own"
    );
}
