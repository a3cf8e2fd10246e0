//! Probes against real Redis and PostgreSQL (up, down, slow), cached
//! results, the startup probe, and a graceful shutdown that drops nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use ee_core::{RedisConfig, RedisConn};
use ee_health::{
    DiskCheck, Health, HealthConfig, HealthError, HttpCheck, MemoryCheck, PostgresCheck,
    RedisCheck, check_fn,
};
use ee_testing::{
    Postgres, RedisCluster, RedisServer, TcpProxy, TestResponse, exchange, raw_request, serve,
};
use serde_json::Value;

async fn probe(addr: SocketAddr, path: &str) -> (u16, Value) {
    let res: TestResponse = exchange(addr, &raw_request("GET", path, &[], b"")).await;
    assert_eq!(res.header("content-type"), Some("application/health+json"));
    (res.status.as_u16(), res.json())
}

/// One critical check, `timeout`, no caching, served on a loopback port.
async fn serve_critical(
    name: &str,
    check: impl ee_health::HealthCheck,
    timeout: Duration,
) -> SocketAddr {
    let health = Health::builder()
        .timeout(timeout)
        .critical(name, check)
        .cache_for(Duration::ZERO)
        .build();
    serve(health.router()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_up_down_and_slow() {
    let mut redis = RedisServer::start();
    let conn = RedisConn::connect(
        &RedisConfig::standalone(redis.url()).with_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let addr = serve_critical("redis", RedisCheck(conn), Duration::from_millis(300)).await;
    let (code, body) = probe(addr, "/readyz").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("pass")),
        "{body}"
    );
    assert_eq!(body["checks"]["redis"][0]["status"], "pass");
    assert!(body["checks"]["redis"][0]["latencyMs"].as_f64().unwrap() >= 0.0);

    redis.pause(); // slow: answers nothing
    let (code, body) = probe(addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["checks"]["redis"][0]["output"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{body}"
    );
    redis.resume();

    redis.stop();
    let (code, body) = probe(addr, "/healthz").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (503, Some("fail")),
        "{body}"
    );
    redis.restart();
    let mut recovered = false;
    for _ in 0..50 {
        if probe(addr, "/readyz").await.0 == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "readiness came back after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_up_down_and_slow() {
    let pg = Postgres::connect().await;
    // Down: nothing listens there. Slow: a listener that never answers.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let at = |port: u16| {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(port)
            .user("postgres")
            .dbname("test");
        c.connect_timeout(Duration::from_secs(10));
        PostgresCheck(c)
    };
    let health = Health::builder()
        .timeout(Duration::from_millis(500))
        .critical("postgres", PostgresCheck(pg.config()))
        .non_critical("replica-down", at(closed))
        .non_critical("replica-slow", at(silent_port))
        .cache_for(Duration::ZERO)
        .build();
    let addr = serve(health.router()).await;
    // Critical up, non-critical down: ready, overall warn (200 both).
    let (code, ready) = probe(addr, "/readyz").await;
    assert_eq!(
        (code, ready["status"].as_str()),
        (200, Some("pass")),
        "{ready}"
    );
    assert!(
        ready["checks"].get("replica-down").is_none(),
        "readiness lists critical checks only"
    );
    let (code, all) = probe(addr, "/healthz").await;
    assert_eq!((code, all["status"].as_str()), (200, Some("warn")), "{all}");
    assert_eq!(all["checks"]["postgres"][0]["status"], "pass");
    assert_eq!(all["checks"]["replica-down"][0]["status"], "fail");
    let slow = all["checks"]["replica-slow"][0]["output"].as_str().unwrap();
    assert!(slow.contains("timed out"), "{slow}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_check_passes_and_fails_with_its_nodes() {
    let mut cluster = RedisCluster::start(3);
    let conn = RedisConn::connect(
        &RedisConfig::cluster(cluster.urls()).with_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let addr = serve_critical("redis", RedisCheck(conn), Duration::from_millis(500)).await;
    let (code, body) = probe(addr, "/readyz").await;
    assert_eq!(
        (code, body["checks"]["redis"][0]["status"].as_str()),
        (200, Some("pass")),
        "{body}"
    );
    for node in cluster.nodes_mut() {
        node.stop();
    }
    let (code, body) = probe(addr, "/readyz").await;
    assert_eq!(
        (code, body["checks"]["redis"][0]["status"].as_str()),
        (503, Some("fail")),
        "{body}"
    );
}

/// The real PostgreSQL behind a proxy the test can stall (slow) and cut
/// (down), as a critical check: readiness follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_postgres_down_or_slow_fails_readiness() {
    let pg = Postgres::connect().await;
    let real = pg.config();
    let port = real.get_ports().first().copied().unwrap_or(5432);
    let proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let mut via = tokio_postgres::Config::new();
    via.host("127.0.0.1")
        .port(proxy.addr().port())
        .user(real.get_user().unwrap_or("postgres"))
        .dbname(real.get_dbname().unwrap_or("test"));
    if let Some(password) = real.get_password() {
        via.password(password);
    }
    let addr = serve_critical("postgres", PostgresCheck(via), Duration::from_millis(500)).await;
    let status = |body: &Value| body["checks"]["postgres"][0]["status"].clone();
    let (code, body) = probe(addr, "/readyz").await;
    assert_eq!((code, status(&body)), (200, "pass".into()), "{body}");

    proxy.stall(); // slow: the connection is never answered
    let (code, body) = probe(addr, "/readyz").await;
    assert_eq!((code, status(&body)), (503, "fail".into()), "{body}");
    let output = body["checks"]["postgres"][0]["output"].as_str().unwrap();
    assert!(output.contains("timed out"), "{body}");
    proxy.unstall();

    proxy.cut(); // down: connections refused
    let (code, body) = probe(addr, "/healthz").await;
    assert_eq!(
        (code, body["status"].as_str(), status(&body)),
        (503, Some("fail"), "fail".into()),
        "{body}"
    );

    proxy.restore();
    let (code, body) = probe(addr, "/readyz").await;
    assert_eq!((code, status(&body)), (200, "pass".into()), "{body}");
}

#[tokio::test]
async fn a_probe_storm_runs_the_checks_once_per_interval() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let health = Health::builder()
        .critical(
            "counted",
            check_fn(move || {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<(), std::io::Error>(())
                }
            }),
        )
        .cache_for(Duration::from_millis(500))
        .build();
    let probes: Vec<_> = (0..200)
        .map(|_| {
            let h = health.clone();
            tokio::spawn(async move { h.report().await.status })
        })
        .collect();
    for p in probes {
        assert_eq!(p.await.unwrap(), ee_health::Status::Pass);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    health.report().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn disk_memory_http_and_startup() {
    let upstream = serve(Router::new().route("/ok", get(|| async { "fine" })).route(
        "/down",
        get(|| async { http::StatusCode::SERVICE_UNAVAILABLE }),
    ))
    .await;
    let health = Health::builder()
        .critical("disk", DiskCheck::new(std::env::temp_dir(), 1))
        .critical("memory", MemoryCheck::new(1))
        .critical(
            "payments",
            HttpCheck::new(&format!("http://{upstream}/ok")).unwrap(),
        )
        .non_critical(
            "search",
            HttpCheck::new(&format!("http://{upstream}/down")).unwrap(),
        )
        .non_critical(
            "disk-full",
            DiskCheck::new(std::env::temp_dir(), u64::MAX / 4),
        )
        .startup_probe()
        .cache_for(Duration::ZERO)
        .build();
    let addr = serve(health.router()).await;
    let (code, body) = probe(addr, "/healthz").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("warn")),
        "{body}"
    );
    let check = |name: &str| body["checks"][name][0].clone();
    assert_eq!(check("disk")["status"], "pass");
    assert_eq!(check("disk")["observedUnit"], "bytes");
    assert!(check("disk")["observedValue"].as_f64().unwrap() > 0.0);
    assert_eq!(check("memory")["status"], "pass");
    assert_eq!(check("payments")["status"], "pass");
    assert_eq!(check("search")["status"], "fail");
    assert!(check("search")["output"].as_str().unwrap().contains("503"));
    assert_eq!(check("disk-full")["status"], "fail");
    assert_eq!(probe(addr, "/livez").await.0, 200);
    assert_eq!(probe(addr, "/startupz").await.0, 503);
    health.mark_started();
    assert_eq!(probe(addr, "/startupz").await.0, 200);
    for (url, reason) in [
        ("https://tls.example", "only http:// URLs are checked"),
        ("http:///health", "no host"),
    ] {
        assert_eq!(
            HttpCheck::new(url).unwrap_err(),
            HealthError::Url {
                url: url.into(),
                reason
            }
        );
    }
}

