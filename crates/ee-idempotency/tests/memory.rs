//! The layer on the in-memory store: replay, 409, 422, 400, 413, what is
//! stored and what is not, TTL and lease expiry, scopes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Counting, post, send};
use ee_core::HeaderKey;
use ee_idempotency::{
    IdempotencyConfig, IdempotencyError, IdempotencyLayer, IdempotencyStore, MemoryStore,
};
use ee_testing::ManualClock;
use http::{HeaderName, Request, StatusCode};
use tower::{Layer, ServiceExt};

#[tokio::test]
async fn a_retry_gets_the_stored_response_and_the_handler_runs_once() {
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let handler = Counting::default();
    let first = send(
        &layer,
        &handler,
        post("/orders", Some("\"k-1\""), "{\"qty\":2}"),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.text(), "run 1: {\"qty\":2}");
    assert!(first.header("idempotent-replayed").is_none());

    let again = send(
        &layer,
        &handler,
        post("/orders", Some("\"k-1\""), "{\"qty\":2}"),
    )
    .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.text(), "run 1: {\"qty\":2}");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("x-run"), Some("1"), "headers are replayed");
    assert!(
        again.header("connection").is_none(),
        "hop-by-hop headers are not"
    );
    assert_eq!(handler.runs(), 1);

    // Unquoted keys (what many clients send) work the same; another key runs again.
    let bare = send(&layer, &handler, post("/orders", Some("k-2"), "{}")).await;
    assert_eq!(bare.text(), "run 2: {}");
    assert_eq!(
        send(&layer, &handler, post("/orders", Some("k-2"), "{}"))
            .await
            .text(),
        "run 2: {}"
    );
    assert_eq!(handler.runs(), 2);
}

/// The default scope is method + path + authenticated subject: the same key sent to another
/// route, with another method, or by another user is another record (issue 27: a client's
/// `order-<id>` key sent to `/v1/orders` made the payment service's own key answer 422 for good
/// when both shared one store).
#[tokio::test]
async fn the_same_key_on_another_route_method_or_subject_is_another_record() {
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let handler = Counting::default();
    let as_user = |mut req: Request<axum::body::Body>, who: &str| {
        req.extensions_mut().insert(ee_core::Subject::new(who));
        req
    };
    let first = send(&layer, &handler, post("/orders", Some("order-1"), "{}")).await;
    assert_eq!(first.status, StatusCode::CREATED);
    for req in [
        post("/payments", Some("order-1"), "{}"),
        Request::patch("/orders")
            .header("idempotency-key", "order-1")
            .body("{}".into())
            .unwrap(),
        as_user(post("/orders", Some("order-1"), "{}"), "user:anne"),
        as_user(post("/orders", Some("order-1"), "{}"), "user:bob"),
    ] {
        let res = send(&layer, &handler, req).await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.text());
        assert!(res.header("idempotent-replayed").is_none());
    }
    assert_eq!(handler.runs(), 5);
    // Each is replayed within its own scope.
    let again = send(
        &layer,
        &handler,
        as_user(post("/orders", Some("order-1"), "{}"), "user:anne"),
    )
    .await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(handler.runs(), 5);
}

