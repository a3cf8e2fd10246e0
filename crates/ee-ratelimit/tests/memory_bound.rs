//! The in-memory store's bound on keys per policy: a flood of new keys is
//! refused as the store's error while established keys keep their counts,
//! idle keys are swept for room (at most once a second), concurrency keys
//! free when their requests end, and through the layer a refusal follows
//! `on_backend_error` (a 503 problem by default).

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use common::{from_ip, send};
use ee_core::{Clock, Key, OnBackendError, PeerAddr};
use ee_ratelimit::{
    Admission, DEFAULT_MAX_KEYS, Decision, HeaderConfig, Limiter, MemoryLimiter, MemoryStore,
    Policy, RateLimitLayer, RateLimitStore, Rule, StoreError,
};
use ee_testing::ManualClock;
use http::{Request, StatusCode};
use tower::{Layer, ServiceExt};

const CAP: usize = 50;

/// Each rule whose state is a map of its own but concurrency (GCRA on
/// governor, the two windows, the token bucket), 5 per `window`.
fn rules(window: Duration) -> [(&'static str, Rule); 4] {
    [
        ("gcra", Rule::gcra(5, window, 5)),
        ("fixed", Rule::fixed_window(5, window)),
        ("sliding", Rule::sliding_window(5, window)),
        ("bucket", Rule::token_bucket(5, 5, window)),
    ]
}

fn client(i: usize) -> Key {
    Key::text(format!("client-{i}"))
}

/// Whether `result` is the store's refusal of a new key for want of room.
fn refused_full(result: &Result<Decision, StoreError>) -> bool {
    matches!(
        result,
        Err(StoreError::Unavailable(msg))
            if msg.contains("is full") && msg.contains("MemoryStore::with_max_keys")
    )
}

/// Fills `limiter` with `client(1..CAP)`, one request each, beside
/// `client(0)`, which has used 2 of its 5; then floods it with 500 new keys.
fn fill_and_flood<C: Clock>(limiter: &MemoryLimiter<C>, name: &str) {
    for expected in [4, 3] {
        let d = limiter.decide(&client(0), 1).unwrap();
        assert!(d.allowed, "{name}");
        assert_eq!(d.remaining, expected, "{name}");
    }
    for i in 1..CAP {
        assert!(limiter.decide(&client(i), 1).unwrap().allowed, "{name}");
    }
    assert_eq!(limiter.len(), CAP, "{name}");
    for i in CAP..CAP + 500 {
        let result = limiter.decide(&client(i), 1);
        assert!(refused_full(&result), "{name}: {result:?}");
    }
    let admitted = limiter.admit_now(&client(CAP + 500), 1);
    assert!(
        matches!(&admitted, Admission::Decided(r) if refused_full(r)),
        "{name}: {admitted:?}"
    );
    assert_eq!(limiter.len(), CAP, "{name}: the flood took no room");
}

/// The established client kept its count through the flood: 3 more, then
/// refused by its own limit (a decision, not the store's error).
fn established_keeps_counting<C: Clock>(limiter: &MemoryLimiter<C>, name: &str) {
    for expected in [2, 1, 0] {
        let d = limiter.decide(&client(0), 1).unwrap();
        assert!(d.allowed, "{name}");
        assert_eq!(d.remaining, expected, "{name}: counted on, not reset");
    }
    let d = limiter.decide(&client(0), 1).unwrap();
    assert!(!d.allowed, "{name}");
    assert!(d.retry_after.is_some(), "{name}");
}

#[test]
fn a_flood_of_new_keys_is_refused_while_established_keys_keep_their_counts() {
    for (name, rule) in rules(Duration::from_secs(10)) {
        let clock = ManualClock::new();
        let limiter = MemoryStore::with_clock(clock.clone())
            .with_max_keys(CAP)
            .limiter("api", &rule);
        assert_eq!(limiter.max_keys(), CAP);
        fill_and_flood(&limiter, name);
        established_keeps_counting(&limiter, name);
        // Keys already there all still count too.
        assert!(limiter.decide(&client(1), 1).unwrap().allowed, "{name}");
        assert_eq!(limiter.len(), CAP, "{name}");
    }
    // GCRA on governor's own clock (the store on the system clock): the
    // layer's inlined path, through `decide` and `admit_now`.
    let rule = Rule::gcra(5, Duration::from_secs(3600), 5);
    let limiter = MemoryStore::new().with_max_keys(CAP).limiter("api", &rule);
    fill_and_flood(&limiter, "gcra, governor's clock");
    established_keeps_counting(&limiter, "gcra, governor's clock");
    assert!(matches!(
        limiter.admit_now(&client(1), 1),
        Admission::Allowed
    ));
}

#[test]
fn idle_keys_are_swept_for_room_at_most_once_a_second() {
    // Quotas of 5 per second: a key with one request is idle 0.2 s later
    // (GCRA, token bucket), in the next window (fixed) or the one after
    // (sliding); the periodic sweep waits 10 s.
    for (name, rule) in rules(Duration::from_secs(1)) {
        let clock = ManualClock::new();
        let limiter = MemoryStore::with_clock(clock.clone())
            .with_max_keys(CAP)
            .limiter("api", &rule);
        let fill = |from: usize, n: usize| {
            for i in from..from + n {
                assert!(limiter.decide(&client(i), 1).unwrap().allowed, "{name}");
            }
            assert_eq!(limiter.len(), CAP, "{name}");
        };
        fill(0, CAP);
        assert!(refused_full(&limiter.decide(&client(1000), 1)), "{name}");
        // 2.5 s later every key is idle: the first new key sweeps them and
        // is admitted, and the others after it.
        clock.advance(Duration::from_millis(2500));
        assert!(limiter.decide(&client(1000), 1).unwrap().allowed, "{name}");
        assert_eq!(limiter.len(), 1, "{name}: the idle keys were swept");
        fill(1001, CAP - 1);
        assert!(refused_full(&limiter.decide(&client(2000), 1)), "{name}");
        // 0.5 s after that sweep, some keys are idle again (not the
        // sliding window's yet), but the map is walked at most once a second.
        clock.advance(Duration::from_millis(500));
        for i in 2000..2100 {
            assert!(refused_full(&limiter.decide(&client(i), 1)), "{name}");
        }
        assert_eq!(limiter.len(), CAP, "{name}");
        clock.advance(Duration::from_millis(1600));
        assert!(limiter.decide(&client(2000), 1).unwrap().allowed, "{name}");
        assert_eq!(limiter.len(), 1, "{name}");
    }
}

#[test]
fn concurrency_keys_free_when_their_requests_end() {
    let limiter = MemoryStore::new()
        .with_max_keys(CAP)
        .limiter("api", &Rule::concurrency(2));
    let take = |key: &Key| limiter.check_now(key, 1).unwrap();
    let mut tickets = Vec::new();
    for i in 0..CAP {
        let d = take(&client(i)).unwrap();
        assert!(d.allowed);
        tickets.push(d.ticket);
    }
    assert_eq!(limiter.len(), CAP);
    for i in CAP..CAP + 500 {
        assert!(refused_full(&take(&client(i))));
    }
    // The established client takes its second slot, and is then refused
    // by its own limit.
    assert!(take(&client(0)).unwrap().allowed);
    let third = take(&client(0)).unwrap();
    assert!(!third.allowed);
    assert_eq!(third.remaining, 0);
    // Client 1's request ends: its key goes, and a new one takes its room.
    limiter.release(&client(1), 1, tickets[1]);
    assert_eq!(limiter.len(), CAP - 1);
    assert!(take(&client(CAP)).unwrap().allowed);
    assert!(refused_full(&take(&client(CAP + 1))));
    // Client 0 gives both slots back: its key goes too.
    limiter.release(&client(0), 1, tickets[0]);
    limiter.release(&client(0), 1, tickets[0]);
    assert!(take(&client(CAP + 1)).unwrap().allowed);
    assert_eq!(limiter.len(), CAP);
}

fn layer<C: Clock>(
    store: MemoryStore<C>,
    rule: Rule,
    headers: HeaderConfig,
    on_error: Option<OnBackendError>,
) -> RateLimitLayer<MemoryLimiter<C>> {
    let builder = RateLimitLayer::builder(store)
        .policy(Policy::new("api", rule))
        .headers(headers);
    match on_error {
        Some(action) => builder.on_backend_error(action),
        None => builder,
    }
    .build()
    .unwrap()
}

/// Layers on `store` bounded to 3 keys, by the default outage policy,
/// `fail_closed` and `fail_open`: the first two answer a new key past the
/// bound with the 503 problem, the last lets it through uncounted; the
/// established clients keep their quotas; each refusal is counted.
async fn refusals_follow_on_backend_error<C: Clock>(
    name: &str,
    store: MemoryStore<C>,
    rule: Rule,
    headers: HeaderConfig,
) {
    let store = store.with_max_keys(3);
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (default, closed, open) = metrics::with_local_recorder(&recorder, || {
        (
            layer(store.clone(), rule, headers, None),
            layer(
                store.clone(),
                rule,
                headers,
                Some(OnBackendError::FailClosed),
            ),
            layer(store.clone(), rule, headers, Some(OnBackendError::FailOpen)),
        )
    });
    for l in [&default, &closed, &open] {
        for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            assert_eq!(send(l, from_ip(ip)).await.status, 200, "{name}");
        }
    }
    // The default (`fallback_to_memory`, with no other memory to fall back
    // to) and `fail_closed`: a 503 problem, as for an outage.
    for l in [&default, &closed] {
        let res = send(l, from_ip("192.0.2.4")).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{name}");
        assert_eq!(
            res.header("content-type"),
            Some("application/problem+json"),
            "{name}"
        );
        assert_eq!(res.header("retry-after"), Some("1"), "{name}");
        let problem = res.problem();
        assert_eq!(
            problem.type_uri(),
            "https://ee.rs/problems/ratelimit/unavailable",
            "{name}"
        );
        assert_eq!(problem.extension("policy"), Some(&"api".into()), "{name}");
        // An established client still gets its own quota, then a 429.
        assert_eq!(
            statuses(l, "192.0.2.1", 5).await,
            [200, 200, 200, 200, 429],
            "{name}"
        );
    }
    // `fail_open`: the new key passes, uncounted.
    for _ in 0..7 {
        let res = send(&open, from_ip("192.0.2.4")).await;
        assert_eq!(res.status, 200, "{name}");
        assert!(
            res.header("ratelimit").is_none(),
            "{name}: nothing invented"
        );
    }
    assert_eq!(
        statuses(&open, "192.0.2.1", 5).await,
        [200, 200, 200, 200, 429],
        "{name}"
    );
    let counts = ee_testing::counters(&snapshotter);
    let get = |key: &str| counts.get(key);
    assert_eq!(
        get("ee_ratelimit_memory_keys_refused_total{policy=api}"),
        Some(1 + 1 + 7),
        "{name}: {counts:?}"
    );
    assert_eq!(
        get("ee_ratelimit_decisions_total{policy=api,outcome=failed_closed}"),
        Some(2),
        "{name}: {counts:?}"
    );
    assert_eq!(
        get("ee_ratelimit_decisions_total{policy=api,outcome=failed_open}"),
        Some(7),
        "{name}: {counts:?}"
    );
}

