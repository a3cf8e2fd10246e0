//! axum's own extractor rejections reach clients as problems through `WithProblem`.

use axum::Router;
use axum::body::Body;
use axum::extract::{Json, Path, Query};
use axum::routing::{get, post};
use ee_core::WithProblem;
use http::{Request, StatusCode};

#[derive(serde::Deserialize)]
struct Page {
    per_page: u32,
}

#[derive(serde::Deserialize)]
struct Order {
    #[allow(dead_code)]
    sku: String,
}

fn app() -> Router {
    Router::new()
        .route(
            "/items",
            get(|WithProblem(Query(p)): WithProblem<Query<Page>>| async move {
                p.per_page.to_string()
            }),
        )
        .route(
            "/items/{id}",
            get(|WithProblem(Path(id)): WithProblem<Path<u64>>| async move { id.to_string() }),
        )
        .route(
            "/orders",
            post(|WithProblem(Json(_o)): WithProblem<Json<Order>>| async { "ok" }),
        )
}

async fn get_(uri: &str) -> ee_testing::TestResponse {
    ee_testing::send(app(), Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post_(content_type: Option<&str>, body: &str) -> ee_testing::TestResponse {
    let mut req = Request::post("/orders");
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    ee_testing::send(app(), req.body(Body::from(body.to_owned())).unwrap()).await
}

#[track_caller]
fn assert_problem(res: &ee_testing::TestResponse, status: StatusCode, kind: &str) {
    assert_eq!(res.status, status, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    let problem = res.problem();
    assert_eq!(
        problem.type_uri(),
        format!("https://ee.rs/problems/core/{kind}")
    );
    assert!(problem.detail().is_some_and(|d| !d.is_empty()));
}

#[tokio::test]
async fn good_requests_pass_through() {
    assert_eq!(get_("/items?per_page=5").await.text(), "5");
    assert_eq!(get_("/items/7").await.text(), "7");
    assert_eq!(
        post_(Some("application/json"), r#"{"sku":"a"}"#)
            .await
            .text(),
        "ok"
    );
}

#[tokio::test]
async fn a_bad_or_missing_query_parameter_is_a_400_problem() {
    assert_problem(
        &get_("/items?per_page=").await,
        StatusCode::BAD_REQUEST,
        "invalid-query",
    );
    assert_problem(
        &get_("/items").await,
        StatusCode::BAD_REQUEST,
        "invalid-query",
    );
}

#[tokio::test]
async fn a_bad_path_parameter_is_a_400_problem() {
    assert_problem(
        &get_("/items/seven").await,
        StatusCode::BAD_REQUEST,
        "invalid-path",
    );
}

#[tokio::test]
async fn json_bodies_fail_with_their_statuses() {
    assert_problem(
        &post_(None, r#"{"sku":"a"}"#).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    );
    assert_problem(
        &post_(Some("application/json"), "{").await,
        StatusCode::BAD_REQUEST,
        "malformed-json",
    );
    assert_problem(
        &post_(Some("application/json"), r#"{"sku":1}"#).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-json",
    );
    let big = format!(r#"{{"sku":"{}"}}"#, "x".repeat(3 << 20));
    assert_problem(
        &post_(Some("application/json"), &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
    );
}