#[tokio::test]
async fn the_same_key_with_another_payload_is_422() {
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let handler = Counting::default();
    send(&layer, &handler, post("/orders", Some("k"), "{\"qty\":2}")).await;
    for req in [
        post("/orders", Some("k"), "{\"qty\":3}"),
        post("/orders?x=1", Some("k"), "{\"qty\":2}"),
    ] {
        let res = send(&layer, &handler, req).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            res.problem().type_uri(),
            "https://ee.rs/problems/idempotency/key-reused"
        );
    }
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn another_client_with_the_same_key_and_payload_never_gets_the_stored_response() {
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let handler = Counting::default();
    let as_client = |token: &str| {
        let mut req = post("/orders", Some("k"), "{}");
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        req
    };
    assert_eq!(
        send(&layer, &handler, as_client("alice")).await.status,
        StatusCode::CREATED
    );
    let other = send(&layer, &handler, as_client("mallory")).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        send(&layer, &handler, as_client("alice"))
            .await
            .header("idempotent-replayed"),
        Some("true")
    );
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn a_request_cut_off_mid_flight_keeps_its_key_until_the_lease_ends() {
    let clock = ManualClock::new();
    let config = IdempotencyConfig {
        lease_ms: 10_000,
        ..IdempotencyConfig::default()
    };
    let layer = IdempotencyLayer::new(MemoryStore::with_clock(clock.clone()))
        .config(&config)
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = Counting {
        gate: Some(gate.clone()),
        ..Counting::default()
    };
    let svc = layer.layer(handler.service());
    let first = tokio::spawn(svc.clone().oneshot(post("/pay", Some("cut"), "1")));
    while handler.runs() == 0 {
        tokio::task::yield_now().await;
    }
    first.abort(); // the client went away; the handler may have charged the card
    let _ = first.await;
    gate.add_permits(100);
    let retry = send(&layer, &handler, post("/pay", Some("cut"), "1")).await;
    assert_eq!(
        retry.status,
        StatusCode::CONFLICT,
        "not run again while the lease holds"
    );
    clock.advance(Duration::from_secs(11));
    let later = send(&layer, &handler, post("/pay", Some("cut"), "1")).await;
    assert_eq!(later.status, StatusCode::CREATED);
    assert_eq!(handler.runs(), 2);
}

