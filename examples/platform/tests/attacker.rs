//! The platform walked as an attacker would (embedded mode, real HTTP):
//! no, forged, expired, revoked and other users' tokens; direct calls to
//! internal services; a service token replayed at another service;
//! idempotency-key collisions; a pre-made cheap payment; the operators'
//! endpoints. Every attempt gets the right problem, with nothing leaked
//! and nothing lost.

mod common;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::{Answer, HttpClient, Shop as _, bearer, send};
use ee_platform::{PaymentSettings, Platform, PlatformConfig};
use serde_json::{Value, json};

fn config() -> PlatformConfig {
    let dir = common::fresh_dir("attacker");
    PlatformConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir,
        payment: PaymentSettings {
            latency_ms: 5,
            failure_rate: 0.0,
        },
        auth: common::auth_settings(),
        ..PlatformConfig::default()
    }
}

struct Shop {
    platform: Platform,
    client: HttpClient,
}

impl common::Shop for Shop {
    fn http(&self) -> &HttpClient {
        &self.client
    }

    fn gateway_url(&self) -> &str {
        &self.platform.gateway
    }
}

impl Shop {
    async fn start() -> Self {
        Self {
            platform: Platform::start(config(), None).await.unwrap(),
            client: common::client(),
        }
    }

    /// `method path` through the gateway with `token` (if any).
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        self.at(&self.platform.gateway, method, path, token, body)
            .await
    }

    /// `method path` at `base` (the gateway or a service) with `token`.
    async fn at(
        &self,
        base: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let auth = token.map(bearer);
        let mut headers = vec![("idempotency-key", "\"attack\"")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        send(
            &self.client,
            method,
            &format!("{base}{path}"),
            &headers,
            body,
        )
        .await
    }

    /// The id of `token`'s user.
    async fn user_id(&self, token: &str) -> String {
        let me = self
            .call(Method::GET, "/v1/users/me", Some(token), None)
            .await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.body);
        me.body["id"].as_str().unwrap().to_owned()
    }

    fn service(&self, name: &str) -> &str {
        &self.platform.services[name]
    }

    async fn sign_up(&self, email: &str) -> String {
        common::sign_up(&self.client, &self.platform.gateway, email).await
    }

    async fn stop(self) {
        self.platform.shutdown(Duration::from_secs(2)).await;
    }
}

/// A 401 problem with an RFC 6750 challenge.
fn unauthorized(a: &Answer, what: &str) {
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what}: {}", a.body);
    assert!(a.is_problem(), "{what}");
    assert!(
        a.headers
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer")),
        "{what}: {:?}",
        a.headers
    );
}

/// An issuer of the platform's kind of token, on the test key or another.
fn issuer(key: Option<&str>, clock_offset_ms: i64) -> ee_auth::TokenIssuer<Skewed> {
    let mut cfg = common::auth_settings().issuer;
    if key.is_none() {
        cfg.keys.clear();
        cfg.ephemeral_key = true;
    }
    ee_auth::TokenIssuer::builder()
        .config(&cfg)
        .unwrap()
        .clock(Skewed(clock_offset_ms))
        .build()
        .unwrap()
}

/// The system clock, off by some milliseconds (a token issued in the past).
#[derive(Debug, Clone, Copy)]
struct Skewed(i64);

impl ee_core::Clock for Skewed {
    fn now(&self) -> std::time::Instant {
        std::time::Instant::now()
    }

