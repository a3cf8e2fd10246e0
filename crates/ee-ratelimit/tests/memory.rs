//! The layer on the in-memory store: every algorithm's counts, headers in the
//! draft's syntax, problems, keys, costs, exemptions, concurrency and metrics.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use common::{from_ip, parse_sf_list, send};
use ee_core::{ClientIp, HeaderKey, OnBackendError};
use ee_ratelimit::{
    HeaderConfig, MemoryStore, Policy, PolicyConfig, RateLimitConfig, RateLimitError,
    RateLimitLayer, Rule,
};
use ee_testing::ManualClock;
use http::{HeaderName, Method, Request, StatusCode};
use tower::{Layer, ServiceExt};

fn layer(rule: Rule) -> RateLimitLayer<ee_ratelimit::MemoryLimiter> {
    RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::new("api", rule))
        .build()
        .unwrap()
}

fn manual(
    rule: Rule,
    clock: &ManualClock,
) -> RateLimitLayer<ee_ratelimit::MemoryLimiter<ManualClock>> {
    RateLimitLayer::builder(MemoryStore::with_clock(clock.clone()))
        .policy(Policy::new("api", rule))
        .build()
        .unwrap()
}

/// Sends `n` requests from one IP, returns how many got 200.
async fn allowed<L: ee_ratelimit::Limiter>(layer: &RateLimitLayer<L>, ip: &str, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        if send(layer, from_ip(ip)).await.status == StatusCode::OK {
            ok += 1;
        }
    }
    ok
}

#[tokio::test]
async fn every_rule_lets_exactly_its_quota_through_per_key() {
    for rule in [
        Rule::gcra(5, Duration::from_secs(3600), 5),
        Rule::fixed_window(5, Duration::from_secs(3600)),
        Rule::sliding_window(5, Duration::from_secs(3600)),
        Rule::token_bucket(5, 1, Duration::from_secs(3600)),
    ] {
        let layer = layer(rule);
        assert_eq!(allowed(&layer, "192.0.2.1", 8).await, 5, "{rule:?}");
        assert_eq!(
            allowed(&layer, "192.0.2.2", 8).await,
            5,
            "{rule:?}: keys are independent"
        );
    }
}

#[tokio::test]
async fn concurrent_requests_are_counted_exactly() {
    let layer = layer(Rule::gcra(50, Duration::from_secs(3600), 50));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let layer = layer.clone();
            tokio::spawn(async move { send(&layer, from_ip("192.0.2.9")).await.status })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 50);
}

#[tokio::test]
async fn the_429_is_a_problem_with_retry_after_and_draft_headers() {
    let layer = layer(Rule::gcra(2, Duration::from_secs(10), 2));
    let first = send(&layer, from_ip("192.0.2.1")).await;
    assert_eq!(first.status, 200);
    let policy = parse_sf_list(first.header("ratelimit-policy").unwrap());
    assert_eq!(policy.len(), 1);
    assert_eq!(policy[0].name, "api");
    assert_eq!(policy[0].param("q"), Some("2"));
    assert_eq!(policy[0].param("w"), Some("10"));
    let limit = parse_sf_list(first.header("ratelimit").unwrap());
    assert_eq!(limit[0].name, "api");
    assert_eq!(limit[0].param("r"), Some("1"));
    let t: u64 = limit[0].param("t").unwrap().parse().unwrap();
    assert!((1..=10).contains(&t), "{t}");
    assert!(
        first.header("x-ratelimit-limit").is_none(),
        "legacy headers are opt-in"
    );

    send(&layer, from_ip("192.0.2.1")).await;
    let refused = send(&layer, from_ip("192.0.2.1")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let problem = refused.problem();
    assert_eq!(
        problem.type_uri(),
        "https://ee.rs/problems/ratelimit/too-many-requests"
    );
    assert_eq!(problem.extension("policy").unwrap(), "api");
    assert_eq!(problem.detail(), Some("policy `api` allows 2 per 10 s"));
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=5).contains(&retry),
        "one unit comes back every 5 s: {retry}"
    );
    assert_eq!(problem.extension("retry_after").unwrap(), retry);
    let limit = parse_sf_list(refused.header("ratelimit").unwrap());
    assert_eq!(limit[0].param("r"), Some("0"));
    assert!(refused.header("ratelimit-policy").is_some());
}

