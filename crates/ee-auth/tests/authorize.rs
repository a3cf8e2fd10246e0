//! The enforcement points through a real axum router: `AuthorizeLayer`,
//! `require` as a route layer, `RequireScopeLayer`, and `authorize` inside a
//! handler, with an identity put in place by a stand-in for the auth layer.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use ee_auth::{
    AccessRequest, AuthError, Authorize, AuthorizeLayer, CedarPolicies, Decision, Identity, Method,
    PROBLEM_FORBIDDEN, PROBLEM_INSUFFICIENT_SCOPE, PROBLEM_UNAUTHENTICATED, PROBLEM_UNAVAILABLE,
    Rbac, RequireScopeLayer, Resource, RoleConfig, Target, authorize, require,
};
use ee_core::{Problem, RequestHead};
use ee_testing::TestResponse;
use http::{Method as HttpMethod, StatusCode, header};
use serde_json::{Value, json};

/// Stands in for the authentication layer: `x-user`, `x-roles` (comma
/// separated) and `x-scopes` become an `Identity`; no `x-user`, none.
async fn fake_auth(mut req: Request, next: Next) -> Response {
    if let Some(identity) = identity_from_headers(req.headers()) {
        req.extensions_mut().insert(identity);
    }
    next.run(req).await
}

fn identity_from_headers(headers: &http::HeaderMap) -> Option<Identity> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let list = |v: Option<&str>| -> Vec<String> {
        v.map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let user = header("x-user")?;
    Some(
        Identity::new(user, Method::Jwt)
            .with_roles(list(header("x-roles")))
            .with_scopes(list(header("x-scopes"))),
    )
}

fn rbac() -> Rbac {
    Rbac::builder()
        .role("clerk", RoleConfig::new().permissions(["orders:read"]))
        .role(
            "manager",
            RoleConfig::new()
                .inherits(["clerk"])
                .permissions(["orders:write", "refunds:*"]),
        )
        .build()
        .unwrap()
}

fn request(method: HttpMethod, path: &str, user: Option<&str>, roles: &str) -> http::Request<Body> {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(user) = user {
        b = b.header("x-user", user).header("x-roles", roles);
    }
    b.body(Body::empty()).unwrap()
}

fn problem(res: &TestResponse) -> Value {
    assert_eq!(
        res.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/problem+json"
    );
    serde_json::from_slice(&res.body).unwrap()
}