#[tokio::test]
async fn a_config_applies_or_says_which_key_cannot_work() {
    let config = HealthConfig {
        timeout_ms: 50,
        ..HealthConfig::default()
    };
    let health = Health::builder()
        .config(&config)
        .unwrap()
        .critical(
            "slow",
            check_fn(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok::<(), std::io::Error>(())
            }),
        )
        .build();
    let report = health.report().await;
    assert_eq!(
        report.checks[0].outcome.output.as_deref(),
        Some("timed out after 50 ms")
    );
    let zero = HealthConfig {
        timeout_ms: 0,
        ..HealthConfig::default()
    };
    let err = Health::builder().config(&zero).unwrap_err();
    assert!(
        matches!(
            err,
            HealthError::Config {
                field: "timeout_ms",
                ..
            }
        ),
        "{err:?}"
    );
    let problem = ee_core::Problem::from(err);
    assert_eq!(problem.status(), 500);
    assert!(problem.detail().unwrap().contains("health.timeout_ms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_fails_readiness_at_once_and_drains_every_request() {
    let health = Health::builder().build();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "done"
            }),
        )
        .merge(health.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        health
            .clone()
            .serve(listener, app.clone(), Duration::from_secs(10)),
    );
    assert_eq!(probe(addr, "/readyz").await.0, 200);
    let in_flight: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn(
                async move { exchange(addr, &raw_request("GET", "/slow", &[], b"")).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    health.begin_shutdown();
    // Readiness fails at once (asked in process: the listener no longer accepts).
    let req = http::Request::get("/readyz")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(app.clone(), req).await.unwrap();
    assert_eq!(res.status(), 503);
    // Every request in flight completes.
    for r in in_flight {
        let res = r.await.unwrap();
        assert_eq!((res.status.as_u16(), res.text()), (200, "done"));
    }
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_deadline_bounds_the_shutdown() {
    let health = Health::builder().build();
    let app = Router::new().route(
        "/stuck",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "never"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        health
            .clone()
            .serve(listener, app, Duration::from_millis(200)),
    );
    let stuck = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, &raw_request("GET", "/stuck", &[], b""))
            .await
            .unwrap();
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf)
            .await
            .map(|_| buf)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    health.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns at the deadline")
        .unwrap()
        .unwrap();
    drop(stuck); // the stuck request was abandoned at the deadline
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_stop_delay_keeps_accepting_with_readiness_failing() {
    let health = Health::builder()
        .pre_stop(Duration::from_millis(600))
        .build();
    let app = Router::new()
        .route("/work", get(|| async { "done" }))
        .merge(health.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(health.clone().serve(listener, app, Duration::from_secs(5)));
    assert_eq!(probe(addr, "/readyz").await.0, 200);
    let begun = std::time::Instant::now();
    health.begin_shutdown();
    // During the delay: new connections are served, and readiness says 503
    // over the wire, so a load balancer stops sending.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(probe(addr, "/readyz").await.0, 503);
    let work = exchange(addr, &raw_request("GET", "/work", &[], b"")).await;
    assert_eq!((work.status.as_u16(), work.text()), (200, "done"));
    // After it: the listener closes and `serve` returns.
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        begun.elapsed() >= Duration::from_millis(600),
        "{:?}",
        begun.elapsed()
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn the_public_probes_say_nothing_about_dependencies() {
    let health = Health::builder()
        .critical(
            "postgres-primary",
            check_fn(|| async { Err::<(), _>("db.internal:5432 refused") }),
        )
        .cache_for(Duration::ZERO)
        .build();
    let public = serve(health.probes_router()).await;
    let (status, body) = probe(public, "/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(body, serde_json::json!({"status": "fail"}));
    let (status, body) = probe(public, "/livez").await;
    assert_eq!((status, body), (200, serde_json::json!({"status": "pass"})));
    // The details are not on the public router...
    let res = exchange(public, &raw_request("GET", "/healthz", &[], b"")).await;
    assert_eq!(res.status.as_u16(), 404);
    // ...but on the operators' one, with the check's name and output.
    let ops = serve(health.details_router()).await;
    let (status, body) = probe(ops, "/healthz").await;
    assert_eq!(status, 503);
    let shown = body.to_string();
    assert!(
        shown.contains("postgres-primary") && shown.contains("refused"),
        "{shown}"
    );
    health.begin_shutdown();
    let (status, body) = probe(public, "/readyz").await;
    assert_eq!((status, body), (503, serde_json::json!({"status": "fail"})));
}