#[tokio::test]
async fn several_policies_all_apply_and_all_appear_in_headers() {
    let layer = RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::new(
            "burst",
            Rule::gcra(10, Duration::from_secs(1), 20),
        ))
        .policy(Policy::new(
            "hourly",
            Rule::fixed_window(3, Duration::from_secs(3600)),
        ))
        .policy(Policy::new("inflight", Rule::concurrency(5)))
        .headers(HeaderConfig {
            draft: true,
            legacy: true,
        })
        .build()
        .unwrap();
    let res = send(&layer, from_ip("192.0.2.1")).await;
    let policy = parse_sf_list(res.header("ratelimit-policy").unwrap());
    let names: Vec<&str> = policy.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["burst", "hourly", "inflight"]);
    assert_eq!(policy[0].param("q"), Some("20"));
    assert_eq!(policy[0].param("w"), Some("2"));
    assert_eq!(policy[2].param("qu"), Some("concurrent-requests"));
    assert_eq!(policy[2].param("w"), None);
    let limit = parse_sf_list(res.header("ratelimit").unwrap());
    assert_eq!(limit.len(), 3);
    assert_eq!(limit[1].param("r"), Some("2"));
    // Legacy trio: the policy closest to its limit (hourly, 2 left).
    assert_eq!(res.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(res.header("x-ratelimit-remaining"), Some("2"));

    assert_eq!(
        allowed(&layer, "192.0.2.1", 5).await,
        2,
        "the hourly policy is the tighter one"
    );
    let refused = send(&layer, from_ip("192.0.2.1")).await;
    assert_eq!(refused.problem().extension("policy").unwrap(), "hourly");
}

#[tokio::test]
async fn windows_and_buckets_follow_the_clock() {
    let clock = ManualClock::new();
    let fixed = manual(Rule::fixed_window(3, Duration::from_secs(10)), &clock);
    let sliding = manual(Rule::sliding_window(10, Duration::from_secs(10)), &clock);
    let bucket = manual(Rule::token_bucket(5, 1, Duration::from_secs(1)), &clock);
    let gcra = manual(Rule::gcra(2, Duration::from_secs(1), 2), &clock);

    assert_eq!(allowed(&fixed, "192.0.2.1", 5).await, 3);
    assert_eq!(allowed(&sliding, "192.0.2.1", 15).await, 10);
    assert_eq!(allowed(&bucket, "192.0.2.1", 8).await, 5);
    assert_eq!(allowed(&gcra, "192.0.2.1", 4).await, 2);

    clock.advance(Duration::from_millis(500));
    assert_eq!(
        allowed(&gcra, "192.0.2.1", 3).await,
        1,
        "GCRA: one unit per 500 ms"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        allowed(&bucket, "192.0.2.1", 3).await,
        1,
        "bucket: one token after 1 s"
    );

    // Into the next window: fixed resets fully; sliding still weighs the
    // previous window almost fully.
    clock.advance(Duration::from_millis(8_600)); // t = 10.1 s
    assert_eq!(allowed(&fixed, "192.0.2.1", 5).await, 3);
    assert_eq!(allowed(&sliding, "192.0.2.1", 3).await, 0);
    clock.advance(Duration::from_secs(5)); // t = 15.1 s: previous weighs ~49 %
    assert_eq!(allowed(&sliding, "192.0.2.1", 10).await, 5);
    clock.advance(Duration::from_secs(10)); // t = 25.1 s: the 5 weigh ~49 %
    assert_eq!(allowed(&sliding, "192.0.2.1", 10).await, 7);
}