#[tokio::test]
async fn a_request_in_flight_makes_its_twin_wait_with_409() {
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = Counting {
        gate: Some(gate.clone()),
        ..Counting::default()
    };
    let svc = layer.layer(handler.service());
    let first = tokio::spawn(svc.clone().oneshot(post("/pay", Some("p-1"), "10")));
    while handler.runs() == 0 {
        tokio::task::yield_now().await;
    }
    let twin = ee_testing::TestResponse::from_response(
        svc.clone()
            .oneshot(post("/pay", Some("p-1"), "10"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(twin.status, StatusCode::CONFLICT);
    assert_eq!(twin.header("retry-after"), Some("1"));
    assert_eq!(
        twin.problem().type_uri(),
        "https://ee.rs/problems/idempotency/in-flight"
    );
    // Same key, other payload, while in flight: still a misuse (422).
    let other = ee_testing::TestResponse::from_response(
        svc.clone()
            .oneshot(post("/pay", Some("p-1"), "99"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    gate.add_permits(10);
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::CREATED);
    let after = send(&layer, &handler, post("/pay", Some("p-1"), "10")).await;
    assert_eq!(after.header("idempotent-replayed"), Some("true"));
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn bad_keys_and_bodies_are_problems_and_nothing_runs() {
    let config = IdempotencyConfig {
        required: true,
        max_key_len: 16,
        max_request_body: 8,
        ..IdempotencyConfig::default()
    };
    let layer = IdempotencyLayer::new(MemoryStore::new())
        .config(&config)
        .unwrap();
    let handler = Counting::default();
    let res = send(&layer, &handler, post("/orders", None, "{}")).await;
    assert_eq!(res.status, 400);
    assert_eq!(
        res.problem().type_uri(),
        "https://ee.rs/problems/idempotency/missing-key"
    );
    for key in [
        "\"\"",
        "\"unterminated",
        "0123456789abcdefX",
        "with space",
        "\"a\\nb\"",
    ] {
        let res = send(&layer, &handler, post("/orders", Some(key), "{}")).await;
        assert_eq!(res.status, 400, "{key:?}");
        assert_eq!(
            res.problem().type_uri(),
            "https://ee.rs/problems/idempotency/malformed-key"
        );
    }
    let mut non_ascii = post("/orders", None, "{}");
    non_ascii.headers_mut().insert(
        "idempotency-key",
        http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
    );
    assert_eq!(send(&layer, &handler, non_ascii).await.status, 400);
    let mut twice = post("/orders", Some("a"), "{}");
    twice
        .headers_mut()
        .append("idempotency-key", "b".parse().unwrap());
    assert_eq!(send(&layer, &handler, twice).await.status, 400);

    let res = send(&layer, &handler, post("/orders", Some("big"), "0123456789")).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        res.problem().type_uri(),
        "https://ee.rs/problems/idempotency/body-too-large"
    );
    assert_eq!(handler.runs(), 0, "no bad request reached the handler");

    // Safe methods are never guarded, with or without a key.
    let get = Request::get("/orders")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(
        send(&layer, &handler, get).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn server_errors_and_oversized_responses_are_not_stored() {
    let config = IdempotencyConfig {
        max_response_body: 1024,
        ..IdempotencyConfig::default()
    };
    let store = MemoryStore::new();
    let layer = IdempotencyLayer::new(store.clone())
        .config(&config)
        .unwrap();
    let handler = Counting::default();
    for _ in 0..2 {
        let res = send(&layer, &handler, post("/fail", Some("f"), "")).await;
        assert_eq!(res.status, 503);
        assert!(res.header("idempotent-replayed").is_none());
    }
    assert_eq!(handler.runs(), 2, "a 5xx frees the key: the retry runs");
    // A 3 KiB response over a 1 KiB limit: sent whole, not stored.
    for _ in 0..2 {
        let res = send(&layer, &handler, post("/big", Some("b"), "")).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.body.len(), 3 * 1024);
    }
    assert_eq!(handler.runs(), 4);
    assert!(store.is_empty(), "freed keys leave nothing behind");

    // Which statuses are stored is configurable: here 503s too.
    let layer = IdempotencyLayer::new(MemoryStore::new()).store_when(|_| true);
    let handler = Counting::default();
    send(&layer, &handler, post("/fail", Some("f"), "")).await;
    let res = send(&layer, &handler, post("/fail", Some("f"), "")).await;
    assert_eq!(res.header("idempotent-replayed"), Some("true"));
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn records_expire_after_the_ttl_and_abandoned_leases_free_the_key() {
    let clock = ManualClock::new();
    let config = IdempotencyConfig {
        ttl_ms: 60_000,
        lease_ms: 5_000,
        ..IdempotencyConfig::default()
    };
    let store = MemoryStore::with_clock(clock.clone());
    let layer = IdempotencyLayer::new(store.clone())
        .config(&config)
        .unwrap();
    let handler = Counting::default();
    send(&layer, &handler, post("/o", Some("t"), "")).await;
    clock.advance(Duration::from_secs(59));
    assert_eq!(
        send(&layer, &handler, post("/o", Some("t"), ""))
            .await
            .header("idempotent-replayed"),
        Some("true")
    );
    clock.advance(Duration::from_secs(2));
    assert!(
        send(&layer, &handler, post("/o", Some("t"), ""))
            .await
            .header("idempotent-replayed")
            .is_none()
    );
    assert_eq!(handler.runs(), 2);

    // A holder that crashed (took the key, never completed): blocked for the
    // lease, free after it.
    let fp = [1; 32];
    let key = "ee:idempotency:%:crashed";
    assert_eq!(
        store
            .begin(key, &fp, 7, Duration::from_secs(5))
            .await
            .unwrap(),
        ee_idempotency::Begin::Acquired
    );
    assert!(matches!(
        store
            .begin(key, &fp, 8, Duration::from_secs(5))
            .await
            .unwrap(),
        ee_idempotency::Begin::InFlight { .. }
    ));
    clock.advance(Duration::from_secs(6));
    assert_eq!(
        store
            .begin(key, &fp, 9, Duration::from_secs(5))
            .await
            .unwrap(),
        ee_idempotency::Begin::Acquired
    );
}

#[tokio::test]
async fn scopes_separate_the_same_key_of_different_clients() {
    let layer = IdempotencyLayer::new(MemoryStore::new())
        .scope(HeaderKey::new(HeaderName::from_static("x-user")));
    let handler = Counting::default();
    let as_user = |user: &str| {
        let mut req = post("/o", Some("same"), "{}");
        req.headers_mut().insert("x-user", user.parse().unwrap());
        req
    };
    assert_eq!(
        send(&layer, &handler, as_user("alice")).await.text(),
        "run 1: {}"
    );
    assert_eq!(
        send(&layer, &handler, as_user("bob")).await.text(),
        "run 2: {}"
    );
    assert_eq!(
        send(&layer, &handler, as_user("alice")).await.text(),
        "run 1: {}"
    );
    // No scope key: the extractor's problem.
    let res = send(&layer, &handler, post("/o", Some("same"), "{}")).await;
    assert_eq!(res.status, 400);
    assert_eq!(
        res.problem().type_uri(),
        "https://ee.rs/problems/core/missing-header"
    );
}

#[tokio::test]
async fn a_hundred_identical_concurrent_requests_run_the_handler_once() {
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let handler = Counting::default();
    let svc = layer.layer(handler.service());
    let tasks: Vec<_> = (0..100)
        .map(|_| tokio::spawn(svc.clone().oneshot(post("/pay", Some("once"), "5"))))
        .collect();
    let mut statuses = std::collections::HashMap::new();
    for t in tasks {
        let res = t.await.unwrap().unwrap();
        *statuses.entry(res.status().as_u16()).or_insert(0) += 1;
    }
    assert_eq!(handler.runs(), 1);
    assert_eq!(
        statuses.keys().filter(|s| ![201, 409].contains(*s)).count(),
        0,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_config_is_checked_when_it_is_applied() {
    let apply = |config: IdempotencyConfig| {
        IdempotencyLayer::new(MemoryStore::new())
            .config(&config)
            .map(|_| ())
    };
    assert_eq!(
        apply(IdempotencyConfig {
            methods: vec!["POST".into(), "P OST".into()],
            ..IdempotencyConfig::default()
        }),
        Err(IdempotencyError::Config(
            "`methods`: `P OST` is not an HTTP method".into()
        ))
    );
    for (config, field) in [
        (
            IdempotencyConfig {
                ttl_ms: 0,
                ..IdempotencyConfig::default()
            },
            "`ttl_ms`",
        ),
        (
            IdempotencyConfig {
                lease_ms: 0,
                ..IdempotencyConfig::default()
            },
            "`lease_ms`",
        ),
    ] {
        let err = apply(config).unwrap_err();
        assert!(err.to_string().contains(field), "{err}");
    }
    // Lower-case methods are methods; the config replaces the default one.
    let layer = IdempotencyLayer::new(MemoryStore::new())
        .config(&IdempotencyConfig {
            methods: vec!["put".into()],
            ..IdempotencyConfig::default()
        })
        .unwrap();
    let handler = Counting::default();
    let put = || {
        Request::put("/o")
            .header("idempotency-key", "p")
            .body(axum::body::Body::from("1"))
            .unwrap()
    };
    send(&layer, &handler, put()).await;
    let again = send(&layer, &handler, put()).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    send(&layer, &handler, post("/o", Some("p"), "1")).await;
    send(&layer, &handler, post("/o", Some("p"), "1")).await;
    assert_eq!(handler.runs(), 3, "PUT guarded, POST no longer");
    // A set-up error reaching a client is a 500 without its text.
    let problem = ee_core::Problem::from(IdempotencyError::Config("secret".into()));
    assert_eq!(problem.status(), 500);
    assert_eq!(problem.detail(), None);
    assert!(!String::from_utf8_lossy(&problem.to_json_bytes()).contains("secret"));
}

#[tokio::test]
async fn a_store_picked_at_run_time_is_one_layer_type() {
    use ee_idempotency::AnyStore;
    let layer: IdempotencyLayer<AnyStore> = IdempotencyLayer::new(MemoryStore::new().into());
    let handler = Counting::default();
    send(&layer, &handler, post("/o", Some("any"), "1")).await;
    let again = send(&layer, &handler, post("/o", Some("any"), "1")).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn metric_handles_are_registered_and_described_when_the_layer_is_made() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Made under the recorder, used outside it: only handles registered at
    // build time can count these requests.
    let layer = metrics::with_local_recorder(&recorder, || {
        IdempotencyLayer::new(MemoryStore::new()).required(true)
    });
    let handler = Counting::default();
    send(&layer, &handler, post("/o", Some("m"), "1")).await;
    send(&layer, &handler, post("/o", Some("m"), "1")).await;
    send(&layer, &handler, post("/o", Some("m"), "2")).await;
    send(&layer, &handler, post("/o", None, "1")).await;
    let snapshot = snapshotter.snapshot().into_vec();
    let count = |outcome: &str| {
        snapshot.iter().find_map(|(key, _, _, value)| {
            let key = key.key();
            let matches = key.name() == ee_idempotency::METRIC_REQUESTS_TOTAL
                && key
                    .labels()
                    .any(|l| l.key() == "outcome" && l.value() == outcome);
            match value {
                metrics_util::debugging::DebugValue::Counter(n) if matches => Some(*n),
                _ => None,
            }
        })
    };
    assert_eq!(count("executed"), Some(1));
    assert_eq!(count("replayed"), Some(1));
    assert_eq!(count("mismatch"), Some(1));
    assert_eq!(count("rejected"), Some(1));
    for name in [
        ee_idempotency::METRIC_REQUESTS_TOTAL,
        ee_idempotency::METRIC_STORED_BYTES,
        ee_idempotency::METRIC_BACKEND_ERRORS_TOTAL,
    ] {
        let described = snapshot
            .iter()
            .find(|(key, ..)| key.key().name() == name)
            .map(|(_, unit, help, _)| (unit.is_some(), help.is_some()));
        assert_eq!(described, Some((true, true)), "{name}");
    }
}

/// A flood of distinct keys fills the byte bound, then new keys are refused
/// (503: the default `fail_closed` policy) while every kept record stays; room
/// comes back as records expire. Kept records are never evicted early.
#[tokio::test]
async fn a_flood_of_keys_is_bounded_in_bytes() {
    let clock = ManualClock::new();
    let store = MemoryStore::with_clock(clock.clone()).with_max_bytes(20_000);
    let layer = IdempotencyLayer::new(store.clone());
    let handler = Counting::default();
    let (mut stored, mut refused) = (0, 0);
    for i in 0..1_000 {
        let res = send(&layer, &handler, post("/o", Some(&format!("k{i}")), "{}")).await;
        match res.status {
            StatusCode::CREATED => stored += 1,
            StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            other => panic!("{other}: {}", res.text()),
        }
    }
    assert!(
        stored > 10 && refused > 500,
        "{stored} stored, {refused} refused"
    );
    // Over the bound by at most the responses admitted before it was reached.
    assert!(store.bytes() < 20_000 + 1_000, "{}", store.bytes());
    assert_eq!(handler.runs(), stored);
    // Every stored key still replays: nothing was evicted to make room.
    let res = send(&layer, &handler, post("/o", Some("k0"), "{}")).await;
    assert_eq!(res.header("idempotent-replayed"), Some("true"));
    // Once the records expire (24 h retention), new keys are taken again.
    clock.advance(Duration::from_secs(24 * 3600 + 1));
    let res = send(&layer, &handler, post("/o", Some("fresh"), "{}")).await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert!(store.bytes() < 2_000, "{}", store.bytes());
}
