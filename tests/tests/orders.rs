//! The orders example over real TCP: schema-checked JSON bodies and queries,
//! compressed requests and responses.

use std::net::SocketAddr;

use ee_example_orders::{OrderCreated, app};
use ee_testing::{exchange, raw_request};
use serde_json::Value;

async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await.unwrap() });
    addr
}

const ORDER: &[u8] = br#"{"email": "ada@example.com", "currency": "EUR",
    "lines": [{"sku": "SKU-100001", "quantity": 2}, {"sku": "SKU-100002", "quantity": 1}]}"#;

#[tokio::test]
async fn an_order_sent_zstd_compressed_is_created() {
    let addr = serve().await;
    let body = zstd::bulk::compress(ORDER, 3).unwrap();
    let res = exchange(
        addr,
        &raw_request(
            "POST",
            "/orders",
            &[
                ("content-type", b"application/json"),
                ("content-encoding", b"zstd"),
            ],
            &body,
        ),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(
        res.json::<OrderCreated>(),
        OrderCreated {
            id: 1,
            lines: 2,
            items: 3
        }
    );
}

#[tokio::test]
async fn a_bad_order_gets_every_violation_at_once() {
    let addr = serve().await;
    let body = br#"{"email": "nope", "currency": "eur", "lines": [{"sku": "x", "quantity": 0}], "coupon": "FREE"}"#;
    let res = exchange(
        addr,
        &raw_request(
            "POST",
            "/orders",
            &[("content-type", b"application/json")],
            body,
        ),
    )
    .await;
    assert_eq!(res.status, 422, "{}", res.text());
    let problem = res.problem();
    let mut found: Vec<(String, String)> = problem
        .extension("errors")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["pointer"].as_str().unwrap().to_owned(),
                e["keyword"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    let want: Vec<(String, String)> = [
        ("", "additionalProperties"),
        ("/currency", "pattern"),
        ("/email", "format"),
        ("/lines/0/quantity", "minimum"),
        ("/lines/0/sku", "pattern"),
    ]
    .iter()
    .map(|(p, k)| ((*p).to_owned(), (*k).to_owned()))
    .collect();
    assert_eq!(found, want);
}

#[tokio::test]
async fn the_listing_query_is_checked_and_the_listing_compressed() {
    let addr = serve().await;
    let res = exchange(
        addr,
        &raw_request("GET", "/products?page=0&per_page=500&sort=price", &[], b""),
    )
    .await;
    assert_eq!(res.status, 422, "{}", res.text());
    assert_eq!(
        res.problem()
            .extension("errors")
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let res = exchange(
        addr,
        &raw_request(
            "GET",
            "/products?page=2&per_page=100",
            &[("accept-encoding", b"gzip, zstd")],
            b"",
        ),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-encoding"), Some("zstd"));
    let json: Value =
        serde_json::from_slice(&zstd::stream::decode_all(&res.body[..]).unwrap()).unwrap();
    assert_eq!(json["products"].as_array().unwrap().len(), 100);
    assert_eq!(json["products"][0]["sku"], "SKU-100100");
}

#[tokio::test]
async fn the_deployed_service_is_versioned_probed_and_measured() {
    let prometheus = ee_metrics::Prometheus::builder()
        .global_label("service", "orders")
        .install()
        .expect("the only recorder of this test binary");
    let health = ee_health::Health::builder().build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = ee_example_orders::deployed_app(&prometheus, &health);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let res = exchange(
        addr,
        &raw_request(
            "POST",
            "/v1/orders",
            &[("content-type", b"application/json")],
            ORDER,
        ),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(res.header("x-request-id").map(str::len), Some(32));
    assert!(res.header("traceparent").is_some());
    // The default version answers without a prefix; an unknown one is a 400.
    assert_eq!(
        exchange(addr, &raw_request("GET", "/products?page=0", &[], b""))
            .await
            .status,
        422
    );
    assert_eq!(
        exchange(addr, &raw_request("GET", "/v9/products", &[], b""))
            .await
            .status,
        400
    );
    // Probes are version-neutral.
    let ready = exchange(addr, &raw_request("GET", "/readyz", &[], b"")).await;
    assert_eq!(
        (ready.status.as_u16(), ready.header("content-type")),
        (200, Some("application/health+json"))
    );
    let metrics = exchange(addr, &raw_request("GET", "/metrics", &[], b"")).await;
    let text = metrics.text();
    assert!(text.contains("ee_http_requests_total{"), "{text}");
    assert!(text.contains(r#"service="orders""#));
    assert!(text.contains(r#"status_class="4xx""#));
}