    fn unix_ms(&self) -> u64 {
        ee_core::unix_ms().saturating_add_signed(self.0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_before_any_service_and_by_each_service() {
    let shop = Shop::start().await;
    let real = shop.sign_up("victim@example.com").await;
    let me = shop
        .call(Method::GET, "/v1/users/me", Some(&real), None)
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    let victim = me.body["id"].as_str().unwrap().to_owned();

    let forged = issuer(None, 0)
        .issue_access(&ee_auth::Grant::new(victim.clone()).with_roles(["admin"]))
        .unwrap();
    let expired = issuer(Some(common::TEST_SIGNING_KEY), -3_600_000)
        .issue_access(&ee_auth::Grant::new(victim.clone()))
        .unwrap();
    // `alg: none`, the victim as subject.
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(
            json!({"sub": victim, "iss": "ee-platform", "aud": "ee-platform", "exp": 4_000_000_000_u64})
        )
    );
    let tampered = {
        // The real token with its payload changed to claim the admin role.
        let parts: Vec<&str> = real.split('.').collect();
        let claims = json!({"sub": victim, "roles": ["admin"], "iss": "ee-platform", "aud": "ee-platform", "exp": 4_000_000_000_u64});
        format!("{}.{}.{}", parts[0], b64(claims), parts[2])
    };
    let bad = [
        ("forged (another key)", forged.token.expose().clone()),
        ("expired", expired.token.expose().clone()),
        ("alg none", unsigned),
        ("tampered", tampered),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in &bad {
        for (method, path) in [
            (Method::GET, "/v1/users/me"),
            (Method::GET, format!("/v1/users/{victim}").as_str()),
            (Method::GET, "/v1/orders/ord_1"),
            (Method::GET, "/v1/notifications?order_id=ord_1"),
            // Even where no token is needed, a bad one is refused.
            (Method::GET, "/v1/products"),
        ] {
            let a = shop.call(method, path, Some(token), None).await;
            unauthorized(&a, &format!("{what} at the gateway {path}"));
            assert!(!a.body.to_string().contains(token.as_str()), "{what}");
        }
        // Straight at a service (past the gateway): the same answer.
        let a = shop
            .at(
                shop.service("user"),
                Method::GET,
                "/v1/users/me",
                Some(token),
                None,
            )
            .await;
        unauthorized(&a, &format!("{what} at the user service"));
        let a = shop
            .at(
                shop.service("order"),
                Method::GET,
                "/v1/orders/ord_1",
                Some(token),
                None,
            )
            .await;
        unauthorized(&a, &format!("{what} at the order service"));
    }
    // No token where one is needed: 401, at the gateway and at a service.
    for path in [
        "/v1/users/me",
        "/v1/orders/ord_1",
        "/v1/notifications?order_id=x",
    ] {
        unauthorized(&shop.call(Method::GET, path, None, None).await, path);
    }
    unauthorized(
        &shop
            .at(
                shop.service("order"),
                Method::GET,
                "/v1/orders/ord_1",
                None,
                None,
            )
            .await,
        "no token at the order service",
    );
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_things_are_not_found_and_an_order_is_the_tokens_users() {
    let shop = Shop::start().await;
    let alice = shop.sign_up("alice@example.com").await;
    let mallory = shop.sign_up("mallory@example.com").await;
    let alice_id = shop.user_id(&alice).await;

    // An order names no user: a body that tries is refused.
    let a = shop
        .call(
            Method::POST,
            "/v1/orders",
            Some(&mallory),
            Some(json!({"user_id": alice_id, "lines": [{"sku": "SKU-0001", "quantity": 1}], "payment_token": "tok_visa"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);

    let placed = shop
        .order_waiting("alice-1", &alice, "SKU-0001", 1, "tok_visa")
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let order = placed.body["id"].as_str().unwrap().to_owned();
    assert_eq!(placed.body["user_id"], alice_id.as_str());

    // Mallory sees exactly what she would for ids that do not exist.
    for (theirs, missing) in [
        (
            format!("/v1/orders/{order}"),
            "/v1/orders/ord_000000000000000000000000".to_owned(),
        ),
        (
            format!("/v1/users/{alice_id}"),
            "/v1/users/usr_0000000000000000".to_owned(),
        ),
    ] {
        let a = shop.call(Method::GET, &theirs, Some(&mallory), None).await;
        let b = shop.call(Method::GET, &missing, Some(&mallory), None).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{theirs}: {}", a.body);
        assert_eq!((a.status, &a.body["type"]), (b.status, &b.body["type"]));
        assert!(!a.body.to_string().contains("alice@"), "{}", a.body);
    }
    // Notifications of her order: none for Mallory, once they are sent.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mine = shop
            .call(
                Method::GET,
                &format!("/v1/notifications?order_id={order}"),
                Some(&alice),
                None,
            )
            .await;
        if mine.body.as_array().is_some_and(|a| !a.is_empty()) {
            assert_eq!(mine.body[0]["recipient"], "alice@example.com");
            break;
        }
        assert!(Instant::now() < deadline, "no notification for alice");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let theirs = shop
        .call(
            Method::GET,
            &format!("/v1/notifications?order_id={order}"),
            Some(&mallory),
            None,
        )
        .await;
    assert_eq!(
        (theirs.status, theirs.body.clone()),
        (StatusCode::OK, json!([]))
    );
    // The owner and an admin see it.
    let own = shop
        .call(
            Method::GET,
            &format!("/v1/orders/{order}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(own.status, StatusCode::OK);
    let _ = shop.sign_up(common::ADMIN_EMAIL).await;
    let admin = common::log_in(&shop.client, &shop.platform.gateway, common::ADMIN_EMAIL).await;
    let seen = shop
        .call(
            Method::GET,
            &format!("/v1/orders/{order}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(seen.status, StatusCode::OK);
    // Only an admin manages the catalogue.
    let product = json!({"sku": "EVIL-1", "name": "x", "description": "", "price_minor": 0, "currency": "EUR", "stock": 1});
    let a = shop
        .call(
            Method::POST,
            "/v1/products",
            Some(&mallory),
            Some(product.clone()),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert!(a.is_problem());
    let a = shop
        .call(
            Method::PATCH,
            "/v1/products/SKU-0001",
            Some(&mallory),
            Some(json!({"price_minor": 1})),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let a = shop
        .call(Method::POST, "/v1/products", Some(&admin), Some(product))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_services_trust_a_service_token_not_a_network_position() {
    let shop = Shop::start().await;
    let user = shop.sign_up("eve@example.com").await;
    let tokens =
        ee_auth::ServiceTokens::new(issuer(Some(common::TEST_SIGNING_KEY), 0), "order").unwrap();
    let for_product = tokens.mint("product").unwrap();
    let for_product = for_product.token().expose().to_string();
    let reserve = json!({"order_id": "ord_x", "lines": [{"sku": "SKU-0001", "quantity": 1}]});
    let charge =
        json!({"order_id": "ord_x", "amount_minor": 1, "currency": "EUR", "token": "tok_visa"});
    let product = shop.service("product").to_owned();
    let payment = shop.service("payment").to_owned();
    // Loopback is no credential: no token → 401; a user's → 403.
    unauthorized(
        &shop
            .at(
                &product,
                Method::POST,
                "/v1/reservations",
                None,
                Some(reserve.clone()),
            )
            .await,
        "reserve without a token",
    );
    unauthorized(
        &shop
            .at(
                &payment,
                Method::POST,
                "/v1/payments",
                None,
                Some(charge.clone()),
            )
            .await,
        "charge without a token",
    );
    for (base, path, body) in [
        (&product, "/v1/reservations", reserve.clone()),
        (&payment, "/v1/payments", charge.clone()),
    ] {
        let a = shop
            .at(base, Method::POST, path, Some(&user), Some(body))
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}: {}", a.body);
        assert!(a.is_problem());
    }
    // The order service's token for product is no good at payment (its
    // audience), and the gateway does not route internal paths at all.
    unauthorized(
        &shop
            .at(
                &payment,
                Method::POST,
                "/v1/payments",
                Some(&for_product),
                Some(charge.clone()),
            )
            .await,
        "a token for product replayed at payment",
    );
    for path in ["/v1/payments", "/v1/reservations"] {
        let a = shop
            .call(Method::POST, path, Some(&user), Some(json!({})))
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
    }
    // And it works for the one it is for.
    let a = shop
        .at(
            &product,
            Method::POST,
            "/v1/reservations",
            Some(&for_product),
            Some(reserve),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    shop.stop().await;
}

/// The id the order service gives `user`'s order with `key` (as it does:
/// SHA-256 of the user, a zero byte and the key).
fn predicted_order_id(user: &str, key: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(user.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    let mut id = String::from("ord_");
    for b in &digest[..12] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_do_not_collide_across_clients_or_with_internal_keys() {
    let shop = Shop::start().await;
    let alice = shop.sign_up("ann@example.com").await;
    let mallory = shop.sign_up("mal@example.com").await;
    let alice_id = shop.user_id(&alice).await;
    // Mallory knows how ids are made, and takes the payment service's
    // internal key for Alice's next order ("order-<id>") at /v1/orders.
    let victim_order = predicted_order_id(&alice_id, "\"ann-1\"");
    let squat = shop
        .place(
            &[],
            &format!("order-{victim_order}"),
            &mallory,
            "SKU-0002",
            1,
            "tok_visa",
        )
        .await;
    assert_eq!(squat.status, StatusCode::ACCEPTED, "{}", squat.body);
    // The same key as Alice's, from Mallory, with another body: her own order.
    let same_key = shop
        .order("ann-1", &mallory, "SKU-0002", 2, "tok_visa")
        .await;
    assert_eq!(same_key.status, StatusCode::ACCEPTED, "{}", same_key.body);
    // Alice's order goes through: charged under its own key, confirmed.
    let placed = shop
        .order_waiting("ann-1", &alice, "SKU-0002", 1, "tok_visa")
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    assert_eq!(placed.body["id"], victim_order.as_str());
    assert_eq!(placed.body["status"], "confirmed");
    assert_ne!(same_key.body["id"], placed.body["id"]);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheap_payment_made_in_advance_never_confirms_an_order() {
    let shop = Shop::start().await;
    let alice = shop.sign_up("pat@example.com").await;
    let alice_id = shop.user_id(&alice).await;
    let next = predicted_order_id(&alice_id, "\"pat-1\"");
    let cheap =
        json!({"order_id": next, "amount_minor": 1, "currency": "EUR", "token": "tok_visa"});
    // Without the order service's token, it cannot even be made.
    let a = shop
        .at(
            shop.service("payment"),
            Method::POST,
            "/v1/payments",
            Some(&alice),
            Some(cheap.clone()),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    // Even with it (a compromised caller), it does not stand for the order:
    // the real charge is refused, and the order never confirms on it.
    let tokens =
        ee_auth::ServiceTokens::new(issuer(Some(common::TEST_SIGNING_KEY), 0), "order").unwrap();
    let as_order = tokens.mint("payment").unwrap().token().expose().to_string();
    let a = shop
        .at(
            shop.service("payment"),
            Method::POST,
            "/v1/payments",
            Some(&as_order),
            Some(cheap),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let placed = shop
        .order_waiting("pat-1", &alice, "SKU-0003", 2, "tok_visa")
        .await;
    assert_eq!(placed.body["id"], next.as_str());
    assert_ne!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let order = shop
        .call(
            Method::GET,
            &format!("/v1/orders/{next}"),
            Some(&alice),
            None,
        )
        .await;
    assert_ne!(order.body["status"], "confirmed", "{}", order.body);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_on_logout_and_a_reused_refresh_token_ends_the_family() {
    let shop = Shop::start().await;
    let _ = shop.sign_up("sid@example.com").await;
    let login = shop
        .call(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({"email": "sid@example.com", "password": common::PASSWORD})),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert_eq!(login.headers["cache-control"], "no-store");
    let access = login.body["access_token"].as_str().unwrap().to_owned();
    let refresh = login.body["refresh_token"].as_str().unwrap().to_owned();
    // A refresh token works once; presenting it again revokes the family.
    let next = shop
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    let newer = next.body["refresh_token"].as_str().unwrap().to_owned();
    let reuse = shop
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    unauthorized(&reuse, "a reused refresh token");
    let after = shop
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": newer})),
        )
        .await;
    unauthorized(&after, "the family after a reuse");
    // Logout: the access token stops working everywhere.
    let out = shop
        .call(Method::POST, "/v1/auth/logout", Some(&access), None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    unauthorized(
        &shop
            .call(Method::GET, "/v1/users/me", Some(&access), None)
            .await,
        "a logged-out token at the gateway",
    );
    unauthorized(
        &shop
            .at(
                shop.service("order"),
                Method::GET,
                "/v1/orders/ord_1",
                Some(&access),
                None,
            )
            .await,
        "a logged-out token at the order service",
    );
    // Wrong password and unknown email: one answer, nothing echoed.
    let wrong = shop
        .call(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({"email": "sid@example.com", "password": "hunter2-guess"})),
        )
        .await;
    let nobody = shop
        .call(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({"email": "nobody@example.com", "password": "hunter2-guess"})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body, nobody.body);
    assert!(!wrong.body.to_string().contains("hunter2"));
    let short = shop
        .call(
            Method::POST,
            "/v1/users",
            None,
            Some(json!({"email": "x@example.com", "name": "X", "password": "hunter2"})),
        )
        .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        !short.body.to_string().contains("hunter2"),
        "{}",
        short.body
    );
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_endpoints_need_an_admin_and_the_probes_say_nothing() {
    let shop = Shop::start().await;
    let user = shop.sign_up("ops-user@example.com").await;
    let _ = shop.sign_up(common::ADMIN_EMAIL).await;
    let admin = common::log_in(&shop.client, &shop.platform.gateway, common::ADMIN_EMAIL).await;
    for base in [
        shop.platform.gateway.clone(),
        shop.service("order").to_owned(),
    ] {
        for path in ["/healthz"] {
            unauthorized(&shop.at(&base, Method::GET, path, None, None).await, path);
            let a = shop.at(&base, Method::GET, path, Some(&user), None).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{base}{path}");
            let a = shop.at(&base, Method::GET, path, Some(&admin), None).await;
            assert_eq!(a.status, StatusCode::OK, "{base}{path}: {}", a.body);
        }
        // The public probes: a status, no dependency named.
        let ready = shop.at(&base, Method::GET, "/readyz", None, None).await;
        assert_eq!(ready.status, StatusCode::OK);
        assert_eq!(ready.body, json!({"status": "pass"}));
        assert_eq!(
            shop.at(&base, Method::GET, "/livez", None, None)
                .await
                .status,
            StatusCode::OK
        );
    }
    // The queue admin API: admins only, and payloads hidden unless asked.
    let order = shop.service("order").to_owned();
    let path = "/admin/queues/api/queues/orders/jobs?state=completed";
    unauthorized(
        &shop.at(&order, Method::GET, path, None, None).await,
        "queue admin",
    );
    let a = shop.at(&order, Method::GET, path, Some(&user), None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let placed = shop
        .order_waiting("ops-1", &user, "SKU-0004", 1, "tok_visa")
        .await;
    assert!(placed.status.is_success(), "{}", placed.body);
    let a = shop.at(&order, Method::GET, path, Some(&admin), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(!a.body.to_string().contains("tok_visa"), "{}", a.body);
    shop.stop().await;
}
