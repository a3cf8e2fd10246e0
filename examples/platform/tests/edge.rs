//! The gateway's edge (`[edge]`): the client behind trusted proxies, slow
//! clients cut off, upstream answers bounded, and whose trace a request
//! belongs to. Over real TCP, the platform in this process.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ee_logging::{LogConfig, LogFormat, TraceContext};
use ee_platform::edge::EdgeSettings;
use ee_platform::gateway::RateLimitSettings;
use ee_platform::{Instance, Platform, PlatformConfig};
use ee_testing::Logs;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn config() -> PlatformConfig {
    let dir = common::fresh_dir("edge");
    PlatformConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir,
        ..PlatformConfig::default()
    }
}

/// Every JSON line the platform logs in this test binary (a global
/// subscriber: the services' tasks run on any worker thread). Tests tell
/// their lines apart by request id.
fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let config = LogConfig {
            format: LogFormat::Json,
            filter: "info".into(),
            ..LogConfig::default()
        };
        let subscriber = config.subscriber(move || writer.clone()).unwrap();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

/// The `request finished` lines of request `id` (one per service it went
/// through).
fn finished(id: &str) -> Vec<Value> {
    logs()
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "request finished" && l["span"]["request_id"] == id)
        .collect()
}

async fn get(url: &str, headers: &[(&str, &str)]) -> common::Answer {
    common::send(&common::client(), Method::GET, url, headers, None).await
}