#[tokio::test]
async fn through_the_layer_a_new_key_refused_for_room_follows_on_backend_error() {
    let hour = Duration::from_secs(3600);
    for (name, rule) in rules(hour) {
        let store = MemoryStore::with_clock(ManualClock::new());
        refusals_follow_on_backend_error(name, store, rule, HeaderConfig::default()).await;
    }
    // The layer's leanest path: GCRA on governor's clock, keyed by peer IP,
    // no headers.
    let off = HeaderConfig {
        draft: false,
        legacy: false,
    };
    let gcra = Rule::gcra(5, hour, 5);
    refusals_follow_on_backend_error("gcra, lean path", MemoryStore::new(), gcra, off).await;
}

async fn statuses<L: Limiter>(layer: &RateLimitLayer<L>, ip: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(send(layer, from_ip(ip)).await.status.as_u16());
    }
    out
}

/// Concurrency limits through the layer: while 2 clients hold requests in
/// flight, a third client's request is the 503 problem; once a request
/// ends, its room is free.
#[tokio::test]
async fn through_the_layer_concurrency_keys_are_bounded_while_in_flight() {
    let layer = layer(
        MemoryStore::new().with_max_keys(2),
        Rule::concurrency(1),
        HeaderConfig::default(),
        None,
    );
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    // Which client entered the handler, in order (the semaphore is fair:
    // the first to enter is the first a permit lets out).
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel::<String>();
    let slow = {
        let gate = gate.clone();
        tower::service_fn(move |req: Request<Body>| {
            let gate = gate.clone();
            let entered_tx = entered_tx.clone();
            async move {
                let peer = req.extensions().get::<PeerAddr>().unwrap().0.ip();
                entered_tx.send(peer.to_string()).unwrap();
                let _permit = gate.acquire().await.unwrap();
                Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("done")))
            }
        })
    };
    let svc = layer.layer(slow);
    let mut pending = std::collections::HashMap::new();
    for ip in ["192.0.2.1", "192.0.2.2"] {
        pending.insert(ip, tokio::spawn(svc.clone().oneshot(from_ip(ip))));
    }
    let first = entered.recv().await.unwrap();
    let second = entered.recv().await.unwrap();
    // (Were it let in, it would wait in the handler: bounded, to fail.)
    let third = tokio::time::timeout(
        Duration::from_secs(30),
        svc.clone().oneshot(from_ip("192.0.2.3")),
    )
    .await
    .expect("refused at once, not let into the handler")
    .unwrap();
    let third = ee_testing::TestResponse::from_response(third).await;
    assert_eq!(third.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        third.problem().type_uri(),
        "https://ee.rs/problems/ratelimit/unavailable"
    );
    // An established client is refused by its own limit: a 429.
    let again = svc.clone().oneshot(from_ip(&first)).await.unwrap();
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    // The first request ends: its key goes, and client 3 gets in.
    gate.add_permits(1);
    let done = pending.remove(first.as_str()).unwrap();
    assert_eq!(done.await.unwrap().unwrap().status(), 200);
    let third = tokio::spawn(svc.clone().oneshot(from_ip("192.0.2.3")));
    assert_eq!(entered.recv().await.unwrap(), "192.0.2.3");
    gate.add_permits(2);
    assert_eq!(third.await.unwrap().unwrap().status(), 200);
    let rest = pending.remove(second.as_str()).unwrap();
    assert_eq!(rest.await.unwrap().unwrap().status(), 200);
}

#[test]
fn the_default_bound_is_documented_and_described() {
    assert_eq!(DEFAULT_MAX_KEYS, 100_000);
    let limiter = MemoryLimiter::system(Rule::per_second(1));
    assert_eq!(limiter.max_keys(), DEFAULT_MAX_KEYS);
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _layer = metrics::with_local_recorder(&recorder, || {
        layer(
            MemoryStore::new(),
            Rule::per_second(1),
            HeaderConfig::default(),
            None,
        )
    });
    let described: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == ee_ratelimit::METRIC_MEMORY_KEYS_REFUSED_TOTAL)
        .map(|(_, unit, help, _)| (unit, help.is_some_and(|h| !h.is_empty())))
        .collect();
    assert_eq!(described, [(Some(metrics::Unit::Count), true)]);
}
