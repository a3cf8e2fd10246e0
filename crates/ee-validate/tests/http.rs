//! `Valid<T>` and `ValidateLayer` over real TCP: every violation in one 422,
//! and each pre-schema check with its own status.

use std::borrow::Cow;
use std::net::SocketAddr;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Extension, Router};
use ee_testing::{TestResponse, exchange, raw_request, serve};
use ee_validate::{HasSchema, SchemaRegistry, Valid, ValidateLayer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)] // the fields are there for the schema
struct CreateOrder {
    #[schemars(length(min = 1, max = 32))]
    sku: String,
    #[schemars(range(min = 1, max = 100))]
    quantity: u32,
    #[schemars(email)]
    email: Option<String>,
    note: Option<String>,
}

/// A type validated by a hand-written schema in the registry.
#[derive(Debug, Deserialize)]
struct Product {
    name: String,
}

impl HasSchema for Product {
    fn schema_id() -> Cow<'static, str> {
        "https://shop.example/schemas/product".into()
    }
}

fn registry(max_depth: usize, deny_unknown: bool) -> SchemaRegistry {
    SchemaRegistry::builder()
        .schema(
            "https://shop.example/schemas/money",
            json!({
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {
                    "amount_cents": {"type": "integer", "minimum": 0},
                    "currency": {"type": "string", "format": "currency"}
                },
                "required": ["amount_cents", "currency"]
            }),
        )
        .schema(
            "https://shop.example/schemas/product",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "price": {"$ref": "https://shop.example/schemas/money"},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}
                },
                "required": ["name", "price"]
            }),
        )
        .schema(
            "urn:search",
            json!({
                "type": "object",
                "properties": {
                    "page": {"type": "integer", "minimum": 1},
                    "tag": {"type": "array", "items": {"type": "string", "maxLength": 8}}
                },
                "additionalProperties": false
            }),
        )
        .schema(
            "urn:headers",
            json!({
                "type": "object",
                "properties": {"x-tenant": {"type": "string", "pattern": "^[a-z]+$"}},
                "required": ["x-tenant"]
            }),
        )
        .format("currency", |s| {
            s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
        })
        .max_depth(max_depth)
        .deny_unknown_fields(deny_unknown)
        .build()
        .unwrap()
}

fn app(registry: SchemaRegistry) -> Router {
    let layer = ValidateLayer::new(&registry)
        .body("https://shop.example/schemas/product")
        .unwrap()
        .query("urn:search")
        .unwrap()
        .headers("urn:headers")
        .unwrap();
    Router::new()
        .route(
            "/orders",
            post(
                |Valid(o): Valid<CreateOrder>| async move { format!("{} x {}", o.quantity, o.sku) },
            ),
        )
        .route(
            "/products",
            post(|Valid(p): Valid<Product>| async move { p.name }),
        )
        .route(
            "/orders/batch",
            post(|Valid(batch): Valid<Vec<CreateOrder>>| async move { batch.len().to_string() }),
        )
        .route(
            "/raw/products",
            post(|body: String| async move { body }).layer(layer),
        )
        .route("/health", get(|| async { "ok" }))
        .layer(Extension(registry))
        .layer(DefaultBodyLimit::max(64 * 1024))
}

async fn post_json(addr: SocketAddr, path: &str, body: &[u8]) -> TestResponse {
    exchange(
        addr,
        &raw_request(
            "POST",
            path,
            &[("content-type", b"application/json"), ("x-tenant", b"acme")],
            body,
        ),
    )
    .await
}