#[tokio::test]
async fn concurrency_limits_count_requests_in_flight() {
    let layer = RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::new("inflight", Rule::concurrency(2)))
        .build()
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel::<()>();
    let slow = {
        let gate = gate.clone();
        tower::service_fn(move |_req: Request<Body>| {
            let gate = gate.clone();
            let entered_tx = entered_tx.clone();
            async move {
                entered_tx.send(()).unwrap();
                let _permit = gate.acquire().await.unwrap();
                Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("done")))
            }
        })
    };
    let svc = layer.layer(slow);
    let a = tokio::spawn(svc.clone().oneshot(from_ip("192.0.2.1")));
    let b = tokio::spawn(svc.clone().oneshot(from_ip("192.0.2.1")));
    // Both are inside the handler, holding their slots.
    entered.recv().await.unwrap();
    entered.recv().await.unwrap();
    let third = svc.clone().oneshot(from_ip("192.0.2.1")).await.unwrap();
    let third = ee_testing::TestResponse::from_response(third).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        third.problem().detail(),
        Some("policy `inflight` allows 2 requests in flight")
    );
    assert_eq!(third.header("retry-after"), Some("1"));
    // Another client is not affected.
    gate.add_permits(1);
    let other = svc.clone().oneshot(from_ip("192.0.2.2")).await.unwrap();
    entered.recv().await.unwrap();
    assert_eq!(other.status(), 200);
    // When the first two finish, their slots are free again.
    gate.add_permits(2);
    assert_eq!(a.await.unwrap().unwrap().status(), 200);
    assert_eq!(b.await.unwrap().unwrap().status(), 200);
    gate.add_permits(1);
    assert_eq!(
        svc.clone()
            .oneshot(from_ip("192.0.2.1"))
            .await
            .unwrap()
            .status(),
        200
    );
    entered.recv().await.unwrap();

    // A request dropped mid-flight (client gone) gives its slot back too.
    let pending = tokio::spawn(svc.clone().oneshot(from_ip("192.0.2.3")));
    let pending2 = tokio::spawn(svc.clone().oneshot(from_ip("192.0.2.3")));
    entered.recv().await.unwrap();
    entered.recv().await.unwrap();
    pending.abort();
    pending2.abort();
    let _ = (pending.await, pending2.await);
    gate.add_permits(1);
    assert_eq!(
        svc.clone()
            .oneshot(from_ip("192.0.2.3"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn costs_exemptions_and_keys() {
    let layer = RateLimitLayer::builder(MemoryStore::new())
        .policy(
            Policy::new("writes", Rule::fixed_window(10, Duration::from_secs(3600)))
                .key(HeaderKey::new(HeaderName::from_static("x-api-key")))
                .cost_fn(|req| if req.method == Method::POST { 4 } else { 0 }),
        )
        .exempt(|req| req.uri.path() == "/healthz")
        .build()
        .unwrap();
    let req = |method: Method, path: &str, key: Option<&str>| {
        let mut r = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        r.body(Body::empty()).unwrap()
    };
    // Cost 0 skips the policy entirely: no key needed, no headers.
    let get = send(&layer, req(Method::GET, "/", None)).await;
    assert_eq!(get.status, 200);
    assert!(get.header("ratelimit").is_none());
    // POSTs cost 4: two fit in 10.
    for expected in [200, 200, 429] {
        let res = send(&layer, req(Method::POST, "/", Some("k1"))).await;
        assert_eq!(res.status, expected);
    }
    // A cost above the quota can never pass: no Retry-After.
    let huge = RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::new("tiny", Rule::fixed_window(3, Duration::from_secs(60))).cost(5))
        .build()
        .unwrap();
    let res = send(&huge, from_ip("192.0.2.1")).await;
    assert_eq!(res.status, 429);
    assert!(res.header("retry-after").is_none());
    assert!(res.problem().detail().unwrap().contains("never pass"));
    // Exempt paths bypass every policy.
    assert_eq!(
        send(&layer, req(Method::POST, "/healthz", None))
            .await
            .status,
        200
    );
    // A missing key header is the key extractor's 400 problem.
    let res = send(&layer, req(Method::POST, "/", None)).await;
    assert_eq!(res.status, 400);
    assert_eq!(
        res.problem().type_uri(),
        "https://ee.rs/problems/core/missing-header"
    );
}

#[tokio::test]
async fn keys_come_through_trusted_proxies_only() {
    let layer = RateLimitLayer::builder(MemoryStore::new())
        .policy(
            Policy::new("api", Rule::fixed_window(1, Duration::from_secs(3600)))
                .key(ClientIp::trusting(["10.0.0.0/8".parse().unwrap()])),
        )
        .build()
        .unwrap();
    let via_proxy = |client: &str| {
        let mut r = from_ip("10.0.0.2");
        r.headers_mut()
            .insert("x-forwarded-for", client.parse().unwrap());
        r
    };
    assert_eq!(send(&layer, via_proxy("203.0.113.1")).await.status, 200);
    assert_eq!(
        send(&layer, via_proxy("203.0.113.2")).await.status,
        200,
        "another client"
    );
    assert_eq!(send(&layer, via_proxy("203.0.113.1")).await.status, 429);
    // An untrusted client cannot reset its key by inventing a forwarder.
    let mut direct = from_ip("198.51.100.7");
    direct
        .headers_mut()
        .insert("x-forwarded-for", "1.1.1.1".parse().unwrap());
    assert_eq!(send(&layer, direct).await.status, 200);
    let mut direct = from_ip("198.51.100.7");
    direct
        .headers_mut()
        .insert("x-forwarded-for", "2.2.2.2".parse().unwrap());
    assert_eq!(send(&layer, direct).await.status, 429);
    // Malformed forwarding header from our proxy: 400 problem, nothing counted.
    let res = send(&layer, via_proxy("not-an-ip")).await;
    assert_eq!(res.status, 400);
    assert_eq!(
        res.problem().type_uri(),
        "https://ee.rs/problems/core/malformed-header"
    );
    // No peer address at all: a server set-up error.
    let res = send(&layer, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status, 500);
}

#[test]
fn configuration_is_checked_when_the_layer_is_built() {
    let build = |policies: Vec<Policy>| {
        let mut b = RateLimitLayer::builder(MemoryStore::new());
        for p in policies {
            b = b.policy(p);
        }
        b.build().map(|_| ()).map_err(|e| e.to_string())
    };
    assert!(build(vec![]).unwrap_err().contains("no policy"));
    let twice = vec![
        Policy::new("a", Rule::per_second(1)),
        Policy::new("a", Rule::per_minute(1)),
    ];
    assert!(build(twice).unwrap_err().contains("defined twice"));
    assert!(
        build(vec![Policy::new("bad name", Rule::per_second(1))])
            .unwrap_err()
            .contains("1-64")
    );
    assert!(build(vec![Policy::new("quote\"", Rule::per_second(1))]).is_err());
    assert!(
        build(vec![Policy::new("zero", Rule::per_second(0))])
            .unwrap_err()
            .contains("`limit`")
    );
    assert!(
        build(vec![Policy::new(
            "w",
            Rule::fixed_window(1, Duration::ZERO)
        )])
        .is_ok(),
        "durations round up to 1 ms"
    );
    let config: PolicyConfig = serde_json::from_str(
        r#"{"name": "upload", "algorithm": "token_bucket", "capacity": 10, "refill": 1, "period_ms": 1000, "cost": 2}"#,
    )
    .unwrap();
    assert_eq!(
        config.rule,
        Rule::token_bucket(10, 1, Duration::from_secs(1))
    );
    assert_eq!(config.cost, 2);
    let from_config = RateLimitConfig {
        policies: vec![config],
        ..RateLimitConfig::default()
    };
    assert!(
        RateLimitLayer::builder(MemoryStore::new())
            .config(&from_config)
            .and_then(|b| b.build())
            .is_ok()
    );
    assert!(
        serde_json::from_str::<PolicyConfig>(r#"{"name": "x", "algorithm": "leaky"}"#).is_err()
    );
    assert!(
        serde_json::from_str::<PolicyConfig>(r#"{"name": "x", "algorithm": "gcra", "limit": 1, "period_ms": 1, "burst": 1, "brust": 2}"#)
            .is_err(),
        "typos are errors"
    );
    assert_eq!(
        serde_json::from_str::<OnBackendError>(r#""fail_closed""#).unwrap(),
        OnBackendError::FailClosed
    );
    let _: fn(RateLimitError) -> ee_core::Problem = ee_core::Problem::from;
}

#[test]
fn a_config_is_checked_when_it_is_applied() {
    let apply = |json: &str| {
        let config: RateLimitConfig = serde_json::from_str(json).unwrap();
        RateLimitLayer::builder(MemoryStore::new())
            .config(&config)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let gcra = r#""algorithm": "gcra", "limit": 1, "period_ms": 1000, "burst": 1"#;
    assert!(apply(&format!(r#"{{ "policies": [{{ "name": "a", {gcra} }}] }}"#)).is_ok());
    let zero = apply(
        r#"{ "policies": [{ "name": "z", "algorithm": "gcra", "limit": 0, "period_ms": 1000, "burst": 1 }] }"#,
    );
    assert_eq!(
        zero.unwrap_err(),
        "invalid rate-limit configuration: policy `z`: `limit` must be greater than 0"
    );
    let twice = apply(&format!(
        r#"{{ "policies": [{{ "name": "a", {gcra} }}, {{ "name": "a", {gcra} }}] }}"#
    ));
    assert!(twice.unwrap_err().contains("defined twice"));
    let bad_name = apply(&format!(
        r#"{{ "policies": [{{ "name": "a b", {gcra} }}] }}"#
    ));
    assert!(bad_name.unwrap_err().contains("1-64"));
    assert!(
        serde_json::from_str::<RateLimitConfig>(r#"{ "polices": [] }"#).is_err(),
        "typos are errors"
    );
    assert_eq!(
        RateLimitConfig::default().on_backend_error,
        OnBackendError::FallbackToMemory
    );
    assert!(
        Rule::per_second(0)
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`limit` must be greater than 0")
    );
}

#[tokio::test]
async fn a_config_sets_policies_costs_and_headers_and_the_default_key_counts_them() {
    let config: RateLimitConfig = serde_json::from_str(
        r#"{
            "policies": [{ "name": "api", "algorithm": "fixed_window", "limit": 4, "window_ms": 3600000, "cost": 2 }],
            "headers": { "draft": false, "legacy": true }
        }"#,
    )
    .unwrap();
    let layer = RateLimitLayer::builder(MemoryStore::new())
        .default_key(ClientIp::trusting(["10.0.0.0/8".parse().unwrap()]))
        .config(&config)
        .unwrap()
        .build()
        .unwrap();
    let via_proxy = |client: &str| {
        let mut req = from_ip("10.0.0.1");
        req.headers_mut()
            .insert("x-forwarded-for", client.parse().unwrap());
        req
    };
    let first = send(&layer, via_proxy("192.0.2.1")).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("x-ratelimit-remaining"), Some("2"), "cost 2");
    assert_eq!(first.header("ratelimit"), None, "draft headers off");
    assert_eq!(send(&layer, via_proxy("192.0.2.1")).await.status, 200);
    assert_eq!(send(&layer, via_proxy("192.0.2.1")).await.status, 429);
    assert_eq!(
        send(&layer, via_proxy("192.0.2.2")).await.status,
        200,
        "counted per client behind the proxy, not per proxy"
    );

    // A policy's own key wins over the default one.
    let own = RateLimitLayer::builder(MemoryStore::new())
        .default_key(ClientIp::trusting(["10.0.0.0/8".parse().unwrap()]))
        .policy(
            Policy::new("peer", Rule::fixed_window(1, Duration::from_secs(3600)))
                .key(ee_core::PeerIp),
        )
        .build()
        .unwrap();
    assert_eq!(send(&own, via_proxy("192.0.2.1")).await.status, 200);
    assert_eq!(
        send(&own, via_proxy("192.0.2.2")).await.status,
        429,
        "counted per peer (the proxy)"
    );
}

#[tokio::test]
async fn decisions_are_counted_in_metrics() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        layer(Rule::fixed_window(2, Duration::from_secs(60)))
    });
    for _ in 0..3 {
        send(&layer, from_ip("192.0.2.1")).await;
    }
    let counts = ee_testing::counters(&snapshotter);
    let get = |name: &str| counts.get(name);
    assert_eq!(
        get("ee_ratelimit_decisions_total{policy=api,outcome=allowed}"),
        Some(2),
        "{counts:?}"
    );
    assert_eq!(
        get("ee_ratelimit_decisions_total{policy=api,outcome=limited}"),
        Some(1),
        "{counts:?}"
    );
}

#[test]
fn metrics_are_described_with_help_and_unit_when_the_layer_is_built() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _layer = metrics::with_local_recorder(&recorder, || layer(Rule::per_second(1)));
    let described: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == ee_ratelimit::METRIC_DECISIONS_TOTAL)
        .map(|(_, unit, help, _)| (unit, help.is_some_and(|h| !h.is_empty())))
        .collect();
    assert!(!described.is_empty(), "handles registered at build time");
    assert!(
        described
            .iter()
            .all(|d| *d == (Some(metrics::Unit::Count), true)),
        "{described:?}"
    );
}

#[test]
fn idle_keys_are_swept_so_memory_follows_the_active_keys() {
    use ee_core::Key;
    use ee_ratelimit::MemoryLimiter;

    let second = Duration::from_secs(1);
    for rule in [
        Rule::gcra(10, second, 10),
        Rule::fixed_window(10, second),
        Rule::sliding_window(10, second),
        Rule::token_bucket(10, 10, second),
    ] {
        let clock = ManualClock::new();
        let limiter = MemoryLimiter::new(rule, clock.clone());
        for i in 0..1000 {
            assert!(
                limiter
                    .decide(&Key::text(format!("client-{i}")), 1)
                    .unwrap()
                    .allowed
            );
        }
        assert_eq!(limiter.len(), 1000, "{rule:?}");
        // A second limiter of the same rule taking turns on this thread: both
        // must get their sweeps (GCRA looks about once in 4096 decisions, at
        // random; the others on every decision).
        let other = MemoryLimiter::new(rule, clock.clone());
        for i in 0..1000 {
            other.decide(&Key::text(format!("client-{i}")), 1).unwrap();
        }
        let active = Key::text("active");
        // 5 s later every old key is idle, but sweeps are at least 10 s apart.
        clock.advance(Duration::from_secs(5));
        for _ in 0..20_000 {
            limiter.decide(&active, 1).unwrap();
            other.decide(&active, 1).unwrap();
        }
        assert_eq!(limiter.len(), 1001, "{rule:?}: no sweep before 10 s");
        clock.advance(Duration::from_secs(6));
        for _ in 0..20_000 {
            limiter.decide(&active, 1).unwrap();
            other.decide(&active, 1).unwrap();
        }
        assert_eq!(limiter.len(), 1, "{rule:?}: only the active key is left");
        assert_eq!(other.len(), 1, "{rule:?}: in the other limiter too");
    }
}

#[tokio::test]
async fn without_headers_the_allowed_response_is_untouched_and_the_429_still_complete() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        RateLimitLayer::builder(MemoryStore::new())
            .policy(Policy::new(
                "api",
                Rule::gcra(2, Duration::from_secs(10), 2),
            ))
            // A second policy that HEAD requests skip (cost 0).
            .policy(
                Policy::new("writes", Rule::fixed_window(100, Duration::from_secs(60)))
                    .cost_fn(|req| u32::from(req.method != Method::HEAD)),
            )
            .headers(HeaderConfig {
                draft: false,
                legacy: false,
            })
            .build()
            .unwrap()
    });
    for _ in 0..2 {
        let ok = send(&layer, from_ip("192.0.2.1")).await;
        assert_eq!(ok.status, StatusCode::OK);
        assert!(ok.header("ratelimit").is_none());
        assert!(ok.header("ratelimit-policy").is_none());
        assert!(ok.header("x-ratelimit-limit").is_none());
    }
    let refused = send(&layer, from_ip("192.0.2.1")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.problem().extension("policy").unwrap(), "api");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry), "{retry}");
    assert!(refused.header("ratelimit").is_none());
    // Another client is not affected; its HEAD costs nothing in `writes`.
    assert_eq!(send(&layer, from_ip("192.0.2.2")).await.status, 200);
    let mut head = from_ip("192.0.2.3");
    *head.method_mut() = Method::HEAD;
    assert_eq!(send(&layer, head).await.status, 200);

    let counts = ee_testing::counters(&snapshotter);
    let get = |policy: &str, outcome: &str| {
        counts.get(&format!(
            "ee_ratelimit_decisions_total{{policy={policy},outcome={outcome}}}"
        ))
    };
    assert_eq!(get("api", "allowed"), Some(4), "{counts:?}");
    assert_eq!(get("api", "limited"), Some(1), "{counts:?}");
    assert_eq!(get("writes", "allowed"), Some(3), "{counts:?}");
}

