//! The quickstart example over real TCP: trusted-proxy client IPs through
//! axum's `ConnectInfo`, problem+json errors, and visit counts shared through a
//! real Redis that goes away and comes back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ee_core::ClientIp;
use ee_core::{RedisConfig, RedisConn};
use ee_example_quickstart::{AppState, Visits, app};
use ee_ratelimit::Rule;
use ee_testing::RedisServer;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves the app on a free loopback port, as `main` does.
async fn serve(state: AppState) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    addr
}

struct Reply {
    status: u16,
    head: String,
    body: Value,
}

/// A minimal HTTP/1.1 client: one request per connection.
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &[u8])]) -> Reply {
    exchange(addr, method, path, headers, "").await
}

async fn request_with_body(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &[u8])],
    body: &str,
) -> Reply {
    exchange(addr, "POST", path, headers, body).await
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: &str,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body.as_bytes());
    stream.write_all(&req).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap()
    };
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body,
    }
}

fn trusting_loopback() -> ClientIp {
    ClientIp::trusting(["127.0.0.0/8".parse().unwrap()])
}

#[tokio::test]
async fn client_ips_come_through_trusted_proxies_only() {
    let addr = serve(AppState::new(trusting_loopback(), Visits::memory())).await;
    let r = request(
        addr,
        "GET",
        "/whoami",
        &[("x-forwarded-for", b"6.6.6.6, 203.0.113.7")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["client_ip"], "203.0.113.7");
    assert_eq!(r.body["peer_ip"], "127.0.0.1");
    assert_eq!(r.body["api_key"], Value::Null);

    let r = request(addr, "GET", "/whoami", &[("x-api-key", b"k1")]).await;
    assert_eq!(r.body["client_ip"], "127.0.0.1");
    assert_eq!(r.body["api_key"], "k1");

    // The same request to a service that trusts no proxy: the header is ignored.
    let untrusting = serve(AppState::new(ClientIp::default(), Visits::memory())).await;
    let r = request(
        untrusting,
        "GET",
        "/whoami",
        &[("x-forwarded-for", b"203.0.113.7")],
    )
    .await;
    assert_eq!(r.body["client_ip"], "127.0.0.1");
}

#[tokio::test]
async fn bad_input_gets_problem_json() {
    let addr = serve(AppState::new(trusting_loopback(), Visits::memory())).await;

    let r = request(
        addr,
        "GET",
        "/whoami",
        &[("x-forwarded-for", b"203.0.113.7, bogus")],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.head.contains("content-type: application/problem+json"),
        "{}",
        r.head
    );
    assert_eq!(
        r.body["type"],
        "https://ee.rs/problems/core/malformed-header"
    );
    assert_eq!(r.body["header"], "x-forwarded-for");

    let r = request(addr, "GET", "/whoami", &[("x-api-key", b"caf\xc3\xa9")]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["header"], "x-api-key");

    let r = request(addr, "GET", "/nope", &[]).await;
    assert_eq!(r.status, 404);
    assert!(r.head.contains("content-type: application/problem+json"));
    assert_eq!(r.body["type"], "about:blank");
    assert_eq!(r.body["instance"], "/nope");

    // A route that exists with the wrong method: 405, as a problem too, with
    // axum's Allow header kept.
    let r = request(addr, "GET", "/visits", &[]).await;
    assert_eq!(r.status, 405);
    assert!(
        r.head.contains("content-type: application/problem+json"),
        "{}",
        r.head
    );
    assert!(r.head.contains("allow: post"), "{}", r.head);
    assert_eq!(r.body["detail"], "GET is not allowed on /visits");
}

#[tokio::test]
async fn visits_count_per_client_in_memory() {
    let addr = serve(AppState::new(trusting_loopback(), Visits::memory())).await;
    for n in 1..=3 {
        let r = request(
            addr,
            "POST",
            "/visits",
            &[("x-forwarded-for", b"192.0.2.1")],
        )
        .await;
        assert_eq!(r.body["visits"], n);
    }
    let r = request(
        addr,
        "POST",
        "/visits",
        &[("x-forwarded-for", b"192.0.2.2")],
    )
    .await;
    assert_eq!(r.body["visits"], 1);
}

#[tokio::test]
async fn visits_are_shared_through_redis_and_survive_an_outage_as_503s() {
    let mut redis = RedisServer::start();
    let config = RedisConfig::standalone(redis.url()).with_timeout(Duration::from_millis(300));
    let a = serve(AppState::new(
        trusting_loopback(),
        Visits::redis(RedisConn::connect(&config).await.unwrap()),
    ))
    .await;
    let b = serve(AppState::new(
        trusting_loopback(),
        Visits::redis(RedisConn::connect(&config).await.unwrap()),
    ))
    .await;

    let ip: &[(&str, &[u8])] = &[("x-forwarded-for", b"198.51.100.4")];
    assert_eq!(request(a, "POST", "/visits", ip).await.body["visits"], 1);
    assert_eq!(
        request(b, "POST", "/visits", ip).await.body["visits"],
        2,
        "instances share Redis"
    );
    let ttl = redis.command(&["PTTL", "ee:quickstart:visits:198.51.100.4"]);
    assert!(
        matches!(ttl, ee_testing::Reply::Integer(t) if t > 0),
        "{ttl:?}"
    );

    redis.stop();
    let r = request(a, "POST", "/visits", ip).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body["type"],
        "https://ee.rs/problems/quickstart/store-unavailable"
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = request(a, "POST", "/visits", ip).await;
        if r.status == 200 {
            assert_eq!(r.body["visits"], 1, "a restarted Redis starts empty");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after restart: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn orders_are_placed_once_per_idempotency_key() {
    let addr = serve(AppState::new(trusting_loopback(), Visits::memory())).await;
    let key: &[(&str, &[u8])] = &[("idempotency-key", b"\"order-1\"")];
    let first = request_with_body(addr, "/orders", key, "{\"sku\":1}").await;
    assert_eq!(first.status, 201);
    assert_eq!(first.body["order"], 1);
    let retry = request_with_body(addr, "/orders", key, "{\"sku\":1}").await;
    assert_eq!(retry.status, 201);
    assert_eq!(
        retry.body["order"], 1,
        "the retry gets the first order back"
    );
    assert!(
        retry.head.contains("idempotent-replayed: true"),
        "{}",
        retry.head
    );
    let misuse = request_with_body(addr, "/orders", key, "{\"sku\":2}").await;
    assert_eq!(misuse.status, 422);
    let no_key = request_with_body(addr, "/orders", &[], "{}").await;
    assert_eq!(no_key.status, 400);
    assert_eq!(
        no_key.body["type"],
        "https://ee.rs/problems/idempotency/missing-key"
    );
    let second = request_with_body(addr, "/orders", &[("idempotency-key", b"order-2")], "{}").await;
    assert_eq!(second.body["order"], 2);
}

#[tokio::test]
async fn every_route_is_rate_limited_per_client() {
    let state = AppState::new(trusting_loopback(), Visits::memory())
        .with_rate_limit(Rule::fixed_window(3, Duration::from_secs(3600)));
    let addr = serve(state).await;
    let client: &[(&str, &[u8])] = &[("x-forwarded-for", b"203.0.113.20")];
    for remaining in ["2", "1", "0"] {
        let r = request(addr, "GET", "/whoami", client).await;
        assert_eq!(r.status, 200);
        assert!(
            r.head
                .contains(&format!("ratelimit: \"per-client\";r={remaining}")),
            "{}",
            r.head
        );
    }
    let r = request(addr, "GET", "/whoami", client).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.body["type"],
        "https://ee.rs/problems/ratelimit/too-many-requests"
    );
    assert!(r.head.contains("retry-after: "), "{}", r.head);
    let other = request(
        addr,
        "GET",
        "/whoami",
        &[("x-forwarded-for", b"203.0.113.21")],
    )
    .await;
    assert_eq!(other.status, 200);
}

#[tokio::test]
async fn two_instances_share_limits_and_idempotency_records_through_redis() {
    let redis = RedisServer::start();
    let config = RedisConfig::standalone(redis.url());
    let state = |conn| {
        AppState::new(trusting_loopback(), Visits::redis(conn))
            .with_rate_limit(Rule::fixed_window(4, Duration::from_secs(3600)))
    };
    let a = serve(state(RedisConn::connect(&config).await.unwrap())).await;
    let b = serve(state(RedisConn::connect(&config).await.unwrap())).await;
    let headers: &[(&str, &[u8])] = &[
        ("idempotency-key", b"shared"),
        ("x-forwarded-for", b"198.51.100.9"),
    ];
    let first = request_with_body(a, "/orders", headers, "{}").await;
    assert_eq!(first.status, 201);
    let retry = request_with_body(b, "/orders", headers, "{}").await;
    assert!(
        retry.head.contains("idempotent-replayed: true"),
        "{}",
        retry.head
    );
    assert_eq!(retry.body["order"], first.body["order"]);
    // Two requests used, two more allowed across both instances, then 429.
    assert_eq!(
        request(a, "GET", "/whoami", &headers[1..]).await.status,
        200
    );
    assert_eq!(
        request(b, "GET", "/whoami", &headers[1..]).await.status,
        200
    );
    assert_eq!(
        request(a, "GET", "/whoami", &headers[1..]).await.status,
        429
    );
}