fn errors(res: &TestResponse) -> Vec<(String, String, String)> {
    assert_eq!(res.status, 422, "{}", res.text());
    let problem = res.problem();
    assert_eq!(
        problem.type_uri(),
        "https://ee.rs/problems/validate/invalid-request"
    );
    let mut list: Vec<(String, String, String)> = problem
        .extension("errors")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(!e["message"].as_str().unwrap().is_empty());
            (
                e["in"].as_str().unwrap().to_owned(),
                e["pointer"].as_str().unwrap().to_owned(),
                e["keyword"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    list.sort();
    list
}

fn e(part: &str, pointer: &str, keyword: &str) -> (String, String, String) {
    (part.into(), pointer.into(), keyword.into())
}

#[tokio::test]
async fn every_violation_of_a_derived_schema_is_listed() {
    let addr = serve(app(registry(128, false))).await;
    let res = post_json(
        addr,
        "/orders",
        br#"{"sku": "", "quantity": 0, "email": "not an email"}"#,
    )
    .await;
    assert_eq!(
        errors(&res),
        vec![
            e("body", "/email", "format"),
            e("body", "/quantity", "minimum"),
            e("body", "/sku", "minLength")
        ]
    );
    assert_eq!(res.problem().detail(), Some("3 violations"));

    let ok = post_json(
        addr,
        "/orders",
        br#"{"sku": "SKU-1", "quantity": 2, "email": "ada@example.com"}"#,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.text(), "2 x SKU-1");
}

#[tokio::test]
async fn generic_types_validate_too() {
    // `Vec<CreateOrder>`'s schemars id is not a URI; it still compiles.
    let addr = serve(app(registry(128, false))).await;
    let ok = post_json(
        addr,
        "/orders/batch",
        br#"[{"sku": "a", "quantity": 1}, {"sku": "b", "quantity": 2}]"#,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.text(), "2");
    let res = post_json(
        addr,
        "/orders/batch",
        br#"[{"sku": "a", "quantity": 1}, {"sku": "", "quantity": 0}]"#,
    )
    .await;
    assert_eq!(
        errors(&res),
        vec![
            e("body", "/1/quantity", "minimum"),
            e("body", "/1/sku", "minLength")
        ]
    );
}

#[tokio::test]
async fn hand_written_schemas_resolve_refs_and_custom_formats_inside_the_registry() {
    let addr = serve(app(registry(128, false))).await;
    let res = post_json(
        addr,
        "/products",
        br#"{"name": "", "price": {"amount_cents": -1, "currency": "euro"}, "tags": ["a","b","c","d"]}"#,
    )
    .await;
    assert_eq!(
        errors(&res),
        vec![
            e("body", "/name", "minLength"),
            e("body", "/price/amount_cents", "minimum"),
            e("body", "/price/currency", "format"),
            e("body", "/tags", "maxItems"),
        ]
    );
    let res = post_json(
        addr,
        "/products",
        br#"{"name": "Bottle", "price": {"amount_cents": 1299, "currency": "EUR"}}"#,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
}

#[tokio::test]
async fn numbers_out_of_range_and_unknown_fields() {
    // A number beyond the schema's maximum is a violation; one beyond u32 too.
    let addr = serve(app(registry(128, false))).await;
    let res = post_json(addr, "/orders", br#"{"sku": "a", "quantity": 101}"#).await;
    assert_eq!(errors(&res), vec![e("body", "/quantity", "maximum")]);
    let res = post_json(addr, "/orders", br#"{"sku": "a", "quantity": 99999999999}"#).await;
    assert!(errors(&res).contains(&e("body", "/quantity", "maximum")));
    // Unknown fields pass by default (serde ignores them)…
    let res = post_json(
        addr,
        "/orders",
        br#"{"sku": "a", "quantity": 1, "colour": "red"}"#,
    )
    .await;
    assert_eq!(res.status, 200);
    // …and are violations when the registry denies them.
    let strict = serve(app(registry(128, true))).await;
    let res = post_json(
        strict,
        "/orders",
        br#"{"sku": "a", "quantity": 1, "colour": "red"}"#,
    )
    .await;
    assert_eq!(errors(&res), vec![e("body", "", "additionalProperties")]);
}

#[tokio::test]
async fn bodies_that_are_not_json_of_an_allowed_size_and_depth() {
    let addr = serve(app(registry(8, false))).await;
    // Wrong content type.
    let res = exchange(
        addr,
        &raw_request("POST", "/orders", &[("content-type", b"text/plain")], b"{}"),
    )
    .await;
    assert_eq!(res.status, 415);
    assert_eq!(
        res.problem().type_uri(),
        "https://ee.rs/problems/serialize/unsupported-media-type"
    );
    // Truncated.
    let res = post_json(addr, "/orders", br#"{"sku": "a", "quan"#).await;
    assert_eq!(res.status, 400);
    assert_eq!(
        res.problem().type_uri(),
        "https://ee.rs/problems/serialize/malformed-json"
    );
    // Invalid UTF-8.
    let res = post_json(addr, "/orders", b"{\"sku\": \"\xff\xfe\", \"quantity\": 1}").await;
    assert_eq!(res.status, 400);
    // 1,000-deep nesting: the parser's limit.
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let res = post_json(addr, "/orders", deep.as_bytes()).await;
    assert_eq!(res.status, 400);
    // Deeper than the registry's limit (8) but within the parser's.
    let nine = format!(
        "{{\"sku\":\"a\",\"quantity\":1,\"note\":null,\"x\":{}1{}}}",
        "[".repeat(9),
        "]".repeat(9)
    );
    let res = post_json(addr, "/orders", nine.as_bytes()).await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(
        res.problem().type_uri(),
        "https://ee.rs/problems/validate/too-deep"
    );
    // Over the body limit.
    let big = format!(
        "{{\"sku\": \"{}\", \"quantity\": 1}}",
        "a".repeat(70 * 1024)
    );
    let res = post_json(addr, "/orders", big.as_bytes()).await;
    assert_eq!(res.status, 413);
    assert_eq!(
        res.problem().type_uri(),
        "https://ee.rs/problems/serialize/body-too-large"
    );
}

#[tokio::test]
async fn the_layer_checks_body_query_and_headers_in_one_response() {
    let addr = serve(app(registry(128, false))).await;
    let raw = raw_request(
        "POST",
        "/raw/products?page=0&tag=toolongtag&extra=1",
        &[("content-type", b"application/json"), ("x-tenant", b"ACME")],
        br#"{"price": {"amount_cents": 5, "currency": "EUR"}}"#,
    );
    let res = exchange(addr, &raw).await;
    assert_eq!(
        errors(&res),
        vec![
            e("body", "", "required"),
            e("headers", "/x-tenant", "pattern"),
            e("query", "", "additionalProperties"),
            e("query", "/page", "minimum"),
            e("query", "/tag/0", "maxLength"),
        ]
    );
    // A missing header is a `required` violation of the headers object.
    let raw = raw_request(
        "POST",
        "/raw/products",
        &[("content-type", b"application/json")],
        br#"{"name": "x", "price": {"amount_cents": 5, "currency": "EUR"}}"#,
    );
    assert_eq!(
        errors(&exchange(addr, &raw).await),
        vec![e("headers", "", "required")]
    );
    // All good: the handler gets the very bytes that were checked.
    let body = br#"{"name": "Bottle", "price": {"amount_cents": 5, "currency": "EUR"}}"#;
    let raw = raw_request(
        "POST",
        "/raw/products?page=2&tag=a&tag=b",
        &[("content-type", b"application/json"), ("x-tenant", b"acme")],
        body,
    );
    let res = exchange(addr, &raw).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.body.as_ref(), body);
    // Malformed percent-encoding in the query.
    let raw = raw_request(
        "POST",
        "/raw/products?page=%ZZ",
        &[("content-type", b"application/json"), ("x-tenant", b"acme")],
        body,
    );
    let res = exchange(addr, &raw).await;
    assert_eq!(res.status, 400);
    assert_eq!(
        res.problem().type_uri(),
        "https://ee.rs/problems/validate/malformed-query"
    );
}

#[test]
fn rejections_are_counted_by_route_template_and_keyword() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        // Built under the recorder, as a service installs its recorder first.
        let app = Router::new()
            .route(
                "/orders/{shop}",
                post(|Valid(o): Valid<CreateOrder>| async move { o.sku }),
            )
            .layer(Extension(registry(128, false)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for (path, body) in [
                ("/orders/1", &br#"{"sku": "", "quantity": 0}"#[..]),
                ("/orders/2", br#"{"sku": "", "quantity": 5}"#),
                ("/orders/3", br#"{"sku": "a""#),
            ] {
                let req = http::Request::post(path)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body.to_vec()))
                    .unwrap();
                let res = ee_testing::send(app.clone(), req).await;
                assert!(res.status.is_client_error());
            }
        });
    });
    let counters = ee_testing::counters(&snapshotter);
    let get = |k: &str| {
        counters.get(&format!(
            "ee_validate_rejections_total{{route=/orders/{{shop}},keyword={k}}}"
        ))
    };
    assert_eq!(get("minLength"), Some(2));
    assert_eq!(get("minimum"), Some(1));
    assert_eq!(get("syntax"), Some(1));
    assert_eq!(counters.sum("ee_validate_rejections_total"), 4);
    // Described with a unit and help text (what `# HELP` shows; a second
    // snapshot, after `counters` read the values).
    let described = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, ..)| key.key().name() == ee_validate::METRIC_REJECTIONS_TOTAL)
        .map(|(_, unit, help, _)| (unit, help.is_some_and(|h| !h.is_empty())));
    assert_eq!(
        described,
        Some((Some(metrics::Unit::Count), true)),
        "{} is described",
        ee_validate::METRIC_REJECTIONS_TOTAL
    );
}

#[tokio::test]
async fn json_content_type_variants_are_accepted() {
    let addr = serve(app(registry(128, false))).await;
    let res = exchange(
        addr,
        &raw_request(
            "POST",
            "/orders",
            &[("content-type", b"application/json; charset=utf-8")],
            br#"{"sku": "a", "quantity": 1}"#,
        ),
    )
    .await;
    assert_eq!(res.status, 200);
}
