//! End to end through the gateway, embedded mode: all six in this process on
//! a SQLite file in a temp directory, over real HTTP.

mod common;

use common::{Answer, HttpClient, Shop as _, send};
use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ee_platform::gateway::RateLimitSettings;
use ee_platform::upstream::{UpstreamTable, Upstreams};
use ee_platform::{PaymentSettings, Platform, PlatformConfig};
use http_body_util::BodyExt;
use serde_json::{Value, json};

fn config() -> PlatformConfig {
    let dir = common::fresh_dir("test");
    PlatformConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir,
        // Long enough that no charge job settles an order before its 202
        // is answered (a quicker job makes that answer a 201).
        payment: PaymentSettings {
            latency_ms: 200,
            failure_rate: 0.0,
        },
        auth: common::auth_settings(),
        ..PlatformConfig::default()
    }
}

struct Shop {
    platform: Platform,
    client: HttpClient,
    /// An admin's access token: what `get` reads with.
    admin: String,
}

impl Shop {
    async fn start(config: PlatformConfig) -> Self {
        let platform = Platform::start(config, None).await.unwrap();
        let client = common::client();
        // The admin may exist already (a restart on the same data).
        let _ = send(
            &client,
            Method::POST,
            &format!("{}/v1/users", platform.gateway),
            &[],
            Some(json!({"email": common::ADMIN_EMAIL, "name": "Admin", "password": common::PASSWORD})),
        )
        .await;
        let admin = common::log_in(&client, &platform.gateway, common::ADMIN_EMAIL).await;
        Self {
            platform,
            client,
            admin,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.platform.gateway)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        send(&self.client, method, &self.url(path), headers, body).await
    }

    /// `GET path` as the admin (who may read everything).
    async fn get(&self, path: &str) -> Answer {
        self.get_as(&self.admin, path).await
    }

    /// `GET path` with `token`.
    async fn get_as(&self, token: &str, path: &str) -> Answer {
        let auth = common::bearer(token);
        self.send(Method::GET, path, &[("authorization", &auth)], None)
            .await
    }

    /// Registers `email` and logs in: the user's access token.
    async fn register(&self, email: &str) -> String {
        common::sign_up(&self.client, &self.platform.gateway, email).await
    }

