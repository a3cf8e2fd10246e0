//! The `documents` example (examples/documents.rs), served through its own router: it answers
//! as its header says (JWT + RBAC + ReBAC).

#[allow(dead_code)] // `main` is the example's; the tests use `app` and `dev_issuer`
#[path = "../examples/documents.rs"]
mod documents;

use axum::body::Body;
use ee_auth::Grant;
use ee_testing::{TestResponse, send};
use http::Request;

async fn call(app: &axum::Router, method: &str, path: &str, token: Option<&str>) -> TestResponse {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    send(app.clone(), req.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn answers_as_its_header_says() {
    let (issuer, jwt) = documents::dev_issuer().unwrap();
    let app = documents::app(jwt).await.unwrap();
    let anne = issuer.issue_access(&Grant::new("user:anne")).unwrap();
    let anne = anne.token.expose().as_str();
    let root = issuer
        .issue_access(&Grant::new("user:root").with_roles(["admin"]))
        .unwrap();
    let root = root.token.expose().as_str();

    // No token: 401 with the RFC 6750 challenge.
    let r = call(&app, "GET", "/documents/roadmap", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));

    let r = call(&app, "GET", "/me", Some(anne)).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "you are user:anne"));

    // ReBAC: anne views the roadmap through team eng, which views its folder.
    let r = call(&app, "GET", "/documents/roadmap", Some(anne)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json::<serde_json::Value>()["body"], "Q1: ship ee-auth");
    // Not hers: 404, exactly as a document that does not exist.
    let hidden = call(&app, "GET", "/documents/salaries", Some(anne)).await;
    let missing = call(&app, "GET", "/documents/nope", Some(anne)).await;
    assert_eq!(
        (hidden.status.as_u16(), missing.status.as_u16()),
        (404, 404)
    );
    assert_eq!(hidden.text(), missing.text());
    // The owner reads it.
    assert_eq!(
        call(&app, "GET", "/documents/salaries", Some(root))
            .await
            .status,
        200
    );

    // RBAC: deleting needs documents:delete, which only the admin role grants.
    let r = call(&app, "DELETE", "/documents/roadmap", Some(anne)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        call(&app, "DELETE", "/documents/roadmap", Some(root))
            .await
            .status,
        204
    );
    assert_eq!(
        call(&app, "GET", "/documents/roadmap", Some(anne))
            .await
            .status,
        404
    );

    // A tampered token is refused.
    let mut forged = anne.to_owned();
    forged.pop();
    let r = call(&app, "GET", "/me", Some(&forged)).await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
}
