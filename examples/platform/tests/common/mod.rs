//! What the platform's end-to-end tests share: an HTTP client and its answers.

#![allow(dead_code)] // each test binary uses part of it

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A plain HTTP/1 client.
pub type HttpClient = Client<HttpConnector, Body>;

/// A new client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An answer: status, headers, and the body as JSON (a string when it is
/// not JSON, `null` when empty).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Whether it is an RFC 9457 problem.
    pub fn is_problem(&self) -> bool {
        self.headers.get("content-type").is_some_and(|v| {
            v.to_str()
                .unwrap_or("")
                .starts_with("application/problem+json")
        })
    }
}

/// `method url` with `headers` and a JSON `body`.
pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
    send_raw(client, method, url, headers, body).await
}

/// `method url` with `headers` and a body of any content type (`None`: no
/// `Content-Type` header).
pub async fn send_raw(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Vec<u8>)>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some((content_type, b)) => {
            if !content_type.is_empty() {
                req = req.header("content-type", content_type);
            }
            req.body(Body::from(b))
        }
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// A fresh, empty directory under the system's temp dir, unique per call
/// and per test process (`ee-platform-<what>-<pid>-<n>`).
pub fn fresh_dir(what: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ee-platform-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A test signing key (Ed25519, PKCS#8), so that tokens outlive a restart
/// of the platform in a test. Never use it anywhere else.
pub const TEST_SIGNING_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIFTwit+oD9qen94b15BqphDpJUcbWPzcTcTiM96NqAmB
-----END PRIVATE KEY-----
";

/// The email the tests' configuration makes an admin.
pub const ADMIN_EMAIL: &str = "admin@example.com";

/// The password every test user registers with.
pub const PASSWORD: &str = "correct horse battery";

/// Auth settings for tests: the test key, and [`ADMIN_EMAIL`] an admin.
pub fn auth_settings() -> ee_platform::auth::AuthSettings {
    let mut auth = ee_platform::auth::AuthSettings::default();
    auth.issuer.keys = vec![ee_auth::KeyConfig::pem(
        "test-1",
        ee_auth::SigningAlgorithm::EdDSA,
        ee_core::Secret::new(TEST_SIGNING_KEY.to_owned()),
    )];
    auth.admins = vec![ADMIN_EMAIL.to_owned()];
    auth
}

/// Registers `email` through `gateway` and logs in: the access token.
pub async fn sign_up(client: &HttpClient, gateway: &str, email: &str) -> String {
    let a = send(
        client,
        Method::POST,
        &format!("{gateway}/v1/users"),
        &[],
        Some(serde_json::json!({"email": email, "name": "Ada", "password": PASSWORD})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    log_in(client, gateway, email).await
}

/// Logs `email` in: the access token.
pub async fn log_in(client: &HttpClient, gateway: &str, email: &str) -> String {
    let a = send(
        client,
        Method::POST,
        &format!("{gateway}/v1/auth/token"),
        &[],
        Some(serde_json::json!({"email": email, "password": PASSWORD})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["access_token"].as_str().unwrap().to_owned()
}

/// `Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The body of an order of `quantity` × `sku` (the user is the token's).
pub fn order_body(sku: &str, quantity: u32, token: &str) -> Value {
    serde_json::json!({"lines": [{"sku": sku, "quantity": quantity}], "payment_token": token})
}

/// `POST {gateway}/v1/orders` as `user` (an access token) with `body`,
/// `Idempotency-Key: "key"` and `headers`.
pub async fn place(
    client: &HttpClient,
    gateway: &str,
    headers: &[(&str, &str)],
    user: &str,
    key: &str,
    body: Value,
) -> Answer {
    let key = format!("\"{key}\"");
    let auth = bearer(user);
    let mut headers = headers.to_vec();
    headers.push(("idempotency-key", &key));
    headers.push(("authorization", &auth));
    send(
        client,
        Method::POST,
        &format!("{gateway}/v1/orders"),
        &headers,
        Some(body),
    )
    .await
}

/// The order `id` once its payment is settled (no longer `pending`),
/// asked through `gateway` as `reader` (its owner's or an admin's token)
/// until `within` has passed.
pub async fn settled(
    client: &HttpClient,
    gateway: &str,
    reader: &str,
    id: &str,
    within: std::time::Duration,
) -> Value {
    let deadline = std::time::Instant::now() + within;
    let auth = bearer(reader);
    loop {
        let a = send(
            client,
            Method::GET,
            &format!("{gateway}/v1/orders/{id}"),
            &[("authorization", &auth)],
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        if a.body["status"] != "pending" {
            return a.body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "order {id} still pending"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A platform under test, reached through its gateway: the order helpers
/// both end-to-end suites use.
pub trait Shop {
    /// The client the test uses.
    fn http(&self) -> &HttpClient;
    /// The gateway's base URL.
    fn gateway_url(&self) -> &str;

    /// Places an order as `user` (an access token): 202 once the stock is
    /// reserved (the payment follows).
    async fn order(&self, key: &str, user: &str, sku: &str, quantity: u32, token: &str) -> Answer {
        self.place(&[], key, user, sku, quantity, token).await
    }

    /// Places an order with `Prefer: wait=10`: the answer is the outcome.
    async fn order_waiting(
        &self,
        key: &str,
        user: &str,
        sku: &str,
        quantity: u32,
        token: &str,
    ) -> Answer {
        self.place(&[("prefer", "wait=10")], key, user, sku, quantity, token)
            .await
    }

    /// Places an order with `headers`.
    async fn place(
        &self,
        headers: &[(&str, &str)],
        key: &str,
        user: &str,
        sku: &str,
        quantity: u32,
        token: &str,
    ) -> Answer {
        let body = order_body(sku, quantity, token);
        place(self.http(), self.gateway_url(), headers, user, key, body).await
    }
}

/// The answers of concurrent orders: how many per status, and the ids of
/// those accepted (202, or 201 when the charge job was quicker).
pub fn tally(
    answers: impl IntoIterator<Item = Answer>,
) -> (std::collections::HashMap<u16, usize>, Vec<String>) {
    let mut by_status = std::collections::HashMap::new();
    let mut accepted = Vec::new();
    for a in answers {
        if a.status.is_success() {
            accepted.push(a.body["id"].as_str().unwrap().to_owned());
        }
        *by_status.entry(a.status.as_u16()).or_default() += 1;
    }
    (by_status, accepted)
}