    async fn stock(&self, sku: &str) -> i64 {
        let a = self.get(&format!("/v1/products/{sku}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["stock"].as_i64().unwrap()
    }

    /// The order once its payment is settled (no longer `pending`).
    async fn settled(&self, id: &str) -> Value {
        common::settled(
            &self.client,
            &self.platform.gateway,
            &self.admin,
            id,
            Duration::from_secs(10),
        )
        .await
    }

    async fn stop(self) {
        self.platform.shutdown(Duration::from_secs(2)).await;
    }
}

impl common::Shop for Shop {
    fn http(&self) -> &HttpClient {
        &self.client
    }

    fn gateway_url(&self) -> &str {
        &self.platform.gateway
    }
}

fn is_problem(a: &Answer) -> bool {
    a.headers.get("content-type").is_some_and(|v| {
        v.to_str()
            .unwrap_or("")
            .starts_with("application/problem+json")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_reserves_stock_charges_confirms_and_notifies() {
    let shop = Shop::start(config()).await;
    let page = shop.get("/v1/products?per_page=5").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body["products"].as_array().unwrap().len(), 5);
    // The last page a u32 can name: an empty page, not an overflow (issue 27).
    let far = shop.get("/v1/products?page=4294967295&per_page=100").await;
    assert_eq!(far.status, StatusCode::OK);
    assert_eq!(far.body["products"].as_array().unwrap().len(), 0);
    let sku = page.body["products"][0]["sku"].as_str().unwrap().to_owned();
    let price = page.body["products"][0]["price_minor"].as_i64().unwrap();
    let before = shop.stock(&sku).await;

    let user = shop.register("ada@example.com").await;
    let found = shop.get_as(&user, "/v1/users/me").await;
    assert_eq!(found.body["email"], "ada@example.com");

    // Accepted once the stock is reserved: priced, pending, with its address.
    let placed = shop.order("k-happy", &user, &sku, 3, "tok_visa").await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
    assert_eq!(placed.body["status"], "pending");
    assert_eq!(placed.body["total_minor"].as_i64().unwrap(), 3 * price);
    let id = placed.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        placed.headers.get("location").unwrap().to_str().unwrap(),
        format!("/v1/orders/{id}")
    );
    // The cached product detail was dropped when the stock moved.
    assert_eq!(shop.stock(&sku).await, before - 3);

    // The charge job settles it.
    let status = shop.settled(&id).await;
    assert_eq!(status["status"], "confirmed", "{status}");
    assert_eq!(status["total_minor"].as_i64().unwrap(), 3 * price);
    assert!(status["payment_id"].as_str().unwrap().starts_with("pay_"));
    assert_eq!(shop.stock(&sku).await, before - 3);
    // The confirmation goes through the in-process queue to the
    // notification service's worker.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let sent = loop {
        let sent = shop.get(&format!("/v1/notifications?order_id={id}")).await;
        assert_eq!(sent.status, StatusCode::OK);
        let sent = sent.body.as_array().unwrap().clone();
        if !sent.is_empty() || std::time::Instant::now() > deadline {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["recipient"], "ada@example.com");
    assert!(sent[0]["body"].as_str().unwrap().contains(&id));
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_releases_the_stock() {
    let shop = Shop::start(config()).await;
    let user = shop.register("bob@example.com").await;
    let before = shop.stock("SKU-0002").await;
    let a = shop
        .order("k-declined", &user, "SKU-0002", 4, "tok_declined")
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let order = shop.settled(&id).await;
    assert_eq!(order["status"], "payment_failed", "{order}");
    assert_eq!(order["failure"], "card declined (test token)");
    assert_eq!(shop.stock("SKU-0002").await, before);
    assert!(
        shop.get(&format!("/v1/notifications?order_id={id}"))
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_prefer_wait_the_answer_is_the_outcome() {
    let shop = Shop::start(config()).await;
    let user = shop.register("wes@example.com").await;
    let before = shop.stock("SKU-0007").await;
    let paid = shop
        .order_waiting("k-wait", &user, "SKU-0007", 2, "tok_visa")
        .await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);
    assert_eq!(paid.headers.get("preference-applied").unwrap(), "wait=10");
    assert_eq!(paid.body["status"], "confirmed");
    assert!(
        paid.body["payment_id"]
            .as_str()
            .unwrap()
            .starts_with("pay_")
    );
    assert_eq!(shop.stock("SKU-0007").await, before - 2);

    let declined = shop
        .order_waiting("k-wait-no", &user, "SKU-0007", 3, "tok_declined")
        .await;
    assert_eq!(
        declined.status,
        StatusCode::PAYMENT_REQUIRED,
        "{}",
        declined.body
    );
    assert!(is_problem(&declined));
    assert_eq!(
        declined.body["type"],
        "https://ee.rs/problems/platform/payment-declined"
    );
    assert_eq!(
        declined.headers.get("preference-applied").unwrap(),
        "wait=10"
    );
    let id = declined.body["order_id"].as_str().unwrap();
    // Released before the answer.
    assert_eq!(shop.stock("SKU-0007").await, before - 2);
    let order = shop.get(&format!("/v1/orders/{id}")).await;
    assert_eq!(order.body["status"], "payment_failed");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_twice_places_and_charges_once() {
    let shop = Shop::start(config()).await;
    let user = shop.register("cy@example.com").await;
    let before = shop.stock("SKU-0003").await;
    let first = shop
        .order("k-twice", &user, "SKU-0003", 2, "tok_visa")
        .await;
    let again = shop
        .order("k-twice", &user, "SKU-0003", 2, "tok_visa")
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(first.body, again.body);
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    let id = first.body["id"].as_str().unwrap();
    let settled = shop.settled(id).await;
    assert_eq!(settled["status"], "confirmed");
    // Waiting for the outcome replays the first answer too: the key's
    // request is the one placed, whatever the preference.
    let waiting = shop
        .order_waiting("k-twice", &user, "SKU-0003", 2, "tok_visa")
        .await;
    assert_eq!(waiting.status, StatusCode::ACCEPTED);
    assert_eq!(waiting.body, first.body);
    assert_eq!(shop.stock("SKU-0003").await, before - 2);
    // The same key with another body is refused.
    let other = shop
        .order("k-twice", &user, "SKU-0003", 5, "tok_visa")
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(is_problem(&other));
    // A missing key is refused before anything happens.
    let auth = common::bearer(&user);
    let none = shop
        .send(
            Method::POST,
            "/v1/orders",
            &[("authorization", &auth)],
            Some(
                json!({"lines": [{"sku": "SKU-0003", "quantity": 1}], "payment_token": "tok_visa"}),
            ),
        )
        .await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    assert!(is_problem(&none));
    assert_eq!(shop.stock("SKU-0003").await, before - 2);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_orders_for_the_last_ten_items_sell_exactly_ten() {
    let shop = std::sync::Arc::new(Shop::start(config()).await);
    let user = shop.register("dee@example.com").await;
    // Leave 10 of SKU-0004 (100 at the start).
    let first = shop
        .order_waiting("k-bulk", &user, "SKU-0004", 90, "tok_visa")
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(shop.stock("SKU-0004").await, 10);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let shop = shop.clone();
            let user = user.clone();
            tokio::spawn(async move {
                shop.order(&format!("k-race-{i}"), &user, "SKU-0004", 1, "tok_visa")
                    .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let (by_status, accepted) = common::tally(answers);
    assert_eq!(accepted.len(), 10, "{by_status:?}");
    assert_eq!(by_status.get(&409), Some(&90), "{by_status:?}");
    for id in &accepted {
        assert_eq!(shop.settled(id).await["status"], "confirmed");
    }
    assert_eq!(shop.stock("SKU-0004").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_problems_with_pointers() {
    let shop = Shop::start(config()).await;
    let bad = shop
        .send(
            Method::POST,
            "/v1/users",
            &[],
            Some(json!({"email": "not-an-email", "name": ""})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(is_problem(&bad));
    let pointers: Vec<&str> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    assert!(
        pointers.contains(&"/email") && pointers.contains(&"/name"),
        "{}",
        bad.body
    );

    let user = shop.register("eve@example.com").await;
    let dup = shop
        .send(
            Method::POST,
            "/v1/users",
            &[],
            Some(
                json!({"email": "EVE@example.com", "name": "Eve", "password": "another password"}),
            ),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let auth = common::bearer(&user);
    let quantity = shop
        .send(
            Method::POST,
            "/v1/orders",
            &[("idempotency-key", "\"k-q\""), ("authorization", &auth)],
            Some(json!({"lines": [{"sku": "SKU-0001", "quantity": 0}], "payment_token": "t"})),
        )
        .await;
    assert_eq!(quantity.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(quantity.body["errors"][0]["pointer"], "/lines/0/quantity");
    // Not a token: refused at the gateway, before any service sees it.
    let forged = shop
        .order("k-u", "usr_nobody", "SKU-0001", 1, "tok_visa")
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert!(is_problem(&forged));
    assert!(forged.headers.contains_key("www-authenticate"));
    let malformed = shop
        .send(
            Method::POST,
            "/v1/users",
            &[("content-type", "application/json")],
            None,
        )
        .await;
    assert!(malformed.status.is_client_error() && is_problem(&malformed));

    // Internal routes are not reachable through the gateway; unknown paths are problems.
    for path in ["/v1/payments", "/v1/reservations", "/nope"] {
        let a = shop.send(Method::POST, path, &[], Some(json!({}))).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert!(is_problem(&a), "{path}");
    }
    assert_eq!(
        shop.get("/v1/orders/ord_missing").await.status,
        StatusCode::NOT_FOUND
    );
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_rate_limits_per_client_with_headers() {
    let shop = Shop::start(PlatformConfig {
        rate_limit: RateLimitSettings {
            per_second: 1,
            // Starting the shop takes two (the admin's sign-up and login).
            burst: 5,
        },
        ..config()
    })
    .await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..8 {
        let a = shop.get("/v1/products?per_page=1").await;
        statuses.push(a.status.as_u16());
        last = Some(a);
    }
    let last = last.unwrap();
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 3,
        "{statuses:?}"
    );
    assert!(is_problem(&last));
    assert!(last.headers.contains_key("retry-after"));
    assert!(last.headers.contains_key("ratelimit-policy"));
    assert!(last.headers.contains_key("ratelimit"));
    // Probes are not rate limited.
    assert_eq!(shop.get("/livez").await.status, StatusCode::OK);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_openapi_and_health() {
    let shop = Shop::start(config()).await;
    let doc = shop.get("/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], "3.1.0");
    let order = &doc.body["paths"]["/v1/orders"]["post"];
    for code in ["202", "201", "402", "409", "422", "429", "502", "504"] {
        assert!(order["responses"][code].is_object(), "{code}");
    }
    assert!(
        order["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Prefer" && p["in"] == "header")
    );
    assert!(order["responses"]["409"]["content"]["application/problem+json"].is_object());
    let body_ref = order["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap();
    let name = body_ref.rsplit('/').next().unwrap();
    assert!(doc.body["components"]["schemas"][name]["properties"]["lines"].is_object());
    let docs = shop.get("/docs").await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.body.as_str().unwrap().contains("/openapi.json"));
    let ready = shop.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    for url in shop.platform.services.values() {
        let r = shop
            .client
            .get(format!("{url}/readyz").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url}");
    }
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instance_is_skipped_and_none_left_is_a_502_problem() {
    // One live instance (a tiny axum app) and one port nobody listens on.
    let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live_url = format!("http://{}", live.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            live,
            axum::Router::new().route("/v1/ping", axum::routing::get(|| async { "pong" })),
        )
        .await
        .unwrap();
    });
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut table = UpstreamTable::new();
    table.insert("svc".into(), vec![dead.clone(), live_url]);
    table.insert("gone".into(), vec![dead]);
    let up = Upstreams::new(&table, Duration::from_secs(2)).unwrap();
    for _ in 0..4 {
        let r = up
            .forward("svc", Request::get("/v1/ping").body(Body::empty()).unwrap())
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = up
        .forward(
            "gone",
            Request::get("/v1/ping").body(Body::empty()).unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_past_its_in_flight_limit_sheds_load_with_429() {
    let shop = std::sync::Arc::new(
        Shop::start(PlatformConfig {
            max_in_flight: 1,
            payment: PaymentSettings {
                latency_ms: 300,
                failure_rate: 0.0,
            },
            ..config()
        })
        .await,
    );
    let user = shop.register("flo@example.com").await;
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let shop = shop.clone();
            let user = user.clone();
            tokio::spawn(async move {
                shop.order_waiting(&format!("k-shed-{i}"), &user, "SKU-0005", 1, "tok_visa")
                    .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let ok = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    let shed: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(
        ok >= 1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert!(
        !shed.is_empty(),
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert!(
        shed.iter()
            .all(|a| is_problem(a) && a.headers.contains_key("retry-after"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served_and_every_error_is_a_problem() {
    let shop = Shop::start(config()).await;
    let doc = shop.get("/openapi.json").await.body;
    let mut checked = 0;
    // A user's token on every call (an operation that needs none ignores
    // it); logging out, which ends it, goes last.
    let user = common::bearer(&shop.register("doc@example.com").await);
    let mut ops: Vec<(&String, &String, &Value)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .iter()
                .map(move |(method, op)| (path, method, op))
        })
        .collect();
    ops.sort_by_key(|(path, ..)| path.as_str() == "/v1/auth/logout");
    {
        for (path, method, op) in ops {
            let concrete = path
                .replace("{id}", "x_missing")
                .replace("{sku}", "SKU-0001");
            let query = if path == "/v1/notifications" {
                "?order_id=x"
            } else {
                ""
            };
            let method: Method = method.to_uppercase().parse().unwrap();
            let body = op.get("requestBody").map(|_| json!({}));
            let a = shop
                .send(
                    method.clone(),
                    &format!("{concrete}{query}"),
                    &[
                        ("idempotency-key", "\"k-doc\""),
                        ("authorization", user.as_str()),
                    ],
                    body,
                )
                .await;
            // Routed and handled: not the router's "no route" 404, nor 405.
            let detail = a.body["detail"].as_str().unwrap_or("");
            assert!(
                !detail.starts_with("no route"),
                "{method} {path}: {}",
                a.body
            );
            assert_ne!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            // Whatever it answered is documented, and errors are problems.
            let code = a.status.as_u16().to_string();
            assert!(
                op["responses"][&code].is_object(),
                "{method} {path} answered {code}, not documented"
            );
            if !a.status.is_success() {
                assert!(is_problem(&a), "{method} {path} {code}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 13);
    shop.stop().await;
}

/// A request to send and the status it must get.
struct BadInput(String, Option<(&'static str, Vec<u8>)>, u16);

/// Bad input to each documented operation (a malformed or missing query
/// parameter, a body that is not JSON, a body over the limit) answers a
/// problem whose status the OpenAPI document lists for that operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_to_every_documented_operation_is_a_documented_problem() {
    let shop = Shop::start(config()).await;
    let doc = shop.get("/openapi.json").await.body;
    let base = shop.gateway_url().to_owned();
    let admin = common::bearer(&shop.admin);
    let mut checked = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let concrete = path
                .replace("{id}", "x_missing")
                .replace("{sku}", "SKU-0001");
            let method: Method = method.to_uppercase().parse().unwrap();
            let key = [
                ("idempotency-key", "\"k-bad\""),
                ("authorization", admin.as_str()),
            ];
            let mut tries: Vec<BadInput> = Vec::new();
            let queries: Vec<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            if queries.contains(&"per_page") {
                tries.push(BadInput(format!("{concrete}?per_page="), None, 400));
                tries.push(BadInput(format!("{concrete}?per_page=many"), None, 400));
            }
            if queries.contains(&"order_id") {
                tries.push(BadInput(concrete.clone(), None, 400)); // required, missing
            }
            if op.get("requestBody").is_some() {
                tries.push(BadInput(
                    concrete.clone(),
                    Some(("text/plain", b"{}".to_vec())),
                    415,
                ));
                tries.push(BadInput(concrete.clone(), Some(("", b"{}".to_vec())), 415));
                let big = format!(
                    "{{\"pad\":\"{}\"}}",
                    "x".repeat(ee_platform::upstream::MAX_BODY + 1024)
                );
                tries.push(BadInput(
                    concrete.clone(),
                    Some(("application/json", big.into_bytes())),
                    413,
                ));
            }
            for BadInput(uri, body, expected) in tries {
                let a = common::send_raw(
                    &shop.client,
                    method.clone(),
                    &format!("{base}{uri}"),
                    &key,
                    body,
                )
                .await;
                assert_eq!(a.status.as_u16(), expected, "{method} {uri}: {}", a.body);
                assert!(a.is_problem(), "{method} {uri} answered {}", a.status);
                assert!(
                    op["responses"][expected.to_string()].is_object(),
                    "{method} {path} answered {expected}, not documented"
                );
                checked.push(format!("{method} {uri}"));
            }
        }
    }
    // Both query routes and every JSON-body route were tried.
    assert!(
        checked.iter().any(|c| c.contains("per_page=")),
        "{checked:?}"
    );
    assert!(
        checked.iter().any(|c| c.ends_with("/v1/notifications")),
        "{checked:?}"
    );
    assert!(checked.len() >= 3 + 2 * 3, "{checked:?}");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_is_a_504_problem_after_its_own_timeout() {
    let slow = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_url = format!("http://{}", slow.local_addr().unwrap());
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/v1/ping",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
        axum::serve(slow, app).await.unwrap();
    });
    let mut table = UpstreamTable::new();
    table.insert("slow".into(), vec![slow_url.clone()]);
    table.insert("patient".into(), vec![slow_url]);
    let timeouts = HashMap::from([("slow".to_owned(), 100_u64)]);
    let up = Upstreams::new(&table, Duration::from_secs(30))
        .unwrap()
        .with_timeouts(&timeouts)
        .unwrap();
    let started = std::time::Instant::now();
    let r = up
        .forward(
            "slow",
            Request::get("/v1/ping").body(Body::empty()).unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        body["type"],
        "https://ee.rs/problems/gateway/upstream-timeout"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("100 ms"),
        "{body}"
    );
    // A timeout for a service without upstreams is a configuration error.
    let unknown = HashMap::from([("nobody".to_owned(), 1_u64)]);
    assert_eq!(
        Upstreams::new(&table, Duration::from_secs(1))
            .unwrap()
            .with_timeouts(&unknown)
            .err(),
        Some(ee_platform::upstream::UpstreamError::UnknownService(
            "nobody".to_owned()
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_payment_outcome_keeps_the_order_pending_and_its_job_retrying() {
    // The payment service answers after 400 ms; the order service waits 100.
    let shop = Shop::start(PlatformConfig {
        payment: PaymentSettings {
            latency_ms: 400,
            failure_rate: 0.0,
        },
        upstream_timeouts_ms: HashMap::from([("payment".to_owned(), 100)]),
        ..config()
    })
    .await;
    let user = shop.register("gus@example.com").await;
    let before = shop.stock("SKU-0006").await;
    // Even a client that waits gets the 202: the charge job takes over.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let a = shop
            .order_waiting("k-unknown", &user, "SKU-0006", 2, "tok_visa")
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
        assert_eq!(a.headers.get("preference-applied").unwrap(), "wait=10");
        assert_eq!(a.body["status"], "pending");
        ids.push(a.body["id"].as_str().unwrap().to_owned());
    }
    // Every repeat answered for the same order; the stock was taken once.
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(shop.stock("SKU-0006").await, before - 2);
    // The job tries again and again (each charge times out as well),
    // nothing is undone on a guess, and the stock stays taken once.
    let orders = shop.platform.queue("orders").expect("the in-process queue");
    let job = format!("charge-{}", ids[0]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = orders
            .job(&job)
            .await
            .expect("memory does not fail")
            .expect("the charge job");
        if info.attempts_made >= 3 {
            assert!(
                info.failed_reason.unwrap_or_default().contains("payment"),
                "{job}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{job}: {info:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let order = shop.get(&format!("/v1/orders/{}", ids[0])).await;
    assert_eq!(order.body["status"], "pending");
    assert_eq!(shop.stock("SKU-0006").await, before - 2);
    // Another key is another order.
    let other = shop
        .order_waiting("k-unknown-2", &user, "SKU-0006", 1, "tok_visa")
        .await;
    assert_eq!(other.status, StatusCode::ACCEPTED);
    assert_ne!(other.body["id"], ids[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_same_request_resumes_its_pending_order() {
    // The payment service answers after 400 ms, the order service waits
    // 100: the order stays pending, its job retrying in this process.
    let first = config();
    let dir = first.data_dir.clone();
    let shop = Shop::start(PlatformConfig {
        payment: PaymentSettings {
            latency_ms: 400,
            failure_rate: 0.0,
        },
        upstream_timeouts_ms: HashMap::from([("payment".to_owned(), 100)]),
        ..first
    })
    .await;
    let user = shop.register("ida@example.com").await;
    let before = shop.stock("SKU-0009").await;
    let a = shop
        .order("k-restart", &user, "SKU-0009", 3, "tok_visa")
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(shop.stock("SKU-0009").await, before - 3);
    // Stopped: the in-memory job and idempotency record are gone, the
    // order (SQLite) is still pending with its stock reserved.
    shop.stop().await;

    let shop = Shop::start(PlatformConfig {
        data_dir: dir,
        ..config()
    })
    .await;
    let order = shop.get(&format!("/v1/orders/{id}")).await;
    assert_eq!(order.body["status"], "pending");
    // The same request again resumes that order: its reservation is the
    // one made (nothing taken twice) and a new charge job settles it.
    let again = shop
        .order("k-restart", &user, "SKU-0009", 3, "tok_visa")
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    assert_eq!(again.body["id"], id.as_str());
    assert!(again.headers.get("idempotent-replayed").is_none());
    assert_eq!(shop.settled(&id).await["status"], "confirmed");
    assert_eq!(shop.stock("SKU-0009").await, before - 3);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_shorter_than_the_payment_gets_the_202_and_the_order_still_settles() {
    let shop = Shop::start(PlatformConfig {
        payment: PaymentSettings {
            latency_ms: 3_000,
            failure_rate: 0.0,
        },
        ..config()
    })
    .await;
    let user = shop.register("hal@example.com").await;
    let before = shop.stock("SKU-0008").await;
    let started = std::time::Instant::now();
    let a = shop
        .place(
            &[("prefer", "respond-async, wait=1")],
            "k-short-wait",
            &user,
            "SKU-0008",
            1,
            "tok_visa",
        )
        .await;
    let took = started.elapsed();
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.headers.get("preference-applied").unwrap(), "wait=1");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(2_500),
        "answered after {took:?}"
    );
    let id = a.body["id"].as_str().unwrap();
    assert_eq!(shop.settled(id).await["status"], "confirmed");
    assert_eq!(shop.stock("SKU-0008").await, before - 1);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_a_413_problem_at_the_gateway() {
    let shop = Shop::start(config()).await;
    let big = "x".repeat(ee_platform::upstream::MAX_BODY + 1);
    let a = shop
        .send(
            Method::POST,
            "/v1/users",
            &[],
            Some(json!({ "email": "a@example.com", "name": big })),
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(is_problem(&a));
    shop.stop().await;
}