/// The router under test: the whole app behind an `AuthorizeLayer` that
/// maps the method to `read`/`write` on `orders`, and a `refunds` route
/// guarded by `require`.
fn app(rbac: Rbac) -> Router {
    let rbac = Arc::new(rbac);
    let orders = Router::new()
        .route(
            "/orders",
            get(|| async { "orders" }).post(|| async { "created" }),
        )
        .route_layer(AuthorizeLayer::new(
            rbac.clone(),
            |head: &RequestHead<'_>| {
                let action = if head.method == HttpMethod::GET {
                    "read"
                } else {
                    "write"
                };
                Target::new(action, "orders", "*")
            },
        ));
    Router::new()
        .merge(orders)
        .route(
            "/refunds",
            post(|| async { "refunded" }).route_layer(require(rbac, "refunds:create")),
        )
        .layer(middleware::from_fn(fake_auth))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn layer_answers_401_403_200_and_counts_decisions() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let app = app(rbac());
        runtime().block_on(async {
            let res =
                ee_testing::send(app.clone(), request(HttpMethod::GET, "/orders", None, "")).await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED);
            assert_eq!(res.headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
            assert_eq!(problem(&res)["type"], PROBLEM_UNAUTHENTICATED);

            let res = ee_testing::send(
                app.clone(),
                request(HttpMethod::POST, "/orders", Some("user:cy"), "clerk"),
            )
            .await;
            assert_eq!(res.status, StatusCode::FORBIDDEN);
            let p = problem(&res);
            assert_eq!(p["type"], PROBLEM_FORBIDDEN);
            // The reason stays in the decision log: no role, policy or tenant name leaks.
            assert_eq!(p["detail"], "the caller may not perform this request");

            let res = ee_testing::send(
                app.clone(),
                request(HttpMethod::GET, "/orders", Some("user:cy"), "clerk"),
            )
            .await;
            assert_eq!(res.status, StatusCode::OK);
            assert_eq!(res.text(), "orders");
            let res = ee_testing::send(
                app.clone(),
                request(HttpMethod::POST, "/orders", Some("user:mia"), "manager"),
            )
            .await;
            assert_eq!((res.status, res.text()), (StatusCode::OK, "created"));

            // `require` on the refunds route.
            let res = ee_testing::send(
                app.clone(),
                request(HttpMethod::POST, "/refunds", Some("user:cy"), "clerk"),
            )
            .await;
            assert_eq!(res.status, StatusCode::FORBIDDEN);
            assert_eq!(
                problem(&res)["detail"],
                "the caller may not perform this request"
            );
            let res = ee_testing::send(
                app.clone(),
                request(HttpMethod::POST, "/refunds", Some("user:mia"), "manager"),
            )
            .await;
            assert_eq!(res.status, StatusCode::OK);
            let res =
                ee_testing::send(app.clone(), request(HttpMethod::POST, "/refunds", None, ""))
                    .await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED);
            // A route layer leaves unknown routes alone.
            let res =
                ee_testing::send(app.clone(), request(HttpMethod::GET, "/nope", None, "")).await;
            assert_eq!(res.status, StatusCode::NOT_FOUND);
        });
    });
    let counters = ee_testing::counters(&snapshotter);
    assert_eq!(
        counters.get("ee_auth_decisions_total{model=rbac,outcome=allow}"),
        Some(3)
    );
    assert_eq!(
        counters.get("ee_auth_decisions_total{model=rbac,outcome=deny}"),
        Some(2)
    );
}

#[test]
fn require_scope_answers_insufficient_scope_with_the_challenge() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let app = Router::new()
            .route("/orders", get(|| async { "orders" }))
            .route_layer(RequireScopeLayer::new(["orders:read", "orders:list"]))
            .layer(middleware::from_fn(fake_auth));
        runtime().block_on(async {
            let scoped = |scopes: &str| {
                http::Request::get("/orders")
                    .header("x-user", "client:app")
                    .header("x-scopes", scopes)
                    .body(Body::empty())
                    .unwrap()
            };
            let res = ee_testing::send(app.clone(), scoped("orders:read")).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN);
            assert_eq!(
                res.headers.get(header::WWW_AUTHENTICATE).unwrap(),
                r#"Bearer error="insufficient_scope", scope="orders:read orders:list""#
            );
            let p = problem(&res);
            assert_eq!(p["type"], PROBLEM_INSUFFICIENT_SCOPE);
            assert_eq!(p["required_scope"], "orders:read orders:list");
            let res = ee_testing::send(app.clone(), scoped("orders:list,orders:read,x")).await;
            assert_eq!(res.status, StatusCode::OK);
            let res =
                ee_testing::send(app.clone(), request(HttpMethod::GET, "/orders", None, "")).await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        });
    });
    let counters = ee_testing::counters(&snapshotter);
    assert_eq!(
        counters.get("ee_auth_decisions_total{model=scope,outcome=allow}"),
        Some(1)
    );
    assert_eq!(
        counters.get("ee_auth_decisions_total{model=scope,outcome=deny}"),
        Some(1)
    );
}

/// An engine whose store is down.
struct Down;

impl Authorize for Down {
    async fn authorize(&self, _: &AccessRequest<'_>) -> Result<Decision, AuthError> {
        Err(AuthError::unavailable(
            "tuple store",
            std::io::Error::other("connection refused"),
        ))
    }
}