/// The default policy shape with headers off (peer-IP keys, fixed costs, no
/// exemption) has a path of its own: the same counts, refusals and problems.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_ip_policies_without_headers_count_exactly_and_refuse_completely() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let no_headers = HeaderConfig {
        draft: false,
        legacy: false,
    };
    let layer = metrics::with_local_recorder(&recorder, || {
        RateLimitLayer::builder(MemoryStore::new())
            .policy(Policy::new(
                "burst",
                Rule::gcra(3, Duration::from_secs(60), 3),
            ))
            .policy(Policy::new("heavy", Rule::gcra(10, Duration::from_secs(3600), 10)).cost(4))
            // Cost 0: never consulted, so its 1-unit window never refuses.
            .policy(Policy::new("off", Rule::fixed_window(1, Duration::from_secs(60))).cost(0))
            .headers(no_headers)
            .build()
            .unwrap()
    });
    // 1 and 2 pass both; 3 passes `burst` but needs 12 of `heavy`'s 10;
    // 4 finds `burst` empty (3's unit stays taken, as documented).
    let statuses = [
        send(&layer, from_ip("192.0.2.1")).await,
        send(&layer, from_ip("192.0.2.1")).await,
        send(&layer, from_ip("192.0.2.1")).await,
        send(&layer, from_ip("192.0.2.1")).await,
    ];
    assert_eq!(statuses[0].status, StatusCode::OK);
    assert_eq!(statuses[1].status, StatusCode::OK);
    assert!(statuses[0].header("ratelimit").is_none());
    // `heavy` refills one unit per 6 min and needs 2 more: 12 min.
    for (refused, policy, most) in [(&statuses[2], "heavy", 720), (&statuses[3], "burst", 20)] {
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            refused.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(refused.problem().extension("policy").unwrap(), policy);
        let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=most).contains(&retry), "{policy}: {retry}");
    }
    // IPv4-mapped IPv6 is the same client.
    assert_eq!(
        send(&layer, from_ip("[::ffff:192.0.2.1]")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // 200 concurrent requests of one new client on two threads: exactly the
    // burst of 3 (then `burst` refuses the rest) passes.
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let layer = layer.clone();
            tokio::spawn(async move { send(&layer, from_ip("198.51.100.7")).await.status })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 2, "heavy lets 2 of cost 4 into 10, burst would let 3");

    // No peer address: a 500 problem naming the set-up error, nothing counted.
    let res = layer
        .layer(common::ok_service())
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let res = ee_testing::TestResponse::from_response(res).await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));

    let counts = ee_testing::counters(&snapshotter);
    let get = |policy: &str, outcome: &str| {
        counts.get(&format!(
            "ee_ratelimit_decisions_total{{policy={policy},outcome={outcome}}}"
        ))
    };
    // 192.0.2.1: 3 allowed by burst, 1 refused by burst after that, and the
    // mapped address refused too; 198.51.100.7: 3 by burst, then 197 refused.
    assert_eq!(get("burst", "allowed"), Some(6), "{counts:?}");
    assert_eq!(get("burst", "limited"), Some(2 + 197), "{counts:?}");
    assert_eq!(get("heavy", "allowed"), Some(4), "{counts:?}");
    assert_eq!(get("heavy", "limited"), Some(2), "{counts:?}");
    assert_eq!(get("off", "allowed"), Some(0), "{counts:?}");
    assert_eq!(get("off", "limited"), Some(0), "{counts:?}");
}

