//! The Grafana dashboard and the Prometheus alert rules name only metrics the
//! code really emits: every ee layer runs real traffic (Redis up, then
//! stopped), the exporter renders, and each name the two files use must be
//! among the rendered series.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use ee_core::{RedisConfig, RedisConn};
use ee_metrics::{MetricsLayer, Prometheus};
use ee_ratelimit::{Policy, RateLimitLayer, Rule};
use ee_testing::RedisServer;
use tower::ServiceExt;

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Order {
    #[schemars(range(min = 1))]
    quantity: u32,
}

/// Metric names a file mentions: `ee_…` and `process_…` identifiers.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = text[i..].starts_with("ee_") || text[i..].starts_with("process_");
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && boundary {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .map_or(text.len(), |n| i + n);
            names.insert(text[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// The series names of a rendered exposition.
fn rendered_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

async fn send(app: &Router, req: http::Request<axum::body::Body>) -> u16 {
    app.clone().oneshot(req).await.unwrap().status().as_u16()
}

fn post_json(path: &str, key: Option<&str>, body: &str) -> http::Request<axum::body::Body> {
    let mut b = http::Request::post(path)
        .header("content-type", "application/json")
        .extension(ee_core::PeerAddr("10.0.0.1:1234".parse().unwrap()));
    if let Some(key) = key {
        b = b.header("idempotency-key", format!("\"{key}\""));
    }
    b.body(axum::body::Body::from(body.to_owned())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alerts_use_only_emitted_metric_names() {
    let prometheus = Prometheus::builder()
        .global_label("service", "observability-test")
        .install()
        .expect("the only recorder of this test binary");
    let mut redis = RedisServer::start();
    let config = RedisConfig::standalone(redis.url()).with_timeout(Duration::from_millis(200));
    let conn = RedisConn::connect(&config).await.unwrap();

    let limits = RateLimitLayer::builder(ee_ratelimit::RedisStore::new(conn.clone()))
        .policy(Policy::new(
            "api",
            Rule::gcra(1000, Duration::from_secs(1), 1000),
        ))
        .build()
        .unwrap();
    let app =
        Router::new()
            .route(
                "/orders",
                post(
                    |ee_validate::Valid(o): ee_validate::Valid<Order>| async move {
                        o.quantity.to_string()
                    },
                )
                .layer(ee_idempotency::IdempotencyLayer::new(
                    ee_idempotency::RedisStore::new(conn.clone()),
                )),
            )
            .layer(limits)
            .layer(MetricsLayer::new());

    // ee-cache: a memory cache that loads and evicts, a Redis cache that
    // will drop writes once Redis is gone.
    let memory: ee_cache::Cache<str, String> = ee_cache::Cache::builder("obs-memory")
        .build(
            ee_cache::MemoryStore::builder()
                .max_entries(5)
                .name("obs-memory")
                .build(),
        )
        .unwrap();
    let remote: ee_cache::Cache<str, String, ee_cache::RedisStore> =
        ee_cache::Cache::builder("obs-redis")
            .build(ee_cache::RedisStore::new(conn.clone()))
            .unwrap();

    // ee-queue: a queue whose job fails for good (the dead-letter alert).
    let jobs = ee_queue::Queue::memory("obs-jobs").unwrap();
    jobs.add("x", &1, ee_queue::JobOptions::default())
        .await
        .unwrap();
    let failing = tower::service_fn(|_job: ee_queue::Job<u32>| async { Err::<(), _>("no") });
    let worker = ee_queue::Worker::new(jobs.clone(), failing).start();
    for _ in 0..200 {
        if jobs.counts().await.unwrap().get(ee_queue::JobState::Failed) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown(Duration::from_secs(1)).await;

    // With Redis up.
    assert_eq!(
        send(&app, post_json("/orders", Some("k1"), r#"{"quantity": 2}"#)).await,
        200
    );
    assert_eq!(
        send(&app, post_json("/orders", Some("k1"), r#"{"quantity": 2}"#)).await,
        200
    );
    assert_eq!(
        send(&app, post_json("/orders", Some("k2"), r#"{"quantity": 0}"#)).await,
        422
    );
    for i in 0..50 {
        let key = i.to_string();
        let _ = memory
            .get_or_load(key.as_str(), || async {
                Ok::<_, std::io::Error>(Some("v".to_owned()))
            })
            .await;
    }
    assert!(memory.store().len() <= 5, "the memory store evicted");
    let _ = remote
        .get_or_load("a", || async {
            Ok::<_, std::io::Error>(Some("v".to_owned()))
        })
        .await;

    // With Redis stopped: backend errors everywhere, requests still answered.
    redis.stop();
    let status = send(&app, post_json("/orders", Some("k3"), r#"{"quantity": 3}"#)).await;
    assert!(status == 200 || status == 503, "{status}");
    let _ = remote
        .get_or_load("b", || async {
            Ok::<_, std::io::Error>(Some("v".to_owned()))
        })
        .await;

    let rendered = rendered_names(&prometheus.render());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for file in [
        "docs/grafana/ee-dashboard.json",
        "docs/prometheus/ee-alerts.yml",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        if file.ends_with(".json") {
            let _: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
        }
        let used = names_in(&text);
        assert!(used.len() >= 5, "{file} names {used:?}");
        let missing: Vec<&String> = used.iter().filter(|n| !rendered.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics the code does not emit: {missing:?}\nrendered: {rendered:?}"
        );
    }
}