/// The problem `type` of an answer (asserting it is a problem).
fn problem_type(a: &common::Answer) -> &str {
    assert!(a.is_problem(), "{:?} {}", a.headers, a.body);
    a.body["type"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_a_trusted_proxy_get_a_bucket_each() {
    let platform = Platform::start(
        PlatformConfig {
            rate_limit: RateLimitSettings {
                per_second: 1,
                burst: 2,
            },
            edge: EdgeSettings {
                trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
                ..EdgeSettings::default()
            },
            ..config()
        },
        None,
    )
    .await
    .unwrap();
    let url = format!("{}/v1/products?per_page=1", platform.gateway);
    // Client A, through the proxy (this test's 127.0.0.1), uses up its bucket.
    let a = [("x-forwarded-for", "203.0.113.1")];
    let mut statuses = Vec::new();
    while statuses.last() != Some(&429) {
        statuses.push(get(&url, &a).await.status.as_u16());
        assert!(statuses.len() <= 10, "A is never limited: {statuses:?}");
    }
    // Client B, through the same proxy, has a bucket of its own.
    let b = get(&url, &[("x-forwarded-for", "203.0.113.2")]).await;
    assert_eq!(b.status, StatusCode::OK, "B shares A's bucket: {}", b.body);
    // A proxy chain: the client is the rightmost address not trusted.
    let c = get(&url, &[("x-forwarded-for", "6.6.6.6, 203.0.113.3")]).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    // A is still limited, whatever it writes left of what the proxy added.
    let forged = get(&url, &[("x-forwarded-for", "198.51.100.9, 203.0.113.1")]).await;
    assert_eq!(forged.status, StatusCode::TOO_MANY_REQUESTS);
    platform.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_for_from_an_untrusted_peer_is_ignored() {
    // 127.0.0.1 is not one of the trusted proxies: it is the client, and
    // what it writes in X-Forwarded-For does not give it new buckets.
    let platform = Platform::start(
        PlatformConfig {
            rate_limit: RateLimitSettings {
                per_second: 1,
                burst: 2,
            },
            edge: EdgeSettings {
                trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
                ..EdgeSettings::default()
            },
            ..config()
        },
        None,
    )
    .await
    .unwrap();
    let url = format!("{}/v1/products?per_page=1", platform.gateway);
    let mut statuses = Vec::new();
    for i in 0..6 {
        let forged = format!("203.0.113.{i}");
        let a = get(&url, &[("x-forwarded-for", &forged)]).await;
        statuses.push(a.status.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    platform.shutdown(Duration::from_secs(2)).await;
}

/// Connects to `addr`, sends `bytes`, and reads until the server closes
/// the connection: what it sent, and when it closed (`None`: still open
/// after `within`).
async fn until_closed(addr: &str, bytes: &[u8], within: Duration) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr.trim_start_matches("http://"))
        .await
        .unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    match tokio::time::timeout(within, tcp.read_to_end(&mut got)).await {
        Ok(_) => (got, Some(started.elapsed())),
        Err(_) => (got, None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slow_with_its_request_head_is_disconnected() {
    let platform = Platform::start(
        PlatformConfig {
            edge: EdgeSettings {
                header_read_timeout_ms: 300,
                ..EdgeSettings::default()
            },
            ..config()
        },
        None,
    )
    .await
    .unwrap();
    // Half a request line, then nothing: the gateway and a service alike
    // close the connection once the head is 300 ms late.
    for base in [&platform.gateway, &platform.services["product"]] {
        let (_, closed) = until_closed(base, b"GET /v1/produ", Duration::from_secs(10)).await;
        let closed = closed.unwrap_or_else(|| panic!("{base}: still open after 10 s"));
        assert!(closed >= Duration::from_millis(300), "{base}: {closed:?}");
    }
    // The timeout also ends idle keep-alive connections, between the gateway
    // and the services too: requests after a pause longer than it still
    // succeed (the gateway's pool lets them go first).
    let client = common::client();
    let url = format!("{}/v1/products?per_page=1", platform.gateway);
    for _ in 0..3 {
        let a = common::send(&client, Method::GET, &url, &[], None).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    platform.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_slower_than_its_timeout_is_a_408_problem() {
    let platform = Platform::start(
        PlatformConfig {
            edge: EdgeSettings {
                body_read_timeout_ms: 300,
                ..EdgeSettings::default()
            },
            ..config()
        },
        None,
    )
    .await
    .unwrap();
    let mut tcp = TcpStream::connect(platform.gateway.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = "POST /v1/users HTTP/1.1\r\nhost: shop\r\ncontent-type: application/json\r\n\
                content-length: 60\r\n\r\n";
    tcp.write_all(head.as_bytes()).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    // A byte every 50 ms: the body keeps coming, but would take 3 s.
    let trickle = tokio::spawn(async move {
        for _ in 0..60 {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let started = Instant::now();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut got))
        .await
        .expect("the gateway neither answered nor closed within 10 s")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "answered only after {:?}, as the body ended",
        started.elapsed()
    );
    let res = ee_testing::parse_response(&got);
    assert_eq!(res.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(res.headers["content-type"], "application/problem+json");
    assert_eq!(res.headers["connection"], "close");
    let body: Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(body["type"], "https://ee.rs/problems/gateway/body-timeout");
    assert_eq!(body["status"], 408);
    assert!(
        body["detail"].as_str().unwrap().contains("300 ms"),
        "{body}"
    );
    trickle.abort();
    platform.shutdown(Duration::from_secs(2)).await;
}

/// A product service that answers `/v1/products/declared` with a
/// `Content-Length` of 2 MB (and a HEAD request with that length, no body), `/v1/products/streamed` with chunks for as long
/// as it is read, and `/v1/products/small` with 1 000 bytes, chunked.
async fn oversized_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = tcp.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let chunk = |n: usize| {
                    let mut c = format!("{n:x}\r\n").into_bytes();
                    c.extend(std::iter::repeat_n(b'x', n));
                    c.extend_from_slice(b"\r\n");
                    c
                };
                let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                if head.starts_with("HEAD ") {
                    let _ = tcp
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2000000\r\n\r\n")
                        .await;
                } else if head.starts_with("GET /v1/products/declared ") {
                    let _ = tcp
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2000000\r\n\r\nxxxx")
                        .await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                } else if head.starts_with("GET /v1/products/streamed ") {
                    let _ = tcp.write_all(chunked.as_bytes()).await;
                    while tcp.write_all(&chunk(64 * 1024)).await.is_ok() {}
                } else {
                    let _ = tcp.write_all(chunked.as_bytes()).await;
                    let _ = tcp.write_all(&chunk(1_000)).await;
                    let _ = tcp.write_all(b"0\r\n\r\n").await;
                }
            });
        }
    });
    url
}

/// A gateway (its own process's part of distributed mode) in front of the
/// product instances at `product`.
async fn gateway_to(product: &str, edge: EdgeSettings) -> Instance {
    // The gateway verifies tokens with the user service's JWKS: one user
    // instance beside it (it lives as long as this test's runtime).
    let user = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let user_url = format!("http://{}", user.local_addr().unwrap());
    let user_config = PlatformConfig {
        seed: false,
        auth: common::auth_settings(),
        ..config()
    };
    std::mem::forget(
        Instance::start("user", user_config, user, None)
            .await
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = PlatformConfig {
        upstreams: [
            ("product".to_owned(), vec![product.to_owned()]),
            ("user".to_owned(), vec![user_url]),
        ]
        .into(),
        seed: false,
        edge,
        ..config()
    };
    Instance::start("gateway", config, listener, None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answer_over_the_size_limit_is_a_502_or_cut_off() {
    let _ = logs();
    let gateway = gateway_to(
        &oversized_upstream().await,
        EdgeSettings {
            max_upstream_response_bytes: 1_000_000,
            ..EdgeSettings::default()
        },
    )
    .await;
    // Declared too large: a 502 problem, the body never read.
    let declared = get(&format!("{}/v1/products/declared", gateway.url), &[]).await;
    assert_eq!(declared.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        problem_type(&declared),
        "https://ee.rs/problems/gateway/upstream-response-too-large"
    );
    assert!(
        declared.body["detail"]
            .as_str()
            .unwrap()
            .contains("2000000 bytes"),
        "{}",
        declared.body
    );
    // A HEAD answer's length announces no body: passed on.
    let head = common::send(
        &common::client(),
        Method::HEAD,
        &format!("{}/v1/products/declared", gateway.url),
        &[],
        None,
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-length"], "2000000");
    // Streamed past the limit: the client gets the head and at most the
    // limit, then the connection is closed mid-body.
    let client = common::client();
    let res = client
        .get(
            format!("{}/v1/products/streamed", gateway.url)
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let mut received = 0;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), body.frame()).await {
            Err(_) => panic!("the body neither ended nor broke after {received} bytes"),
            Ok(None) => break "the body ended",
            Ok(Some(Err(_))) => break "cut off",
            Ok(Some(Ok(frame))) => {
                received += frame.data_ref().map_or(0, |d| d.len());
            }
        }
    };
    assert_eq!(ended, "cut off", "after {received} bytes");
    assert!(received <= 1_000_000, "{received} bytes passed");
    assert!(
        logs().contains("upstream answer cut off: over the size limit"),
        "no warning logged"
    );
    // An answer within the limit passes whole.
    let small = get(&format!("{}/v1/products/small", gateway.url), &[]).await;
    assert_eq!(small.status, StatusCode::OK);
    assert_eq!(small.body.as_str().unwrap().len(), 1_000);
    gateway.shutdown(Duration::from_secs(2)).await;
}

/// A client's own trace context.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// Sends a product listing with the client's `traceparent` and request id
/// `id`: the trace context the gateway answered with, and the log lines of
/// the gateway's and the product service's spans.
async fn traced(platform: &Platform, id: &str) -> (TraceContext, Value, Value) {
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let a = get(
        &format!("{}/v1/products?per_page=1", platform.gateway),
        &[("traceparent", &traceparent), ("x-request-id", id)],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let gateway = TraceContext::parse(a.headers["traceparent"].to_str().unwrap(), None).unwrap();
    let lines = finished(id);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (ours, theirs): (Vec<Value>, Vec<Value>) = lines
        .into_iter()
        .partition(|l| l["span"]["span_id"] == gateway.span_id().as_str());
    assert_eq!(ours.len(), 1, "no gateway line with the answer's span id");
    (gateway, ours[0].clone(), theirs[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_starts_the_trace_and_is_the_services_parent() {
    let _ = logs();
    let platform = Platform::start(config(), None).await.unwrap();
    let (gateway, gateway_line, product_line) = traced(&platform, "edge-trace-new").await;
    // The client's traceparent is not continued: a new trace, no parent.
    assert_ne!(gateway.trace_id(), CLIENT_TRACE);
    assert_eq!(
        gateway_line["span"]["trace_id"],
        gateway.trace_id().as_str()
    );
    assert!(
        gateway_line["span"]["parent_id"].is_null(),
        "{gateway_line}"
    );
    // The product service's span is the gateway's child.
    assert_eq!(
        product_line["span"]["trace_id"],
        gateway.trace_id().as_str()
    );
    assert_eq!(
        product_line["span"]["parent_id"],
        gateway.span_id().as_str(),
        "{product_line}"
    );
    platform.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_accept_client_traceparent_the_clients_trace_goes_on_through_the_gateway() {
    let _ = logs();
    let platform = Platform::start(
        PlatformConfig {
            edge: EdgeSettings {
                accept_client_traceparent: true,
                ..EdgeSettings::default()
            },
            ..config()
        },
        None,
    )
    .await
    .unwrap();
    let (gateway, gateway_line, product_line) = traced(&platform, "edge-trace-kept").await;
    assert_eq!(gateway.trace_id(), CLIENT_TRACE);
    assert_eq!(gateway_line["span"]["parent_id"], CLIENT_SPAN);
    // Still the gateway's span, not the client's, is the service's parent.
    assert_eq!(product_line["span"]["trace_id"], CLIENT_TRACE);
    assert_eq!(
        product_line["span"]["parent_id"],
        gateway.span_id().as_str(),
        "{product_line}"
    );
    platform.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_request_in_flight_finish_and_then_refuses() {
    // A product instance that answers after 500 ms, and says when it has
    // the request.
    let (arrived, mut has_arrived) = tokio::sync::mpsc::channel::<()>(1);
    let slow = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_url = format!("http://{}", slow.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/v1/products",
        axum::routing::get(move || {
            let arrived = arrived.clone();
            async move {
                let _ = arrived.send(()).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                "late but whole"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(slow, app).await.unwrap() });
    let gateway = gateway_to(&slow_url, EdgeSettings::default()).await;
    let url = gateway.url.clone();
    let in_flight = tokio::spawn(async move { get(&format!("{url}/v1/products"), &[]).await });
    has_arrived.recv().await.unwrap();
    let url = gateway.url.clone();
    gateway.shutdown(Duration::from_secs(5)).await;
    let a = in_flight.await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "late but whole");
    // Stopped: nothing accepts any more.
    assert!(
        TcpStream::connect(url.trim_start_matches("http://"))
            .await
            .is_err()
    );
}
