//! What the idempotency layer adds to a request, beside the same handler
//! without it (the anchor), in one group per store:
//!
//! - `first`: a new key each time (lock, run, store);
//! - `replay`: the same key each time (read and replay).
//!
//! Memory store on a current-thread runtime; Redis store (a throwaway
//! `redis-server`) where a first request is 2 round trips and a replay 1 (the
//! counts are asserted in `tests/redis.rs`).
//!
//! Run: `cargo bench -p ee-idempotency --features redis`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use ee_core::{RedisConfig, RedisConn};
use ee_idempotency::{IdempotencyLayer, IdempotencyStore, MemoryStore, RedisStore};
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt};

const BODY: &str = r#"{"sku":"A-1","qty":2,"customer":"c-42"}"#;

fn handler()
-> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(
            Response::builder()
                .status(201)
                .header("content-type", "application/json")
                .body(Body::from(Bytes::from_static(
                    br#"{"order":"o-1","status":"placed"}"#,
                )))
                .unwrap(),
        )
    })
}

fn post(key: &str) -> Request<Body> {
    Request::post("/orders")
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(Body::from(BODY))
        .unwrap()
}

fn group<St: IdempotencyStore>(
    c: &mut Criterion,
    name: &str,
    rt: &tokio::runtime::Runtime,
    store: St,
) {
    let mut group = c.benchmark_group(name);
    let bare = handler();
    group.bench_function("handler alone (anchor)", |b| {
        b.to_async(rt).iter(|| {
            let svc = bare.clone();
            async move { svc.oneshot(post("k")).await.unwrap() }
        })
    });
    let layered = IdempotencyLayer::new(store).layer(handler());
    let n = AtomicU64::new(0);
    group.bench_function("ee first request", |b| {
        b.to_async(rt).iter(|| {
            let svc = layered.clone();
            let key = format!("first-{}", n.fetch_add(1, Ordering::Relaxed));
            async move {
                let res = svc.oneshot(post(&key)).await.unwrap();
                assert_eq!(res.status(), 201);
                assert!(res.headers().get("idempotent-replayed").is_none());
            }
        })
    });
    rt.block_on(layered.clone().oneshot(post("replayed")))
        .unwrap();
    group.bench_function("ee replay", |b| {
        b.to_async(rt).iter(|| {
            let svc = layered.clone();
            async move {
                let res = svc.oneshot(post("replayed")).await.unwrap();
                assert!(res.headers().get("idempotent-replayed").is_some());
            }
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Every iteration keeps a new key for 24 h: unbounded, so the group measures
    // admission rather than the refusals of a full store.
    let memory = MemoryStore::new().with_max_bytes(usize::MAX);
    group(c, "idempotency_memory", &rt, memory);
    let server = ee_testing::RedisServer::start();
    let conn = rt
        .block_on(RedisConn::connect(&RedisConfig::standalone(server.url())))
        .unwrap();
    group(c, "idempotency_redis", &rt, RedisStore::new(conn));
}

criterion_group!(idempotency, benches);
criterion_main!(idempotency);
