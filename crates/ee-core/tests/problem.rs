//! `Problem` as a response: through axum, through bare tower, and read back.

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use ee_core::Problem;
use http::{HeaderValue, Request, StatusCode, header};
use serde_json::json;

#[tokio::test]
async fn axum_handlers_answer_problem_json() {
    let app = Router::new().route(
        "/orders/{id}",
        get(|| async {
            Err::<(), _>(
                Problem::ee(StatusCode::NOT_FOUND, "orders", "not-found")
                    .with_title("Order not found")
                    .with_detail("no order 42")
                    .with_instance("/orders/42")
                    .with_extension("order_id", 42),
            )
        }),
    );
    let res = ee_testing::send(
        app,
        Request::get("/orders/42")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        res.json::<serde_json::Value>(),
        json!({
            "type": "https://ee.rs/problems/orders/not-found",
            "title": "Order not found",
            "status": 404,
            "detail": "no order 42",
            "instance": "/orders/42",
            "order_id": 42
        })
    );
    let problem = res.problem();
    assert_eq!(problem.extension("order_id"), Some(&json!(42)));
}

#[test]
fn bare_http_responses_carry_headers_and_body() {
    let problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
        .with_header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let res: http::Response<Bytes> = problem.clone().into_response();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()[header::RETRY_AFTER], "5");
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(
        body,
        json!({"type": "about:blank", "title": "Service Unavailable", "status": 503})
    );
    // Full<Bytes> (hyper users) works the same way.
    let full: http::Response<http_body_util::Full<Bytes>> = problem.into_response();
    assert_eq!(full.status(), 503);
}

#[test]
fn problems_read_back_ignoring_wrongly_typed_members() {
    let problem: Problem = serde_json::from_value(json!({
        "type": "https://example.com/out-of-credit",
        "title": "You do not have enough credit.",
        "status": 403,
        "detail": 12,
        "balance": 30,
        "accounts": ["/account/12345", "/account/67890"]
    }))
    .unwrap();
    assert_eq!(problem.status(), StatusCode::FORBIDDEN);
    assert_eq!(problem.type_uri(), "https://example.com/out-of-credit");
    assert_eq!(problem.title(), Some("You do not have enough credit."));
    assert_eq!(
        problem.detail(),
        None,
        "a non-string detail is ignored (RFC 9457 §3.1)"
    );
    assert_eq!(problem.extension("balance"), Some(&json!(30)));
    assert_eq!(problem.extensions().len(), 2);

    let minimal: Problem = serde_json::from_str("{}").unwrap();
    assert_eq!(minimal.type_uri(), "about:blank");
    assert_eq!(minimal.title(), None);
    assert!(serde_json::from_str::<Problem>("[1]").is_err());
}

#[test]
fn serialisation_round_trips() {
    let problem = Problem::ee(StatusCode::CONFLICT, "idempotency", "in-flight")
        .with_title("Request in flight")
        .with_detail("a request with this key is being processed")
        .with_extension("key", "abc");
    let back: Problem = serde_json::from_slice(&problem.to_json_bytes()).unwrap();
    assert_eq!(back, problem);
    assert_eq!(
        problem.to_string(),
        "409 Request in flight: a request with this key is being processed"
    );
}