/// GCRA cells are updated by compare-and-swap: decisions racing on one key
/// from several threads let exactly the burst through, through `admit_now`
/// on governor's clock and through `decide` on a given one.
#[test]
fn gcra_decisions_racing_on_threads_let_exactly_the_burst_through() {
    use ee_core::Key;
    use ee_ratelimit::MemoryLimiter;

    let rule = Rule::gcra(1, Duration::from_secs(3600), 1000);
    let fast = Arc::new(MemoryLimiter::system(rule));
    let given = Arc::new(MemoryLimiter::new(rule, ManualClock::new()));
    let race = |decide: Arc<dyn Fn(&Key) -> bool + Send + Sync>| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let decide = decide.clone();
                std::thread::spawn(move || {
                    let key = Key::from(std::net::IpAddr::from([192, 0, 2, 1]));
                    (0..5_000).filter(|_| decide(&key)).count()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum::<usize>()
    };
    let l = fast.clone();
    let admit = move |k: &Key| {
        matches!(
            ee_ratelimit::Limiter::admit_now(&*l, k, 1),
            ee_ratelimit::Admission::Allowed
        )
    };
    assert_eq!(race(Arc::new(admit)), 1000);
    let l = given.clone();
    assert_eq!(
        race(Arc::new(move |k| l.decide(k, 1).unwrap().allowed)),
        1000
    );
    assert_eq!((fast.len(), given.len()), (1, 1));
}

/// `admit_now`, the layer's call when it writes no header: an allowed request
/// is counted, a refusal is decided in full and takes nothing, on every path
/// of the memory store (GCRA on governor's clock or a given one, costs 1 and
/// more, a cost above the burst, a counted rule).
#[test]
fn admit_now_counts_what_it_allows_and_decides_what_it_refuses() {
    use ee_core::Key;
    use ee_ratelimit::MemoryLimiter;
    use ee_ratelimit::{Admission, Limiter};

    let hour = Duration::from_secs(3600);
    let check = |limiter: &dyn Fn(u32) -> Admission, name: &str| {
        assert!(matches!(limiter(2), Admission::Allowed), "{name}");
        match limiter(2) {
            Admission::Decided(Ok(d)) => {
                assert!(!d.allowed, "{name}");
                assert!(d.retry_after.is_some(), "{name}: 2 fits once time passes");
            }
            other => panic!("{name}: {other:?}"),
        }
        // The refusal took nothing: the last unit is still there.
        assert!(matches!(limiter(1), Admission::Allowed), "{name}");
        match limiter(4) {
            Admission::Decided(Ok(d)) => {
                assert!(!d.allowed, "{name}");
                assert_eq!(d.retry_after, None, "{name}: 4 never fits in 3");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(
            matches!(limiter(1), Admission::Decided(Ok(d)) if !d.allowed),
            "{name}"
        );
    };
    let key = Key::text("client");
    let fast = MemoryLimiter::system(Rule::gcra(1, hour, 3));
    check(&|cost| fast.admit_now(&key, cost), "gcra, governor's clock");
    let given = MemoryLimiter::new(Rule::gcra(1, hour, 3), ManualClock::new());
    check(&|cost| given.admit_now(&key, cost), "gcra, given clock");
    let bucket = MemoryLimiter::new(Rule::token_bucket(3, 1, hour), ManualClock::new());
    check(&|cost| bucket.admit_now(&key, cost), "token bucket");
}
