//! One `ee.toml` configures a whole service: every ee crate's config struct
//! loads through ee-config, with environment overrides and every bad key
//! reported with its source.

use ee_config::{Features, Loader};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Service {
    redis: ee_core::RedisConfig,
    logging: ee_logging::LogConfig,
    cache: ee_cache::CacheConfig,
    idempotency: ee_idempotency::IdempotencyConfig,
    ratelimit: Vec<ee_ratelimit::PolicyConfig>,
    db: ee_db::DbConfig,
    queue: ee_queue::QueueConfig,
    worker: ee_queue::WorkerConfig,
    client_ip: ee_core::ClientIpConfig,
    health: ee_health::HealthConfig,
    versioning: ee_versioning::VersioningConfig,
    features: Features,
}

const EE_TOML: &str = r#"
[redis]
url = "redis://cache.internal:6379"
timeout_ms = 150

[logging]
format = "compact"
filter = "info,ee_cache=debug"

[cache]
ttl_ms = 60000
version = 3

[idempotency]
required = true

[db]
url = "postgres://app@db.internal/shop"
replicas = ["postgres://app@replica.internal/shop"]
checkout_test = "ping"

[queue]
max_payload_bytes = 65536
keep_failed = { count = 100 }

[worker]
concurrency = 4
lease_ms = 10000

[client_ip]
trusted_proxies = ["10.0.0.0/8"]
header = "forwarded"

[health]
timeout_ms = 500
drain_ms = 20000

[versioning]
default_version = 2
sources = ["uri", "header:api-version"]

[versioning.lifecycle.v1]
deprecated_at = 1780272000
sunset_at = "Fri, 01 Jan 2027 00:00:00 GMT"
successor = "/v2/orders"

[[ratelimit]]
name = "api"
algorithm = "gcra"
limit = 100
period_ms = 1000
burst = 200

[features.flags]
new_checkout = true
"#;

#[test]
fn one_file_configures_every_crate() {
    let dir = std::env::temp_dir().join(format!("ee-config-service-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ee.toml");
    std::fs::write(&file, EE_TOML).unwrap();
    let service: Service = Loader::new(Service::default())
        .file(&file)
        .env([
            ("EE_CACHE__TTL_MS", "30000"),
            ("EE_REDIS__TIMEOUT_MS", "250"),
            ("EE_DB__MAX_SIZE", "32"),
            ("EE_WORKER__CONCURRENCY", "8"),
        ])
        .load()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(service.redis.url, "redis://cache.internal:6379");
    assert_eq!(service.redis.timeout_ms, 250);
    assert_eq!(service.logging.format, ee_logging::LogFormat::Compact);
    assert_eq!(service.logging.filter, "info,ee_cache=debug");
    assert_eq!(service.cache.ttl_ms, 30_000);
    assert_eq!(service.cache.version, 3);
    assert!(service.idempotency.required);
    assert_eq!(service.ratelimit.len(), 1);
    assert_eq!(service.ratelimit[0].name, "api");
    assert!(service.features.is_enabled("new_checkout", None));
    assert_eq!(service.db.url, "postgres://app@db.internal/shop");
    assert_eq!(service.db.replicas.len(), 1);
    assert_eq!(service.db.max_size, 32);
    assert_eq!(service.db.checkout_test, ee_db::CheckoutTest::Ping);
    assert_eq!(service.queue.max_payload_bytes, 65_536);
    assert_eq!(service.queue.keep_failed.count, Some(100));
    assert_eq!(
        (service.worker.concurrency, service.worker.lease_ms),
        (8, 10_000)
    );
    assert_eq!(service.client_ip.trusted_proxies.len(), 1);
    assert_eq!(
        service.client_ip.header,
        ee_core::ForwardedHeader::Forwarded
    );
    assert_eq!(service.health.timeout_ms, 500);
    assert_eq!(service.health.drain(), std::time::Duration::from_secs(20));
    assert_eq!(service.health.cache_ms, 1_000);
    assert_eq!(service.versioning.default_version, Some(2));
    let v1 = &service.versioning.lifecycle["v1"];
    assert_eq!(
        v1.deprecated_at,
        Some(ee_versioning::Date::Unix(1_780_272_000))
    );
    assert_eq!(v1.successor.as_deref(), Some("/v2/orders"));
    let routes = || {
        ee_versioning::VersionRoutes::new().route("/orders", axum::routing::get(|| async { "o" }))
    };
    ee_versioning::VersionedRouter::new()
        .version(1, routes())
        .version(2, routes())
        .config(&service.versioning)
        .unwrap_or_else(|e| panic!("{e}"));

    // Bad values in two crates' sections: both reported, each with its source.
    let err = Loader::new(Service::default())
        .file(&file)
        .env([
            ("EE_CACHE__TTL_MS", "soon"),
            ("EE_LOGGING__FORMAT", "xml"),
            ("EE_DB__MAX_SIZE", "many"),
        ])
        .load()
        .unwrap_err();
    let keys: Vec<&str> = err.issues.iter().map(|p| p.key.as_str()).collect();
    assert!(
        keys.contains(&"cache.ttl_ms")
            && keys.contains(&"logging.format")
            && keys.contains(&"db.max_size"),
        "{err}"
    );
    assert!(
        err.issues
            .iter()
            .all(|p| p.source.starts_with("environment variable EE_")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