#[tokio::test]
async fn an_engine_that_cannot_decide_answers_its_problem() {
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .route_layer(require(Down, "x:read"))
        .layer(middleware::from_fn(fake_auth));
    let res = ee_testing::send(app, request(HttpMethod::GET, "/x", Some("user:a"), "")).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem(&res)["type"], PROBLEM_UNAVAILABLE);
    assert!(res.headers.contains_key(header::RETRY_AFTER));
}

const OWNER_POLICY: &str = r#"
@id("owner-updates")
permit(principal, action == Action::"update", resource is Order)
when { resource.owner == principal.id };
"#;

/// Inside a handler: load the order, then ask Cedar whether its owner is the caller.
async fn update_order(
    axum::extract::State(cedar): axum::extract::State<Arc<CedarPolicies>>,
    axum::Extension(identity): axum::Extension<Identity>,
    Path(id): Path<String>,
) -> Result<&'static str, Problem> {
    let order = json!({ "owner": if id == "1" { "user:anne" } else { "user:bob" } });
    authorize(
        &*cedar,
        &identity,
        "update",
        Resource::new("Order", &id).with_attrs(&order),
    )
    .await?;
    Ok("updated")
}

#[tokio::test]
async fn authorize_inside_a_handler_checks_the_loaded_resource() {
    let cedar = Arc::new(
        CedarPolicies::builder()
            .policies(OWNER_POLICY)
            .build()
            .unwrap(),
    );
    let app = Router::new()
        .route("/orders/{id}", post(update_order))
        .with_state(cedar.clone())
        .layer(middleware::from_fn(fake_auth));
    let res = ee_testing::send(
        app.clone(),
        request(HttpMethod::POST, "/orders/1", Some("user:anne"), ""),
    )
    .await;
    assert_eq!((res.status, res.text()), (StatusCode::OK, "updated"));
    let res = ee_testing::send(
        app,
        request(HttpMethod::POST, "/orders/2", Some("user:anne"), ""),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(
        problem(&res)["detail"],
        "the caller may not perform this request"
    );

    // The same engine behind the layer, with the context read from the head.
    let ip_policy = r#"
        @id("internal")
        permit(principal, action, resource) when { context.ip.isInRange(ip("10.0.0.0/8")) };
    "#;
    let cedar = CedarPolicies::builder()
        .policies(ip_policy)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/admin", get(|| async { "admin" }))
        .layer(AuthorizeLayer::new(cedar, |head: &RequestHead<'_>| {
            let ip = head
                .headers
                .get("x-client-ip")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("0.0.0.0")
                .to_owned();
            Target::new("view", "Admin", "console")
                .with_context(json!({ "ip": { "__extn": { "fn": "ip", "arg": ip } } }))
        }))
        .layer(middleware::from_fn(fake_auth));
    for (ip, status) in [
        ("10.2.3.4", StatusCode::OK),
        ("8.8.8.8", StatusCode::FORBIDDEN),
    ] {
        let mut req = request(HttpMethod::GET, "/admin", Some("user:ops"), "");
        req.headers_mut().insert("x-client-ip", ip.parse().unwrap());
        assert_eq!(
            ee_testing::send(app.clone(), req).await.status,
            status,
            "{ip}"
        );
    }
}

#[tokio::test]
async fn authorize_function_maps_a_denial_to_forbidden() {
    let rbac = rbac();
    let cy = Identity::new("user:cy", Method::Jwt).with_roles(["clerk"]);
    authorize(&rbac, &cy, "read", Resource::new("orders", "1"))
        .await
        .unwrap();
    let err = authorize(&rbac, &cy, "write", Resource::new("orders", "1"))
        .await
        .unwrap_err();
    assert!(matches!(&err, AuthError::Forbidden(r) if r == "no role grants orders:write"));
    assert_eq!(Problem::from(err).status(), StatusCode::FORBIDDEN);
}

#[test]
#[should_panic(expected = "is not a permission")]
fn require_refuses_a_malformed_permission() {
    let _ = require(rbac(), "orders");
}
